"""The background reconciler: every service replica's main watcher resolves the registrations
of silent epochs against the real main, so that main and the queue are right before a new
holder comes, and two replicas watching together resolve each item once.

The canonical repository is real git and the database real (SQLite and PostgreSQL); the
hook's requests are sent as the hook sends them. The last test runs everything as processes:
a worker killed after its push landed, and no other worker.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from integrator.admission import CanonicalRepo
from integrator.api.app import create_app
from integrator.db import make_engine, make_sessionmaker
from integrator.models import Candidate, Event
from integrator.queue import claim
from integrator.settings import Settings
from integrator.watch import MainWatcher
from tests.gitrepos import Canonical
from tests.integration.test_crash_recovery import (
    block_after_post_receive,
    first_parents,
    kill_when,
    release,
)
from tests.integration.test_registered_push import MAIN, Holder, World, registered, update
from tests.support import TokenMaker
from tests.worker_support import SHORT_LEASE, WorkerWorld, wait_for

#: What became of each registered push before its holder went silent.
LANDED_UNREPORTED, LANDED_REPORTED, NOT_LANDED = "landed, report lost", "reported", "not landed"


@pytest.fixture
def world(
    settings: Settings, tmp_path: Path, tokens: TokenMaker, engine: Engine
) -> Iterator[World]:
    canonical = Canonical(tmp_path)
    configured = settings.model_copy(update={"repo": str(canonical.bare)})
    with TestClient(create_app(configured)) as client:
        yield World(client, tokens, canonical, engine)


Replica = Callable[..., MainWatcher]


@pytest.fixture
def replica(world: World) -> Iterator[Replica]:
    """Watchers as other service processes run them: each its own engine, sessions, mirror."""
    engines: list[Engine] = []

    def make(**overrides: Any) -> MainWatcher:
        app_settings: Settings = world.client.app.state.settings  # type: ignore[attr-defined]
        settings = app_settings.model_copy(update=overrides)
        engines.append(make_engine(settings))
        return MainWatcher(make_sessionmaker(engines[-1]), settings, CanonicalRepo(settings))

    yield make
    for engine in engines:
        engine.dispose()


def hand_out_all(world: World, holder: Holder) -> list[dict[str, Any]]:
    """Every queued candidate in progress for `holder`'s epoch at once (the holder works one
    at a time; this builds, with the queue's own claim, many silent items in one epoch)."""
    with make_sessionmaker(world.engine)() as session, session.begin():
        queued = session.scalars(
            select(Candidate).where(Candidate.status == "queued").order_by(Candidate.position)
        )
        handed = []
        for candidate in list(queued):
            assert claim(session, candidate, holder.epoch)
            handed.append(
                {"id": candidate.id, "sha": candidate.sha, "position": candidate.position}
            )
    return handed


def push(world: World, holder: Holder, candidate: dict[str, Any], fate: str) -> dict[str, Any]:
    """Register the holder's merge of `candidate`, let the hook authorize it, and then: main
    moves without a report, main moves and post-receive reports it, or main does not move."""
    reg = registered(world, holder, candidate)
    assert world.check(reg["nonce"], update(reg["old"], reg["new"]))["allow"]
    if fate != NOT_LANDED:
        world.land(MAIN, reg["new"])
    if fate == LANDED_REPORTED:
        world.report(update(reg["old"], reg["new"]))
    return {**reg, "candidate": candidate, "fate": fate}


def statuses(world: World) -> dict[int, str]:
    with make_sessionmaker(world.engine)() as session:
        return {c.id: c.status for c in session.scalars(select(Candidate))}


def registration_events(world: World) -> Counter[tuple[str, int]]:
    with world.engine.connect() as connection:
        rows = connection.execute(select(Event.type, Event.fields).where(
            Event.type.in_(("registration_landed", "registration_failed"))
        ))  # fmt: skip
        return Counter((type_, fields["registration_id"]) for type_, fields in rows)


def test_two_replicas_watching_at_once_resolve_each_silent_registration_once(
    world: World, replica: Replica
) -> None:
    """Landed (reported or not): integrated once; not landed after the epoch ended: failed
    once, its candidate queued again at its position — whatever the replicas' interleaving."""
    fates = [LANDED_UNREPORTED, LANDED_REPORTED, NOT_LANDED] * 2
    for n in range(len(fates)):
        world.ready(f"c{n}")
    world.cutover()
    holder = world.holder()
    pushes = [
        push(world, holder, c, f) for c, f in zip(hand_out_all(world, holder), fates, strict=True)
    ]
    world.force_release()  # the epoch is over; nobody holds the lease
    replicas = [replica(), replica()]
    errors: list[BaseException] = []

    def run(watcher: MainWatcher, start: threading.Barrier) -> None:
        start.wait()
        try:
            watcher.run_once()
        except BaseException as exc:  # reported below
            errors.append(exc)

    for _ in range(3):
        start = threading.Barrier(len(replicas))
        threads = [threading.Thread(target=run, args=(r, start)) for r in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []

    shown = statuses(world)
    events = registration_events(world)
    for p in pushes:
        landed = p["fate"] != NOT_LANDED
        assert world.registration(p["id"])["status"] == ("landed" if landed else "failed")
        kind = "registration_landed" if landed else "registration_failed"
        assert events[(kind, p["id"])] == 1
        assert shown[p["candidate"]["id"]] == ("integrated" if landed else "queued")
        assert world.candidate(p["candidate"]["id"])["position"] == p["candidate"]["position"]
    assert sum(events.values()) == len(pushes)
    completed = world.events("integration_completed")
    assert sorted(e.fields["main_sha"] for e in completed) == sorted(
        p["new"] for p in pushes if p["fate"] != NOT_LANDED
    )


def test_the_watcher_leaves_a_live_holders_registrations_alone(
    world: World, replica: Replica, handed: tuple[Holder, dict[str, Any]]
) -> None:
    """Authorized and on main, but its holder still holds the lease: the holder records it."""
    holder, candidate = handed
    reg = push(world, holder, candidate, LANDED_UNREPORTED)
    replica().run_once()
    assert world.registration(reg["id"])["status"] == "authorized"
    assert world.candidate(candidate["id"])["status"] == "in_progress"
    done = holder.integrated(candidate["id"], reg["id"], reg["new"], reg["attempt"])
    assert done.status_code == 200, done.text


def test_an_expired_grant_nobody_took_is_resolved_where_main_shows_it_and_otherwise_left(
    world: World, replica: Replica
) -> None:
    """Its holder went silent (the lease ran out, no takeover): a push that landed is recorded
    integrated; one not on main stays authorized, since it may still reach the ref, until a
    later epoch exists — then it fails and its candidate leads the queue again."""
    world.ready("landed")
    world.ready("missing")
    world.cutover()
    holder = world.holder()
    first, second = hand_out_all(world, holder)
    landed = push(world, holder, first, LANDED_UNREPORTED)
    missing = push(world, holder, second, NOT_LANDED)
    expired = {"sql_clock_offset_ms": 200_000}  # past the 120 s lease

    replica(**expired).run_once()

    assert world.registration(landed["id"])["status"] == "landed"
    assert world.candidate(first["id"])["status"] == "integrated"
    assert world.registration(missing["id"])["status"] == "authorized"
    assert world.candidate(second["id"])["status"] == "in_progress"
    assert (
        holder.integrated(
            second["id"], missing["id"], missing["new"], missing["attempt"]
        ).status_code
        == 409
    )

    world.force_release()
    replica().run_once()
    assert world.registration(missing["id"])["status"] == "failed"
    assert world.candidate(second["id"])["status"] == "queued"
    assert len(world.events("integration_completed")) == 1


@pytest.fixture
def handed(world: World) -> tuple[Holder, dict[str, Any]]:
    """In cutover, a holder with one candidate in progress."""
    world.ready("one")
    world.cutover()
    holder = world.holder()
    response = holder.next()
    assert response.status_code == 200, response.text
    return holder, response.json()


def test_a_holder_killed_after_its_push_landed_is_recorded_integrated_by_the_service_alone(
    settings: Settings, tmp_path: Path, tokens: TokenMaker
) -> None:
    """Killed in `git push` after main moved, its report lost, and no worker after it: once its
    grant has run out, the service's watcher finds the commit on main, explained by the
    registration, and records the candidate integrated once."""
    watching = {**SHORT_LEASE, "main_watch_interval_seconds": 0.3}
    world = WorkerWorld(settings, tmp_path, tokens, lease=watching).start().guard()
    try:
        candidate = world.ready("landed")
        start = world.canonical.head()
        world.cutover()
        gate = block_after_post_receive(world, reported=False)
        a = world.start_worker("--once", "--holder", "A", log_name="a.log")
        try:
            kill_when(a, gate.reached.exists, "the push to land")
        finally:
            release(a, gate)
        (registration,) = world.registrations()
        assert registration.status == "authorized" and world.canonical.head() == registration.new

        wait_for(lambda: world.candidate(candidate)["status"] == "integrated", 30, "the watcher")

        assert first_parents(world, start) == [registration.new]
        assert [(r.id, r.status) for r in world.registrations()] == [(registration.id, "landed")]
        (landed,) = world.events("registration_landed")
        assert landed.actor == "service:main-watch" and landed.fields["reconciled"] is True
        (completed,) = world.events("integration_completed")
        assert completed.fields["main_sha"] == registration.new
        assert world.lease()["holder"] in (None, "A") and not world.events("lease_taken_over")
    finally:
        world.close()
