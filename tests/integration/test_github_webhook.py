"""POST /v1/webhooks/github: GitHub Enterprise's push webhook in place of a post-receive.

Deliveries are shaped as GitHub documents them: the JSON push event body, `X-GitHub-Event:
push`, a unique `X-GitHub-Delivery`, and `X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body
under the webhook's secret>`. SQLite and PostgreSQL, through the real app.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from integrator import github_push
from integrator.admission import CanonicalRepo
from integrator.api.app import create_app
from integrator.db import make_sessionmaker
from integrator.settings import Settings
from tests.gitrepos import Canonical
from tests.integration.test_guard_and_cutover import Ops, events_of
from tests.support import TokenMaker

SECRET = "It's a Secret to Everybody"
ZERO = "0" * 40


def push_event(ref: str, before: str, after: str, pusher: str = "alice") -> dict[str, Any]:
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "created": before == ZERO,
        "deleted": after == ZERO,
        "forced": False,
        "repository": {"full_name": "acme/canonical", "name": "canonical"},
        "pusher": {"name": pusher, "email": f"{pusher}@example.com"},
        "sender": {"login": pusher},
    }


def signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Hub:
    """GitHub's side: delivers events to the app."""

    def __init__(self, ops: Ops) -> None:
        self.ops = ops

    def deliver(
        self,
        payload: dict[str, Any],
        *,
        delivery: str | None = None,
        event: str = "push",
        signature: str | None = "good",
    ) -> Any:
        body = json.dumps(payload).encode()
        headers = {"X-GitHub-Event": event, "Content-Type": "application/json"}
        headers["X-GitHub-Delivery"] = delivery or str(uuid.uuid4())
        if signature == "good":
            headers["X-Hub-Signature-256"] = signed(body)
        elif signature is not None:
            headers["X-Hub-Signature-256"] = signature
        return self.ops.client.post("/v1/webhooks/github", content=body, headers=headers)


@pytest.fixture
def hub(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[Hub]:
    canonical = Canonical(tmp_path)
    configured = settings.model_copy(
        update={"repo": str(canonical.bare), "github_webhook_secret": SECRET}
    )
    with TestClient(create_app(configured)) as client:
        yield Hub(Ops(client, tokens, canonical))


def test_a_signed_branch_push_records_branch_pushed_once_per_delivery(
    hub: Hub, engine: Engine
) -> None:
    """No token: the signature is the credential. A redelivery (same id) is a duplicate."""
    sha = hub.ops.canonical.branch("feat/x")
    event = push_event("refs/heads/feat/x", ZERO, sha)
    delivery = str(uuid.uuid4())

    first = hub.deliver(event, delivery=delivery)
    again = hub.deliver(event, delivery=delivery)

    assert first.status_code == 200, first.text
    assert first.json() == {
        "event": "push", "duplicate": False, "ignored": None, "recorded": 1, "duplicates": 0
    }  # fmt: skip
    assert again.status_code == 200 and again.json()["duplicate"] is True
    [pushed] = events_of(engine, "branch_pushed")
    assert (pushed.fields["branch"], pushed.fields["sha"]) == ("feat/x", sha)
    assert pushed.fields["pusher"] == "alice"
    [received] = events_of(engine, "github_push_received")
    assert received.natural_key == f"github:{delivery}"


def test_the_same_body_under_a_new_delivery_id_changes_nothing(hub: Hub, engine: Engine) -> None:
    """The delivery id is not signed: a replayed body is kept idempotent by its content."""
    sha = hub.ops.canonical.branch("feat/y")
    event = push_event("refs/heads/feat/y", ZERO, sha)

    assert hub.deliver(event).json()["recorded"] == 1
    replayed = hub.deliver(event)

    assert replayed.json()["recorded"] == 0 and replayed.json()["duplicates"] == 1
    assert len(events_of(engine, "branch_pushed")) == 1


@pytest.mark.parametrize(
    "signature",
    [None, "sha256=" + "0" * 64, "sha1=abc", signed(b"another body"), "sha256=zz"],
)
def test_a_missing_or_bad_signature_is_401_and_records_nothing(
    hub: Hub, engine: Engine, signature: str | None
) -> None:
    sha = hub.ops.canonical.branch("feat/z")

    response = hub.deliver(push_event("refs/heads/feat/z", ZERO, sha), signature=signature)

    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "unauthenticated" and body["details"] == []
    assert "X-Hub-Signature-256" in body["message"]
    assert events_of(engine, "branch_pushed") == []
    assert events_of(engine, "github_push_received") == []


def test_without_a_configured_secret_every_delivery_is_refused(
    settings: Settings, tmp_path: Path, tokens: TokenMaker
) -> None:
    canonical = Canonical(tmp_path)
    with TestClient(create_app(settings.model_copy(update={"repo": str(canonical.bare)}))) as c:
        hub = Hub(Ops(c, tokens, canonical))
        response = hub.deliver(push_event("refs/heads/main", "a" * 40, "b" * 40))
    assert response.status_code == 401
    assert "INTEGRATOR_GITHUB_WEBHOOK_SECRET" in response.json()["message"]


def test_a_push_to_main_lands_the_predicted_candidate(hub: Hub, engine: Engine) -> None:
    """The protected ref moved: the service reads main and scores what landed, as it does for
    post-receive's report."""
    predicted = hub.ops.predict_one("landing")
    old = hub.ops.canonical.head()
    new = hub.ops.canonical.merge_to_main(predicted["sha"])

    response = hub.deliver(push_event("refs/heads/main", old, new, pusher="integrator-bot"))

    assert response.status_code == 200, response.text
    candidate = hub.ops.client.get(f"/v1/candidates/{predicted['id']}", headers=hub.ops.hook)
    assert candidate.json()["status"] == "integrated"
    [scored] = events_of(engine, "prediction_scored")
    assert scored.fields["agreed"] is True


def test_ping_other_events_and_other_repositories_are_taken_and_ignored(
    hub: Hub, engine: Engine
) -> None:
    """GitHub marks a non-2xx answer as a failed delivery: what we do not use is still 200."""
    ping = hub.deliver({"zen": "Design for failure.", "hook_id": 1}, event="ping")
    issue = hub.deliver({"action": "opened"}, event="issues")
    other = push_event("refs/heads/x", ZERO, "b" * 40)
    other["repository"] = {"full_name": "acme/other", "name": "other"}
    elsewhere = hub.deliver(other)

    assert (ping.status_code, ping.json()["ignored"]) == (200, None)
    assert (issue.status_code, issue.json()["ignored"]) == (200, "not a push event")
    assert elsewhere.status_code == 200
    assert elsewhere.json()["ignored"] == "acme/other is not canonical"
    assert events_of(engine, "branch_pushed") == []


def test_a_malformed_push_event_is_422_naming_each_field(hub: Hub) -> None:
    response = hub.deliver({"ref": "main", "before": "x", "after": ZERO, "repository": {}})

    assert response.status_code == 422
    fields = {d["field"] for d in response.json()["details"]}
    assert fields == {"ref", "before", "repository.full_name"}


def test_two_concurrent_deliveries_of_one_id_record_it_once(
    settings: Settings, tmp_path: Path, engine: Engine
) -> None:
    """GitHub may deliver twice at once (a redelivery while the first is in flight): the unique
    (type, natural key) of the delivery's event lets one through, the other is a duplicate."""
    canonical = Canonical(tmp_path)
    configured = settings.model_copy(update={"repo": str(canonical.bare)})
    sha = canonical.branch("feat/race")
    push = github_push.parse("race-1", push_event("refs/heads/feat/race", ZERO, sha))
    sessions = make_sessionmaker(engine)
    barrier = threading.Barrier(2)
    results: list[github_push.Received] = []

    def deliver() -> None:
        repo = CanonicalRepo(configured)
        with sessions() as session:
            barrier.wait()
            results.append(github_push.receive(session, configured, repo, push))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(r.duplicate for r in results) == [False, True]
    assert len(events_of(engine, "github_push_received")) == 1
    assert len(events_of(engine, "branch_pushed")) == 1
