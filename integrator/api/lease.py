"""The lease endpoints: thin edges around `integrator.lease`.

Times leave as ISO 8601 UTC; the token appears in exactly one answer, the
acquire that created it, and never in `GET /v1/lease`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from integrator import lease
from integrator.api.deps import (
    Caller,
    Operator,
    Reader,
    ReadSessionDep,
    SessionDep,
    SettingsDep,
    require,
)
from integrator.api.schemas import Epoch, Name, Reason
from integrator.api.strict_body import StrictJSONRoute
from integrator.lease import datetime_of_ms
from integrator.tokens import Role

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/lease", tags=["lease"])

Integrator = Annotated[Caller, Depends(require(Role.integrator))]


class AcquireIn(BaseModel):
    holder: Name


class GrantIn(BaseModel):
    """The grant a holder acts under: its epoch and its secret token."""

    epoch: Epoch
    token: Name


class ForceReleaseIn(BaseModel):
    reason: Reason


class LeaseOut(BaseModel):
    key: str
    repository: str
    holder: str | None
    epoch: int
    held: bool
    acquired_at: datetime | None
    renewed_at: datetime | None
    expires_at: datetime | None
    ttl_seconds: float


class GrantOut(BaseModel):
    holder: str
    epoch: int
    token: str
    acquired_at: datetime
    expires_at: datetime
    ttl_seconds: float


class RenewOut(BaseModel):
    epoch: int
    expires_at: datetime


class ReleaseOut(BaseModel):
    epoch: int
    previous_holder: str | None
    previous_epoch: int
    released_at: datetime


def _maybe(ms: int | None) -> datetime | None:
    return None if ms is None else datetime_of_ms(ms)


def _released(result: lease.Released) -> ReleaseOut:
    return ReleaseOut(
        epoch=result.epoch,
        previous_holder=result.previous_holder,
        previous_epoch=result.previous_epoch,
        released_at=datetime_of_ms(result.released_at_ms),
    )


@router.get("")
def get_lease(session: ReadSessionDep, settings: SettingsDep, _caller: Reader) -> LeaseOut:
    """The lease's holder, epoch and times; `held` is false once it has expired."""
    state = lease.status(session, settings)
    return LeaseOut(
        key=state.key,
        repository=state.repository,
        holder=state.holder,
        epoch=state.epoch,
        held=state.held,
        acquired_at=_maybe(state.acquired_at_ms),
        renewed_at=_maybe(state.renewed_at_ms),
        expires_at=_maybe(state.expires_at_ms),
        ttl_seconds=settings.lease_ttl_seconds,
    )


@router.post("/acquire", responses={409: {"description": "lease_held (with holder, expires_at)"}})
def acquire(
    body: AcquireIn, session: SessionDep, settings: SettingsDep, _caller: Integrator
) -> GrantOut:
    """Take the lease if it is free or expired: a new epoch and a new secret token."""
    with session.begin():
        grant = lease.acquire(session, settings, body.holder)
    return GrantOut(
        holder=grant.holder,
        epoch=grant.epoch,
        token=grant.token,
        acquired_at=datetime_of_ms(grant.acquired_at_ms),
        expires_at=datetime_of_ms(grant.expires_at_ms),
        ttl_seconds=grant.ttl_seconds,
    )


@router.post("/renew", responses={409: {"description": "lease_lost"}})
def renew(
    body: GrantIn, session: SessionDep, settings: SettingsDep, _caller: Integrator
) -> RenewOut:
    """Extend an unexpired grant by one TTL from now."""
    with session.begin():
        expires_at_ms = lease.renew(session, settings, body.epoch, body.token)
    return RenewOut(epoch=body.epoch, expires_at=datetime_of_ms(expires_at_ms))


@router.post("/release", responses={409: {"description": "lease_lost"}})
def release(
    body: GrantIn, session: SessionDep, settings: SettingsDep, _caller: Integrator
) -> ReleaseOut:
    """Give an unexpired grant back; the epoch is kept (the next grant bumps it)."""
    with session.begin():
        result = lease.release(session, settings, body.epoch, body.token)
    return _released(result)


@router.post("/force-release")
def force_release(
    body: ForceReleaseIn, session: SessionDep, settings: SettingsDep, caller: Operator
) -> ReleaseOut:
    """An operator ends the current grant (if any) and bumps the epoch; recorded with why."""
    with session.begin():
        result = lease.force_release(session, settings, body.reason, caller.name)
    return _released(result)
