"""OSCAR (Li et al. 2020), the paper's fourth ensemble member: BERT over text, object tags and
detected regions. ``kind.py`` is what ``training/factory.py`` registers; ``inputs.py`` is the
torch-free part a server needs (detector image scaling, tags, the (text, tags) tokenizer).

Nothing is imported here, so the registry and the gateway stay cheap to import.
"""
