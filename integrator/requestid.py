"""The id that ties log lines of one request (or one worker step) together.

Kept in a context variable: the service sets it for each request (`X-Request-Id`), the
worker for each step, and the log filter (`integrator.logs`) writes it on every line.
Standard library only: the service and the worker both use it.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

HEADER = "X-Request-Id"
#: What a caller's id may look like to be kept: short, one printable token, nothing to escape.
SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_current: ContextVar[str | None] = ContextVar("integrator_request_id", default=None)


def new() -> str:
    return uuid.uuid4().hex


def accepted(offered: str | None) -> str:
    """The caller's id when it is sane, else a new one (a log line must not be forgeable)."""
    if offered is not None and SANE.fullmatch(offered):
        return offered
    return new()


def current() -> str | None:
    return _current.get()


def begin(request_id: str | None = None) -> str:
    """Make `request_id` (a new one by default) current in this context, until the next
    `begin` here; a request's task or a worker thread has a context of its own."""
    chosen = request_id or new()
    _current.set(chosen)
    return chosen
