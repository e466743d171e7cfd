"""The one global mode and its change rules (`Mode` itself is the policy's: a pure value).

A fresh install has no mode row and is in `shadow`: it records, never blocks.
Every change is a `mode_changed` event with who, when and why. Only
`integrator.cutover` switches into or out of `cutover`, after its checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from integrator.errors import TransitionRefused
from integrator.events import record_system_event
from integrator.models import ModeState, utcnow
from integrator.policy import Mode as Mode  # the value is pure; it is re-exported here

DEFAULT_MODE = Mode.shadow
_ROW_ID = 1


@dataclass(frozen=True)
class ModeView:
    mode: Mode
    version: int
    changed_at: datetime | None
    changed_by: str | None
    reason: str | None


_ROW = select(
    ModeState.mode, ModeState.version, ModeState.changed_at, ModeState.changed_by, ModeState.reason
).where(ModeState.id == bindparam("id"))


_ROW_SHARED = _ROW.with_for_update(read=True)


def current(session: Session, *, hold: bool = False) -> ModeView:
    """The mode as one cached Core statement (every push check reads it: the ORM's
    identity-map load of the row cost more than the query), in the caller's transaction, so
    that a change committed before it is the mode it sees. `hold`: a share lock on the row
    until the caller commits, for a write that is only right in this mode (a change waits
    for it, or it waits for the change and sees the new mode)."""
    row = session.execute(_ROW_SHARED if hold else _ROW, {"id": _ROW_ID}).one_or_none()
    if row is None:
        return ModeView(DEFAULT_MODE, 0, None, None, None)
    return ModeView(Mode(row.mode), row.version, *row[2:])


def change(
    session: Session,
    to: Mode,
    *,
    by: str,
    reason: str,
    repository: str,
    forced: bool = False,
    drill: bool = False,
) -> ModeView:
    """Write the new mode and its event; the caller has checked the rules for `to`."""
    if not reason.strip():
        raise TransitionRefused("a mode change needs a reason")
    row = session.scalar(select(ModeState).where(ModeState.id == _ROW_ID).with_for_update())
    before = Mode(row.mode) if row else DEFAULT_MODE
    if row is None:
        row = ModeState(id=_ROW_ID, mode=to.value, version=1, changed_by=by, reason=reason)
        session.add(row)
    else:
        row.mode, row.version = to.value, row.version + 1
        row.changed_at, row.changed_by, row.reason = utcnow(), by, reason
    session.flush()
    record_system_event(
        session,
        type="mode_changed",
        repository=repository,
        fields={
            "from": before.value,
            "to": to.value,
            "version": row.version,
            "reason": reason,
            "forced": forced,
            "drill": drill,
        },
        actor=by,
    )
    return current(session)


def set_mode(session: Session, to: Mode, *, by: str, reason: str, repository: str) -> ModeView:
    """`integrator mode set off|shadow`: never into cutover, never out of it (use rollback)."""
    now = current(session)
    if to is Mode.cutover:
        raise TransitionRefused("use `integrator cutover`: it checks the evidence first")
    if now.mode is Mode.cutover:
        raise TransitionRefused("the service is in cutover: use `integrator rollback` to leave it")
    return change(session, to, by=by, reason=reason, repository=repository)
