"""Registered updates: POST /v1/registrations, GET /v1/registrations/{id}, POST …/fail.

The nonce appears in exactly one answer, the registration that created it; only its hash
is stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from integrator import processing, registrations
from integrator.api.deps import Reader, ReadSessionDep, SessionDep, SettingsDep
from integrator.api.lease import GrantIn, Integrator
from integrator.api.schemas import SPACES, Id, Name, Reason
from integrator.api.strict_body import StrictJSONRoute
from integrator.check_reports import ChecksByName, listed
from integrator.gitops import SHA_PATTERN
from integrator.lease import datetime_of_ms
from integrator.models import Registration

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/registrations", tags=["registrations"])

ObjectName = Annotated[str, Field(pattern=SHA_PATTERN)]
#: `refs/` and no white space, spelled out so that every regex engine reads it alike.
RefName = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=f"^refs/[^{SPACES}]+$")
]


class RegistrationIn(GrantIn):
    model_config = ConfigDict(extra="forbid")

    candidate_id: Id
    ref: RefName
    old: ObjectName
    new: ObjectName
    attempt: Annotated[Name, StringConstraints(max_length=64)]
    #: Every configured check on `new`, as the outcome will report them: a registration
    #: whose checks do not show every required check passed is refused (409
    #: `checks_incomplete`) before anything is pushed.
    checks: ChecksByName = Field(default_factory=dict)


class FailIn(GrantIn):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


class RegistrationOut(BaseModel):
    id: int
    status: str
    ref: str
    old: str
    new: str
    attempt: str
    candidate_id: int | None
    epoch: int
    expires_at: datetime

    @classmethod
    def of(cls, row: Registration) -> RegistrationOut:
        return cls(
            id=row.id, status=row.status, ref=row.ref, old=row.old, new=row.new,
            attempt=row.attempt, candidate_id=row.candidate_id, epoch=row.epoch,
            expires_at=datetime_of_ms(row.expires_at_ms),
        )  # fmt: skip


class IssuedOut(BaseModel):
    """`nonce` is shown once: pass it as the push option integrator-push=<nonce>."""

    id: int
    nonce: str
    status: str
    expires_at: datetime
    epoch: int


@router.post(
    "",
    status_code=201,
    responses={409: {"description": "lease_lost, not_in_cutover or transition_refused"}},
)
def register(
    body: RegistrationIn, session: SessionDep, settings: SettingsDep, caller: Integrator
) -> IssuedOut:
    """Register the holder's next update of a protected ref (fenced; only in cutover)."""
    with session.begin():
        issued = processing.register(
            session, settings, epoch=body.epoch, token=body.token,
            candidate_id=body.candidate_id, ref=body.ref, old=body.old, new=body.new,
            attempt=body.attempt, by=caller.name,
            checks=listed(body.checks),
        )  # fmt: skip
        row = issued.registration
        return IssuedOut(
            id=row.id, nonce=issued.nonce, status=row.status,
            expires_at=datetime_of_ms(row.expires_at_ms), epoch=row.epoch,
        )  # fmt: skip


@router.get("/{registration_id}")
def get_registration(
    registration_id: Id, session: ReadSessionDep, _caller: Reader
) -> RegistrationOut:
    """A registration's state (never its nonce)."""
    return RegistrationOut.of(registrations.get(session, registration_id))


@router.post("/{registration_id}/fail", responses={409: {"description": "lease_lost"}})
def fail(
    registration_id: Id, body: FailIn, session: SessionDep, settings: SettingsDep,
    caller: Integrator,
) -> RegistrationOut:  # fmt: skip
    """The holder's push with this registration was refused or did not land."""
    with session.begin():
        row = processing.fail_registration(
            session, settings, epoch=body.epoch, token=body.token,
            registration_id=registration_id, reason=body.reason, by=caller.name,
        )  # fmt: skip
        return RegistrationOut.of(row)
