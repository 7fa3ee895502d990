"""Open the database named by ``MEMOTION_DATABASE_URL`` with every wait bounded.

SQLite (the default, a file: nothing to start): WAL journal so readers never wait for the writer,
a busy timeout so writers of several gateway processes queue instead of failing, foreign keys on.
PostgreSQL (``postgresql://...``, driven by psycopg 3): connect, statement and lock time-outs, and
a pool that waits at most the same time for a free connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SUPPORTED = ("sqlite", "postgresql")


class DatabaseError(RuntimeError):
    """The database cannot be used as configured (bad URL, unreachable server, wrong schema)."""


def normalise_url(url: str) -> str:
    """``postgresql://`` / ``postgres://`` -> the psycopg 3 driver; other URLs unchanged."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def dialect_of(url: str) -> str:
    try:
        name = make_url(normalise_url(url)).get_backend_name()
    except Exception as err:
        raise DatabaseError(f"MEMOTION_DATABASE_URL is not a database URL: {err}") from err
    if name not in SUPPORTED:
        raise DatabaseError(f"MEMOTION_DATABASE_URL: {name!r} is not supported (use sqlite:/// or postgresql://)")
    return name


def _sqlite_engine(url: str, timeout_s: float) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": timeout_s, "check_same_thread": False})
    busy_ms = int(timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def _postgresql_engine(url: str, timeout_s: float) -> Engine:
    ms = int(timeout_s * 1000)
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_timeout=timeout_s,
        pool_size=5,
        max_overflow=5,
        connect_args={
            "connect_timeout": max(1, round(timeout_s)),
            "options": f"-c statement_timeout={ms} -c lock_timeout={ms} "
            f"-c idle_in_transaction_session_timeout={ms * 10}",
        },
    )


def make_engine(url: str, timeout_s: float) -> Engine:
    url = normalise_url(url)
    if dialect_of(url) == "sqlite":
        return _sqlite_engine(url, timeout_s)
    return _postgresql_engine(url, timeout_s)


@dataclass
class Database:
    """An engine and its session factory; ``session()`` commits on success, rolls back on error."""

    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def open(cls, url: str, timeout_s: float = 2.0) -> Database:
        engine = make_engine(url, timeout_s)
        return cls(engine, sessionmaker(engine, expire_on_commit=False))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()
