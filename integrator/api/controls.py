"""Operator controls over the queue: promote a slug to the hotfix lane, demote it back;
pause and resume processing; give a candidate's check a timeout of its own."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from integrator import check_contract, controls
from integrator.api.deps import Operator, Reader, ReadSessionDep, SessionDep, SettingsDep
from integrator.api.schemas import CandidateOut, Reason, Slug, UtcTime
from integrator.api.strict_body import StrictJSONRoute
from integrator.models import QueuePause
from integrator.queue import Lane

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["queue"])


class LaneChangeIn(BaseModel):
    reason: Reason


@router.post("/slugs/{slug}/promote")
def promote(
    slug: Slug, body: LaneChangeIn, session: SessionDep, settings: SettingsDep, caller: Operator
) -> CandidateOut:
    """Move the slug's newest open candidate into the hotfix lane, taken before the normal
    one; it still passes every check."""
    with session.begin():
        candidate = controls.move_to_lane(
            session, settings, slug, Lane.hotfix, reason=body.reason, by=caller.name
        )
        return CandidateOut.of(candidate)


@router.post("/slugs/{slug}/demote")
def demote(
    slug: Slug, body: LaneChangeIn, session: SessionDep, settings: SettingsDep, caller: Operator
) -> CandidateOut:
    """Move the slug's newest open candidate back into the normal lane."""
    with session.begin():
        candidate = controls.move_to_lane(
            session, settings, slug, Lane.normal, reason=body.reason, by=caller.name
        )
        return CandidateOut.of(candidate)


class PauseIn(BaseModel):
    reason: Reason
    until: UtcTime | None = None
    reject_new: bool = False


class PauseOut(BaseModel):
    """The pause in force, or `paused: false`."""

    paused: bool
    reason: str | None = None
    paused_by: str | None = None
    paused_at: str | None = None
    until: str | None = None
    reject_new: bool = False
    summary: str | None = None

    @classmethod
    def of(cls, row: QueuePause | None) -> PauseOut:
        view = controls.pause_view(row)
        return cls(paused=False) if view is None else cls(paused=True, **view)


@router.get("/queue/pause")
def show_pause(session: ReadSessionDep, settings: SettingsDep, _caller: Reader) -> PauseOut:
    """Whether the queue is paused, by whom, why and until when."""
    return PauseOut.of(controls.pause_in_force(session, settings))


@router.post(
    "/queue/pause",
    responses={409: {"description": "pause_already_over: `until` has passed already"}},
)
def pause(body: PauseIn, session: SessionDep, settings: SettingsDep, caller: Operator) -> PauseOut:
    """Stop handing out candidates (the holder idles, keeping its lease) until resumed or
    `until`; with `reject_new`, refuse new finalize_ready too (a freeze)."""
    with session.begin():
        row = controls.pause(
            session,
            settings,
            reason=body.reason,
            until=body.until,
            reject_new=body.reject_new,
            by=caller.name,
        )
        return PauseOut.of(row)


@router.post("/queue/resume-processing")
def resume_processing(session: SessionDep, settings: SettingsDep, caller: Operator) -> PauseOut:
    """End the pause in force; the holder takes the next candidate at its next poll."""
    with session.begin():
        controls.resume(session, settings, by=caller.name)
        return PauseOut.of(None)


class CheckTimeoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    check: StrictStr = Field(
        max_length=check_contract.NAME_MAX_LENGTH, pattern=check_contract.NAME_PATTERN
    )
    seconds: float = Field(gt=0, le=controls.MAX_CHECK_TIMEOUT_SECONDS, allow_inf_nan=False)
    reason: Reason


class CheckTimeoutOut(BaseModel):
    """The candidate and every check timeout an operator set for it."""

    candidate: CandidateOut
    check_timeouts: dict[str, float]


@router.post("/slugs/{slug}/check-timeout")
def override_check_timeout(
    slug: Slug, body: CheckTimeoutIn, session: SessionDep, settings: SettingsDep, caller: Operator
) -> CheckTimeoutOut:
    """Run one check of the slug's newest open candidate under this timeout (recorded as
    `check_timeout_overridden`); the worker applies it from the candidate's next handout."""
    with session.begin():
        candidate = controls.override_check_timeout(
            session, settings, slug, body.check, body.seconds, reason=body.reason, by=caller.name
        )
        return CheckTimeoutOut(
            candidate=CandidateOut.of(candidate),
            check_timeouts=controls.check_timeouts(session, candidate),
        )
