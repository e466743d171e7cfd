"""The readiness predicate: a pure function from facts to a decision.

A candidate `(slug, branch, sha)` is READY only when all six conditions hold.
Conditions 4 and 6 are facts read from the real canonical repository by the
caller, never taken from an event's word; `None` means git could not tell:
never READY, and never a reason to move a candidate either.
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
    """The decision, and the `main` it was computed against.

    `unmet` holds the conditions known not to hold; `unknown` those git could not tell.
    Unknown is not unmet: a candidate with unknown conditions and nothing unmet keeps its
    state until git can be read again (`undecided`).
    """

    ready: bool
    unmet: tuple[Condition, ...]
    main_sha: str | None
    unknown: tuple[Condition, ...] = ()

    @property
    def undecided(self) -> bool:
        return not self.unmet and bool(self.unknown)

    @property
    def pending(self) -> tuple[Condition, ...]:
        """Every condition not known to hold, in order: what a waiting candidate shows."""
        return tuple(c for c in Condition if c in self.unmet or c in self.unknown)


#: Conditions read from the canonical repository (None when git could not tell).
GIT_CONDITIONS = frozenset({Condition.on_branch, Condition.not_on_main})

_RULES: tuple[tuple[Condition, Callable[[Facts], bool | None]], ...] = (
    (Condition.review_approved, lambda f: f.approved),
    (Condition.finalize_ready, lambda f: f.finalized),
    (Condition.branch_pushed, lambda f: f.pushed),
    (Condition.on_branch, lambda f: f.on_branch),
    (Condition.not_superseded, lambda f: not f.superseded),
    (Condition.not_on_main, lambda f: None if f.on_main is None else not f.on_main),
)


def evaluate(facts: Facts) -> Readiness:
    held = [(condition, holds(facts)) for condition, holds in _RULES]
    unmet = tuple(condition for condition, value in held if value is False)
    unknown = tuple(condition for condition, value in held if value is None)
    return Readiness(
        ready=not unmet and not unknown, unmet=unmet, main_sha=facts.main_sha, unknown=unknown
    )
