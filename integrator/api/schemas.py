"""Shapes at the edge that several routers share: bounded inputs and the common outputs.

Every number a caller sends fits a BIGINT and every text fits its column, so bad input
is a 422 naming the field and its rule, never a 500 from the database or the driver.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from annotated_types import Ge, Le
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

from integrator import events
from integrator.messages import explain_unmet
from integrator.models import Candidate, Event, Followup
from integrator.text_rules import BRANCH_PATTERN as BRANCH_PATTERN
from integrator.text_rules import PRINTABLE_LINE as PRINTABLE_LINE
from integrator.text_rules import PROSE_PATTERN as PROSE_PATTERN
from integrator.text_rules import SHA_PATTERN as SHA_PATTERN
from integrator.text_rules import SLUG_PATTERN as SLUG_PATTERN
from integrator.text_rules import SPACES as SPACES
from integrator.text_rules import Declared as Declared
from integrator.text_rules import declared as declared
from integrator.text_rules import one_line as one_line

T = TypeVar("T")

#: A row id (an INTEGER column, so smaller than a BIGINT), in a path, a query or a body.
Id = Annotated[int, Ge(1), Le(events.MAX_INTEGER)]
#: The largest integer every JSON reader holds exactly (`event_schemas.JSON_MAX_INTEGER`).
JSON_MAX_INTEGER = events.JSON_MAX_INTEGER
#: A lease epoch (a BIGINT column, counted far below this).
Epoch = Annotated[int, Ge(1), Le(JSON_MAX_INTEGER)]
#: `next_cursor` of the previous page (a position in the listing).
Cursor = Annotated[int, Ge(0), Le(JSON_MAX_INTEGER)]


#: The rule of a name: put both beside the name's length.
ONE_LINE = AfterValidator(one_line)
PRINTABLE = declared(pattern=PRINTABLE_LINE)
#: An identity or a name: one printable line that fits its column.
Name = Annotated[
    str, StringConstraints(min_length=1, max_length=events.NAME_MAX_LENGTH), ONE_LINE, PRINTABLE
]
#: A free-text reason, recorded and logged (escaped).
Reason = Annotated[
    str,
    StringConstraints(min_length=1, max_length=events.PROSE_MAX_LENGTH),
    AfterValidator(events.prose),
    declared(pattern=PROSE_PATTERN),
]
#: A slug: one URL path segment. (The events' types publish their patterns themselves.)
Slug = events.Slug
#: A branch name (without refs/heads/).
Branch = events.Branch
#: A commit id.
Sha = events.Sha
#: RFC 3339, the OpenAPI `date-time`: date, time to the second, and an offset.
_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def _date_time_text(value: object) -> object:
    """Only a timestamp: pydantic alone would also read `0.5` as seconds since 1970."""
    if isinstance(value, datetime) or (isinstance(value, str) and _DATE_TIME.fullmatch(value)):
        return value
    raise PydanticCustomError(
        "date_time", "must be an ISO 8601 timestamp with an offset, such as 2026-01-31T12:00:00Z"
    )


#: A time with an offset, as the UTC instant it names.
UtcTime = Annotated[AwareDatetime, BeforeValidator(_date_time_text), AfterValidator(events.as_utc)]


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
    lane: str
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
            lane=row.lane,
            unmet=unmet,
            why=explain_unmet(unmet) if row.status == "waiting" else [],
            main_sha_checked=row.main_sha_checked,
            superseded_by=row.superseded_by,
            reason=row.reason,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class FollowupOut(BaseModel):
    """A blocked episode of a slug: the candidate it follows, the last block's evidence and
    next action, and how it ended."""

    id: int
    repository: str
    slug: str
    candidate_id: int
    status: str
    blocks: int
    attempt: str | None
    conflict_evidence: list[dict[str, Any]]
    diagnostics: list[str]
    next_action: str
    blocked_at: datetime
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    resolution: str | None
    resolved_by: str | None
    reason: str | None

    @classmethod
    def of(cls, row: Followup) -> FollowupOut:
        return cls.model_validate(row, from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None

    @classmethod
    def by_offset(cls, items: list[T], offset: int, limit: int) -> Page[T]:
        """A page of a listing read at `offset`: a full page points at the next one."""
        return cls(items=items, next_cursor=str(offset + limit) if len(items) == limit else None)
