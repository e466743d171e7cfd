"""The service's front door: health, readiness, roles and the error contract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from integrator.api.app import create_app
from integrator.settings import Settings
from tests.support import TokenMaker


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error_shape(body: dict[str, object], code: str) -> None:
    assert set(body) >= {"code", "message", "details"}
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], list)


def test_healthz_needs_no_token(client: TestClient) -> None:
    """Liveness is open to load balancers."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_the_database_at_head(client: TestClient) -> None:
    """Readiness checks the database answers and its schema is at head."""
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_readyz_fails_when_migrations_are_behind(client: TestClient, engine: Engine) -> None:
    """A database whose schema lags the code is not ready, and says what to run."""
    with engine.begin() as connection:
        head = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        connection.execute(text("UPDATE alembic_version SET version_num = 'behind'"))
    try:
        response = client.get("/readyz")
    finally:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    assert response.status_code == 503
    assert_error_shape(response.json(), "not_ready")
    assert "integrator db upgrade" in response.json()["message"]


@pytest.mark.parametrize("path", ["/docs", "/openapi.json"])
def test_api_documentation_is_open(client: TestClient, path: str) -> None:
    """OpenAPI and its page need no token."""
    assert client.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/v1/whoami", "/metrics", "/v1/tokens"])
def test_protected_paths_answer_401_without_a_token(client: TestClient, path: str) -> None:
    """Every endpoint except the token-free list needs a role token."""
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert_error_shape(response.json(), "unauthenticated")


def test_garbage_and_forged_tokens_are_refused(client: TestClient, tokens: TokenMaker) -> None:
    """A token with a known key id but a wrong secret is as invalid as garbage."""
    real = tokens("reader")
    forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    for presented in ("garbage", "itg_x_y", forged):
        response = client.get("/v1/whoami", headers=bearer(presented))
        assert response.status_code == 401, presented


def test_whoami_names_the_token_and_its_role(client: TestClient, tokens: TokenMaker) -> None:
    """GET /v1/whoami answers who the caller is."""
    token = tokens("hook", name="git-server")
    response = client.get("/v1/whoami", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {"name": "git-server", "role": "hook"}


def test_wrong_role_is_403(client: TestClient, tokens: TokenMaker) -> None:
    """Listing tokens is an operator's right; a reader gets 403 naming the role needed."""
    response = client.get("/v1/tokens", headers=bearer(tokens("reader")))
    assert response.status_code == 403
    assert_error_shape(response.json(), "forbidden")
    assert "operator" in response.json()["message"]
    assert client.get("/v1/tokens", headers=bearer(tokens("operator"))).status_code == 200


def test_revoked_token_is_401(client: TestClient, tokens: TokenMaker, settings: Settings) -> None:
    """Revocation takes effect on the next request."""
    from integrator.cli.local import local_session
    from integrator.tokens import revoke_token

    token = tokens("reader", name="leaving")
    assert client.get("/v1/whoami", headers=bearer(token)).status_code == 200
    with local_session(settings) as session:
        revoke_token(session, "leaving")
    response = client.get("/v1/whoami", headers=bearer(token))
    assert response.status_code == 401
    assert "revoked" in response.json()["message"]


def test_tokens_are_never_stored_in_clear(
    tokens: TokenMaker, engine: Engine, settings: Settings
) -> None:
    """Only a hash reaches the database: the secret part appears in no column."""
    token = tokens("operator")
    secret = token.split("_", 2)[2]
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM api_tokens")).all()
    assert rows
    assert all(secret not in str(value) for row in rows for value in row)
    if settings.database_url.startswith("sqlite"):
        engine.dispose()
        path = settings.database_url.removeprefix("sqlite:///")
        with open(path, "rb") as handle:
            assert secret.encode() not in handle.read()


def test_metrics_are_prometheus_text_for_readers(client: TestClient, tokens: TokenMaker) -> None:
    """/metrics serves Prometheus' text format behind a reader token."""
    client.get("/healthz")
    response = client.get("/metrics", headers=bearer(tokens("reader")))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'integrator_http_requests_total{method="GET",route="/healthz",status="200"}' in (
        response.text
    )


def test_invalid_query_is_422_naming_the_field_and_rule(
    client: TestClient, tokens: TokenMaker
) -> None:
    """FastAPI's default 422 body is replaced by the contract's shape."""
    response = client.get("/v1/tokens?role=emperor", headers=bearer(tokens("operator")))
    assert response.status_code == 422
    body = response.json()
    assert_error_shape(body, "invalid_request")
    assert body["details"][0]["field"] == "role"
    assert body["details"][0]["rule"] == "enum"


def test_unknown_path_is_404_in_the_contract_shape(client: TestClient) -> None:
    """Even routing errors use the error contract."""
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")


def test_a_database_that_cannot_be_reached_is_a_503_to_retry_not_a_500(
    client: TestClient, tokens: TokenMaker, settings: Settings
) -> None:
    """A PostgreSQL restart or outage is temporary: callers (the worker, the hook's spool,
    scripts) are told to retry, in the contract's shape, and never see an internal error."""
    from integrator.db import make_engine, make_sessionmaker
    from tests.support import free_port

    token = tokens("reader")
    app = client.app
    dead = settings.model_copy(
        update={"database_url": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone"}
    )
    engine = make_engine(dead)
    live_engine, live_sessions = app.state.engine, app.state.sessions  # type: ignore[attr-defined]
    app.state.engine, app.state.sessions = engine, make_sessionmaker(engine)  # type: ignore[attr-defined]
    try:
        for path in ("/v1/whoami", "/v1/status", "/v1/events"):
            response = client.get(path, headers=bearer(token))
            assert response.status_code == 503, (path, response.text)
            assert_error_shape(response.json(), "database_unavailable")
            assert response.headers["Retry-After"].isdigit()
    finally:
        app.state.engine, app.state.sessions = live_engine, live_sessions  # type: ignore[attr-defined]
        engine.dispose()
