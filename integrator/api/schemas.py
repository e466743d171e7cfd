"""Shapes at the edge that several routers share: bounded inputs and the common outputs.

Every number a caller sends fits a BIGINT and every text fits its column, so bad input
is a 422 naming the field and its rule, never a 500 from the database or the driver.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from annotated_types import Ge, Le
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    GetJsonSchemaHandler,
    StringConstraints,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from integrator import events, refnames
from integrator.messages import explain_unmet
from integrator.models import Candidate, Event, Followup

T = TypeVar("T")

#: A row id (an INTEGER column, so smaller than a BIGINT), in a path, a query or a body.
Id = Annotated[int, Ge(1), Le(events.MAX_INTEGER)]
#: The largest integer every JSON reader holds exactly (a double): a bound above it is
#: rounded by clients, so that a value at the bound may arrive beyond it.
JSON_MAX_INTEGER = 2**53 - 1
#: A lease epoch (a BIGINT column, counted far below this).
Epoch = Annotated[int, Ge(1), Le(JSON_MAX_INTEGER)]
#: `next_cursor` of the previous page (a position in the listing).
Cursor = Annotated[int, Ge(0), Le(JSON_MAX_INTEGER)]


@dataclass(frozen=True)
class Declared:
    """JSON Schema keywords published for a value whose rule a validator of ours decides:
    the pattern says to clients exactly what the validator accepts (a test compares them)."""

    keywords: tuple[tuple[str, Any], ...]

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(dict(self.keywords))
        return schema


def declared(**keywords: Any) -> Declared:
    return Declared(tuple(keywords.items()))


def _escaped(cp: int) -> str:
    return f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"


#: What a name or an identity may not hold: control characters (C0, DEL, C1), separators
#: other than the ASCII space and the invisible format characters of the BMP (bidi controls,
#: zero widths): whatever could break a log line or hide in one. The class is short and in
#: the BMP on purpose, so that every regex engine reads it alike and clients and fuzzers can
#: build values from it. (Lone surrogates, which no UTF-8 text holds, are refused apart.)
_NOT_IN_A_LINE = (
    r"\x00-\x1f\x7f-\xa0\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u1680"
    r"\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\ufeff\ufff9-\ufffb"
)
SPACES = "".join(_escaped(ord(c)) for c in map(chr, range(0x3001)) if c.isspace())
#: One line, not only spaces: every name `str.isprintable()` accepts, and code points that
#: are unassigned, for private use or format characters beyond the BMP.
PRINTABLE_LINE = f"^ *[^ {_NOT_IN_A_LINE}][^{_NOT_IN_A_LINE}]*$"
_LINE = re.compile(PRINTABLE_LINE.removesuffix("$") + r"\Z")


def one_line(value: str) -> str:
    """A name's rule at the edge: the declared pattern, read as JSON Schema reads it."""
    if not value.strip(" "):
        raise ValueError("must not be empty")
    if _LINE.match(value) is None or any("\ud800" <= c <= "\udfff" for c in value):
        raise PydanticCustomError("printable", "must be one line of printable characters")
    return value


#: Text that says something and holds no NUL (`events.prose`).
PROSE_PATTERN = f"^[^\\x00]*[^\\x00{SPACES}][^\\x00]*$"
#: A slug (`refnames.slug_problem`).
SLUG_PATTERN = f"^{refnames._SLUG_RE.pattern}$"
#: A branch name by git's rules (`refnames.branch_name_problem`).
BRANCH_PATTERN = (
    r"^(?!-)(?!HEAD$)(?![/.])(?!.*(?:\.\.|@\{|//|/\.|\.lock/))(?!.*(?:\.lock|/|\.)$)"
    r"[^\x00-\x1f\x7f ~^:?*\[\\]+$"
)
#: A commit id, either case (`events.Sha` lowers it).
SHA_PATTERN = "^[0-9a-fA-F]{40}(?:[0-9a-fA-F]{24})?$"


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
#: A slug: one URL path segment.
Slug = Annotated[events.Slug, declared(pattern=SLUG_PATTERN)]
#: A branch name (without refs/heads/).
Branch = Annotated[events.Branch, declared(pattern=BRANCH_PATTERN, minLength=1)]
#: A commit id.
Sha = Annotated[events.Sha, declared(pattern=SHA_PATTERN)]
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
