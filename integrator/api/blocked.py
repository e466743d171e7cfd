"""Blocked candidates: their follow-ups, closing one, and resuming a slug in its turn."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, StrictBool

from integrator import blocked, followups
from integrator.api.deps import (
    Caller,
    Operator,
    Reader,
    ReadSessionDep,
    SessionDep,
    SettingsDep,
    require,
)
from integrator.api.events import Repo
from integrator.api.schemas import CandidateOut, Cursor, FollowupOut, Id, Page, Reason, Slug
from integrator.api.strict_body import StrictJSONRoute
from integrator.followups import FollowupStatus
from integrator.tokens import Role

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["blocked"])

Resumer = Annotated[Caller, Depends(require(Role.reporter, Role.operator))]


@router.get("/followups")
def list_followups(
    session: ReadSessionDep,
    settings: SettingsDep,
    _caller: Reader,
    status: Annotated[list[FollowupStatus] | None, Query()] = None,
    slug: Slug | None = None,
    cursor: Cursor | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[FollowupOut]:
    """Follow-ups of blocked candidates, oldest first; the open ones unless `status` says."""
    offset = cursor or 0
    rows = followups.list_followups(
        session,
        settings.repository_name,
        statuses=frozenset(status or (FollowupStatus.open,)),
        slug=slug,
        offset=offset,
        limit=limit,
    )
    return Page[FollowupOut].by_offset([FollowupOut.of(r) for r in rows], offset, limit)


class CloseFollowupIn(BaseModel):
    reason: Reason


@router.post("/followups/{followup_id}/close")
def close_followup(
    followup_id: Id,
    body: CloseFollowupIn,
    session: SessionDep,
    settings: SettingsDep,
    caller: Operator,
) -> FollowupOut:
    """An operator closes an open follow-up with a reason; its candidate stays as it is."""
    with session.begin():
        row = followups.close(session, settings, followup_id, caller.name, body.reason)
        return FollowupOut.of(row)


class ResumeIn(BaseModel):
    #: Give up the original turn: queue behind everything queued now.
    to_back: StrictBool = False


@router.post("/slugs/{slug}/resume")
def resume_slug(
    slug: Slug,
    session: SessionDep,
    settings: SettingsDep,
    repo: Repo,
    caller: Resumer,
    body: ResumeIn | None = None,
) -> CandidateOut:
    """Re-check the slug's blocked candidate and queue it in its original turn (or at the
    back); an operator may also send back a handout whose holder is gone."""
    with session.begin():
        candidate = blocked.resume(
            session,
            settings,
            repo,
            slug,
            to_back=bool(body and body.to_back),
            by=caller.name,
            operator=caller.role is Role.operator,
        )
        return CandidateOut.of(candidate)
