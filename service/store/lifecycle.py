"""Open the gateway's database at start-up: connect, migrate or check the schema, or say why not."""

from __future__ import annotations

import logging

from service.core.errors import GatewayStartupError
from service.core.settings import GatewaySettings
from service.store.engine import Database, DatabaseError
from service.store.migrate import ensure_schema

logger = logging.getLogger("memotion.gateway")

DATABASE_OFF = "none"  # MEMOTION_DATABASE_URL=none: a gateway without database (scores only)


def open_database(settings: GatewaySettings) -> Database:
    """The database of ``settings``, its schema current; GatewayStartupError with the reason if not."""
    try:
        db = Database.open(settings.database_url, settings.database_timeout_s)
    except DatabaseError as err:
        raise GatewayStartupError(str(err)) from err
    try:
        state = ensure_schema(db, migrate=settings.database_migrate)
    except DatabaseError as err:
        db.close()
        raise GatewayStartupError(f"database: {err}") from err
    logger.info("database %s ready, schema %s", db.engine.url.render_as_string(), state.current)
    return db
