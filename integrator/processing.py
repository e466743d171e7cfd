"""Fenced queue processing (DESIGN §4, §5): only the current lease holder takes work and
reports outcomes.

Each operation is one transaction that first locks the lease row through
`lease.fence` and checks epoch, token and expiry; a holder that lost its lease
changes nothing. A candidate left `in_progress` by an epoch that is no longer
current goes back to `queued` with its position, so it is never lost; outcome
records are keyed so that a candidate can never get two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from integrator import events, lease, modes
from integrator.admission import CanonicalRepo, check, supersede_after_outcome
from integrator.errors import Detail, InvalidInput, TransitionRefused
from integrator.models import Candidate
from integrator.queue import (
    Status,
    claim,
    get_candidate,
    handed_to,
    next_queued,
    stale_in_progress,
)
from integrator.queue import transition as move
from integrator.readiness import Condition
from integrator.settings import Settings


class Outcome(StrEnum):
    """What the holder reports for a candidate it was handed."""

    #: Cutover: merged and pushed; main_sha is the integration commit.
    integrated = "integrated"
    #: Its content was already on main (any mode): closed, not merged again.
    already_integrated = "already_integrated"
    #: Cutover: cannot integrate; evidence, diagnostics and next_action required.
    blocked = "blocked"
    #: Shadow: would integrate cleanly.
    would_integrate = "would_integrate"
    #: Shadow: would be blocked; evidence and diagnostics required.
    would_block = "would_block"
    #: Give the candidate back (shutdown): queued again with its position.
    requeue = "requeue"


PREDICTIONS = frozenset({Outcome.would_integrate, Outcome.would_block})
REAL = frozenset({Outcome.integrated, Outcome.blocked})


@dataclass(frozen=True)
class Handout:
    """A candidate now `in_progress` for the caller's epoch, and the mode to work in."""

    candidate: Candidate
    mode: modes.Mode
    main_sha: str | None
    requeued: tuple[int, ...] = ()


@dataclass(frozen=True)
class Report:
    outcome: Outcome
    attempt: str | None = None
    main_sha: str | None = None
    conflict_evidence: list[dict[str, Any]] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)
    next_action: str | None = None
    reason: str | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat()


def requeue_stale(session: Session, settings: Settings, epoch: int) -> list[int]:
    """in_progress of an ended epoch → queued, keeping its position (never lost)."""
    returned = []
    for candidate in stale_in_progress(session, settings.repository_name, epoch):
        move(
            session,
            candidate,
            Status.queued,
            reason=f"epoch {candidate.epoch} ended without an outcome",
        )
        returned.append(candidate.id)
    return returned


def take_next(
    session: Session, settings: Settings, repo: CanonicalRepo, *, epoch: int, token: str, by: str
) -> Handout | None:
    """Hand the smallest-position READY candidate to the holder of `epoch`, or None."""
    lease.fence(session, settings, epoch, token)
    requeued = tuple(requeue_stale(session, settings, epoch))
    mode = modes.current(session).mode
    current = handed_to(session, settings.repository_name, epoch)
    if current is not None:  # a retry whose first answer was lost: the same handout again
        return Handout(current, mode, current.main_sha_checked, requeued)
    while (candidate := next_queued(session, settings.repository_name)) is not None:
        readiness = check(session, repo, candidate)
        candidate.unmet = [c.value for c in readiness.unmet]
        candidate.main_sha_checked = readiness.main_sha
        if readiness.ready:
            if claim(session, candidate, epoch):
                return Handout(candidate, mode, readiness.main_sha, requeued)
            continue
        if readiness.unmet == (Condition.not_on_main,):
            _complete(session, settings, candidate, readiness.main_sha, by, "already on main")
        else:
            move(session, candidate, Status.waiting, reason="readiness re-check failed")
    return None


def report(
    session: Session,
    settings: Settings,
    *,
    epoch: int,
    token: str,
    candidate_id: int,
    outcome: Report,
    by: str,
) -> Candidate:
    """Record the outcome of a candidate handed to `epoch`; at most one per handout."""
    lease.fence(session, settings, epoch, token)
    candidate = get_candidate(session, candidate_id)
    if candidate.status != Status.in_progress or candidate.epoch != epoch:
        raise TransitionRefused(
            f"candidate {candidate.id} is {candidate.status} (epoch {candidate.epoch}); "
            f"only the in_progress handout of epoch {epoch} takes an outcome"
        )
    mode = modes.current(session).mode
    _check_mode(outcome.outcome, mode)
    kind = outcome.outcome
    if kind is Outcome.requeue:
        move(session, candidate, Status.queued, reason=outcome.reason or "returned by the holder")
    elif kind in (Outcome.integrated, Outcome.already_integrated):
        reason = "already on main" if kind is Outcome.already_integrated else f"epoch {epoch}"
        _complete(session, settings, candidate, _required(outcome.main_sha, "main_sha"), by, reason)
    elif kind is Outcome.blocked:
        _block(session, settings, candidate, outcome, by)
    else:
        _predict(session, settings, candidate, outcome, epoch, by)
    supersede_after_outcome(session, candidate)
    return candidate


def _check_mode(outcome: Outcome, mode: modes.Mode) -> None:
    if outcome in REAL and mode is not modes.Mode.cutover:
        raise TransitionRefused(
            f"the service is in {mode}: the integrator does not move main; "
            "report would_integrate or would_block"
        )
    if outcome in PREDICTIONS and mode is modes.Mode.cutover:
        raise TransitionRefused("the service is in cutover: report integrated or blocked")


def _required(value: str | None, name: str) -> str:
    if not value:
        raise InvalidInput(f"{name} is required", details=[Detail(name, "missing", "required")])
    return value


def _complete(
    session: Session,
    settings: Settings,
    candidate: Candidate,
    main_sha: str | None,
    by: str,
    reason: str,
) -> None:
    fields = events.validate_fields(
        "integration_completed",
        {
            "slug": candidate.slug,
            "branch": candidate.branch,
            "sha": candidate.sha,
            "main_sha": _required(main_sha, "main_sha"),
            "completed_at": _now(),
        },
    )
    events.append(
        session,
        type_name="integration_completed",
        fields=fields,
        repository=settings.repository_name,
        actor=by,
    )
    move(session, candidate, Status.integrated, reason=reason, actor=by)


def _block(
    session: Session, settings: Settings, candidate: Candidate, outcome: Report, by: str
) -> None:
    fields = events.validate_fields(
        "integration_blocked",
        {
            "slug": candidate.slug,
            "branch": candidate.branch,
            "sha": candidate.sha,
            "conflict_evidence": outcome.conflict_evidence,
            "diagnostics": outcome.diagnostics,
            "next_action": outcome.next_action or "",
            "blocked_at": _now(),
            "attempt": outcome.attempt or "",
        },
    )
    events.append(
        session,
        type_name="integration_blocked",
        fields=fields,
        repository=settings.repository_name,
        actor=by,
    )
    move(session, candidate, Status.blocked, reason=outcome.diagnostics[0], actor=by)


def _predict(
    session: Session,
    settings: Settings,
    candidate: Candidate,
    outcome: Report,
    epoch: int,
    by: str,
) -> None:
    if outcome.outcome is Outcome.would_block and not (
        outcome.conflict_evidence and outcome.diagnostics
    ):
        raise InvalidInput(
            "would_block needs conflict_evidence and diagnostics",
            details=[
                Detail("conflict_evidence", "min_length", "at least one item"),
                Detail("diagnostics", "min_length", "at least one line"),
            ],
        )
    events.record_system_event(
        session,
        type=outcome.outcome.value,
        repository=settings.repository_name,
        fields={
            "candidate_id": candidate.id,
            "slug": candidate.slug,
            "branch": candidate.branch,
            "sha": candidate.sha,
            "epoch": epoch,
            "attempt": outcome.attempt,
            "main_sha": outcome.main_sha,
            "conflict_evidence": outcome.conflict_evidence,
            "diagnostics": outcome.diagnostics,
        },
        natural_key=f"prediction:{candidate.id}",
        slug=candidate.slug,
        branch=candidate.branch,
        sha=candidate.sha,
        actor=by,
    )
    move(session, candidate, Status.predicted, reason=outcome.outcome.value, actor=by)
