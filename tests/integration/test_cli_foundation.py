"""The CLI as a user runs it: tokens, exit codes, and no accidental databases."""

from __future__ import annotations

from pathlib import Path

from integrator.settings import Settings
from tests.support import ServiceProcess, free_port, json_of, run_cli, settings_env


def test_tokens_create_prints_the_token_once_and_list_never_shows_it(settings: Settings) -> None:
    """`tokens create` prints the token (plain or JSON); `tokens list` shows names and roles."""
    env = settings_env(settings)
    plain = run_cli("tokens", "create", "--role", "operator", "--name", "ops", env=env)
    assert plain.returncode == 0, plain.stderr
    token = plain.stdout.strip()
    assert token.startswith("itg_")
    as_json = run_cli("tokens", "create", "--role", "reader", "--name", "r", "--json", env=env)
    assert json_of(as_json)["token"].startswith("itg_")
    listed = run_cli("tokens", "list", env=env)
    assert listed.returncode == 0
    assert "ops\toperator\tactive" in listed.stdout
    assert token not in listed.stdout


def test_cli_maps_answers_to_exit_codes(settings: Settings, service: ServiceProcess) -> None:
    """0 ok, 1 refused, 2 bad input, 3 unreachable; each failure one readable line."""
    env = settings_env(settings, INTEGRATOR_URL=service.url)
    token = run_cli("tokens", "create", "--role", "reader", "--name", "me", env=env).stdout.strip()

    ok = run_cli("whoami", env={**env, "INTEGRATOR_TOKEN": token})
    assert (ok.returncode, ok.stdout.strip()) == (0, "me (reader)")

    refused = run_cli("whoami", env={**env, "INTEGRATOR_TOKEN": "itg_nope_nope"})
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "not valid" in refused.stderr

    bad = run_cli("tokens", "create", "--role", "emperor", "--name", "x", env=env)
    assert bad.returncode == 2
    assert bad.stderr.startswith("integrator: unknown role") and "Traceback" not in bad.stderr

    usage = run_cli("tokens", "create", "--name", "x", env=env)
    assert usage.returncode == 2 and "--role" in usage.stderr

    down = run_cli(
        "whoami",
        env={**env, "INTEGRATOR_TOKEN": token, "INTEGRATOR_URL": f"http://127.0.0.1:{free_port()}"},
    )
    assert down.returncode == 3 and "unreachable" in down.stderr

    duplicate = run_cli("tokens", "create", "--role", "reader", "--name", "me", env=env)
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr


def test_revoke_from_the_cli_takes_effect_on_the_service(
    settings: Settings, service: ServiceProcess
) -> None:
    """A revoked token stops working at once, and revoking an unknown name exits 1."""
    env = settings_env(settings, INTEGRATOR_URL=service.url)
    token = run_cli(
        "tokens", "create", "--role", "reader", "--name", "gone", env=env
    ).stdout.strip()
    assert run_cli("tokens", "revoke", "gone", env=env).returncode == 0
    assert run_cli("whoami", env={**env, "INTEGRATOR_TOKEN": token}).returncode == 1
    assert run_cli("tokens", "revoke", "never-was", env=env).returncode == 1


def test_missing_database_is_refused_not_created(tmp_path: Path) -> None:
    """A wrong working directory must not silently create an empty second database."""
    env = settings_env(Settings())
    result = run_cli("tokens", "list", env=env, cwd=tmp_path)
    assert result.returncode == 3
    assert "does not exist" in result.stderr and "integrator db upgrade" in result.stderr
    assert not (tmp_path / "integrator.db").exists()


def test_db_upgrade_creates_and_migrates_the_default_database(tmp_path: Path) -> None:
    """`integrator db upgrade` is the command that may create the SQLite file."""
    env = settings_env(Settings())
    result = run_cli("db", "upgrade", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "integrator.db").exists()
    assert run_cli("tokens", "list", env=env, cwd=tmp_path).returncode == 0


def test_invalid_configuration_is_one_line_exit_2(tmp_path: Path) -> None:
    """Lease timing that breaks the design's rules is refused at start."""
    env = settings_env(Settings(), INTEGRATOR_LEASE_TTL_SECONDS="10")
    result = run_cli("tokens", "list", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "INTEGRATOR_LEASE_TTL_SECONDS" in result.stderr and "Traceback" not in result.stderr
