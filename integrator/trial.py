"""What one attempt at a candidate found, and what the worker reports for it.

`judge` is pure: it takes the facts the worker gathered (main's sha, the merge, the check) and
the mode the service handed the candidate out in, and returns the outcome body. The worker does
the I/O; this module decides, so that the rules can be read (and tested) in one place.

Shadow and `off` record predictions (`would_integrate`/`would_block`). In `cutover` a failure
is a real `blocked`; a clean merge would have to be pushed, which needs registered updates
of main — not built yet, so the candidate is given back and the worker stops (the seam is
`Decision.stop`), rather than pretending it pushed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from integrator.checks import CheckResult
from integrator.workspace import Merged, MergeMethod

#: Modes in which the worker predicts and never pushes.
PREDICTING_MODES = frozenset({"shadow", "off"})

CUTOVER_NEEDS_REGISTRATIONS = (
    "in cutover the worker must push main through registered updates, which this worker "
    "cannot do yet; the candidate was returned to the queue: go back to shadow "
    "(`integrator rollback --reason …`) to keep predicting"
)

TRAILERS = ("Integrator-Candidate", "Integrator-Epoch", "Integrator-Attempt")


@dataclass(frozen=True)
class Handed:
    """The candidate as the service handed it out (`POST /v1/queue/next`)."""

    id: int
    slug: str
    branch: str
    sha: str
    mode: str
    position: int | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Handed:
        return cls(
            id=int(body["id"]),
            slug=str(body["slug"]),
            branch=str(body["branch"]),
            sha=str(body["sha"]),
            mode=str(body["mode"]),
            position=body.get("position"),
        )

    def describe(self) -> str:
        return f"candidate {self.id} ({self.slug}, {self.branch} at {self.sha[:12]})"


@dataclass(frozen=True)
class Trial:
    """What the worker found. `merge` is None when the content was already on main."""

    base: str
    attempt: str
    already_on_main: str | None = None
    merge: Merged | None = None
    merged_sha: str | None = None
    check: CheckResult | None = None


@dataclass(frozen=True)
class Decision:
    """The outcome body for `POST /v1/candidates/{id}/outcome`, and whether to stop after."""

    outcome: str
    attempt: str | None = None
    main_sha: str | None = None
    conflict_evidence: list[dict[str, Any]] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)
    next_action: str | None = None
    reason: str | None = None
    #: Report, then stop the worker with `reason` as its one-line error.
    stop: bool = False

    def body(self) -> dict[str, Any]:
        fields = {
            "outcome": self.outcome,
            "attempt": self.attempt,
            "main_sha": self.main_sha,
            "conflict_evidence": self.conflict_evidence,
            "diagnostics": self.diagnostics,
            "next_action": self.next_action,
            "reason": self.reason,
        }
        return {k: v for k, v in fields.items() if v not in (None, [])}


def merge_message(
    handed: Handed, epoch: int, attempt: str, method: MergeMethod = MergeMethod.merge
) -> str:
    """The integration commit's message: a subject, then the candidate, epoch and attempt
    trailers (a registration with that attempt is what makes them count)."""
    subject = (
        f"Merge {handed.branch} ({handed.slug}) at {handed.sha[:12]}"
        if method is MergeMethod.merge
        else f"{handed.slug}: {handed.branch} at {handed.sha[:12]} (squashed)"
    )
    values = (str(handed.id), str(epoch), attempt)
    trailers = "\n".join(f"{key}: {value}" for key, value in zip(TRAILERS, values, strict=True))
    return f"{subject}\n\n{trailers}\n"


def requeue(reason: str, *, stop: bool = False) -> Decision:
    """Give the candidate back; the reason is cut to what the service stores (2000)."""
    return Decision(outcome="requeue", reason=reason[:2000], stop=stop)


def _resubmit(handed: Handed) -> str:
    return f"`integrator submit --slug {handed.slug} --branch {handed.branch}`"


def _conflict(handed: Handed, trial: Trial, conflicts: tuple[str, ...]) -> Decision:
    shown = ", ".join(conflicts[:10]) + (
        f" and {len(conflicts) - 10} more" if conflicts[10:] else ""
    )
    return Decision(
        outcome="would_block",
        attempt=trial.attempt,
        main_sha=trial.base,
        conflict_evidence=[{"kind": "conflict", "path": path} for path in conflicts],
        diagnostics=[
            f"{handed.branch} at {handed.sha[:12]} conflicts with main at {trial.base[:12]} "
            f"in {len(conflicts)} file(s): {shown}"
        ],
        next_action=(
            f"merge main into {handed.branch}, resolve {shown}, push the branch, then run "
            f"{_resubmit(handed)}"
        ),
    )


def _check_failed(handed: Handed, trial: Trial, check: CheckResult) -> Decision:
    how = (
        "timed out (its process group was killed)"
        if check.timed_out
        else f"failed with exit code {check.exit_code}"
    )
    evidence: dict[str, Any] = {
        "kind": "check",
        "command": check.command,
        "output_tail": check.output_tail,
    }
    if check.exit_code is not None:
        evidence["exit_code"] = check.exit_code
    return Decision(
        outcome="would_block",
        attempt=trial.attempt,
        main_sha=trial.base,
        conflict_evidence=[evidence],
        diagnostics=[
            f"check `{check.command}` {how} after {check.seconds:.1f}s on {handed.branch} at "
            f"{handed.sha[:12]} merged onto main at {trial.base[:12]}"
        ],
        next_action=(
            f"run `{check.command}` on {handed.branch} merged with main, fix it, push the "
            f"branch, then run {_resubmit(handed)}"
        ),
    )


def _as_real(decision: Decision) -> Decision:
    """Cutover: a predicted block is a real one (it needs no push)."""
    if decision.outcome == "would_block":
        return Decision(**{**decision.__dict__, "outcome": "blocked"})
    return decision


def judge(handed: Handed, trial: Trial) -> Decision:
    """The outcome to report for what `trial` found, in the mode the candidate was handed out."""
    if trial.already_on_main is not None or (trial.merge is not None and trial.merge.empty):
        return Decision(
            outcome="already_integrated",
            attempt=trial.attempt,
            main_sha=trial.base,
            reason="its content is already on main",
        )
    merge = trial.merge
    if merge is None:
        raise ValueError("a trial without a merge must have found the content on main")
    if not merge.ok:
        failed = _conflict(handed, trial, merge.conflicts)
    elif trial.check is not None and not trial.check.ok:
        failed = _check_failed(handed, trial, trial.check)
    else:
        return _clean(handed, trial)
    return failed if handed.mode in PREDICTING_MODES else _as_real(failed)


def not_on_main(handed: Handed, trial: Trial) -> Decision:
    """The service checked an `already_integrated` against main and did not find it there:
    a merge that changed nothing is reported as the clean merge it is; a sha this worker saw
    on main but the service does not goes back to the queue, and the worker stops."""
    merge = trial.merge
    if merge is None or not merge.ok:
        return requeue(
            f"{handed.describe()} is on main at {trial.base[:12]} as this worker fetched it, "
            "but not on main as the service reads it; returned to the queue: check that the "
            "worker and the service use the same repository (--repo and INTEGRATOR_REPO)",
            stop=True,
        )
    return judge(handed, replace(trial, already_on_main=None, merge=replace(merge, empty=False)))


def _clean(handed: Handed, trial: Trial) -> Decision:
    if handed.mode not in PREDICTING_MODES:
        return requeue(CUTOVER_NEEDS_REGISTRATIONS, stop=True)
    base = trial.base[:12]
    lines = [
        f"merged cleanly onto main at {base} as {trial.merged_sha[:12]}"
        if trial.merged_sha
        else f"merges cleanly onto main at {base} and changes nothing there"
    ]
    if trial.check is not None:
        lines.append(f"check `{trial.check.command}` passed in {trial.check.seconds:.1f}s")
    return Decision(
        outcome="would_integrate", attempt=trial.attempt, main_sha=trial.base, diagnostics=lines
    )
