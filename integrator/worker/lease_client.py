"""Holding the lease from the worker's side of the HTTP API.

`LeaseKeeper` acquires with retry and jitter while the lease is busy, renews
in a background thread every renew interval, and fences *itself*: it records
the monotonic time at which each successful renewal was **sent** (not
answered: the service extended the grant from some moment after the send, so
counting from the send is the conservative side), and `fenced_ok()` turns
False once more than the renew deadline has passed since then. The worker asks
`fenced_ok()` right before every irreversible step; the service's own fence
(`integrator.lease.fence`) is what stops a holder that was paused after
asking.

The token is kept out of `repr()` and logs; `grant_body()` hands it to the
worker's fenced requests.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from integrator.settings import Settings
from integrator.worker.service_client import message_of, stamp_request_id

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms_of(iso: str) -> int:
    """Integer ms of an ISO 8601 time from the service (exact, no float rounding)."""
    moment = datetime.fromisoformat(iso)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


class LeaseClientError(RuntimeError):
    """The service refused for a reason retrying cannot fix (token, role, request)."""


def _refused(what: str, answer: httpx.Response) -> LeaseClientError:
    """One readable line: what was refused, and the service's own reason (its message)."""
    return LeaseClientError(
        f"the service refused to {what} (HTTP {answer.status_code}): {message_of(answer)}"
    )


@dataclass(frozen=True)
class LeaseChange:
    """What happened to this keeper's grant, with SQL times from the service (ms)."""

    #: "acquired", "renewed", "lost" or "released".
    kind: str
    epoch: int
    #: acquired: grant time; released: release time; renewed/lost: None.
    at_ms: int | None
    #: The grant's expiry as last confirmed by the service.
    expires_at_ms: int


@dataclass
class _Grant:
    epoch: int
    token: str = field(repr=False)
    expires_at_ms: int
    last_sent: float
    #: Set when this grant ends; stops its own renewal thread (never a later grant's).
    stop: threading.Event = field(default_factory=threading.Event, repr=False)


class LeaseKeeper:
    """Acquire, keep and give back the lease; know when to stop trusting it."""

    def __init__(
        self,
        http: httpx.Client,
        holder: str,
        *,
        renew_interval: float,
        renew_deadline: float,
        retry_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[LeaseChange], None] | None = None,
        rng: random.Random | None = None,
        background: bool = True,
    ) -> None:
        if renew_deadline <= renew_interval:
            raise ValueError("the renew deadline must exceed the renew interval")
        self.holder = holder
        self.renew_interval = renew_interval
        self.renew_deadline = renew_deadline
        self.retry_interval = retry_interval if retry_interval is not None else renew_interval
        self._http = http
        self._clock = clock
        self._on_change = on_change
        self._rng = rng or random.Random()
        #: False: the caller renews with `renew_once()` itself (no thread).
        self._background = background
        self._lock = threading.Lock()
        self._grant: _Grant | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings, holder: str, **options: Any) -> LeaseKeeper:
        """A keeper talking to `settings.url` with `settings.token` and the lease timings."""
        headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
        timeout = options.pop("timeout", settings.lease_renew_deadline_seconds)
        http = httpx.Client(
            base_url=settings.url.rstrip("/"),
            headers=headers,
            timeout=timeout,
            event_hooks={"request": [stamp_request_id]},
        )
        return cls(
            http,
            holder,
            renew_interval=settings.lease_renew_interval_seconds,
            renew_deadline=settings.lease_renew_deadline_seconds,
            **options,
        )

    def __repr__(self) -> str:
        return f"LeaseKeeper(holder={self.holder!r}, epoch={self.epoch}, ok={self.fenced_ok()})"

    @property
    def epoch(self) -> int | None:
        with self._lock:
            return self._grant.epoch if self._grant else None

    @property
    def expires_at_ms(self) -> int | None:
        with self._lock:
            return self._grant.expires_at_ms if self._grant else None

    def fenced_ok(self) -> bool:
        """True while a grant is held and its last successful renewal was sent less than
        the renew deadline ago (monotonic clock)."""
        with self._lock:
            grant = self._grant
            return grant is not None and self._clock() - grant.last_sent < self.renew_deadline

    def grant_body(self) -> dict[str, Any]:
        """`{"epoch", "token"}` for a fenced request; raises when nothing is held."""
        with self._lock:
            if self._grant is None:
                raise LeaseClientError("no lease is held")
            return {"epoch": self._grant.epoch, "token": self._grant.token}

    def acquire(self, *, timeout: float | None = None, stop: threading.Event | None = None) -> bool:
        """Try until granted (True), `timeout` seconds pass or `stop` is set (False).

        A busy lease, a transport error or a 5xx waits a jittered retry interval
        (half to one interval) so that many contenders do not ask in lock step.
        """
        if self._grant is not None:
            raise LeaseClientError("this keeper already holds a grant")
        give_up = None if timeout is None else self._clock() + timeout
        halt = stop or threading.Event()
        while not halt.is_set():
            sent = self._clock()
            answer = self._post("/v1/lease/acquire", {"holder": self.holder})
            if answer is not None and answer.status_code == 200:
                body = answer.json()
                expires = ms_of(body["expires_at"])
                grant = _Grant(body["epoch"], body["token"], expires, sent)
                with self._lock:
                    self._grant = grant
                self._emit("acquired", grant.epoch, ms_of(body["acquired_at"]), expires)
                if self._background:
                    self._start_renewing(grant)
                return True
            if answer is not None and answer.status_code != 409 and answer.status_code < 500:
                raise _refused("grant the lease", answer)
            pause = self.retry_interval * (0.5 + self._rng.random() / 2)
            if give_up is not None and self._clock() + pause > give_up:
                return False
            halt.wait(pause)
        return False

    def renew_once(self) -> bool:
        """One renewal; True if the service extended the grant. A refusal (409) means the
        grant is gone for good: the keeper drops it and reports "lost"."""
        with self._lock:
            grant = self._grant
        if grant is None:
            return False
        sent = self._clock()
        answer = self._post("/v1/lease/renew", {"epoch": grant.epoch, "token": grant.token})
        if answer is None or answer.status_code >= 500:
            return False
        if answer.status_code == 200:
            expires = ms_of(answer.json()["expires_at"])
            with self._lock:
                if self._grant is grant:
                    grant.last_sent = sent
                    grant.expires_at_ms = expires
            self._emit("renewed", grant.epoch, None, expires)
            return True
        if answer.status_code == 409:
            self._drop(grant, "lost", None)
            return False
        raise _refused("renew the lease", answer)

    def release(self) -> bool:
        """Stop renewing and give the grant back; False if it was already lost."""
        with self._lock:
            grant = self._grant
        self._stop_renewing()
        if grant is None:
            return False
        answer = self._post("/v1/lease/release", {"epoch": grant.epoch, "token": grant.token})
        if answer is not None and answer.status_code == 200:
            self._drop(grant, "released", ms_of(answer.json()["released_at"]))
            return True
        self._drop(grant, "lost", None)
        return False

    def close(self) -> None:
        """Stop the renewal thread and the HTTP client (without releasing)."""
        self._stop_renewing()
        self._http.close()

    def wait_lost(self, timeout: float) -> bool:
        """Block until the grant is gone (lost or released) or `timeout`; True if gone."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.epoch is None:
                return True
            time.sleep(min(0.05, self.renew_interval / 4))
        return self.epoch is None

    # -- internals ----------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response | None:
        try:
            return self._http.post(path, json=body)
        except httpx.TransportError as exc:
            log.warning("lease %s: %s", path.rsplit("/", 1)[-1], type(exc).__name__)
            return None

    def _drop(self, grant: _Grant, kind: str, at_ms: int | None) -> None:
        with self._lock:
            if self._grant is not grant:
                return
            self._grant = None
        grant.stop.set()
        self._emit(kind, grant.epoch, at_ms, grant.expires_at_ms)

    def _emit(self, kind: str, epoch: int, at_ms: int | None, expires_at_ms: int) -> None:
        log.info("lease %s: epoch %d (%s)", kind, epoch, self.holder)
        if self._on_change is not None:
            self._on_change(LeaseChange(kind, epoch, at_ms, expires_at_ms))

    def _start_renewing(self, grant: _Grant) -> None:
        self._thread = threading.Thread(
            target=self._renew_loop, args=(grant,), name=f"lease-renew-{self.holder}"
        )
        self._thread.daemon = True
        self._thread.start()

    def _stop_renewing(self) -> None:
        with self._lock:
            if self._grant is not None:
                self._grant.stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _renew_loop(self, grant: _Grant) -> None:
        pause = self.renew_interval
        while not grant.stop.wait(pause):
            with self._lock:
                if self._grant is not grant:
                    return
            try:
                ok = self.renew_once()
            except LeaseClientError:
                log.exception("lease renewal refused")
                return
            # After a failed send, try again sooner: the deadline is running.
            pause = self.renew_interval if ok else self.renew_interval / 4
