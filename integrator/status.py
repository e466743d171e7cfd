"""The operator's one-look answer: mode, lease, queue, whose turn is when, what is wrong.

`read` is a pure read at one SQL-clock instant; `GET /v1/status` returns it unchanged and
`integrator status` prints it. Estimates of a candidate's turn come from how long recent
turns took (a handout to its outcome), so they say "unknown" until there is a history.
The pause in force is judged at that same instant (the lease's clock), and the flake rate
is over the last `FLAKE_WINDOW` passes (integrated or would_integrate outcomes): how many of
them needed a rerun of a check (`check_flaky`).
"""

from __future__ import annotations

import bisect
import statistics
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from integrator import conditions, controls, lease, modes, speculation
from integrator.liveness import iso
from integrator.messages import explain_unmet
from integrator.models import Candidate, Event, QueuePause
from integrator.queue import ACTIVE, DEQUEUE_ORDER, Lane, Status
from integrator.settings import Settings

#: Queued candidates listed with their turn; the rest are counted.
TURNS_SHOWN = 100
#: Recent turns (a handout to its outcome) whose median estimates the next ones.
TURNS_SAMPLED = 20
#: Status events read, newest first, to find those turns.
STATUS_EVENTS_READ = 400
#: What ends a turn.
TURN_ENDS = frozenset({Status.integrated, Status.blocked, Status.predicted})
#: Passes (outcomes whose check passed) the flake rate is over.
FLAKE_WINDOW = 100
#: The outcome events that say the check passed; `check_flaky` follows one when it needed a rerun.
PASS_EVENTS = ("integration_completed", "would_integrate")
FLAKY_EVENT = "check_flaky"


def read(session: Session, settings: Settings) -> dict[str, Any]:
    """The status document (the API's body)."""
    state = lease.status(session, settings)
    now = lease.datetime_of_ms(state.now_ms)
    found = conditions.active(session, settings)
    median, sample = turn_seconds(session, settings)
    return {
        "repository": settings.repository_name,
        "now": iso(now),
        "ok": not found,
        "mode": mode_of(session),
        "lease": lease_of(state),
        "pause": controls.pause_view(
            controls.in_force(session.get(QueuePause, settings.repository_name), now)
        ),
        "queue": {
            "depth": depth(session, settings),
            "lanes": lanes(session, settings),
            "oldest_waiting": oldest_waiting(session, settings, now),
            "turn_seconds_median": median,
            "turns_sampled": sample,
            **turns(session, settings, median),
        },
        #: The current epoch's speculative builds under test, bottom of the chain first.
        "speculation": speculation.chain(session, settings, state.epoch),
        "flake_rate": flake_rate(session, settings),
        "conditions": [c.as_dict() for c in found],
    }


def mode_of(session: Session) -> dict[str, Any]:
    """The mode, and for cutover whether it was forced past incomplete evidence, by whom, why."""
    view = modes.current(session)
    last = session.scalar(
        select(Event).where(Event.type == "mode_changed").order_by(Event.seq.desc()).limit(1)
    )
    forced = bool(
        view.mode is modes.Mode.cutover and last is not None and last.fields.get("forced")
    )
    return {
        "mode": view.mode.value,
        "version": view.version,
        "changed_at": iso(view.changed_at),
        "changed_by": view.changed_by,
        "reason": view.reason,
        "forced": forced,
        "forced_by": last.actor if forced and last else None,
        "forced_reason": last.fields.get("reason") if forced and last else None,
    }


def lease_of(state: lease.LeaseState) -> dict[str, Any]:
    expires_in = (
        round((state.expires_at_ms - state.now_ms) / 1000, 1)
        if state.held and state.expires_at_ms is not None
        else None
    )
    return {
        "holder": state.holder if state.held else None,
        "epoch": state.epoch,
        "held": state.held,
        "expires_at": lease.iso_of_ms(state.expires_at_ms),
        "expires_in_seconds": expires_in,
        "renewed_at": lease.iso_of_ms(state.renewed_at_ms),
        "last_holder": state.holder,
    }


def depth(session: Session, settings: Settings) -> dict[str, int]:
    """How many candidates are in each state that is not finished."""
    rows = session.execute(
        select(Candidate.status, func.count())
        .where(
            Candidate.repository == settings.repository_name,
            Candidate.status.in_([s.value for s in ACTIVE]),
        )
        .group_by(Candidate.status)
    )
    counted = {status: count for status, count in rows}
    return {s.value: counted.get(s.value, 0) for s in Status if s in ACTIVE}


def lanes(session: Session, settings: Settings) -> dict[str, int]:
    """Queued candidates in each lane (the hotfix lane is taken first)."""
    rows = session.execute(
        select(Candidate.lane, func.count())
        .where(Candidate.repository == settings.repository_name, Candidate.status == "queued")
        .group_by(Candidate.lane)
    )
    counted = {lane: count for lane, count in rows}
    return {lane.value: counted.get(lane.value, 0) for lane in (Lane.hotfix, Lane.normal)}


def flake_rate(session: Session, settings: Settings) -> dict[str, Any]:
    """Of the last `FLAKE_WINDOW` passes, how many needed a rerun of a check. A pass's
    `check_flaky` events (one per flaky check) are recorded right after it in its own
    transaction, so each belongs to the latest pass before it."""
    repository = settings.repository_name
    passes = session.scalars(
        select(Event.seq)
        .where(Event.repository == repository, Event.type.in_(PASS_EVENTS))
        .order_by(Event.seq.desc())
        .limit(FLAKE_WINDOW)
    ).all()[::-1]
    flaky: set[int] = set()
    if passes:
        flakes = session.scalars(
            select(Event.seq).where(
                Event.repository == repository,
                Event.type == FLAKY_EVENT,
                Event.seq > passes[0],
            )
        )
        flaky = {passes[bisect.bisect_left(passes, seq) - 1] for seq in flakes}
    return {
        "flaky": len(flaky),
        "passed": len(passes),
        "window": FLAKE_WINDOW,
        "rate": round(len(flaky) / len(passes), 4) if passes else None,
    }


def oldest_waiting(session: Session, settings: Settings, now: datetime) -> dict[str, Any] | None:
    """The candidate that has waited longest for READY, and why it still waits."""
    candidate = session.scalar(
        select(Candidate)
        .where(Candidate.repository == settings.repository_name, Candidate.status == "waiting")
        .order_by(Candidate.created_at, Candidate.id)
        .limit(1)
    )
    if candidate is None:
        return None
    return {
        "id": candidate.id,
        "slug": candidate.slug,
        "branch": candidate.branch,
        "sha": candidate.sha,
        "since": iso(candidate.created_at),
        "age_seconds": round((now - candidate.created_at).total_seconds()),
        "unmet": list(candidate.unmet),
        "why": explain_unmet(list(candidate.unmet)),
    }


def turn_seconds(session: Session, settings: Settings) -> tuple[float | None, int]:
    """The median length of the last turns (a handout to its outcome), and how many."""
    events = session.execute(
        select(Event.fields, Event.recorded_at)
        .where(
            Event.repository == settings.repository_name,
            Event.type == "candidate_status_changed",
        )
        .order_by(Event.seq.desc())
        .limit(STATUS_EVENTS_READ)
    ).all()
    return median_turn(
        [(e.fields.get("candidate_id"), e.fields.get("to"), e.recorded_at) for e in events[::-1]]
    )


def median_turn(changes: list[tuple[Any, Any, datetime]]) -> tuple[float | None, int]:
    """From status changes in order: each handout to the outcome that ended it."""
    started: dict[Any, datetime] = {}
    lengths: list[float] = []
    for candidate, to, at in changes:
        if to == Status.in_progress.value:
            started[candidate] = at
        elif to in TURN_ENDS and candidate in started:
            lengths.append((at - started.pop(candidate)).total_seconds())
    recent = lengths[-TURNS_SAMPLED:]
    if not recent:
        return None, 0
    return round(statistics.median(recent), 1), len(recent)


def turns(session: Session, settings: Settings, median: float | None) -> dict[str, Any]:
    """Whose turn is next: in progress first, then queued in the dequeue order (the hotfix
    lane, then by position)."""
    repository = settings.repository_name
    handed = list(
        session.scalars(
            select(Candidate)
            .where(Candidate.repository == repository, Candidate.status == "in_progress")
            .order_by(Candidate.position, Candidate.id)
        )
    )
    queued = list(
        session.scalars(
            select(Candidate)
            .where(Candidate.repository == repository, Candidate.status == "queued")
            .order_by(*DEQUEUE_ORDER)
            .limit(TURNS_SHOWN)
        )
    )
    total = session.scalar(
        select(func.count()).where(Candidate.repository == repository, Candidate.status == "queued")
    )
    items = [_turn(c, 0, 0.0) for c in handed]
    for n, candidate in enumerate(queued):
        ahead = len(handed) + n
        items.append(_turn(candidate, ahead, None if median is None else round(median * ahead)))
    return {"turns": items, "more_queued": max(0, (total or 0) - len(queued))}


def _turn(candidate: Candidate, ahead: int, eta: float | None) -> dict[str, Any]:
    return {
        "id": candidate.id,
        "slug": candidate.slug,
        "branch": candidate.branch,
        "sha": candidate.sha,
        "status": candidate.status,
        "position": candidate.position,
        "lane": candidate.lane,
        "ahead": ahead,
        "eta_seconds": eta,
    }
