"""The guard behind `git http-backend` and lighttpd with basic auth: the pusher is the web
server's REMOTE_USER; the hook runs as the web server's user without HOME; the pusher's password
(HTTP_AUTHORIZATION in the hook's environment) and the headers a client chooses are never
logged, recorded or trusted."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path

from integrator import hookinstall
from tests.integration.hosts.hosts import HOOK_PYTHON, HttpHost
from tests.integration.hosts.world import HostedRepo, files_containing, remote
from tests.support import REPO_ROOT

HTTP = ("--identity-source", "http")
#: Headers a client may send to pass for someone else: the web server turns them into HTTP_*.
SPOOFED = ("Remote-User: mallory", "X-Remote-User: mallory", "X-Forwarded-User: mallory")
#: A hook that was there before ours: it notes what the web server handed the hooks (whether a
#: password and a HOME were there, never their values) and is chained before ours.
WITNESS = """#!/bin/sh
[ -n "$HTTP_AUTHORIZATION" ] && echo present >witness-authorization
echo "${HOME-unset}" >witness-home
cat >/dev/null
"""


def test_the_rollout_through_smart_http_leaks_no_password(
    on_http: HostedRepo, web: HttpHost
) -> None:
    """Shadow evidence from REMOTE_USER, cutover refusal, branches, rollback, service down;
    then no log, event or row of the run holds the password or a token."""
    world = on_http
    witness = world.path / "hooks" / "pre-receive"
    witness.write_text(WITNESS)
    witness.chmod(0o755)
    installed = world.install(*HTTP, "--chain-existing")
    assert installed.returncode == 0, installed.stderr
    checked = world.cli("hooks", "check", str(world.path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "[ok] http receive-pack" in checked.stdout

    # shadow: alice's main push lands, recorded as alice from REMOTE_USER whatever she claims
    old, new = world.head(), world.commit_on_main("shadow")
    pushed = world.push("alice", "main", headers=SPOOFED)
    assert pushed.returncode == 0, pushed.stderr
    assert world.head() == new
    assert (world.path / "witness-authorization").read_text() == "present\n"
    assert (world.path / "witness-home").read_text() == "unset\n"
    [recorded] = world.wait_events("push_would_reject")
    fields = recorded["fields"]
    assert (fields["pusher"], fields["identity_source"]) == ("alice", "http")
    assert (fields["ref"], fields["old"], fields["new"]) == ("refs/heads/main", old, new)

    # cutover: refused with the remote: message, main unchanged; a branch by another user passes
    world.operate("cutover", force=True)
    before = world.head()
    world.commit_on_main("refused")
    refused = world.push("alice", "main")
    assert refused.returncode != 0
    assert "integrator: refused main" in remote(refused)
    assert world.head() == before
    sha, branch = world.branch("feature/bot", user="integrator-bot")
    assert branch.returncode == 0, branch.stderr
    assert world.head("refs/heads/feature/bot") == sha
    [reported] = world.wait_events("branch_pushed", where=lambda f: f["branch"] == "feature/bot")
    assert reported["fields"]["pusher"] == "integrator-bot"

    # the service down in cutover: main refused at once (fail closed), branches still pass
    world.service.stop()
    world.commit_on_main("closed")
    started = time.monotonic()
    closed = world.push("alice", "main")
    assert closed.returncode != 0 and world.head() == before
    assert time.monotonic() - started < 20
    world.service.start()

    # rollback restores shadow
    world.operate("rollback")
    again = world.commit_on_main("after-rollback")
    assert world.push("alice", "main").returncode == 0
    assert world.head() == again

    # a stopped service never hangs a push
    world.service.stop()
    late = world.commit_on_main("service-down")
    started = time.monotonic()
    down = world.push("alice", "main", headers=SPOOFED)
    assert down.returncode == 0, down.stderr
    assert time.monotonic() - started < 20
    assert world.head() == late

    # nothing of the run holds a password (plain or base64) or a token
    secrets = list(world.tokens.values())
    for user, password in web.passwords.items():
        secrets += [password, base64.b64encode(f"{user}:{password}".encode()).decode()]
    # where they belong: the web server's password file, the hook's and the operator's token
    skip = {web.root / "users", world.path / "integrator" / "token", world.tmp_path / "hook.token"}
    leaks = files_containing([world.tmp_path, web.root], secrets, skip)
    assert leaks == []
    assert files_containing([web.root], secrets, set()) != []  # the search does find them
    rows = world.database_text()
    assert rows and [i for i, s in enumerate(secrets) if s in rows] == []
    assert "mallory" not in rows


def receive_pack_line(repo: Path) -> str:
    [item] = [i for i in hookinstall.check(repo) if i.name == "http receive-pack"]
    return f"[{'ok' if item.ok else 'FAIL'}] {item.detail}"


def test_check_fails_when_http_backend_would_refuse_every_push(tmp_path: Path) -> None:
    """`http.receivepack=false`: git http-backend refuses pushes before any hook runs."""
    repo = tmp_path / "web.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True, cwd=REPO_ROOT)
    hookinstall.install(
        repo, url="http://127.0.0.1:9", token="t", repository="web", python=HOOK_PYTHON,
        identity_source="http",
    )  # fmt: skip
    assert receive_pack_line(repo).startswith("[ok]")
    subprocess.run(["git", f"--git-dir={repo}", "config", "http.receivepack", "false"], check=True)
    assert receive_pack_line(repo).startswith("[FAIL] http.receivepack=false")
