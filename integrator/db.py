"""Engines, sessions and the SQL clock.

SQLite is the zero-set-up default: WAL, a busy timeout, and write transactions
that take the write lock up front (`BEGIN IMMEDIATE`, with the driver's own
implicit transactions off) so that a lease check and the write it guards can
never interleave with another writer (docs/decisions/0002).
PostgreSQL goes through psycopg 3.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Engine, create_engine, event, literal_column
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from integrator.errors import DatabaseMissing, Detail, InvalidInput
from integrator.settings import Settings

#: Execution option that marks a connection read-only: SQLite then begins DEFERRED.
READ_ONLY = "integrator_read_only"
_WRITER_KEY = "integrator_sqlite_writer"
SQLITE_BUSY_SECONDS = 30

_SQLITE_NOW_MS = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
_POSTGRES_NOW_MS = "(extract(epoch from statement_timestamp()) * 1000)::bigint"


def normalise_url(raw: str) -> URL:
    """Pick the psycopg 3 driver for plain `postgresql://` URLs."""
    try:
        url = make_url(raw)
    except (ValueError, ArgumentError):  # say, a bracketed host never closed: `[::1/db`
        raise InvalidInput(
            "INTEGRATOR_DATABASE_URL is malformed (its host, port or database cannot be read):"
            " use sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
            details=[Detail("INTEGRATOR_DATABASE_URL", "url", "malformed")],
        ) from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def check_reachable(settings: Settings) -> None:
    """Connect once, so that a database that does not answer is said before anything starts."""
    engine = make_engine(settings)
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None (in-memory or another dialect)."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def make_engine(settings: Settings, *, create: bool = False) -> Engine:
    """Build the engine; refuse a missing SQLite file unless `create` (db upgrade, serve)."""
    url = normalise_url(settings.database_url)
    path = sqlite_path(url)
    if path is not None:
        if not path.exists():
            if not create:
                raise DatabaseMissing(
                    f"database file {path.resolve()} does not exist: run `integrator db upgrade` "
                    "first, or set INTEGRATOR_DATABASE_URL"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False},
            pool_pre_ping=False,
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    # Writers of this process queue on a lock before BEGIN IMMEDIATE: SQLite's own
    # busy handler polls with sleeps of up to 100 ms, which under load turns into
    # long tails. Other processes still meet the busy timeout (docs/benchmarks.md).
    writer = threading.Lock()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY, False):
            conn.exec_driver_sql("BEGIN")
            return
        if not writer.acquire(timeout=SQLITE_BUSY_SECONDS):
            raise TimeoutError(f"database is locked (no write slot in {SQLITE_BUSY_SECONDS} s)")
        conn.info[_WRITER_KEY] = writer
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release_writer(conn.info)
            raise

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _on_end(conn: Any) -> None:
        _release_writer(conn.info)

    @event.listens_for(engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        _release_writer(record.info)  # a connection returned mid-transaction


def _release_writer(info: dict[str, Any]) -> None:
    lock = info.pop(_WRITER_KEY, None)
    if lock is not None:
        lock.release()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def read_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for reads only: on SQLite it does not take the write lock."""
    with factory() as session:
        session.connection(execution_options={READ_ONLY: True})
        yield session


def now_ms_sql(dialect_name: str) -> str:
    """The current time in integer ms, computed by the database once per statement."""
    return _POSTGRES_NOW_MS if dialect_name == "postgresql" else _SQLITE_NOW_MS


def now_ms_expr(dialect_name: str, offset_ms: int = 0) -> ColumnElement[int]:
    """SQL clock plus the (test-only) offset, as an expression for Core statements."""
    expr: ColumnElement[int] = literal_column(now_ms_sql(dialect_name))
    return expr + offset_ms if offset_ms else expr


def now_ms(session: Session, settings: Settings) -> ColumnElement[int]:
    """N for statements of `session`: the database's clock in integer ms, evaluated once per
    statement, plus the bound test-only `sql_clock_offset_ms` (0 in production). Every
    replica reads the same clock; a test moves time by shifting the offset."""
    return now_ms_expr(session.get_bind().dialect.name, settings.sql_clock_offset_ms)
