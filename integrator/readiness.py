"""The readiness predicate: a pure function from facts to a decision.

A candidate `(slug, branch, sha)` is READY only when all six conditions hold.
Conditions 4 and 6 are facts read from the real canonical repository by the
caller, never taken from an event's word; `None` means git could not tell,
which is never READY.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Condition(StrEnum):
    """A condition of readiness; an unmet one is reported by this code."""

    #: 1. a review_approved exists for the slug.
    review_approved = "review_approved"
    #: 2. a finalize_ready exists for (slug, branch, sha).
    finalize_ready = "finalize_ready"
    #: 3. a branch_pushed exists for (branch, sha).
    branch_pushed = "branch_pushed"
    #: 4. sha is reachable from the canonical refs/heads/<branch>.
    on_branch = "on_branch"
    #: 5. no newer finalize_ready of the slug supersedes it.
    not_superseded = "not_superseded"
    #: 6. sha is not already reachable from canonical main.
    not_on_main = "not_on_main"


@dataclass(frozen=True)
class Facts:
    """Everything readiness depends on, gathered by the caller."""

    approved: bool
    finalized: bool
    pushed: bool
    on_branch: bool | None
    superseded: bool
    on_main: bool | None
    main_sha: str | None


@dataclass(frozen=True)
class Readiness:
    """The decision, and the `main` it was computed against."""

    ready: bool
    unmet: tuple[Condition, ...]
    main_sha: str | None


_RULES: tuple[tuple[Condition, Callable[[Facts], bool]], ...] = (
    (Condition.review_approved, lambda f: f.approved),
    (Condition.finalize_ready, lambda f: f.finalized),
    (Condition.branch_pushed, lambda f: f.pushed),
    (Condition.on_branch, lambda f: f.on_branch is True),
    (Condition.not_superseded, lambda f: not f.superseded),
    (Condition.not_on_main, lambda f: f.on_main is False),
)


def evaluate(facts: Facts) -> Readiness:
    unmet = tuple(condition for condition, holds in _RULES if not holds(facts))
    return Readiness(ready=not unmet, unmet=unmet, main_sha=facts.main_sha)
