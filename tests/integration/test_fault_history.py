"""Faults with a history checker: a workload against the real service replicas, the installed
hooks and a real worker while a seeded nemesis injects faults; then a quiet period, and the
recorded history and main itself are checked (tests/faults/checker.py).

PostgreSQL: two replicas on a throw-away cluster the test starts itself (restarted by the
nemesis). SQLite: one replica on one host. FAULT_SEED and FAULT_SECONDS choose the run,
FAULT_CLIENTS ("16,4": push-check and event clients) and FAULT_RATE (3 requests/s each) the
load.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.checker import check
from tests.faults.nemesis import Nemesis
from tests.faults.pgcluster import PgCluster
from tests.faults.record import read_history
from tests.faults.summary import summary
from tests.faults.workload import Load, People
from tests.faults.world import FaultWorld
from tests.worker_support import wait_for

pytestmark = pytest.mark.stress

#: A fixed seed by default, so that a run (CI's too) can be repeated; FAULT_SEED for another,
#: FAULT_SEED=random for a fresh one (printed).
SECONDS = float(os.environ.get("FAULT_SECONDS", "60"))
_SEED = os.environ.get("FAULT_SEED", "11")
SEED = random.SystemRandom().randrange(1_000_000) if _SEED == "random" else int(_SEED)
QUIET_SECONDS = 60.0


@pytest.fixture(params=["postgresql", "sqlite"])
def world(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[FaultWorld, PgCluster | None]]:
    cluster = PgCluster().start() if request.param == "postgresql" else None
    url = cluster.url if cluster else f"sqlite:///{tmp_path / 'integrator.db'}"
    built = FaultWorld(tmp_path, url, replicas=2 if cluster else 1)
    try:
        yield built.start(), cluster
    finally:
        built.close()
        if cluster:
            cluster.remove()


def settled(world: FaultWorld) -> bool:
    """Nothing queued or in progress, and the worker alive."""
    world.ensure_worker()
    answer = world.call(
        "GET", "/v1/candidates?status=queued&status=in_progress", world.operator, tries=4
    )
    if answer is None or answer.status_code != 200:
        return False
    return not answer.json()["items"]


def spooled(world: FaultWorld) -> list[Path]:
    """Verdicts the hook gave without the service, not yet uploaded."""
    return list((world.canonical.bare / "integrator" / "state" / "spool").glob("*.json"))


def test_the_history_under_faults_satisfies_every_rule(
    world: tuple[FaultWorld, PgCluster | None],
) -> None:
    system, cluster = world
    logging.basicConfig(level=logging.INFO)
    print(f"\nFAULT_SEED={SEED} FAULT_SECONDS={SECONDS:g} database={'pg' if cluster else 'sqlite'}")
    load = Load(system)
    print(f"load: {load.describe()}")
    nemesis = Nemesis(system, SEED, cluster, load.paused)
    plan = [(0.2 * SECONDS, "cutover"), (0.55 * SECONDS, "shadow"), (0.65 * SECONDS, "cutover")]
    people = People(system, nemesis, SEED, plan)
    nemesis.during_outage = people.during_outage
    started = time.monotonic()
    people.start()
    load.start()
    nemesis.start()
    try:
        time.sleep(SECONDS)
    finally:
        nemesis.stop()
        people.stop()
        load.stop()
    if people.mode != "cutover":
        people.set_mode("cutover")
    wait_for(lambda: settled(system), QUIET_SECONDS, "the queue to drain in the quiet period")
    # The service is back: the next push's post-receive uploads what the hook spooled alone.
    people.push_branch()
    wait_for(lambda: not spooled(system), 30, "the hook's spool to be uploaded")
    history = read_history(system, people, load)
    violations = check(history)
    print(summary(history, nemesis.injected, violations))
    print(
        f"took {time.monotonic() - started:.0f}s, worker started {system.worker_starts}x, "
        f"{load.unanswered} push checks unanswered, {load.sent_events} load events sent, "
        f"{len(people.unacknowledged)} people's events never acknowledged, "
        f"{len(system.worker_exits)} worker exits of its own, "
        f"{len(system.unhandled_errors())} internal errors"
    )
    slowest = sorted(load.samples, key=lambda s: -s[1])[:5]
    print(f"{load.answered_while_paused} checks answered by a paused replica; slowest: "
          + ", ".join(f"{time.strftime('%H:%M:%S', time.gmtime(w))} {t:.2f}s :{p}"
                      for w, t, p in slowest))  # fmt: skip
    for when, name, what in nemesis.journal:
        print(f"  {time.strftime('%H:%M:%S', time.gmtime(when))} {name}: {what}")
    assert not nemesis.errors and not people.errors, (nemesis.errors, people.errors)
    # The worker rides out outages, mode changes and restarts during outages by itself: an
    # exit of its own fails the run (it was restarted, as a supervisor would, meanwhile).
    for code, tail in system.worker_exits:
        print(f"worker exited {code} on its own:\n{tail}")
    assert not system.worker_exits, [code for code, _ in system.worker_exits]
    assert not system.unhandled_errors(), system.unhandled_errors()
    assert not violations, "\n".join(map(str, violations))
    assert sum(nemesis.injected.values()) >= 3 and history.ready
