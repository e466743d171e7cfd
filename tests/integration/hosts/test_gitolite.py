"""The guard behind Gitolite over SSH: real pushes by alice and integrator-bot, each with their
own key; the pusher is Gitolite's GL_USER, never anything the client says."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

from tests.integration.hosts.hosts import GitoliteHost
from tests.integration.hosts.world import HostedRepo, files_containing, remote

GITOLITE = ("--layout", "gitolite", "--identity-source", "gitolite")
NONCE = re.compile(r"integrator-push=\w")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_whole_rollout_through_gitolite(
    on_gitolite: HostedRepo, gitolite: GitoliteHost
) -> None:
    """Shadow evidence, cutover, the worker's registered push, rollback, the service down."""
    world = on_gitolite
    common_update = gitolite.home / ".gitolite" / "hooks" / "common" / "update"
    update_before = digest(common_update)
    installed = world.install(*GITOLITE)
    assert installed.returncode == 0, installed.stderr
    # install ran as root: the config git rewrote must still be the Gitolite user's
    assert (world.path / "config").stat().st_uid == gitolite.user.pw_uid
    # installed hooks survive `gitolite setup`, and Gitolite's own update hook is untouched
    gitolite.gitolite("setup")
    checked = world.cli("hooks", "check", str(world.path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "[ok] gitolite update hook" in checked.stdout
    assert (world.path / "hooks" / "update").resolve() == common_update
    assert digest(common_update) == update_before

    # shadow: alice's direct push to main lands and is recorded with Gitolite's identity,
    # whatever identity variables her client sets and offers to send
    old, new = world.head(), world.commit_on_main("shadow")
    send = " -o SendEnv=GL_USER -o SendEnv=INTEGRATOR_PUSHER"
    claims = {"GL_USER": "mallory", "INTEGRATOR_PUSHER": "mallory"}
    ssh = gitolite.keys.ssh_command("alice") + send
    pushed = world.push("alice", "main", env={**claims, "GIT_SSH_COMMAND": ssh})
    assert pushed.returncode == 0, pushed.stderr
    assert world.head() == new
    assert "after cutover this update of main would be refused" in remote(pushed)
    [recorded] = world.wait_events("push_would_reject")
    fields = recorded["fields"]
    assert (fields["pusher"], fields["identity_source"]) == ("alice", "gitolite")
    assert (fields["ref"], fields["old"], fields["new"]) == ("refs/heads/main", old, new)

    # cutover: alice's main push is refused with the remote: message, main unchanged
    world.operate("cutover", force=True)
    before = world.head()
    world.commit_on_main("refused")
    refused = world.push("alice", "main")
    assert refused.returncode != 0
    assert "integrator: refused main" in remote(refused)
    assert world.head() == before
    # ... while branches pass, whoever pushes them
    sha, branch = world.branch("feature/alice")
    assert branch.returncode == 0, branch.stderr
    assert world.head("refs/heads/feature/alice") == sha

    # the worker lands a candidate: main pushed over SSH as integrator-bot, with its nonce
    candidate = world.ready("landing")
    bot = {"GIT_SSH_COMMAND": gitolite.keys.ssh_command("integrator-bot")}
    worked = world.run_worker(world.url, bot)
    assert worked.returncode == 0, worked.stdout + worked.stderr
    assert world.candidate(candidate)["status"] == "integrated"
    landed = world.head()
    assert landed != before
    world.wait_events("registration_landed")
    bots = [e["fields"] for e in world.events("push_allowed") if e["fields"]["new"] == landed]
    assert [(f["pusher"], f["identity_source"]) for f in bots] == [("integrator-bot", "gitolite")]

    # rollback restores shadow: alice may push main again
    world.operate("rollback")
    again = world.commit_on_main("after-rollback")
    assert world.push("alice", "main").returncode == 0
    assert world.head() == again

    # a stopped service never hangs a push: shadow lets it through and says so
    world.service.stop()
    late = world.commit_on_main("service-down")
    started = time.monotonic()
    down = world.push("alice", "main")
    assert down.returncode == 0, down.stderr
    assert time.monotonic() - started < 20
    assert world.head() == late

    # no log of the hosts, the service or the worker, and no row, holds a token
    secrets = list(world.tokens.values())
    skip = {world.path / "integrator" / "token", world.tmp_path / "hook.token"}
    roots = [world.tmp_path, world.path, gitolite.home / ".gitolite" / "logs", gitolite.log]
    assert files_containing(roots, secrets, skip) == []
    rows = world.database_text()
    assert rows and [i for i, s in enumerate(secrets) if s in rows] == []
    # nor the worker's single-use nonce: no log shows a push option's value
    logs = [world.tmp_path / "worker.log", world.tmp_path / "service.log", gitolite.log]
    logs += sorted((gitolite.home / ".gitolite" / "logs").glob("*"))
    assert [log for log in logs if NONCE.search(log.read_text(errors="replace"))] == []
