"""One place that turns errors into the contract's JSON body.

Every error answers `{"code", "message", "details": [{"field", "rule", "message"}]}`;
FastAPI's default 422 body is replaced, and nothing ever shows a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DataError, InterfaceError, OperationalError, StatementError
from starlette.exceptions import HTTPException as StarletteHTTPException

from integrator import errors

log = logging.getLogger(__name__)

#: Most specific class first; subclasses inherit their parent's status.
STATUS_BY_ERROR: dict[type[errors.IntegratorError], int] = {
    errors.InvalidInput: 422,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.DatabaseMissing: 503,
    errors.DatabaseUnavailable: 503,
    errors.RepositoryUnreadable: 503,
}

_CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    415: "unsupported_media_type",
    422: "invalid_request",
}


#: What FastAPI raises (a 400 without details) when a body cannot even be decoded as text.
_UNDECODABLE_BODY = "There was an error parsing the body"


class ErrorDetail(BaseModel):
    """One problem: which field broke which rule."""

    field: str = Field(min_length=1)
    rule: str = Field(min_length=1)
    message: str


class Error(BaseModel):
    """Every 4xx and 5xx answer. Some codes add keys of their own (`lease_held` names the
    holder and the expiry), so other keys may appear."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str
    details: list[ErrorDetail]


_UNSTORABLE = (
    "invalid_request",
    "a value is out of range or holds characters that cannot be stored",
    [{"field": "body", "rule": "storable", "message": "out of range or not storable"}],
)


def error_body(
    code: str, message: str, details: list[dict[str, str]] | None = None, **extra: Any
) -> dict[str, Any]:
    return {"code": code, "message": message, "details": details or [], **extra}


def status_for(exc: errors.IntegratorError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def _field_of(location: tuple[Any, ...]) -> str:
    parts = [str(p) for p in location]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def _message_of(error: Any) -> str:
    """pydantic's message; for a malformed body, what the parser found as well."""
    found = error.get("ctx", {}).get("error") if error["type"] == "json_invalid" else None
    return f"{error['msg']}: {found}" if found else str(error["msg"])


def validation_details(exc: RequestValidationError) -> list[dict[str, str]]:
    return [
        {
            # A malformed body's location is its character offset: the field is the body.
            "field": "body" if e["type"] == "json_invalid" else _field_of(tuple(e.get("loc", ()))),
            "rule": e["type"],
            "message": _message_of(e),
        }
        for e in exc.errors()
    ]


def _invalid_response(details: list[dict[str, str]]) -> JSONResponse:
    fields = ", ".join(sorted({d["field"] for d in details}))
    return JSONResponse(
        error_body("invalid_request", f"invalid request: {fields}", details), status_code=422
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.IntegratorError)
    async def _domain(_: Request, exc: errors.IntegratorError) -> JSONResponse:
        status = status_for(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        body = error_body(exc.code, exc.message, [d.as_dict() for d in exc.details], **exc.extra)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _invalid_response(validation_details(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _UNDECODABLE_BODY:
            # Bytes that are not UTF-8 are malformed JSON too: the same 422 as `{`.
            detail = {"field": "body", "rule": "json_invalid", "message": "not JSON in UTF-8"}
            return _invalid_response([detail])
        code = _CODE_BY_STATUS.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(DataError)
    @app.exception_handler(OverflowError)
    @app.exception_handler(UnicodeEncodeError)
    async def _unstorable(request: Request, exc: Exception) -> JSONResponse:
        # The schemas bound what callers send; a value that still reaches the database
        # out of range (or as text it cannot hold) is the caller's, not a server fault.
        log.warning("%s %s: value refused by the database", request.method, request.url.path,
                    exc_info=exc)  # fmt: skip
        return JSONResponse(error_body(*_UNSTORABLE), status_code=422)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # A PostgreSQL restart or outage (or SQLite busy past its timeout) passes: the
        # transaction was rolled back, so the caller may retry it as it was.
        first = str(getattr(exc, "orig", exc) or type(exc).__name__).strip().splitlines()
        log.warning("%s %s: database unavailable: %s", request.method, request.url.path,
                    first[0] if first else type(exc).__name__)  # fmt: skip
        return await _domain(request, errors.DatabaseUnavailable())

    @app.exception_handler(StatementError)
    async def _statement(request: Request, exc: StatementError) -> JSONResponse:
        if isinstance(exc.orig, OverflowError | UnicodeEncodeError):
            return await _unstorable(request, exc)
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            error_body("internal_error", "internal error; the service log has the details"),
            status_code=500,
        )
