"""Fusion heads over the CLIP text and image features, the GMU baseline and PM+MO.

``heads``: the fusion-methods course report's operations (Sec. 1.4, ../shared/seeds/fusion-methods-
course-report.txt); ``gmu``: Arevalo et al.'s gated multimodal unit + maxout MLP; ``pmmo``: the PM+MO
framework (../shared/seeds/pm-mo-variational-fusion-paper.txt), trained by ``train_pmmo``;
``models``: the classifiers the registry builds (``kinds`` registers them). Importing this package
imports nothing heavy; Pyro is imported only by PM+MO training.
"""
