"""What the lease holder reports for a candidate it was handed, and how each is recorded.

Called by `integrator.processing` inside its fenced transaction. A real outcome writes
`integration_completed` or `integration_blocked`; a shadow outcome writes a prediction,
keyed per handout (candidate, epoch, attempt): a candidate can be predicted again after a
cutover and a rollback, and one handout can still never record two predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from integrator import events, followups, modes, webhooks
from integrator.errors import Detail, InvalidInput, TransitionRefused
from integrator.models import Candidate
from integrator.queue import Status
from integrator.queue import transition as move
from integrator.settings import Settings

T = TypeVar("T", str, int)


class Outcome(StrEnum):
    """What the holder reports for a candidate it was handed."""

    #: Cutover: merged and pushed; main_sha is the integration commit, `registration_id` the
    #: registration it landed with (landed, or authorized with its commit on main).
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
#: Outcomes that say the check passed: a failed attempt before that pass is a flaky check.
PASSED = frozenset({Outcome.integrated, Outcome.would_integrate})
#: The most check runs one outcome carries (`integrator worker --check-retries` is at most 20).
MAX_CHECK_ATTEMPTS = 21


@dataclass(frozen=True)
class Report:
    outcome: Outcome
    attempt: str | None = None
    main_sha: str | None = None
    conflict_evidence: list[dict[str, Any]] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)
    next_action: str | None = None
    reason: str | None = None
    registration_id: int | None = None
    #: Every run of the check ({exit_code?, timed_out, seconds, output_tail}), in order.
    check_attempts: list[dict[str, Any]] = field(default_factory=list)


def _failed(attempt: dict[str, Any]) -> bool:
    return bool(attempt.get("timed_out")) or attempt.get("exit_code") != 0


def flaky(report: Report) -> bool:
    """The check passed, but only after at least one failed run on the same commit."""
    return report.outcome in PASSED and any(_failed(a) for a in report.check_attempts[:-1])


def record_flaky(
    session: Session, settings: Settings, candidate: Candidate, report: Report, by: str
) -> None:
    """`check_flaky`: the candidate integrated (or would) on a check that failed before it
    passed; every attempt is kept, so the flake rate and the flaky check can be read later."""
    events.record_system_event(
        session,
        type="check_flaky",
        repository=settings.repository_name,
        fields={
            "candidate_id": candidate.id,
            "slug": candidate.slug,
            "sha": candidate.sha,
            "outcome": report.outcome.value,
            "attempt": report.attempt,
            "attempts": report.check_attempts,
        },
        slug=candidate.slug,
        branch=candidate.branch,
        sha=candidate.sha,
        actor=by,
    )


def prediction_key(candidate_id: int, epoch: int, attempt: str) -> str:
    """The natural key of one prediction: one per handout, never one per candidate."""
    return f"prediction:{candidate_id}:{epoch}:{attempt}"


def check_mode(outcome: Outcome, mode: modes.Mode) -> None:
    if outcome in REAL and mode is not modes.Mode.cutover:
        raise TransitionRefused(
            f"the service is in {mode}: the integrator does not move main; "
            "report would_integrate or would_block"
        )
    if outcome in PREDICTIONS and mode is modes.Mode.cutover:
        raise TransitionRefused("the service is in cutover: report integrated or blocked")


def required(value: T | None, name: str) -> T:
    if value is None or value == "":
        raise InvalidInput(f"{name} is required", details=[Detail(name, "missing", "required")])
    return value


def _now() -> str:
    return datetime.now(UTC).isoformat()


def complete(
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
            "main_sha": required(main_sha, "main_sha"),
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
    followups.on_integrated(session, settings, candidate, by)
    webhooks.enqueue(session, settings, "integrated", {"candidate_id": candidate.id, **fields})


def block(
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
    followups.on_blocked(session, settings, candidate, fields, by)


def predict(
    session: Session,
    settings: Settings,
    candidate: Candidate,
    outcome: Report,
    epoch: int,
    by: str,
) -> None:
    attempt = required(outcome.attempt, "attempt")
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
            "attempt": attempt,
            "main_sha": outcome.main_sha,
            "conflict_evidence": outcome.conflict_evidence,
            "diagnostics": outcome.diagnostics,
            "next_action": outcome.next_action,
        },
        natural_key=prediction_key(candidate.id, epoch, attempt),
        slug=candidate.slug,
        branch=candidate.branch,
        sha=candidate.sha,
        actor=by,
    )
    move(session, candidate, Status.predicted, reason=outcome.outcome.value, actor=by)
