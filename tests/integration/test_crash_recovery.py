"""A worker killed with SIGKILL between its push and recording the outcome loses nothing and
integrates nothing twice.

Real processes throughout: the service, `integrator worker`, `git push` through a transport
that sets the pusher on the server side, the installed hooks. To hold the worker inside
`git push` after the service authorized its registration, a hook on the server is wrapped:
a post-receive that waits after main moved (the push landed), or a pre-receive that waits
after the service authorized it and then refuses (the push did not land). The worker is
killed while it waits; the wrapper is then let go. Outcomes are judged from main itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from integrator.settings import Settings
from tests.gitrepos import git
from tests.support import TokenMaker
from tests.worker_support import WorkerWorld, first_parents, process_gone, trailers, wait_for

#: The wrapper waits at most this long (600 times 50 ms) for the test to let it go.
_WAIT = 'i=0; while [ ! -e "{opened}" ] && [ "$i" -lt 600 ]; do sleep 0.05; i=$((i+1)); done\n'
#: After the real post-receive (which reports the push in the background), main has moved.
POST_RECEIVE = '#!/bin/sh\n"$(dirname "$0")/post-receive.real"\n'
#: The push lands but its report is lost: post-receive never tells the service.
POST_RECEIVE_REPORT_LOST = "#!/bin/sh\ncat >/dev/null\n"
#: The service authorized the update; then the push is refused (main does not move).
PRE_RECEIVE_THEN_REFUSE = '#!/bin/sh\n"$(dirname "$0")/pre-receive.real" || exit 1\n'


@dataclass(frozen=True)
class Gate:
    """Where a wrapped hook says it is waiting, and the file that lets it go on."""

    reached: Path
    opened: Path
    passed: Path

    def open(self) -> None:
        self.opened.touch()


def wrap_hook(world: WorkerWorld, name: str, head: str, *, refuse: bool = False) -> Gate:
    """Replace the server's `name` hook by `head` followed, on the first push only, by a wait
    at a gate; after the gate the hook exits 1 when `refuse`, else 0."""
    hooks = world.canonical.bare / "hooks"
    (hooks / name).rename(hooks / f"{name}.real")
    gate = Gate(*(world.tmp_path / f"{name}.{s}" for s in ("reached", "opened", "passed")))
    script = hooks / name
    script.write_text(
        f"{head}"
        f'[ -e "{gate.reached}" ] && exit 0\n'
        f'touch "{gate.reached}"\n' + _WAIT.format(opened=gate.opened) + f'touch "{gate.passed}"\n'
        f"exit {1 if refuse else 0}\n"
    )
    script.chmod(0o755)
    return gate


def block_after_post_receive(world: WorkerWorld, *, reported: bool = True) -> Gate:
    """The first push lands and its pusher then waits in `git push`."""
    return wrap_hook(world, "post-receive", POST_RECEIVE if reported else POST_RECEIVE_REPORT_LOST)


def block_after_authorization(world: WorkerWorld) -> Gate:
    """The first push is authorized by the service, its pusher waits, and it is refused."""
    return wrap_hook(world, "pre-receive", PRE_RECEIVE_THEN_REFUSE, refuse=True)


def kill_when(process: subprocess.Popen[bytes], condition: Callable[[], object], what: str) -> None:
    """SIGKILL the worker (only it: its `git push` child is left to finish) once `condition`."""
    wait_for(condition, 60, what)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def release(process: subprocess.Popen[bytes], gate: Gate) -> None:
    """Let the wrapped hook go on and wait until it did; never leave the worker running."""
    gate.open()
    if not process_gone(process.pid):
        process.kill()
        process.wait()
    if gate.reached.exists():
        wait_for(gate.passed.exists, 30, "the wrapped hook to finish")


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    with WorkerWorld(settings, tmp_path, tokens).start().guard() as world:
        yield world


@pytest.mark.parametrize("method", ["merge", "squash"])
def test_a_worker_killed_after_its_push_landed_is_recorded_by_the_next_holder_without_merging_again(
    world: WorkerWorld, method: str
) -> None:
    """Killed in `git push` after main moved: the next holder records the landed commit from
    its registration — one new first-parent commit, integrated once, no second merge."""
    candidate = world.ready("landed")
    start = world.canonical.head()
    world.cutover()
    gate = block_after_post_receive(world)
    a = world.start_worker("--once", "--holder", "A", "--merge-method", method,
                           log_name="a.log", workspace="ws-a")  # fmt: skip
    try:
        kill_when(a, lambda: gate.reached.exists() and _statuses(world) == ["landed"],
                  "the push to land and post-receive to report it")  # fmt: skip
    finally:
        release(a, gate)
    (registration,) = world.registrations()
    assert world.canonical.head() == registration.new
    assert world.candidate(candidate)["status"] == "in_progress"
    assert world.events("integration_completed") == []

    assert next_holder(world, "--merge-method", method) == 0, (world.tmp_path / "b.log").read_text()
    assert first_parents(world, start) == [registration.new]
    assert git("rev-parse", f"{registration.new}^1", cwd=world.canonical.bare) == start
    assert trailers(world, registration.new)["Integrator-Attempt"] == registration.attempt
    assert [r.id for r in world.registrations()] == [registration.id], "merged and pushed again"
    assert world.candidate(candidate)["status"] == "integrated"
    (completed,) = world.events("integration_completed")
    assert completed.fields["main_sha"] == registration.new
    integrated = [
        e for e in world.events("candidate_status_changed") if e.fields["to"] == "integrated"
    ]
    assert [e.fields["reason"] for e in integrated] == [
        f"reconciled: registration {registration.id} of epoch {registration.epoch} landed"
    ]
    (taken_over,) = world.events("lease_taken_over")
    assert taken_over.fields["holder"] == "B" and taken_over.fields["previous_holder"] == "A"


@pytest.mark.parametrize("method", ["merge", "squash"])
def test_a_worker_killed_while_its_authorized_push_did_not_land_is_processed_again_and_lands_once(
    world: WorkerWorld, method: str
) -> None:
    """Killed in `git push` after the service authorized it; the push is refused: the next
    holder fails that registration, hands the candidate out first again (its position kept),
    and it lands once, before the candidate queued behind it."""
    first = world.ready("first")
    later = world.ready("later")
    position = world.candidate(first)["position"]
    start = world.canonical.head()
    world.cutover()
    gate = block_after_authorization(world)
    a = world.start_worker("--once", "--holder", "A", "--merge-method", method,
                           log_name="a.log", workspace="ws-a")  # fmt: skip
    try:
        kill_when(a, lambda: gate.reached.exists() and _statuses(world) == ["authorized"],
                  "the service to authorize the push")  # fmt: skip
    finally:
        release(a, gate)
    assert world.canonical.head() == start
    assert world.candidate(first)["status"] == "in_progress"

    assert next_holder(world, "--merge-method", method) == 0, (world.tmp_path / "b.log").read_text()
    stale, again, behind = world.registrations()
    assert stale.status == "failed" and (again.status, behind.status) == ("landed", "landed")
    assert (again.candidate_id, behind.candidate_id) == (first, later)
    assert first_parents(world, start) == [again.new, behind.new]
    assert stale.new not in git("rev-list", "main", cwd=world.canonical.bare).split()
    assert world.candidate(first)["position"] == position
    assert world.candidate(first)["status"] == world.candidate(later)["status"] == "integrated"
    completed = world.events("integration_completed")
    assert [e.fields["slug"] for e in completed] == ["first", "later"]
    assert [e.fields["main_sha"] for e in completed] == [again.new, behind.new]


def next_holder(world: WorkerWorld, *extra: str) -> int:
    """Worker B, in a workspace of its own, run `--once` to the end (it takes the lease over
    once the killed holder's grant has run out)."""
    b = world.start_worker("--once", "--holder", "B", *extra, log_name="b.log", workspace="ws-b")
    try:
        return b.wait(timeout=90)
    finally:
        if b.poll() is None:
            b.kill()
            b.wait()


def _statuses(world: WorkerWorld) -> list[str]:
    return [r.status for r in world.registrations()]
