"""Moderation: policies that turn scores into an action, the review queue, reposts, retention.

``policy.py`` is the pure decision (rules + one meme's scores -> action and reasons);
``meme_view.py`` reads a classification into what it needs; the ``*_store.py`` modules keep policies,
review items and the audit log in the database (service/store).
"""
