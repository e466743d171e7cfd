"""The integrator lease: one row per key, fenced by an epoch.

The algorithm
-------------
One row per lease key (``integration/<repository>/main``), created when the
repository is configured (`ensure_lease_row`) and never deleted. Its columns
are the holder's id, the ``epoch``, the SHA-256 of the holder's secret token,
and acquired/renewed/expires times as integer milliseconds of the *SQL* clock.

* **acquire** — ``UPDATE … SET holder=:h, epoch=epoch+1, token_hash=:t,
  acquired_at_ms=N, renewed_at_ms=N, expires_at_ms=N+ttl WHERE key=:k AND
  (holder IS NULL OR expires_at_ms <= N) RETURNING …``. Whoever's statement
  matches the row wins; everyone else gets `LeaseHeld`. Every grant — a
  takeover of an expired holder too — bumps the epoch.
* **renew** — ``UPDATE … SET renewed_at_ms=N, expires_at_ms=N+ttl WHERE key=:k
  AND epoch=:e AND token_hash=:t AND expires_at_ms > N``. Unlike chancy's
  leadership plugin (whose ``ON CONFLICT DO UPDATE`` renewal never checks who
  holds the row, so a stalled ex-leader extends its successor's lease), a
  renewal names the grant it extends, and an expired grant stays dead even if
  nobody has taken the lease yet: its holder may already have been fenced out.
* **release** — the same condition as renew; clears holder and token, ends the
  lease at N and keeps the epoch (the next grant bumps it: the epoch never
  decreases).
* **force_release** (operators) — unconditional on holder, but bumps the epoch
  so that the previous holder's token is dead at once, whatever its expiry.

N is computed by the database once per statement (`integrator.db.now_ms`:
``statement_timestamp()`` on PostgreSQL, ``julianday('now')`` on SQLite) plus
the bound, test-only ``sql_clock_offset_ms``. Every replica therefore reads one
clock, and a test moves time by shifting the offset instead of sleeping.

Acquire, release and force-release first read the row under a write lock
(``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite the transaction already holds
the database's write lock from ``BEGIN IMMEDIATE``). That read does not decide
anything — the conditional ``UPDATE`` does — it only captures who held the row
before, which the lease event must name (``RETURNING`` gives only new values
before PostgreSQL 18, and SQLite has no old-row ``RETURNING`` at all). Renew,
the hot path, is the bare conditional statement. Standby contenders asking
while the lease is held are refused by a plain read (held at that read's N is
a fact) before any lock is taken, so they never queue the holder's renewals
behind their row locks (bench/lease_bench.py measures it).

The fence
---------
Every write made under the lease (dequeue, outcome, registration) calls
`fence()` first, in the same transaction: ``SELECT … WHERE key=:k AND epoch=:e
AND token_hash=:t AND expires_at_ms > N FOR SHARE``. The share lock makes a
concurrent takeover's ``UPDATE`` wait until the fenced write commits, and a
takeover that committed first makes the fence find no row. A plain ``SELECT``
or an epoch compared inside the write is *not* a fence under READ COMMITTED.
On SQLite ``BEGIN IMMEDIATE`` already serialises the whole transaction. See
docs/decisions/0002-sql-time-and-for-share-fence.md.

Tokens are random 256-bit values (``secrets.token_urlsafe(32)``); only their
SHA-256 is stored, and they are never logged.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Row, Table, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from integrator.db import READ_ONLY, now_ms
from integrator.errors import Detail, InvalidInput, LeaseHeld, LeaseLost
from integrator.events import record_system_event
from integrator.models import Lease
from integrator.registrations import retire_earlier_epochs
from integrator.settings import Settings

log = logging.getLogger(__name__)

LEASES = cast(Table, Lease.__table__)
HOLDER_MAX_LENGTH = 200

#: System event types, one per grant, release and force-release.
LEASE_ACQUIRED = "lease_acquired"
LEASE_TAKEN_OVER = "lease_taken_over"
LEASE_RELEASED = "lease_released"
LEASE_FORCE_RELEASED = "lease_force_released"


@dataclass(frozen=True)
class LeaseState:
    """The lease row as seen at `now_ms` (SQL time of the same statement)."""

    key: str
    repository: str
    holder: str | None
    epoch: int
    acquired_at_ms: int | None
    renewed_at_ms: int | None
    expires_at_ms: int | None
    now_ms: int

    @property
    def held(self) -> bool:
        """A holder whose grant has not expired."""
        return (
            self.holder is not None
            and self.expires_at_ms is not None
            and self.expires_at_ms > self.now_ms
        )


@dataclass(frozen=True)
class Grant:
    """A won acquire. `token` is shown to the holder once and never logged."""

    key: str
    holder: str
    epoch: int
    token: str = field(repr=False)
    acquired_at_ms: int
    expires_at_ms: int
    ttl_seconds: float
    #: Who held the row before this grant; set only for a takeover of an expired holder.
    previous_holder: str | None
    previous_epoch: int

    @property
    def took_over(self) -> bool:
        return self.previous_holder is not None


@dataclass(frozen=True)
class Released:
    """A release (by the holder) or a force-release (by an operator)."""

    key: str
    #: The epoch after the operation: unchanged by release, +1 by force-release.
    epoch: int
    previous_holder: str | None
    previous_epoch: int
    released_at_ms: int


def hash_lease_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def datetime_of_ms(ms: int) -> datetime:
    """Exact UTC datetime of integer ms (no float rounding)."""
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000)


def iso_of_ms(ms: int | None) -> str | None:
    """ISO 8601 UTC with millisecond precision, as events and the edges show times."""
    if ms is None:
        return None
    return datetime_of_ms(ms).isoformat(timespec="milliseconds")


def ttl_ms(settings: Settings) -> int:
    return round(settings.lease_ttl_seconds * 1000)


def _state(row: Row[Any]) -> LeaseState:
    return LeaseState(
        key=row.key,
        repository=row.repository,
        holder=row.holder,
        epoch=row.epoch,
        acquired_at_ms=row.acquired_at_ms,
        renewed_at_ms=row.renewed_at_ms,
        expires_at_ms=row.expires_at_ms,
        now_ms=row.now_ms,
    )


def _select_state(session: Session, settings: Settings) -> Any:
    return select(*LEASES.c, now_ms(session, settings).label("now_ms")).where(
        LEASES.c.key == settings.lease_key
    )


def _check_holder(holder: str) -> str:
    holder = holder.strip()
    if not holder or len(holder) > HOLDER_MAX_LENGTH:
        rule = "required" if not holder else "max_length"
        message = f"a holder id of 1 to {HOLDER_MAX_LENGTH} characters is required"
        raise InvalidInput(message, details=[Detail("holder", rule, message)])
    return holder


def ensure_lease_row(session: Session, settings: Settings) -> None:
    """Create the key's row (epoch 0, no holder) unless it exists; safe to race."""
    values = {"key": settings.lease_key, "repository": settings.repository_name, "epoch": 0}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(LEASES).values(**values).on_conflict_do_nothing())


def ensure_configured(sessions: sessionmaker[Session], settings: Settings) -> bool:
    """At service start: create the lease row in its own transaction.

    An unmigrated database must not stop the service from starting (`/readyz`
    explains what to run); acquire creates the row later if it is still missing.
    """
    try:
        with sessions.begin() as session:
            ensure_lease_row(session, settings)
    except DBAPIError as exc:
        log.warning("lease row for %s not created yet: %s", settings.lease_key, exc.orig)
        return False
    return True


def _lock_row(session: Session, settings: Settings) -> LeaseState:
    """Read the row under a write lock (FOR UPDATE; SQLite's BEGIN IMMEDIATE), creating it."""
    query = _select_state(session, settings).with_for_update()
    row = session.execute(query).one_or_none()
    if row is None:
        ensure_lease_row(session, settings)
        row = session.execute(query).one()
    return _state(row)


def status(session: Session, settings: Settings) -> LeaseState:
    """The lease as it stands now (a read; works in a read-only session)."""
    row = session.execute(_select_state(session, settings)).one_or_none()
    if row is not None:
        return _state(row)
    now = session.execute(select(now_ms(session, settings))).scalar_one()
    return LeaseState(settings.lease_key, settings.repository_name, None, 0, None, None, None, now)


def acquire(session: Session, settings: Settings, holder: str) -> Grant:
    """Grant the lease to `holder` if it is free or expired; else `LeaseHeld`.

    A holder id is a name, not a credential: the current holder asking again
    is refused like anyone else until its grant expires or is released.
    """
    holder = _check_holder(holder)
    seen = session.execute(_select_state(session, settings)).one_or_none()
    if seen is not None and _state(seen).held:
        raise _held(_state(seen))  # refused without a lock: see the module docstring
    before = _lock_row(session, settings)
    token = secrets.token_urlsafe(32)
    now = now_ms(session, settings)
    c = LEASES.c
    statement = (
        update(LEASES)
        .where(c.key == settings.lease_key, or_(c.holder.is_(None), c.expires_at_ms <= now))
        .values(
            holder=holder,
            epoch=c.epoch + 1,
            token_hash=hash_lease_token(token),
            acquired_at_ms=now,
            renewed_at_ms=now,
            expires_at_ms=now + ttl_ms(settings),
        )
        .returning(c.epoch, c.acquired_at_ms, c.expires_at_ms)
    )
    won = session.execute(statement).one_or_none()
    if won is None:
        raise _held(before)
    took_over = before.holder is not None
    grant = Grant(
        key=settings.lease_key,
        holder=holder,
        epoch=won.epoch,
        token=token,
        acquired_at_ms=won.acquired_at_ms,
        expires_at_ms=won.expires_at_ms,
        ttl_seconds=settings.lease_ttl_seconds,
        previous_holder=before.holder,
        previous_epoch=before.epoch,
    )
    fields: dict[str, Any] = {
        "key": grant.key,
        "holder": holder,
        "epoch": grant.epoch,
        "acquired_at": iso_of_ms(grant.acquired_at_ms),
        "expires_at": iso_of_ms(grant.expires_at_ms),
        "previous_epoch": before.epoch,
    }
    if took_over:
        fields["previous_holder"] = before.holder
        fields["previous_expires_at"] = iso_of_ms(before.expires_at_ms)
    kind = LEASE_TAKEN_OVER if took_over else LEASE_ACQUIRED
    _record(session, settings, kind, grant.epoch, fields, actor=holder)
    retire_earlier_epochs(session, settings.repository_name, grant.epoch)
    log.info("lease %s granted to %s, epoch %d", grant.key, holder, grant.epoch)
    return grant


def _held(state: LeaseState) -> LeaseHeld:
    expires_at = iso_of_ms(state.expires_at_ms)
    return LeaseHeld(
        f"the lease is held by {state.holder} until {expires_at}",
        extra={"holder": state.holder, "expires_at": expires_at},
    )


def _lost(epoch: int) -> LeaseLost:
    return LeaseLost(f"epoch {epoch} no longer holds the lease (superseded, expired or released)")


def renew(session: Session, settings: Settings, epoch: int, token: str) -> int:
    """Extend the caller's unexpired grant by one TTL from now; the new `expires_at_ms`.

    Renewals stay on the row (no event): they are the lease's heartbeat.
    """
    now = now_ms(session, settings)
    statement = (
        update(LEASES)
        .where(_grant_is_live(settings, epoch, token, now))
        .values(renewed_at_ms=now, expires_at_ms=now + ttl_ms(settings))
        .returning(LEASES.c.expires_at_ms)
    )
    expires_at_ms = session.execute(statement).scalar_one_or_none()
    if expires_at_ms is None:
        raise _lost(epoch)
    return int(expires_at_ms)


def release(session: Session, settings: Settings, epoch: int, token: str) -> Released:
    """Give the caller's unexpired grant back; the epoch stays (the next grant bumps it)."""
    before = _lock_row(session, settings)
    now = now_ms(session, settings)
    statement = (
        update(LEASES)
        .where(_grant_is_live(settings, epoch, token, now))
        .values(holder=None, token_hash=None, expires_at_ms=now)
        .returning(LEASES.c.epoch, LEASES.c.expires_at_ms)
    )
    done = session.execute(statement).one_or_none()
    if done is None:
        raise _lost(epoch)
    result = Released(
        settings.lease_key, done.epoch, before.holder, before.epoch, done.expires_at_ms
    )
    fields = {
        "key": result.key,
        "holder": before.holder,
        "epoch": result.epoch,
        "released_at": iso_of_ms(result.released_at_ms),
    }
    _record(session, settings, LEASE_RELEASED, result.epoch, fields, actor=before.holder)
    log.info("lease %s released by %s, epoch %d", result.key, before.holder, result.epoch)
    return result


def force_release(session: Session, settings: Settings, reason: str, by: str) -> Released:
    """An operator ends whatever grant there is, bumping the epoch so its token is dead."""
    reason = reason.strip()
    if not reason:
        message = "a reason is required to force-release the lease"
        raise InvalidInput(message, details=[Detail("reason", "required", message)])
    before = _lock_row(session, settings)
    now = now_ms(session, settings)
    c = LEASES.c
    statement = (
        update(LEASES)
        .where(c.key == settings.lease_key)
        .values(holder=None, token_hash=None, epoch=c.epoch + 1, expires_at_ms=now)
        .returning(c.epoch, c.expires_at_ms)
    )
    done = session.execute(statement).one()
    result = Released(
        settings.lease_key, done.epoch, before.holder, before.epoch, done.expires_at_ms
    )
    fields = {
        "key": result.key,
        "epoch": result.epoch,
        "previous_holder": before.holder,
        "previous_epoch": before.epoch,
        "previous_expires_at": iso_of_ms(before.expires_at_ms),
        "released_at": iso_of_ms(result.released_at_ms),
        "reason": reason,
        "operator": by,
    }
    _record(session, settings, LEASE_FORCE_RELEASED, result.epoch, fields, actor=by)
    retire_earlier_epochs(session, settings.repository_name, result.epoch)
    message = "lease %s force-released by %s (%s): holder %s, epoch %d -> %d"
    log.warning(message, result.key, by, reason, before.holder, before.epoch, result.epoch)
    return result


def fence(session: Session, settings: Settings, epoch: int, token: str) -> LeaseState:
    """Lock the lease row for the rest of the caller's transaction if `(epoch, token)` is live.

    Call it first in every transaction that writes under the lease; `LeaseLost`
    aborts the write. PostgreSQL: ``FOR SHARE`` blocks a takeover until the
    caller commits. SQLite: the transaction already holds the write lock, which
    is why a read-only session is refused here.
    """
    if not session.in_transaction():
        raise RuntimeError("fence() must run inside the transaction of the write it guards")
    connection = session.connection()
    if connection.get_execution_options().get(READ_ONLY, False):
        raise RuntimeError("fence() needs a write transaction, not a read-only session")
    live = _grant_is_live(settings, epoch, token, now_ms(session, settings))
    query = _select_state(session, settings).where(live).with_for_update(read=True)
    row = session.execute(query).one_or_none()
    if row is None:
        raise _lost(epoch)
    return _state(row)


def _grant_is_live(
    settings: Settings, epoch: int, token: str, now: ColumnElement[int]
) -> ColumnElement[bool]:
    c = LEASES.c
    return and_(
        c.key == settings.lease_key,
        c.epoch == epoch,
        c.token_hash == hash_lease_token(token),
        c.expires_at_ms > now,
    )


def _record(
    session: Session,
    settings: Settings,
    type_name: str,
    epoch: int,
    fields: dict[str, Any],
    *,
    actor: str | None,
) -> None:
    """One event per grant/release, keyed by (key, epoch): a second grant of one epoch
    would collide on the events' unique key, a last line of defence."""
    record_system_event(
        session,
        type=type_name,
        repository=settings.repository_name,
        fields=fields,
        natural_key=f"{settings.lease_key}#{epoch}",
        actor=actor,
    )
