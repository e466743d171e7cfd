"""pre-receive against real git pushes and a recording stand-in of the service."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.hooks.conftest import (
    FakeService,
    ServerRepo,
    dead_url,
    fixed,
    git,
    remote_lines,
    verdict,
)

ZERO = "0" * 40
HOOKS = Path(__file__).resolve().parents[3] / "hooks"


def test_allowed_push_moves_main_and_sends_identity_resolved_refs_and_facts(
    installed: ServerRepo, fake: FakeService
) -> None:
    """An allowed verdict lets the push through; the check names the server-side pusher."""
    old = installed.ref("main")
    new = installed.commit("second")

    result = installed.push("main")

    assert result.returncode == 0, result.stderr
    assert installed.ref("main") == new
    (check,) = fake.received("/v1/push-checks")
    assert check.headers["authorization"] == f"Bearer {fake.token}"
    body = check.body
    assert body["repository"] == "canonical"
    assert body["hook_version"] == "1"
    assert body["hook_instance"].endswith(f":{installed.bare}")
    assert (body["pusher"], body["identity_source"]) == ("alice", "plain")
    assert body["registration_nonce"] is None
    assert body["updates"] == [
        {
            "ref": "refs/heads/main",
            "resolved_ref": "refs/heads/main",
            "old": old,
            "new": new,
            "fast_forward": True,
            "first_parent": True,
        }
    ]


def test_facts_tell_fast_forward_from_first_parent_and_rewinds(
    installed: ServerRepo, fake: FakeService
) -> None:
    """fast_forward and first_parent are computed in the quarantine for each kind of update."""
    base = git("rev-parse", "main", cwd=installed.work)
    git("checkout", "--quiet", "-b", "side", cwd=installed.work)
    installed.commit("on side")
    two_ahead = installed.commit("on side again")
    git("checkout", "--quiet", "main", cwd=installed.work)
    installed.commit("main moves on")

    assert installed.push("side:main").returncode == 0  # fast-forward; new^1 is not old
    assert installed.push("+main:main").returncode == 0  # a rewrite: not a fast-forward

    side, rewind = (r.body["updates"][0] for r in fake.received("/v1/push-checks"))
    assert (side["old"], side["new"]) == (base, two_ahead)
    assert (side["fast_forward"], side["first_parent"]) == (True, False)
    assert (rewind["old"], rewind["fast_forward"], rewind["first_parent"]) == (
        two_ahead,
        False,
        False,
    )


def test_refusing_verdict_keeps_main_and_shows_the_service_messages(
    installed: ServerRepo, fake: FakeService
) -> None:
    """A refusal exits 1: git refuses the push and shows the service's words as remote: lines."""
    messages = ("integrator: refused refs/heads/main: only the integrator lands on main", "x: y")
    fake.respond("POST", "/v1/push-checks", verdict(allow=False, mode="cutover", messages=messages))
    old = installed.ref("main")
    installed.commit("second")

    result = installed.push("main")

    assert result.returncode != 0
    assert installed.ref("main") == old
    assert "pre-receive hook declined" in result.stderr
    assert list(messages) == [line for line in remote_lines(result.stderr) if line][:2]


def test_refused_mixed_push_leaves_every_ref_unchanged(
    installed: ServerRepo, fake: FakeService
) -> None:
    """One verdict per push: refusing main also leaves the branch pushed with it unchanged."""
    fake.respond("POST", "/v1/push-checks", verdict(allow=False, mode="cutover"))
    old = installed.ref("main")
    installed.commit("second")
    git("branch", "topic", cwd=installed.work)

    result = installed.push("main", "topic")

    assert result.returncode != 0
    assert installed.ref("main") == old
    assert installed.ref("refs/heads/topic") is None
    (check,) = fake.received("/v1/push-checks")
    refs = {u["ref"]: u for u in check.body["updates"]}
    assert set(refs) == {"refs/heads/main", "refs/heads/topic"}
    assert refs["refs/heads/topic"]["old"] == ZERO
    assert refs["refs/heads/topic"]["fast_forward"] is None


def test_push_to_a_symbolic_alias_of_main_is_checked_as_main(
    installed: ServerRepo, fake: FakeService
) -> None:
    """A push to an alias moves main, so it is sent with resolved_ref refs/heads/main."""
    git("symbolic-ref", "refs/heads/alias", "refs/heads/main", cwd=installed.bare)
    old = installed.ref("main")
    new = installed.commit("through the alias")

    result = installed.push("main:refs/heads/alias")

    assert result.returncode == 0, result.stderr
    assert installed.ref("main") == new
    (update,) = fake.received("/v1/push-checks")[0].body["updates"]
    assert (update["ref"], update["resolved_ref"]) == ("refs/heads/alias", "refs/heads/main")
    assert (update["old"], update["fast_forward"], update["first_parent"]) == (old, True, True)


def test_push_option_integrator_push_arrives_as_the_registration_nonce(
    installed: ServerRepo, fake: FakeService
) -> None:
    """`integrator-push=<nonce>` among the push options is sent as registration_nonce."""
    installed.commit("second")

    result = installed.push(
        "main", client_config=("push.pushOption=other=1", "push.pushOption=integrator-push=abc")
    )

    assert result.returncode == 0, result.stderr
    assert fake.received("/v1/push-checks")[0].body["registration_nonce"] == "abc"


def test_answer_is_cached_with_mode_version_and_protected_refs(
    installed: ServerRepo, fake: FakeService
) -> None:
    """The last answer's mode and protected refs are kept for the fallback."""
    fake.respond("POST", "/v1/push-checks", verdict(mode="cutover", mode_version=7))
    git("branch", "topic", cwd=installed.work)

    assert installed.push("topic").returncode == 0

    cache = json.loads((installed.state_dir / "last.json").read_text())
    assert (cache["mode"], cache["mode_version"]) == ("cutover", 7)
    assert cache["protected_refs"] == ["refs/heads/main"]
    assert cache["seen_at"].endswith("Z")


def test_a_push_is_checked_and_recorded_once_even_when_the_service_protects_more_than_the_cache(
    installed: ServerRepo, fake: FakeService
) -> None:
    """Never a second ask for facts: a ref the cache did not know as protected goes without them."""
    git("push", "--quiet", str(installed.bare), "main:refs/heads/release", cwd=installed.work)
    protected = ("refs/heads/main", "refs/heads/release")
    fake.respond("POST", "/v1/push-checks", verdict(protected=protected))
    installed.commit("release fix")
    before = len(fake.received("/v1/push-checks"))

    assert installed.push("main:release").returncode == 0

    (check,) = fake.received("/v1/push-checks")[before:]
    assert check.body["updates"][0]["fast_forward"] is None
    cache = json.loads((installed.state_dir / "last.json").read_text())
    assert cache["protected_refs"] == list(protected)  # the next push gets its facts


def test_a_push_carrying_a_nonce_gets_facts_for_every_update(
    installed: ServerRepo, fake: FakeService
) -> None:
    """The integrator's push has its facts whatever the cache knows, so one ask decides it."""
    git("push", "--quiet", str(installed.bare), "main:refs/heads/release", cwd=installed.work)
    fake.respond("POST", "/v1/push-checks", verdict(protected=("refs/heads/release",)))
    installed.commit("release fix")
    before = len(fake.received("/v1/push-checks"))

    pushed = installed.push("main:release", client_config=("push.pushOption=integrator-push=n",))

    assert pushed.returncode == 0, pushed.stderr
    (check,) = fake.received("/v1/push-checks")[before:]
    update = check.body["updates"][0]
    assert (update["fast_forward"], update["first_parent"]) == (True, True)


def test_service_down_without_a_cache_allows_in_shadow_says_so_and_spools(
    repo: ServerRepo,
) -> None:
    """Nothing cached means shadow: the push passes with one stderr line and is spooled."""
    repo.install(url=dead_url())
    new = repo.commit("second")

    result = repo.push("main")

    assert result.returncode == 0, result.stderr
    assert repo.ref("main") == new
    assert any(
        line.startswith("integrator: service unavailable (")
        and line.endswith("push allowed in shadow mode")
        for line in remote_lines(result.stderr)
    )
    (item,) = repo.spooled()
    assert item["decided_locally"] is True
    assert (item["allow"], item["bypass"], item["mode"]) == (True, False, "shadow")
    assert item["updates"][0]["new"] == new and item["pusher"] == "alice"
    assert item["decided_at"].endswith("Z") and item["reason_code"] == "service_unavailable"


def test_service_down_in_shadow_refuses_a_push_carrying_a_registration_nonce(
    repo: ServerRepo,
) -> None:
    """The integrator never moves main outside cutover: a nonce push is refused in fallback too."""
    repo.install(url=dead_url())
    old = repo.ref("main")
    repo.commit("second")

    result = repo.push("main", client_config=("push.pushOption=integrator-push=n1",))

    assert result.returncode != 0 and repo.ref("main") == old
    assert "integrator-push is accepted only in cutover, not shadow" in result.stderr
    (item,) = repo.spooled()
    assert (item["allow"], item["reason_code"]) == (False, "registration_outside_cutover")
    assert item["registration_nonce"] == "n1"


def test_service_down_in_shadow_lets_a_nonce_push_of_unprotected_refs_through(
    repo: ServerRepo,
) -> None:
    """One rule, one answer: a push touching only unprotected refs passes, nonce or not."""
    repo.install(url=dead_url())
    git("branch", "topic", cwd=repo.work)

    result = repo.push("topic", client_config=("push.pushOption=integrator-push=n1",))

    assert result.returncode == 0, result.stderr
    assert repo.ref("refs/heads/topic") is not None
    (item,) = repo.spooled()
    assert (item["allow"], item["reason_code"]) == (True, "service_unavailable")


def cutover_then_down(repo: ServerRepo, fake: FakeService, **options: object) -> None:
    """The hook sees cutover once (and caches it); then the service goes away."""
    repo.install(**options)
    fake.respond("POST", "/v1/push-checks", verdict(mode="cutover"))
    git("branch", "seen-cutover", cwd=repo.work)
    assert repo.push("seen-cutover").returncode == 0
    fake.go_down()


def test_cached_cutover_with_service_down_refuses_main_but_lets_branches_through(
    repo: ServerRepo, fake: FakeService
) -> None:
    """In cutover an unreachable service refuses protected updates only, and says what to do."""
    cutover_then_down(repo, fake)
    old = repo.ref("main")
    repo.commit("second")
    git("branch", "topic", cwd=repo.work)

    refused = repo.push("main")
    branch = repo.push("topic")

    assert refused.returncode != 0 and repo.ref("main") == old
    text = "\n".join(remote_lines(refused.stderr))
    assert "integrator: service unavailable (connection failed" in text
    assert "refused: refs/heads/main" in text and "protected in cutover mode" in text
    assert "try again in a minute" in text
    assert "integrator submit --slug <slug> --branch <branch>" in text
    assert branch.returncode == 0, branch.stderr
    assert repo.ref("refs/heads/topic") is not None
    verdicts = [(i["allow"], i["updates"][0]["ref"]) for i in repo.spooled()]
    assert verdicts == [(False, "refs/heads/main"), (True, "refs/heads/topic")]


def test_fail_open_lets_protected_pushes_through_when_the_service_is_down(
    repo: ServerRepo, fake: FakeService
) -> None:
    """Configured fail-open, cutover without the service allows and records why."""
    cutover_then_down(repo, fake, fail_open=True)
    new = repo.commit("second")

    result = repo.push("main")

    assert result.returncode == 0, result.stderr
    assert repo.ref("main") == new
    assert "configured fail-open" in result.stderr
    assert [i["reason_code"] for i in repo.spooled()] == ["fail_open"]


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_break_glass_override_is_ignored_unless_private(
    repo: ServerRepo, fake: FakeService, mode: int
) -> None:
    """An override readable by others is not honoured; the pusher is told why."""
    cutover_then_down(repo, fake)
    repo.write_override(mode)
    old = repo.ref("main")
    repo.commit("second")

    result = repo.push("main")

    assert result.returncode != 0 and repo.ref("main") == old
    assert "break-glass override ignored: its mode must be 0600" in result.stderr
    assert [i["bypass"] for i in repo.spooled()] == [False]


def test_break_glass_override_lets_protected_pushes_through_and_spools_a_bypass(
    repo: ServerRepo, fake: FakeService
) -> None:
    """A 0600 unexpired override lets main move while the service is down, recorded as bypass."""
    cutover_then_down(repo, fake)
    repo.write_override(0o600)
    new = repo.commit("second")

    result = repo.push("main")

    assert result.returncode == 0, result.stderr
    assert repo.ref("main") == new
    assert "break-glass override used (by ops" in result.stderr
    (item,) = repo.spooled()
    assert (item["allow"], item["bypass"], item["reason_code"]) == (True, True, "break_glass")
    assert item["override"]["by"] == "ops"


def test_a_fifo_in_place_of_the_break_glass_override_cannot_hold_the_push(
    repo: ServerRepo, fake: FakeService
) -> None:
    """The override is opened non-blocking and must be a regular file: a FIFO is refused at once."""
    cutover_then_down(repo, fake)
    os.mkfifo(repo.state_dir / "override.json", 0o600)
    old = repo.ref("main")
    stdin = f"{old} {'6' * 40} refs/heads/main\n".encode()

    started = time.monotonic()
    result = repo.run_hook(repo.bare / "hooks" / "pre-receive", stdin)

    assert time.monotonic() - started < 5
    assert result.returncode == 1
    assert b"break-glass override ignored: it must be a regular file" in result.stderr


def test_expired_break_glass_override_is_ignored(repo: ServerRepo, fake: FakeService) -> None:
    """An override past its expiry does nothing."""
    cutover_then_down(repo, fake)
    repo.write_override(0o600, expires_at="2001-01-01T00:00:00Z")
    repo.commit("second")

    result = repo.push("main")

    assert result.returncode != 0
    assert "break-glass override ignored: it expired" in result.stderr


def test_slow_service_cannot_hold_the_push_past_the_deadline(
    repo: ServerRepo, fake: FakeService
) -> None:
    """The deadline bounds the whole hook: a service that sleeps 10 s does not hold the push."""
    repo.install(deadline=1.0)
    fake.respond("POST", "/v1/push-checks", verdict(), delay=10.0)
    new = repo.commit("second")

    started = time.monotonic()
    result = repo.push("main")
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stderr  # shadow: allowed
    assert repo.ref("main") == new
    assert elapsed < 1.0 + 1.0, elapsed
    assert "service unavailable (deadline exceeded)" in result.stderr


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, "hook token refused (HTTP 401)"),
        (403, "hook token refused (HTTP 403)"),
        (500, "service unavailable (HTTP 500)"),
    ],
)
def test_error_answers_fall_back_and_name_the_problem(
    installed: ServerRepo, fake: FakeService, status: int, expected: str
) -> None:
    """A non-200 answer is the fallback path; a refused token points at `hooks check`."""
    fake.respond("POST", "/v1/push-checks", fixed(status, {"code": "x"}))
    installed.commit("second")

    result = installed.push("main")

    assert result.returncode == 0, result.stderr
    assert expected in result.stderr
    assert ("integrator hooks check" in result.stderr) == (status in (401, 403))


def test_unparsable_answer_falls_back(installed: ServerRepo, fake: FakeService) -> None:
    """A 200 that is not a verdict is treated as no answer."""
    fake.respond("POST", "/v1/push-checks", fixed(200, {"allow": "yes"}))
    installed.commit("second")

    result = installed.push("main")

    assert result.returncode == 0
    assert "service unavailable (unparsable answer)" in result.stderr


def test_secrets_never_reach_the_output_the_requests_or_the_spool(
    installed: ServerRepo, fake: FakeService
) -> None:
    """The token travels only in the Authorization header; the environment never travels."""
    installed.commit("second")
    secret_env = {"HTTP_AUTHORIZATION": "secret123", "GL_SECRET_THING": "secret123"}

    allowed = installed.push("main", server_env=secret_env)
    fake.go_down()
    installed.commit("third")
    fallback = installed.push("main", server_env=secret_env)

    assert allowed.returncode == 0 and fallback.returncode == 0
    spool = json.dumps(installed.spooled())
    for text in (allowed.stdout + allowed.stderr, fallback.stdout + fallback.stderr, spool):
        assert "secret123" not in text and fake.token not in text
    for request in fake.requests:
        assert b"secret123" not in request.raw and fake.token.encode() not in request.raw
        assert "secret123" not in json.dumps(request.headers)


@pytest.mark.parametrize(
    "stdin",
    [
        b"",
        b"\n\n",
        b"0000000000000000000000000000000000000000 " + b"a" * 40 + b" refs/heads/topic\r\n",
        b"junk\nmore junk here\n\xff\xfe\x00 binary\n",
        b"1" * 64 + b" " + b"2" * 64 + b" refs/heads/main\n",
        b"0" * 64 + b" " + b"3" * 64 + b" refs/tags/v1\n" + b"4" * 40 + b" x refs/notes/commits\n",
    ],
    ids=["empty", "blank-lines", "crlf", "junk", "sha256-main", "tags-notes"],
)
def test_garbage_input_is_survived_in_shadow(installed: ServerRepo, stdin: bytes) -> None:
    """Whatever arrives on stdin, the hook exits 0 in shadow without a traceback."""
    hook = installed.bare / "hooks" / "pre-receive"

    result = installed.run_hook(hook, stdin, {"GIT_PUSH_OPTION_COUNT": "many"})

    assert result.returncode == 0, result.stderr
    assert b"Traceback" not in result.stderr


def test_garbage_input_with_the_service_down_still_passes_in_shadow(repo: ServerRepo) -> None:
    """The fallback path survives malformed lines too."""
    repo.install(url=dead_url())
    stdin = b"junk\r\n" + b"1" * 64 + b" " + b"2" * 64 + b" refs/heads/main\r\n"

    result = repo.run_hook(repo.bare / "hooks" / "pre-receive", stdin)

    assert result.returncode == 0
    assert b"ignored 1 malformed input line(s)" in result.stderr
    assert b"Traceback" not in result.stderr


def test_gitlab_layout_prefixes_every_line_for_the_web_ui(
    repo: ServerRepo, fake: FakeService
) -> None:
    """Under GitLab each message line starts with GL-HOOK-ERR: so its web UI shows it."""
    result_install = repo.install(layout="gitlab", identity_source="gitlab")
    hook = result_install.hooks[0]
    assert hook == repo.bare / "custom_hooks" / "pre-receive"
    fake.respond("POST", "/v1/push-checks", verdict(allow=False, messages=("no\nreally no",)))
    old = repo.ref("main")
    stdin = f"{old} {'5' * 40} refs/heads/main\n".encode()

    result = repo.run_hook(hook, stdin, {"GL_USERNAME": "bob", "INTEGRATOR_PUSHER": "mallory"})

    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert lines == ["GL-HOOK-ERR: no", "GL-HOOK-ERR: really no"]
    body = fake.received("/v1/push-checks")[0].body
    assert (body["pusher"], body["identity_source"]) == ("bob", "gitlab")


def test_pinned_identity_source_ignores_other_variables(
    repo: ServerRepo, fake: FakeService
) -> None:
    """A pinned source reads only its own variable; USER is never an identity."""
    repo.install(identity_source="http")
    repo.commit("second")

    assert repo.push("main", server_env={"USER": "git", "GL_USER": "eve"}).returncode == 0

    body = fake.received("/v1/push-checks")[0].body
    assert (body["pusher"], body["identity_source"]) == (None, "none")


def test_shared_install_reads_the_file_beside_the_script_and_the_hosts_repository_name(
    repo: ServerRepo, fake: FakeService
) -> None:
    """Shared hooks (Gitolite common hooks, Gitaly): config beside the script, name from GL_REPO."""
    shared = repo.root / "shared-hooks"
    shared.mkdir()
    hook = shared / "pre-receive"
    hook.write_bytes((HOOKS / "pre-receive").read_bytes())
    hook.chmod(0o755)
    token_file = shared / "token"
    token_file.write_text(fake.token)
    config = {"url": fake.url, "token_file": str(token_file), "repository": "not-this-one"}
    (shared / "integrator-hook.json").write_text(json.dumps(config))
    git("config", "core.hooksPath", str(shared), cwd=repo.bare)
    repo.commit("second")

    result = repo.push("main", pusher=None, server_env={"GL_REPO": "team/app", "GL_USER": "carol"})

    assert result.returncode == 0, result.stderr
    body = fake.received("/v1/push-checks")[0].body
    assert body["repository"] == "team/app"
    assert (body["pusher"], body["identity_source"]) == ("carol", "gitolite")
    assert (repo.bare / "integrator" / "state" / "last.json").exists()


CRASHING_DRIVER = """
import importlib.machinery, importlib.util, sys
loader = importlib.machinery.SourceFileLoader("hook", sys.argv[1])
spec = importlib.util.spec_from_loader("hook", loader)
hook = importlib.util.module_from_spec(spec)
loader.exec_module(hook)
def crash(*args):
    raise KeyError("a bug in the hook")
hook.ask_with_facts = crash
sys.exit(hook.main())
"""


@pytest.mark.parametrize(("mode", "expected_rc"), [("shadow", 0), ("cutover", 1)])
def test_an_internal_error_is_the_fallback_path_and_its_traceback_stays_off_screen(
    installed: ServerRepo, mode: str, expected_rc: int
) -> None:
    """A bug never refuses a push in shadow; in cutover it refuses protected refs, as an outage."""
    (installed.state_dir / "last.json").write_text(json.dumps({"mode": mode}))
    old = installed.ref("main")
    stdin = f"{old} {'6' * 40} refs/heads/main\n".encode()

    result = subprocess.run(
        ["/usr/bin/python3", "-IS", "-c", CRASHING_DRIVER, str(HOOKS / "pre-receive")],
        input=stdin,
        cwd=installed.bare,
        env={"PATH": "/usr/bin:/bin", "GIT_DIR": "."},
        capture_output=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == expected_rc
    assert b"service unavailable (internal error: KeyError)" in result.stderr
    assert b"Traceback" not in result.stderr
    assert "a bug in the hook" in (installed.state_dir / "last-error.txt").read_text()
    assert [item["allow"] for item in installed.spooled()] == [expected_rc == 0]
