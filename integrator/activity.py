"""What happened lately, newest first: the reads an operator's view needs that no listing
gives (listings are oldest first, for paging).

Pure reads, bounded: push verdicts, the shadow would-rejects grouped by who pushed what,
shadow predictions, and the candidates that integrated last.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from integrator.liveness import iso
from integrator.models import Candidate, Event
from integrator.queue import Status
from integrator.scoring import PREDICTIONS

#: The event types of a push verdict (one per pushed ref).
VERDICTS = ("push_allowed", "push_would_reject", "push_rejected")
#: Groups of would-rejects shown; the rest are counted.
GROUPS_SHOWN = 50


def newest(
    session: Session, types: Iterable[str], limit: int, *where: ColumnElement[bool]
) -> list[Event]:
    """The newest `limit` events of these types, newest first: one query per type along the
    (type, recorded_at) index, merged — a single `type IN (…) ORDER BY seq` query makes SQLite
    sort every event of those types."""
    found: list[Event] = []
    for type_ in types:
        found += session.scalars(
            select(Event)
            .where(Event.type == type_, *where)
            .order_by(Event.recorded_at.desc(), Event.seq.desc())
            .limit(limit)
        )
    found.sort(key=lambda e: (e.recorded_at, e.seq), reverse=True)
    return found[:limit]


def recent_verdicts(session: Session, limit: int) -> list[dict[str, Any]]:
    """The last push verdicts, newest first, as the hook's request and the decision said."""
    return [_verdict(e) for e in newest(session, VERDICTS, limit)]


def _verdict(event: Event) -> dict[str, Any]:
    fields = event.fields
    return {
        "seq": event.seq,
        "type": event.type,
        "recorded_at": iso(event.recorded_at),
        "repository": event.repository,
        "pusher": fields.get("pusher"),
        "identity_source": fields.get("identity_source"),
        "ref": fields.get("resolved_ref") or fields.get("ref"),
        "old": fields.get("old"),
        "new": fields.get("new"),
        "mode": fields.get("mode"),
        "protected": fields.get("protected"),
        "allowed": fields.get("allowed"),
        "would_reject": fields.get("would_reject"),
        "reason_code": fields.get("reason_code"),
        "decided_locally": fields.get("decided_locally"),
        "bypass": fields.get("bypass"),
    }


def would_rejects_grouped(session: Session) -> dict[str, Any]:
    """Every `push_would_reject` grouped by repository, pusher and ref (most first), each
    with its count, first and last time, and the last one's reason."""
    grouped = (
        select(
            Event.repository,
            Event.actor,
            Event.branch,
            func.count().label("count"),
            func.min(Event.recorded_at).label("first"),
            func.max(Event.recorded_at).label("last"),
            func.max(Event.seq).label("last_seq"),
        )
        .where(Event.type == "push_would_reject")
        .group_by(Event.repository, Event.actor, Event.branch)
        .order_by(func.count().desc(), func.max(Event.seq).desc())
    )
    rows = session.execute(grouped).all()
    shown = rows[:GROUPS_SHOWN]
    # The ref as the hook resolved it comes from each group's last record (the branch
    # column is only its index).
    last = {
        e.seq: e
        for e in session.scalars(select(Event).where(Event.seq.in_([r.last_seq for r in shown])))
    }
    groups = []
    for row in shown:
        fields = last[row.last_seq].fields
        groups.append(
            {
                "repository": row.repository,
                "pusher": row.actor,
                "ref": fields.get("resolved_ref") or fields.get("ref"),
                "count": row.count,
                "first_at": iso(row.first),
                "last_at": iso(row.last),
                "last_reason_code": fields.get("reason_code"),
                "last_new": fields.get("new"),
            }
        )
    return {
        "groups": groups,
        "total": sum(r.count for r in rows),
        "more_groups": max(0, len(rows) - len(shown)),
    }


def recent_predictions(session: Session, repository: str, limit: int) -> list[dict[str, Any]]:
    """The last shadow outcomes (`would_integrate` / `would_block`), newest first, with the
    evidence a would-block named."""
    rows = newest(session, PREDICTIONS, limit, Event.repository == repository)
    return [
        {
            "seq": e.seq,
            "type": e.type,
            "recorded_at": iso(e.recorded_at),
            "candidate_id": e.fields.get("candidate_id"),
            "slug": e.fields.get("slug"),
            "branch": e.fields.get("branch"),
            "sha": e.fields.get("sha"),
            "main_sha": e.fields.get("main_sha"),
            "conflict_evidence": e.fields.get("conflict_evidence") or [],
            "diagnostics": e.fields.get("diagnostics") or [],
            "next_action": e.fields.get("next_action"),
        }
        for e in rows
    ]


def recently_integrated(session: Session, repository: str, limit: int) -> list[Candidate]:
    """The candidates that integrated last, newest first."""
    return list(
        session.scalars(
            select(Candidate)
            .where(
                Candidate.repository == repository,
                Candidate.status == Status.integrated.value,
            )
            .order_by(Candidate.updated_at.desc(), Candidate.id.desc())
            .limit(limit)
        )
    )
