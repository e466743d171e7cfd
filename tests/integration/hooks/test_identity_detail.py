"""The host's other identity variables (GitLab's GL_ID, GL_PROTOCOL) reach the push records."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.integration.hooks.conftest import FakeService, ServerRepo
from tests.support import ServiceProcess, TokenMaker


def test_a_push_carrying_gl_id_records_it_beside_the_identity_source(
    tmp_path: Path, fake: FakeService, service: ServiceProcess, tokens: TokenMaker
) -> None:
    repo = ServerRepo(tmp_path, fake)
    repo.install(url=service.url, token=tokens("hook"), identity_source="gitlab")
    reader = tokens("reader")
    repo.commit("second")
    gitlab = {"GL_USERNAME": "alice", "GL_ID": "user-42", "GL_PROTOCOL": "ssh"}

    result = repo.push("main", pusher=None, server_env=gitlab)

    assert result.returncode == 0, result.stderr
    response = httpx.get(
        f"{service.url}/v1/events",
        params={"type": "push_would_reject"},
        headers={"Authorization": f"Bearer {reader}"},
    )
    (event,) = response.json()["items"]
    assert event["fields"]["pusher"] == "alice"
    assert event["fields"]["identity_source"] == "gitlab"
    assert event["fields"]["identity_detail"] == {"GL_ID": "user-42", "GL_PROTOCOL": "ssh"}


BASE = {
    "repository": "canonical",
    "hook_instance": "test:canonical",
    "pusher": "alice",
    "identity_source": "gitlab",
    "updates": [],
}


@pytest.mark.parametrize(
    "detail",
    [
        {f"VAR_{n}": "x" for n in range(9)},
        {"gl_id": "1"},
        {"GL ID": "1"},
        {"GL_ID": "x" * 201},
        {"GL_ID": "a\nb"},
        {"GL_ID": 42},
    ],
)
def test_identity_detail_outside_its_rules_is_a_422_naming_it(
    service: ServiceProcess, tokens: TokenMaker, detail: dict[str, object]
) -> None:
    response = httpx.post(
        f"{service.url}/v1/push-checks",
        json={**BASE, "identity_detail": detail},
        headers={"Authorization": f"Bearer {tokens('hook')}"},
    )
    assert response.status_code == 422, response.text
    assert any("identity_detail" in d["field"] for d in response.json()["details"])
