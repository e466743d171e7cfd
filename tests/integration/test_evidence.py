"""The cutover evidence: what counts as shadow, and the integrator's registration check."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from integrator.api.app import create_app
from integrator.models import Event, Registration
from integrator.settings import Settings
from tests.builders import branch_pushed, finalize_ready, review_approved
from tests.gitrepos import Canonical, Unreadable, git
from tests.support import TokenMaker

DAY = 86400.0


class Service:
    """The service in process on a real canonical repository, driven as its users would."""

    def __init__(
        self, client: TestClient, tokens: TokenMaker, canonical: Canonical, engine: Engine
    ) -> None:
        self.client = client
        self.canonical = canonical
        self.engine = engine
        self.reporter = {"Authorization": f"Bearer {tokens('reporter')}"}
        self.operator = {"Authorization": f"Bearer {tokens('operator')}"}
        self.integrator = {"Authorization": f"Bearer {tokens('integrator')}"}
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
        sha = self.canonical.branch(f"feat/{slug}")
        for envelope in (review_approved(slug), branch_pushed(f"feat/{slug}", sha),
                         finalize_ready(slug, f"feat/{slug}", sha)):  # fmt: skip
            assert self.client.post("/v1/events", json=envelope, headers=self.reporter).is_success
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
