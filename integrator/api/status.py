"""GET /v1/status: mode, lease, queue and turns, and every active liveness condition."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from integrator import conditions, status
from integrator.api.deps import Reader, SettingsDep
from integrator.db import read_session

router = APIRouter(prefix="/v1", tags=["status"])


class ConditionOut(BaseModel):
    code: str
    since: str
    explanation: str
    action: str
    details: dict[str, Any]


class QueueOut(BaseModel):
    #: Candidates in each unfinished state.
    depth: dict[str, int]
    oldest_waiting: dict[str, Any] | None
    #: Median length of the recent turns (a handout to its outcome); null without history.
    turn_seconds_median: float | None
    turns_sampled: int
    #: In progress, then queued in dequeue order, each with how many are ahead and an estimate.
    turns: list[dict[str, Any]]
    more_queued: int


class StatusOut(BaseModel):
    repository: str
    now: str
    #: False while any condition is active.
    ok: bool
    mode: dict[str, Any]
    lease: dict[str, Any]
    queue: QueueOut
    conditions: list[ConditionOut]


@router.get("/status")
def get_status(request: Request, settings: SettingsDep, _caller: Reader) -> StatusOut:
    """Evaluates the conditions now (recording a transition once, as the background does)."""
    sessions: sessionmaker[Session] = request.app.state.sessions
    conditions.evaluate(sessions, settings)
    with read_session(sessions) as session:
        return StatusOut.model_validate(status.read(session, settings))
