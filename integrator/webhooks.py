"""The webhook outbox: what happened, written in the transaction that made it happen.

`enqueue` only inserts a row, so a receiver that fails or hangs never slows the queue;
deliveries are posted in the background, at least once, each with an id that stays the
same over retries.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from integrator.db import now_ms
from integrator.models import WebhookDelivery
from integrator.settings import Settings

#: What is posted: a candidate blocked, a follow-up resolved, a candidate integrated.
KINDS = frozenset({"blocked", "followup_resolved", "integrated"})


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
