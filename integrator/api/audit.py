"""GET /v1/audit: every commit of main's first-parent history and what let it there."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from integrator import audit_reader
from integrator.admission import CanonicalRepo
from integrator.api.deps import Reader, ReadSessionDep, SettingsDep
from integrator.api.strict_body import StrictJSONRoute
from integrator.audit_report import SINCE_PATTERN, parse_since
from integrator.gitops import SHA_PATTERN

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["audit"])

#: One page can hold a long history: the CLI asks for this many at once.
MAX_LIMIT = 10_000


class ExplanationOut(BaseModel):
    """Why the commit is on main; the other fields are the kind's own: `queue` candidate_id,
    slug, branch, submitted_by, approved_by, lane, promoted_by, promotion_reason, epoch,
    registration_id, registration_status, attempt; `push` pusher, identity_source, decision,
    reason_code, verdict_event_seq, decided_locally, old, new, trailer_without_registration;
    `bypass` bypass_kind, reason, pusher, identity_source, verdict_event_seq, old, new;
    `unexplained` reason, trailer_without_registration, window_after, window_before, modes."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["queue", "push", "bypass", "before_guard", "unexplained"]
    summary: str


class AuditItemOut(BaseModel):
    sha: str
    subject: str
    author: str
    committed_at: str
    #: The mode it reached main in (for an unexplained commit: cutover if it may have).
    mode: Literal["off", "shadow", "cutover"] | None
    explanation: ExplanationOut
    #: Unexplained and it may have reached main while in cutover: the guard should have held.
    failure: bool


class BeforeGuardOut(BaseModel):
    count: int
    newest: str | None
    oldest: str | None


class AuditOut(BaseModel):
    repository: str
    head: str | None
    since: str | None
    #: Commits in the audited range (every page).
    total: int
    #: This page, newest first.
    items: list[AuditItemOut]
    unexplained_after_cutover: int
    unexplained: int
    #: Every unexplained commit of the range (up to 1000), failures first.
    unexplained_items: list[AuditItemOut]
    counts: dict[str, int]
    before_guard: BeforeGuardOut
    next_cursor: str | None


@router.get(
    "/audit",
    response_model=AuditOut,
    responses={404: {"description": "`since` or `cursor` names no commit of main's history"}},
)
def get_audit(
    request: Request,
    session: ReadSessionDep,
    settings: SettingsDep,
    _caller: Reader,
    since: Annotated[str | None, Query(pattern=SINCE_PATTERN)] = None,
    cursor: Annotated[str | None, Query(pattern=SHA_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> JSONResponse:
    """`since`: a revision (the commits after it) or a date (commits committed since then).
    An unknown revision, or a cursor that is no commit of the range, is a 404 naming it."""
    repo: CanonicalRepo = request.app.state.repo
    parsed = parse_since(since) if since is not None else None
    report = audit_reader.read(session, settings, repo, parsed)
    # The body is built by the report itself (AuditOut documents it): validating a page of
    # 10,000 commits again would cost more than reading them.
    return JSONResponse(report.as_dict(cursor, limit))
