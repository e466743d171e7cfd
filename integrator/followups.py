"""Follow-ups: one open per blocked episode of a slug, so a blocked candidate is never lost.

A block opens the slug's follow-up, or updates the open one (a re-block never opens a second:
the database admits one open follow-up per slug). The follow-up stays linked to the slug's
current candidate — it moves to a successor when a newer `finalize_ready` supersedes the
blocked one — and ends when that chain integrates (`resolved`), or when an operator closes
it or the candidate it follows (`closed`). Each change is a `followup_*` event in the same
transaction; blocks and resolutions also go to the webhook outbox.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from integrator import webhooks
from integrator.errors import NotFound, TransitionRefused
from integrator.events import record_system_event
from integrator.models import Candidate, Followup, utcnow
from integrator.settings import Settings


class FollowupStatus(StrEnum):
    #: Its candidate is blocked, or was resumed and has not integrated yet.
    open = "open"
    #: Its chain integrated.
    resolved = "resolved"
    #: An operator closed it, or the candidate it followed.
    closed = "closed"


def open_for(session: Session, repository: str, slug: str) -> Followup | None:
    """The slug's open follow-up, if any."""
    return session.scalar(
        select(Followup).where(Followup.repository == repository, Followup.open_slug == slug)
    )


def latest_for(session: Session, repository: str, slug: str) -> Followup | None:
    """The slug's open follow-up, else its most recent one."""
    return session.scalar(
        select(Followup)
        .where(Followup.repository == repository, Followup.slug == slug)
        .order_by(Followup.open_slug.is_(None), Followup.id.desc())
        .limit(1)
    )


def get(session: Session, followup_id: int) -> Followup:
    followup = session.get(Followup, followup_id)
    if followup is None:
        raise NotFound(f"no follow-up with id {followup_id}")
    return followup


def list_followups(
    session: Session,
    repository: str,
    *,
    statuses: frozenset[FollowupStatus] = frozenset({FollowupStatus.open}),
    slug: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> list[Followup]:
    """Follow-ups, oldest first."""
    statement = select(Followup).where(
        Followup.repository == repository, Followup.status.in_([s.value for s in statuses])
    )
    if slug is not None:
        statement = statement.where(Followup.slug == slug)
    return list(session.scalars(statement.order_by(Followup.id).offset(offset).limit(limit)))


def on_blocked(
    session: Session, settings: Settings, candidate: Candidate, blocked: dict[str, Any], by: str
) -> Followup:
    """Open the slug's follow-up for this block, or update the open one with the fresh
    evidence (`same_evidence` says whether anything changed since the last block)."""
    followup = open_for(session, candidate.repository, candidate.slug)
    evidence = {
        "candidate_id": candidate.id,
        "attempt": blocked["attempt"],
        "conflict_evidence": blocked["conflict_evidence"],
        "diagnostics": blocked["diagnostics"],
        "next_action": blocked["next_action"],
    }
    if followup is None:
        followup = Followup(
            repository=candidate.repository,
            slug=candidate.slug,
            open_slug=candidate.slug,
            status=FollowupStatus.open.value,
            blocks=1,
            **evidence,
        )
        session.add(followup)
        session.flush()
        change, extra = "followup_opened", {}
    else:
        same = (
            followup.conflict_evidence == blocked["conflict_evidence"]
            and followup.candidate_id == candidate.id
        )
        for key, value in evidence.items():
            setattr(followup, key, value)
        followup.blocks += 1
        followup.blocked_at = followup.updated_at = utcnow()
        session.flush()
        change, extra = "followup_updated", {"change": "blocked again", "same_evidence": same}
    _record(session, followup, change, by, **extra)
    webhooks.enqueue(
        session,
        settings,
        "blocked",
        {
            "followup_id": followup.id,
            **evidence,
            "slug": candidate.slug,
            "branch": candidate.branch,
            "sha": candidate.sha,
            "blocks": followup.blocks,
            "blocked_at": blocked["blocked_at"],
        },
    )
    return followup


def move_to_successor(
    session: Session, previous: Candidate, successor: Candidate, by: str | None
) -> None:
    """A superseded blocked candidate hands its open follow-up to its successor."""
    followup = open_for(session, previous.repository, previous.slug)
    if followup is None or followup.candidate_id != previous.id:
        return
    followup.candidate_id = successor.id
    followup.updated_at = utcnow()
    session.flush()
    _record(session, followup, "followup_updated", by, change="moved", moved_from=previous.id)


def on_resumed(session: Session, candidate: Candidate, by: str, *, to_back: bool) -> None:
    """A resume is part of the episode: recorded on its follow-up, which stays open until
    the candidate integrates."""
    followup = open_for(session, candidate.repository, candidate.slug)
    if followup is None:
        return
    followup.candidate_id = candidate.id
    followup.updated_at = utcnow()
    session.flush()
    _record(session, followup, "followup_updated", by, change="resumed", to_back=to_back)


def on_integrated(session: Session, settings: Settings, candidate: Candidate, by: str) -> None:
    """The chain integrated: its follow-up is resolved."""
    _finish(session, settings, candidate.repository, candidate.slug,
            FollowupStatus.resolved, by, reason="integrated")  # fmt: skip


def on_candidate_closed(
    session: Session, settings: Settings, candidate: Candidate, by: str, reason: str
) -> None:
    """An operator closed the candidate: nothing is left to follow."""
    _finish(session, settings, candidate.repository, candidate.slug,
            FollowupStatus.closed, by, reason=f"candidate closed: {reason}")  # fmt: skip


def close(session: Session, settings: Settings, followup_id: int, by: str, reason: str) -> Followup:
    """An operator closes an open follow-up with a reason (the candidate stays as it is)."""
    followup = get(session, followup_id)
    if followup.status != FollowupStatus.open:
        raise TransitionRefused(f"follow-up {followup.id} ({followup.slug}) is {followup.status}")
    _end(session, settings, followup, FollowupStatus.closed, by, reason)
    return followup


def _finish(
    session: Session,
    settings: Settings,
    repository: str,
    slug: str,
    status: FollowupStatus,
    by: str,
    *,
    reason: str,
) -> None:
    followup = open_for(session, repository, slug)
    if followup is not None:
        _end(session, settings, followup, status, by, reason)


def _end(
    session: Session,
    settings: Settings,
    followup: Followup,
    status: FollowupStatus,
    by: str,
    reason: str,
) -> None:
    followup.status = status.value
    followup.open_slug = None
    followup.resolution = "integrated" if status is FollowupStatus.resolved else "closed"
    followup.resolved_by, followup.reason = by, reason
    followup.resolved_at = followup.updated_at = utcnow()
    session.flush()
    _record(session, followup, "followup_resolved", by, resolution=followup.resolution,
            reason=reason)  # fmt: skip
    webhooks.enqueue(
        session,
        settings,
        "followup_resolved",
        {
            "followup_id": followup.id,
            "candidate_id": followup.candidate_id,
            "slug": followup.slug,
            "resolution": followup.resolution,
            "resolved_by": by,
            "reason": reason,
            "resolved_at": followup.resolved_at.isoformat(),
        },
    )


def _record(session: Session, followup: Followup, type_: str, by: str | None, **extra: Any) -> None:
    record_system_event(
        session,
        type=type_,
        repository=followup.repository,
        fields={
            "followup_id": followup.id,
            "candidate_id": followup.candidate_id,
            "slug": followup.slug,
            "status": followup.status,
            "blocks": followup.blocks,
            **extra,
        },
        slug=followup.slug,
        actor=by,
    )
