"""GET /v1/status: mode, lease, the pause, queue and turns, the speculative builds under test,
the flake rate, and every active liveness condition."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from integrator import conditions, status
from integrator.api.deps import Reader, SettingsDep
from integrator.api.strict_body import StrictJSONRoute
from integrator.db import read_session

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["status"])


class ConditionOut(BaseModel):
    code: str
    since: str
    explanation: str
    action: str
    details: dict[str, Any]


class PauseOut(BaseModel):
    """The pause in force (`GET /v1/queue/pause` says the same)."""

    reason: str
    paused_by: str
    paused_at: str
    #: Null: until an operator resumes it.
    until: str | None
    #: A freeze: new finalize_ready are refused too.
    reject_new: bool
    summary: str


class FlakeRateOut(BaseModel):
    """Of the last `window` passes (integrated or would_integrate), how many needed a rerun."""

    flaky: int
    passed: int
    window: int
    #: flaky / passed; null before the first pass.
    rate: float | None


class QueueOut(BaseModel):
    #: Candidates in each unfinished state.
    depth: dict[str, int]
    #: Queued candidates in each lane (hotfix, normal).
    lanes: dict[str, int]
    oldest_waiting: dict[str, Any] | None
    #: Median length of the recent turns (a handout to its outcome); null without history.
    turn_seconds_median: float | None
    turns_sampled: int
    #: In progress, then queued in dequeue order, each with how many are ahead and an estimate.
    turns: list[dict[str, Any]]
    more_queued: int


class BuildOut(BaseModel):
    """A speculative build under test: a handout's merge commit, on main or on the build below."""

    candidate_id: int
    slug: str
    #: 1: merged on main itself; k: k - 1 speculative commits below it.
    depth: int
    #: What it was merged onto: main's sha, or the commit of the build below.
    base: str
    sha: str
    #: The uuid of the commit's `Integrator-Attempt` trailer.
    attempt: str
    #: The candidates whose builds lie below it, bottom first.
    below: list[int]
    #: When its checks started.
    since: str


class StatusOut(BaseModel):
    repository: str
    now: str
    #: False while any condition is active.
    ok: bool
    mode: dict[str, Any]
    lease: dict[str, Any]
    #: Null unless the queue is paused: a paused queue hands nothing out and is not a stall.
    pause: PauseOut | None
    queue: QueueOut
    #: The current epoch's speculative builds under test (`integrator worker --window W`),
    #: bottom of the chain first; empty when none.
    speculation: list[BuildOut]
    flake_rate: FlakeRateOut
    conditions: list[ConditionOut]


@router.get("/status")
def get_status(request: Request, settings: SettingsDep, _caller: Reader) -> StatusOut:
    """Evaluates the conditions now (recording a transition once, as the background does)."""
    sessions: sessionmaker[Session] = request.app.state.sessions
    conditions.evaluate(sessions, settings)
    with read_session(sessions) as session:
        return StatusOut.model_validate(status.read(session, settings))
