"""Speculative checks (`integrator worker --window W`): the next candidates are tested at once
as a chain on top of each other, and each lands alone, in queue order, as the very commit its
checks ran on.

Real processes throughout: the service, `integrator worker`, pushes through the installed
hooks over a transport that sets the pusher on the server side. The checks write the commit
they ran on and when, so the tests compare what was tested with what main holds.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrator.settings import Settings
from tests.gitrepos import git
from tests.support import TokenMaker
from tests.worker_support import WorkerWorld, first_parents, process_gone, wait_for

PAUSE = {"INTEGRATOR_TEST_PAUSE_BEFORE_PUSH": "1"}


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    with WorkerWorld(settings, tmp_path, tokens).start().guard() as world:
        yield world


def recording_check(world: WorkerWorld, seconds: float = 1.0) -> tuple[str, Path]:
    """A check that records `start end sha verdict` per run, sleeps, and fails when the tree
    holds a file named `broken`."""
    record = world.tmp_path / "tested.txt"
    command = (
        f"s=$(date +%s.%N); sleep {seconds}; h=$(git rev-parse HEAD); "
        f"if test -e broken; then v=fail; else v=pass; fi; "
        f'echo "$s $(date +%s.%N) $h $v" >> {record}; test $v = pass'
    )
    return command, record


def checked_runs(record: Path) -> list[tuple[float, float, str, str]]:
    rows = [line.split() for line in record.read_text().splitlines()]
    return [(float(start), float(end), sha, verdict) for start, end, sha, verdict in rows]


def parent(world: WorkerWorld, sha: str) -> str:
    return git("rev-parse", f"{sha}^1", cwd=world.canonical.bare)


def stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def most_at_once(runs: list[tuple[float, float, str, str]]) -> int:
    edges = sorted([(start, 1) for start, *_ in runs] + [(end, -1) for _, end, *_ in runs])
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def test_a_failing_middle_candidate_costs_only_the_speculation_above_it(
    world: WorkerWorld,
) -> None:
    """W = 3: the first lands, the second is blocked, the third is rebuilt on the first and
    lands; every landed commit is one that passed its checks, and the checks ran at once."""
    first = world.ready("first", path="one.txt")
    second = world.ready("second", path="broken")
    third = world.ready("third", path="three.txt")
    start = world.canonical.head()
    world.cutover()
    check, record = recording_check(world)

    result = world.run_worker("--once", "--window", "3", "--check", f"t={check}", timeout=120)

    assert result.returncode == 0, result.stderr
    statuses = [world.candidate(c)["status"] for c in (first, second, third)]
    assert statuses == ["integrated", "blocked", "integrated"]
    landed = first_parents(world, start)
    assert len(landed) == 2
    runs = checked_runs(record)
    passed = {sha for *_, sha, verdict in runs if verdict == "pass"}
    assert set(landed) <= passed, "main holds a commit whose checks did not pass"
    assert parent(world, landed[0]) == start and parent(world, landed[1]) == landed[0]
    assert most_at_once(runs) >= 2, runs
    registrations = [(r.candidate_id, r.status, r.new) for r in world.registrations()]
    assert registrations == [(first, "landed", landed[0]), (third, "landed", landed[1])]
    # The third was first tested on top of the second, which failed: that build was discarded.
    discarded = world.events("speculation_discarded")
    assert [(e.fields["candidate_id"], e.fields["cause_candidate_id"]) for e in discarded] == [
        (third, second)
    ]
    assert discarded[0].fields["sha"] not in landed
    started = world.events("speculation_started")
    assert {sha for *_, sha, _ in runs} <= {e.fields["sha"] for e in started}
    blocked = world.candidate(second)
    assert blocked["status"] == "blocked"


def test_with_no_failures_every_candidate_lands_as_a_fast_forward_of_the_one_below(
    world: WorkerWorld,
) -> None:
    """W = 3 over four candidates: each tested commit is main's next first parent, each landed
    by its own registration, none re-merged, none re-tested."""
    ids = [world.ready(f"c{n}", path=f"f{n}.txt") for n in range(4)]
    start = world.canonical.head()
    world.cutover()
    check, record = recording_check(world, seconds=0.5)

    result = world.run_worker("--once", "--window", "3", "--check", f"t={check}", timeout=120)

    assert result.returncode == 0, result.stderr
    landed = first_parents(world, start)
    assert [sha for *_, sha, _ in checked_runs(record)] == landed  # each tested exactly once
    assert [r.candidate_id for r in world.registrations()] == ids
    assert [(r.old, r.new) for r in world.registrations()] == list(
        zip([start, *landed[:-1]], landed, strict=True)
    )
    assert world.events("speculation_discarded") == []


def test_main_moved_under_the_chain_rebuilds_it_on_the_new_main(world: WorkerWorld) -> None:
    """A break-glass push while the chain waits to land: nothing built on the old main lands;
    the chain is discarded, rebuilt and checked on the new main, and lands there."""
    ids = [world.ready(f"c{n}", path=f"f{n}.txt") for n in range(2)]
    start = world.canonical.head()
    world.cutover()
    check, record = recording_check(world, seconds=0.2)
    worker = world.start_worker("--once", "--window", "2", "--check", f"t={check}", env=PAUSE)
    log = world.tmp_path / "worker.log"
    try:
        wait_for(lambda: "PAUSED-BEFORE-PUSH" in log.read_text(), 60, "a pause")
        moved = world.canonical.new_commit_on_main("operator")
        git("push", "-q", "origin", "HEAD:refs/heads/operator", cwd=world.canonical.work)
        git("update-ref", "refs/heads/main", moved, start, cwd=world.canonical.bare)
        deadline = time.monotonic() + 90
        while worker.poll() is None and time.monotonic() < deadline:  # every pause, go on
            if stopped(worker.pid):
                os.kill(worker.pid, signal.SIGCONT)
            time.sleep(0.05)
        assert worker.wait(timeout=5) == 0, log.read_text()
    finally:
        if not process_gone(worker.pid):
            os.kill(worker.pid, signal.SIGCONT)
            worker.kill()
        worker.wait()

    landed = first_parents(world, moved)
    assert len(landed) == 2 and parent(world, landed[0]) == moved
    passed = [sha for *_, sha, verdict in checked_runs(record) if verdict == "pass"]
    assert set(landed) <= set(passed)
    assert [world.candidate(c)["status"] for c in ids] == ["integrated", "integrated"]
    reasons = {e.fields["reason"] for e in world.events("speculation_discarded")}
    assert any("main moved" in reason for reason in reasons), reasons


def test_sigterm_kills_every_check_of_the_chain_gives_every_candidate_back_and_releases(
    world: WorkerWorld,
) -> None:
    """A stop request mid-chain: all the checks' process groups die, nothing is reported but
    the give-backs, every candidate is queued again at its place, the lease is free."""
    ids = [world.ready(f"c{n}", path=f"f{n}.txt") for n in range(3)]
    world.cutover()
    pids = world.tmp_path / "children"
    check = f"sleep 120 & echo $! >> {pids}; wait"
    worker = world.start_worker("--window", "3", "--check", f"long={check}")
    try:
        wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 3, 60, "3 checks")
        children = [int(pid) for pid in pids.read_text().split()]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, (world.tmp_path / "worker.log").read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
    for child in children:
        wait_for(lambda child=child: process_gone(child), 10, "a check's child to die")
    assert [world.candidate(c)["status"] for c in ids] == ["queued"] * 3
    assert [c["id"] for c in world.get("/v1/candidates")["items"]] == ids
    assert world.lease()["holder"] is None
    assert world.registrations() == []
    assert world.events("integration_completed", "integration_blocked") == []


def test_in_shadow_each_candidate_of_the_window_is_predicted_on_main_itself(
    world: WorkerWorld,
) -> None:
    """Nothing lands in shadow, so nothing is built on a prediction: each candidate is merged
    onto main as it is, the checks run at once, and the predictions are the serial worker's."""
    ids = [world.ready("one", path="one.txt"), world.ready("two", path="broken"),
           world.ready("three", path="three.txt")]  # fmt: skip
    start = world.canonical.head()
    check, record = recording_check(world)

    result = world.run_worker("--once", "--window", "3", "--check", f"t={check}", timeout=120)

    assert result.returncode == 0, result.stderr
    assert world.canonical.head() == start
    predictions = world.events("would_integrate", "would_block")
    assert [(e.type, e.fields["candidate_id"]) for e in predictions] == [
        ("would_integrate", ids[0]), ("would_block", ids[1]), ("would_integrate", ids[2])
    ]  # fmt: skip
    assert {e.fields["main_sha"] for e in predictions} == {start}
    runs = checked_runs(record)
    clone = world.tmp_path / "ws" / "clone"  # shadow commits live in the worker's clone only
    assert {git("rev-parse", f"{sha}^1", cwd=clone) for *_, sha, _ in runs} == {start}
    assert most_at_once(runs) >= 2, runs
