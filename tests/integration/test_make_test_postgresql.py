"""`make test` runs the PostgreSQL half whenever it can, and says so when it cannot.

Each test runs a small pytest of its own (one test, parametrised over SQLite and
PostgreSQL) with a controlled environment and reads its outcome.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.conftest import (
    IN_CI,
    LOCAL_POSTGRES_ADMIN_URL,
    create_throwaway_database,
    drop_database,
    url_of_database,
)

ROOT = Path(__file__).resolve().parents[2]
ONE_TEST_ON_BOTH_BACKENDS = "tests/integration/test_migrations.py::test_models_and_migrations_agree"
ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", LOCAL_POSTGRES_ADMIN_URL)


def closed_port_url() -> str:
    """An admin URL at a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def run_pytest(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TEST_POSTGRES_URL", "TEST_POSTGRES_ADMIN_URL", "CI")
        and not k.startswith("PYTEST_XDIST")  # the inner run is not one of our workers
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", ONE_TEST_ON_BOTH_BACKENDS, "-q"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def local_postgres_or_skip() -> None:
    try:
        psycopg.connect(ADMIN_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"no local PostgreSQL at {ADMIN_URL}")


def database_exists(name: str) -> bool:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return found is not None


def test_without_test_postgres_url_a_local_postgresql_is_used_and_its_database_dropped() -> None:
    """No TEST_POSTGRES_URL, PostgreSQL answers: a throw-away database runs the half, then goes."""
    local_postgres_or_skip()
    result = run_pytest(TEST_POSTGRES_ADMIN_URL=ADMIN_URL)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "2 passed" in output, output
    created = re.search(r"throw-away database (integrator_test_\d+_\d+)", output)
    assert created is not None, output
    assert not database_exists(created.group(1))


def test_test_postgres_url_wins_over_the_local_postgresql() -> None:
    """TEST_POSTGRES_URL set: that database is used, nothing is looked for elsewhere."""
    local_postgres_or_skip()
    name = create_throwaway_database(ADMIN_URL)
    try:
        result = run_pytest(
            TEST_POSTGRES_URL=url_of_database(ADMIN_URL, name),
            TEST_POSTGRES_ADMIN_URL=closed_port_url(),
        )
    finally:
        drop_database(ADMIN_URL, name)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "2 passed" in output, output
    assert "throw-away database" not in output, output


def test_without_any_postgresql_the_summary_says_the_half_did_not_run_and_how_to_enable_it() -> (
    None
):
    """PostgreSQL unreachable: SQLite still runs, and the summary names what was skipped and why."""
    result = run_pytest(TEST_POSTGRES_ADMIN_URL=closed_port_url())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "1 passed, 1 skipped" in output, output
    assert "PostgreSQL half did not run (1 test skipped)" in output, output
    assert "TEST_POSTGRES_URL" in output, output


def test_under_ci_a_missing_postgresql_fails_the_run() -> None:
    """CI=true: the PostgreSQL half is required; its absence is a failure, not a skip."""
    result = run_pytest(CI="true", TEST_POSTGRES_ADMIN_URL=closed_port_url())
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "PostgreSQL is required" in output, output
