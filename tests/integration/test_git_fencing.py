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
import time
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
    with WorkerWorld(settings, tmp_path, tokens, lease=FENCING_LEASE).start().guard() as world:
        yield world


def paused(world: WorkerWorld, process: subprocess.Popen[bytes], log_name: str) -> None:
    """Wait until the worker says it paused and the kernel agrees it is stopped."""
    log = world.tmp_path / log_name
    wait_for(lambda: "PAUSED-BEFORE-PUSH" in log.read_text(), 60, f"{log_name} to pause")
    wait_for(lambda: _state(process.pid) == "T", 10, f"{log_name} to be stopped")


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def finish(process: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """Let the worker go on, past every later pause before a push, until it exits."""
    end = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < end:
        if _state(process.pid) == "T":
            os.kill(process.pid, signal.SIGCONT)
        time.sleep(0.05)
    return process.wait(timeout=5)


def stale_holder_is_refused_by_the_hook(world: WorkerWorld, window: int = 1) -> None:
    """With a window above 1 both holders hold a speculative chain of `window` candidates."""
    candidates = [world.ready(f"fenced-{n}", path=f"f{n}.txt") for n in range(window)]
    start = world.canonical.head()
    world.cutover()
    chain = ("--window", str(window))
    a = world.start_worker("--once", "--holder", "A", *chain, log_name="a.log", workspace="ws-a",
                           env=PAUSE)  # fmt: skip
    b: subprocess.Popen[bytes] | None = None
    try:
        paused(world, a, "a.log")
        # B's acquire retries until A's lease has run out: that is the takeover.
        b = world.start_worker(
            "--once", "--holder", "B", *chain, log_name="b.log", workspace="ws-b", env=PAUSE
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

    # Judged from main: B's commits only, each explained by one of B's landed registrations.
    bare = world.canonical.bare
    landed = [r for r in world.registrations() if r.status == "landed"]
    first_parents = git("rev-list", "--first-parent", "--reverse", f"{start}..main", cwd=bare)
    assert first_parents.split() == [r.new for r in landed]
    assert landed[0].id == current.id and {r.epoch for r in landed} == {current.epoch}
    assert stale.new not in git("rev-list", "main", cwd=bare).split()
    for registration in landed:
        message = git("show", "--no-patch", "--format=%B", registration.new, cwd=bare)
        assert f"Integrator-Epoch: {current.epoch}" in message
        assert f"Integrator-Attempt: {registration.attempt}" in message
    assert sorted(r.candidate_id for r in landed) == sorted(candidates)
    assert [world.candidate(c)["status"] for c in candidates] == ["integrated"] * window
    assert len(world.events("integration_completed")) == window


def test_a_holder_resumed_after_a_takeover_pushes_its_old_nonce_and_the_hook_refuses_it(
    world: WorkerWorld,
) -> None:
    """A paused past its TTL, B takes over: A's push is refused, main holds B's lineage."""
    stale_holder_is_refused_by_the_hook(world)


def test_a_stale_holder_of_a_speculative_chain_pushes_nothing_the_new_holder_did_not_test(
    world: WorkerWorld,
) -> None:
    """The same takeover with a window of 3: the stale chain never reaches main; the new
    holder's chain lands whole, each commit its own registered fast-forward."""
    stale_holder_is_refused_by_the_hook(world, window=3)


@pytest.mark.stress
@pytest.mark.parametrize("window", [1, 3])
@pytest.mark.parametrize("round_", range(5))
def test_git_fencing_repeated(world: WorkerWorld, round_: int, window: int) -> None:
    """The same takeover, again and again, serial and speculative: a stale holder never moves
    main."""
    stale_holder_is_refused_by_the_hook(world, window)
