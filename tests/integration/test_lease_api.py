"""The lease over HTTP and from the CLI: bodies, 409s and roles."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from integrator.api.app import create_app
from integrator.db import make_engine
from integrator.settings import Settings
from tests.lease_support import later, lease_events, short_lease
from tests.support import ServiceProcess, TokenMaker, json_of, run_cli, settings_env


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(short_lease(settings))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def move_clock(app: FastAPI, seconds: float) -> None:
    """Shift the service's SQL clock (the same knob tests use everywhere)."""
    app.state.settings = later(app.state.settings, seconds)


def parse(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    assert moment.utcoffset() is not None and not moment.utcoffset(), value
    return moment


def test_get_lease_shows_holder_epoch_and_expiry_but_never_the_token(
    client: TestClient, tokens: TokenMaker
) -> None:
    """A reader sees who holds the lease and until when, in ISO UTC; the token stays secret."""
    reader = bearer(tokens("reader"))
    free = client.get("/v1/lease", headers=reader).json()
    assert free == {
        "key": "integration/default/main",
        "repository": "default",
        "holder": None,
        "epoch": 0,
        "held": False,
        "acquired_at": None,
        "renewed_at": None,
        "expires_at": None,
        "ttl_seconds": 10.0,
    }
    grant = client.post(
        "/v1/lease/acquire", json={"holder": "bot-a"}, headers=bearer(tokens("integrator"))
    ).json()
    held = client.get("/v1/lease", headers=reader)
    body = held.json()
    assert (body["holder"], body["epoch"], body["held"]) == ("bot-a", 1, True)
    assert parse(body["expires_at"]) == parse(grant["expires_at"])
    assert parse(body["acquired_at"]) == parse(body["renewed_at"])
    assert grant["token"] not in held.text


def test_acquire_answers_the_grant_then_409_lease_held_with_holder_and_expiry(
    client: TestClient, tokens: TokenMaker
) -> None:
    """The first acquire gets epoch, token and expiry; the next one is told who holds it."""
    integrator = bearer(tokens("integrator"))
    first = client.post("/v1/lease/acquire", json={"holder": "bot-a"}, headers=integrator)
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"holder", "epoch", "token", "acquired_at", "expires_at", "ttl_seconds"}
    assert (body["holder"], body["epoch"], body["ttl_seconds"]) == ("bot-a", 1, 10.0)
    assert (parse(body["expires_at"]) - parse(body["acquired_at"])).total_seconds() == 10

    second = client.post("/v1/lease/acquire", json={"holder": "bot-b"}, headers=integrator)
    assert second.status_code == 409
    refused = second.json()
    assert refused["code"] == "lease_held" and refused["holder"] == "bot-a"
    assert parse(refused["expires_at"]) == parse(body["expires_at"])
    assert body["token"] not in second.text


def test_renew_and_release_answer_for_a_live_grant_and_409_lease_lost_after_takeover(
    app: FastAPI, client: TestClient, tokens: TokenMaker
) -> None:
    """A stale epoch's renew and release are refused with lease_lost; the live one works."""
    integrator = bearer(tokens("integrator"))
    old = client.post("/v1/lease/acquire", json={"holder": "bot-a"}, headers=integrator).json()
    stale = {"epoch": old["epoch"], "token": old["token"]}
    renewed = client.post("/v1/lease/renew", json=stale, headers=integrator)
    assert renewed.status_code == 200 and set(renewed.json()) == {"epoch", "expires_at"}

    move_clock(app, 11)
    new = client.post("/v1/lease/acquire", json={"holder": "bot-b"}, headers=integrator).json()
    assert new["epoch"] == 2
    for path in ("/v1/lease/renew", "/v1/lease/release"):
        lost = client.post(path, json=stale, headers=integrator)
        assert lost.status_code == 409 and lost.json()["code"] == "lease_lost"
    released = client.post(
        "/v1/lease/release", json={"epoch": 2, "token": new["token"]}, headers=integrator
    )
    assert released.status_code == 200
    assert released.json()["epoch"] == 2 and released.json()["previous_holder"] == "bot-b"


def test_force_release_is_an_operators_act_recorded_with_reason_and_name(
    client: TestClient, tokens: TokenMaker, settings: Settings
) -> None:
    """Force-release bumps the epoch, kills the holder's token and records who and why."""
    integrator = bearer(tokens("integrator"))
    grant = client.post("/v1/lease/acquire", json={"holder": "bot-a"}, headers=integrator).json()
    forced = client.post(
        "/v1/lease/force-release",
        json={"reason": "worker host lost"},
        headers=bearer(tokens("operator", name="alice")),
    )
    assert forced.status_code == 200
    assert forced.json()["epoch"] == 2 and forced.json()["previous_holder"] == "bot-a"
    lost = client.post(
        "/v1/lease/renew", json={"epoch": 1, "token": grant["token"]}, headers=integrator
    )
    assert lost.status_code == 409
    engine = make_engine(settings)
    try:
        last = lease_events(engine)[-1]
    finally:
        engine.dispose()
    assert last.type == "lease_force_released" and last.actor == "alice"
    assert last.fields["reason"] == "worker host lost"


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"),
    [
        ("GET", "/v1/lease", None, {"reader", "integrator", "operator", "hook", "reporter"}),
        ("POST", "/v1/lease/acquire", {"holder": "x"}, {"integrator"}),
        ("POST", "/v1/lease/renew", {"epoch": 1, "token": "t"}, {"integrator"}),
        ("POST", "/v1/lease/release", {"epoch": 1, "token": "t"}, {"integrator"}),
        ("POST", "/v1/lease/force-release", {"reason": "r"}, {"operator"}),
    ],
)
def test_lease_endpoints_need_a_token_and_the_right_role(
    client: TestClient,
    tokens: TokenMaker,
    method: str,
    path: str,
    body: dict[str, object] | None,
    allowed: set[str],
) -> None:
    """401 without a token; 403 for a role the table does not list; never 401/403 otherwise."""
    assert client.request(method, path, json=body).status_code == 401
    for role in ("reader", "reporter", "hook", "integrator", "operator"):
        answer = client.request(method, path, json=body, headers=bearer(tokens(role)))
        assert (answer.status_code != 403) == (role in allowed), (role, answer.text)
        if role not in allowed:
            assert answer.json()["code"] == "forbidden"


def test_malformed_lease_requests_are_422_naming_each_field(
    client: TestClient, tokens: TokenMaker
) -> None:
    """Missing holder, a non-integer epoch or an empty reason are bad input, not conflicts."""
    integrator = bearer(tokens("integrator"))
    empty = client.post("/v1/lease/acquire", json={"holder": ""}, headers=integrator)
    assert empty.status_code == 422 and empty.json()["details"][0]["field"] == "holder"
    bad = client.post("/v1/lease/renew", json={"epoch": "one"}, headers=integrator)
    assert bad.status_code == 422
    assert {d["field"] for d in bad.json()["details"]} == {"epoch", "token"}
    no_reason = client.post(
        "/v1/lease/force-release", json={"reason": ""}, headers=bearer(tokens("operator"))
    )
    assert no_reason.status_code == 422


def test_cli_lease_status_prints_the_lease_and_json_prints_the_api_body(
    settings: Settings, service: ServiceProcess, tokens: TokenMaker
) -> None:
    """`integrator lease status [--json]` against a real service."""
    env = settings_env(settings, INTEGRATOR_URL=service.url, INTEGRATOR_TOKEN=tokens("reader"))
    plain = run_cli("lease", "status", env=env)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("integration/default/main: free (epoch 0)")
    as_json = run_cli("lease", "status", "--json", env=env)
    assert as_json.returncode == 0
    assert json_of(as_json)["epoch"] == 0 and json_of(as_json)["held"] is False


def test_cli_release_needs_force_a_reason_and_an_operator(
    settings: Settings, service: ServiceProcess, tokens: TokenMaker
) -> None:
    """Without --force: exit 2 and why; a non-operator: exit 1; an operator: the epoch moves."""
    grant = httpx.post(
        f"{service.url}/v1/lease/acquire",
        json={"holder": "bot-a"},
        headers=bearer(tokens("integrator")),
    ).json()
    env = settings_env(settings, INTEGRATOR_URL=service.url, INTEGRATOR_TOKEN=tokens("operator"))

    unforced = run_cli("lease", "release", "--reason", "stuck", env=env)
    assert unforced.returncode == 2 and "--force" in unforced.stderr
    no_reason = run_cli("lease", "release", "--force", env=env)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr

    as_reader = {**env, "INTEGRATOR_TOKEN": tokens("reader")}
    refused = run_cli("lease", "release", "--force", "--reason", "stuck", env=as_reader)
    assert refused.returncode == 1 and "operator" in refused.stderr

    forced = run_cli("lease", "release", "--force", "--reason", "stuck", "--json", env=env)
    assert forced.returncode == 0, forced.stderr
    assert json_of(forced)["previous_holder"] == "bot-a" and json_of(forced)["epoch"] == 2
    status = json_of(run_cli("lease", "status", "--json", env=env))
    assert (status["epoch"], status["held"]) == (2, False)
    assert grant["token"] not in forced.stdout + forced.stderr
