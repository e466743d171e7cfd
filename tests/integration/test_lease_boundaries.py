"""The lease at its edges, on a real database: the expiry instant, the holder id's length,
what a takeover and a force-release retire and record.

At the expiry instant N == expires_at the grant is dead (renew, release and fence refuse it)
and the lease is free (acquire grants it): exactly one of the two holds, so two holders can
never overlap and the lease is never held by nobody-and-somebody. The SQL clock is pinned to
one millisecond for these tests (`FrozenClock`), so the instant is hit exactly.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from integrator import lease
from integrator.db import read_session
from integrator.errors import InvalidInput, LeaseHeld, LeaseLost
from integrator.models import Event, Registration
from integrator.settings import Settings
from tests.lease_support import FrozenClock, acquire, lease_events, short_lease


@pytest.fixture
def lease_settings(settings: Settings) -> Settings:
    return short_lease(settings)


def held(sessions: sessionmaker[Session], settings: Settings) -> bool:
    with sessions() as session:
        return lease.status(session, settings).held


def register(sessions: sessionmaker[Session], epoch: int, status: str, attempt: str) -> None:
    with sessions.begin() as session:
        session.add(
            Registration(
                repository="default", ref="refs/heads/main", old="a" * 40, new="b" * 40,
                epoch=epoch, attempt=attempt, nonce_hash=f"{attempt:0<64}", status=status,
                expires_at_ms=0,
            )
        )  # fmt: skip


def statuses(sessions: sessionmaker[Session]) -> dict[str, str]:
    with sessions() as session:
        return {r.attempt: r.status for r in session.scalars(select(Registration))}


def test_one_ms_before_expiry_the_holder_still_holds_and_nobody_else_gets_it(
    sessions: sessionmaker[Session], lease_settings: Settings, clock: FrozenClock
) -> None:
    grant = acquire(sessions, lease_settings, "bot-a")
    clock.ms = grant.expires_at_ms - 1
    assert held(sessions, lease_settings)
    with sessions.begin() as session:
        assert lease.fence(session, lease_settings, grant.epoch, grant.token).holder == "bot-a"
    with pytest.raises(LeaseHeld):
        acquire(sessions, lease_settings, "bot-b")
    with sessions.begin() as session:
        renewed = lease.renew(session, lease_settings, grant.epoch, grant.token)
    assert renewed == clock.ms + 10_000


def test_at_the_expiry_instant_the_grant_is_dead_and_the_lease_is_free(
    sessions: sessionmaker[Session], lease_settings: Settings, clock: FrozenClock
) -> None:
    """N == expires_at: no renew, release or fence for the old grant; a takeover wins."""
    grant = acquire(sessions, lease_settings, "bot-a")
    clock.ms = grant.expires_at_ms
    assert not held(sessions, lease_settings)
    for refused in (lease.renew, lease.release, lease.fence):
        with pytest.raises(LeaseLost), sessions.begin() as session:
            refused(session, lease_settings, grant.epoch, grant.token)
    taken = acquire(sessions, lease_settings, "bot-b")
    assert (taken.epoch, taken.previous_holder, taken.previous_epoch) == (2, "bot-a", 1)
    assert taken.took_over and taken.acquired_at_ms == grant.expires_at_ms


def test_a_takeover_after_an_expiry_retires_the_earlier_epochs_registrations(
    sessions: sessionmaker[Session], lease_settings: Settings, clock: FrozenClock
) -> None:
    """The expired holder's unconsumed registrations become void, its authorized ones
    in_doubt, in the takeover's own transaction; landed ones stay landed."""
    grant = acquire(sessions, lease_settings, "bot-a")
    register(sessions, grant.epoch, "registered", "r1")
    register(sessions, grant.epoch, "authorized", "a1")
    register(sessions, grant.epoch, "landed", "l1")
    clock.ms = grant.expires_at_ms
    taken = acquire(sessions, lease_settings, "bot-b")
    assert statuses(sessions) == {"r1": "void", "a1": "in_doubt", "l1": "landed"}
    with sessions() as session:
        query = select(Event).where(Event.type.like("registration_%")).order_by(Event.seq)
        retired = [(e.type, e.fields["by_epoch"]) for e in session.scalars(query)]
    assert retired == [("registration_voided", taken.epoch), ("registration_in_doubt", taken.epoch)]


def test_a_takeover_and_a_first_grant_record_what_they_replaced(
    engine: Engine, sessions: sessionmaker[Session], lease_settings: Settings, clock: FrozenClock
) -> None:
    first = acquire(sessions, lease_settings, "bot-a")
    clock.ms = first.expires_at_ms + 5
    acquire(sessions, lease_settings, "bot-b")
    acquired, taken = lease_events(engine)
    key = lease_settings.lease_key
    assert (acquired.type, acquired.actor) == ("lease_acquired", "bot-a")
    assert acquired.fields == {
        "key": key,
        "holder": "bot-a",
        "epoch": 1,
        "acquired_at": lease.iso_of_ms(first.acquired_at_ms),
        "expires_at": lease.iso_of_ms(first.expires_at_ms),
        "previous_epoch": 0,
    }
    assert (taken.type, taken.actor) == ("lease_taken_over", "bot-b")
    taken_at = first.expires_at_ms + 5
    assert taken.fields == {
        "key": key,
        "holder": "bot-b",
        "epoch": 2,
        "acquired_at": lease.iso_of_ms(taken_at),
        "expires_at": lease.iso_of_ms(taken_at + 10_000),
        "previous_epoch": 1,
        "previous_holder": "bot-a",
        "previous_expires_at": lease.iso_of_ms(first.expires_at_ms),
    }


def test_a_token_is_256_random_bits_in_43_url_safe_characters(
    sessions: sessionmaker[Session], lease_settings: Settings
) -> None:
    token = acquire(sessions, lease_settings, "bot-a").token
    assert len(token) == 43 and token.replace("-", "").replace("_", "").isalnum()


def test_fence_runs_only_inside_a_write_transaction(
    engine: Engine, sessions: sessionmaker[Session], lease_settings: Settings
) -> None:
    grant = acquire(sessions, lease_settings, "bot-a")
    with sessions() as session, pytest.raises(RuntimeError, match="inside the transaction"):
        lease.fence(session, lease_settings, grant.epoch, grant.token)
    read_only = pytest.raises(RuntimeError, match="needs a write transaction")
    with read_session(sessions) as session, read_only:
        lease.fence(session, lease_settings, grant.epoch, grant.token)
    with Session(engine) as session, session.begin():
        assert lease.fence(session, lease_settings, grant.epoch, grant.token).epoch == 1


@pytest.mark.parametrize(
    ("holder", "rule"), [("b" * 201, "max_length"), ("   ", "required"), ("", "required")]
)
def test_a_holder_id_is_1_to_200_characters(
    sessions: sessionmaker[Session], lease_settings: Settings, holder: str, rule: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        acquire(sessions, lease_settings, holder)
    assert [(d.field, d.rule) for d in refused.value.details] == [("holder", rule)]


def test_a_200_character_holder_id_is_granted_stripped(
    sessions: sessionmaker[Session], lease_settings: Settings
) -> None:
    assert acquire(sessions, lease_settings, f" {'b' * 200} ").holder == "b" * 200


def test_a_release_keeps_the_epoch_and_names_who_released(
    engine: Engine, sessions: sessionmaker[Session], lease_settings: Settings, clock: FrozenClock
) -> None:
    grant = acquire(sessions, lease_settings, "bot-a")
    clock.ms += 7
    with sessions.begin() as session:
        released = lease.release(session, lease_settings, grant.epoch, grant.token)
    assert (released.epoch, released.previous_holder, released.previous_epoch) == (1, "bot-a", 1)
    assert released.released_at_ms == clock.ms
    event = lease_events(engine)[-1]
    assert (event.type, event.actor) == ("lease_released", "bot-a")
    assert event.fields == {
        "key": lease_settings.lease_key,
        "holder": "bot-a",
        "epoch": 1,
        "released_at": lease.iso_of_ms(clock.ms),
    }
    assert acquire(sessions, lease_settings, "bot-b").took_over is False


def test_a_force_release_records_its_stripped_reason_and_kills_the_token_at_once(
    engine: Engine,
    sessions: sessionmaker[Session],
    lease_settings: Settings,
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="integrator.lease")
    grant = acquire(sessions, lease_settings, "bot-a")
    with sessions.begin() as session:
        done = lease.force_release(session, lease_settings, "  worker stuck  ", "ops")
    assert (done.epoch, done.previous_holder, done.previous_epoch) == (2, "bot-a", 1)
    event = lease_events(engine)[-1]
    assert (event.type, event.actor) == ("lease_force_released", "ops")
    assert event.fields == {
        "key": lease_settings.lease_key,
        "epoch": 2,
        "previous_holder": "bot-a",
        "previous_epoch": 1,
        "previous_expires_at": lease.iso_of_ms(grant.expires_at_ms),
        "released_at": lease.iso_of_ms(clock.ms),
        "reason": "worker stuck",
        "operator": "ops",
    }
    assert "force-released by ops (worker stuck): holder bot-a, epoch 1 -> 2" in caplog.text
    with pytest.raises(LeaseLost), sessions.begin() as session:
        lease.renew(session, lease_settings, grant.epoch, grant.token)
    with pytest.raises(InvalidInput) as refused, sessions.begin() as session:
        lease.force_release(session, lease_settings, "   ", "ops")
    assert [(d.field, d.rule) for d in refused.value.details] == [("reason", "required")]
    assert str(refused.value) == "a reason is required to force-release the lease"


def test_the_status_of_a_lease_never_configured_is_free_at_epoch_zero(
    sessions: sessionmaker[Session], lease_settings: Settings, clock: FrozenClock
) -> None:
    with sessions() as session:
        state = lease.status(session, lease_settings)
    assert (state.holder, state.epoch, state.held, state.now_ms) == (None, 0, False, clock.ms)
    assert state.repository == lease_settings.repository_name


def test_a_lease_time_is_exact_to_the_millisecond() -> None:
    assert lease.datetime_of_ms(1_234) == datetime(1970, 1, 1, 0, 0, 1, 234_000, tzinfo=UTC)
    assert lease.datetime_of_ms(-1) == datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
