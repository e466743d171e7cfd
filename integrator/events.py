"""Events: the append-only source of truth.

Every canonical event is validated against its type's schema (`integrator.event_schemas`) —
every bad field reported at once, nothing stored — and deduplicated by its natural key.
Events are never updated or deleted; system events (lease, queue, push, mode) are appended by
the domain modules through `record_system_event`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from integrator.errors import Detail, IdempotencyCollision
from integrator.event_schemas import EVENT_TYPES as EVENT_TYPES
from integrator.event_schemas import JSON_MAX_INTEGER as JSON_MAX_INTEGER
from integrator.event_schemas import MAX_BIGINT as MAX_BIGINT
from integrator.event_schemas import MAX_INTEGER as MAX_INTEGER
from integrator.event_schemas import NAME_MAX_LENGTH as NAME_MAX_LENGTH
from integrator.event_schemas import NATURAL_KEY_MAX_LENGTH as NATURAL_KEY_MAX_LENGTH
from integrator.event_schemas import PROSE_MAX_LENGTH as PROSE_MAX_LENGTH
from integrator.event_schemas import SPECULATION_TYPES as SPECULATION_TYPES
from integrator.event_schemas import Branch as Branch
from integrator.event_schemas import Evidence as Evidence
from integrator.event_schemas import Sha as Sha
from integrator.event_schemas import Slug as Slug
from integrator.event_schemas import as_utc as as_utc
from integrator.event_schemas import content_hash as content_hash
from integrator.event_schemas import name_problem as name_problem
from integrator.event_schemas import natural_key as natural_key
from integrator.event_schemas import printable as printable
from integrator.event_schemas import prose as prose
from integrator.event_schemas import string_fields as string_fields
from integrator.event_schemas import validate_fields as validate_fields
from integrator.models import Event, utcnow

#: Every type the system itself records, by the module that records it: with the canonical
#: and speculation types, the names `GET /v1/events?type=` accepts (a name outside them is
#: a typo, refused, rather than a filter that can only answer nothing).
SYSTEM_TYPES = (
    # lease
    "lease_acquired", "lease_taken_over", "lease_released", "lease_force_released",
    # queue, lanes, pause, check timeouts, blocked
    "candidate_status_changed", "candidate_promoted", "candidate_demoted", "queue_paused",
    "queue_resumed", "check_timeout_overridden", "candidate_moved_to_back",
    # outcomes in shadow, checks, predictions
    "would_integrate", "would_block", "check_flaky", "prediction_scored",
    # the push guard and GitHub
    "push_allowed", "push_rejected", "push_would_reject", "push_bypass", "github_push_received",
    # modes, cutover, rollback
    "mode_changed", "rollback_noop", "rollback_drill",
    # registrations
    "registration_created", "registration_authorized", "registration_landed",
    "registration_failed", "registration_voided", "registration_expired", "registration_in_doubt",
    # follow-ups and liveness conditions
    "followup_opened", "followup_updated", "followup_resolved", "condition_raised",
    "condition_cleared",
)  # fmt: skip
#: Every event type the service records, in one list.
ALL_TYPES: tuple[str, ...] = (*EVENT_TYPES, *SPECULATION_TYPES, *SYSTEM_TYPES)


@dataclass(frozen=True)
class Appended:
    event: Event
    duplicate: bool


def append(
    session: Session,
    *,
    type_name: str,
    fields: dict[str, Any],
    repository: str,
    idempotency_key: str | None = None,
    actor: str | None = None,
) -> Appended:
    """Store a validated canonical event once; a duplicate returns the stored one."""
    key = natural_key(type_name, fields, idempotency_key)
    row = _row(type_name, repository, key, content_hash(fields), fields, actor)
    return store_once(session, row)


def store_once(session: Session, row: Event, key_field: str = "fields") -> Appended:
    """Store `row` unless an event of its type and natural key is stored: the same content
    answers the stored one, other content is an `IdempotencyCollision` naming `key_field`."""
    existing = find(session, row.type, row.natural_key)
    if existing is None:
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            existing = find(session, row.type, row.natural_key)  # a concurrent twin won the race
            if existing is None:
                raise
        else:
            return Appended(row, duplicate=False)
    if existing.content_hash != row.content_hash:
        raise IdempotencyCollision(
            f"a {row.type} event with the same key (#{existing.seq}) has different content",
            details=[Detail(key_field, "idempotency_collision", f"key {row.natural_key} is taken")],
            extra={"existing_seq": existing.seq},
        )
    return Appended(existing, duplicate=True)


def record_system_event(
    session: Session,
    *,
    type: str,
    repository: str,
    fields: dict[str, Any],
    natural_key: str | None = None,
    slug: str | None = None,
    branch: str | None = None,
    sha: str | None = None,
    actor: str | None = None,
) -> None:
    """Append an event the system itself emits (lease, queue, push, mode) in the caller's
    transaction (see `record_rows`)."""
    record_rows(session, [{
        "type": type, "repository": repository, "natural_key": natural_key or uuid.uuid4().hex,
        "content_hash": content_hash(fields), "slug": slug, "branch": branch, "sha": sha,
        "fields": fields, "actor": actor, "recorded_at": utcnow(),
    }])  # fmt: skip


#: System events as one prepared Core INSERT: compiled once, each call only binds its rows.
_INSERT_ROWS = insert(cast(Table, Event.__table__))


def record_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """Append event rows (every column but `seq`) in one statement, in the caller's
    transaction. Nothing reads them back; building an ORM insert and its cache key per row
    was a third of a push check's time, and a push of many refs took a round trip per ref."""
    if rows:
        session.execute(_INSERT_ROWS, rows)


def find(session: Session, type_name: str, key: str) -> Event | None:
    """The stored event of a type with this natural key, if any."""
    return session.scalar(select(Event).where(Event.type == type_name, Event.natural_key == key))


def key_exists(session: Session, key: str) -> bool:
    """Whether any event carries this natural key (system events keyed by content)."""
    return session.scalar(select(Event.seq).where(Event.natural_key == key).limit(1)) is not None


def _row(
    type_name: str,
    repository: str,
    key: str,
    digest: str,
    fields: dict[str, Any],
    actor: str | None,
) -> Event:
    return Event(
        type=type_name,
        repository=repository,
        natural_key=key,
        content_hash=digest,
        slug=fields.get("slug"),
        branch=fields.get("branch"),
        sha=fields.get("sha"),
        fields=fields,
        actor=actor,
    )


@dataclass(frozen=True)
class EventFilter:
    types: Sequence[str] = ()
    slug: str | None = None
    branch: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after_seq: int | None = None
    limit: int = 100


def list_events(session: Session, query: EventFilter) -> list[Event]:
    """Events in server order (seq), filtered and paged by seq."""
    statement = select(Event).order_by(Event.seq).limit(query.limit)
    if query.types:
        statement = statement.where(Event.type.in_(query.types))
    if query.slug is not None:
        statement = statement.where(Event.slug == query.slug)
    if query.branch is not None:
        statement = statement.where(Event.branch == query.branch)
    if query.since is not None:
        statement = statement.where(Event.recorded_at >= query.since)
    if query.until is not None:
        statement = statement.where(Event.recorded_at < query.until)
    if query.after_seq is not None:
        statement = statement.where(Event.seq > query.after_seq)
    return list(session.scalars(statement))
