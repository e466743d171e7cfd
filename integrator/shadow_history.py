"""The recorded history the cutover evidence replays, read as plain rows.

The evidence is asked for at every look (the dashboard's every 30 s) and replays tens of
thousands of events. Loaded as ORM objects with each event's whole JSON decoded, that took
seconds on 100,000 events. Each read here names the event types and the few fields its rule
uses, has the database extract those (`json_extract` on SQLite, `->>` on PostgreSQL) through
the `(type, recorded_at)` index, and hands the pure rules (`integrator.parity`,
`integrator.scoring`) records carrying only those fields, still every one in server order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, cast, select
from sqlalchemy.orm import Session

from integrator.models import Event
from integrator.parity import ShadowRun, latest_shadow_run


class Kind(Enum):
    """How a field is extracted: what the rule reads of it, exactly as JSON decoding gives it."""

    #: A string (or absent): the text itself.
    text = "text"
    #: An integer (or absent).
    integer = "integer"
    #: Anything else (booleans, lists, objects): the JSON value, decoded.
    json = "json"


@dataclass(slots=True)
class Row:
    """An event with only the fields a rule reads (the rules' `Recorded`)."""

    seq: int
    type: str
    fields: dict[str, Any]


@dataclass(slots=True)
class TimedRow(Row):
    """An event with its time (the rules' `Timed`): only the few whose time a rule reads,
    since turning the stored time into a `datetime` costs more than the rest of a row."""

    recorded_at: datetime


def _extracted(name: str, kind: Kind) -> ColumnElement[Any]:
    value = Event.fields[name]
    if kind is Kind.json:
        return value
    text = value.as_string()
    return cast(text, BigInteger) if kind is Kind.integer else text


def picked(
    session: Session,
    types: Iterable[str],
    wanted: dict[str, Kind],
    within: ShadowRun | None = None,
) -> list[Row]:
    """The events of `types` in server order (only those `within` a shadow run, if given),
    each with the `wanted` fields (absent ones as None, as `fields.get` reads them)."""
    names = list(wanted)
    columns = [_extracted(name, kind) for name, kind in wanted.items()]
    query = select(Event.seq, Event.type, *columns).where(Event.type.in_(list(types)))
    if within is not None:
        query = query.where(Event.seq > within.after_seq)
        if within.until_seq is not None:
            query = query.where(Event.seq < within.until_seq)
    rows = session.execute(query.order_by(Event.seq))
    return [Row(row[0], row[1], dict(zip(names, row[2:], strict=True))) for row in rows]


def whole(session: Session, *types: str) -> list[TimedRow]:
    """Events of rare types (mode changes, takeovers, drills) with all their fields."""
    query = select(Event.seq, Event.type, Event.recorded_at, Event.fields)
    rows = session.execute(query.where(Event.type.in_(types)).order_by(Event.seq))
    return [TimedRow(seq, kind, fields, at) for seq, kind, at, fields in rows]


def shadow_run(session: Session) -> ShadowRun | None:
    """The latest uninterrupted stretch of shadow, from the first record and the mode changes."""
    query = select(Event.seq, Event.type, Event.recorded_at).order_by(Event.seq).limit(1)
    first = session.execute(query).first()
    start = TimedRow(first.seq, first.type, {}, first.recorded_at) if first else None
    return latest_shadow_run(start, whole(session, "mode_changed"))


def last_protected_would_reject(session: Session) -> TimedRow | None:
    """The last `push_would_reject` of a protected ref, found by the database."""
    query = (
        select(Event.seq, Event.type, Event.recorded_at, Event.fields)
        .where(Event.type == "push_would_reject", Event.fields["protected"].as_boolean())
        .order_by(Event.seq.desc())
        .limit(1)
    )
    found = session.execute(query).first()
    return TimedRow(found.seq, found.type, found.fields, found.recorded_at) if found else None
