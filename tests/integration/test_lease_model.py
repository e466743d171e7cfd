"""A Hypothesis state machine of the lease against the real database.

Several holders acquire, renew, release, fence and are force-released while
the SQL clock jumps forward (by the bound offset: nothing sleeps). Invariants:
at most one unexpired holder at any time, the epoch rises by exactly one per
grant, stale or expired grants are always refused, and release never lowers
the epoch.

Timing without flakiness: the TTL is 10 s and the clock moves in multiples of
4 s, so every "now vs expiry" comparison the model makes is at least 2 s away
from the boundary; the real time an example takes (milliseconds) cannot tip it.
"""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from integrator import lease
from integrator.db import make_sessionmaker, read_session
from integrator.errors import LeaseHeld, LeaseLost
from integrator.settings import Settings
from tests.lease_support import later, short_lease

TTL_MS = 10_000
CLOCK_STEPS_MS = [4_000, 8_000, 12_000, 40_000]
HOLDERS = ["bot-a", "bot-b", "bot-c"]


class LeaseMachine(RuleBasedStateMachine):
    """The model: the current epoch, holder and (virtual) expiry; every grant ever made."""

    grants = Bundle("grants")

    def __init__(self, sessions: sessionmaker[Session], base: Settings) -> None:
        super().__init__()
        self.sessions = sessions
        # A lease key of its own per example: no state leaks between examples.
        repository = f"model-{uuid.uuid4().hex[:12]}"
        self.settings = short_lease(base, repository=repository)
        self.clock_ms = 0
        self.epoch = 0
        self.holder: str | None = None
        self.expires_ms = 0
        self.current: lease.Grant | None = None
        self.every_grant: list[lease.Grant] = []
        self.highest_epoch_seen = 0

    # -- the model's predicate -----------------------------------------------------

    def is_live(self, grant: lease.Grant) -> bool:
        return grant is self.current and self.clock_ms < self.expires_ms

    # -- rules ---------------------------------------------------------------------

    @rule(target=grants, holder=st.sampled_from(HOLDERS))
    def acquire(self, holder: str) -> object:
        free = self.current is None or self.clock_ms >= self.expires_ms
        try:
            with self.sessions.begin() as session:
                grant = lease.acquire(session, self.settings, holder)
        except LeaseHeld as refused:
            assert not free, "a free or expired lease refused an acquire"
            assert refused.extra["holder"] == self.holder
            return multiple()
        assert free, f"{holder} was granted a lease still held by {self.holder}"
        assert grant.epoch == self.epoch + 1, "each grant bumps the epoch by exactly one"
        assert grant.previous_holder == self.holder
        assert grant.expires_at_ms - grant.acquired_at_ms == TTL_MS
        self.epoch, self.holder, self.current = grant.epoch, holder, grant
        self.expires_ms = self.clock_ms + TTL_MS
        self.every_grant.append(grant)
        return grant

    @rule(grant=grants)
    def renew(self, grant: lease.Grant) -> None:
        live = self.is_live(grant)
        try:
            with self.sessions.begin() as session:
                lease.renew(session, self.settings, grant.epoch, grant.token)
        except LeaseLost:
            assert not live, "a live grant's renewal was refused"
            return
        assert live, f"a stale or expired grant (epoch {grant.epoch}) was renewed"
        self.expires_ms = self.clock_ms + TTL_MS

    @rule(grant=grants)
    def release(self, grant: lease.Grant) -> None:
        live = self.is_live(grant)
        try:
            with self.sessions.begin() as session:
                result = lease.release(session, self.settings, grant.epoch, grant.token)
        except LeaseLost:
            assert not live, "a live grant's release was refused"
            return
        assert live, f"a stale or expired grant (epoch {grant.epoch}) was released"
        assert result.epoch == self.epoch, "release keeps the epoch"
        self.holder, self.current = None, None

    @rule(grant=grants)
    def fenced_write(self, grant: lease.Grant) -> None:
        live = self.is_live(grant)
        try:
            with self.sessions.begin() as session:
                lease.fence(session, self.settings, grant.epoch, grant.token)
        except LeaseLost:
            assert not live, "the fence refused a live grant"
            return
        assert live, f"the fence let a stale or expired grant (epoch {grant.epoch}) write"

    @rule()
    def force_release(self) -> None:
        with self.sessions.begin() as session:
            result = lease.force_release(session, self.settings, "model", "operator")
        assert result.epoch == self.epoch + 1
        self.epoch, self.holder, self.current = result.epoch, None, None

    @rule(step_ms=st.sampled_from(CLOCK_STEPS_MS))
    def advance_clock(self, step_ms: int) -> None:
        self.clock_ms += step_ms
        self.settings = later(self.settings, step_ms / 1000)

    # -- invariants ----------------------------------------------------------------

    @invariant()
    def the_row_agrees_with_the_model_and_the_epoch_never_falls(self) -> None:
        with read_session(self.sessions) as session:
            state = lease.status(session, self.settings)
        assert state.epoch == self.epoch >= self.highest_epoch_seen
        self.highest_epoch_seen = state.epoch
        model_holds = self.current is not None and self.clock_ms < self.expires_ms
        assert state.held == model_holds
        if state.held:
            assert state.holder == self.holder

    @invariant()
    def at_most_one_grant_passes_the_fence(self) -> None:
        passing = []
        for grant in self.every_grant:
            try:
                with self.sessions.begin() as session:
                    lease.fence(session, self.settings, grant.epoch, grant.token)
            except LeaseLost:
                continue
            passing.append(grant.epoch)
        assert len(passing) <= 1, f"several grants pass the fence: epochs {passing}"
        if passing:
            assert passing == [self.epoch]


def test_lease_state_machine_keeps_one_holder_and_rising_epochs(
    engine: Engine, settings: Settings
) -> None:
    """Random acquire/renew/release/fence/force/clock sequences never break the lease's rules."""
    sessions = make_sessionmaker(engine)
    run_state_machine_as_test(
        lambda: LeaseMachine(sessions, settings),
        settings=settings_for_machine(),
    )


def settings_for_machine() -> settings:
    return settings(
        max_examples=60,
        stateful_step_count=30,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
