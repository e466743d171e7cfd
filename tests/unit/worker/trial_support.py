"""The handout and the checks on a decision that the worker's decision-rule tests share."""

from __future__ import annotations

from integrator import events
from integrator.api.processing import OutcomeIn
from integrator.worker.trial import Decision, Handed

BASE, SHA, MERGED = "b" * 40, "c" * 40, "d" * 40


def handed(mode: str = "shadow") -> Handed:
    """Candidate 7 (feat-7 at SHA, branch feat/seven), handed out in `mode`."""
    return Handed(id=7, slug="feat-7", branch="feat/seven", sha=SHA, mode=mode, position=3)


def assert_recordable(decision: Decision) -> None:
    """The service takes the decision as it is: its outcome body, and the
    `integration_blocked` event made of it."""
    OutcomeIn.model_validate({"epoch": 1, "token": "t", **decision.body()})
    events.validate_fields(
        "integration_blocked",
        {
            "slug": "feat-7", "branch": "feat/seven", "sha": SHA, "attempt": "att-1",
            "conflict_evidence": decision.conflict_evidence,
            "diagnostics": decision.diagnostics,
            "next_action": decision.next_action,
            "blocked_at": "2026-01-01T00:00:00+00:00",
        },
    )  # fmt: skip
