"""Alembic's environment and migrations for the gateway database (run by service/store/migrate.py)."""
