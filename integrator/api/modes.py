"""Modes, cutover, rollback and the go/no-go evidence: operators decide."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, StrictBool

from integrator import cutover, modes
from integrator.api.deps import Operator, Reader, ReadSessionDep, SessionDep, SettingsDep
from integrator.api.events import Repo
from integrator.api.schemas import Reason
from integrator.api.strict_body import StrictJSONRoute

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["modes"])


class ModeOut(BaseModel):
    mode: str
    version: int
    changed_at: datetime | None
    changed_by: str | None
    reason: str | None

    @classmethod
    def of(cls, view: modes.ModeView) -> ModeOut:
        return cls(
            mode=view.mode.value,
            version=view.version,
            changed_at=view.changed_at,
            changed_by=view.changed_by,
            reason=view.reason,
        )


class ModeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: modes.Mode
    reason: Reason


class CutoverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason
    force: StrictBool = False


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason
    drill: StrictBool = False


class EvidenceOut(BaseModel):
    complete: bool
    items: list[dict[str, Any]]
    blockers: list[str]
    hooks: list[dict[str, Any]]

    @classmethod
    def of(cls, found: cutover.Evidence) -> EvidenceOut:
        return cls(
            complete=found.complete,
            items=[asdict(i) for i in found.items],
            blockers=found.blockers,
            hooks=found.hooks,
        )


class CutoverOut(BaseModel):
    mode: ModeOut
    forced: bool
    evidence: EvidenceOut
    #: Hooks that have not seen cutover yet (or none at all): they still allow main when
    #: the service is unreachable.
    warnings: list[str]


class RollbackOut(BaseModel):
    mode: ModeOut
    drill: dict[str, Any] | None = None


@router.get("/mode")
def get_mode(session: ReadSessionDep, _caller: Reader) -> ModeOut:
    return ModeOut.of(modes.current(session))


@router.post("/mode")
def set_mode(body: ModeIn, session: SessionDep, settings: SettingsDep, caller: Operator) -> ModeOut:
    """off or shadow; never into or out of cutover (use cutover / rollback)."""
    with session.begin():
        view = modes.set_mode(
            session, body.mode, by=caller.name, reason=body.reason,
            repository=settings.repository_name,
        )  # fmt: skip
    return ModeOut.of(view)


@router.get("/evidence")
def get_evidence(
    session: ReadSessionDep, settings: SettingsDep, repo: Repo, _caller: Reader
) -> EvidenceOut:
    """The go/no-go items for cutover, each with its numbers."""
    repo.refresh()
    return EvidenceOut.of(cutover.evidence(session, settings, repo))


@router.post("/cutover")
def post_cutover(
    body: CutoverIn, session: SessionDep, settings: SettingsDep, repo: Repo, caller: Operator
) -> CutoverOut:
    """shadow → cutover on complete evidence; 409 evidence_incomplete lists the blockers."""
    repo.refresh()
    with session.begin():
        found = cutover.cutover(
            session, settings, repo, by=caller.name, reason=body.reason, force=body.force
        )
        view = modes.current(session)
        hooks_now = cutover.hooks_seen(session)
    return CutoverOut(
        mode=ModeOut.of(view),
        forced=body.force and not found.complete,
        evidence=EvidenceOut.of(found),
        warnings=cutover.hook_warnings(hooks_now),
    )


@router.post("/rollback")
def post_rollback(
    body: RollbackIn, session: SessionDep, settings: SettingsDep, caller: Operator
) -> RollbackOut:
    """cutover → shadow at once (a recorded no-op elsewhere); `drill` rehearses it in shadow."""
    with session.begin():
        if body.drill:
            drilled = cutover.drill(session, settings, by=caller.name, reason=body.reason)
            return RollbackOut(mode=ModeOut.of(modes.current(session)), drill=drilled)
        view = cutover.rollback(session, settings, by=caller.name, reason=body.reason)
    return RollbackOut(mode=ModeOut.of(view))
