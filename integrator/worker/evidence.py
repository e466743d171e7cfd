"""What a blocked candidate's author reads: the evidence, the diagnostics, the one next step.

Each function words one way a candidate cannot integrate — a merge conflict, a failed or
timed-out check, a push the server refused or that kept failing — as the three fields an
`integration_blocked` (or a `would_block`) carries. The next action is one step with the
command to run: `integrator submit` when the author must change the branch (a new sha, which
resumes in the original turn), `integrator resume` when the same sha is to be tried again after
something outside the change was fixed (a hung machine, the server's hooks).

Every text is made storable here: the service refuses NUL, undecodable bytes and over-long
lines, and a refused outcome would stop the worker with the candidate still in progress.
"""

from __future__ import annotations

import re
import shlex
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from integrator.check_contract import DEFAULT_NAME, SKIPPED_EXIT_CODE, CheckStatus
from integrator.merge_conflicts import Conflict
from integrator.worker.checks import CheckResult, CheckRun
from integrator.worker.landing import POLICY_REFUSAL, PushFacts, Verdict

if TYPE_CHECKING:
    from integrator.worker.trial import Handed

#: What the service stores in one diagnostic, next action, path or refusal.
PROSE_LIMIT = 2000
#: ... and in one output tail.
OUTPUT_LIMIT = 16_000
#: Conflicting paths named in the one-line summary and the next action (all are evidence).
SHOWN = 10
#: ... within this many characters (a diagnostic and a next action hold 2,000).
PATHS_BUDGET = 1200
#: Conflicting paths given a diagnostic line each: the kind of conflict and git's words.
LISTED = 50


@dataclass(frozen=True)
class Blocked:
    """The fields of a block: `conflict_evidence`, `diagnostics`, `next_action`."""

    evidence: list[dict[str, Any]]
    diagnostics: list[str]
    next_action: str


def storable(text: str, limit: int = PROSE_LIMIT) -> str:
    """`text` as the service can store it: bytes git could not decode as `\\xNN`, NUL as
    `\\0`, cut to `limit` characters."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")
    shown = raw.decode("utf-8", "backslashreplace").replace("\0", "\\0")
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _blocked(evidence: list[dict[str, Any]], lines: list[str], action: str) -> Blocked:
    return Blocked(evidence, [storable(line) for line in lines], storable(action))


def _resubmit(handed: Handed) -> str:
    return f"`integrator submit --slug {handed.slug} --branch {handed.branch}`"


def _resume(handed: Handed) -> str:
    return f"`integrator resume {handed.slug}`"


def _paths(paths: list[str], budget: int = PATHS_BUDGET) -> str:
    """The first few paths (as many as fit `budget` characters), quoted for a shell when they
    need it, and how many more."""
    shown: list[str] = []
    for path in paths[:SHOWN]:
        quoted = shlex.quote(path)
        used = sum(len(each) + 2 for each in shown)
        if shown and used + len(quoted) > budget:
            break
        shown.append(quoted if len(quoted) <= budget else quoted[:budget] + "…")
    rest = len(paths) - len(shown)
    return ", ".join(shown) + (f" and {rest} more" if rest else "")


def _conflict_line(handed: Handed, base: str, conflict: Conflict) -> str:
    """`path: kind conflict — what git said`, with the sides named main and the branch."""
    said = [
        re.sub(r"^CONFLICT \([^)]*\): ", "", text)
        .replace(base, "main")
        .replace(handed.sha, handed.branch)
        for text in conflict.messages
    ]
    return f"{conflict.path}: {', '.join(conflict.kinds)} conflict — {'; '.join(said)}"


def conflicted(handed: Handed, base: str, conflicts: tuple[Conflict, ...]) -> Blocked:
    """A merge conflict: every path is an evidence item with the kind git named (`conflict`),
    and each kind is also a diagnostic line in git's words."""
    paths = [storable(conflict.path) for conflict in conflicts]
    shown = _paths(paths)
    lines = [
        f"{handed.branch} at {handed.sha[:12]} conflicts with main at {base[:12]} "
        f"in {len(paths)} file(s): {shown}"
    ]
    described = [c for c in conflicts if c.kinds]
    lines += [storable(_conflict_line(handed, base, c)) for c in described[:LISTED]]
    if described[LISTED:]:
        lines.append(f"and {len(described) - LISTED} more conflicting paths (all in the evidence)")
    evidence = [
        {"kind": "conflict", "path": path, **({"conflict": ", ".join(c.kinds)} if c.kinds else {})}
        for path, c in zip(paths, conflicts, strict=True)
    ]
    return _blocked(
        evidence,
        lines,
        f"merge main into {handed.branch}, resolve {shown}, push the branch, then run "
        f"{_resubmit(handed)}",
    )


def attempt_record(check: CheckResult) -> dict[str, Any]:
    """One run of a check as an item of a reported check's `attempts`."""
    record: dict[str, Any] = {
        "timed_out": check.timed_out,
        "seconds": round(check.seconds, 3),
        "output_tail": storable(check.output_tail, OUTPUT_LIMIT),
    }
    if check.exit_code is not None:
        record["exit_code"] = check.exit_code
    return record


def check_report(run: CheckRun) -> dict[str, Any]:
    """One check as an outcome's `checks` carries it under its name: its status and every
    attempt."""
    return {
        "status": run.status.value,
        "attempts": [attempt_record(attempt) for attempt in run.attempts],
    }


def _check_item(check: CheckResult) -> dict[str, Any]:
    item: dict[str, Any] = {
        "kind": "check",
        "command": storable(check.command),
        "output_tail": storable(check.output_tail, OUTPUT_LIMIT),
    }
    if check.exit_code is not None and not check.timed_out:
        item["exit_code"] = check.exit_code
    return item


def label(run: CheckRun) -> str:
    """How a diagnostic names a check: by its command alone when it has no name of its own."""
    command = storable(run.spec.command)
    if run.spec.name == DEFAULT_NAME:
        return f"check `{command}`"
    return f"check {run.spec.name} (`{command}`)"


def check_failed(handed: Handed, base: str, run: CheckRun) -> Blocked:
    """A check that did not pass: failed, skipped or without its result (fixed on the branch),
    killed or timed out (resumed once what hung is fixed). With retries, every attempt is an
    evidence item, and the first diagnostic says how many there were."""
    last = run.last
    if last is None:
        raise ValueError("a check that was not run did not fail")
    found = _last_check_failed(handed, base, run, last)
    if len(run.attempts) == 1:
        return found
    items = [_check_item(attempt) for attempt in run.attempts[:-1]] + found.evidence
    how = ", ".join(_how(attempt) for attempt in run.attempts)
    first = (
        f"{label(run)} did not pass on any of {len(run.attempts)} attempts on the same "
        f"commit ({how}; status {run.status}); every attempt's output tail is in the evidence"
    )
    return _blocked(items, [first, *found.diagnostics], found.next_action)


def _how(check: CheckResult) -> str:
    status = check.status
    if status is CheckStatus.timed_out:
        return "timed out"
    if status is CheckStatus.skipped:
        return f"skipped (exit {SKIPPED_EXIT_CODE})"
    if status is CheckStatus.no_result:
        return "exit 0 without its result"
    return "stopped" if check.exit_code is None else f"exit {check.exit_code}"


def _last_check_failed(handed: Handed, base: str, run: CheckRun, check: CheckResult) -> Blocked:
    command = storable(check.command)
    named = label(run)
    status = check.status
    evidence = _check_item(check)
    where = (
        f"on {handed.branch} at {handed.sha[:12]} merged onto main at {base[:12]}; the end "
        "of its output is in the evidence"
    )
    if status is CheckStatus.timed_out:
        limit = f"its {check.timeout:g}s" if check.timeout is not None else "its"
        return _blocked(
            [evidence],
            [
                f"{named} timed out: it did not finish within {limit} timeout and its process "
                f"group was killed after {check.seconds:.1f}s (status timed_out), {where}",
                "if the change itself makes the check hang, push a fix instead and run "
                f"{_resubmit(handed)}",
            ],
            f"{named} timed out: find out why `{command}` did not finish within {limit} "
            f"timeout on {handed.branch} merged with main (a slow or stuck machine, a hung "
            f"service), fix that (an operator may give this candidate a longer timeout: "
            f"`integrator queue check-timeout {handed.slug} {run.spec.name} SECONDS --reason "
            f"…`), then run {_resume(handed)} to test the same sha again in its original turn",
        )
    if status is CheckStatus.skipped:
        lines = [
            f"{named} exited {SKIPPED_EXIT_CODE}, which means skipped (status skipped), after "
            f"{check.seconds:.1f}s {where}",
            "a skipped check is a failure, never a pass: green means every check ran",
        ]
        action = (
            f"{named} was skipped: make `{command}` run (not skip) on {handed.branch} merged "
            f"with main, push the branch, then run {_resubmit(handed)}"
        )
        return _blocked([evidence], lines, action)
    if status is CheckStatus.no_result:
        result = storable(check.result_missing or "")
        lines = [
            f"{named} exited 0 but did not write its declared result {result} (status "
            f"no_result) after {check.seconds:.1f}s {where}",
            "a check without its result is a failure, never a pass",
        ]
        action = (
            f"{named} wrote no result: make `{command}` write {result} on {handed.branch} "
            f"merged with main, push the branch, then run {_resubmit(handed)}"
        )
        return _blocked([evidence], lines, action)
    exit_code = check.exit_code
    if exit_code is None:
        how = "was stopped before it finished (status killed)"
    elif exit_code < 0:
        how = f"was killed by signal {-exit_code} ({_signal_name(-exit_code)}) (status killed)"
    else:
        how = f"failed with exit code {exit_code} (status failed)"
    return _blocked(
        [evidence],
        [f"{named} {how} after {check.seconds:.1f}s {where}"],
        f"{named} {status}: run `{command}` on {handed.branch} merged with main, fix what "
        f"fails, push the branch, then run {_resubmit(handed)}",
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


def push_failed(handed: Handed, base: str, push: PushFacts, tries: int) -> Blocked:
    """A push refused by a hook, or one that kept failing for `tries` tries: the server's
    words as evidence. Our own hook refusing a registered update, and a server that never
    took the push, are not the change's fault: the same sha is resumed once fixed."""
    new = push.new[:12]
    evidence: dict[str, Any] = {"kind": "push", "refusal": storable(push.detail or "no answer")}
    if push.remote_lines:
        evidence["output_tail"] = storable("\n".join(push.remote_lines)[-4000:], OUTPUT_LIMIT)
    if push.verdict is Verdict.refused and POLICY_REFUSAL.match(push.detail):
        return _blocked(
            [evidence],
            [
                f"the integrator's hook refused the registered push of {new} onto main at "
                f"{base[:12]}: {push.detail}",
                "the change is not at fault: the refusal is about the registration, the lease "
                "or the server (every remote: line is in the evidence)",
            ],
            "an operator fixes what the refusal names on the server (`integrator hooks check "
            f"<repository>` there shows the hooks' state), then run {_resume(handed)} to try "
            "the same sha again in its original turn",
        )
    if push.verdict is Verdict.refused:
        return _blocked(
            [evidence],
            [
                f"a hook on the git server refused the push of {new} onto main at {base[:12]}: "
                f"{push.detail}",
                "if the refusal is about the server rather than the change, an operator fixes "
                f"the hook and runs {_resume(handed)} instead",
            ],
            f"fix what the refusal names on {handed.branch}, push the branch, then run "
            f"{_resubmit(handed)}",
        )
    return _blocked(
        [evidence],
        [f"the push of {new} onto main kept failing ({tries} tries); the last try: {push.detail}"],
        "check that the canonical repository is reachable and its hooks answer "
        f"(`integrator hooks check <repository>` on the server), then run {_resume(handed)} "
        "to try the same sha again in its original turn",
    )
