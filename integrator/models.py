"""Typed SQLAlchemy 2 models. The schema changes only through Alembic (migrations/).

Constraints are named by convention so that autogenerate and SQLite batch
migrations stay honest.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect (SQLite forgets the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class ApiToken(Base):
    """A role token. Only its SHA-256 is stored; `key_id` finds the row without the secret."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Event(Base):
    """The append-only source of truth. Never updated or deleted."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("type", "natural_key"),
        Index("ix_events_type_slug", "type", "slug"),
        Index("ix_events_branch_sha", "branch", "sha"),
        Index("ix_events_recorded_at", "recorded_at"),
        Index("ix_events_type_recorded_at", "type", "recorded_at"),
    )

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    type: Mapped[str] = mapped_column(String(64))
    repository: Mapped[str] = mapped_column(String(200))
    natural_key: Mapped[str] = mapped_column(String(600))
    content_hash: Mapped[str] = mapped_column(String(64))
    slug: Mapped[str | None] = mapped_column(String(200))
    branch: Mapped[str | None] = mapped_column(String(255))
    sha: Mapped[str | None] = mapped_column(String(64))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str | None] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class Candidate(Base):
    """A `(slug, branch, sha)` on its way to main."""

    __tablename__ = "candidates"
    __table_args__ = (
        UniqueConstraint("repository", "slug", "branch", "sha"),
        Index("ix_candidates_queue", "repository", "status", "position"),
        Index("ix_candidates_slug", "repository", "slug"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(200))
    branch: Mapped[str] = mapped_column(String(255))
    sha: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    position: Mapped[int | None] = mapped_column(BigInteger)
    #: `normal` or `hotfix`: the hotfix lane is taken first (an operator's recorded decision).
    lane: Mapped[str] = mapped_column(String(16), default="normal", server_default="normal")
    finalize_seq: Mapped[int] = mapped_column(BigInteger)
    unmet: Mapped[list[Any]] = mapped_column(JSON, default=list)
    main_sha_checked: Mapped[str | None] = mapped_column(String(64))
    superseded_by: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"))
    epoch: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class QueuePause(Base):
    """A repository's queue is paused while its row exists and `until` has not passed."""

    __tablename__ = "queue_pauses"

    repository: Mapped[str] = mapped_column(String(200), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    paused_by: Mapped[str] = mapped_column(String(200))
    paused_at: Mapped[datetime] = mapped_column(default=utcnow)
    until: Mapped[datetime | None] = mapped_column(default=None)
    #: A freeze: new finalize_ready are refused too.
    reject_new: Mapped[bool] = mapped_column(Boolean, default=False)


class Lease(Base):
    """One row per lease key, never deleted; times are integer ms of the database's clock (one
    clock for every replica)."""

    __tablename__ = "leases"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    repository: Mapped[str] = mapped_column(String(200))
    holder: Mapped[str | None] = mapped_column(String(200))
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    token_hash: Mapped[str | None] = mapped_column(String(64))
    acquired_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    renewed_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int | None] = mapped_column(BigInteger)


class Counter(Base):
    """Named server-side sequences (queue positions), bumped by one conditional UPDATE."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(300), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class ModeState(Base):
    """The one global mode; `version` grows with every change."""

    __tablename__ = "mode_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(BigInteger)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_by: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)


class HookInstance(Base):
    """Proof that a repository's hook is really called: last seen, and the mode it last saw."""

    __tablename__ = "hook_instances"

    repository: Mapped[str] = mapped_column(String(200), primary_key=True)
    instance: Mapped[str] = mapped_column(String(500), primary_key=True)
    hook_version: Mapped[str | None] = mapped_column(String(32))
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    mode_seen: Mapped[str] = mapped_column(String(16))
    mode_version_seen: Mapped[int] = mapped_column(BigInteger)


class Registration(Base):
    """A registered update of a protected ref by the lease holder."""

    __tablename__ = "registrations"
    __table_args__ = (
        UniqueConstraint("nonce_hash"),
        Index("ix_registrations_open", "repository", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository: Mapped[str] = mapped_column(String(200))
    ref: Mapped[str] = mapped_column(String(255))
    old: Mapped[str] = mapped_column(String(64))
    new: Mapped[str] = mapped_column(String(64))
    candidate_id: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"))
    epoch: Mapped[int] = mapped_column(BigInteger)
    attempt: Mapped[str] = mapped_column(String(64))
    nonce_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Followup(Base):
    """The one open follow-up of a blocked episode of a slug, linked to its candidate.

    `open_slug` is the slug while the follow-up is open and NULL once it is resolved or
    closed: the unique constraint then admits one open follow-up per slug and any number
    of finished ones, on every dialect.
    """

    __tablename__ = "followups"
    __table_args__ = (
        UniqueConstraint("repository", "open_slug"),
        Index("ix_followups_slug", "repository", "slug"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(200))
    open_slug: Mapped[str | None] = mapped_column(String(200))
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"))
    status: Mapped[str] = mapped_column(String(16))
    #: How many times the episode blocked (the first block and every re-block).
    blocks: Mapped[int] = mapped_column(Integer, default=1)
    attempt: Mapped[str | None] = mapped_column(String(64))
    conflict_evidence: Mapped[list[Any]] = mapped_column(JSON, default=list)
    diagnostics: Mapped[list[Any]] = mapped_column(JSON, default=list)
    next_action: Mapped[str] = mapped_column(Text)
    blocked_at: Mapped[datetime] = mapped_column(default=utcnow)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    resolution: Mapped[str | None] = mapped_column(String(32))
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)


class WebhookDelivery(Base):
    """One item of the webhook outbox, written in the transaction of what it reports.

    A replica claims a due item with one conditional UPDATE (`claimed_until_ms`), so two
    never post it at once; `delivery_id` stays the same over retries for the receiver to
    dedupe on. Times are integer ms of the SQL clock, like the lease's.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("delivery_id"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at_ms"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(64))
    repository: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at_ms: Mapped[int] = mapped_column(BigInteger)
    claimed_until_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


class ConditionState(Base):
    """Whether one liveness condition of a repository is active, and since when.

    A transition is one conditional UPDATE (`WHERE active = <what the evaluation saw>`): with
    several replicas evaluating at once, exactly one records it, with its event and delivery.
    """

    __tablename__ = "condition_states"

    repository: Mapped[str] = mapped_column(String(200), primary_key=True)
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    #: When the condition's threshold was crossed (while active).
    since: Mapped[datetime | None] = mapped_column(default=None)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
