"""Event schemas: each canonical type's fields, validation and natural key.

Kept apart from the database so that the CLI can convert `--field` values without loading
SQLAlchemy; `integrator.events` re-exports what the service uses.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from integrator.check_reports import OUTPUT_MAX_LENGTH, CheckReports
from integrator.errors import Detail, InvalidInput
from integrator.gitops import SHA_RE
from integrator.refnames import (
    BRANCH_MAX_LENGTH,
    SLUG_MAX_LENGTH,
    branch_name_problem,
    slug_problem,
)
from integrator.text_rules import (
    BRANCH_PATTERN,
    PRINTABLE_LINE,
    PROSE_PATTERN,
    SHA_PATTERN,
    SLUG_PATTERN,
    STORABLE_PATTERN,
    WHOLE_NUMBER,
    declared,
    one_line,
    storable,
    unstorable,
)

#: What the database holds, so that input beyond it is refused with the field's name (422)
#: instead of by the database (500). Lengths are the columns' (models.py; a test compares).
NAME_MAX_LENGTH = 200  # repository, actor, holder, token name and every identity string
PROSE_MAX_LENGTH = 2000  # a reason, a diagnostic, a next action
NATURAL_KEY_MAX_LENGTH = 600
MAX_INTEGER = 2**31 - 1
MAX_BIGINT = 2**63 - 1
#: The largest integer every JSON reader holds exactly (a double): a bound above it is
#: published rounded (2**63 - 1 reads as 2**63), so that a value at the bound may arrive
#: beyond it. A count a caller sends stays below it.
JSON_MAX_INTEGER = 2**53 - 1
MIN_BIGINT = -(2**63)


def as_utc(moment: datetime) -> datetime:
    """The same instant in UTC; one near year 1 or 9999 may not have a UTC twin."""
    if moment.tzinfo is None:
        raise ValueError("must carry a UTC offset (e.g. 2026-01-31T12:00:00+00:00 or ...Z)")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


def _timestamp(value: str) -> str:
    """ISO 8601 with an explicit offset, normalised to UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 timestamp") from None
    return as_utc(parsed).isoformat()


def name_problem(value: str) -> str | None:
    """Why `value` is not a valid name (a token's, a holder's), or None when it is."""
    if len(value) > NAME_MAX_LENGTH:
        return f"must be at most {NAME_MAX_LENGTH} characters"
    if not value.isprintable():
        return "must be one line of printable characters"
    return None if value.strip() else "must not be empty"


def printable(value: str) -> str:
    """One line of text: an identity or a name (printable excludes NUL and surrogates)."""
    if not value.isprintable():
        raise PydanticCustomError("printable", "must be one line of printable characters")
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def prose(value: str) -> str:
    """Free text that says something: a reason, a diagnostic."""
    if not storable(value).strip():
        raise ValueError("must not be empty")
    return value


def _slug(value: str) -> str:
    problem = slug_problem(value)
    if problem:
        raise PydanticCustomError("slug", "{problem}", {"problem": problem})
    return value


def _sha(value: str) -> str:
    lowered = value.lower()
    if SHA_RE.fullmatch(lowered) is None:
        raise ValueError("must be 40 or 64 hexadecimal characters")
    return lowered


def _branch(value: str) -> str:
    problem = branch_name_problem(value) or (
        "contains a character that is not UTF-8" if unstorable(value) else None
    )
    if problem:
        raise ValueError(f"is not a valid branch name: {problem}")
    return value


#: Each carries the JSON Schema of its rule (the pattern its validator decides), so that the
#: schema published for an event's fields is the model's own.
Text = Annotated[
    StrictStr,
    StringConstraints(max_length=NAME_MAX_LENGTH),
    AfterValidator(one_line),
    declared(pattern=PRINTABLE_LINE),
]
Prose = Annotated[
    StrictStr,
    StringConstraints(max_length=PROSE_MAX_LENGTH),
    AfterValidator(prose),
    declared(pattern=PROSE_PATTERN),
]
Slug = Annotated[
    StrictStr,
    StringConstraints(max_length=SLUG_MAX_LENGTH),
    AfterValidator(_slug),
    declared(pattern=SLUG_PATTERN),
]
Timestamp = Annotated[
    StrictStr,
    StringConstraints(max_length=64),
    AfterValidator(_timestamp),
    declared(format="date-time"),
]
Sha = Annotated[StrictStr, AfterValidator(_sha), declared(pattern=SHA_PATTERN)]
Branch = Annotated[
    StrictStr,
    StringConstraints(max_length=BRANCH_MAX_LENGTH),
    AfterValidator(_branch),
    declared(pattern=BRANCH_PATTERN, minLength=1),
]
#: An integer a caller sends: within what every JSON reader holds exactly (and so within a
#: BIGINT), a whole number as JSON Schema reads one.
BigInt = Annotated[StrictInt, Field(ge=-JSON_MAX_INTEGER, le=JSON_MAX_INTEGER), WHOLE_NUMBER]


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReviewApproved(_Fields):
    slug: Slug
    approved_at: Timestamp
    review_round: Annotated[StrictInt, Field(ge=1, le=JSON_MAX_INTEGER), WHOLE_NUMBER]
    reviewer_session_id: Text


class FinalizeReady(_Fields):
    slug: Slug
    branch: Branch
    sha: Sha
    worker_session_id: Text
    orchestrator_session_id: Text
    ready_at: Timestamp


class BranchPushed(_Fields):
    branch: Branch
    sha: Sha
    remote: Text
    pushed_at: Timestamp
    pusher: Text


class Evidence(_Fields):
    kind: Literal["conflict", "check", "push"]
    path: Prose | None = None
    #: What kind of conflict, in git's words (content, binary, modify/delete, rename/delete…).
    conflict: Prose | None = None
    command: Prose | None = None
    exit_code: BigInt | None = None
    output_tail: (
        Annotated[
            StrictStr,
            StringConstraints(max_length=OUTPUT_MAX_LENGTH),
            AfterValidator(storable),
            declared(pattern=STORABLE_PATTERN),
        ]
        | None
    ) = None
    refusal: Prose | None = None


class IntegrationBlocked(_Fields):
    slug: Slug
    branch: Branch
    sha: Sha
    conflict_evidence: Annotated[list[Evidence], Field(min_length=1)]
    diagnostics: Annotated[list[Prose], Field(min_length=1)]
    next_action: Prose
    blocked_at: Timestamp
    attempt: Text
    #: Every configured check, as the holder reported them (none without checks).
    checks: CheckReports | None = None


class IntegrationCompleted(_Fields):
    slug: Slug
    branch: Branch
    sha: Sha
    main_sha: Sha
    completed_at: Timestamp
    #: The checks that passed on the landed commit, as the holder reported them.
    checks: CheckReports | None = None


#: A speculative build's attempt: the uuid in its commit's `Integrator-Attempt` trailer.
ATTEMPT_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
#: The longest chain of speculative builds (the largest window a holder may declare).
MAX_SPECULATION_DEPTH = 32
Attempt = Annotated[StrictStr, StringConstraints(pattern=ATTEMPT_PATTERN)]
CandidateId = Annotated[StrictInt, Field(ge=1, le=MAX_INTEGER)]


class SpeculationStarted(_Fields):
    """The lease holder checks a speculative merge commit of one of its handouts."""

    candidate_id: CandidateId
    epoch: Annotated[BigInt, Field(ge=1)]
    attempt: Attempt
    #: What it was merged onto: main, or the speculative commit below it.
    base: Sha
    sha: Sha
    #: 1: merged on main itself; k: k - 1 speculative commits below it.
    depth: Annotated[StrictInt, Field(ge=1, le=MAX_SPECULATION_DEPTH)]
    #: The candidates whose speculative commits lie between main and this one, bottom first.
    below: Annotated[list[CandidateId], Field(max_length=MAX_SPECULATION_DEPTH - 1)]


class SpeculationDiscarded(_Fields):
    """A speculative build thrown away: what it rested on failed, main moved, or the lease
    ended. The candidate stays in progress with the holder, who builds it again."""

    candidate_id: CandidateId
    epoch: Annotated[BigInt, Field(ge=1)]
    attempt: Attempt
    base: Sha
    sha: Sha
    reason: Prose
    #: The candidate whose failure forced the discard, if one did.
    cause_candidate_id: CandidateId | None


@dataclass(frozen=True)
class EventType:
    """A canonical type: its schema, the fields of its natural key, who may post it."""

    name: str
    schema: type[_Fields]
    key_fields: tuple[str, ...]
    public: bool


EVENT_TYPES: dict[str, EventType] = {
    t.name: t
    for t in (
        EventType(
            "review_approved",
            ReviewApproved,
            ("slug", "review_round", "reviewer_session_id"),
            public=True,
        ),
        EventType("finalize_ready", FinalizeReady, ("slug", "branch", "sha"), public=True),
        # No natural key of its own: the caller's idempotency key, else its content.
        EventType("branch_pushed", BranchPushed, (), public=True),
        EventType(
            "integration_blocked",
            IntegrationBlocked,
            ("slug", "branch", "sha", "attempt"),
            public=False,
        ),
        EventType(
            "integration_completed", IntegrationCompleted, ("slug", "branch", "sha"), public=False
        ),
    )
}
PUBLIC_TYPES = tuple(name for name, t in EVENT_TYPES.items() if t.public)

#: Events only the lease holder's fenced speculation path records (never posted to
#: `/v1/events`); keyed by the build's attempt, so a retried record is stored once.
SPECULATION_TYPES: dict[str, EventType] = {
    t.name: t
    for t in (
        EventType("speculation_started", SpeculationStarted, ("attempt",), public=False),
        EventType("speculation_discarded", SpeculationDiscarded, ("attempt",), public=False),
    )
}


def _details(error: ValidationError, prefix: str) -> list[Detail]:
    details = []
    for item in error.errors():
        location = ".".join(str(p) for p in item["loc"])
        field = f"{prefix}.{location}" if location else prefix
        message = item["msg"].removeprefix("Value error, ")
        details.append(Detail(field, item["type"], message))
    return details


def validate_fields(type_name: str, fields: Any) -> dict[str, Any]:
    """Validate and normalise an event's fields; InvalidInput names every bad field."""
    event_type = EVENT_TYPES.get(type_name)
    if event_type is None:
        allowed = ", ".join(PUBLIC_TYPES)
        raise InvalidInput(
            f"unknown event type {type_name!r}",
            details=[Detail("type", "enum", f"must be one of {allowed}")],
        )
    if not isinstance(fields, dict):
        raise InvalidInput(
            "fields must be an object", details=[Detail("fields", "type", "must be an object")]
        )
    try:
        model = event_type.schema.model_validate(fields)
    except ValidationError as exc:
        details = _details(exc, "fields")
        names = ", ".join(d.field for d in details)
        raise InvalidInput(f"invalid {type_name} event: {names}", details=details) from None
    return model.model_dump(mode="json", exclude_none=True)


def string_fields(type_name: str) -> frozenset[str]:
    """Fields whose value is text, so that the CLI converts `--field k=v` the same way."""
    schema = EVENT_TYPES[type_name].schema
    return frozenset(name for name, info in schema.model_fields.items() if info.annotation is str)


def content_hash(fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def natural_key(type_name: str, fields: dict[str, Any], idempotency_key: str | None) -> str:
    """The identity that makes a resubmission a duplicate.

    A key longer than its column (long identities, escaped non-ASCII) is stored as its hash.
    """
    keys = EVENT_TYPES[type_name].key_fields
    if keys:
        key = json.dumps([fields[k] for k in keys], separators=(",", ":"))
    elif idempotency_key:
        key = f"key:{idempotency_key}"
    else:
        return "content:" + content_hash(fields)
    if len(key) <= NATURAL_KEY_MAX_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
