"""Liveness conditions from real data: raised past their thresholds, cleared when the data
says so, and each transition recorded once (event, state row, webhook delivery) however many
evaluators race. Time moves by the SQL clock offset, never by sleeping."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from integrator import conditions
from integrator.api.app import create_app
from integrator.db import make_engine, make_sessionmaker, read_session
from integrator.models import ConditionState, Event, WebhookDelivery
from integrator.settings import Settings
from tests.api_world import post_ready
from tests.builders import push_check
from tests.gitrepos import Canonical
from tests.support import TokenMaker

#: Thresholds of these tests, in seconds (the SQL clock is moved past them).
STALL, NO_HOLDER, CHECK, PENDING = 600.0, 300.0, 900.0, 60.0


class World:
    """A service in-process (no background evaluation: the tests evaluate), its tokens, and
    the clock: `at(seconds)` evaluates as the service would that much later."""

    def __init__(self, client: TestClient, settings: Settings, tokens: TokenMaker) -> None:
        self.client = client
        self.settings = settings
        self.reporter = {"Authorization": f"Bearer {tokens('reporter')}"}
        self.operator = {"Authorization": f"Bearer {tokens('operator')}"}
        self.integrator = {"Authorization": f"Bearer {tokens('integrator')}"}
        self.hook = {"Authorization": f"Bearer {tokens('hook')}"}
        self.engine = make_engine(settings)
        self.sessions = make_sessionmaker(self.engine)

    def later(self, seconds: float) -> Settings:
        return self.settings.model_copy(update={"sql_clock_offset_ms": round(seconds * 1000)})

    def at(self, seconds: float) -> list[conditions.Transition]:
        """Evaluate and record, `seconds` from now by the SQL clock."""
        return conditions.evaluate(self.sessions, self.later(seconds))

    def active(self, seconds: float) -> dict[str, conditions.ActiveCondition]:
        with read_session(self.sessions) as session:
            return {c.code: c for c in conditions.active(session, self.later(seconds))}

    def ready(self, canonical: Canonical, slug: str) -> None:
        post_ready(self.client, self.reporter, canonical, slug)

    def acquire(self, holder: str = "bot") -> dict[str, Any]:
        grant = self.client.post(
            "/v1/lease/acquire", json={"holder": holder}, headers=self.integrator
        )
        assert grant.status_code == 200, grant.text
        body: dict[str, Any] = grant.json()
        return {"epoch": body["epoch"], "token": body["token"]}

    def take(self, grant: dict[str, Any]) -> dict[str, Any]:
        handed = self.client.post("/v1/queue/next", json=grant, headers=self.integrator)
        assert handed.status_code == 200, handed.text
        body: dict[str, Any] = handed.json()
        return body

    def hook_call(self) -> None:
        response = self.client.post(
            "/v1/push-checks",
            json=push_check("refs/heads/topic", "0" * 40, "b" * 40),
            headers=self.hook,
        )
        assert response.status_code == 200, response.text

    def events(self, *types: str) -> list[Event]:
        with self.sessions() as session:
            query = select(Event).where(Event.type.in_(types)).order_by(Event.seq)
            return list(session.scalars(query))

    def states(self) -> dict[str, bool]:
        with self.sessions() as session:
            return {s.code: s.active for s in session.scalars(select(ConditionState))}


@pytest.fixture
def canonical(tmp_path: Path) -> Canonical:
    return Canonical(tmp_path)


@pytest.fixture
def world(settings: Settings, canonical: Canonical, tokens: TokenMaker) -> Iterator[World]:
    configured = settings.model_copy(
        update={
            "repo": str(canonical.bare),
            "stall_after_seconds": STALL,
            "no_holder_after_seconds": NO_HOLDER,
            "check_timeout_seconds": CHECK,
            "cutover_pending_after_seconds": PENDING,
            "conditions_interval_seconds": 0,
            "main_watch_interval_seconds": 0,
            "webhook_url": "http://127.0.0.1:9/never-posted",
        }
    )
    with TestClient(create_app(configured)) as client:
        world = World(client, configured, tokens)
        yield world
        world.engine.dispose()


def raised(transitions: list[conditions.Transition]) -> list[str]:
    return [t.code for t in transitions if t.raised]


def cleared(transitions: list[conditions.Transition]) -> list[str]:
    return [t.code for t in transitions if not t.raised]


def test_queued_work_without_a_worker_stalls_and_a_worker_clears_it(
    world: World, canonical: Canonical
) -> None:
    """Queued and nobody takes it: no_holder past 300 s, queue_stalled past 600 s, each
    recorded once with its event and delivery; a holder's outcome clears both."""
    world.ready(canonical, "fix-login")
    assert world.at(0) == []
    assert raised(world.at(NO_HOLDER + 5)) == ["no_holder"]
    assert raised(world.at(STALL + 5)) == ["queue_stalled"]
    assert world.at(STALL + 5) == []  # already recorded
    stalled = world.events("condition_raised")[-1].fields
    assert stalled["code"] == "queue_stalled"
    assert "1 candidate(s) queued" in stalled["explanation"] and stalled["action"]
    assert world.states()["queue_stalled"] is True

    grant = world.acquire()
    handed = world.take(grant)
    outcome = {**grant, "outcome": "would_integrate", "attempt": "a1"}
    response = world.client.post(
        f"/v1/candidates/{handed['id']}/outcome", json=outcome, headers=world.integrator
    )
    assert response.status_code == 200, response.text

    assert sorted(cleared(world.at(0))) == ["no_holder", "queue_stalled"]
    assert [e.fields["code"] for e in world.events("condition_cleared")] == [
        "queue_stalled",
        "no_holder",
    ]
    with world.sessions() as session:
        kinds = [
            d.kind for d in session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))
        ]
    assert kinds == ["condition_raised"] * 2 + ["condition_cleared"] * 2


def test_a_holder_that_stops_renewing_is_silent_then_there_is_no_holder(
    world: World, canonical: Canonical
) -> None:
    """A holder with work in progress stops renewing: holder_silent past the renew deadline,
    then — its grant expired — no_holder; a forced release clears both."""
    world.ready(canonical, "fix-login")
    world.take(world.acquire("bot-1"))
    deadline = world.settings.lease_renew_deadline_seconds
    ttl = world.settings.lease_ttl_seconds
    assert world.active(deadline - 5) == {}
    assert raised(world.at(deadline + 5)) == ["holder_silent"]
    silent = world.active(deadline + 5)["holder_silent"]
    assert "bot-1" in silent.explanation and silent.details["expired"] is False
    assert raised(world.at(ttl + NO_HOLDER + 5)) == ["no_holder"]
    both = world.active(ttl + NO_HOLDER + 5)
    assert both["holder_silent"].details["expired"] is True
    assert "1 candidate(s) waiting" in both["no_holder"].explanation

    forced = world.client.post(
        "/v1/lease/force-release", json={"reason": "bot-1 is gone"}, headers=world.operator
    )
    assert forced.status_code == 200, forced.text
    # no_holder counts again from the release: it clears too until the threshold passes
    assert sorted(cleared(world.at(0))) == ["holder_silent", "no_holder"]


def test_a_candidate_in_progress_past_the_check_timeout_is_overdue(
    world: World, canonical: Canonical
) -> None:
    """The condition names the candidate in progress too long and what to do."""
    world.ready(canonical, "slow-check")
    handed = world.take(world.acquire())
    assert "check_overdue" not in world.active(CHECK - 5)
    assert "check_overdue" in raised(world.at(CHECK + 5))
    overdue = world.active(CHECK + 5)["check_overdue"]
    assert overdue.details["candidate_id"] == handed["id"]
    assert "slow-check" in overdue.explanation and "--check-timeout" in overdue.action


def test_work_arriving_while_the_hook_is_silent_raises_hook_silent(
    world: World, canonical: Canonical
) -> None:
    """A hook call, then work the hook never saw: silent past the threshold. Work right after
    a hook call is that push's own; mode off never raises it; a new hook call clears it."""
    silent_after = world.settings.hook_silent_after_seconds
    world.hook_call()
    world.ready(canonical, "just-after")  # within a minute of the hook call: its own push
    assert "hook_silent" not in world.active(silent_after + 100)

    # With a 0.5 s threshold the slack is 0.05 s: the same work now counts as unseen.
    world.settings = world.settings.model_copy(update={"hook_silent_after_seconds": 0.5})
    assert "hook_silent" in raised(world.at(5))
    found = world.active(5)["hook_silent"]
    assert found.details["activity"] in ("branch_pushed", "finalize_ready")
    assert "hooks check" in found.action

    for mode in ("off", "shadow"):  # a new mode version: the hook's next call is recorded
        body = {"mode": mode, "reason": "test"}
        assert world.client.post("/v1/mode", json=body, headers=world.operator).is_success
    world.hook_call()
    assert cleared(world.at(5)) == ["hook_silent"]


def test_a_hook_that_has_not_seen_cutover_is_pending_and_cutover_warns(
    world: World, canonical: Canonical
) -> None:
    """Cutover answers with a warning per hook that saw another mode; past the threshold
    cutover_pending is raised, and the hook's next call clears it."""
    world.hook_call()
    answer = world.client.post(
        "/v1/cutover", json={"reason": "go", "force": True}, headers=world.operator
    )
    assert answer.status_code == 200, answer.text
    [warning] = answer.json()["warnings"]
    assert "git1:/srv/canonical.git" in warning and "last saw shadow" in warning
    assert "cutover_pending" not in world.active(PENDING - 5)
    assert "cutover_pending" in raised(world.at(PENDING + 5))
    world.hook_call()
    assert cleared(world.at(PENDING + 5)) == ["cutover_pending"]


def test_evaluators_racing_on_one_database_record_each_transition_once(
    world: World, canonical: Canonical
) -> None:
    """Eight evaluators, each with its own engine (as replicas have), see the same stall at
    once: one condition_raised per condition, one delivery each."""
    world.ready(canonical, "fix-login")
    later = world.later(STALL + 5)
    engines = [make_engine(later) for _ in range(8)]
    start = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def evaluate(engine_index: int) -> None:
        try:
            start.wait(10)
            conditions.evaluate(make_sessionmaker(engines[engine_index]), later)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=evaluate, args=(i,)) for i in range(len(engines))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for engine in engines:
        engine.dispose()
    assert errors == []
    codes = sorted(e.fields["code"] for e in world.events("condition_raised"))
    assert codes == ["no_holder", "queue_stalled"]
    with world.sessions() as session:
        deliveries = list(session.scalars(select(WebhookDelivery)))
    assert sorted(d.payload["code"] for d in deliveries) == codes
