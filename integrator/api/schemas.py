"""Shapes at the edge that several routers share (DESIGN §9)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from integrator.messages import explain_unmet
from integrator.models import Candidate, Event

T = TypeVar("T")


class EventOut(BaseModel):
    seq: int
    type: str
    repository: str
    fields: dict[str, Any]
    actor: str | None
    recorded_at: datetime

    @classmethod
    def of(cls, row: Event) -> EventOut:
        return cls(
            seq=row.seq,
            type=row.type,
            repository=row.repository,
            fields=row.fields,
            actor=row.actor,
            recorded_at=row.recorded_at,
        )


class CandidateOut(BaseModel):
    id: int
    repository: str
    slug: str
    branch: str
    sha: str
    status: str
    position: int | None
    unmet: list[str]
    why: list[str]
    main_sha_checked: str | None
    superseded_by: int | None
    reason: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Candidate) -> CandidateOut:
        unmet = list(row.unmet or [])
        return cls(
            id=row.id,
            repository=row.repository,
            slug=row.slug,
            branch=row.branch,
            sha=row.sha,
            status=row.status,
            position=row.position,
            unmet=unmet,
            why=explain_unmet(unmet) if row.status == "waiting" else [],
            main_sha_checked=row.main_sha_checked,
            superseded_by=row.superseded_by,
            reason=row.reason,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None
