"""POST /v1/queue/next and POST /v1/candidates/{id}/outcome: the holder's fenced path; and
GET /v1/checks, the checks the service requires for green."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)
from sqlalchemy.orm import Session, sessionmaker

from integrator import long_poll, outcomes, processing
from integrator.api.deps import Reader, SessionDep, SettingsDep
from integrator.api.events import Repo
from integrator.api.lease import GrantIn, Integrator
from integrator.api.schemas import CandidateOut, Id, Name, Reason
from integrator.api.strict_body import StrictJSONRoute
from integrator.check_reports import ChecksByName, listed
from integrator.events import Evidence
from integrator.gitops import SHA_PATTERN

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["queue"])


class HandoutOut(CandidateOut):
    """The candidate now in_progress, with the mode the holder must work in."""

    mode: str
    requeued: list[int]
    #: An operator's timeouts for this candidate's checks, by check name (seconds).
    check_timeouts: dict[str, float]
    #: The checks that must pass for green (`INTEGRATOR_REQUIRED_CHECKS`).
    required_checks: list[str]


class ChecksOut(BaseModel):
    """The checks every green outcome must list as passed."""

    required: list[str]


class NextIn(GrantIn):
    """The grant, and how long to wait for a candidate when none is queued (long poll)."""

    #: Seconds to wait for a candidate before answering 204 (0: answer at once). The
    #: service caps it at a quarter of the lease TTL.
    wait_seconds: float = Field(default=0.0, ge=0.0, le=30.0)
    #: How many handouts the holder works on at once (its speculation window; 1: one at a
    #: time). With that many in_progress for its epoch, nothing more is handed out.
    window: int = Field(default=1, ge=1, le=processing.MAX_WINDOW)
    #: The ids of this epoch's handouts the holder already has: any other in_progress one (an
    #: answer lost on the way) is handed out again before a new one.
    holding: list[Id] = Field(default_factory=list, max_length=processing.MAX_WINDOW)


class OutcomeIn(GrantIn):
    model_config = ConfigDict(extra="forbid")

    outcome: outcomes.Outcome
    attempt: Name | None = Field(default=None, max_length=64)
    main_sha: str | None = Field(default=None, pattern=SHA_PATTERN)
    conflict_evidence: list[Evidence] = Field(default_factory=list)
    diagnostics: list[Reason] = Field(default_factory=list)
    next_action: Reason | None = None
    reason: Reason | None = None
    #: `integrated`: the registration the commit landed with.
    registration_id: Id | None = None
    #: Every configured check by name, in the order they ran (`not_run` after one that
    #: failed).
    checks: ChecksByName = Field(default_factory=dict)


@router.get("/checks")
def required_checks(settings: SettingsDep, _caller: Reader) -> ChecksOut:
    """The checks the service requires every green outcome to list as passed; a worker reads
    them at start and refuses to run without one of them."""
    return ChecksOut(required=settings.required_check_names)


@router.post("/queue/next", response_model=None, responses={409: {"description": "lease_lost"}})
def next_candidate(
    body: NextIn,
    request: Request,
    settings: SettingsDep,
    repo: Repo,
    caller: Integrator,
) -> HandoutOut | Response:
    """Hand the next READY candidate to the holder of this epoch; when none is queued, wait
    up to `wait_seconds` for one (a candidate queued meanwhile is answered at once), then 204.
    """
    sessions: sessionmaker[Session] = request.app.state.sessions
    handout = long_poll.take_next_waiting(
        sessions, settings, repo, epoch=body.epoch, token=body.token, by=caller.name,
        wait_seconds=body.wait_seconds, window=body.window, holding=frozenset(body.holding),
    )  # fmt: skip
    if handout is None:
        return Response(status_code=204)
    base = CandidateOut.of(handout.candidate).model_dump()
    return HandoutOut(
        **base,
        mode=handout.mode.value,
        requeued=list(handout.requeued),
        check_timeouts=handout.check_timeouts,
        required_checks=settings.required_check_names,
    )


@router.post("/candidates/{candidate_id}/outcome")
def report_outcome(
    candidate_id: Id,
    body: OutcomeIn,
    session: SessionDep,
    settings: SettingsDep,
    repo: Repo,
    caller: Integrator,
) -> CandidateOut:
    """Record the outcome of a candidate handed to this epoch (500 `outcome_not_recorded`:
    the service failed and set the candidate aside as blocked)."""
    evidence: list[dict[str, Any]] = [
        e.model_dump(mode="json", exclude_none=True) for e in body.conflict_evidence
    ]
    report = outcomes.Report(
        outcome=body.outcome,
        attempt=body.attempt,
        main_sha=body.main_sha,
        conflict_evidence=evidence,
        diagnostics=body.diagnostics,
        next_action=body.next_action,
        reason=body.reason,
        registration_id=body.registration_id,
        checks=listed(body.checks),
    )
    if body.outcome in (outcomes.Outcome.already_integrated, outcomes.Outcome.integrated):
        repo.refresh()  # the claim is checked against main as it is now
    candidate = processing.report_or_set_aside(
        session,
        settings,
        repo,
        epoch=body.epoch,
        token=body.token,
        candidate_id=candidate_id,
        outcome=report,
        by=caller.name,
    )
    return CandidateOut.of(candidate)
