"""Alembic's environment: runs the migrations on the connection service/store/migrate.py hands over."""

from __future__ import annotations

from alembic import context

from service.store import jobs_schema  # noqa: F401  (its tables join Base.metadata)
from service.store.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
