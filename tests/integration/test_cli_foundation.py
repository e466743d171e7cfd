"""The CLI as a user runs it: tokens, exit codes, and no accidental databases."""

from __future__ import annotations

from pathlib import Path

from integrator.settings import Settings
from tests.gitrepos import Canonical
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


def test_a_call_without_a_token_says_to_set_integrator_token(
    settings: Settings, service: ServiceProcess
) -> None:
    """The service's 401 to a call that sent no token becomes what to do: exit 1, one line."""
    env = settings_env(settings, INTEGRATOR_URL=service.url)
    env.pop("INTEGRATOR_TOKEN", None)
    for args in (["queue", "list"], ["whoami"], ["submit", "--slug", "s", "--branch", "b"]):
        result = run_cli(*args, env=env)
        assert result.returncode == 1, args
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith("integrator: no token: set INTEGRATOR_TOKEN")
        assert "integrator tokens create" in result.stderr


def test_empty_lists_print_their_header_and_say_they_are_empty(
    settings: Settings, service: ServiceProcess
) -> None:
    """A script or a person can tell "nothing" from "no output": a header, then one line."""
    env = settings_env(settings, INTEGRATOR_URL=service.url)
    tokens = run_cli("tokens", "list", env=env)
    assert tokens.returncode == 0, tokens.stderr
    assert tokens.stdout.splitlines() == [
        "NAME\tROLE\tSTATE",
        "no tokens yet: `integrator tokens create --role ROLE --name NAME` makes one",
    ]
    token = run_cli("tokens", "create", "--role", "reader", "--name", "r", env=env).stdout.strip()
    env["INTEGRATOR_TOKEN"] = token
    queue = run_cli("queue", "list", env=env)
    assert queue.returncode == 0, queue.stderr
    header, empty = queue.stdout.splitlines()
    assert header.split() == ["POS", "ID", "STATUS", "SLUG", "BRANCH@COMMIT"]
    assert empty == "the queue is empty"
    assert run_cli("queue", "list", "--all", env=env).stdout.splitlines()[1:] == ["no candidates"]
    events = run_cli("events", "list", "--type", "review_approved", env=env)
    assert events.stdout.splitlines() == ["SEQ\tRECORDED_AT\tTYPE\tFIELDS", "no events match"]
    assert run_cli("blocked", "list", env=env).stdout.splitlines() == ["nothing is blocked"]


def test_queue_show_takes_the_id_queue_list_prints_and_a_slug_wins_over_an_id(
    settings: Settings, tmp_path: Path
) -> None:
    """`queue show N`: the slug N if there is one (slugs may be all digits), else candidate N."""
    canonical = Canonical(tmp_path)
    configured = settings.model_copy(update={"repo": str(canonical.bare)})
    process = ServiceProcess(configured, tmp_path / "service.log")
    process.start()
    try:
        base = settings_env(configured, INTEGRATOR_URL=process.url)
        token = run_cli("tokens", "create", "--role", "reporter", "--name", "dev", env=base)
        env = {**base, "INTEGRATOR_TOKEN": token.stdout.strip()}

        def submit(slug: str, branch: str) -> int:
            canonical.branch(branch, content=f"{slug} {branch}\n")
            result = run_cli("submit", "--slug", slug, "--branch", branch, "--json", env=env)
            assert result.returncode == 0, result.stderr
            candidate: int = json_of(result)["candidate"]["id"]
            return candidate

        alpha = submit("alpha", "feat/alpha")
        numeric = submit(str(alpha), "feat/numeric")  # a slug spelled like alpha's id
        beta = submit("beta", "feat/beta")

        listed = run_cli("queue", "list", env=env).stdout.splitlines()
        ids = {line.split()[3]: line.split()[1] for line in listed[1:]}
        assert ids == {"alpha": str(alpha), str(alpha): str(numeric), "beta": str(beta)}

        shown = run_cli("queue", "show", str(beta), env=env)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.splitlines()[0].split()[1:4] == [str(beta), "waiting", "beta"]
        assert (
            json_of(run_cli("queue", "show", str(beta), "--json", env=env))["candidate"]["id"]
            == beta
        )
        slug_wins = json_of(run_cli("queue", "show", str(alpha), "--json", env=env))
        assert slug_wins["candidate"]["id"] == numeric

        newer = submit("beta", "feat/beta")  # a new head: beta's first candidate is superseded
        older = run_cli("queue", "show", str(beta), env=env)
        assert older.returncode == 0, older.stderr
        first, second, third = older.stdout.splitlines()[:3]
        assert first.startswith(f"candidate {beta}: ") and "superseded" in first
        assert second == "newest candidate of beta:"
        assert third.split()[1] == str(newer)

        unknown = run_cli("queue", "show", "987654", env=env)
        assert unknown.returncode == 1
        assert unknown.stderr == "integrator: no candidate with slug or id '987654'\n"
    finally:
        process.stop()
