"""The published OpenAPI is the truth: every answer the service gives is declared in it.

Example tests of the shared mechanism (the responses every operation can give, media types,
strict times); `test_openapi_conformance.py` lets schemathesis look for what these miss.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from pydantic import BaseModel

from integrator.api.app import create_app
from integrator.api.deps import Operator, SessionDep
from integrator.settings import Settings
from tests.support import TokenMaker

ERROR_REF = "#/components/schemas/Error"
INVALID_REF = "#/components/schemas/InvalidRequest"
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def spec(client: TestClient) -> dict[str, Any]:
    schema: dict[str, Any] = client.get("/openapi.json").json()
    return schema


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def error_schema(operation: dict[str, Any], status: str) -> str | None:
    answer = operation["responses"].get(status)
    if answer is None:
        return None
    ref: str | None = answer["content"]["application/json"]["schema"].get("$ref")
    return ref


def test_every_guarded_operation_declares_401_and_the_role_guarded_ones_403(
    spec: dict[str, Any],
) -> None:
    """A missing or bad token is 401 everywhere a token is needed; a role is 403 only where
    the operation asks for more than reading."""
    for path, method, operation in operations(spec):
        if not operation.get("security"):
            continue
        where = f"{method.upper()} {path}"
        assert error_schema(operation, "401") == ERROR_REF, where
        if method == "get" and path != "/v1/tokens":
            assert "403" not in operation["responses"], where
        else:
            assert error_schema(operation, "403") == ERROR_REF, where


def test_open_operations_declare_no_401(spec: dict[str, Any]) -> None:
    for path in ("/healthz", "/readyz"):
        assert "401" not in spec["paths"][path]["get"]["responses"], path


def test_a_path_naming_something_declares_404_and_writes_declare_409(
    spec: dict[str, Any],
) -> None:
    for path, method, operation in operations(spec):
        where = f"{method.upper()} {path}"
        if "{" in path:
            assert error_schema(operation, "404") == ERROR_REF, where
        if method == "post" and path.startswith("/v1/") and operation.get("security"):
            assert error_schema(operation, "409") == ERROR_REF, where


def test_every_operation_that_reads_the_database_declares_503_to_retry(
    spec: dict[str, Any],
) -> None:
    """A database out of reach (or a canonical repository that cannot be read) is a 503 with
    Retry-After wherever a token is checked or a session opened; health answers its own."""
    for path, method, operation in operations(spec):
        if not operation.get("security"):
            continue
        where = f"{method.upper()} {path}"
        assert error_schema(operation, "503") == ERROR_REF, where
        assert "Retry-After" in operation["responses"]["503"]["headers"], where


def test_422_is_the_error_shape_not_fastapis_default(spec: dict[str, Any]) -> None:
    """The body FastAPI would document (HTTPValidationError) is never what we send."""
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    error = spec["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"code", "message", "details"}
    invalid = spec["components"]["schemas"]["InvalidRequest"]
    assert invalid["properties"]["details"]["minItems"] == 1
    for path, method, operation in operations(spec):
        if operation.get("parameters") or operation.get("requestBody"):
            assert error_schema(operation, "422") == INVALID_REF, f"{method.upper()} {path}"


def test_routes_added_later_are_covered_without_their_authors_doing_anything(
    settings: Settings,
) -> None:
    """The mechanism reads the dependencies at publication time, whatever the router."""
    app = create_app(settings)
    router = APIRouter(prefix="/v1")

    @router.post("/late/{thing}")
    def late(thing: str, _session: SessionDep, _caller: Operator) -> dict[str, str]:
        return {"thing": thing}

    app.include_router(router)
    with TestClient(app) as client:
        operation = client.get("/openapi.json").json()["paths"]["/v1/late/{thing}"]["post"]
    assert {"401", "403", "404", "409", "422"} <= set(operation["responses"])


def test_metrics_are_declared_as_prometheus_text(spec: dict[str, Any]) -> None:
    content = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["text/plain"]


def test_metrics_answer_in_the_declared_media_type(client: TestClient, tokens: TokenMaker) -> None:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {tokens('reader')}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")


def test_times_are_declared_as_date_time(spec: dict[str, Any]) -> None:
    [until] = [p for p in spec["paths"]["/v1/events"]["get"]["parameters"] if p["name"] == "until"]
    assert until["schema"]["anyOf"][0] == {"type": "string", "format": "date-time"}


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/v1/mode", "GET, POST"),
        ("/v1/events", "GET, POST"),
        ("/v1/whoami", "GET"),
        ("/docs", "GET, HEAD"),  # a route outside the API's own still names its methods
    ],
)
def test_405_lists_every_method_the_path_has(client: TestClient, path: str, allowed: str) -> None:
    """Starlette named only the first route's methods (`Allow: GET` for /v1/mode)."""
    response = client.request("OPTIONS", path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.json()["code"] == "method_not_allowed"


def test_a_body_flag_must_be_a_json_boolean(client: TestClient, tokens: TokenMaker) -> None:
    """`"drill": 0` was read as false: the schema says boolean, so a number is refused."""
    headers = {"Authorization": f"Bearer {tokens('operator')}"}
    response = client.post("/v1/rollback", json={"reason": "r", "drill": 0}, headers=headers)
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["details"]] == ["drill"]


def _parameter(spec: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    [found] = [p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == name]
    schema: dict[str, Any] = found["schema"]
    return schema.get("anyOf", [schema])[0]


def test_names_slugs_branches_and_reasons_declare_their_rules(spec: dict[str, Any]) -> None:
    """schemathesis built `slug=é`, `branch=` and names with control characters from the
    schema and got 422s: each rule is now in the schema as a pattern."""
    from integrator.api import schemas

    assert _parameter(spec, "/v1/candidates", "slug")["pattern"] == schemas.SLUG_PATTERN
    assert _parameter(spec, "/v1/events", "branch")["pattern"] == schemas.BRANCH_PATTERN
    submit = spec["components"]["schemas"]["SubmitIn"]["properties"]
    assert submit["branch"]["pattern"] == schemas.BRANCH_PATTERN
    assert submit["sha"]["anyOf"][0]["pattern"] == schemas.SHA_PATTERN
    acquire = spec["components"]["schemas"]["AcquireIn"]["properties"]
    assert acquire["holder"]["pattern"] == schemas.PRINTABLE_LINE
    assert (
        spec["components"]["schemas"]["PushIn"]["properties"]["hook_version"]["anyOf"][0]["pattern"]
        == schemas.PRINTABLE_LINE
    )
    mode = spec["components"]["schemas"]["ModeIn"]["properties"]
    assert mode["reason"]["pattern"] == schemas.PROSE_PATTERN
    event = spec["components"]["schemas"]["EventIn"]
    mapping = event["discriminator"]["mapping"]
    assert set(mapping) == {"review_approved", "finalize_ready", "branch_pushed"}


def _component(spec: dict[str, Any], ref: str) -> dict[str, Any]:
    found: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return found


def _models_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return schema


def test_the_published_event_body_is_a_oneof_of_exactly_the_public_types_models(
    spec: dict[str, Any],
) -> None:
    """POST /v1/events publishes one branch per type a caller may post, told apart by `type`,
    each branch's `fields` the very model the service validates that type with."""
    from integrator.event_schemas import EVENT_TYPES

    public = {name for name, kind in EVENT_TYPES.items() if kind.public}
    body = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    published = _component(spec, body["schema"]["$ref"])
    assert published["discriminator"]["propertyName"] == "type"
    assert set(published["discriminator"]["mapping"]) == public
    assert sorted(b["$ref"] for b in published["oneOf"]) == sorted(
        published["discriminator"]["mapping"].values()
    )
    for name, ref in published["discriminator"]["mapping"].items():
        branch = _component(spec, ref)
        assert branch["properties"]["type"]["const"] == name
        assert branch["required"] == ["type", "fields"] and not branch["additionalProperties"]
        fields = _component(spec, branch["properties"]["fields"]["$ref"])
        assert fields == _models_schema(EVENT_TYPES[name].schema), name


def test_a_checks_published_schema_is_the_check_contracts_rule_per_status(
    spec: dict[str, Any],
) -> None:
    """Outcomes and registrations carry checks whose schema says the rule per status: the
    CheckReport component is the model's, a branch per rule, every status in one branch; the
    checks are keyed by check name, so no check can be listed twice."""
    from integrator.check_contract import ATTEMPTS_RULES, MAX_CHECKS, NAME_PATTERN, CheckStatus
    from integrator.check_reports import CheckReport

    published = spec["components"]["schemas"]["CheckReport"]
    assert published == _models_schema(CheckReport)
    statuses = [s for b in published["oneOf"] for s in b["properties"]["status"]["enum"]]
    assert sorted(statuses) == sorted(CheckStatus) and len(set(statuses)) == len(statuses)
    for branch in published["oneOf"]:
        rule = ATTEMPTS_RULES[CheckStatus(branch["properties"]["status"]["enum"][0])]
        assert ("attempts" in branch["required"]) == rule.ran
    for path in ("/v1/registrations", "/v1/candidates/{candidate_id}/outcome"):
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        checks = _component(spec, body["schema"]["$ref"])["properties"]["checks"]
        assert checks["type"] == "object" and checks["maxProperties"] == MAX_CHECKS
        assert checks["propertyNames"]["pattern"] == NAME_PATTERN
        assert checks["additionalProperties"] == {"$ref": "#/components/schemas/CheckReport"}
        assert "patternProperties" not in checks


def test_refusals_by_state_are_declared_409_with_their_codes(spec: dict[str, Any]) -> None:
    """A branch not (yet) pushed and a pause already over are the state's refusals."""
    for path, code in (
        ("/v1/submit", "branch_not_found"),
        ("/v1/queue/pause", "pause_already_over"),
    ):
        answer = spec["paths"][path]["post"]["responses"]["409"]
        assert code in answer["description"], path
        assert answer["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
