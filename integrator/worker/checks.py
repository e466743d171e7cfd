"""Running the operator's `--check` command for a candidate.

The check is code the worker does not control (a test suite, a linter), so:

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
from dataclasses import dataclass
from pathlib import Path

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
    """What one run of the check did. `exit_code` is None when it was killed by us."""

    command: str
    exit_code: int | None
    timed_out: bool
    cancelled: bool
    output_tail: str
    seconds: float
    #: The limit it ran under (seconds).
    timeout: float | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.cancelled


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

    def __init__(self, command: str, timeout: float) -> None:
        if timeout <= 0:
            raise ValueError("the check timeout must be positive")
        self.command = command
        self.timeout = timeout
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

    def run(self, cwd: Path, output: Path) -> CheckResult:
        """Run the command in `cwd` with `sh -c`; its output goes to `output`."""
        started = time.monotonic()
        timed_out = False
        with output.open("wb") as sink:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", self.command],
                cwd=cwd,
                env=check_environment(),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with self._lock:
            self._pgid = proc.pid  # a new session: its leader's pid is the group id
        log.info("check started (pid %d): %s", proc.pid, self.command)
        try:
            if self._cancelled:  # the stop came between the flag check and the start
                _kill_group(proc.pid)
            try:
                proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                log.warning("check exceeded %gs: killing its process group", self.timeout)
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
            tail += f"\n[integrator: check killed after its {self.timeout:g}s timeout]"
        return CheckResult(
            command=self.command,
            exit_code=None if killed else proc.returncode,
            timed_out=timed_out,
            cancelled=self._cancelled and not timed_out,
            output_tail=tail,
            seconds=time.monotonic() - started,
            timeout=self.timeout,
        )


def run_with_retries(
    runner: CheckRunner, retries: int, cwd: Path, output: Path, reset: Callable[[], None]
) -> tuple[CheckResult, ...]:
    """Run the check, and rerun a failed one up to `retries` times on the same tree.

    `reset` puts the worktree back to the merged commit, clean, before each rerun: an attempt
    must not see what the previous one left behind. A cancelled run is never retried (the
    worker is stopping). Every attempt is returned, the last one decides.
    """
    attempts = [runner.run(cwd, output)]
    while not attempts[-1].ok and not attempts[-1].cancelled and len(attempts) <= retries:
        log.warning(
            "check failed (attempt %d of %d); running it again on the same commit",
            len(attempts),
            retries + 1,
        )
        reset()
        attempts.append(runner.run(cwd, output))
    return tuple(attempts)
