"""The gateway's database: policies, the review queue, the audit log (SQLAlchemy 2 + Alembic).

``engine.py`` opens it (SQLite by default, PostgreSQL for clusters) with bounded waits,
``schema.py`` declares the tables, ``migrations/`` holds the Alembic migrations that create them and
``migrate.py`` runs them (at start-up or `memotion db upgrade`) and refuses a newer schema.
"""
