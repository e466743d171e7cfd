"""Pausing the queue: nothing is handed out, a freeze refuses new work, expiry ends it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from integrator.api.app import create_app
from integrator.settings import Settings
from tests.builders import branch_pushed, finalize_ready, review_approved
from tests.integration.test_processing import Holder, World
from tests.support import TokenMaker, run_cli, settings_env
from tests.worker_support import WorkerWorld, wait_for


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[World]:
    with World.serving(settings, tmp_path, tokens, stall_after_seconds=0) as world:
        yield world


def pause(world: World, **body: Any) -> Any:
    return world.client.post(
        "/v1/queue/pause", json={"reason": "release freeze", **body}, headers=world.operator
    )


def stalled(world: World) -> bool:
    status = world.client.get("/v1/status", headers=world.reporter).json()
    return "queue_stalled" in [c["code"] for c in status["conditions"]]


def test_a_paused_queue_hands_nothing_out_and_is_not_a_stall(world: World) -> None:
    world.ready("a")
    holder = world.holder()
    assert stalled(world)  # queued, nothing moving, a zero threshold
    paused = pause(world)
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] and "release freeze" in paused.json()["summary"]
    assert holder.next().status_code == 204
    assert not stalled(world)
    shown = world.client.get("/v1/queue/pause", headers=world.reporter).json()
    assert shown["paused"] and shown["until"] is None and shown["reject_new"] is False
    world.ready("b")  # pushes and submissions by others are unaffected by a plain pause

    resumed = world.client.post("/v1/queue/resume-processing", headers=world.operator)
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    assert holder.next().json()["slug"] == "a"
    again = world.client.post("/v1/queue/resume-processing", headers=world.operator)
    assert again.status_code == 409 and "not paused" in again.json()["message"]
    types = [e["type"] for e in world.client.get(
        "/v1/events", params={"type": ["queue_paused", "queue_resumed"]}, headers=world.reporter
    ).json()["items"]]  # fmt: skip
    assert types == ["queue_paused", "queue_resumed"]


def test_a_freeze_refuses_new_finalize_ready_with_who_why_and_until(world: World) -> None:
    until = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    assert pause(world, reject_new=True, until=until.isoformat()).status_code == 200
    sha = world.canonical.branch("feat/late")
    for envelope in (review_approved("late"), branch_pushed("feat/late", sha)):
        assert (
            world.client.post("/v1/events", json=envelope, headers=world.reporter).status_code
            == 201
        )
    refused = world.client.post(
        "/v1/events", json=finalize_ready("late", "feat/late", sha), headers=world.reporter
    )
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["code"] == "queue_frozen"
    message = body["message"]
    assert "frozen" in message and "release freeze" in message and "paused by" in message
    assert until.isoformat().replace("+00:00", "Z") in message
    shown = world.client.get("/v1/slugs/late", headers=world.reporter)
    assert shown.status_code == 404  # nothing was admitted (the event was not stored either)


def test_a_pause_ends_by_itself_when_its_time_passes(world: World) -> None:
    world.ready("a")
    holder = world.holder()
    until = datetime.now(UTC) + timedelta(seconds=1.5)
    assert pause(world, until=until.isoformat()).status_code == 200
    assert holder.next().status_code == 204
    time.sleep(1.6)
    assert holder.next().json()["slug"] == "a"
    events = world.client.get(
        "/v1/events", params={"type": "queue_resumed"}, headers=world.reporter
    ).json()["items"]
    assert len(events) == 1 and events[0]["fields"]["why"].startswith("expired at")


def test_bad_pauses_are_refused_naming_the_field(world: World, tokens: TokenMaker) -> None:
    past = pause(world, until=(datetime.now(UTC) - timedelta(minutes=1)).isoformat())
    assert past.status_code == 409, past.text  # well-formed; the clock refuses it
    assert past.json()["code"] == "pause_already_over"
    assert [(d["field"], d["rule"]) for d in past.json()["details"]] == [("until", "future")]
    assert world.client.get("/v1/queue/pause", headers=world.reporter).json()["paused"] is False
    naive = pause(world, until="2030-01-01T10:00:00")
    assert naive.status_code == 422 and naive.json()["details"][0]["field"] == "until"
    empty = pause(world, reason="")
    assert empty.status_code == 422 and empty.json()["details"][0]["field"] == "reason"
    for role in ("reader", "reporter", "integrator"):
        auth = {"Authorization": f"Bearer {tokens(role)}"}
        assert (
            world.client.post("/v1/queue/pause", json={"reason": "x"}, headers=auth).status_code
            == 403
        )
        assert world.client.post("/v1/queue/resume-processing", headers=auth).status_code == 403


@pytest.fixture
def real(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    with WorkerWorld(settings, tmp_path, tokens).start().guard() as world:
        yield world


def test_a_real_worker_idles_with_its_lease_while_paused_and_resumes(real: WorkerWorld) -> None:
    """Real service, CLI and worker: paused, the worker keeps its lease and takes nothing."""
    env = settings_env(
        real.settings, INTEGRATOR_URL=real.service.url, INTEGRATOR_TOKEN=real.tokens("operator")
    )
    paused = run_cli("queue", "pause", "--reason", "release freeze", "--until", "1h", env=env)
    assert paused.returncode == 0, paused.stderr
    assert (
        paused.stdout.startswith("paused: the queue is paused by") and "until 20" in paused.stdout
    )
    shown = run_cli("status", env=env)
    assert "paused: the queue is paused by" in shown.stdout and "queue_stalled" not in shown.stdout
    assert ": release freeze" in shown.stdout and shown.returncode == 0, shown.stdout
    real.cutover()
    candidate = real.ready("a")
    worker = real.start_worker()
    try:
        wait_for(lambda: real.lease()["held"] or None, what="the worker to hold the lease")
        time.sleep(1.5)  # several polls at 0.2 s
        assert real.candidate(candidate)["status"] == "queued"
        assert real.lease()["held"] and worker.poll() is None
        resumed = run_cli("queue", "resume-processing", env=env)
        assert resumed.returncode == 0, resumed.stderr
        wait_for(
            lambda: real.candidate(candidate)["status"] == "integrated" or None,
            what="the candidate to integrate after the resume",
        )
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_pausing_again_replaces_the_pause_in_force(world: World) -> None:
    assert pause(world, reason="first").status_code == 200
    again = pause(world, reason="second", reject_new=True)
    assert again.status_code == 200, again.text
    shown = world.client.get("/v1/queue/pause", headers=world.reporter).json()
    assert (shown["reason"], shown["reject_new"]) == ("second", True)
    events = world.client.get(
        "/v1/events", params={"type": "queue_paused"}, headers=world.reporter
    ).json()["items"]
    assert [e["fields"]["reason"] for e in events] == ["first", "second"]


def test_a_pause_ends_by_the_leases_clock_for_the_queue_and_the_conditions_alike(
    world: World,
) -> None:
    """The lease and the liveness conditions read the database's clock; the pause must end by
    the same one. Two minutes on by that clock, a pause until one minute from now is over for
    every reader: the holder is handed the candidate, and nobody still says paused."""
    world.ready("a")
    until = datetime.now(UTC) + timedelta(seconds=60)
    assert pause(world, until=until.isoformat()).status_code == 200
    assert world.holder().next().status_code == 204
    world.client.post("/v1/lease/force-release", json={"reason": "later"}, headers=world.operator)

    settings = world.client.app.state.settings
    later_settings = settings.model_copy(update={"sql_clock_offset_ms": 120_000})
    with TestClient(create_app(later_settings)) as later:
        status = later.get("/v1/status", headers=world.reporter).json()
        assert status["pause"] is None  # judged at the status's own instant
        assert "queue_stalled" in [c["code"] for c in status["conditions"]]
        handed = Holder(later, world.integrator_token, "bot-later").next()
        assert handed.status_code == 200, "the pause ended by the lease's clock: hand out"
        assert handed.json()["slug"] == "a"
        shown = later.get("/v1/queue/pause", headers=world.reporter).json()
        assert shown["paused"] is False
    events = world.client.get(
        "/v1/events", params={"type": "queue_resumed"}, headers=world.reporter
    ).json()["items"]
    assert len(events) == 1 and events[0]["fields"]["why"].startswith("expired at")
