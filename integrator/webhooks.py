"""The webhook outbox: what happened, written in the transaction that made it happen.

`enqueue` only inserts a row, so a receiver that fails or hangs never slows the queue;
deliveries are posted in the background, at least once, each with an id that stays the
same over retries.

Delivery, by a daemon thread of every service process (`WebhookSender`):

* **claim** — one conditional ``UPDATE … SET claimed_until_ms = N + timeout + margin,
  attempts = attempts + 1 WHERE id = :id AND status = 'pending' AND next_attempt_at_ms <= N
  AND (claimed_until_ms IS NULL OR claimed_until_ms <= N)``: whoever's statement matches
  the row posts it; another replica's finds nothing and looks at the next item. `attempts`
  counts posts begun, so it also counts a post whose replica died before recording it.
* **post** — outside any transaction, with the configured timeout; the body is signed.
* **record** — ``UPDATE … WHERE id = :id AND status = 'pending' AND attempts = :n``: only
  the claim that posted try n records it. 2xx → `delivered`; anything else → `pending`
  again after an exponential, jittered, capped wait, or `failed` after the last try.

N is the SQL clock (`integrator.db.now_ms`), the lease's, so every replica reads one time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

import httpx
from sqlalchemy import ColumnElement, Table, and_, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from integrator import __version__
from integrator.db import now_ms, read_session
from integrator.models import WebhookDelivery, utcnow
from integrator.settings import Settings

log = logging.getLogger(__name__)

DELIVERIES = cast(Table, WebhookDelivery.__table__)

#: What is posted: a candidate blocked, a follow-up resolved, a candidate integrated, and a
#: liveness condition raised or cleared.
KINDS = frozenset(
    {"blocked", "followup_resolved", "integrated", "condition_raised", "condition_cleared"}
)
Status = Literal["pending", "delivered", "failed"]
PENDING: Status = "pending"
DELIVERED: Status = "delivered"
FAILED: Status = "failed"

SIGNATURE_HEADER = "X-Integrator-Signature-256"
EVENT_HEADER = "X-Integrator-Event"
DELIVERY_HEADER = "X-Integrator-Delivery"
USER_AGENT = f"integrator-webhook/{__version__}"
#: A claim outlives the post's timeout by this much before another replica may retry it.
CLAIM_MARGIN_SECONDS = 30.0
#: Due items read per look; each is still claimed on its own.
DUE_BATCH = 10
ERROR_MAX_LENGTH = 300


def enqueue(session: Session, settings: Settings, kind: str, data: dict[str, Any]) -> None:
    """Add one delivery to the outbox when a webhook is configured (none: nothing stored)."""
    if kind not in KINDS:
        raise ValueError(f"unknown webhook kind {kind!r}")
    if not settings.webhook_url:
        return
    session.execute(
        insert(WebhookDelivery).values(
            delivery_id=str(uuid.uuid4()),
            repository=settings.repository_name,
            kind=kind,
            payload=data,
            status="pending",
            attempts=0,
            next_attempt_at_ms=now_ms(session, settings),
        )
    )


# ---- pure rules ---------------------------------------------------------------------------


def signature(secret: str, body: bytes) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of the exact body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as the API writes times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Claimed:
    """One delivery this replica has claimed for try number `attempt`."""

    id: int
    delivery_id: str
    repository: str
    kind: str
    payload: dict[str, Any]
    created_at: datetime
    attempt: int

    def body(self) -> bytes:
        """The exact bytes posted (and signed)."""
        document = {
            "id": self.delivery_id,
            "event": self.kind,
            "repository": self.repository,
            "created_at": iso_utc(self.created_at),
            "attempt": self.attempt,
            "data": self.payload,
        }
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()

    def headers(self, body: bytes, secret: str | None) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_HEADER: self.kind,
            DELIVERY_HEADER: self.delivery_id,
        }
        if secret:
            headers[SIGNATURE_HEADER] = signature(secret, body)
        return headers


def retry_delay_seconds(failures: int, base: float, cap: float, rand: float | None = None) -> float:
    """The wait after the `failures`-th failed try: base·2^(failures-1), ±25 % jitter, capped."""
    jitter = 0.75 + 0.5 * (random.random() if rand is None else rand)
    exponent = min(failures - 1, 62)  # 2^62 s is past any cap: no float overflow
    return float(min(cap, base * 2.0**exponent * jitter))


def describe_failure(
    status_code: int | None, error: BaseException | None, *secrets: str | None
) -> str:
    """What `last_error` says: the HTTP status, or the error's class and text — never a secret
    (nor the URL, which may carry credentials)."""
    if status_code is not None:
        text = f"HTTP {status_code}"
    else:
        text = f"{type(error).__name__}: {error}".strip().rstrip(":")
    for secret in secrets:
        if secret:
            text = text.replace(secret, "…")
    return text[:ERROR_MAX_LENGTH]


# ---- the outbox ---------------------------------------------------------------------------


def _due(session: Session, settings: Settings) -> ColumnElement[bool]:
    now = now_ms(session, settings)
    return and_(
        DELIVERIES.c.repository == settings.repository_name,
        DELIVERIES.c.status == PENDING,
        DELIVERIES.c.next_attempt_at_ms <= now,
        or_(DELIVERIES.c.claimed_until_ms.is_(None), DELIVERIES.c.claimed_until_ms <= now),
    )


def due_ids(sessions: sessionmaker[Session], settings: Settings) -> list[int]:
    """The oldest due deliveries, read without taking a write lock."""
    with read_session(sessions) as session:
        query = (
            select(DELIVERIES.c.id)
            .where(_due(session, settings))
            .order_by(DELIVERIES.c.next_attempt_at_ms, DELIVERIES.c.id)
            .limit(DUE_BATCH)
        )
        return list(session.scalars(query))


def claim(session: Session, settings: Settings, delivery: int) -> Claimed | None:
    """Claim one due delivery with one conditional UPDATE; None when another replica has it
    (or it is no longer due)."""
    hold_ms = round((settings.webhook_timeout_seconds + CLAIM_MARGIN_SECONDS) * 1000)
    with session.begin():
        row = session.execute(
            update(DELIVERIES)
            .where(DELIVERIES.c.id == delivery, _due(session, settings))
            .values(
                claimed_until_ms=now_ms(session, settings) + hold_ms,
                attempts=DELIVERIES.c.attempts + 1,
            )
            .returning(
                DELIVERIES.c.id,
                DELIVERIES.c.delivery_id,
                DELIVERIES.c.repository,
                DELIVERIES.c.kind,
                DELIVERIES.c.payload,
                DELIVERIES.c.created_at,
                DELIVERIES.c.attempts,
            )
        ).one_or_none()
    if row is None:
        return None
    return Claimed(
        id=row.id,
        delivery_id=row.delivery_id,
        repository=row.repository,
        kind=row.kind,
        payload=row.payload,
        created_at=row.created_at,
        attempt=row.attempts,
    )


def record_delivered(session: Session, claimed: Claimed) -> bool:
    """Mark the claimed try delivered; False when a later claim took the item over."""
    with session.begin():
        result = session.execute(
            update(DELIVERIES)
            .where(*_ours(claimed))
            .values(status=DELIVERED, delivered_at=utcnow(), claimed_until_ms=None)
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def record_failed(session: Session, settings: Settings, claimed: Claimed, error: str) -> Status:
    """Record a failed try: pending again after the backoff, or failed after the last try."""
    final = claimed.attempt >= settings.webhook_max_attempts
    delay = retry_delay_seconds(
        claimed.attempt, settings.webhook_retry_base_seconds, settings.webhook_retry_max_seconds
    )
    status = FAILED if final else PENDING
    with session.begin():
        session.execute(
            update(DELIVERIES)
            .where(*_ours(claimed))
            .values(
                status=status,
                last_error=error,
                claimed_until_ms=None,
                next_attempt_at_ms=now_ms(session, settings) + round(delay * 1000),
            )
        )
    return status


def _ours(claimed: Claimed) -> tuple[ColumnElement[bool], ...]:
    return (
        DELIVERIES.c.id == claimed.id,
        DELIVERIES.c.status == PENDING,
        DELIVERIES.c.attempts == claimed.attempt,
    )


# ---- the sender ---------------------------------------------------------------------------


class WebhookSender:
    """Posts due deliveries from a daemon thread, one at a time: a hanging receiver holds
    only this thread, never a request or the queue."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        assert settings.webhook_url
        self.sessions = sessions
        self.settings = settings
        self.url = settings.webhook_url
        self._stop = threading.Event()
        self._client = httpx.Client(
            timeout=settings.webhook_timeout_seconds, follow_redirects=False
        )
        self._thread = threading.Thread(target=self._run, name="webhook-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop soon; a post in flight is not waited for (its claim expires and it is retried)."""
        self._stop.set()
        self._thread.join(timeout=2)
        if not self._thread.is_alive():
            self._client.close()

    def run_once(self) -> int:
        """Post every delivery that is due now; how many tries were made."""
        tries = 0
        while not self._stop.is_set():
            before = tries
            for delivery in due_ids(self.sessions, self.settings):
                if self._stop.is_set():
                    break
                with self.sessions() as session:
                    claimed = claim(session, self.settings, delivery)
                if claimed is not None:  # else another replica has it
                    self._deliver(claimed)
                    tries += 1
            if tries == before:
                break  # nothing due that is not claimed already
        return tries

    def _deliver(self, claimed: Claimed) -> None:
        body = claimed.body()
        status_code: int | None = None
        error: BaseException | None = None
        headers = claimed.headers(body, self.settings.webhook_secret)
        try:
            request = self._client.build_request("POST", self.url, content=body, headers=headers)
            response = self._client.send(request, stream=True)  # the answer's body is not read
            status_code = response.status_code
            response.close()
        except Exception as exc:  # whatever stopped the post, it is a failed try
            error = exc
        with self.sessions() as session:
            if status_code is not None and 200 <= status_code < 300:
                recorded = record_delivered(session, claimed)
                log.info(
                    "webhook delivery %s (%s) delivered at try %d%s",
                    claimed.delivery_id,
                    claimed.kind,
                    claimed.attempt,
                    "" if recorded else " (a later try had claimed it: it may arrive twice)",
                )
                return
            text = describe_failure(status_code, error, self.settings.webhook_secret, self.url)
            status = record_failed(session, self.settings, claimed, text)
        log.warning(
            "webhook delivery %s (%s) try %d failed: %s; %s",
            claimed.delivery_id,
            claimed.kind,
            claimed.attempt,
            text,
            "given up" if status == FAILED else "will retry",
        )

    def _run(self) -> None:
        while not self._stop.wait(self.settings.webhook_poll_seconds):
            try:
                self.run_once()
            except Exception:  # keep sending: a failed round is retried at the next one
                log.exception("posting webhook deliveries failed")


def start_sending(sessions: sessionmaker[Session], settings: Settings) -> WebhookSender | None:
    """A sender when a webhook is configured."""
    if not settings.webhook_url:
        return None
    sender = WebhookSender(sessions, settings)
    sender.start()
    return sender
