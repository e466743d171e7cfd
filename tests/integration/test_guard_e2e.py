"""The guard end to end: hooks installed by the CLI, a real service, real `git push`.

Pushes reach the server through a transport that sets the pusher on the
server side (`env -i … git-receive-pack`). Outcomes are judged
from the repository's refs themselves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from integrator.settings import Settings
from tests.gitrepos import Canonical, git
from tests.support import ServiceProcess, json_of, run_cli, settings_env


class Guarded:
    """A canonical repository guarded by our hooks and a running service."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.canonical = Canonical(root)
        configured = settings.model_copy(update={"repo": str(self.canonical.bare)})
        self.service = ServiceProcess(configured, root / "service.log")
        self.service.start()
        base = settings_env(configured, INTEGRATOR_URL=self.service.url)
        self.operator_env = {**base, "INTEGRATOR_TOKEN": self.token(base, "operator")}
        self.reader = {"Authorization": f"Bearer {self.token(base, 'reader')}"}
        token_file = root / "hook.token"
        token_file.write_text(self.token(base, "hook") + "\n")
        installed = run_cli(
            "hooks", "install", str(self.canonical.bare), "--url", self.service.url,
            "--token-file", str(token_file), "--identity-source", "plain", env=base,
        )  # fmt: skip
        assert installed.returncode == 0, installed.stderr

    @staticmethod
    def token(env: dict[str, str], role: str) -> str:
        created = run_cli("tokens", "create", "--role", role, "--name", f"{role}-e2e", env=env)
        assert created.returncode == 0, created.stderr
        return created.stdout.strip()

    def cli(self, *args: str) -> Any:
        return run_cli(*args, env=self.operator_env)

    def events(self, type_name: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.service.url}/v1/events", params={"type": type_name}, headers=self.reader
        )
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def wait_events(self, type_name: str, count: int, timeout: float = 15.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(type_name)
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{count} {type_name} events did not arrive")

    def refs(self) -> str:
        return git("for-each-ref", "--format=%(refname) %(objectname)", cwd=self.canonical.bare)


@pytest.fixture
def guarded(tmp_path: Path, settings: Settings) -> Iterator[Guarded]:
    world = Guarded(tmp_path, settings)
    yield world
    world.service.stop()


def remote(result: Any) -> str:
    return "\n".join(line for line in result.stderr.splitlines() if line.startswith("remote:"))


def test_the_cli_installs_hooks_that_check_reports_healthy(guarded: Guarded) -> None:
    """hooks check: installed, executable, configured, service reachable, token valid."""
    checked = guarded.cli("hooks", "check", str(guarded.canonical.bare))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_shadow_records_a_human_main_push_and_lets_it_land(guarded: Guarded) -> None:
    """push_would_reject with pusher, ref, old, new and identity source; main moved."""
    old = guarded.canonical.head()
    new = guarded.canonical.new_commit_on_main("shadow")
    pushed = guarded.canonical.push_as("alice", "main")
    assert pushed.returncode == 0, pushed.stderr
    assert guarded.canonical.head() == new
    assert "after cutover this update of main would be refused" in remote(pushed)
    [recorded] = guarded.events("push_would_reject")
    fields = recorded["fields"]
    assert (fields["pusher"], fields["identity_source"]) == ("alice", "plain")
    assert (fields["ref"], fields["old"], fields["new"]) == ("refs/heads/main", old, new)


def test_cutover_refuses_humans_on_main_while_branches_pass_and_rollback_restores(
    guarded: Guarded,
) -> None:
    """The issue's acceptance, from the CLI: evidence, refused cutover, forced, rollback."""
    guarded.canonical.new_commit_on_main("before")
    assert guarded.canonical.push_as("alice", "main").returncode == 0

    evidence = guarded.cli("evidence", "--json")
    assert evidence.returncode == 1 and json_of(evidence)["complete"] is False
    refused = guarded.cli("cutover", "--reason", "try")
    assert refused.returncode == 1 and "blocker: shadow_ran" in refused.stderr
    forced = guarded.cli("cutover", "--force", "--reason", "go")
    assert forced.returncode == 0 and "forced" in forced.stdout

    before = guarded.refs()
    guarded.canonical.new_commit_on_main("after")
    human = guarded.canonical.push_as("alice", "main")
    assert human.returncode != 0
    assert "integrator: refused main" in remote(human)
    assert "integrator submit --slug" in remote(human)
    assert guarded.refs() == before

    branch_sha = guarded.canonical.branch("feature/ok")
    assert guarded.canonical.head("refs/heads/feature/ok") == branch_sha

    rolled = guarded.cli("rollback", "--reason", "incident")
    assert rolled.returncode == 0 and "mode shadow" in rolled.stdout
    again = guarded.canonical.push_as("alice", "main")
    assert again.returncode == 0, again.stderr


@pytest.fixture
def in_cutover(guarded: Guarded) -> Guarded:
    assert guarded.cli("cutover", "--force", "--reason", "test").returncode == 0
    return guarded


def test_a_mixed_push_leaves_both_refs_unchanged_and_names_main(in_cutover: Guarded) -> None:
    """One verdict per push: the branch is refused with main, and the message says why."""
    canonical = in_cutover.canonical
    git("checkout", "-q", "-b", "side", cwd=canonical.work)
    canonical.commit("side.txt", "side\n", "side work")
    canonical.new_commit_on_main("mixed")
    before = in_cutover.refs()
    result = canonical.push_as("alice", "main", "side")
    assert result.returncode != 0
    text = remote(result)
    assert "refused main" in text and "were not updated either (side)" in text
    assert in_cutover.refs() == before


def test_a_push_to_a_symbolic_alias_of_main_is_refused(in_cutover: Guarded) -> None:
    """An alias moves main: it counts as a push to main."""
    canonical = in_cutover.canonical
    git("symbolic-ref", "refs/heads/trunk", "refs/heads/main", cwd=canonical.bare)
    sha = canonical.new_commit_on_main("alias")
    result = canonical.push_as("alice", f"{sha}:refs/heads/trunk")
    assert result.returncode != 0 and "an alias of main" in remote(result)
    assert canonical.head() != sha


def test_the_integrator_identity_without_a_registration_is_refused(in_cutover: Guarded) -> None:
    """Identity is attribution, not authority."""
    in_cutover.canonical.new_commit_on_main("bot")
    result = in_cutover.canonical.push_as("integrator-bot", "main")
    assert result.returncode != 0
    assert "you are the integrator but sent no registration" in remote(result)


def test_delete_and_force_push_of_main_are_refused(in_cutover: Guarded) -> None:
    """Nobody deletes or rewinds main in cutover."""
    canonical = in_cutover.canonical
    head = canonical.head()
    deleted = canonical.push_as("alice", ":refs/heads/main")
    assert deleted.returncode != 0 and "deleting a protected ref" in remote(deleted)
    git("checkout", "-q", "-B", "main", "origin/main", cwd=canonical.work)
    git("commit", "-q", "--amend", "-m", "rewritten", cwd=canonical.work)
    rewound = canonical.push_as("alice", "+main")
    assert rewound.returncode != 0 and "non-fast-forward" in remote(rewound)
    assert canonical.head() == head


def test_post_receive_reports_branch_pushes_without_delaying_the_push(guarded: Guarded) -> None:
    """branch_pushed arrives from post-receive; the push itself does not wait for it."""
    sha = guarded.canonical.branch("feature/report")
    [pushed] = guarded.wait_events("branch_pushed", 1)
    assert pushed["fields"]["branch"] == "feature/report" and pushed["fields"]["sha"] == sha
    assert pushed["fields"]["pusher"] in ("unknown", "alice")


def test_the_drill_is_recorded_from_the_cli(guarded: Guarded) -> None:
    """rollback --drill in shadow: a recorded round trip with the refusal observed."""
    drilled = guarded.cli("rollback", "--drill", "--reason", "rehearsal")
    assert drilled.returncode == 0
    assert "refusal observed in cutover: True" in drilled.stdout
    assert "mode shadow" in drilled.stdout


def test_each_hook_reports_its_own_round_trip_with_its_next_push(guarded: Guarded) -> None:
    """The hook times its push check and sends it with the next one; /metrics shows it."""
    for name in ("first", "second", "third"):
        guarded.canonical.new_commit_on_main(name)
        assert guarded.canonical.push_as("alice", "main").returncode == 0
    scraped = httpx.get(f"{guarded.service.url}/metrics", headers=guarded.reader).text
    counts = [
        line.split()[-1]
        for line in scraped.splitlines()
        if line.startswith("integrator_hook_round_trip_seconds_count")
    ]
    assert counts == ["2.0"], scraped  # the first push had no earlier round trip to report
