"""The gateway database (service/store) on SQLite and on a real PostgreSQL server: migrations create
exactly the declared tables, a newer schema refuses to start, concurrent start-ups migrate once,
time-outs are bounded."""

from __future__ import annotations

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from service.store import jobs_schema  # noqa: F401  (the jobs' tables join Base.metadata)
from service.store.engine import Database, DatabaseError, dialect_of, normalise_url
from service.store.migrate import code_head, ensure_schema, schema_state, upgrade
from service.store.schema import Base

TABLES = {"policies", "policy_versions", "policy_assignments", "review_items", "audit_log"}


@pytest.fixture
def db(database_url):
    database = Database.open(database_url, timeout_s=2.0)
    yield database
    database.close()


def test_the_migrations_create_exactly_the_declared_tables(db) -> None:
    assert schema_state(db).current is None
    state = ensure_schema(db, migrate=True)
    assert state.up_to_date and state.current == code_head()
    assert set(inspect(db.engine).get_table_names()) >= TABLES
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == [], diff
    assert ensure_schema(db, migrate=True).up_to_date  # a second run changes nothing


def test_a_newer_schema_refuses_to_start_and_an_old_one_asks_for_an_upgrade(db) -> None:
    with pytest.raises(DatabaseError, match="memotion db upgrade"):
        ensure_schema(db, migrate=False)
    upgrade(db)
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0999_from_the_future'"))
    for migrate in (False, True):
        with pytest.raises(DatabaseError, match="newer than this memotion knows"):
            ensure_schema(db, migrate=migrate)


def test_concurrent_start_ups_migrate_once(database_url) -> None:
    databases = [Database.open(database_url) for _ in range(3)]
    errors: list[BaseException] = []

    def start(database: Database) -> None:
        try:
            ensure_schema(database, migrate=True)
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=start, args=(d,)) for d in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert all(schema_state(d).up_to_date for d in databases)
    for database in databases:
        database.close()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path) -> None:
    db = Database.open(f"sqlite:///{tmp_path / 'sub' / 'm.db'}", timeout_s=1.5)
    with db.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 1500
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    db.close()


def test_a_locked_database_fails_within_the_timeout(tmp_path) -> None:
    import time

    url = f"sqlite:///{tmp_path / 'm.db'}"
    holder, waiter = Database.open(url, timeout_s=0.3), Database.open(url, timeout_s=0.3)
    upgrade(holder)
    with holder.engine.connect() as locked:
        locked.exec_driver_sql("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(Exception, match="locked"), waiter.session() as session:
            session.execute(
                text(
                    "INSERT INTO audit_log (at, actor, action, entity, entity_id) "
                    "VALUES (CURRENT_TIMESTAMP, 'a', 'b', 'c', 'd')"
                )
            )
        assert time.monotonic() - started < 3.0
        locked.exec_driver_sql("ROLLBACK")
    holder.close()
    waiter.close()


def test_urls_pick_the_driver_and_bad_ones_are_refused() -> None:
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert dialect_of("sqlite:///x.db") == "sqlite"
    for bad in ("mysql://u@h/db", "not a url"):
        with pytest.raises(DatabaseError):
            dialect_of(bad)


def test_an_unreachable_server_fails_fast() -> None:
    import time

    from service.launchers.child_process import free_port

    db = Database.open(f"postgresql://nobody@127.0.0.1:{free_port()}/none", timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(DatabaseError, match="cannot reach"):
        schema_state(db)
    assert time.monotonic() - started < 5.0
    db.close()


def test_the_db_commands_upgrade_and_report(tmp_path, capsys) -> None:
    from service.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["db", "current", "--url", url]) == 1  # empty: behind
    assert main(["db", "upgrade", "--url", url]) == 0
    assert f"empty -> {code_head()}" in capsys.readouterr().out
    assert main(["db", "current", "--url", url]) == 0
    assert '"status": "the database schema is current' in capsys.readouterr().out
