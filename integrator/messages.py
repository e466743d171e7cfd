"""User-facing sentences in one place, so that API, CLI, hook and dashboard agree."""

from __future__ import annotations

from integrator.readiness import Condition

UNMET: dict[Condition, str] = {
    Condition.review_approved: "no review_approved event for the slug yet",
    Condition.finalize_ready: "no finalize_ready event for this (slug, branch, sha)",
    Condition.branch_pushed: (
        "no branch_pushed for this branch at this sha: push the branch to the canonical "
        "repository (the post-receive hook reports it)"
    ),
    Condition.on_branch: (
        "the sha is not reachable from the branch in the canonical repository "
        "(not pushed, force-pushed away, or the repository could not be read)"
    ),
    Condition.not_superseded: "a newer finalize_ready of the same slug supersedes it",
    Condition.not_on_main: "the sha is already on main (or main could not be read)",
}


def explain_unmet(codes: list[str]) -> list[str]:
    """`code: sentence` for each unmet condition code."""
    return [f"{code}: {UNMET.get(Condition(code), code)}" for code in codes]
