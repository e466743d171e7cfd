"""Shared fixtures: a fresh database per test on SQLite and PostgreSQL, apps, services.

Every `INTEGRATOR_*` variable is cleared so that the environment cannot leak in.
PostgreSQL comes from `TEST_POSTGRES_URL` (outside the `INTEGRATOR_` prefix on
purpose). Without it, a local PostgreSQL that answers at `TEST_POSTGRES_ADMIN_URL`
(default: user postgres on 127.0.0.1:5432) gets a throw-away database for the
run, dropped at the end. With neither, the PostgreSQL half is skipped and the
summary says so and how to enable it — except under `CI=true`, where it fails.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest

for _name in list(os.environ):
    if _name.startswith("INTEGRATOR_"):
        del os.environ[_name]

from sqlalchemy import Engine, make_url, text  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from integrator import lease, migrate, registrations  # noqa: E402
from integrator.db import make_engine, make_sessionmaker  # noqa: E402
from integrator.models import Base  # noqa: E402
from integrator.settings import Settings, get_settings  # noqa: E402
from tests.lease_support import FrozenClock  # noqa: E402
from tests.support import ServiceProcess, TokenMaker  # noqa: E402

BACKENDS = ["sqlite", "postgresql"]
IN_CI = os.environ.get("CI") == "true"
#: Where a run without TEST_POSTGRES_URL looks for a PostgreSQL to create its database in.
LOCAL_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Every skip of the PostgreSQL half starts with this, so the summary can count them.
POSTGRES_SKIPPED = "PostgreSQL half skipped"
THROWAWAY_DATABASE = pytest.StashKey[str]()
HOW_TO_ENABLE = (
    "to run it, start PostgreSQL on 127.0.0.1:5432 with a passwordless user postgres "
    "(each run creates and drops its own database), or set "
    "TEST_POSTGRES_URL=postgresql://USER@HOST:PORT/DB (a throw-away database: it is wiped)"
)


def create_throwaway_database(admin_url: str) -> str:
    """A new empty database named after this process and time; raises if PostgreSQL is down."""
    name = f"integrator_test_{os.getpid()}_{time.time_ns()}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(admin_url: str, name: str) -> None:
    """Drop a throw-away database, whoever is still connected to it."""
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def url_of_database(admin_url: str, name: str) -> str:
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"{POSTGRES_SKIPPED}: {reason}")


@pytest.fixture(scope="session")
def postgres_url(pytestconfig: pytest.Config) -> Iterator[str]:
    """TEST_POSTGRES_URL if set (under pytest-xdist, a database per worker beside it); else a
    throw-away database on a local PostgreSQL, dropped after.

    Session-scoped: a refusal is remembered, so an absent PostgreSQL is asked once per run.
    """
    configured = os.environ.get("TEST_POSTGRES_URL")
    if configured and os.environ.get("PYTEST_XDIST_WORKER"):
        # Parallel workers wipe their database before each test: each gets its own, created
        # beside the configured one and dropped after.
        name = create_throwaway_database(configured)
        try:
            yield url_of_database(configured, name)
        finally:
            drop_database(configured, name)
        return
    if configured:
        yield configured
        return
    admin_url = os.environ.get("TEST_POSTGRES_ADMIN_URL", LOCAL_POSTGRES_ADMIN_URL)
    try:
        name = create_throwaway_database(admin_url)
    except psycopg.Error as exc:
        shown = make_url(admin_url).render_as_string(hide_password=True)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _unavailable(
            f"TEST_POSTGRES_URL is unset and no PostgreSQL answers at {shown} ({first_line})"
        )
    pytestconfig.stash[THROWAWAY_DATABASE] = name
    try:
        yield url_of_database(admin_url, name)
    finally:
        drop_database(admin_url, name)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say plainly whether the PostgreSQL half ran, and where."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple) and POSTGRES_SKIPPED in str(report.longrepr[2])
    ]
    name = terminalreporter.config.stash.get(THROWAWAY_DATABASE, None)
    if skipped:
        count = len(skipped)
        terminalreporter.write_sep("-", "PostgreSQL", yellow=True)
        terminalreporter.write_line(
            f"PostgreSQL half did not run ({count} test{'s' if count != 1 else ''} skipped): "
            f"{HOW_TO_ENABLE}",
            yellow=True,
        )
    elif name is not None:
        terminalreporter.write_sep("-", "PostgreSQL")
        terminalreporter.write_line(
            f"PostgreSQL half ran on the throw-away database {name} (dropped)"
        )


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test (migrating is the slow part)."""
    path = tmp_path_factory.mktemp("template") / "integrator.db"
    migrate.upgrade(get_settings(database_url=f"sqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_migrated(postgres_url: str) -> str:
    settings = get_settings(database_url=postgres_url)
    try:
        reset_schema(settings)
        migrate.upgrade(settings)
    except Exception as exc:  # a CI without PostgreSQL must fail, not skip
        _unavailable(f"the database at {make_url(postgres_url)!r} is unusable: {exc}")
    return postgres_url


def reset_schema(settings: Settings) -> None:
    """Start every session from an empty throw-away database, whatever a past run left."""
    engine = make_engine(settings)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def truncate_all(engine: Engine) -> None:
    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated database for this test, on each backend."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "integrator.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("postgres_migrated")
    engine = make_engine(get_settings(database_url=url))
    try:
        truncate_all(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return get_settings(database_url=database_url, mirror_dir=str(tmp_path / "mirrors"))


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> Iterator[sessionmaker[Session]]:
    yield make_sessionmaker(engine)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    """The SQL clock of the lease and the registrations pinned, until a test moves it."""
    frozen = FrozenClock()
    monkeypatch.setattr(lease, "now_ms", frozen)
    monkeypatch.setattr(registrations, "now_ms", frozen)
    return frozen


@pytest.fixture
def tokens(settings: Settings) -> TokenMaker:
    return TokenMaker(settings)


@pytest.fixture
def service(settings: Settings, tmp_path: Path) -> Iterator[ServiceProcess]:
    """A real `integrator serve` process on a free loopback port."""
    process = ServiceProcess(settings, tmp_path / "service.log")
    process.start()
    yield process
    process.stop()
