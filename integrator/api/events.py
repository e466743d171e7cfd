"""POST/GET /v1/events and POST /v1/submit: canonical events in, derived state updated."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Union

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    TypeAdapter,
    create_model,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError
from sqlalchemy import select
from sqlalchemy.orm import Session

from integrator import controls, events
from integrator.admission import CanonicalRepo, on_event
from integrator.api.deps import Caller, Reader, ReadSessionDep, SessionDep, SettingsDep, require
from integrator.api.schemas import (
    Branch,
    CandidateOut,
    Cursor,
    EventOut,
    Name,
    Page,
    Sha,
    Slug,
    UtcTime,
    declared,
)
from integrator.api.strict_body import StrictJSONRoute
from integrator.errors import Conflict, Detail, Forbidden, InvalidInput
from integrator.models import Candidate, Event
from integrator.settings import Settings
from integrator.tokens import Role

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["events"])

Poster = Annotated[Caller, Depends(require(Role.reporter, Role.hook))]
Reporter = Annotated[Caller, Depends(require(Role.reporter))]
#: The types a caller may post (the others are written by the holder's fenced path).
PUBLIC_TYPES = sorted(name for name, kind in events.EVENT_TYPES.items() if kind.public)


def _recorded_type(name: str) -> str:
    if name not in events.ALL_TYPES:
        raise PydanticCustomError("enum", "must be an event type the service records")
    return name


#: A type to filter the events by: one the service records (a typo is refused, not empty).
EventTypeName = Annotated[
    str, AfterValidator(_recorded_type), declared(enum=tuple(sorted(events.ALL_TYPES)))
]


def _envelope(name: str) -> type[BaseModel]:
    """The envelope of one public type, as published: its `fields` are its model."""
    schema = events.EVENT_TYPES[name].schema
    model: type[BaseModel] = create_model(
        f"{schema.__name__}Event",
        __config__=ConfigDict(extra="forbid"),
        __doc__=f"A {name} event: its fields are validated by the {schema.__name__} model.",
        type=(Literal[name], ...),  # type: ignore[arg-type]
        fields=(schema, ...),
        idempotency_key=(Name | None, None),
    )
    return model


#: What the OpenAPI publishes for POST /v1/events: one branch per public type, told apart by
#: `type`, each with that type's own model as its `fields`.
PublishedEvent: Any = Annotated[
    Union[tuple(_envelope(name) for name in PUBLIC_TYPES)],  # noqa: UP007
    Field(discriminator="type"),
]


class EventIn(BaseModel):
    """An event's envelope; `fields` are validated by the type's own model (`store`), so that
    every bad field of it is named at once as `fields.<name>`. The schema published is
    `PublishedEvent`, built from the same models."""

    model_config = ConfigDict(extra="forbid")

    type: Annotated[str, Field(min_length=1, max_length=64), declared(enum=PUBLIC_TYPES)]
    fields: dict[str, Any]
    idempotency_key: Name | None = None

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(TypeAdapter(PublishedEvent).core_schema)


class EventPosted(BaseModel):
    event: EventOut
    duplicate: bool
    candidate: CandidateOut | None = None


async def canonical_repo(request: Request) -> CanonicalRepo:
    """Async: a pure read of app state (no thread-pool hop)."""
    repo: CanonicalRepo = request.app.state.repo
    return repo


Repo = Annotated[CanonicalRepo, Depends(canonical_repo)]


def store(
    session: Session,
    repo: CanonicalRepo,
    caller: Caller,
    settings: Settings,
    type_name: str,
    fields: dict[str, Any],
    idempotency_key: str | None,
) -> EventPosted:
    """Validate, append and apply one canonical event in one transaction."""
    repository = settings.repository_name
    event_type = events.EVENT_TYPES.get(type_name)
    if event_type is not None and not event_type.public:
        raise InvalidInput(
            f"{type_name} is written only by the lease holder's fenced outcome path",
            details=[Detail("type", "fenced_outcome_only", "not accepted on /v1/events")],
        )
    clean = events.validate_fields(type_name, fields)
    if caller.role is Role.hook and type_name != "branch_pushed":
        raise Forbidden("a hook token may only report branch_pushed")
    event_repository = (
        clean.get("remote", repository) if type_name == "branch_pushed" else repository
    )
    repo.refresh()
    with session.begin():
        appended = events.append(
            session,
            type_name=type_name,
            fields=clean,
            repository=event_repository,
            idempotency_key=idempotency_key,
            actor=caller.name,
        )
        if not appended.duplicate:
            if type_name == "finalize_ready":
                controls.refuse_if_frozen(session, settings)  # rolls the event back too
            on_event(session, repo, appended.event, caller.name)
        return _posted(session, repository, appended.event, duplicate=appended.duplicate)


def _posted(session: Session, repository: str, event: Event, *, duplicate: bool) -> EventPosted:
    """The answer to a stored event: a finalize_ready names the candidate it made."""
    candidate = None
    if event.type == "finalize_ready":
        candidate = session.scalar(
            select(Candidate).where(
                Candidate.repository == repository,
                Candidate.slug == event.fields["slug"],
                Candidate.branch == event.fields["branch"],
                Candidate.sha == event.fields["sha"],
            )
        )
    return EventPosted(
        event=EventOut.of(event),
        duplicate=duplicate,
        candidate=CandidateOut.of(candidate) if candidate else None,
    )


#: A duplicate is answered 200 with the stored event (a new one 201).
DUPLICATE: dict[int | str, dict[str, Any]] = {
    200: {"model": EventPosted, "description": "A duplicate: the event stored before"}
}


@router.post("/events", status_code=201, responses=DUPLICATE)
def post_event(
    body: EventIn,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    repo: Repo,
    caller: Poster,
) -> EventPosted:
    """Append a canonical event: 201 stored, 200 duplicate, 409 idempotency_collision."""
    posted = store(
        session,
        repo,
        caller,
        settings,
        body.type,
        body.fields,
        body.idempotency_key,
    )
    if posted.duplicate:
        response.status_code = 200
    return posted


class BranchNotFound(Conflict):
    """A well-formed branch the canonical repository does not have (yet): the repository's
    state refuses the submit, so push the branch and submit again."""

    code = "branch_not_found"


class SubmitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: Slug
    branch: Branch
    sha: Sha | None = None


@router.post(
    "/submit",
    status_code=201,
    responses={
        **DUPLICATE,
        409: {"description": "branch_not_found (push the branch first) or queue_frozen"},
    },
)
def submit(
    body: SubmitIn,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    repo: Repo,
    caller: Reporter,
) -> EventPosted:
    """finalize_ready for a branch head (the command rejection texts name)."""
    sha = body.sha
    if sha is None:
        repo.refresh()
        sha = repo.branch_head(body.branch)
        if sha is None:
            raise BranchNotFound(
                f"branch {body.branch!r} is not in the canonical repository: push it first",
                details=[Detail("branch", "not_in_repository", "push the branch first")],
            )
    with session.begin():  # submitted before (by anyone): the same answer, not a collision
        key = events.natural_key("finalize_ready", {"slug": body.slug, "branch": body.branch,
                                                    "sha": sha}, None)  # fmt: skip
        earlier = events.find(session, "finalize_ready", key)
        if earlier is not None:
            response.status_code = 200
            return _posted(session, settings.repository_name, earlier, duplicate=True)
    now = datetime.now(UTC).isoformat()
    fields = {
        "slug": body.slug,
        "branch": body.branch,
        "sha": sha,
        "worker_session_id": f"submit:{caller.name}",
        "orchestrator_session_id": f"submit:{caller.name}",
        "ready_at": now,
    }
    posted = store(session, repo, caller, settings, "finalize_ready", fields, None)
    if posted.duplicate:
        response.status_code = 200
    return posted


@router.get("/events")
def list_events(
    session: ReadSessionDep,
    _caller: Reader,
    type: Annotated[list[EventTypeName] | None, Query()] = None,
    slug: Slug | None = None,
    branch: Branch | None = None,
    since: UtcTime | None = None,
    until: UtcTime | None = None,
    cursor: Cursor | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[EventOut]:
    """Events in server order, filtered by type, slug, branch and time; paged by cursor."""
    query = events.EventFilter(
        types=type or (),
        slug=slug,
        branch=branch,
        since=since,
        until=until,
        after_seq=cursor,
        limit=limit,
    )
    rows = events.list_events(session, query)
    next_cursor = str(rows[-1].seq) if len(rows) == limit else None
    return Page[EventOut](items=[EventOut.of(r) for r in rows], next_cursor=next_cursor)
