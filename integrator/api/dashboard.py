"""The operator's dashboard: its static page at `/` (no token; the page asks for one), and
`GET /v1/activity`, the recent things the other endpoints list oldest first."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from integrator import activity
from integrator.api.deps import Reader, ReadSessionDep, SettingsDep
from integrator.api.schemas import CandidateOut
from integrator.api.strict_body import StrictJSONRoute
from integrator.errors import NotFound

router = APIRouter(route_class=StrictJSONRoute)

#: The files the page is made of, shipped inside the package, and their types.
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
#: Nothing but the service itself: no inline script, no other origin, no framing.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _asset(name: str) -> bytes:
    return files("integrator.dashboard").joinpath(name).read_bytes()


def _serve(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound(f"no dashboard file {name!r}")
    return Response(_asset(name), media_type=ASSETS[name], headers=HEADERS)


@router.get("/", include_in_schema=False)
def index() -> Response:
    """The dashboard page (no token: it asks for a reader token and keeps it in the tab)."""
    return _serve("index.html")


@router.get("/dashboard/{name}", include_in_schema=False)
def asset(name: str) -> Response:
    return _serve(name)


class Activity(BaseModel):
    #: Push verdicts, newest first.
    verdicts: list[dict[str, Any]]
    #: Shadow would-rejects grouped by repository, pusher and ref: `groups`, `total`,
    #: `more_groups`.
    would_rejects: dict[str, Any]
    #: Shadow outcomes (would_integrate / would_block), newest first.
    predictions: list[dict[str, Any]]
    #: Integrated candidates, newest first.
    integrated: list[CandidateOut]


@router.get("/v1/activity", tags=["status"])
def get_activity(
    session: ReadSessionDep,
    settings: SettingsDep,
    _caller: Reader,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> Activity:
    """Recent push verdicts, would-rejects grouped by pusher and ref, shadow predictions and
    integrated candidates, newest first (at most `limit` of each list)."""
    repository = settings.repository_name
    return Activity(
        verdicts=activity.recent_verdicts(session, limit),
        would_rejects=activity.would_rejects_grouped(session),
        predictions=activity.recent_predictions(session, repository, limit),
        integrated=[
            CandidateOut.of(c) for c in activity.recently_integrated(session, repository, limit)
        ],
    )
