"""`integrator worker`'s options, and the holder id it names itself by."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from integrator.worker.check_config import CheckSpec
from integrator.worker.workspace import MergeMethod


def default_holder() -> str:
    """A holder id that says where the worker runs: `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class WorkerOptions:
    """`integrator worker`'s options."""

    repo: str
    workspace: Path
    #: The named checks, in the order they run.
    checks: tuple[CheckSpec, ...] = ()
    #: The timeout of a check without its own (seconds).
    check_timeout: float = 3600.0
    #: Reruns of a failed check on the same commit; a later pass integrates, marked flaky.
    check_retries: int = 0
    merge_method: MergeMethod = MergeMethod.merge
    once: bool = False
    holder: str = field(default_factory=default_holder)
    #: Seconds between looks at an empty queue (without --once); each look is a long poll
    #: of up to `LONG_POLL_SECONDS` that returns as soon as a candidate is queued.
    poll_interval: float = 5.0
    #: Candidates tested at once as a speculative chain (1: one at a time).
    window: int = 1
    #: Checks running at once (default: the window).
    jobs: int | None = None
