"""The worker's side of the service's fenced endpoints, and how it words their answers.

A transport error or a 502/503/504 (the service restarting, a proxy in front of it) is
retried a few times and then reported as "service unavailable". Any other 5xx is the
service failing on this request: it is not retried — an outcome the service failed to
record has been set aside by it — and is reported as such. A 409 `lease_lost` raises
`LeaseLost`; other refusals become one readable line with the documented exit code.

Every call carries an `X-Request-Id`: the worker's current step's, so that the service's log
lines of a candidate's turn can be matched with the worker's. Each `queue/next` begins a new
step in the calling thread (the worker's loop); the calls that follow for the candidate it
hands out (registration, outcome) and the worker's own log lines carry the same id.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NoReturn

import httpx

from integrator import requestid

log = logging.getLogger(__name__)

EXIT_OK, EXIT_REFUSED, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3
#: The call that begins a worker step.
NEXT_PATH = "/v1/queue/next"
#: Attempts for one request on a transport error or an unavailable service.
ATTEMPTS = 5
UNAVAILABLE = frozenset({502, 503, 504})


class WorkerExit(Exception):
    """The worker stops with this exit code and one-line message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ServiceUnavailable(WorkerExit):
    """The service did not answer after every retry: a worker that runs on rides it out."""

    def __init__(self, message: str) -> None:
        super().__init__(EXIT_UNAVAILABLE, message)


class LeaseLost(Exception):
    """The grant is gone (service said lease_lost) or no longer trusted (self-fence)."""


class ServiceClient:
    """Calls the service with the worker's token; see the module docstring for retries."""

    def __init__(self, url: str, token: str, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            event_hooks={"request": [stamp_request_id]},
        )

    def close(self) -> None:
        self.http.close()

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        if path == NEXT_PATH:
            requestid.begin()
        return self._request("POST", path, body)

    def get(self, path: str) -> httpx.Response:
        return self._request("GET", path, None)

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        pause = 0.2
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = self.http.request(method, path, json=body)
            except httpx.TransportError as exc:
                failure = type(exc).__name__
            else:
                status = response.status_code
                if status >= 500 and status not in UNAVAILABLE:
                    raise WorkerExit(
                        EXIT_UNAVAILABLE,
                        f"the service failed on {path}: HTTP {status} {message_of(response)}",
                    )
                if status < 500:
                    if status == 409 and code_of(response) == "lease_lost":
                        raise LeaseLost(f"the service refused {path}: lease_lost")
                    if attempt > 1 and status == 409 and "outcome" in path:
                        # An earlier try may have landed before its answer was lost: the
                        # candidate is no longer in_progress, which is what we wanted.
                        log.warning("outcome already recorded by an earlier attempt: %s", path)
                        return httpx.Response(200)
                    return response
                failure = f"HTTP {status}"
            log.warning("%s failed (%s), attempt %d of %d", path, failure, attempt, ATTEMPTS)
            time.sleep(pause)
            pause = min(pause * 2, 3.0)
        raise ServiceUnavailable(f"service unavailable at {self.url} ({path}): {failure}")


def stamp_request_id(request: httpx.Request) -> None:
    """The current step's id on an outgoing call; a call outside any step (a lease renewal
    from its own thread) gets an id of its own."""
    request.headers[requestid.HEADER] = requestid.current() or requestid.new()


def refused(response: httpx.Response, what: str) -> NoReturn:
    """A refusal as one line: 400/422 are bad input (exit 2), the rest refused (exit 1)."""
    status = response.status_code
    code = EXIT_BAD_INPUT if status in (400, 422) else EXIT_REFUSED
    raise WorkerExit(code, f"{what} refused: HTTP {status} {message_of(response)}")


def code_of(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


def message_of(response: httpx.Response) -> str:
    """The error body's message and code, or the start of a body that is not ours."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and "message" in body:
        return f"{body.get('message', '')} ({body.get('code', '')})"
    return str(body)[:200]
