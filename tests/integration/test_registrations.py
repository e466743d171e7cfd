"""Registrations do not outlive their epoch or cutover."""

from __future__ import annotations

from sqlalchemy import Engine, select

from integrator import cutover, lease, modes, registrations
from integrator.db import make_sessionmaker
from integrator.models import Registration
from integrator.policy import Update
from integrator.settings import Settings


def register(engine: Engine, epoch: int, status: str, nonce: str) -> None:
    with make_sessionmaker(engine)() as session, session.begin():
        session.add(
            Registration(
                repository="default", ref="refs/heads/main", old="a" * 40, new="b" * 40,
                epoch=epoch, attempt=nonce, nonce_hash=nonce * 8, status=status,
                expires_at_ms=0,
            )
        )  # fmt: skip


def statuses(engine: Engine) -> dict[str, str]:
    with make_sessionmaker(engine)() as session:
        rows = session.scalars(select(Registration))
        return {r.attempt: r.status for r in rows}


def test_a_new_grant_voids_unconsumed_and_dooms_authorized_registrations(
    engine: Engine, settings: Settings
) -> None:
    """registered → void, authorized → in_doubt, for every epoch before the new one."""
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        lease.ensure_lease_row(session, settings)
        first = lease.acquire(session, settings, "bot-1")
    register(engine, first.epoch, "registered", "r1")
    register(engine, first.epoch, "authorized", "a1")
    register(engine, first.epoch, "landed", "l1")
    with sessions() as session, session.begin():
        lease.force_release(session, settings, "stuck worker", "ops")
    assert statuses(engine) == {"r1": "void", "a1": "in_doubt", "l1": "landed"}


def test_leaving_cutover_voids_unconsumed_registrations_and_doubts_authorized_ones(
    engine: Engine, settings: Settings
) -> None:
    """Rollback voids registered ones; an authorized one may already be moving main (the hook
    let its push through), so it becomes in_doubt, and the report of its landing lands it."""
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        modes.change(session, modes.Mode.cutover, by="ops", reason="t", repository="default")
    register(engine, 1, "registered", "r1")
    register(engine, 1, "authorized", "a1")
    with sessions() as session, session.begin():
        cutover.rollback(session, settings, by="ops", reason="incident")
    assert statuses(engine) == {"r1": "void", "a1": "in_doubt"}
    moved = Update("refs/heads/main", "refs/heads/main", "a" * 40, "b" * 40, True, True)
    with sessions() as session, session.begin():
        registrations.land(session, "default", moved, "hook")
    assert statuses(engine) == {"r1": "void", "a1": "landed"}
