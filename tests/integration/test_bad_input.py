"""Bad input through the API: 422 naming the field and its rule, never a 500, nothing lost.

Most of these broke only on PostgreSQL (column lengths, BIGINT, NUL bytes), so every test
runs on both backends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from integrator.api.app import create_app
from integrator.models import Event
from integrator.settings import Settings
from tests.builders import branch_pushed, finalize_ready, review_approved
from tests.gitrepos import Canonical
from tests.support import ServiceProcess, TokenMaker

ZERO = "0" * 40
SHA = "a" * 40
TOO_BIG = str(2**63)
#: A branch name git accepts (`git check-ref-format --branch`) and no column of ours can hold.
LONG_BRANCH = "feat/" + "/".join(["x" * 59] * 5)


class Api:
    """A service on the test's database with a real canonical repository and one token per role."""

    def __init__(self, client: TestClient, tokens: TokenMaker, canonical: Canonical) -> None:
        self.client = client
        self.canonical = canonical
        self.headers = {
            role: {"Authorization": f"Bearer {tokens(role)}"}
            for role in ("reader", "reporter", "hook", "integrator", "operator")
        }

    def post(self, role: str, path: str, body: Any) -> Any:
        """JSON as the standard library writes it (lone surrogates escaped, as clients may)."""
        headers = {**self.headers[role], "Content-Type": "application/json"}
        return self.client.post(path, content=json.dumps(body), headers=headers)

    def get(self, role: str, path: str, **params: Any) -> Any:
        return self.client.get(path, params=params, headers=self.headers[role])


@pytest.fixture
def api(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[Api]:
    canonical = Canonical(tmp_path)
    configured = settings.model_copy(update={"repo": str(canonical.bare)})
    with TestClient(create_app(configured), raise_server_exceptions=False) as client:
        yield Api(client, tokens, canonical)


def problems(response: Any) -> dict[str, str]:
    """The 422 body's details as {field: rule}, after checking the status and the shape."""
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) >= {"code", "message", "details"} and body["details"], body
    return {d["field"]: d["rule"] for d in body["details"]}


def push(*refs: str, repository: str = "canonical", **extra: Any) -> dict[str, Any]:
    updates = [
        {"ref": ref, "resolved_ref": ref, "old": ZERO, "new": new,
         "fast_forward": True, "first_parent": False}
        for ref, new in (r.split("=") if "=" in r else (r, SHA) for r in refs)
    ]  # fmt: skip
    return {
        "repository": repository,
        "hook_instance": "git1:/srv/canonical.git",
        "hook_version": "1",
        "pusher": "alice",
        "identity_source": "plain",
        "updates": updates,
        **extra,
    }


def stored(engine: Engine, type_name: str) -> list[Event]:
    with engine.connect() as connection:
        rows = connection.execute(select(Event).where(Event.type == type_name).order_by(Event.seq))
        return list(rows)  # type: ignore[arg-type]


# Item 9: limits match the columns.


@pytest.mark.parametrize(
    ("envelope", "field"),
    [
        (review_approved("s" * 201), "fields.slug"),
        (finalize_ready("s" * 201, "feat/x", SHA), "fields.slug"),
        (finalize_ready("s", LONG_BRANCH, SHA), "fields.branch"),
        (branch_pushed(LONG_BRANCH, SHA), "fields.branch"),
        (branch_pushed("feat/x", SHA, remote="r" * 201), "fields.remote"),
        (review_approved(reviewer_session_id="r" * 201), "fields.reviewer_session_id"),
    ],
)
def test_an_event_field_longer_than_its_column_is_422_naming_the_field(
    api: Api, envelope: dict[str, Any], field: str
) -> None:
    """A 300-character slug or branch is refused by the schema (string_too_long), not the DB."""
    assert problems(api.post("reporter", "/v1/events", envelope)) == {field: "string_too_long"}


def test_submit_refuses_an_overlong_branch_or_slug_by_the_same_limits(api: Api) -> None:
    """POST /v1/submit shares the events' limits."""
    response = api.post("reporter", "/v1/submit", {"slug": "s" * 201, "branch": LONG_BRANCH})
    assert problems(response) == {"slug": "string_too_long", "branch": "string_too_long"}


def test_the_longest_identities_fit_the_natural_key(api: Api, engine: Engine) -> None:
    """A maximal slug with a maximal non-ASCII reviewer id is stored and stays idempotent."""
    envelope = review_approved("s" * 200, reviewer_session_id="é" * 200)
    first = api.post("reporter", "/v1/events", envelope)
    again = api.post("reporter", "/v1/events", envelope)
    assert (first.status_code, again.status_code) == (201, 200), first.text
    assert again.json()["duplicate"] is True
    assert len(stored(engine, "review_approved")) == 1


def test_a_push_check_of_a_branch_longer_than_the_column_is_decided_and_recorded(
    api: Api, engine: Engine
) -> None:
    """Git accepts the name, so the hook must get a verdict: the full ref is in the record."""
    response = api.post("hook", "/v1/push-checks", push(f"refs/heads/{LONG_BRANCH}"))
    assert response.status_code == 200, response.text
    assert response.json()["allow"] is True
    [recorded] = stored(engine, "push_allowed")
    assert recorded.fields["ref"] == f"refs/heads/{LONG_BRANCH}"


def test_a_spooled_verdict_of_a_branch_longer_than_the_column_is_accepted(
    api: Api, engine: Engine
) -> None:
    """The spool upload records what the hook decided, whatever the branch's length."""
    item = {**push(f"refs/heads/{LONG_BRANCH}"), "allow": True, "mode": "shadow"}
    response = api.post("hook", "/v1/push-checks/spool", {"items": [item]})
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "duplicates": 0, "invalid": 0, "refused": []}
    assert len(stored(engine, "push_allowed")) == 1


# Item 10: a push report is validated and kept per update.


def test_a_push_report_keeps_the_good_branches_and_skips_a_refused_one_with_its_reason(
    api: Api, engine: Engine
) -> None:
    """`refs/heads/-x` and an over-long branch are skipped; `feat/ok` is still recorded."""
    ok = api.canonical.branch("feat/ok")
    body = push(f"refs/heads/feat/ok={ok}", "refs/heads/-x", f"refs/heads/{LONG_BRANCH}")
    response = api.post("hook", "/v1/push-reports", body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["recorded"], answer["duplicates"]) == (1, 0)
    skipped = {s["ref"]: s for s in answer["skipped"]}
    assert set(skipped) == {"refs/heads/-x", f"refs/heads/{LONG_BRANCH}"}
    assert skipped["refs/heads/-x"]["field"] == "branch"
    assert "'-'" in skipped["refs/heads/-x"]["message"]
    assert skipped[f"refs/heads/{LONG_BRANCH}"]["rule"] == "string_too_long"
    [pushed] = stored(engine, "branch_pushed")
    assert pushed.fields["branch"] == "feat/ok"


def test_push_reports_document_the_skipped_updates_in_openapi(api: Api) -> None:
    """Callers learn from the schema that refused updates come back as `skipped`."""
    schema = api.client.get("/openapi.json").json()
    reported = schema["components"]["schemas"]["PushReported"]
    assert "skipped" in reported["properties"]
    assert "skipped" in reported.get("description", "")


# Item 11: no 500s from numbers, times, slugs or text.


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        (f"/v1/candidates/{TOO_BIG}", {}, "candidate_id"),
        (f"/v1/candidates/{2**31}", {}, "candidate_id"),
        ("/v1/candidates", {"cursor": TOO_BIG}, "cursor"),
        ("/v1/events", {"cursor": TOO_BIG}, "cursor"),
        ("/v1/candidates", {"cursor": "9" * 5000}, "cursor"),
        ("/v1/events", {"cursor": "9" * 5000}, "cursor"),
    ],
)
def test_integers_beyond_bigint_in_a_path_or_query_are_422(
    api: Api, path: str, params: dict[str, str], field: str
) -> None:
    """2^63 (2^31 for a row id) and a 5,000-digit cursor are out of range, named by field."""
    assert field in problems(api.get("reader", path, **params))


@pytest.mark.parametrize(
    "path", ["/v1/queue/next", "/v1/lease/renew", "/v1/lease/release", "/v1/candidates/1/outcome"]
)
def test_an_epoch_beyond_bigint_in_a_body_is_422(api: Api, path: str) -> None:
    """The holder's epoch is a BIGINT: 2^63 is refused before it reaches the database."""
    body: dict[str, Any] = {"epoch": 2**63, "token": "t"}
    if path.endswith("outcome"):
        body["outcome"] = "would_integrate"
    assert "epoch" in problems(api.post("integrator", path, body))


def test_review_round_beyond_bigint_is_422(api: Api) -> None:
    """Event integers have the same bound as the API's."""
    envelope = review_approved(review_round=2**63)
    assert problems(api.post("reporter", "/v1/events", envelope)) == {
        "fields.review_round": "less_than_equal"
    }


@pytest.mark.parametrize("stamp", ["0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00"])
def test_a_time_that_overflows_in_utc_is_422(api: Api, stamp: str) -> None:
    """Normalising to UTC must not overflow into a 500, in event fields or query filters."""
    envelope = review_approved(approved_at=stamp)
    assert "fields.approved_at" in problems(api.post("reporter", "/v1/events", envelope))
    assert "since" in problems(api.get("reader", "/v1/events", since=stamp))


@pytest.mark.parametrize("slug", ["a/b", "../x", "a b", "x?y", ".hidden", "feat#1", "a\nb"])
def test_a_slug_that_cannot_be_addressed_is_refused(api: Api, slug: str) -> None:
    """A slug is one URL path segment: letters, digits, '.', '_' and '-', starting alnum."""
    envelope = finalize_ready(slug, "feat/x", SHA)
    assert problems(api.post("reporter", "/v1/events", envelope)) == {"fields.slug": "slug"}
    assert "slug" in problems(api.post("reporter", "/v1/submit", {"slug": slug, "branch": "b"}))


def test_a_valid_slug_can_be_shown_and_closed(api: Api) -> None:
    """What the slug rule accepts, `queue show` and `queue close` can address."""
    sha = api.canonical.branch("feat/ok")
    slug = "Issue-14.fix_2"
    for envelope in (review_approved(slug), finalize_ready(slug, "feat/ok", sha)):
        assert api.post("reporter", "/v1/events", envelope).is_success
    assert api.get("reader", f"/v1/slugs/{slug}").status_code == 200
    closed = api.post("operator", f"/v1/slugs/{slug}/close", {"reason": "done"})
    assert closed.status_code == 200, closed.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/mode", {"mode": "shadow", "reason": "x" * 2001}),
        ("/v1/lease/force-release", {"reason": "x" * 2001}),
        ("/v1/rollback", {"reason": "x" * 2001}),
    ],
)
def test_reasons_are_bounded(api: Api, path: str, body: dict[str, Any]) -> None:
    """A free-text reason has a length limit, named in the 422."""
    assert problems(api.post("operator", path, body)) == {"reason": "string_too_long"}


@pytest.mark.parametrize(
    ("role", "path", "body", "field"),
    [
        ("operator", "/v1/mode", {"mode": "shadow", "reason": "a\x00b"}, "reason"),
        ("integrator", "/v1/lease/acquire", {"holder": "bot\x00"}, "holder"),
        ("hook", "/v1/push-checks", push("refs/heads/x", pusher="al\x00ice"), "pusher"),
        ("reporter", "/v1/events", branch_pushed("feat/x", SHA, pusher="\ud800"), "fields.pusher"),
    ],
)
def test_text_the_database_cannot_store_is_422(
    api: Api, role: str, path: str, body: dict[str, Any], field: str
) -> None:
    """NUL bytes and lone surrogates are refused by the schema, not by the driver."""
    assert field in problems(api.post(role, path, body))


def test_a_reason_with_a_newline_cannot_forge_a_log_line(
    service: ServiceProcess, tokens: TokenMaker
) -> None:
    """`integrator serve` escapes control characters in what it logs: one record, one line."""
    forged = "ok\nWARNING lease granted to mallory"
    response = httpx.post(
        f"{service.url}/v1/lease/force-release",
        json={"reason": forged},
        headers={"Authorization": f"Bearer {tokens('operator')}"},
    )
    assert response.status_code == 200, response.text
    service.stop()
    lines = service.log_path.read_text().splitlines()
    assert not [line for line in lines if line.startswith("WARNING lease granted")], lines
    assert any("ok\\nWARNING lease granted to mallory" in line for line in lines), lines


def test_every_integer_in_the_openapi_schema_is_bounded(api: Api) -> None:
    """Any integer a caller sends fits a BIGINT: the bound is in the published schema."""
    schema = api.client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    unbounded: list[str] = []
    seen: set[str] = set()

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref and ref not in seen:
                seen.add(ref)
                walk(components[ref.rsplit("/", 1)[-1]], ref)
            if node.get("type") == "integer" and "maximum" not in node:
                unbounded.append(where)
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for n, value in enumerate(node):
                walk(value, f"{where}/{n}")

    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            walk(operation.get("parameters", []), f"{method} {path}")
            walk(operation.get("requestBody", {}), f"{method} {path} body")
    assert unbounded == []


# Found by schemathesis: what the OpenAPI declares is what the service takes.


@pytest.mark.parametrize("stamp", ["0.5", "1700000000", "2026-01-01", "2026-01-01T00:00"])
def test_a_time_filter_must_be_an_iso_8601_timestamp_with_an_offset(api: Api, stamp: str) -> None:
    """`until=0.5` was read as seconds since 1970; a date-time is a timestamp, never a number."""
    assert problems(api.get("reader", "/v1/events", until=stamp)) == {"until": "date_time"}
    assert problems(api.get("reader", "/v1/events", since=stamp)) == {"since": "date_time"}


def test_a_time_in_a_body_must_be_an_iso_8601_timestamp(api: Api) -> None:
    """A number in a JSON body is not a time either."""
    response = api.post("operator", "/v1/queue/pause", {"reason": "freeze", "until": 4102444800})
    assert problems(response) == {"until": "date_time"}


def test_an_iso_8601_time_filter_is_taken(api: Api) -> None:
    for stamp in ("2026-01-01T00:00:00Z", "2026-01-01T01:00:00.5+01:00"):
        assert api.get("reader", "/v1/events", until=stamp).status_code == 200


@pytest.mark.parametrize("body", [b"\xff", b'{"reason": "\xe9"}', b"{", b""])
def test_a_body_that_is_not_json_is_422_naming_the_body(api: Api, body: bytes) -> None:
    """Not UTF-8 was a 400 without details; malformed JSON named a character offset."""
    headers = {**api.headers["operator"], "Content-Type": "application/json"}
    response = api.client.post("/v1/lease/force-release", content=body, headers=headers)
    assert problems(response) == {"body": "json_invalid"} or body == b"", response.text


def test_a_body_naming_a_member_twice_is_422_saying_which_and_nothing_is_kept(api: Api) -> None:
    """RFC 8259 leaves a repeated name to the parser; Python's kept the last one, so a check
    reported twice (or a field given two values) silently lost one of them."""
    headers = {**api.headers["operator"], "Content-Type": "application/json"}
    twice = b'{"reason": "freeze", "reason": "thaw"}'
    response = api.client.post("/v1/queue/pause", content=twice, headers=headers)
    assert problems(response) == {"body": "json_invalid"}
    assert "'reason' appears twice" in response.json()["details"][0]["message"]
    assert api.get("reader", "/v1/queue/pause").json()["paused"] is False

    event = json.dumps(review_approved("c1"))
    nested = event.replace('"slug": "c1"', '"slug": "c1", "slug": "c2"').encode()
    assert nested.count(b'"slug"') == 2
    reporter = {**api.headers["reporter"], "Content-Type": "application/json"}
    response = api.client.post("/v1/events", content=nested, headers=reporter)
    assert problems(response) == {"body": "json_invalid"}
    assert "'slug' appears twice" in response.json()["details"][0]["message"]
    assert api.get("reader", "/v1/events").json()["items"] == []


def test_a_malformed_body_says_what_the_parser_found(api: Api) -> None:
    headers = {**api.headers["operator"], "Content-Type": "application/json"}
    response = api.client.post("/v1/queue/pause", content=b'{"reason": }', headers=headers)
    assert problems(response) == {"body": "json_invalid"}
    assert response.json()["details"][0]["message"] == "JSON decode error: Expecting value"


def test_the_largest_cursor_and_epoch_are_exact_in_json(api: Api) -> None:
    """2^63-1 cannot be written as a JSON number every client reads exactly (a double rounds
    it up past the bound): the bound is 2^53-1, and one more is refused."""
    exact = 2**53 - 1
    assert api.get("reader", "/v1/events", cursor=str(exact)).status_code == 200
    assert problems(api.get("reader", "/v1/events", cursor=str(exact + 1))) == {
        "cursor": "less_than_equal"
    }
    body = {"epoch": exact + 1, "token": "t"}
    assert problems(api.post("integrator", "/v1/lease/renew", body)) == {"epoch": "less_than_equal"}


def test_a_delivery_cursor_beyond_any_row_id_is_an_ordinary_page(api: Api) -> None:
    """Row ids are INTEGER: PostgreSQL refused a larger cursor bound to the column's type
    (schemathesis: a valid cursor answered 422 "not storable")."""
    response = api.get("reader", "/v1/webhooks/deliveries", cursor=str(2**53 - 2))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/v1/push-checks", "/v1/push-reports"])
def test_a_round_trip_time_must_be_a_number_not_a_boolean(api: Api, path: str) -> None:
    """`previous_round_trip_ms: false` was read as 0 ms (schemathesis: an invalid body taken)."""
    body = push("refs/heads/x", previous_round_trip_ms=False)
    assert problems(api.post("hook", path, body)) == {"previous_round_trip_ms": "float_type"}
