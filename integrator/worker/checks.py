"""Running the operator's named checks for a candidate, in order, each with its own timeout.

A check is code the worker does not control (a test suite, a linter), so:

- it gets a scrubbed environment: no `INTEGRATOR_*` variable (the worker's service token lives
  there), no `GIT_CONFIG_*` (the push option carrying a registration nonce travels that
  way), no `GIT_TRACE*`/`GIT_CURL_VERBOSE`, and nothing that would point git at another
  repository (`GIT_DIR`, a quarantine);
- it runs in a session of its own (`start_new_session=True`), so that at the timeout, or when
  the worker is told to stop, the *whole* process group goes — `make -j` and the servers a test
  suite starts included, not just the shell;
- its output goes to a file, not a pipe: a chatty check cannot fill the worker's memory, and a
  grandchild that keeps a pipe open cannot make the worker wait. Only the tail is kept as
  evidence.

Each check starts from the merged commit, clean (the tree is reset between checks and between
attempts): no check can make a later one pass by what it leaves behind. A declared result file
is removed before the run, so only a file this run wrote counts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from integrator.check_contract import CheckStatus, status_of
from integrator.worker.check_config import CheckSpec

log = logging.getLogger(__name__)

#: How much of the check's output is kept as evidence (the end is where failures are).
TAIL_BYTES = 4000

_DROPPED = frozenset(
    {"GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_INDEX_FILE", "GIT_QUARANTINE_PATH"}
    | {"GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_CURL_VERBOSE"}
)
_DROPPED_PREFIXES = ("INTEGRATOR_", "GIT_CONFIG_", "GIT_TRACE")


def check_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a check runs with: the worker's, minus secrets and git injection."""
    source = os.environ if base is None else base
    return {
        key: value
        for key, value in source.items()
        if key not in _DROPPED and not key.startswith(_DROPPED_PREFIXES)
    }


@dataclass(frozen=True)
class CheckResult:
    """What one run of a check did. `exit_code` is None when it was killed by us."""

    command: str
    exit_code: int | None
    timed_out: bool
    cancelled: bool
    output_tail: str
    seconds: float
    #: The limit it ran under (seconds).
    timeout: float | None = None
    #: The declared result file it exited 0 without writing.
    result_missing: str | None = None

    @property
    def status(self) -> CheckStatus:
        if self.cancelled:
            return CheckStatus.killed
        written = self.result_missing is None
        return status_of(self.exit_code, timed_out=self.timed_out, result_written=written)

    @property
    def ok(self) -> bool:
        return self.status is CheckStatus.passed


@dataclass(frozen=True)
class CheckRun:
    """One named check on a candidate: every attempt in order (none: it was not run)."""

    spec: CheckSpec
    attempts: tuple[CheckResult, ...] = ()

    @property
    def status(self) -> CheckStatus:
        return self.attempts[-1].status if self.attempts else CheckStatus.not_run

    @property
    def ok(self) -> bool:
        return self.status is CheckStatus.passed

    @property
    def last(self) -> CheckResult | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def flaky(self) -> bool:
        """It passed, after at least one failed attempt on the same commit."""
        return self.ok and len(self.attempts) > 1


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _tail(path: Path, limit: int = TAIL_BYTES) -> str:
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - limit))
        data = handle.read()
    text = data.decode("utf-8", errors="replace")
    return ("…" + text) if size > limit else text


class CheckRunner:
    """Runs one shell command at a time and can kill it from another thread or a signal
    handler (`cancel`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pgid: int | None = None
        self._cancelled = False

    def cancel(self) -> None:
        """Kill the running check's process group (if any); later runs are refused too.

        Called from the worker's SIGTERM handler: it only sets a flag and sends a signal.
        """
        self._cancelled = True
        pgid = self._pgid  # no lock: a signal handler must not wait on one
        if pgid is not None:
            _kill_group(pgid)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def run(self, command: str, timeout: float, cwd: Path, output: Path) -> CheckResult:
        """Run `command` in `cwd` with `sh -c` for at most `timeout` seconds; its output goes
        to `output`."""
        if timeout <= 0:
            raise ValueError("the check timeout must be positive")
        started = time.monotonic()
        timed_out = False
        with output.open("wb") as sink:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", command],
                cwd=cwd,
                env=check_environment(),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with self._lock:
            self._pgid = proc.pid  # a new session: its leader's pid is the group id
        log.info("check started (pid %d): %s", proc.pid, command)
        try:
            if self._cancelled:  # the stop came between the flag check and the start
                _kill_group(proc.pid)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                log.warning("check exceeded %gs: killing its process group", timeout)
                _kill_group(proc.pid)
                proc.wait()
        finally:
            # Whatever the check left running in the background goes with it.
            _kill_group(proc.pid)
            with self._lock:
                self._pgid = None
            if proc.returncode is None:
                _kill_group(proc.pid)
                proc.wait()
        tail = _tail(output)
        killed = timed_out or self._cancelled
        if timed_out:
            tail += f"\n[integrator: check killed after its {timeout:g}s timeout]"
        return CheckResult(
            command=command,
            exit_code=None if killed else proc.returncode,
            timed_out=timed_out,
            cancelled=self._cancelled and not timed_out,
            output_tail=tail,
            seconds=time.monotonic() - started,
            timeout=timeout,
        )


def _written(cwd: Path, result: str) -> bool:
    """The declared result is a non-empty regular file inside the tree."""
    target = cwd / result
    try:
        inside = target.resolve().is_relative_to(cwd.resolve())
        return inside and target.is_file() and target.stat().st_size > 0
    except OSError:
        return False


def run_check(
    runner: CheckRunner, spec: CheckSpec, timeout: float, cwd: Path, output: Path
) -> CheckResult:
    """One attempt at `spec`; a declared result is removed first and looked for after."""
    if spec.result is not None:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            (cwd / spec.result).unlink()
    result = runner.run(spec.command, timeout, cwd, output)
    if spec.result is None or result.status is not CheckStatus.passed or _written(cwd, spec.result):
        return result
    note = f"\n[integrator: exited 0 without writing its declared result {spec.result}]"
    return replace(result, result_missing=spec.result, output_tail=result.output_tail + note)


def run_with_retries(
    runner: CheckRunner,
    spec: CheckSpec,
    timeout: float,
    retries: int,
    cwd: Path,
    output: Path,
    reset: Callable[[], None],
) -> tuple[CheckResult, ...]:
    """Run the check, and rerun a failed one up to `retries` times on the same tree.

    `reset` puts the worktree back to the merged commit, clean, before each rerun: an attempt
    must not see what the previous one left behind. A cancelled run is never retried (the
    worker is stopping). Every attempt is returned, the last one decides.
    """
    attempts = [run_check(runner, spec, timeout, cwd, output)]
    while not attempts[-1].ok and not attempts[-1].cancelled and len(attempts) <= retries:
        log.warning(
            "check %s %s (attempt %d of %d); running it again on the same commit",
            spec.name,
            attempts[-1].status,
            len(attempts),
            retries + 1,
        )
        reset()
        attempts.append(run_check(runner, spec, timeout, cwd, output))
    return tuple(attempts)


@dataclass(frozen=True)
class CheckPlan:
    """How the checks run on one candidate."""

    specs: tuple[CheckSpec, ...]
    default_timeout: float
    retries: int = 0
    #: An operator's per-candidate timeouts, by check name (from the handout).
    overrides: dict[str, float] = field(default_factory=dict)


def run_checks(
    runner: CheckRunner, plan: CheckPlan, cwd: Path, output: Path, reset: Callable[[], None]
) -> tuple[CheckRun, ...]:
    """Every check in declared order, each from a clean tree; after the first that fails
    (after its retries), or a stop, the rest are `not_run`."""
    runs: list[CheckRun] = []
    for index, spec in enumerate(plan.specs):
        if runner.cancelled or (runs and not runs[-1].ok):
            runs.append(CheckRun(spec))
            continue
        if index:
            reset()
        timeout = spec.timeout_or(plan.default_timeout, plan.overrides)
        runs.append(CheckRun(spec, run_with_retries(runner, spec, timeout, plan.retries, cwd,
                                                    output, reset)))  # fmt: skip
    return tuple(runs)
