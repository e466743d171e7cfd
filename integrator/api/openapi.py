"""The published OpenAPI is the truth: every error answer an operation can give is declared.

Derived when the document is first asked for, from what each route depends on, so that a
router added later is covered without its author doing anything:

- a token guard (`deps.require`): 401; one that asks for a role beyond reading: 403;
- a path parameter (it names something): 404;
- the writing session (`deps.get_session`): 409, a write the current state refuses;
- any parameter or body: 422, in the error shape instead of FastAPI's own;
- a token guard or a session (the database): 503 with `Retry-After`, when the database (or
  the canonical repository) cannot be reached now.

Every one of them, and any error a router declares without a body, has the `Error` schema
(`InvalidRequest` for a 422: the same, with at least one detail).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request, routing
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from integrator.api.deps import GUARDS, get_read_session, get_session
from integrator.api.errors import Error, error_body

ERROR_REF = "#/components/schemas/Error"
#: A 422 says which field broke which rule: at least one detail.
INVALID_REF = "#/components/schemas/InvalidRequest"
_FASTAPI_422 = ("HTTPValidationError", "ValidationError")


def install_openapi(app: FastAPI) -> None:
    """Wrap the app's OpenAPI builder so that its document declares the errors."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            declare_errors(app, build())
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(405)
    async def _method_not_allowed(request: Request, exc: HTTPException) -> JSONResponse:
        # Starlette's Allow names the first route of the path only; a path served by a GET
        # route and a POST route has both, as the document says.
        path = request.scope["path"]
        methods = {
            m
            for r in _routes(app)
            if getattr(r, "path_regex", None) is not None and r.path_regex.match(path)
            for m in getattr(r, "methods", None) or ()
        }
        allowed = ", ".join(sorted(methods)) or (exc.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed here: use {allowed}"
        return JSONResponse(
            error_body("method_not_allowed", message), status_code=405, headers={"Allow": allowed}
        )


def declare_errors(app: FastAPI, schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error = Error.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error.pop("$defs", {}))
    components["Error"] = error
    components["InvalidRequest"] = {
        **error,
        "title": "InvalidRequest",
        "description": "Invalid input: each detail names the field and the rule it broke.",
        "properties": {**error["properties"], "details": {**error["properties"]["details"],
                                                          "minItems": 1}},
    }  # fmt: skip
    for route in _api_routes(app):
        if not route.include_in_schema:
            continue
        item = schema["paths"].get(route.path_format, {})
        for method in route.methods:
            operation = item.get(method.lower())
            if operation is not None:
                _declare(operation, _errors_of(route, operation))
    for name in _FASTAPI_422:
        components.pop(name, None)


def _routes(app: FastAPI) -> Iterator[Any]:
    """Every route as the app serves it (newer FastAPI keeps included routers nested): the
    route, or a context that reads like it."""
    contexts: Callable[[Any], Iterator[Any]] | None = getattr(routing, "iter_route_contexts", None)
    yield from contexts(app.routes) if contexts else app.routes


def _api_routes(app: FastAPI) -> Iterator[Any]:
    for route in _routes(app):
        if isinstance(getattr(route, "original_route", route), APIRoute):
            yield route


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _errors_of(route: Any, operation: dict[str, Any]) -> dict[int, str]:
    calls = list(_calls(route.dependant))
    guards = [GUARDS[c] for c in calls if c in GUARDS]
    errors: dict[int, str] = {}
    if guards:
        errors[401] = "No token, or one that is not valid or has been revoked"
    needed = sorted({role.value for roles in guards for role in roles})
    if needed:
        errors[403] = f"The token's role may not do this (it needs {' or '.join(needed)})"
    if route.dependant.path_params:
        errors[404] = "Nothing by that name or id"
    if get_session in calls:
        errors[409] = "Refused by the current state (a transition, a lease, a mode)"
    if operation.get("parameters") or operation.get("requestBody"):
        errors[422] = "Invalid input: each detail names the field and the rule it broke"
    if guards or get_session in calls or get_read_session in calls:
        errors[503] = (
            "The database (database_unavailable) or the canonical repository "
            "(repository_unreadable) cannot be reached now; nothing was recorded: send the "
            "same request again after Retry-After seconds"
        )
    return errors


def _declare(operation: dict[str, Any], errors: dict[int, str]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for status, description in errors.items():
        answer = responses.setdefault(str(status), {"description": description})
        if status == 422 and _is_fastapis_422(answer):
            answer["description"] = description
        if status == 401:
            answer["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        if status == 503:
            answer["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
    for code, answer in responses.items():
        if code[0] in "45" and _has_no_body_schema(answer):
            ref = INVALID_REF if code == "422" else ERROR_REF
            answer["content"] = {"application/json": {"schema": {"$ref": ref}}}


def _is_fastapis_422(answer: dict[str, Any]) -> bool:
    schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


def _has_no_body_schema(answer: dict[str, Any]) -> bool:
    schema = answer.get("content", {}).get("application/json", {}).get("schema")
    return not schema or _is_fastapis_422(answer)
