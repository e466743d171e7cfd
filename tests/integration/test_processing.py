"""Fenced queue processing: only the current holder takes work and reports outcomes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from integrator.models import Event
from integrator.settings import Settings
from tests.api_world import ApiWorld as World
from tests.api_world import Holder as Holder  # test_followups and test_pause take it from here
from tests.builders import branch_pushed, finalize_ready
from tests.support import TokenMaker


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[World]:
    with World.serving(settings, tmp_path, tokens) as world:
        yield world


def test_the_holder_takes_candidates_in_position_order(world: World) -> None:
    """Smallest position first; 204 when nothing is queued."""
    for slug in ("first", "second", "third"):
        world.ready(slug)
    holder = world.holder()
    taken = []
    for _ in range(3):
        response = holder.next()
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "in_progress" and body["mode"] == "shadow"
        taken.append((body["slug"], body["position"]))
        assert holder.outcome(body["id"], "would_integrate", attempt="a1").status_code == 200
    assert taken == [("first", 1), ("second", 2), ("third", 3)]
    assert holder.next().status_code == 204


def test_a_stale_holders_dequeue_and_outcome_are_refused(world: World) -> None:
    """After a takeover, the old epoch can neither take work nor report."""
    world.ready("a")
    world.ready("b")
    old = world.holder("old")
    handed = old.next().json()
    world.force_release()
    new = world.holder("new")
    assert new.epoch > old.epoch
    refused = old.next()
    assert refused.status_code == 409 and refused.json()["code"] == "lease_lost"
    late = old.outcome(handed["id"], "would_integrate", attempt="x")
    assert late.status_code == 409 and late.json()["code"] == "lease_lost"


def test_in_progress_of_an_ended_epoch_returns_to_the_head_of_the_queue(
    world: World, engine: Engine
) -> None:
    """Never lost, keeps its position, and gets exactly one outcome record."""
    world.ready("a")
    world.ready("b")
    old = world.holder("old")
    first = old.next().json()
    world.force_release()
    new = world.holder("new")
    again = new.next().json()
    assert (again["id"], again["position"]) == (first["id"], 1)
    assert again["requeued"] == [first["id"]]
    assert new.outcome(again["id"], "would_block", attempt="x",
                       conflict_evidence=[{"kind": "conflict", "path": "a.txt"}],
                       diagnostics=["a.txt conflicts"]).status_code == 200  # fmt: skip
    assert new.outcome(again["id"], "would_integrate", attempt="y").status_code == 409
    with engine.connect() as connection:
        predictions = connection.execute(
            select(Event.type).where(
                Event.type.in_(["would_integrate", "would_block"]), Event.slug == "a"
            )
        ).all()
    assert [p.type for p in predictions] == ["would_block"]


def test_shadow_refuses_real_outcomes_and_predicted_candidates_are_not_handed_out_again(
    world: World,
) -> None:
    """In shadow the integrator never moves main; a prediction keeps its place."""
    world.ready("p")
    holder = world.holder()
    handed = holder.next().json()
    real = holder.outcome(handed["id"], "integrated", main_sha="f" * 40, attempt="a")
    assert real.status_code == 409 and "would_integrate" in real.json()["message"]
    predicted = holder.outcome(handed["id"], "would_integrate", attempt="a")
    assert predicted.json()["status"] == "predicted"
    assert predicted.json()["position"] == handed["position"]
    assert holder.next().status_code == 204


def test_cutover_records_integration_blocked_and_integrated_needs_a_registration(
    world: World, engine: Engine
) -> None:
    """Real outcomes on the fenced path: `integrated` without the registration it landed with
    is refused (test_registered_push.py covers the registered path); `blocked` is recorded."""
    world.ready("bad")
    world.set_mode_cutover(engine)
    holder = world.holder()
    bad = holder.next().json()
    assert bad["mode"] == "cutover"
    claimed = holder.outcome(bad["id"], "integrated", main_sha="e" * 40, attempt="a1")
    assert claimed.status_code == 422, claimed.text
    assert claimed.json()["details"][0]["field"] == "registration_id"
    blocked = holder.outcome(
        bad["id"],
        "blocked",
        attempt="a2",
        conflict_evidence=[{"kind": "check", "command": "make test", "exit_code": 2}],
        diagnostics=["the check failed"],
        next_action="fix the test, push, then run `integrator resume bad`",
    )
    assert blocked.status_code == 200, blocked.text
    assert blocked.json()["status"] == "blocked"
    incomplete = world.client.post(
        f"/v1/candidates/{bad['id']}/outcome",
        json={**holder.grant(), "outcome": "blocked", "attempt": "a3"},
        headers=holder.auth,
    )
    assert incomplete.status_code == 409  # no longer in_progress
    with engine.connect() as connection:
        types = [r.type for r in connection.execute(select(Event.type).order_by(Event.seq))]
    assert types.count("integration_completed") == 0
    assert types.count("integration_blocked") == 1


def test_a_queued_candidate_already_on_main_is_closed_as_integrated_at_dequeue(
    world: World,
) -> None:
    """The re-check just before handing out sees main; no merge is attempted again."""
    sha = world.ready("landed")
    world.ready("next")
    world.canonical.merge_to_main(sha)
    handed = world.holder().next().json()
    assert handed["slug"] == "next"
    story = world.client.get("/v1/slugs/landed", headers=world.reporter).json()
    assert story["candidate"]["status"] == "integrated"
    assert story["candidate"]["reason"] == "already on main"


def test_only_integrator_tokens_may_dequeue(world: World, tokens: TokenMaker) -> None:
    """A reporter cannot take work even with a valid grant."""
    holder = world.holder()
    response = world.client.post("/v1/queue/next", json=holder.grant(), headers=world.reporter)
    assert response.status_code == 403


def test_asking_again_without_an_outcome_returns_the_same_handout(world: World) -> None:
    """A retry after a lost answer does not strand the first candidate in_progress."""
    world.ready("first")
    world.ready("second")
    holder = world.holder()
    first = holder.next().json()
    again = holder.next().json()
    assert (again["id"], again["status"]) == (first["id"], "in_progress")
    assert holder.outcome(first["id"], "would_integrate", attempt="a").status_code == 200
    assert holder.next().json()["slug"] == "second"


def _cutover_then_rollback(world: World) -> None:
    forced = world.client.post(
        "/v1/cutover", json={"reason": "try it", "force": True}, headers=world.operator
    )
    assert forced.status_code == 200, forced.text
    back = world.client.post("/v1/rollback", json={"reason": "undo"}, headers=world.operator)
    assert back.status_code == 200, back.text


def test_a_candidate_predicted_again_after_cutover_and_rollback_records_its_new_prediction(
    world: World, engine: Engine
) -> None:
    """A prediction is per handout: the same holder predicting again after a round trip is kept."""
    world.ready("again")
    holder = world.holder()
    first = holder.next().json()
    assert holder.outcome(first["id"], "would_integrate", attempt="a1").status_code == 200
    _cutover_then_rollback(world)
    second = holder.next().json()
    assert (second["id"], second["status"], second["mode"]) == (
        first["id"],
        "in_progress",
        "shadow",
    )

    response = holder.outcome(second["id"], "would_integrate", attempt="a2")

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "predicted"
    with engine.connect() as connection:
        recorded = connection.execute(
            select(Event.type).where(Event.type == "would_integrate", Event.slug == "again")
        ).all()
    assert len(recorded) == 2


def test_an_outcome_the_service_cannot_record_sets_the_candidate_aside_instead_of_stranding_it(
    world: World, engine: Engine
) -> None:
    """A failure while recording answers 500 and leaves the candidate blocked with the reason,
    so the next handout moves on instead of handing the same candidate out forever."""
    from integrator.db import make_sessionmaker
    from integrator.events import record_system_event
    from integrator.outcomes import prediction_key

    world.ready("poison")
    world.ready("after")
    holder = world.holder()
    handed = holder.next().json()
    with make_sessionmaker(engine)() as session, session.begin():  # the key is already taken
        record_system_event(
            session, type="would_integrate", repository="canonical", fields={},
            natural_key=prediction_key(handed["id"], holder.epoch, "a1"),
        )  # fmt: skip

    failed = holder.outcome(handed["id"], "would_integrate", attempt="a1")

    assert failed.status_code == 500
    assert failed.json()["code"] == "outcome_not_recorded"
    story = world.client.get("/v1/slugs/poison", headers=world.reporter).json()
    assert story["candidate"]["status"] == "blocked"
    assert "could not record" in story["candidate"]["reason"]
    assert story["followup"]["status"] == "open"  # its author is told, like any block
    assert "integrator resume poison" in story["followup"]["next_action"]
    assert holder.next().json()["slug"] == "after"


def test_close_returns_an_in_progress_candidate_whose_holder_is_gone_and_closes_it(
    world: World,
) -> None:
    """in_progress of an ended epoch goes back to queued, then closed; both are recorded."""
    world.ready("stuck")
    handed = world.holder("gone").next().json()
    world.force_release()

    closed = world.client.post(
        "/v1/slugs/stuck/close", json={"reason": "cannot land"}, headers=world.operator
    )

    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed"
    history = world.client.get("/v1/slugs/stuck", headers=world.reporter).json()["history"]
    moves = [
        (e["fields"]["from"], e["fields"]["to"])
        for e in history
        if e["type"] == "candidate_status_changed" and e["fields"]["candidate_id"] == handed["id"]
    ]
    assert moves[-2:] == [("in_progress", "queued"), ("queued", "closed")]


def test_close_refuses_a_candidate_the_live_holder_is_working_on_and_says_what_to_do(
    world: World,
) -> None:
    """The live holder's handout is not taken from under it; the answer names the way out."""
    world.ready("busy")
    world.holder("alive").next()

    refused = world.client.post(
        "/v1/slugs/busy/close", json={"reason": "no"}, headers=world.operator
    )

    assert refused.status_code == 409
    message = refused.json()["message"]
    assert "alive" in message and "lease release --force" in message


def _resubmit(world: World, slug: str) -> dict[str, Any]:
    """The author's fix: a new commit on the slug's branch, pushed and finalized."""
    sha = world.canonical.branch(f"feat/{slug}", content="fixed\n")
    for envelope in (branch_pushed(f"feat/{slug}", sha), finalize_ready(slug, f"feat/{slug}", sha)):
        response = world.client.post("/v1/events", json=envelope, headers=world.reporter)
        assert response.status_code == 201, response.text
    candidate: dict[str, Any] = response.json()["candidate"]
    return candidate


def test_the_successor_of_an_in_progress_candidate_keeps_its_turn(world: World) -> None:
    """A fix must not cost its author their turn: the successor takes the original's position
    at once, the original is superseded after its outcome, and the successor comes next."""
    world.ready("fix")
    world.ready("other")
    holder = world.holder()
    original = holder.next().json()
    successor = _resubmit(world, "fix")
    assert (successor["status"], successor["position"]) == ("queued", original["position"])

    answered = holder.outcome(original["id"], "would_integrate", attempt="a")

    assert answered.json()["status"] == "superseded"
    assert answered.json()["superseded_by"] == successor["id"]
    handed = holder.next().json()
    assert (handed["id"], handed["position"]) == (successor["id"], original["position"])


def test_a_candidate_returned_by_an_ended_epoch_is_superseded_by_its_successor(
    world: World,
) -> None:
    """requeue_stale supersedes what a newer finalize_ready replaced; the successor is next."""
    world.ready("fix")
    world.ready("other")
    original = world.holder("old").next().json()
    successor = _resubmit(world, "fix")
    world.force_release()

    handed = world.holder("new").next().json()

    assert handed["requeued"] == [original["id"]]
    assert (handed["id"], handed["position"]) == (successor["id"], original["position"])
    story = world.client.get("/v1/slugs/fix", headers=world.reporter).json()
    before = next(c for c in story["candidates"] if c["id"] == original["id"])
    assert (before["status"], before["superseded_by"]) == ("superseded", successor["id"])
