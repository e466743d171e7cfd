"""Token-free liveness and readiness, and the reader-only Prometheus endpoint."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from integrator.api.deps import Reader, SettingsDep
from integrator.api.errors import error_body
from integrator.api.strict_body import StrictJSONRoute
from integrator.migrate import current_revision, head_revision

router = APIRouter(route_class=StrictJSONRoute)


@router.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    """The process is up (no database access)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["health"],
    response_model=None,
    responses={503: {"description": "The database does not answer or needs `db upgrade`"}},
)
def readyz(request: Request, settings: SettingsDep) -> dict[str, Any] | JSONResponse:
    """The database answers and its schema is at the migrations' head."""
    engine = request.app.state.engine
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current = current_revision(engine)
    except Exception as exc:  # any driver error means "not ready"
        body = error_body("not_ready", f"database unreachable: {type(exc).__name__}")
        return JSONResponse(body, status_code=503)
    head = head_revision(settings)
    if current != head:
        message = f"database schema at {current}, migrations at {head}: run `integrator db upgrade`"
        return JSONResponse(error_body("not_ready", message), status_code=503)
    return {"status": "ready", "database": engine.dialect.name, "revision": current}


@router.get(
    "/metrics",
    tags=["health"],
    response_class=PlainTextResponse,
    responses={200: {"description": "The Prometheus text exposition format"}},
)
def metrics(request: Request, _caller: Reader) -> Response:
    """Prometheus metrics of this process (reader token)."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
