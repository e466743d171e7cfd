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


# Every command that opens the database, with every kind of bad URL.

DATABASE_COMMANDS = [
    ["db", "upgrade"],
    ["tokens", "list"],
    ["tokens", "create", "--role", "reader", "--name", "r"],
    ["tokens", "revoke", "r"],
    ["serve", "--port", "0"],
]


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_every_database_command_on_an_unreachable_postgresql_is_exit_3(
    command: list[str], tmp_path: Path
) -> None:
    """Port 1 on loopback: nothing listens. One line naming the database, never a traceback."""
    url = "postgresql://ops:secret@127.0.0.1:1/integrator"
    result = run_cli(*command, env=settings_env(Settings(database_url=url)), cwd=tmp_path)
    line = one_line(result.stderr)
    assert result.returncode == 3, line
    assert "127.0.0.1" in line and "secret" not in line


@pytest.mark.parametrize(
    "url",
    ["mysql://root@localhost/integrator", "foo://", "postgresql://[::1/x", "://", "sqlite:"],
)
@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_every_database_command_with_a_bad_database_url_is_exit_2(
    command: list[str], url: str, tmp_path: Path
) -> None:
    """An unknown scheme or a malformed URL is bad configuration, named in one line."""
    env = settings_env(Settings(), INTEGRATOR_DATABASE_URL=url)
    result = run_cli(*command, env=env, cwd=tmp_path)
    line = one_line(result.stderr)
    assert result.returncode == 2, line
    assert "INTEGRATOR_DATABASE_URL" in line
    assert not list(tmp_path.iterdir()), "nothing is created for a bad URL"


@pytest.mark.parametrize(
    "args",
    [
        ["review_approved", "--field", "slug"],
        ["review_approved", "--field", "=x"],
        ["--file", "missing.json"],
        ["--file", "."],
        ["review_approved", "--file", "bad.json"],
        ["review_approved", "--field", "slug=a", "--field", "slug=b"],
        ["--file", "twice.json"],
    ],
)
def test_events_emit_with_a_bad_field_or_file_is_exit_2_before_any_request(
    args: list[str], tmp_path: Path
) -> None:
    """No service is needed to refuse these: nothing listens at the URL. A field given twice
    (or a name given twice in the file) is refused, not read as its last value."""
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "twice.json").write_text('{"type": "review_approved", "type": "branch_pushed"}')
    env = settings_env(
        Settings(), INTEGRATOR_URL=f"http://127.0.0.1:{free_port()}", INTEGRATOR_TOKEN="itg_a_b"
    )
    result = run_cli("events", "emit", *args, env=env, cwd=tmp_path)
    one_line(result.stderr)
    assert result.returncode == 2


def test_hooks_install_with_a_missing_token_file_is_exit_2(tmp_path: Path) -> None:
    repo = tmp_path / "r.git"
    repo.mkdir()
    env = settings_env(Settings(), INTEGRATOR_URL="http://127.0.0.1:1")
    result = run_cli("hooks", "install", str(repo), "--token-file", str(tmp_path / "none"), env=env)
    line = one_line(result.stderr)
    assert result.returncode == 2 and "--token-file" in line
