"""Registered updates across epochs.

On every lease grant (takeovers and force-releases included), registrations
of earlier epochs stop being usable: unconsumed ones become `void`, authorized
ones `in_doubt` — the new holder resolves those against the real ref before
it dequeues. Runs in the grant's own transaction.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from integrator.events import record_system_event
from integrator.models import Registration, utcnow

#: state → what it becomes when its epoch ends
RETIRED = {"registered": "void", "authorized": "in_doubt"}


def retire_earlier_epochs(session: Session, repository: str, epoch: int) -> dict[str, int]:
    """Void or put in doubt every open registration of an epoch before `epoch`."""
    counts: dict[str, int] = {}
    for before, after in RETIRED.items():
        changed = session.execute(
            update(Registration)
            .where(
                Registration.repository == repository,
                Registration.status == before,
                Registration.epoch < epoch,
            )
            .values(status=after, updated_at=utcnow())
            .returning(Registration.id, Registration.epoch)
        ).all()
        for registration_id, old_epoch in changed:
            record_system_event(
                session,
                type="registration_voided" if after == "void" else "registration_in_doubt",
                repository=repository,
                fields={"registration_id": registration_id, "epoch": old_epoch, "by_epoch": epoch},
            )
        counts[after] = len(changed)
    return counts


def void_open(session: Session, repository: str, reason: str) -> int:
    """Leaving cutover: every open registration (registered or authorized) becomes void."""
    voided = session.execute(
        update(Registration)
        .where(
            Registration.repository == repository,
            Registration.status.in_(("registered", "authorized")),
        )
        .values(status="void", updated_at=utcnow())
        .returning(Registration.id, Registration.epoch)
    ).all()
    for registration_id, epoch in voided:
        record_system_event(
            session,
            type="registration_voided",
            repository=repository,
            fields={"registration_id": registration_id, "epoch": epoch, "reason": reason},
        )
    return len(voided)
