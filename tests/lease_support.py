"""Builders for the lease tests: moving the SQL clock, reading the lease's events."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Engine, literal, select
from sqlalchemy.orm import Session, sessionmaker

from integrator import lease
from integrator.models import Event
from integrator.settings import Settings

#: The lease's system event types, in the order a lifetime usually shows them.
LEASE_EVENT_TYPES = ("lease_acquired", "lease_taken_over", "lease_released", "lease_force_released")


def later(settings: Settings, seconds: float) -> Settings:
    """The same settings with the SQL clock moved `seconds` forward (never a sleep)."""
    offset = settings.sql_clock_offset_ms + round(seconds * 1000)
    return settings.model_copy(update={"sql_clock_offset_ms": offset})


def short_lease(settings: Settings, **overrides: Any) -> Settings:
    """A 10 s lease (renew 2 s, deadline 5 s, margin 1 s) unless overridden."""
    values: dict[str, Any] = {
        "lease_ttl_seconds": 10.0,
        "lease_renew_interval_seconds": 2.0,
        "lease_renew_deadline_seconds": 5.0,
        "authorize_margin_seconds": 1.0,
        **overrides,
    }
    return settings.model_copy(update=values)


def lease_events(engine: Engine) -> list[Event]:
    """Every lease event, oldest first."""
    with Session(engine) as session:
        query = select(Event).where(Event.type.in_(LEASE_EVENT_TYPES)).order_by(Event.seq)
        return list(session.scalars(query))


class FrozenClock:
    """N for every lease and registration statement: `ms`, until a test moves it."""

    def __init__(self) -> None:
        self.ms = time.time_ns() // 1_000_000

    def __call__(self, session: Session, settings: Settings) -> ColumnElement[int]:
        return literal(self.ms + settings.sql_clock_offset_ms, BigInteger)


def acquire(sessions: sessionmaker[Session], settings: Settings, holder: str) -> lease.Grant:
    with sessions.begin() as session:
        return lease.acquire(session, settings, holder)
