"""POST /v1/candidates/{id}/speculation: the lease holder records a speculative build of one of
its handouts (checks started on it, or thrown away), fenced like an outcome."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from integrator import speculation
from integrator.api.deps import SessionDep, SettingsDep
from integrator.api.lease import GrantIn, Integrator
from integrator.api.schemas import Id, Reason, Sha
from integrator.api.strict_body import StrictJSONRoute
from integrator.event_schemas import MAX_SPECULATION_DEPTH, Attempt

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["queue"])


class SpeculationIn(GrantIn):
    """One build: `testing` carries its depth and the candidates below it; `discarded` its
    reason (and the candidate whose failure forced it, if one did)."""

    model_config = ConfigDict(extra="forbid")

    #: The uuid of the speculative commit's `Integrator-Attempt` trailer.
    attempt: Attempt
    state: speculation.State
    #: What it was merged onto: main's sha, or the speculative commit below it.
    base: Sha
    #: The speculative merge commit.
    sha: Sha
    #: `testing`: 1 when merged on main itself; k when k - 1 speculative commits lie below.
    depth: int | None = Field(default=None, ge=1, le=MAX_SPECULATION_DEPTH)
    #: `testing`: the candidates whose speculative commits lie below it, bottom first.
    below: list[Id] = Field(default_factory=list, max_length=MAX_SPECULATION_DEPTH - 1)
    #: `discarded`: why (required then).
    reason: Reason | None = None
    #: `discarded`: the candidate whose failure forced it, if one did.
    cause_candidate_id: Id | None = None


class SpeculationOut(BaseModel):
    recorded: Literal["speculation_started", "speculation_discarded"]
    #: The event's `seq` (the same one when the record was sent again).
    event_id: int


@router.post(
    "/candidates/{candidate_id}/speculation",
    responses={409: {"description": "lease_lost, or not this epoch's handout"}},
)
def record_speculation(
    candidate_id: Id,
    body: SpeculationIn,
    session: SessionDep,
    settings: SettingsDep,
    caller: Integrator,
) -> SpeculationOut:
    """Record a speculative build of a handout of this epoch; a discarded one leaves the
    candidate in progress with the holder, who builds it again."""
    build = speculation.Build(
        state=body.state,
        attempt=body.attempt,
        base=body.base,
        sha=body.sha,
        depth=body.depth,
        below=tuple(body.below),
        reason=body.reason,
        cause_candidate_id=body.cause_candidate_id,
    )
    with session.begin():
        recorded = speculation.record(
            session, settings, epoch=body.epoch, token=body.token, candidate_id=candidate_id,
            build=build, by=caller.name,
        )  # fmt: skip
    return SpeculationOut(recorded=recorded.type, event_id=recorded.event_id)
