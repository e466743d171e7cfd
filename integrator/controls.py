"""Operator controls over the queue: the lanes, pausing it, and a candidate's check timeouts.

A promotion puts a slug's newest open candidate in the `hotfix` lane, which the worker
empties before the `normal` one; a demotion puts it back. Either is an operator's recorded
decision (`candidate_promoted` / `candidate_demoted`, with the reason and who). A promoted
candidate is only taken sooner: it passes every readiness condition and check as before.

A pause stops dequeuing (the holder keeps its lease and idles; a paused queue is not a
stall); a freeze (`reject_new`) also refuses new `finalize_ready`. It ends by command or
when its `until` passes; both are recorded (`queue_paused` / `queue_resumed`). Whether
`until` has passed is read on the lease's clock (the database's, `clock`), so every replica,
the dequeue, the status and the liveness conditions agree on when a pause ended.

A check's timeout can be raised (or lowered) for one candidate — a change known to need a
longer test run — as an operator's recorded decision (`check_timeout_overridden`). The events
are the storage: the handout carries the candidate's overrides, folded from them, and the
worker runs that check under that timeout. It applies to that candidate (that sha) only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from integrator.check_contract import name_problem
from integrator.db import now_ms
from integrator.errors import Conflict, Detail, InvalidInput, TransitionRefused
from integrator.events import record_system_event
from integrator.lease import datetime_of_ms
from integrator.liveness import iso
from integrator.models import Candidate, Event, QueuePause, utcnow
from integrator.queue import Lane, candidate_fields, newest_open
from integrator.settings import Settings

#: The event each lane change records.
LANE_EVENTS = {Lane.hotfix: "candidate_promoted", Lane.normal: "candidate_demoted"}


def move_to_lane(
    session: Session, settings: Settings, slug: str, lane: Lane, *, reason: str, by: str
) -> Candidate:
    """Put the slug's newest open candidate in `lane` (its successors inherit it); recorded."""
    candidate = newest_open(session, settings.repository_name, slug)
    if candidate.lane == lane.value:
        raise TransitionRefused(
            f"candidate {candidate.id} ({slug}) is already in the {lane.value} lane"
        )
    previous = candidate.lane
    candidate.lane = lane.value
    candidate.updated_at = utcnow()
    session.flush()
    record_system_event(
        session,
        type=LANE_EVENTS[lane],
        repository=candidate.repository,
        fields={
            **candidate_fields(candidate),
            "from_lane": previous,
            "to_lane": lane.value,
            "position": candidate.position,
            "reason": reason,
        },
        slug=candidate.slug,
        branch=candidate.branch,
        sha=candidate.sha,
        actor=by,
    )
    return candidate


# ---- pause and freeze ---------------------------------------------------------------------


class QueueFrozen(Conflict):
    """New work is refused while the queue is paused with `reject_new`."""

    code = "queue_frozen"


class PauseAlreadyOver(Conflict):
    """A pause whose `until` has already passed on the service's clock: well-formed, but
    over before it began."""

    code = "pause_already_over"


def clock(session: Session, settings: Settings) -> datetime:
    """Now on the lease's clock: the database's, plus the test-only offset of `settings`."""
    return datetime_of_ms(session.execute(select(now_ms(session, settings))).scalar_one())


def in_force(row: QueuePause | None, now: datetime) -> QueuePause | None:
    """The one rule: a pause counts until its `until` (ended at `now` or before)."""
    if row is None or (row.until is not None and row.until <= now):
        return None
    return row


def pause_in_force(session: Session, settings: Settings) -> QueuePause | None:
    """The pause in force now, if any (an expired one no longer counts, recorded or not)."""
    return in_force(session.get(QueuePause, settings.repository_name), clock(session, settings))


def describe(row: QueuePause) -> str:
    """Who paused the queue, why, and until when: one sentence."""
    until = f"until {iso(row.until)}" if row.until else "until an operator resumes it"
    return (
        f"the queue is paused by {row.paused_by} since {iso(row.paused_at)}, {until}: {row.reason}"
    )


def pause(
    session: Session,
    settings: Settings,
    *,
    reason: str,
    until: datetime | None,
    reject_new: bool,
    by: str,
) -> QueuePause:
    """Stop dequeuing (and with `reject_new`, admitting) until resumed or `until`; a new
    pause replaces the one in force. Recorded as `queue_paused`."""
    now = clock(session, settings)
    if until is not None and until <= now:
        raise PauseAlreadyOver(
            "a pause must end in the future",
            details=[Detail("until", "future", f"{iso(until)} is not after {iso(now)}")],
        )
    repository = settings.repository_name
    values = {"reason": reason, "paused_by": by, "paused_at": now, "until": until,
              "reject_new": reject_new}  # fmt: skip
    row = session.get(QueuePause, repository, with_for_update=True)
    if row is None:
        try:
            with session.begin_nested():
                session.execute(insert(QueuePause).values(repository=repository, **values))
        except IntegrityError:  # a concurrent first pause created the row: replace it
            pass
        row = session.get(QueuePause, repository, with_for_update=True, populate_existing=True)
    if row is None:  # a concurrent resume removed it
        raise Conflict("the queue's pause changed meanwhile; try again")
    for name, value in values.items():
        setattr(row, name, value)
    session.flush()
    record_system_event(
        session,
        type="queue_paused",
        repository=repository,
        fields={"reason": reason, "until": iso(until), "reject_new": reject_new},
        actor=by,
    )
    return row


def resume(session: Session, settings: Settings, *, by: str) -> QueuePause:
    """End the pause in force; recorded as `queue_resumed`."""
    row = pause_in_force(session, settings)
    if row is None:
        raise TransitionRefused("the queue is not paused")
    _end(session, row, by=by, why="resumed by an operator")
    return row


def end_if_expired(session: Session, settings: Settings) -> None:
    """A pause whose `until` has passed ends by itself; recorded once, by whoever sees it."""
    row = session.get(QueuePause, settings.repository_name)
    if row is not None and in_force(row, clock(session, settings)) is None:
        _end(session, row, by=None, why=f"expired at {iso(row.until)}")


def refuse_if_frozen(session: Session, settings: Settings) -> None:
    """Refuse new work while the queue is frozen (paused with `reject_new`)."""
    row = pause_in_force(session, settings)
    if row is not None and row.reject_new:
        raise QueueFrozen(
            f"the queue is frozen, new finalize_ready are refused: {describe(row)}; submit "
            "again once it ends (`integrator status` shows the pause)"
        )


def _end(session: Session, row: QueuePause, *, by: str | None, why: str) -> None:
    session.delete(row)
    session.flush()
    record_system_event(
        session,
        type="queue_resumed",
        repository=row.repository,
        fields={"why": why, "paused_reason": row.reason, "paused_by": row.paused_by},
        actor=by,
    )


def pause_view(row: QueuePause | None) -> dict[str, Any] | None:
    """The pause as status and the API show it."""
    if row is None:
        return None
    return {
        "reason": row.reason,
        "paused_by": row.paused_by,
        "paused_at": iso(row.paused_at),
        "until": iso(row.until),
        "reject_new": row.reject_new,
        "summary": describe(row),
    }


# ---- a candidate's check timeouts ---------------------------------------------------------

#: The event an operator's per-candidate check timeout records.
TIMEOUT_OVERRIDDEN = "check_timeout_overridden"
#: The longest timeout an operator may give one check of one candidate (a week).
MAX_CHECK_TIMEOUT_SECONDS = 7 * 86400.0


def override_check_timeout(
    session: Session,
    settings: Settings,
    slug: str,
    check: str,
    seconds: float,
    *,
    reason: str,
    by: str,
) -> Candidate:
    """Run check `check` of the slug's newest open candidate under `seconds`; recorded. The
    worker applies it from the candidate's next handout."""
    problem = name_problem(check)
    if problem:
        raise InvalidInput(problem, details=[Detail("check", "pattern", problem)])
    if not 0 < seconds <= MAX_CHECK_TIMEOUT_SECONDS:
        rule = f"more than 0 and at most {MAX_CHECK_TIMEOUT_SECONDS:g} seconds"
        raise InvalidInput(f"a check timeout is {rule}", details=[Detail("seconds", "range", rule)])
    candidate = newest_open(session, settings.repository_name, slug)
    record_system_event(
        session,
        type=TIMEOUT_OVERRIDDEN,
        repository=candidate.repository,
        fields={
            **candidate_fields(candidate),
            "check": check,
            "seconds": seconds,
            "reason": reason,
        },
        slug=candidate.slug,
        branch=candidate.branch,
        sha=candidate.sha,
        actor=by,
    )
    return candidate


def check_timeouts(session: Session, candidate: Candidate) -> dict[str, float]:
    """The candidate's check timeouts by check name, as operators last set them."""
    rows = session.scalars(
        select(Event)
        .where(
            Event.type == TIMEOUT_OVERRIDDEN,
            Event.slug == candidate.slug,
            Event.repository == candidate.repository,
        )
        .order_by(Event.seq)
    )
    return {
        str(row.fields["check"]): float(row.fields["seconds"])
        for row in rows
        if row.fields.get("candidate_id") == candidate.id
    }
