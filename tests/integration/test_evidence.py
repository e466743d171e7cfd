"""The cutover evidence: what counts as shadow, and the integrator's registration check."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from integrator import scoring
from integrator.api.app import create_app
from integrator.models import Event, Registration
from integrator.parity import dequeue_order_violations, lease_overlaps, shadow_registrations
from integrator.settings import Settings
from tests.api_world import ApiWorld
from tests.gitrepos import Canonical, Unreadable, git
from tests.support import TokenMaker

DAY = 86400.0


class Service(ApiWorld):
    """The service in process on a real canonical repository, driven as its users would."""

    def __init__(
        self, client: TestClient, tokens: TokenMaker, canonical: Canonical, engine: Engine
    ) -> None:
        super().__init__(client, tokens, canonical)
        self.engine = engine
        self.integrator = {"Authorization": f"Bearer {self.integrator_token}"}
        self.grant: dict[str, Any] | None = None

    def acquire(self) -> dict[str, Any]:
        if self.grant is None:
            grant = self.client.post(
                "/v1/lease/acquire", json={"holder": "bot"}, headers=self.integrator
            )
            assert grant.status_code == 200, grant.text
            self.grant = {k: grant.json()[k] for k in ("epoch", "token")}
        return self.grant

    def predict(self, slug: str) -> int:
        """A READY candidate, handed to the lease holder and predicted `would_integrate`."""
        self.ready(slug)
        grant = self.acquire()
        handed = self.client.post("/v1/queue/next", json=grant, headers=self.integrator).json()
        outcome = {**grant, "outcome": "would_integrate", "attempt": f"attempt-{slug}"}
        reported = self.client.post(
            f"/v1/candidates/{handed['id']}/outcome", json=outcome, headers=self.integrator
        )
        assert reported.status_code == 200, reported.text
        return int(handed["id"])

    def set_mode(self, mode: str) -> None:
        changed = self.client.post(
            "/v1/mode", json={"mode": mode, "reason": "test"}, headers=self.operator
        )
        assert changed.status_code == 200, changed.text

    def drill(self) -> None:
        drilled = self.client.post(
            "/v1/rollback", json={"reason": "rehearse", "drill": True}, headers=self.operator
        )
        assert drilled.status_code == 200, drilled.text

    def item(self, code: str) -> dict[str, Any]:
        evidence = self.client.get("/v1/evidence", headers=self.operator).json()
        found: dict[str, Any] = next(i for i in evidence["items"] if i["code"] == code)
        return found

    def age_history(self, seconds: float) -> None:
        """Everything recorded so far happened `seconds` earlier (time passes, no sleeping)."""
        with Session(self.engine) as session, session.begin():
            for event in session.scalars(select(Event)):
                event.recorded_at = event.recorded_at - timedelta(seconds=seconds)


@contextmanager
def service_on(
    settings: Settings, tokens: TokenMaker, engine: Engine, canonical: Canonical, **update: Any
) -> Iterator[Service]:
    configured = settings.model_copy(update={"repo": str(canonical.bare), **update})
    with TestClient(create_app(configured)) as client:
        yield Service(client, tokens, canonical, engine)


@pytest.fixture
def service(
    settings: Settings, tmp_path: Path, tokens: TokenMaker, engine: Engine
) -> Iterator[Service]:
    """Cutover needs one shadow outcome over a day."""
    with service_on(
        settings, tokens, engine, Canonical(tmp_path),
        cutover_min_outcomes=1, cutover_min_shadow_seconds=DAY,
    ) as service:  # fmt: skip
        yield service


# -- evidence item 1: shadow mode has run ------------------------------------------------------


def test_predictions_made_in_off_are_not_shadow_outcomes(service: Service) -> None:
    """Only a prediction recorded while the mode was shadow counts as a shadow outcome."""
    service.set_mode("off")
    service.predict("in-off")
    service.set_mode("shadow")
    service.age_history(2 * DAY)

    item = service.item("shadow_ran")

    assert item["numbers"]["outcomes"] == 0
    assert item["ok"] is False
    assert any("0 shadow outcomes" in b for b in item["blockers"])


def test_shadow_time_restarts_when_shadow_is_entered_again(service: Service) -> None:
    """Time counts from the latest entry into shadow, not from the first prediction ever."""
    service.predict("long-ago")
    service.age_history(2 * DAY)
    service.set_mode("off")
    service.set_mode("shadow")
    service.predict("just-now")

    item = service.item("shadow_ran")

    assert item["numbers"]["seconds"] < 60
    assert item["numbers"]["outcomes"] == 1  # the one predicted since shadow began again
    assert item["ok"] is False
    assert any("since" in b and "need 86400 s" in b for b in item["blockers"])


def test_shadow_time_counts_from_when_shadow_began_not_from_the_first_prediction(
    service: Service,
) -> None:
    """A fresh install is in shadow from its first record: a day of shadow, one outcome today."""
    service.acquire()  # the first record: the service is in shadow from here on
    service.age_history(2 * DAY)
    service.predict("today")

    item = service.item("shadow_ran")

    assert item["ok"] is True, item["blockers"]
    assert item["numbers"]["seconds"] >= 2 * DAY
    assert item["numbers"]["shadow_until"] is None


def test_a_rollback_drill_does_not_restart_the_shadow_clock(service: Service) -> None:
    """The drill's instant cutover → shadow round trip leaves the shadow run uninterrupted."""
    service.predict("before-the-drill")
    service.age_history(2 * DAY)
    service.drill()

    item = service.item("shadow_ran")

    assert item["ok"] is True, item["blockers"]
    assert item["numbers"]["seconds"] >= 2 * DAY


def test_out_of_shadow_the_item_reports_the_last_shadow_run_and_when_it_ended(
    service: Service,
) -> None:
    """In `off` shadow is not running: its clock stopped when shadow was left."""
    service.predict("shadow")
    service.age_history(2 * DAY)
    service.set_mode("off")
    service.age_history(DAY)

    numbers = service.item("shadow_ran")["numbers"]

    assert 2 * DAY - 60 < numbers["seconds"] < 2 * DAY + 60
    assert numbers["shadow_until"] is not None and numbers["outcomes"] == 1


# -- evidence item 4: the live policy allows a registration from the live lease ----------------


def test_the_registration_check_uses_canonical_main_and_the_live_lease(
    service: Service,
) -> None:
    """The update is the holder's, from main's real sha, in the lease's epoch and expiry,
    judged as a push check judges a registration; a dry run that registers nothing."""
    grant = service.acquire()

    item = service.item("registration_allowed")

    assert item["ok"] is True, item["blockers"]
    numbers = item["numbers"]
    assert numbers["old"] == service.canonical.head()
    assert numbers["ref"] == "refs/heads/main"
    assert (numbers["holder"], numbers["epoch"]) == ("bot", grant["epoch"])
    assert numbers["reason_code"] == "registered"
    assert "nothing is registered" in numbers["registration"]
    with Session(service.engine) as session:
        assert session.scalars(select(Registration)).all() == []


def test_the_registration_check_fails_when_canonical_main_does_not_exist(
    settings: Settings, tmp_path: Path, tokens: TokenMaker, engine: Engine
) -> None:
    """Without a readable main there is no update for the integrator to register."""
    canonical = Canonical(tmp_path)
    git("update-ref", "-d", "refs/heads/main", cwd=canonical.bare)
    with service_on(settings, tokens, engine, canonical) as service:
        service.acquire()
        item = service.item("registration_allowed")
    assert item["ok"] is False
    assert item["blockers"] == [
        "cannot read refs/heads/main in the canonical repository: "
        "the integrator's update has nothing to build on"
    ]


def test_the_registration_check_fails_when_the_lease_has_less_than_the_margin_left(
    settings: Settings, tmp_path: Path, tokens: TokenMaker, engine: Engine
) -> None:
    """A holder about to lose its lease could not get an update authorized."""
    canonical = Canonical(tmp_path)
    with service_on(settings, tokens, engine, canonical) as service:
        service.acquire()
    late = (settings.lease_ttl_seconds - settings.authorize_margin_seconds + 5) * 1000
    with service_on(settings, tokens, engine, canonical, sql_clock_offset_ms=int(late)) as later:
        item = later.item("registration_allowed")
    assert item["ok"] is False
    assert item["blockers"] == ["refused: lease_margin"]


# -- at cutover --------------------------------------------------------------------------------


def test_at_cutover_a_prediction_git_cannot_check_is_queued_not_dropped_to_waiting(
    service: Service,
) -> None:
    """Unknown is not unmet: with the repository briefly unreadable, the evidence says it cannot
    tell and a forced cutover still queues the prediction (dequeue re-checks it)."""
    candidate = service.predict("p")
    with Unreadable(service.canonical):
        parity = service.item("shadow_parity")
        assert parity["ok"] is False
        assert any("cannot read canonical main" in b for b in parity["blockers"])
        forced = service.client.post(
            "/v1/cutover", json={"reason": "test", "force": True}, headers=service.operator
        )
        assert forced.status_code == 200, forced.text
    shown = service.client.get(f"/v1/candidates/{candidate}", headers=service.operator).json()
    assert (shown["status"], shown["position"]) == ("queued", 1)


# -- evidence item 2 on a recorded history, as a checker reads it ------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class History:
    """Events as the service records them (one row each, in server order), for histories the
    service itself would never write: the checker's rules must still find what is wrong."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, kind: str, minute: float, **fields: Any) -> None:
        self.rows.append({
            "type": kind, "repository": "app", "natural_key": f"k{len(self.rows)}",
            "content_hash": "0" * 64, "slug": fields.get("slug"), "branch": None, "sha": None,
            "fields": fields, "actor": "test", "recorded_at": T0 + timedelta(minutes=minute),
        })  # fmt: skip

    def store(self, engine: Engine) -> None:
        with engine.begin() as connection:
            connection.execute(insert(Event), self.rows)


def at(minute: float) -> str:
    return (T0 + timedelta(minutes=minute)).isoformat()


def grant(history: History, minute: float, epoch: int, previous_expires: float) -> None:
    history.add("lease_taken_over", minute, key="integrator", holder=f"w{epoch}", epoch=epoch,
                acquired_at=at(minute), expires_at=at(minute + 2), previous_epoch=epoch - 1,
                previous_holder=f"w{epoch - 1}",
                previous_expires_at=at(previous_expires))  # fmt: skip


def status(history: History, minute: float, candidate: int, to: str, position: int | None) -> None:
    history.add("candidate_status_changed", minute, candidate_id=candidate, slug=f"s{candidate}",
                to=to, position=position, reason=None)  # fmt: skip


def mode(history: History, minute: float, to: str, drill: bool = False) -> None:
    history.add("mode_changed", minute, to=to, drill=drill, forced=False, reason="test")


def checks(*statuses: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"name": name, "status": status, "attempts": []} for name, status in statuses]


def violations(history: History) -> None:
    """Each kind of shadow-parity violation once, among records that are fine."""
    history.add("lease_acquired", 0, key="integrator", holder="w1", epoch=1,
                acquired_at=at(0), expires_at=at(2), previous_epoch=0)  # fmt: skip
    grant(history, 1, 2, previous_expires=2)  # overlap: epoch 1 still held until minute 2
    grant(history, 5, 3, previous_expires=3)  # fine: epoch 2 had expired
    status(history, 6, 1, "queued", 1)
    status(history, 6, 2, "queued", 2)
    status(history, 7, 2, "in_progress", 2)  # out of order: position 1 is queued
    status(history, 8, 1, "in_progress", 1)
    status(history, 9, 3, "queued", None)
    status(history, 9, 4, "queued", 4)
    status(history, 10, 4, "in_progress", 4)
    history.add("registration_created", 11, registration_id=7, candidate_id=4, epoch=3)
    mode(history, 12, "cutover", drill=True)
    history.add("registration_created", 12, registration_id=8, candidate_id=None, epoch=3)
    mode(history, 12, "shadow", drill=True)
    history.add("would_integrate", 13, candidate_id=1, checks=checks(("unit", "passed")))
    history.add("would_block", 14, candidate_id=2, checks=checks(("unit", "skipped")))
    history.add("would_integrate", 15, candidate_id=4, checks=None)
    history.add("would_integrate", 16, candidate_id=4)
    history.add("would_integrate", 16, mode="shadow")  # a prediction naming no candidate
    history.add("prediction_scored", 17, candidate_id=1, category="agreed", agreed=True)
    history.add("prediction_scored", 18, candidate_id=2, agreed=False)  # before categories
    history.add("push_would_reject", 19, ref="refs/heads/main", resolved_ref="refs/heads/main",
                old="1" * 40, new="2" * 40, fast_forward=True, first_parent=True,
                protected=True, pusher="alice")  # fmt: skip
    history.add("push_would_reject", 20, ref="refs/heads/x", resolved_ref="refs/heads/x",
                old="1" * 40, new="2" * 40, fast_forward=True, first_parent=True,
                protected=False, pusher="bob")  # fmt: skip


def trailered_commit_on_main(canonical: Canonical) -> str:
    git("checkout", "-q", "main", cwd=canonical.work)
    (canonical.work / "forged.txt").write_text("x\n")
    git("add", "forged.txt", cwd=canonical.work)
    git("commit", "-q", "-m", "looks official\n\nIntegrator-Attempt: forged-1", cwd=canonical.work)
    git("push", "-q", "origin", "main", cwd=canonical.work)
    return canonical.head()


def checker(engine: Engine) -> dict[str, Any]:
    """Shadow parity as a checker finds it: every recorded event read in server order, the
    pure rules applied to the ones of each kind (no query of the evidence's own)."""
    with Session(engine) as session:
        recorded = list(session.scalars(select(Event).order_by(Event.seq)))

    def of(*kinds: str) -> list[Event]:
        return [e for e in recorded if e.type in kinds]

    fared = scoring.tally(of(*scoring.PREDICTIONS), of("prediction_scored"))
    return {
        "overlaps": lease_overlaps(of("lease_taken_over")),
        "order": dequeue_order_violations(of("candidate_status_changed")),
        "registrations": shadow_registrations(of("mode_changed", "registration_created")),
        "fared": fared,
    }


def test_shadow_parity_finds_each_kind_of_violation_in_the_recorded_history(
    settings: Settings, tmp_path: Path, tokens: TokenMaker, engine: Engine
) -> None:
    """Overlapping grants, an out-of-order dequeue, a registration in shadow and a trailered
    commit on main without a registration: each reported once, exactly as a checker reading
    every event finds it."""
    canonical = Canonical(tmp_path)
    forged = trailered_commit_on_main(canonical)
    history = History()
    violations(history)
    history.store(engine)
    with service_on(settings, tokens, engine, canonical) as service:
        parity = service.item("shadow_parity")
    found = checker(engine)

    assert parity["ok"] is False
    assert parity["blockers"] == [
        f"lease grants overlap: epoch 2 granted at {at(1)} before epoch 1 expired at {at(2)}",
        "dequeue out of position order: candidate 2 (position 2) dequeued while position 1 "
        "was queued (event #6)",
        "registration created in shadow: registration 7 in shadow",
        f"integrator-trailered commit on main without a registration: {forged[:12]}",
    ]
    assert found["overlaps"] == [parity["blockers"][0].removeprefix("lease grants overlap: ")]
    assert len(found["order"]) == len(found["registrations"]) == 1
    assert parity["numbers"] == {
        "lease_overlaps": 1,
        "dequeue_order_violations": 1,
        "registrations_in_shadow": 1,
        "unexplained_trailered_commits": 1,
        "predictions_scored": 2,
        "predictions_agreed": 1,
        "predictions_blocked_then_resolved": 0,
        "predictions_disagreed": 1,
        "predictions_unscored": 2,  # candidate 4 and the prediction naming none
        "prediction_agreement": 0.5,
    }
    assert {f"predictions_{k}": v for k, v in found["fared"].items()} == {
        k: v for k, v in parity["numbers"].items() if k.startswith("predictions_") and
        k != "predictions_scored"
    }  # fmt: skip


def test_the_other_items_read_the_same_history_as_a_checker(
    settings: Settings, tmp_path: Path, tokens: TokenMaker, engine: Engine
) -> None:
    """Outcomes in shadow, checks reported and the last would-be refusal, on the same history."""
    history = History()
    violations(history)
    history.store(engine)
    with service_on(settings, tokens, engine, Canonical(tmp_path),
                    required_checks=["lint"]) as service:  # fmt: skip
        ran, reported, refuses = (
            service.item(code) for code in ("shadow_ran", "checks_reported", "live_policy_refuses")
        )
    assert ran["numbers"]["outcomes"] == 4  # candidates 1, 2, 4 and a prediction naming none
    assert reported["numbers"]["reported"] == {"lint": 0, "unit": 1}
    assert refuses["numbers"]["replayed_seq"] == 22  # the protected one, not the last


def test_shadow_parity_on_a_random_history_is_what_a_checker_finds(
    settings: Settings, tmp_path: Path, tokens: TokenMaker, engine: Engine
) -> None:
    """Hundreds of grants, status changes, mode changes, registrations and predictions in a
    random order: the evidence's blockers and tallies are the checker's, one for one."""
    rng = random.Random(7)
    history = History()
    for n in range(600):
        minute, candidate = n / 10, rng.randrange(1, 40)
        kind = rng.choice(("grant", "status", "status", "status", "mode", "registration",
                           "prediction", "scored"))  # fmt: skip
        if kind == "grant":
            grant(history, minute, n, previous_expires=minute + rng.choice((-1, 0, 0.5)))
        elif kind == "status":
            to = rng.choice(("queued", "queued", "in_progress", "waiting", "integrated"))
            status(history, minute, candidate, to, rng.choice((None, *range(1, 30))))
        elif kind == "mode":
            mode(history, minute, rng.choice(("off", "shadow", "cutover")), rng.random() < 0.3)
        elif kind == "registration":
            history.add("registration_created", minute, registration_id=n, candidate_id=candidate)
        elif kind == "prediction":
            history.add(rng.choice(scoring.PREDICTIONS), minute, candidate_id=candidate)
        else:
            category = rng.choice((None, *scoring.Category))
            named = {"category": category} if category else {}
            history.add("prediction_scored", minute, candidate_id=candidate,
                        agreed=rng.random() < 0.5, **named)  # fmt: skip
    history.store(engine)
    with service_on(settings, tokens, engine, Canonical(tmp_path)) as service:
        parity = service.item("shadow_parity")
    found = checker(engine)

    assert found["overlaps"] and found["order"] and found["registrations"]
    assert parity["blockers"] == [
        *(f"lease grants overlap: {o}" for o in found["overlaps"]),
        *(f"dequeue out of position order: {o}" for o in found["order"]),
        *(f"registration created in shadow: {r}" for r in found["registrations"]),
    ]
    tallied = {k.removeprefix("predictions_"): v for k, v in parity["numbers"].items()
               if k.startswith("predictions_") and k != "predictions_scored"}  # fmt: skip
    assert tallied == found["fared"]
