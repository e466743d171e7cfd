"""Registrations at their edges, on a real database: the authorize margin to the
millisecond, the registration's own expiry instant, and what each conditional UPDATE moves.

A registration authorizes its update while the lease it was made under has at least the
margin left (`authorize_margin_seconds`, 15 s by default: exactly 15,000 ms is enough) and
until its own `expires_at_ms` (at that instant it is expired, never both usable and due).
The SQL clock is pinned for these tests (`FrozenClock`) so the instants are hit exactly.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from integrator import lease, registrations
from integrator.errors import TransitionRefused
from integrator.models import Event, Registration
from integrator.policy import Update
from integrator.settings import Settings
from tests.lease_support import FrozenClock

MAIN = "refs/heads/main"
OLD, NEW = "a" * 40, "b" * 40
MARGIN_MS = 15_000


@pytest.fixture
def reg_settings(settings: Settings) -> Settings:
    """A 60 s lease and the default 15 s authorize margin."""
    return settings.model_copy(update={"lease_ttl_seconds": 60.0, "authorize_margin_seconds": 15.0})


def grant(sessions: sessionmaker[Session], settings: Settings) -> lease.Grant:
    with sessions.begin() as session:
        return lease.acquire(session, settings, "bot")


def register(
    sessions: sessionmaker[Session], epoch: int, expires_at_ms: int, status: str = "registered",
    attempt: str = "a1",
) -> int:  # fmt: skip
    with sessions.begin() as session:
        row = Registration(
            repository="default", ref=MAIN, old=OLD, new=NEW, epoch=epoch, attempt=attempt,
            nonce_hash=f"{attempt:0<64}", status=status, expires_at_ms=expires_at_ms,
        )  # fmt: skip
        session.add(row)
        session.flush()
        return row.id


def authorize(
    sessions: sessionmaker[Session], settings: Settings, registration_id: int,
    update: Update | None = None,
) -> bool:  # fmt: skip
    update = update or Update(MAIN, MAIN, OLD, NEW, True, True)
    with sessions.begin() as session:
        row = registrations.get(session, registration_id)
        return registrations.authorize(session, settings, row, "default", update, by="hook")


def status_of(sessions: sessionmaker[Session], registration_id: int) -> str:
    with sessions() as session:
        return registrations.get(session, registration_id).status


def registration_events(sessions: sessionmaker[Session]) -> list[Event]:
    with sessions() as session:
        query = select(Event).where(Event.type.like("registration_%")).order_by(Event.seq)
        return list(session.scalars(query))


def test_exactly_the_margin_left_on_the_lease_is_enough_to_authorize(
    sessions: sessionmaker[Session], reg_settings: Settings, clock: FrozenClock
) -> None:
    held = grant(sessions, reg_settings)
    registration_id = register(sessions, held.epoch, held.expires_at_ms)
    clock.ms = held.expires_at_ms - MARGIN_MS
    assert authorize(sessions, reg_settings, registration_id)
    assert status_of(sessions, registration_id) == "authorized"
    event = registration_events(sessions)[-1]
    assert (event.type, event.actor) == ("registration_authorized", "hook")
    assert (event.fields["ref"], event.fields["new"]) == (MAIN, NEW)


def test_one_ms_less_than_the_margin_is_refused(
    sessions: sessionmaker[Session], reg_settings: Settings, clock: FrozenClock
) -> None:
    held = grant(sessions, reg_settings)
    registration_id = register(sessions, held.epoch, held.expires_at_ms)
    clock.ms = held.expires_at_ms - MARGIN_MS + 1
    assert not authorize(sessions, reg_settings, registration_id)
    assert status_of(sessions, registration_id) == "registered"


def test_a_registration_authorizes_until_its_expiry_and_is_due_from_that_instant(
    sessions: sessionmaker[Session], reg_settings: Settings, clock: FrozenClock
) -> None:
    """Usable at expires_at - 1 and not due; at expires_at not usable and due: never both."""
    held = grant(sessions, reg_settings)
    expires_at = clock.ms + 10_000
    usable = register(sessions, held.epoch, expires_at, attempt="u")
    due = register(sessions, held.epoch, expires_at, attempt="d")
    clock.ms = expires_at - 1
    with sessions.begin() as session:
        assert registrations.expire_due(session, reg_settings) == 0
    assert authorize(sessions, reg_settings, usable)
    clock.ms = expires_at
    assert not authorize(sessions, reg_settings, due)
    with sessions.begin() as session:
        assert registrations.expire_due(session, reg_settings) == 1
    assert (status_of(sessions, usable), status_of(sessions, due)) == ("authorized", "expired")
    event = registration_events(sessions)[-1]
    assert (event.type, event.fields["registration_id"]) == ("registration_expired", due)


def test_an_identical_retry_of_an_authorized_update_passes_a_different_one_does_not(
    sessions: sessionmaker[Session], reg_settings: Settings, clock: FrozenClock
) -> None:
    held = grant(sessions, reg_settings)
    registration_id = register(sessions, held.epoch, held.expires_at_ms)
    assert authorize(sessions, reg_settings, registration_id)
    assert authorize(sessions, reg_settings, registration_id)
    assert status_of(sessions, registration_id) == "authorized"
    other = Update(MAIN, MAIN, OLD, "c" * 40, True, True)
    assert not authorize(sessions, reg_settings, registration_id, other)
    assert [e.type for e in registration_events(sessions)] == ["registration_authorized"]


def test_a_registration_of_an_ended_epoch_authorizes_nothing(
    sessions: sessionmaker[Session], reg_settings: Settings, clock: FrozenClock
) -> None:
    held = grant(sessions, reg_settings)
    registration_id = register(sessions, held.epoch - 1, held.expires_at_ms)
    assert not authorize(sessions, reg_settings, registration_id)


def test_landing_moves_only_the_authorized_registration_of_that_update(
    sessions: sessionmaker[Session], reg_settings: Settings, clock: FrozenClock
) -> None:
    held = grant(sessions, reg_settings)
    landed = register(sessions, held.epoch, held.expires_at_ms, attempt="l")
    waiting = register(sessions, held.epoch, held.expires_at_ms, attempt="w")
    assert authorize(sessions, reg_settings, landed)
    update = Update(MAIN, MAIN, OLD, NEW, True, True)
    with sessions.begin() as session:
        assert registrations.land(session, "default", update, by="hook") == [landed]
    assert (status_of(sessions, landed), status_of(sessions, waiting)) == ("landed", "registered")
    event = registration_events(sessions)[-1]
    assert event.type == "registration_landed" and event.fields["by_report"] is True


def test_the_holder_fails_only_an_open_registration_of_its_own_epoch(
    sessions: sessionmaker[Session], reg_settings: Settings, clock: FrozenClock
) -> None:
    held = grant(sessions, reg_settings)
    mine = register(sessions, held.epoch, held.expires_at_ms, attempt="m")
    spent = register(sessions, held.epoch, held.expires_at_ms, status="landed", attempt="s")
    with sessions.begin() as session:
        fenced = lease.fence(session, reg_settings, held.epoch, held.token)
        failed = registrations.fail(
            session, reg_settings, fenced, mine, reason="push refused", by="bot"
        )
    assert failed.status == "failed"
    event = registration_events(sessions)[-1]
    assert (event.type, event.fields["reason"]) == ("registration_failed", "push refused")
    with pytest.raises(TransitionRefused), sessions.begin() as session:
        fenced = lease.fence(session, reg_settings, held.epoch, held.token)
        registrations.fail(session, reg_settings, fenced, spent, reason="x", by="bot")


def test_leaving_cutover_retires_open_registrations_with_the_reason(
    sessions: sessionmaker[Session], reg_settings: Settings
) -> None:
    """registered → void; authorized → in_doubt (its push may already be moving main)."""
    registered = register(sessions, 1, 0, attempt="r")
    authorized = register(sessions, 1, 0, status="authorized", attempt="a")
    landed = register(sessions, 1, 0, status="landed", attempt="l")
    with sessions.begin() as session:
        assert registrations.void_open(session, "default", "rollback drill") == 2
    assert [status_of(sessions, i) for i in (registered, authorized, landed)] == [
        "void",
        "in_doubt",
        "landed",
    ]
    events = registration_events(sessions)
    assert [(e.type, e.fields["reason"]) for e in events] == [
        ("registration_voided", "rollback drill"),
        ("registration_in_doubt", "rollback drill"),
    ]


def test_a_grant_retires_only_earlier_epochs_registrations(
    sessions: sessionmaker[Session],
) -> None:
    """registered → void, authorized → in_doubt, for epochs before the grant's; its own stay."""
    old = register(sessions, 4, 0, attempt="old")
    old_authorized = register(sessions, 4, 0, status="authorized", attempt="old-authorized")
    own = register(sessions, 5, 0, attempt="own")
    own_authorized = register(sessions, 5, 0, status="authorized", attempt="own-authorized")
    with sessions.begin() as session:
        counts = registrations.retire_earlier_epochs(session, "default", 5)
    assert counts == {"void": 1, "in_doubt": 1}
    ids = (old, old_authorized, own, own_authorized)
    assert [status_of(sessions, i) for i in ids] == ["void", "in_doubt", "registered", "authorized"]
    retired = [(e.type, e.fields["registration_id"], e.fields["by_epoch"])
               for e in registration_events(sessions)]  # fmt: skip
    assert retired == [
        ("registration_voided", old, 5),
        ("registration_in_doubt", old_authorized, 5),
    ]
