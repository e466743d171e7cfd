"""Operator controls over the queue: promote a slug to the hotfix lane, demote it back."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from integrator import controls
from integrator.api.deps import Operator, SessionDep, SettingsDep
from integrator.api.schemas import CandidateOut, Reason, Slug
from integrator.queue import Lane

router = APIRouter(prefix="/v1", tags=["queue"])


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
