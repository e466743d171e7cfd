"""Git fencing: a holder that stalled after its own self-fence check can never move main.

Worker A registers its commit, passes its self-fence check and is stopped (SIGSTOP, at the
test-only pause point) just before `git push`. Its lease runs out; worker B takes over, merges
the same candidate again and stops at the same point. A is resumed and pushes with the nonce
its registration gave it: main still holds the `old` A registered, so the compare-and-swap
would let it through — the hook, asking the service, is what refuses it. Then B is resumed and
lands. The outcome is judged from main itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrator.settings import Settings
from tests.gitrepos import git
from tests.support import TokenMaker
from tests.worker_support import WorkerWorld, process_gone, wait_for

#: Long enough for the stale holder's push to run while the new holder is paused with lease
#: left; short enough to wait out.
FENCING_LEASE = {
    "lease_ttl_seconds": 6.0,
    "lease_renew_interval_seconds": 0.5,
    "lease_renew_deadline_seconds": 1.0,
    "authorize_margin_seconds": 0.5,
}
PAUSE = {"INTEGRATOR_TEST_PAUSE_BEFORE_PUSH": "1"}


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    world = WorkerWorld(settings, tmp_path, tokens, lease=FENCING_LEASE).start().guard()
    try:
        yield world
    finally:
        world.close()


def paused(world: WorkerWorld, process: subprocess.Popen[bytes], log_name: str) -> None:
    """Wait until the worker says it paused and the kernel agrees it is stopped."""
    log = world.tmp_path / log_name
    wait_for(lambda: "PAUSED-BEFORE-PUSH" in log.read_text(), 60, f"{log_name} to pause")
    wait_for(lambda: _state(process.pid) == "T", 10, f"{log_name} to be stopped")


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def finish(process: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    os.kill(process.pid, signal.SIGCONT)
    return process.wait(timeout=timeout)


def stale_holder_is_refused_by_the_hook(world: WorkerWorld) -> None:
    candidate = world.ready("fenced")
    start = world.canonical.head()
    world.cutover()
    a = world.start_worker("--once", "--holder", "A", log_name="a.log", workspace="ws-a", env=PAUSE)
    b: subprocess.Popen[bytes] | None = None
    try:
        paused(world, a, "a.log")
        # B's acquire retries until A's lease has run out: that is the takeover.
        b = world.start_worker(
            "--once", "--holder", "B", log_name="b.log", workspace="ws-b", env=PAUSE
        )
        paused(world, b, "b.log")
        stale, current = world.registrations()
        assert stale.epoch < current.epoch and stale.old == current.old == start

        assert finish(a) == 1, (world.tmp_path / "a.log").read_text()
        assert world.canonical.head() == start, "the stale holder moved main"
        assert "integrator: refused main" in (world.tmp_path / "a.log").read_text()

        assert finish(b) == 0, (world.tmp_path / "b.log").read_text()
    finally:
        for process in (a, b):
            if process is not None and not process_gone(process.pid):
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
                process.wait()

    # Judged from main: one new first-parent commit, B's, explained by B's registration.
    bare = world.canonical.bare
    assert git("rev-list", "--first-parent", f"{start}..main", cwd=bare).split() == [current.new]
    assert git("rev-parse", "main", cwd=bare) == current.new
    assert stale.new not in git("rev-list", "main", cwd=bare).split()
    message = git("show", "--no-patch", "--format=%B", "main", cwd=bare)
    assert f"Integrator-Epoch: {current.epoch}" in message
    assert f"Integrator-Attempt: {current.attempt}" in message
    statuses = {r.id: r.status for r in world.registrations()}
    assert statuses[current.id] == "landed" and statuses[stale.id] != "landed"
    assert world.candidate(candidate)["status"] == "integrated"
    assert len(world.events("integration_completed")) == 1


def test_a_holder_resumed_after_a_takeover_pushes_its_old_nonce_and_the_hook_refuses_it(
    world: WorkerWorld,
) -> None:
    """A paused past its TTL, B takes over: A's push is refused, main holds B's lineage."""
    stale_holder_is_refused_by_the_hook(world)


@pytest.mark.stress
@pytest.mark.parametrize("round_", range(10))
def test_git_fencing_repeated(world: WorkerWorld, round_: int) -> None:
    """The same takeover, again and again: a stale holder never moves main."""
    stale_holder_is_refused_by_the_hook(world)
