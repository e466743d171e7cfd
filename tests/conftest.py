"""Shared fixtures: a fresh database per test on SQLite and PostgreSQL, apps, services.

Every `INTEGRATOR_*` variable is cleared so that the environment cannot leak in.
PostgreSQL comes from `TEST_POSTGRES_URL` (outside the `INTEGRATOR_` prefix on
purpose): without it the PostgreSQL half is skipped, except under `CI=true`,
where it fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

for _name in list(os.environ):
    if _name.startswith("INTEGRATOR_"):
        del os.environ[_name]

from sqlalchemy import Engine, text  # noqa: E402

from integrator import migrate  # noqa: E402
from integrator.db import make_engine  # noqa: E402
from integrator.models import Base  # noqa: E402
from integrator.settings import Settings, get_settings  # noqa: E402
from tests.support import ServiceProcess, TokenMaker  # noqa: E402

BACKENDS = ["sqlite", "postgresql"]
IN_CI = os.environ.get("CI") == "true"


def postgres_url_or_skip() -> str:
    url = os.environ.get("TEST_POSTGRES_URL")
    if url:
        return url
    if IN_CI:
        pytest.fail("TEST_POSTGRES_URL is not set: CI must run the suite on PostgreSQL")
    pytest.skip("PostgreSQL not configured (set TEST_POSTGRES_URL)")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test (migrating is the slow part)."""
    path = tmp_path_factory.mktemp("template") / "integrator.db"
    migrate.upgrade(get_settings(database_url=f"sqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_migrated() -> Iterator[str]:
    url = postgres_url_or_skip()
    settings = get_settings(database_url=url)
    try:
        reset_schema(settings)
        migrate.upgrade(settings)
    except Exception as exc:  # a CI without PostgreSQL must fail, not skip
        if IN_CI:
            pytest.fail(f"PostgreSQL at TEST_POSTGRES_URL is unusable: {exc}")
        pytest.skip(f"PostgreSQL at TEST_POSTGRES_URL is unusable: {exc}")
    yield url


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
def tokens(settings: Settings) -> TokenMaker:
    return TokenMaker(settings)


@pytest.fixture
def service(settings: Settings, tmp_path: Path) -> Iterator[ServiceProcess]:
    """A real `integrator serve` process on a free loopback port."""
    process = ServiceProcess(settings, tmp_path / "service.log")
    process.start()
    yield process
    process.stop()
