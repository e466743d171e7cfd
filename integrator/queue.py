"""The durable queue: candidate states, transitions and positions.

Every transition is checked against one table and recorded as a
`candidate_status_changed` event in the same transaction. Order is the
server-assigned `position` — the enqueue sequence of the first candidate of a
slug's chain, inherited on supersession and resume — never the caller's
`ready_at`. Within that order the `hotfix` lane comes before the `normal` one.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, case, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from integrator.errors import NotFound, TransitionRefused
from integrator.events import record_system_event
from integrator.models import Candidate, Counter, utcnow
from integrator.queue_signal import mark_queued


class Status(StrEnum):
    """Where a candidate stands."""

    #: Known, not READY yet; `unmet` says why.
    waiting = "waiting"
    #: READY, waiting its turn by position.
    queued = "queued"
    #: Handed to the lease holder of one epoch.
    in_progress = "in_progress"
    #: Shadow only: evaluated, keeps its position, not handed out again in shadow.
    predicted = "predicted"
    #: Its content reached main.
    integrated = "integrated"
    #: Cannot integrate (conflict, failed check, refused push); waits for a fix or resume.
    blocked = "blocked"
    #: A newer finalize_ready of the same slug replaced it.
    superseded = "superseded"
    #: An operator's decision, with a reason.
    closed = "closed"


class Lane(StrEnum):
    """Which line a candidate waits in; the worker empties `hotfix` first."""

    normal = "normal"
    hotfix = "hotfix"


#: The dequeue order: the hotfix lane first, then by position (never `ready_at`).
DEQUEUE_ORDER: tuple[ColumnElement[Any], ...] = (
    case((Candidate.lane == Lane.hotfix.value, 0), else_=1),
    Candidate.position.asc(),
    Candidate.id.asc(),
)


TERMINAL = frozenset({Status.integrated, Status.superseded, Status.closed})
ACTIVE = frozenset(Status) - TERMINAL

ALLOWED: dict[Status, frozenset[Status]] = {
    Status.waiting: frozenset({Status.queued, Status.superseded, Status.closed, Status.integrated}),
    Status.queued: frozenset(
        {Status.in_progress, Status.waiting, Status.superseded, Status.closed, Status.integrated}
    ),
    Status.in_progress: frozenset(
        {Status.integrated, Status.blocked, Status.predicted, Status.queued, Status.waiting}
    ),
    Status.predicted: frozenset(
        {Status.queued, Status.integrated, Status.superseded, Status.closed, Status.waiting}
    ),
    Status.blocked: frozenset({Status.queued, Status.superseded, Status.closed, Status.waiting}),
    Status.integrated: frozenset(),
    Status.superseded: frozenset(),
    Status.closed: frozenset(),
}


def candidate_fields(candidate: Candidate) -> dict[str, Any]:
    return {
        "candidate_id": candidate.id,
        "slug": candidate.slug,
        "branch": candidate.branch,
        "sha": candidate.sha,
    }


def transition(
    session: Session,
    candidate: Candidate,
    to: Status,
    *,
    reason: str | None = None,
    actor: str | None = None,
) -> None:
    """Move a candidate, or refuse; the change is an event in the same transaction."""
    current = Status(candidate.status)
    if to not in ALLOWED[current]:
        raise TransitionRefused(
            f"candidate {candidate.slug} ({candidate.sha[:12]}) is {current}; it cannot become {to}"
        )
    _record(session, candidate, current, to, reason, actor)


def create(
    session: Session, candidate: Candidate, *, reason: str, actor: str | None = None
) -> None:
    """A new candidate starts `waiting`; its creation is the first status event."""
    _record(session, candidate, None, Status.waiting, reason, actor)


def _record(
    session: Session,
    candidate: Candidate,
    current: Status | None,
    to: Status,
    reason: str | None,
    actor: str | None,
) -> None:
    candidate.status = to.value
    candidate.updated_at = utcnow()
    if reason is not None:
        candidate.reason = reason
    session.flush()
    _record_change(session, candidate, current, to, reason, actor)


def _record_change(
    session: Session,
    candidate: Candidate,
    current: Status | None,
    to: Status,
    reason: str | None,
    actor: str | None,
) -> None:
    if to is Status.queued:
        mark_queued(session)  # a long-polling holder looks again once this commits
    record_system_event(
        session,
        type="candidate_status_changed",
        repository=candidate.repository,
        fields={
            **candidate_fields(candidate),
            "from": current.value if current else None,
            "to": to.value,
            "position": candidate.position,
            "reason": reason,
        },
        slug=candidate.slug,
        branch=candidate.branch,
        sha=candidate.sha,
        actor=actor,
    )


def claim(session: Session, candidate: Candidate, epoch: int) -> bool:
    """queued → in_progress for one epoch, as one conditional UPDATE (a twin claim loses)."""
    return _conditional(
        session, candidate, Status.queued, Status.in_progress, epoch=epoch, reason=f"epoch {epoch}"
    )


def return_stale(session: Session, candidate: Candidate) -> bool:
    """in_progress of an ended epoch → queued with its position, as one conditional UPDATE:
    the next grant's dequeue and an operator's close cannot both return it."""
    return _conditional(
        session,
        candidate,
        Status.in_progress,
        Status.queued,
        epoch=candidate.epoch,
        reason=f"epoch {candidate.epoch} ended without an outcome",
    )


def _conditional(
    session: Session,
    candidate: Candidate,
    current: Status,
    to: Status,
    *,
    epoch: int | None,
    reason: str,
) -> bool:
    """`current → to` only if the row is still `current` (and of `epoch` when leaving
    in_progress); False when another transaction moved it first."""
    statement = update(Candidate).where(
        Candidate.id == candidate.id, Candidate.status == current.value
    )
    if current is Status.in_progress:
        statement = statement.where(Candidate.epoch == epoch)
    values: dict[str, Any] = {"status": to.value, "updated_at": utcnow()}
    if to is Status.in_progress:
        values["epoch"] = epoch  # the handout's reason stays the one it was queued with
    else:
        values["reason"] = reason
    moved = session.execute(statement.values(**values).execution_options(synchronize_session=False))
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.refresh(candidate)
    _record_change(session, candidate, current, to, reason, None)
    return True


def next_queued(session: Session, repository: str) -> Candidate | None:
    """The smallest position among `queued`, the hotfix lane first (never `ready_at`)."""
    statement = (
        select(Candidate)
        .where(Candidate.repository == repository, Candidate.status == Status.queued.value)
        .order_by(*DEQUEUE_ORDER)
        .limit(1)
    )
    return session.scalar(statement)


def handed_to(session: Session, repository: str, epoch: int) -> list[Candidate]:
    """The candidates in_progress for this epoch, in queue order (one, unless the holder
    declared a speculation window)."""
    statement = select(Candidate).where(
        Candidate.repository == repository,
        Candidate.status == Status.in_progress.value,
        Candidate.epoch == epoch,
    )
    return list(session.scalars(statement.order_by(*DEQUEUE_ORDER)))


def stale_in_progress(session: Session, repository: str, epoch: int) -> list[Candidate]:
    """Candidates handed to an epoch that is no longer current."""
    statement = select(Candidate).where(
        Candidate.repository == repository,
        Candidate.status == Status.in_progress.value,
        Candidate.epoch != epoch,
    )
    return list(session.scalars(statement.order_by(Candidate.position)))


def next_position(session: Session, repository: str) -> int:
    """The next enqueue sequence of a repository: one conditional UPDATE … RETURNING."""
    name = f"position:{repository}"
    bump = update(Counter).where(Counter.name == name).values(value=Counter.value + 1)
    value: int | None = session.scalar(bump.returning(Counter.value))
    if value is not None:
        return value
    try:
        with session.begin_nested():
            session.execute(insert(Counter).values(name=name, value=1))
    except IntegrityError:  # a concurrent first enqueue created the row
        retried: int = session.execute(bump.returning(Counter.value)).scalar_one()
        return retried
    return 1


def enqueue(
    session: Session, candidate: Candidate, *, reason: str, actor: str | None = None
) -> None:
    """Queue a READY candidate, keeping an inherited position or drawing the next one."""
    if candidate.position is None:
        candidate.position = next_position(session, candidate.repository)
    transition(session, candidate, Status.queued, reason=reason, actor=actor)


def newest_open(session: Session, repository: str, slug: str) -> Candidate:
    """The slug's newest candidate that is not finished yet (what an operator closes,
    promotes or demotes)."""
    open_ones = [
        c for c in candidates_of_slug(session, repository, slug) if Status(c.status) in ACTIVE
    ]
    if not open_ones:
        raise NotFound(f"slug {slug!r} has no open candidate")
    return open_ones[-1]


def get_candidate(session: Session, candidate_id: int) -> Candidate:
    candidate = session.get(Candidate, candidate_id)
    if candidate is None:
        raise NotFound(f"no candidate with id {candidate_id}")
    return candidate


def candidates_of_slug(session: Session, repository: str, slug: str) -> list[Candidate]:
    """Every candidate of a slug, oldest finalize first."""
    statement = (
        select(Candidate)
        .where(Candidate.repository == repository, Candidate.slug == slug)
        .order_by(Candidate.finalize_seq, Candidate.id)
    )
    return list(session.scalars(statement))


def list_candidates(
    session: Session,
    repository: str,
    *,
    statuses: Iterable[Status] = (),
    slug: str | None = None,
    include_terminal: bool = False,
    offset: int = 0,
    limit: int = 100,
) -> list[Candidate]:
    """Candidates in queue order: hotfix lane first, by position (unpositioned last), id."""
    wanted = set(statuses) or (set(Status) if include_terminal else set(ACTIVE))
    statement = select(Candidate).where(
        Candidate.repository == repository, Candidate.status.in_([s.value for s in wanted])
    )
    if slug is not None:
        statement = statement.where(Candidate.slug == slug)
    statement = (
        statement.order_by(Candidate.position.is_(None), *DEQUEUE_ORDER).offset(offset).limit(limit)
    )
    return list(session.scalars(statement))
