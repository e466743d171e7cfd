"""The lease's rules on a real database, SQLite and PostgreSQL.

Time moves by shifting the SQL clock offset (`later`), never by sleeping.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from integrator import lease
from integrator.db import read_session
from integrator.errors import InvalidInput, LeaseHeld, LeaseLost
from integrator.models import Lease
from integrator.settings import Settings
from tests.lease_support import acquire, later, lease_events, short_lease


@pytest.fixture
def lease_settings(settings: Settings) -> Settings:
    return short_lease(settings)


def renew(sessions: sessionmaker[Session], settings: Settings, grant: lease.Grant) -> int:
    with sessions.begin() as session:
        return lease.renew(session, settings, grant.epoch, grant.token)


def release(
    sessions: sessionmaker[Session], settings: Settings, grant: lease.Grant
) -> lease.Released:
    with sessions.begin() as session:
        return lease.release(session, settings, grant.epoch, grant.token)


def fence(sessions: sessionmaker[Session], settings: Settings, grant: lease.Grant) -> None:
    with sessions.begin() as session:
        lease.fence(session, settings, grant.epoch, grant.token)


def status(sessions: sessionmaker[Session], settings: Settings) -> lease.LeaseState:
    with read_session(sessions) as session:
        return lease.status(session, settings)


def test_first_acquire_grants_epoch_one_and_stores_only_the_token_hash(
    sessions: sessionmaker[Session], lease_settings: Settings
) -> None:
    """A grant returns a fresh secret token; the row keeps its SHA-256 only."""
    grant = acquire(sessions, lease_settings, "bot-a")
    assert (grant.holder, grant.epoch, grant.took_over) == ("bot-a", 1, False)
    assert grant.expires_at_ms - grant.acquired_at_ms == 10_000
    assert len(grant.token) >= 43 and grant.token not in repr(grant)
    with sessions() as session:
        row = session.scalars(select(Lease)).one()
    assert row.key == "integration/default/main" == lease_settings.lease_key
    assert row.token_hash == lease.hash_lease_token(grant.token) != grant.token


def test_time_is_the_databases_clock_plus_the_bound_offset(
    sessions: sessionmaker[Session], lease_settings: Settings
) -> None:
    """N comes from SQL (this host's clock for both test databases), shifted by the offset."""
    before_ms = time.time_ns() // 1_000_000
    now_ms = status(sessions, lease_settings).now_ms
    after_ms = time.time_ns() // 1_000_000
    assert before_ms - 50 <= now_ms <= after_ms + 50
    assert status(sessions, later(lease_settings, 3600)).now_ms - now_ms >= 3_600_000


def test_a_held_lease_refuses_every_other_acquire_naming_holder_and_expiry(
    sessions: sessionmaker[Session], lease_settings: Settings
) -> None:
    """While a grant is live, acquire is refused for anyone — its own holder included."""
    grant = acquire(sessions, lease_settings, "bot-a")
    for contender in ("bot-b", "bot-a"):
        with pytest.raises(LeaseHeld) as refused:
            acquire(sessions, later(lease_settings, 9.5), contender)
        assert refused.value.extra == {
            "holder": "bot-a",
            "expires_at": lease.iso_of_ms(grant.expires_at_ms),
        }
    assert status(sessions, lease_settings).epoch == 1


def test_an_expired_lease_is_taken_over_with_the_next_epoch(
    sessions: sessionmaker[Session], lease_settings: Settings
) -> None:
    """At expiry the next acquire wins, bumps the epoch and names whom it took over."""
    acquire(sessions, lease_settings, "bot-a")
    grant = acquire(sessions, later(lease_settings, 10), "bot-b")
    assert (grant.epoch, grant.previous_holder, grant.previous_epoch) == (2, "bot-a", 1)
    assert grant.took_over


def test_renew_extends_one_ttl_from_sql_now(
    sessions: sessionmaker[Session], lease_settings: Settings
) -> None:
    """A renewal moves the expiry to its own statement's time plus the TTL."""
    grant = acquire(sessions, lease_settings, "bot-a")
    expires_at_ms = renew(sessions, later(lease_settings, 8), grant)
    assert expires_at_ms >= grant.expires_at_ms + 8_000
    state = status(sessions, later(lease_settings, 17))
    assert state.held and state.expires_at_ms == expires_at_ms
    assert state.renewed_at_ms == expires_at_ms - 10_000


def test_an_expired_grant_cannot_be_renewed_even_when_nobody_took_over(
    sessions: sessionmaker[Session], lease_settings: Settings
) -> None:
    """Expiry is final: its holder may already have fenced itself out, and so must the row."""
    grant = acquire(sessions, lease_settings, "bot-a")
    with pytest.raises(LeaseLost):
        renew(sessions, later(lease_settings, 10), grant)
    with pytest.raises(LeaseLost):
        fence(sessions, later(lease_settings, 10), grant)
    assert not status(sessions, later(lease_settings, 10)).held


def test_a_stale_grant_is_refused_by_renew_release_and_fence(
    sessions: sessionmaker[Session], lease_settings: Settings
) -> None:
    """After a takeover the old epoch's token is dead, and a wrong token never worked."""
    old = acquire(sessions, lease_settings, "bot-a")
    moved = later(lease_settings, 11)
    new = acquire(sessions, moved, "bot-b")
    forged = lease.Grant(**{**old.__dict__, "epoch": new.epoch})
    for stale in (old, forged):
        with pytest.raises(LeaseLost):
            renew(sessions, moved, stale)
        with pytest.raises(LeaseLost):
            release(sessions, moved, stale)
        with pytest.raises(LeaseLost):
            fence(sessions, moved, stale)
    fence(sessions, moved, new)
    assert status(sessions, moved).holder == "bot-b"


def test_release_frees_the_lease_and_never_lowers_the_epoch(
    sessions: sessionmaker[Session], lease_settings: Settings
) -> None:
    """Release keeps the epoch; the next grant, even at once, is epoch + 1."""
    grant = acquire(sessions, lease_settings, "bot-a")
    released = release(sessions, lease_settings, grant)
    assert (released.epoch, released.previous_holder) == (1, "bot-a")
    state = status(sessions, lease_settings)
    assert (state.holder, state.epoch, state.held) == (None, 1, False)
    with pytest.raises(LeaseLost):
        release(sessions, lease_settings, grant)
    again = acquire(sessions, lease_settings, "bot-a")
    assert (again.epoch, again.took_over) == (2, False)


def test_an_expired_grant_cannot_be_released(
    sessions: sessionmaker[Session], lease_settings: Settings
) -> None:
    """Release names a live grant, like renew; an expired one is already over."""
    grant = acquire(sessions, lease_settings, "bot-a")
    with pytest.raises(LeaseLost):
        release(sessions, later(lease_settings, 10), grant)


def test_force_release_bumps_the_epoch_and_kills_the_holders_token(
    sessions: sessionmaker[Session], lease_settings: Settings
) -> None:
    """An operator's force-release ends a live grant at once: renew and fence refuse it."""
    grant = acquire(sessions, lease_settings, "bot-a")
    with sessions.begin() as session:
        result = lease.force_release(session, lease_settings, "wedged worker", "alice")
    assert (result.epoch, result.previous_holder, result.previous_epoch) == (2, "bot-a", 1)
    with pytest.raises(LeaseLost):
        renew(sessions, lease_settings, grant)
    with pytest.raises(LeaseLost):
        fence(sessions, lease_settings, grant)
    assert acquire(sessions, lease_settings, "bot-b").epoch == 3


def test_force_release_requires_a_reason(
    sessions: sessionmaker[Session], lease_settings: Settings
) -> None:
    """An operator's override is always explained."""
    with pytest.raises(InvalidInput), sessions.begin() as session:
        lease.force_release(session, lease_settings, "  ", "alice")


def test_a_holder_id_is_required_and_bounded(
    sessions: sessionmaker[Session], lease_settings: Settings
) -> None:
    """Holder ids end up in events and messages: non-empty, at most 200 characters."""
    for bad in ("", "   ", "x" * 201):
        with pytest.raises(InvalidInput):
            acquire(sessions, lease_settings, bad)


def test_every_grant_release_and_force_release_is_one_event_renewals_none(
    engine: Engine, sessions: sessionmaker[Session], lease_settings: Settings
) -> None:
    """The lease's history is in events: acquired, taken over (with whom), released, forced."""
    first = acquire(sessions, lease_settings, "bot-a")
    renew(sessions, lease_settings, first)
    moved = later(lease_settings, 10)
    second = acquire(sessions, moved, "bot-b")
    release(sessions, moved, second)
    acquire(sessions, moved, "bot-c")
    with sessions.begin() as session:
        lease.force_release(session, moved, "maintenance", "alice")

    events = lease_events(engine)
    assert [(e.type, e.fields["epoch"], e.actor) for e in events] == [
        ("lease_acquired", 1, "bot-a"),
        ("lease_taken_over", 2, "bot-b"),
        ("lease_released", 2, "bot-b"),
        ("lease_acquired", 3, "bot-c"),
        ("lease_force_released", 4, "alice"),
    ]
    taken = events[1].fields
    assert (taken["previous_holder"], taken["previous_epoch"]) == ("bot-a", 1)
    assert taken["previous_expires_at"] <= taken["acquired_at"]
    forced = events[4].fields
    assert (forced["reason"], forced["operator"], forced["previous_holder"]) == (
        "maintenance",
        "alice",
        "bot-c",
    )
    assert all(e.repository == "default" for e in events)


def test_the_lease_row_is_created_once_and_never_deleted(
    sessions: sessionmaker[Session], lease_settings: Settings
) -> None:
    """ensure_lease_row is idempotent; a fresh row is free at epoch 0; acquire creates it too."""
    for _ in range(2):
        with sessions.begin() as session:
            lease.ensure_lease_row(session, lease_settings)
    state = status(sessions, lease_settings)
    assert (state.holder, state.epoch, state.held) == (None, 0, False)
    other = lease_settings.model_copy(update={"repository": "tools"})
    assert other.lease_key == "integration/tools/main"
    assert status(sessions, other).epoch == 0  # absent row reads as free
    assert acquire(sessions, other, "bot-a").epoch == 1
    with sessions() as session:
        assert sorted(session.scalars(select(Lease.key))) == [
            "integration/default/main",
            "integration/tools/main",
        ]


def test_fence_refuses_to_run_outside_a_write_transaction(
    sessions: sessionmaker[Session], lease_settings: Settings
) -> None:
    """On SQLite only a write transaction (BEGIN IMMEDIATE) holds the lock the fence relies on."""
    grant = acquire(sessions, lease_settings, "bot-a")
    with read_session(sessions) as session, pytest.raises(RuntimeError, match="write"):
        lease.fence(session, lease_settings, grant.epoch, grant.token)
    with sessions.begin() as session:
        state = lease.fence(session, lease_settings, grant.epoch, grant.token)
    assert (state.holder, state.epoch, state.held) == ("bot-a", 1, True)
