"""Run the Alembic migrations (start-up or `memotion db upgrade`) and check the schema's version.

A database whose schema is newer than this code (a later gateway migrated it) refuses to start:
rolling back the code must not silently run against tables it does not know. Concurrent start-ups
(``MEMOTION_PROCESSES=N``, several pods) migrate one at a time: an advisory lock on PostgreSQL, a
file lock beside the SQLite file.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from service.store.engine import Database, DatabaseError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ADVISORY_LOCK_ID = 0x6D656D6F  # "memo"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def code_head() -> str:
    """The newest revision this code knows."""
    head = script_directory().get_current_head()
    assert head is not None, "no migrations found"
    return head


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # the database's revision (None: empty database)
    head: str  # the code's newest revision

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def newer_than_code(self) -> bool:
        known = {script.revision for script in script_directory().walk_revisions()}
        return self.current is not None and self.current not in known

    def describe(self) -> str:
        if self.newer_than_code:
            return (
                f"the database schema is at revision {self.current!r}, newer than this memotion knows "
                f"(its newest is {self.head!r}): upgrade memotion, or point MEMOTION_DATABASE_URL at another database"
            )
        if self.up_to_date:
            return f"the database schema is current (revision {self.head!r})"
        return (
            f"the database schema is at revision {self.current!r}, this memotion needs {self.head!r}: "
            "run `memotion db upgrade` (or start with MEMOTION_DATABASE_MIGRATE=true)"
        )


def _current(connection: Connection) -> str | None:
    heads = MigrationContext.configure(connection).get_current_heads()
    return heads[0] if heads else None


def schema_state(db: Database) -> SchemaState:
    try:
        with db.engine.connect() as connection:
            return SchemaState(_current(connection), code_head())
    except SQLAlchemyError as err:
        raise DatabaseError(f"cannot reach the database ({db.engine.url.render_as_string()}): {err}") from err


@contextmanager
def _sqlite_file_lock(db: Database) -> Iterator[None]:
    database = db.engine.url.database
    if db.dialect != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(db: Database, target: str = "head") -> SchemaState:
    """Migrate to ``target``; DatabaseError if the schema is newer than the code or the database fails."""
    try:
        with _sqlite_file_lock(db), db.engine.begin() as connection:
            if db.dialect == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": ADVISORY_LOCK_ID})
            state = SchemaState(_current(connection), code_head())
            if state.newer_than_code:
                raise DatabaseError(state.describe())
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, target)
    except SQLAlchemyError as err:
        raise DatabaseError(f"migrating the database failed: {err}") from err
    return schema_state(db)


def ensure_schema(db: Database, migrate: bool) -> SchemaState:
    """Start-up: migrate (``migrate``) or check; DatabaseError says why the gateway cannot start."""
    state = upgrade(db) if migrate else schema_state(db)
    if not state.up_to_date:
        raise DatabaseError(state.describe())
    return state
