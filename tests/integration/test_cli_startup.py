"""The CLI starts at the speed of a small HTTP client: commands that speak HTTP load no
database, migration or web-server code, and no pydantic; `--version` answers without a service."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from integrator.settings import Settings
from tests.support import REPO_ROOT, free_port, settings_env

#: The service side: none of it may be imported by a command that only speaks HTTP.
SERVER_SIDE = ("sqlalchemy", "alembic", "fastapi", "uvicorn", "starlette", "psycopg")
#: Settings and typer's own conversion of parameters use it: about half of `import httpx`.
PYDANTIC = ("pydantic", "pydantic_core", "pydantic_settings")

#: Runs the real entry point, then prints the server-side modules it loaded (after the
#: command's own output, on stdout).
PROBE = f"""
import sys
from integrator.cli import main
code = main(sys.argv[1:])
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({SERVER_SIDE + PYDANTIC!r}))
print("LOADED:" + ",".join(loaded))
sys.exit(code)
"""


def probe(*args: str, env: dict[str, str]) -> tuple[int, str, set[str]]:
    """Exit code, stderr and the server-side and pydantic packages a CLI call imported."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    marker = result.stdout.rsplit("LOADED:", 1)
    assert len(marker) == 2, result.stdout + result.stderr
    loaded = {name for name in marker[1].strip().split(",") if name}
    return result.returncode, result.stderr, loaded


@pytest.fixture
def unreachable_env() -> dict[str, str]:
    """A token and a URL nobody listens on: the command fails at once, exit 3."""
    return settings_env(
        Settings(),
        INTEGRATOR_URL=f"http://127.0.0.1:{free_port()}",
        INTEGRATOR_TOKEN="itg_probe_probe",
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["queue", "list"],
        ["queue", "list", "--status", "queued", "--all", "--json"],
        ["queue", "show", "12"],
        ["submit", "--slug", "s", "--branch", "b"],
        ["events", "list", "--limit", "5", "--slug", "x"],
        ["blocked", "list"],
        ["lease", "status"],
        ["mode"],
        ["whoami"],
        ["status"],
        ["queue", "show", "nobody"],
    ],
    ids=lambda args: " ".join(args),
)
def test_http_commands_load_no_server_side_code(
    args: list[str], unreachable_env: dict[str, str]
) -> None:
    """SQLAlchemy, Alembic, FastAPI and uvicorn cost ~0.85 s of imports, pydantic ~0.2 s."""
    code, stderr, loaded = probe(*args, env=unreachable_env)
    assert code in (0, 3), stderr
    if code == 3:
        assert stderr.startswith("integrator: service unreachable") and "Traceback" not in stderr
    assert loaded == set()


def test_emit_converts_fields_with_the_event_schemas_but_loads_no_server_side_code(
    unreachable_env: dict[str, str],
) -> None:
    """`--field k=v` takes each field's type from the event's schema (pydantic), never from
    the database layer."""
    args = ["events", "emit", "branch_pushed", "--field", "branch=b"]
    code, stderr, loaded = probe(*args, env=unreachable_env)
    assert code == 3, stderr
    assert loaded.isdisjoint(SERVER_SIDE)


def test_usage_errors_and_help_of_local_commands_load_no_server_side_code(
    unreachable_env: dict[str, str],
) -> None:
    """Help and bad input fail at once, without importing what the command would use."""
    for args in (["tokens", "--help"], ["db", "--help"], ["serve", "--port", "x"]):
        code, stderr, loaded = probe(*args, env=unreachable_env)
        assert code in (0, 2), stderr
        assert loaded.isdisjoint(SERVER_SIDE), args


def test_local_commands_still_load_the_database_layer(
    unreachable_env: dict[str, str], tmp_path: Path
) -> None:
    """The probe sees what it should: `tokens list` opens the database (missing here: exit 3)."""
    env = {**unreachable_env, "INTEGRATOR_DATABASE_URL": f"sqlite:///{tmp_path}/none.db"}
    code, stderr, loaded = probe("tokens", "list", env=env)
    assert code == 3 and "integrator db upgrade" in stderr
    assert "sqlalchemy" in loaded


def test_version_prints_the_package_version() -> None:
    """`integrator --version` needs no service, no token and no database."""
    result = subprocess.run(
        [sys.executable, "-m", "integrator", "--version"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (0, f"integrator {version('integrator')}\n")
    assert result.stderr == ""


def run_plain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "integrator", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_only_the_named_command_is_built_and_the_rest_still_answers() -> None:
    """The app is narrowed to the command a call names; help, groups and typos behave as before."""
    group = run_plain("queue")
    assert group.returncode == 2 and group.stdout == ""
    assert "The merge queue." in group.stderr and "show" in group.stderr
    whole = run_plain("--help")
    assert whole.returncode == 0
    for name in ("queue", "submit", "status", "serve", "tokens", "hooks", "whoami"):
        assert f"\n  {name} " in whole.stdout, name
    typo = run_plain("queu", "list")
    assert typo.returncode == 2
    assert typo.stderr.startswith("integrator: No such command 'queu'") and "queue" in typo.stderr
    bad = run_plain("queue", "list", "--bogus")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "queue list --help" in bad.stderr
