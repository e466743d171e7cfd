"""The check contract: what a named check's result may say, and when a candidate is green.

Shared by the worker (which runs the checks and reports them) and the service (which refuses
a green outcome that does not show every required check passed, and counts what the checks
reported on shadow candidates for the cutover evidence). Pure rules, no I/O.

A check passes only by exiting 0 within its timeout (and, when it declares a result file,
by writing it). Everything else is a failure with a name of its own, so that nobody reads a
skip, a kill or a silent check as green.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class CheckStatus(StrEnum):
    """What one named check came to on a candidate's merged commit (its last attempt)."""

    #: Exited 0 within its timeout (and wrote its declared result, if any): the only pass.
    passed = "passed"
    #: Exited non-zero (not 77).
    failed = "failed"
    #: Ran past its timeout; its process group was killed.
    timed_out = "timed_out"
    #: Killed by a signal (not by its timeout).
    killed = "killed"
    #: Exited 77, the automake/meson "skipped" convention: a failure, never a pass.
    skipped = "skipped"
    #: Exited 0 without writing its declared result file: a failure.
    no_result = "no_result"
    #: Not run, because an earlier check failed (or the merge did).
    not_run = "not_run"


#: The exit code that means "skipped" (automake, meson): reported as such, a failure.
SKIPPED_EXIT_CODE = 77

#: A check's name: lowercase letters, digits, `_`, `.` and `-`, starting with a letter or
#: digit. `--check NAME=CMD` takes a name only in this shape (so `FOO=1 make` is a command).
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
NAME_MAX_LENGTH = 64
_NAME = re.compile(NAME_PATTERN)

#: The name a plain `--check CMD` gets.
DEFAULT_NAME = "check"

#: Statuses that show the check really ran to a verdict on a candidate: what the cutover
#: evidence counts as "reported". A skip, a missing result, a kill and a check never started
#: prove nothing about the check's ability to say green or red.
REPORTED = frozenset({CheckStatus.passed, CheckStatus.failed, CheckStatus.timed_out})

#: The most named checks one worker runs (and one outcome lists).
MAX_CHECKS = 50
#: The most runs of one check an outcome carries (`integrator worker --check-retries` is at
#: most 20).
MAX_CHECK_ATTEMPTS = 21


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a check, or None."""
    if len(name) > NAME_MAX_LENGTH:
        return f"a check name is at most {NAME_MAX_LENGTH} characters"
    if not _NAME.fullmatch(name):
        return (
            f"{name!r} is not a check name: use lowercase letters, digits, '_', '.' and '-', "
            "starting with a letter or a digit"
        )
    return None


def status_of(
    exit_code: int | None, *, timed_out: bool, result_written: bool = True
) -> CheckStatus:
    """The status of one run: `exit_code` None means the worker killed it (timeout or stop)."""
    if timed_out:
        return CheckStatus.timed_out
    if exit_code is None or exit_code < 0:
        return CheckStatus.killed
    if exit_code == SKIPPED_EXIT_CODE:
        return CheckStatus.skipped
    if exit_code != 0:
        return CheckStatus.failed
    return CheckStatus.passed if result_written else CheckStatus.no_result


@dataclass(frozen=True)
class AttemptsRule:
    """What a status says of the attempts reported with it: whether it has any, and what its
    last one shows (fields and their values). The one statement of the rule: the service
    checks it (`consistency_problem`) and the published schema says it (a branch per status).
    """

    ran: bool
    last: tuple[tuple[str, Any], ...]
    #: Why a last attempt without those values contradicts the status.
    says: str = ""


#: A `passed` check's last attempt exited 0 in time, a `not_run` one has no attempt, every
#: other has one at least.
ATTEMPTS_RULES: dict[CheckStatus, AttemptsRule] = {
    **{status: AttemptsRule(ran=True, last=()) for status in CheckStatus},
    CheckStatus.not_run: AttemptsRule(ran=False, last=()),
    CheckStatus.passed: AttemptsRule(
        ran=True,
        last=(("exit_code", 0), ("timed_out", False)),
        says="a passed check's last attempt exited 0 within its timeout",
    ),
}


def consistency_problem(status: CheckStatus, attempts: Sequence[Mapping[str, Any]]) -> str | None:
    """Why a reported check contradicts its own attempts (`ATTEMPTS_RULES`), or None."""
    rule = ATTEMPTS_RULES[status]
    if not rule.ran:
        return f"a {status} check has no attempts" if attempts else None
    if not attempts:
        return f"a {status} check has at least one attempt"
    if any(attempts[-1].get(name) != value for name, value in rule.last):
        return rule.says
    return None


def not_green(required: Iterable[str], checks: Sequence[Mapping[str, Any]]) -> list[str]:
    """Why an outcome that says green is not: each required check it does not list as
    passed, and each check it lists that did not pass. Empty when it is green."""
    status = {str(c["name"]): str(c["status"]) for c in checks}
    problems = [
        f"required check {name!r} " + (f"is {status[name]}" if name in status else "was not run")
        for name in required
        if status.get(name) != CheckStatus.passed
    ]
    problems += [
        f"check {name!r} is {state}"
        for name, state in status.items()
        if state != CheckStatus.passed and name not in required
    ]
    return problems


def missing(required: Iterable[str], configured: Iterable[str]) -> list[str]:
    """The required checks a worker's configuration lacks, in the service's order."""
    have = set(configured)
    return [name for name in required if name not in have]
