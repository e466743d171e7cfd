"""The worker in cutover: the tested commit pushed to main through the installed hooks.

Real processes throughout: the service, `integrator worker`, `git push` through a transport
that sets the pusher on the server side, the pre-receive and post-receive hooks. Outcomes are
judged from the canonical repository's main itself.
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
from tests.worker_support import (
    WorkerWorld,
    first_parents,
    process_gone,
    refs_of,
    trailers,
    wait_for,
)

PAUSE = {"INTEGRATOR_TEST_PAUSE_BEFORE_PUSH": "1"}


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    with WorkerWorld(settings, tmp_path, tokens).start().guard() as world:
        yield world


def wait_paused(
    world: WorkerWorld, process: subprocess.Popen[bytes], log_name: str, times: int
) -> None:
    """Until the worker has paused `times` times before a push and is stopped now."""
    log = world.tmp_path / log_name
    wait_for(lambda: log.read_text().count("PAUSED-BEFORE-PUSH") >= times, 60, "a pause")
    stat = Path(f"/proc/{process.pid}/stat")
    wait_for(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "T", 10, "a stop")


def stop(process: subprocess.Popen[bytes]) -> None:
    if not process_gone(process.pid):
        os.kill(process.pid, signal.SIGCONT)
        process.kill()
    process.wait()


@pytest.mark.parametrize("method", ["merge", "squash"])
def test_in_cutover_queued_candidates_land_on_main_through_the_guard_in_fifo_order_once_each(
    world: WorkerWorld, method: str
) -> None:
    """Each tested commit is main's next first parent, landed by its own registration."""
    first = world.ready("first")
    second = world.ready("second")
    start = world.canonical.head()
    world.cutover()

    result = world.run_worker("--once", "--check", "test -f README", "--merge-method", method)

    assert result.returncode == 0, result.stderr
    landed = first_parents(world, start)
    assert len(landed) == 2
    registrations = world.registrations()
    assert [(r.status, r.candidate_id) for r in registrations] == [
        ("landed", first),
        ("landed", second),
    ]
    (granted,) = world.events("lease_acquired")
    for commit, registration, old in zip(landed, registrations, [start, landed[0]], strict=True):
        assert (registration.old, registration.new) == (old, commit)
        assert git("rev-parse", f"{commit}^1", cwd=world.canonical.bare) == old
        assert trailers(world, commit) == {
            "Integrator-Candidate": str(registration.candidate_id),
            "Integrator-Epoch": str(granted.fields["epoch"]),
            "Integrator-Attempt": registration.attempt,
        }
    assert world.candidate(first)["status"] == world.candidate(second)["status"] == "integrated"
    completed = world.events("integration_completed")
    assert [(e.fields["main_sha"]) for e in completed] == landed
    assert [e.fields["slug"] for e in completed] == ["first", "second"]


def test_in_cutover_a_human_push_to_main_is_still_refused_while_the_bot_lands(
    world: WorkerWorld,
) -> None:
    """The guard lets the registered update through and nothing else."""
    candidate = world.ready("bot-lands")
    world.cutover()
    assert world.run_worker("--once").returncode == 0
    assert world.candidate(candidate)["status"] == "integrated"
    before = refs_of(world.canonical.bare)

    world.canonical.new_commit_on_main("human")
    human = world.canonical.push_as("alice", "main")

    assert human.returncode != 0 and "integrator: refused main" in human.stderr
    assert refs_of(world.canonical.bare) == before


def test_a_server_that_does_not_advertise_push_options_stops_the_worker_with_one_line(
    world: WorkerWorld,
) -> None:
    """A configuration error: the candidate goes back, main does not move, the line says
    what to set on the server."""
    candidate = world.ready("no-options")
    world.cutover()
    git("config", "receive.advertisePushOptions", "false", cwd=world.canonical.bare)
    before = refs_of(world.canonical.bare)

    result = world.run_worker("--once")

    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "receive.advertisePushOptions=true" in last
    assert world.candidate(candidate)["status"] == "queued"
    assert refs_of(world.canonical.bare) == before
    assert [r.status for r in world.registrations()] == ["failed"]


def test_a_push_refused_by_a_hook_on_the_server_blocks_the_candidate_with_its_text(
    world: WorkerWorld,
) -> None:
    """A refusal by a hook is a real `blocked` whose evidence is the refusal (kind push)."""
    candidate = world.ready("too-big")
    world.cutover()
    hook = world.canonical.bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'size-check: refused: file too big' >&2\nexit 1\n")
    before = refs_of(world.canonical.bare)

    result = world.run_worker("--once")

    assert result.returncode == 0, result.stderr
    assert refs_of(world.canonical.bare) == before
    assert world.candidate(candidate)["status"] == "blocked"
    (blocked,) = world.events("integration_blocked")
    (evidence,) = blocked.fields["conflict_evidence"]
    assert evidence["kind"] == "push"
    assert evidence["refusal"] == "size-check: refused: file too big"
    assert "integrator submit --slug too-big" in blocked.fields["next_action"]
    assert [r.status for r in world.registrations()] == ["failed"]


def test_main_moved_after_the_check_is_merged_and_checked_again_and_lands_once(
    world: WorkerWorld,
) -> None:
    """A lost compare-and-swap: the first registration fails, the re-merged commit is checked
    again and is the one that lands (the tested sha is the landed sha)."""
    candidate = world.ready("moved")
    start = world.canonical.head()
    world.cutover()
    checks = world.tmp_path / "checks.txt"
    worker = world.start_worker("--once", "--check", f"git rev-parse HEAD >> {checks}", env=PAUSE)
    try:
        wait_paused(world, worker, "worker.log", 1)
        # main moves under the paused worker (an operator's break-glass push, say).
        moved = world.canonical.new_commit_on_main("operator")
        git("push", "-q", "origin", "HEAD:refs/heads/operator", cwd=world.canonical.work)
        git("update-ref", "refs/heads/main", moved, start, cwd=world.canonical.bare)
        os.kill(worker.pid, signal.SIGCONT)
        wait_paused(world, worker, "worker.log", 2)
        os.kill(worker.pid, signal.SIGCONT)
        assert worker.wait(timeout=60) == 0, (world.tmp_path / "worker.log").read_text()
    finally:
        stop(worker)

    first, second = world.registrations()
    assert (first.status, first.old) == ("failed", start)
    assert (second.status, second.old, second.new) == ("landed", moved, world.canonical.head())
    assert checks.read_text().split() == [first.new, second.new]
    assert world.candidate(candidate)["status"] == "integrated"
    assert len(world.events("integration_completed")) == 1


def test_a_hook_that_gives_up_after_the_service_authorized_is_retried_with_the_same_commit(
    world: WorkerWorld,
) -> None:
    """The hook's deadline strikes after authorization: the registration fails, a fresh one
    pushes the very same tested commit, and it lands once."""
    candidate = world.ready("deadline")
    start = world.canonical.head()
    world.cutover()
    hooks = world.canonical.bare / "hooks"
    (hooks / "pre-receive").rename(hooks / "pre-receive.real")
    marker = world.tmp_path / "gave-up-once"
    (hooks / "pre-receive").write_text(
        "#!/bin/sh\n"
        f'"$(dirname "$0")/pre-receive.real" || exit 1\n'
        f"[ -e {marker} ] && exit 0\n"
        f"touch {marker}\n"
        "echo 'integrator: service unavailable (deadline exceeded); push refused' >&2\n"
        "exit 1\n"
    )
    (hooks / "pre-receive").chmod(0o755)

    result = world.run_worker("--once", "--check", "true")

    assert result.returncode == 0, result.stderr
    first, second = world.registrations()
    assert (first.status, second.status) == ("failed", "landed")
    assert first.new == second.new == world.canonical.head()
    assert first.attempt == second.attempt and first.old == second.old == start
    assert world.candidate(candidate)["status"] == "integrated"
    assert len(world.events("integration_completed")) == 1


def test_at_cutover_the_shadow_predictions_land_in_position_order_none_twice(
    world: WorkerWorld,
) -> None:
    """Predicted in shadow, then cutover: every prediction is processed for real, FIFO, once."""
    ids = [world.ready(slug) for slug in ("one", "two", "three")]
    start = world.canonical.head()
    shadow = world.run_worker("--once")
    assert shadow.returncode == 0, shadow.stderr
    assert [world.candidate(i)["status"] for i in ids] == ["predicted"] * 3
    assert world.canonical.head() == start  # shadow never pushes main

    world.cutover()
    assert [world.candidate(i)["status"] for i in ids] == ["queued"] * 3
    real = world.run_worker("--once")

    assert real.returncode == 0, real.stderr
    landed = first_parents(world, start)
    assert [trailers(world, c)["Integrator-Candidate"] for c in landed] == [str(i) for i in ids]
    assert [world.candidate(i)["status"] for i in ids] == ["integrated"] * 3
    completed = world.events("integration_completed")
    assert sorted(e.fields["slug"] for e in completed) == ["one", "three", "two"]
