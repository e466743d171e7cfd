"""POST /v1/predictions/score: record shadow predictions whose content reached main."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from integrator import scoring
from integrator.api.deps import Caller, SessionDep, SettingsDep, require
from integrator.api.events import Repo
from integrator.api.strict_body import StrictJSONRoute
from integrator.tokens import Role

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["queue"])

Scorer = Annotated[Caller, Depends(require(Role.operator, Role.hook, Role.integrator))]


class ScoredOut(BaseModel):
    candidate_id: int
    slug: str
    sha: str
    predicted: str
    actual: str
    main_sha: str
    matched_by: str
    #: agreed, blocked_then_resolved (a right block, landed by resolving its files) or disagreed.
    category: str
    #: Files git's own merge of the landing conflicts on (looked at for a would_block).
    conflicts: list[str]
    agreed: bool


class ScoredList(BaseModel):
    scored: list[ScoredOut]


@router.post("/predictions/score")
def score_predictions(
    session: SessionDep, settings: SettingsDep, repo: Repo, caller: Scorer
) -> ScoredList:
    """Read canonical main and score every predicted candidate that landed on it (once)."""
    repo.refresh()
    landed = scoring.score_predictions(session, settings, repo, by=caller.name)
    return ScoredList(
        scored=[
            ScoredOut(
                candidate_id=x.candidate_id,
                slug=x.slug,
                sha=x.sha,
                predicted=x.predicted,
                actual="integrated",
                main_sha=x.main_sha,
                matched_by=x.matched_by,
                category=x.category,
                conflicts=list(x.conflicts),
                agreed=x.agreed,
            )
            for x in landed
        ]
    )
