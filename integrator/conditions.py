"""Liveness conditions, read from the database and their transitions recorded once.

The rules themselves are pure (`integrator.liveness`). `active` reads the facts at one
SQL-clock instant and judges them; it writes nothing (the dashboard, `GET /v1/status` and the
metrics use it).

Transitions are recorded once however many replicas evaluate: `condition_states` holds one
row per condition, and a transition is one conditional ``UPDATE … SET active = :new WHERE
repository = :r AND code = :c AND active = :old``; only the replica whose statement changed
the row appends the `condition_raised` / `condition_cleared` event and the webhook delivery,
in the same transaction. Every service process evaluates in the background
(`INTEGRATOR_CONDITIONS_INTERVAL_SECONDS`) and on each `GET /v1/status`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from integrator import controls, lease, modes, webhooks
from integrator.db import read_session
from integrator.events import record_system_event
from integrator.liveness import (
    ACTIVITY_EVENTS,
    MEANINGS,
    PROGRESS_EVENTS,
    ActiveCondition,
    Code,
    Facts,
    HookSeen,
    InProgress,
    hook_activity_slack,
    iso,
    judge,
)
from integrator.models import (
    ApiToken,
    Candidate,
    ConditionState,
    Event,
    HookInstance,
    QueuePause,
)
from integrator.settings import Settings

__all__ = ["ActiveCondition", "Code", "Transition", "active", "evaluate", "gather", "record"]

STATES = cast(Table, ConditionState.__table__)
ACTOR = "service:conditions"


# ---- reading the facts --------------------------------------------------------------------


def gather(session: Session, settings: Settings) -> Facts:
    """The facts at the SQL clock's now (plus the test-only offset), read without writing."""
    repository = settings.repository_name
    state = lease.status(session, settings)
    now = lease.datetime_of_ms(state.now_ms)
    mode = modes.current(session)
    queued = session.execute(
        select(func.count(), func.min(Candidate.updated_at)).where(
            Candidate.repository == repository, Candidate.status == "queued"
        )
    ).one()
    handed = session.scalars(
        select(Candidate)
        .where(Candidate.repository == repository, Candidate.status == "in_progress")
        .order_by(Candidate.updated_at)
    )
    hooks = session.scalars(select(HookInstance).where(HookInstance.repository == repository))
    seen = [HookSeen(h.instance, h.mode_seen, h.last_seen_at) for h in hooks]
    last_hook = max((h.last_seen_at for h in seen), default=None)
    activity = _first_activity(session, settings, last_hook)

    progress = session.scalar(
        select(func.max(Event.recorded_at)).where(
            Event.repository == repository, Event.type.in_(PROGRESS_EVENTS)
        )
    )
    pause = session.get(QueuePause, repository)
    paused = controls.in_force(pause, now) is not None
    # a pause that expired unseen ended at its `until`: the stall clock starts there
    pause_ended = pause.until if pause is not None and not paused else None

    def at(ms: int | None) -> datetime | None:
        return None if ms is None else lease.datetime_of_ms(ms)

    return Facts(
        now=now,
        mode=mode.mode.value,
        mode_changed_at=mode.changed_at,
        queued=queued[0],
        queued_since=queued[1],
        in_progress=[InProgress(c.id, c.slug, c.sha, c.epoch, c.updated_at) for c in handed],
        last_progress=_latest(progress, pause_ended),
        holder=state.holder,
        epoch=state.epoch,
        renewed_at=at(state.renewed_at_ms or state.acquired_at_ms),
        expires_at=at(state.expires_at_ms),
        hooks=seen,
        activity_type=activity[0] if activity else None,
        activity_at=activity[1] if activity else None,
        paused=paused,
    )


def _latest(*moments: datetime | None) -> datetime | None:
    return max((m for m in moments if m is not None), default=None)


def _first_activity(
    session: Session, settings: Settings, last_hook: datetime | None
) -> tuple[str, datetime] | None:
    """The first event after the hooks' last call (and its slack) that needed a push; a
    branch_pushed reported by a hook is the hook calling, not activity without it."""
    hook_names = select(ApiToken.name).where(ApiToken.role == "hook")
    query = select(Event.type, Event.recorded_at).where(
        Event.repository == settings.repository_name,
        Event.type.in_(ACTIVITY_EVENTS),
        or_(
            Event.type != "branch_pushed",
            Event.actor.is_(None),
            Event.actor.not_in(hook_names),
        ),
    )
    if last_hook is not None:
        query = query.where(Event.recorded_at > last_hook + hook_activity_slack(settings))
    row = session.execute(query.order_by(Event.recorded_at).limit(1)).one_or_none()
    return None if row is None else (row.type, row.recorded_at)


def active(session: Session, settings: Settings) -> list[ActiveCondition]:
    """Every condition that holds now, from the database alone (a pure read)."""
    return judge(gather(session, settings), settings)


# ---- recording transitions ----------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """A condition raised (`condition` set) or cleared, recorded by this evaluation."""

    code: str
    raised: bool
    condition: ActiveCondition | None = None


def recorded(session: Session, settings: Settings) -> dict[str, bool]:
    """What `condition_states` says is active, by code (a code without a row is not)."""
    rows = session.execute(
        select(STATES.c.code, STATES.c.active).where(
            STATES.c.repository == settings.repository_name
        )
    )
    return {row.code: bool(row.active) for row in rows}


def _differs(found: list[ActiveCondition], stored: dict[str, bool]) -> bool:
    raised = {c.code for c in found}
    return any(stored.get(code, False) != (code in raised) for code in Code)


def record(session: Session, settings: Settings) -> list[Transition]:
    """Judge again inside the caller's write transaction and record each transition with one
    conditional UPDATE; another replica's identical statement then changes nothing."""
    facts = gather(session, settings)
    found = {c.code: c for c in judge(facts, settings)}
    _ensure_rows(session, settings)
    stored = recorded(session, settings)
    transitions = []
    for code in Code:
        condition = found.get(code)
        raise_it = condition is not None
        if stored.get(code, False) == raise_it:
            continue
        changed = session.execute(
            update(STATES)
            .where(
                and_(
                    STATES.c.repository == settings.repository_name,
                    STATES.c.code == code.value,
                    STATES.c.active == (not raise_it),
                )
            )
            .values(
                active=raise_it,
                since=condition.since if condition else None,
                changed_at=facts.now,
            )
        )
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            continue  # another replica recorded it first
        transition = Transition(code.value, raise_it, condition)
        _announce(session, settings, transition, facts.now)
        transitions.append(transition)
    return transitions


def _ensure_rows(session: Session, settings: Settings) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    rows = [
        {"repository": settings.repository_name, "code": code.value, "active": False}
        for code in Code
    ]
    session.execute(insert(STATES).values(rows).on_conflict_do_nothing())


def _announce(session: Session, settings: Settings, transition: Transition, now: datetime) -> None:
    """The transition's event and webhook delivery, in the transaction that recorded it."""
    code = Code(transition.code)
    if transition.condition is not None:
        kind = "condition_raised"
        data = transition.condition.as_dict()
    else:
        kind = "condition_cleared"
        data = {
            "code": code.value,
            "since": iso(now),
            "explanation": f"no longer the case: {MEANINGS[code]}",
            "action": "nothing to do",
            "details": {},
        }
    record_system_event(
        session, type=kind, repository=settings.repository_name, fields=data, actor=ACTOR
    )
    webhooks.enqueue(session, settings, kind, data)


def evaluate(sessions: sessionmaker[Session], settings: Settings) -> list[Transition]:
    """Look (a read), and only when what holds differs from what is recorded, record the
    transitions in a write transaction."""
    with read_session(sessions) as session:
        found = active(session, settings)
        stored = recorded(session, settings)
    if not _differs(found, stored):
        return []
    with sessions() as session, session.begin():
        return record(session, settings)
