"""User-facing sentences in one place, so that API, CLI, hook and dashboard agree."""

from __future__ import annotations

from integrator.policy import Mode, PushVerdict, Reason
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


REASONS: dict[Reason, str] = {
    Reason.unprotected: "not a protected ref",
    Reason.registered: "a registered update of the integrator holding the current lease",
    Reason.not_registered: (
        "main is integrated only by the integrator holding the current lease; "
        "direct pushes are not accepted"
    ),
    Reason.integrator_without_registration: (
        "you are the integrator but sent no registration (push option integrator-push=<nonce>)"
    ),
    Reason.registration_mismatch: (
        "no usable registration matches this ref, old and new: a registration buys one "
        "update once, before it expires (register again)"
    ),
    Reason.lease_margin: (
        "the registration's lease epoch has ended or has too little time left: renew or "
        "take the lease, then register again"
    ),
    Reason.deletion: "deleting a protected ref is refused to everyone",
    Reason.creation: "creating a protected ref is not a registered update",
    Reason.not_fast_forward: "rewinding a protected ref (non-fast-forward) is refused to everyone",
    Reason.first_parent: "the new commit's first parent is not the old tip",
    Reason.cannot_verify: "the hook could not verify fast-forward and first parent",
    Reason.registration_outside_cutover: (
        "an integrator-push option outside cutover: the integrator never moves main before cutover"
    ),
    Reason.mode_off: "the guard is off",
    Reason.service_unavailable: "the integrator service was unreachable",
}

SUBMIT_HINT = (
    "to land work on main: push it to a branch, then run "
    "`integrator submit --slug <slug> --branch <branch>`"
)


def short_ref(ref: str) -> str:
    return ref.removeprefix("refs/heads/")


def push_messages(verdict: PushVerdict, mode: Mode) -> list[str]:
    """The `remote:` lines for a push: what was refused, why, and what to do instead."""
    lines: list[str] = []
    refused = verdict.refused
    if refused:
        for item in refused:
            alias = (
                ""
                if item.update.ref == item.update.resolved_ref
                else (f" (an alias of {short_ref(item.update.resolved_ref)})")
            )
            lines.append(
                f"integrator: refused {short_ref(item.update.ref)}{alias}: {REASONS[item.reason]}"
            )
        others = [short_ref(u.update.ref) for u in verdict.updates if u.allow]
        if others:
            lines.append(
                "integrator: the other refs of this push were not updated either "
                f"({', '.join(others)}): git applies one verdict per push; push them separately"
            )
        if any(i.reason is Reason.integrator_without_registration for i in refused):
            lines.append("integrator: the worker registers every update before pushing main")
        else:
            lines.append(f"integrator: {SUBMIT_HINT}")
        return lines
    flagged = [u for u in verdict.updates if u.would_reject]
    if flagged and mode is Mode.shadow:
        for item in flagged:
            lines.append(
                f"integrator (shadow): after cutover this update of "
                f"{short_ref(item.update.resolved_ref)} would be refused: {REASONS[item.reason]}"
            )
        lines.append(f"integrator (shadow): recorded, nothing was blocked; {SUBMIT_HINT}")
    return lines
