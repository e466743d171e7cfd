"""The queue as readers see it: candidates, one slug's story, re-evaluation on demand."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from integrator import events, followups, processing, queue, scoring
from integrator.admission import reevaluate_all
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
from integrator.api.schemas import (
    CandidateOut,
    Cursor,
    EventOut,
    FollowupOut,
    Id,
    Page,
    Reason,
    Slug,
)
from integrator.api.strict_body import StrictJSONRoute
from integrator.errors import NotFound
from integrator.tokens import Role

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["queue"])

Evaluator = Annotated[Caller, Depends(require(Role.reporter, Role.operator, Role.integrator))]


@router.get("/candidates")
def list_candidates(
    session: ReadSessionDep,
    settings: SettingsDep,
    _caller: Reader,
    status: Annotated[list[queue.Status] | None, Query()] = None,
    slug: Slug | None = None,
    all: bool = False,
    cursor: Cursor | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[CandidateOut]:
    """Candidates in queue order (position); terminal states only with `all` or `status`."""
    offset = cursor or 0
    rows = queue.list_candidates(
        session,
        settings.repository_name,
        statuses=status or (),
        slug=slug,
        include_terminal=all,
        offset=offset,
        limit=limit,
    )
    return Page[CandidateOut].by_offset([CandidateOut.of(r) for r in rows], offset, limit)


@router.get("/candidates/{candidate_id}")
def get_candidate(candidate_id: Id, session: ReadSessionDep, _caller: Reader) -> CandidateOut:
    return CandidateOut.of(queue.get_candidate(session, candidate_id))


class SlugStory(BaseModel):
    """The newest candidate of a slug, every candidate it had, its follow-up (the open one,
    else the latest) and its events."""

    candidate: CandidateOut
    candidates: list[CandidateOut]
    followup: FollowupOut | None
    history: list[EventOut]


@router.get("/slugs/{slug}")
def show_slug(
    slug: Slug, session: ReadSessionDep, settings: SettingsDep, _caller: Reader
) -> SlugStory:
    rows = queue.candidates_of_slug(session, settings.repository_name, slug)
    if not rows:
        raise NotFound(f"no candidate for slug {slug!r}")
    history = events.list_events(session, events.EventFilter(slug=slug, limit=1000))
    followup = followups.latest_for(session, settings.repository_name, slug)
    return SlugStory(
        candidate=CandidateOut.of(rows[-1]),
        candidates=[CandidateOut.of(r) for r in rows],
        followup=FollowupOut.of(followup) if followup else None,
        history=[EventOut.of(e) for e in history],
    )


class CloseIn(BaseModel):
    reason: Reason


@router.post("/slugs/{slug}/close")
def close_slug(
    slug: Slug, body: CloseIn, session: SessionDep, settings: SettingsDep, caller: Operator
) -> CandidateOut:
    """An operator closes the slug's newest open candidate, with a reason (one left
    in_progress by a holder that is gone too)."""
    with session.begin():
        candidate = processing.close(session, settings, slug, reason=body.reason, by=caller.name)
        return CandidateOut.of(candidate)


class Evaluated(BaseModel):
    evaluated: int


@router.post("/queue/evaluate")
def evaluate_queue(
    session: SessionDep, settings: SettingsDep, repo: Repo, _caller: Evaluator
) -> Evaluated:
    """Re-check every waiting and queued candidate against the repository now."""
    repo.refresh()
    with session.begin():
        count = reevaluate_all(session, repo, settings.repository_name)
    scoring.score_predictions(session, settings, repo, by=_caller.name)  # one query when none
    return Evaluated(evaluated=count)
