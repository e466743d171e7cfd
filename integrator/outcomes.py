"""What the lease holder reports for a candidate it was handed, and how each is recorded.

Called by `integrator.processing` inside its fenced transaction. A real outcome writes
`integration_completed` or `integration_blocked`; a shadow outcome writes a prediction,
keyed per handout (candidate, epoch, attempt): a candidate can be predicted again after a
cutover and a rollback, and one handout can still never record two predictions.

Each of these events carries the outcome's `checks`: every configured check with its status
and attempts. A green outcome (`integrated`, `would_integrate`) is refused unless every check
it lists passed and every required check (`INTEGRATOR_REQUIRED_CHECKS`) is among them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from integrator import events, followups, modes, webhooks
from integrator.check_contract import CheckStatus, not_green
from integrator.errors import Conflict, Detail, InvalidInput, TransitionRefused
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
#: Outcomes that say green: every check passed (a failed attempt before a pass is a flake).
PASSED = frozenset({Outcome.integrated, Outcome.would_integrate})


class ChecksIncomplete(Conflict):
    """A green outcome whose checks do not show every required check passed."""

    code = "checks_incomplete"


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
    #: Every configured check: {name, status, attempts: [{exit_code?, timed_out, seconds,
    #: output_tail}]}, in the order they ran.
    checks: list[dict[str, Any]] = field(default_factory=list)


def require_green(report: Report, required: list[str]) -> None:
    """A green outcome lists every required check as passed, and no check that did not pass:
    green means every named check ran and passed on the commit that lands."""
    if report.outcome not in PASSED:
        return
    problems = not_green(required, report.checks)
    if problems:
        raise ChecksIncomplete(
            f"{report.outcome.value} refused: {'; '.join(problems)}; the worker must run every "
            f"required check ({', '.join(required) or 'none required'}) and report each as "
            "passed",
            details=[Detail("checks", "checks_incomplete", problem) for problem in problems],
        )


def flaky_checks(report: Report) -> list[dict[str, Any]]:
    """The checks of a green outcome that passed only after a failed run on the same commit."""
    if report.outcome not in PASSED:
        return []
    return [
        check
        for check in report.checks
        if check["status"] == CheckStatus.passed and len(check["attempts"]) > 1
    ]


def record_flaky(
    session: Session, settings: Settings, candidate: Candidate, report: Report, by: str
) -> None:
    """`check_flaky`, one per flaky check: the candidate integrated (or would) on a check that
    failed before it passed; every attempt is kept, so the flake rate and the flaky check can
    be read later."""
    for check in flaky_checks(report):
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
                "check": check["name"],
                "attempts": check["attempts"],
            },
            slug=candidate.slug,
            branch=candidate.branch,
            sha=candidate.sha,
            actor=by,
        )


def prediction_key(candidate_id: int, epoch: int, attempt: str) -> str:
    """The natural key of one prediction: one per handout, never one per candidate."""
    return f"prediction:{candidate_id}:{epoch}:{attempt}"


def check_mode(outcome: Outcome, mode: modes.Mode, *, registered: bool = False) -> None:
    """Real outcomes in cutover, predictions outside it. An `integrated` that names its
    registration reports a push the guard authorized in cutover (registrations exist only
    there): a fact recorded in any mode, once its registration confirms it, so a rollback
    that arrives while that push lands loses nothing."""
    if outcome is Outcome.integrated and registered:
        return
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
    checks: list[dict[str, Any]] | None = None,
) -> None:
    """`integration_completed` (with the checks that passed, when the holder reported it)."""
    fields = events.validate_fields(
        "integration_completed",
        {
            "slug": candidate.slug,
            "branch": candidate.branch,
            "sha": candidate.sha,
            "main_sha": required(main_sha, "main_sha"),
            "completed_at": _now(),
            "checks": checks or None,
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
            "checks": outcome.checks or None,
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
            "checks": outcome.checks,
        },
        natural_key=prediction_key(candidate.id, epoch, attempt),
        slug=candidate.slug,
        branch=candidate.branch,
        sha=candidate.sha,
        actor=by,
    )
    move(session, candidate, Status.predicted, reason=outcome.outcome.value, actor=by)
