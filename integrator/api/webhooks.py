"""GET /v1/webhooks/deliveries: the webhook outbox as operators see it (never the secret)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import select

from integrator.api.deps import Reader, ReadSessionDep, SettingsDep
from integrator.api.schemas import Cursor, Page
from integrator.api.strict_body import StrictJSONRoute
from integrator.events import MAX_INTEGER
from integrator.lease import datetime_of_ms
from integrator.models import WebhookDelivery
from integrator.webhooks import PENDING, Status

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["webhooks"])


class DeliveryOut(BaseModel):
    id: int
    delivery_id: str
    repository: str
    kind: str
    #: pending (to be tried at `next_attempt_at`), delivered, or failed (gave up).
    status: str
    #: Tries begun so far.
    attempts: int
    #: Why the last failed try failed: the HTTP status or the connection error.
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None

    @classmethod
    def of(cls, row: WebhookDelivery) -> DeliveryOut:
        return cls(
            id=row.id,
            delivery_id=row.delivery_id,
            repository=row.repository,
            kind=row.kind,
            status=row.status,
            attempts=row.attempts,
            last_error=row.last_error,
            created_at=row.created_at,
            delivered_at=row.delivered_at,
            next_attempt_at=(
                datetime_of_ms(row.next_attempt_at_ms) if row.status == PENDING else None
            ),
        )


@router.get("/webhooks/deliveries")
def list_deliveries(
    session: ReadSessionDep,
    settings: SettingsDep,
    _caller: Reader,
    status: Status | None = None,
    cursor: Cursor | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[DeliveryOut]:
    """The outbox newest first, optionally one status; paged by cursor."""
    query = select(WebhookDelivery).where(WebhookDelivery.repository == settings.repository_name)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if cursor is not None and cursor <= MAX_INTEGER:  # beyond every id: no bound at all
        query = query.where(WebhookDelivery.id < cursor)
    rows = list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))
    next_cursor = str(rows[-1].id) if len(rows) == limit else None
    return Page[DeliveryOut](items=[DeliveryOut.of(r) for r in rows], next_cursor=next_cursor)
