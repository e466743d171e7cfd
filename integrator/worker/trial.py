"""What one attempt at a candidate found, and what the worker reports for it.

`judge` is pure: it takes the facts the worker gathered (main's sha, the merge, the check) and
the mode the service handed the candidate out in, and returns the outcome body. The worker does
the I/O; this module decides, so that the rules can be read (and tested) in one place.

Shadow and `off` record predictions (`would_integrate`/`would_block`). In `cutover` a failure
is a real `blocked`, and a clean merge is judged by what its registered push did: `integrated`
(with the registration that landed it), `blocked` when the server's hook refused it or every
try failed (the refusal is the evidence), or given back with the worker stopped when the
server cannot take the push at all (a configuration error, not the candidate's fault).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from integrator.worker import evidence
from integrator.worker.checks import CheckRun
from integrator.worker.landing import PushFacts, Verdict
from integrator.worker.workspace import Merged, MergeMethod

#: Modes in which the worker predicts and never pushes.
PREDICTING_MODES = frozenset({"shadow", "off"})

NO_PUSH_OPTIONS = (
    "the git server does not accept push options, which carry the integrator's registration: "
    "set receive.advertisePushOptions=true in the canonical repository on the server "
    "(`git config receive.advertisePushOptions true`; `integrator hooks install` sets it); "
    "the candidate was returned to the queue"
)

TRAILERS = ("Integrator-Candidate", "Integrator-Epoch", "Integrator-Attempt")

#: Registered tries after the first that did not land (transport, hook deadline, main moved).
PUSH_RETRIES = 3
#: Seconds before each of those tries when main did not move (the hook could not reach the
#: service, a transport error): a few seconds of outage must not block the candidate. A lost
#: compare-and-swap is merged and checked again at once.
PUSH_BACKOFF_SECONDS = (0.5, 2.0, 5.0)


@dataclass(frozen=True)
class Handed:
    """The candidate as the service handed it out (`POST /v1/queue/next`)."""

    id: int
    slug: str
    branch: str
    sha: str
    mode: str
    position: int | None
    #: An operator's timeouts for this candidate's checks, by name (seconds).
    check_timeouts: dict[str, float] = field(default_factory=dict)
    #: The checks the service requires to pass for green.
    required_checks: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Handed:
        return cls(
            id=int(body["id"]),
            slug=str(body["slug"]),
            branch=str(body["branch"]),
            sha=str(body["sha"]),
            mode=str(body["mode"]),
            position=body.get("position"),
            check_timeouts={
                str(name): float(seconds)
                for name, seconds in (body.get("check_timeouts") or {}).items()
            },
            required_checks=tuple(str(name) for name in body.get("required_checks") or ()),
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
    #: Every configured check in declared order, run or not (`not_run`: an earlier one failed,
    #: or there was no commit to check).
    checks: tuple[CheckRun, ...] = ()
    #: In cutover: what the registered push of `merged_sha` did.
    push: PushFacts | None = None

    @property
    def clean(self) -> bool:
        """A commit was made and every check passed on it: ready to be pushed."""
        return self.merged_sha is not None and all(run.ok for run in self.checks)

    @property
    def failed_check(self) -> CheckRun | None:
        """The check that blocks: the first one run that did not pass."""
        return next((run for run in self.checks if run.attempts and not run.ok), None)

    @property
    def landed(self) -> bool:
        return self.push is not None and self.push.verdict is Verdict.landed

    def check_reports(self) -> dict[str, dict[str, Any]]:
        """Every configured check by name, in run order, as the service reads it (outcome and
        registration alike)."""
        return {run.spec.name: evidence.check_report(run) for run in self.checks}


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
    registration_id: int | None = None
    #: Every configured check by name (status and every attempt), in declared order.
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
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
            "registration_id": self.registration_id,
            "checks": self.checks,
        }
        return {k: v for k, v in fields.items() if v not in (None, [], {})}


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


def _would_block(trial: Trial, found: evidence.Blocked) -> Decision:
    return Decision(
        outcome="would_block",
        attempt=trial.attempt,
        main_sha=trial.base,
        conflict_evidence=found.evidence,
        diagnostics=found.diagnostics,
        next_action=found.next_action,
        checks=trial.check_reports(),
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
        failed = _would_block(trial, evidence.conflicted(handed, trial.base, merge.conflicts))
    elif (blocking := trial.failed_check) is not None:
        found = evidence.check_failed(handed, trial.base, blocking)
        skipped = [run.spec.name for run in trial.checks if run.status == "not_run"]
        if skipped:
            note = f"not run, since {blocking.spec.name} did not pass: {', '.join(skipped)}"
            found = replace(found, diagnostics=[*found.diagnostics, evidence.storable(note)])
        failed = _would_block(trial, found)
    else:
        return _clean(handed, trial)
    return failed if handed.mode in PREDICTING_MODES else _as_real(failed)


def landed_unconfirmed(trial: Trial, refusal: str) -> Decision:
    """The push landed but the service does not confirm its registration (a break-glass
    override let it through while the hook had no service, so the guard never authorized
    it): its content is on main, for the service to find there itself."""
    return Decision(
        outcome="already_integrated",
        attempt=trial.attempt,
        main_sha=trial.base,
        reason=f"landed, but the service did not confirm its registration: {refusal}"[:2000],
    )


def not_on_main(handed: Handed, trial: Trial) -> Decision:
    """The service checked an `already_integrated` against main and did not find it there:
    a merge that changed nothing is reported as the clean merge it is (in cutover there is
    nothing to push: it goes back to the queue for an operator); a sha this worker saw on main
    but the service does not goes back to the queue, and the worker stops."""
    merge = trial.merge
    if merge is None or not merge.ok:
        return requeue(
            f"{handed.describe()} is on main at {trial.base[:12]} as this worker fetched it, "
            "but not on main as the service reads it; returned to the queue: check that the "
            "worker and the service use the same repository (--repo and INTEGRATOR_REPO)",
            stop=True,
        )
    if handed.mode not in PREDICTING_MODES:
        return requeue(
            f"{handed.describe()} changes nothing on main at {trial.base[:12]}, but the service "
            "does not find its content there, and an integration that changes nothing is not "
            f"pushed; returned to the queue: if its changes are on main, run `integrator queue "
            f"close {handed.slug} --reason …`",
            stop=True,
        )
    return judge(handed, replace(trial, already_on_main=None, merge=replace(merge, empty=False)))


def _clean(handed: Handed, trial: Trial) -> Decision:
    if handed.mode not in PREDICTING_MODES:
        if trial.push is None:
            raise ValueError("in cutover a clean merge is judged by its push")
        return _pushed(handed, trial, trial.push)
    base = trial.base[:12]
    lines = [
        f"merged cleanly onto main at {base} as {trial.merged_sha[:12]}"
        if trial.merged_sha
        else f"merges cleanly onto main at {base} and changes nothing there"
    ]
    lines += _passed_lines(trial, "")
    return Decision(
        outcome="would_integrate",
        attempt=trial.attempt,
        main_sha=trial.base,
        diagnostics=lines,
        checks=trial.check_reports(),
    )


def _passed_lines(trial: Trial, where: str) -> list[str]:
    """A line per check that passed, and one per flaky check (it failed before passing)."""
    lines = []
    for run in trial.checks:
        last = run.last
        if last is None:
            continue
        passed = f"{evidence.label(run)} passed{where} in {last.seconds:.1f}s"
        lines.append(evidence.storable(passed))
        if run.flaky:
            tries = len(run.attempts)
            lines.append(
                f"flaky: check {run.spec.name} did not pass {tries - 1} time(s) before passing "
                f"on attempt {tries}"
            )
    return lines


def _pushed(handed: Handed, trial: Trial, push: PushFacts) -> Decision:
    """Cutover: the outcome of the registered push of the tested commit."""
    base, new = trial.base[:12], push.new[:12]
    if push.verdict is Verdict.landed:
        lines = [f"merged onto main at {base} as {new} and pushed (registration "
                 f"{push.registration_id})"]  # fmt: skip
        return Decision(
            outcome="integrated",
            attempt=trial.attempt,
            main_sha=push.new,
            registration_id=push.registration_id,
            diagnostics=lines + _passed_lines(trial, f" on {new} before the push"),
            checks=trial.check_reports(),
        )
    if push.verdict is Verdict.unsupported:
        return requeue(NO_PUSH_OPTIONS, stop=True)
    if push.verdict is Verdict.withdrawn:
        return requeue(f"the service left cutover before the push of main: {push.detail}")
    found = evidence.push_failed(handed, trial.base, push, tries=PUSH_RETRIES + 1)
    return _as_real(_would_block(trial, found))
