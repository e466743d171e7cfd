"""The CLI on bad configuration and unusable surroundings: one readable line, the right exit.

Exit codes: 2 bad input (configuration included), 3 database or service unreachable.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from integrator.settings import Settings
from tests.support import free_port, run_cli, settings_env


def one_line(stderr: str) -> str:
    """The whole of stderr, which must be one `integrator:` line and no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("integrator: "), stderr
    return lines[0]


@pytest.mark.parametrize("command", [["db", "upgrade"], ["tokens", "list"]])
def test_an_unreachable_postgresql_is_exit_3_in_one_line(
    command: list[str], tmp_path: Path
) -> None:
    """Nothing listens on the database's port: say so and which URL, without the password."""
    url = f"postgresql://ops:secret@127.0.0.1:{free_port()}/integrator"
    result = run_cli(*command, env=settings_env(Settings(database_url=url)), cwd=tmp_path)
    line = one_line(result.stderr)
    assert result.returncode == 3
    assert "database" in line and "127.0.0.1" in line and "secret" not in line


@pytest.mark.parametrize(
    "url", ["mysql://root@localhost/integrator", "postgresql+psycopg2://u@h/d", "not a url"]
)
def test_an_unsupported_database_url_is_exit_2_naming_the_supported_schemes(
    url: str, tmp_path: Path
) -> None:
    """Only SQLite and PostgreSQL (psycopg 3) are supported: the line says so."""
    env = settings_env(Settings(), INTEGRATOR_DATABASE_URL=url)
    result = run_cli("tokens", "list", env=env, cwd=tmp_path)
    line = one_line(result.stderr)
    assert result.returncode == 2
    assert "INTEGRATOR_DATABASE_URL" in line and "sqlite" in line and "postgresql" in line


@pytest.mark.parametrize("url", ["http://[::1", "ftp://example.test", "127.0.0.1:8000"])
def test_a_malformed_service_url_is_exit_2_in_one_line(url: str, tmp_path: Path) -> None:
    """INTEGRATOR_URL must be an http(s) URL."""
    env = settings_env(Settings(), INTEGRATOR_URL=url, INTEGRATOR_TOKEN="itg_x_y")
    result = run_cli("whoami", env=env, cwd=tmp_path)
    line = one_line(result.stderr)
    assert result.returncode == 2 and "INTEGRATOR_URL" in line


@pytest.mark.parametrize("name", ["n" * 201, "two\nlines"])
def test_a_token_name_the_database_cannot_hold_is_exit_2(settings: Settings, name: str) -> None:
    """Token names are one printable line of at most 200 characters, checked before storing."""
    result = run_cli(
        "tokens", "create", "--role", "reader", "--name", name, env=settings_env(settings)
    )
    line = one_line(result.stderr)
    assert result.returncode == 2 and "name" in line


@pytest.mark.parametrize("refs", ["", " , ", "main", "refs/heads/a..b"])
def test_protected_refs_need_at_least_one_full_ref_name(refs: str, tmp_path: Path) -> None:
    """An empty or malformed INTEGRATOR_PROTECTED_REFS is refused at start."""
    env = settings_env(Settings(), INTEGRATOR_PROTECTED_REFS=refs)
    result = run_cli("tokens", "list", env=env, cwd=tmp_path)
    line = one_line(result.stderr)
    assert result.returncode == 2 and "INTEGRATOR_PROTECTED_REFS" in line


def test_serve_on_a_taken_port_offers_a_free_one(settings: Settings) -> None:
    """`serve` fails in one line naming the port and how to run on another."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), env=settings_env(settings))
    line = one_line(result.stderr)
    assert result.returncode == 2
    assert f"port {port} is in use" in line
    assert "integrator serve --port " in line and "make run PORT=" in line
