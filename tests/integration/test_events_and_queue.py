"""Events in, queue out: idempotency, readiness against a real repository, supersession."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from integrator.admission import CanonicalRepo
from integrator.api.app import create_app
from integrator.db import make_engine, make_sessionmaker
from integrator.settings import Settings
from integrator.watch import MainWatcher
from tests.builders import branch_pushed, finalize_ready, review_approved
from tests.gitrepos import Canonical, Unreadable
from tests.support import TokenMaker


class Api:
    """The service in-process, with a reporter's token by default."""

    def __init__(self, client: TestClient, tokens: TokenMaker) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {tokens('reporter')}"}
        self.reader = {"Authorization": f"Bearer {tokens('reader')}"}
        self.hook = {"Authorization": f"Bearer {tokens('hook')}"}

    def post(self, envelope: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        return self.client.post("/v1/events", json=envelope, headers=headers or self.headers)

    def candidates(self, **params: Any) -> list[dict[str, Any]]:
        response = self.client.get("/v1/candidates", params=params, headers=self.reader)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def slug(self, slug: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/slugs/{slug}", headers=self.reader)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def ready(self, slug: str, branch: str, sha: str) -> dict[str, Any]:
        """All three events of a candidate; returns the finalize_ready answer."""
        assert self.post(review_approved(slug)).status_code in (200, 201)
        assert self.post(branch_pushed(branch, sha)).status_code in (200, 201)
        response = self.post(finalize_ready(slug, branch, sha))
        assert response.status_code in (200, 201), response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def canonical(tmp_path: Path) -> Canonical:
    return Canonical(tmp_path)


@pytest.fixture
def api(settings: Settings, canonical: Canonical, tokens: TokenMaker) -> Iterator[Api]:
    configured = settings.model_copy(update={"repo": str(canonical.bare)})
    with TestClient(create_app(configured)) as client:
        yield Api(client, tokens)


def test_a_candidate_is_queued_once_its_three_events_exist_and_the_branch_is_real(
    api: Api, canonical: Canonical
) -> None:
    """waiting → queued as review, push and finalize arrive and the branch is in the repo."""
    sha = canonical.branch("feat/one")
    api.post(finalize_ready("one", "feat/one", sha))
    assert api.candidates()[0]["unmet"] == ["review_approved", "branch_pushed"]
    api.post(review_approved("one"))
    assert api.candidates()[0]["status"] == "waiting"
    api.post(branch_pushed("feat/one", sha))
    [candidate] = api.candidates()
    assert candidate["status"] == "queued"
    assert candidate["position"] == 1
    assert candidate["unmet"] == []
    assert candidate["main_sha_checked"] == canonical.head()


def test_a_sha_already_on_main_never_becomes_ready(api: Api, canonical: Canonical) -> None:
    """Condition 6: content already on main is not queued again."""
    sha = canonical.branch("feat/done")
    canonical.merge_to_main(sha)
    body = api.ready("done", "feat/done", sha)
    assert body["candidate"]["status"] == "waiting"
    assert body["candidate"]["unmet"] == ["not_on_main"]


def test_a_sha_not_on_the_branch_stays_waiting_and_says_why(api: Api, canonical: Canonical) -> None:
    """Condition 4 is read from git, not from the branch_pushed event's word."""
    canonical.branch("feat/two")
    unpushed = canonical.local_branch("feat/two-local")
    body = api.ready("two", "feat/two", unpushed)
    assert body["candidate"]["status"] == "waiting"
    assert body["candidate"]["unmet"] == ["on_branch"]
    story = api.slug("two")
    assert any("not reachable from the branch" in why for why in story["candidate"]["why"])


def test_duplicate_events_are_stored_once_and_answered_as_duplicates(
    api: Api, canonical: Canonical
) -> None:
    """Same natural key and content: 200 with duplicate true, the same seq."""
    first = api.post(review_approved("dup"))
    second = api.post(review_approved("dup", approved_at="2026-11-24T14:00:00+02:00"))
    assert first.status_code == 201 and first.json()["duplicate"] is False
    assert second.status_code == 200 and second.json()["duplicate"] is True
    assert second.json()["event"]["seq"] == first.json()["event"]["seq"]


def test_same_key_with_different_content_is_a_collision(api: Api) -> None:
    """409 idempotency_collision; nothing new stored."""
    api.post(review_approved("col"))
    response = api.post(review_approved("col", approved_at="2026-11-25T12:00:00+00:00"))
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_collision"
    listed = api.client.get(
        "/v1/events", params={"type": "review_approved", "slug": "col"}, headers=api.reader
    )
    assert len(listed.json()["items"]) == 1


def test_branch_pushed_is_keyed_by_the_callers_idempotency_key(
    api: Api, canonical: Canonical
) -> None:
    """The hook's key (push id + ref) makes a retried report a duplicate."""
    sha = canonical.branch("feat/key")
    first = api.post(branch_pushed("feat/key", sha, key="p1:refs/heads/feat/key"))
    again = api.post(branch_pushed("feat/key", sha, key="p1:refs/heads/feat/key"))
    other = api.post(branch_pushed("feat/key", sha, key="p2:refs/heads/feat/key"))
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)


def test_invalid_events_name_every_bad_field_and_store_nothing(api: Api) -> None:
    """422 with a detail per bad field; the event list stays empty."""
    envelope = finalize_ready("bad", "no..dots", "xyz")
    del envelope["fields"]["worker_session_id"]
    response = api.post(envelope)
    assert response.status_code == 422
    fields = {d["field"] for d in response.json()["details"]}
    assert fields == {"fields.branch", "fields.sha", "fields.worker_session_id"}
    assert api.client.get("/v1/events", headers=api.reader).json()["items"] == []


def test_envelope_fields_are_checked_too(api: Api) -> None:
    """Unknown envelope keys and a missing `fields` are refused with their names."""
    response = api.post({"type": "review_approved", "colour": "red"})
    assert response.status_code == 422
    assert {d["field"] for d in response.json()["details"]} == {"fields", "colour"}


@pytest.mark.parametrize("type_name", ["integration_blocked", "integration_completed"])
def test_outcome_events_are_not_accepted_on_the_public_endpoint(api: Api, type_name: str) -> None:
    """Outcomes come only from the lease holder's fenced path."""
    response = api.post({"type": type_name, "fields": {}})
    assert response.status_code == 422
    assert response.json()["details"][0]["rule"] == "fenced_outcome_only"


def test_a_hook_token_may_report_pushes_only(api: Api, canonical: Canonical) -> None:
    """The hook role posts branch_pushed, nothing else; readers post nothing."""
    sha = canonical.branch("feat/hook")
    assert api.post(branch_pushed("feat/hook", sha), headers=api.hook).status_code == 201
    assert api.post(review_approved("h"), headers=api.hook).status_code == 403
    assert api.post(review_approved("h"), headers=api.reader).status_code == 403


def test_newer_finalize_ready_supersedes_and_inherits_the_position(
    api: Api, canonical: Canonical
) -> None:
    """The old candidate is kept, points at its successor; the fix keeps its turn."""
    first_sha = canonical.branch("feat/a")
    api.ready("a", "feat/a", first_sha)
    other = canonical.branch("feat/b")
    api.ready("b", "feat/b", other)
    fixed = canonical.branch("feat/a", content="fixed\n")
    api.post(branch_pushed("feat/a", fixed))
    successor = api.post(finalize_ready("a", "feat/a", fixed)).json()["candidate"]

    queued = api.candidates(status="queued")
    assert [(c["slug"], c["position"]) for c in queued] == [("a", 1), ("b", 2)]
    assert queued[0]["sha"] == fixed
    story = api.slug("a")
    old = next(c for c in story["candidates"] if c["sha"] == first_sha)
    assert old["status"] == "superseded"
    assert old["superseded_by"] == successor["id"]
    assert story["candidate"]["sha"] == fixed


def test_queue_order_is_the_server_position_not_ready_at(api: Api, canonical: Canonical) -> None:
    """A caller's earlier ready_at does not jump the queue."""
    late = canonical.branch("feat/late")
    early = canonical.branch("feat/early")
    api.post(review_approved("late"))
    api.post(branch_pushed("feat/late", late))
    api.post(finalize_ready("late", "feat/late", late, ready_at="2030-01-01T00:00:00Z"))
    api.post(review_approved("early"))
    api.post(branch_pushed("feat/early", early))
    api.post(finalize_ready("early", "feat/early", early, ready_at="2000-01-01T00:00:00Z"))
    assert [c["slug"] for c in api.candidates(status="queued")] == ["late", "early"]


def test_every_transition_is_a_candidate_status_changed_event(
    api: Api, canonical: Canonical
) -> None:
    """The history shows creation and admission with positions."""
    sha = canonical.branch("feat/h")
    api.ready("h", "feat/h", sha)
    history = api.slug("h")["history"]
    changes = [
        (e["fields"]["from"], e["fields"]["to"])
        for e in history
        if e["type"] == "candidate_status_changed"
    ]
    assert changes == [(None, "waiting"), ("waiting", "queued")]


def test_a_force_pushed_branch_sends_a_queued_candidate_back_to_waiting(
    api: Api, canonical: Canonical
) -> None:
    """Readiness is re-checked when the branch moves; the position is kept."""
    sha = canonical.branch("feat/f")
    api.ready("f", "feat/f", sha)
    replaced = canonical.branch("feat/f", path="other.txt", content="rewritten\n")
    api.post(branch_pushed("feat/f", replaced))
    [candidate] = api.candidates(slug="f")
    assert candidate["status"] == "waiting"
    assert candidate["unmet"] == ["on_branch"]
    assert candidate["position"] == 1


def test_events_list_filters_and_pages(api: Api, canonical: Canonical) -> None:
    """GET /v1/events filters by type, slug, branch and time, with a cursor."""
    for n in range(5):
        api.post(review_approved(f"s{n}"))
    page = api.client.get(
        "/v1/events", params={"type": "review_approved", "limit": 2}, headers=api.reader
    ).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = api.client.get(
        "/v1/events",
        params={"type": "review_approved", "limit": 10, "cursor": page["next_cursor"]},
        headers=api.reader,
    ).json()
    assert [e["fields"]["slug"] for e in page["items"] + rest["items"]] == [
        f"s{n}" for n in range(5)
    ]
    future = api.client.get(
        "/v1/events", params={"since": "2999-01-01T00:00:00Z"}, headers=api.reader
    ).json()
    assert future["items"] == []
    naive = api.client.get(
        "/v1/events", params={"since": "2020-01-01T00:00:00"}, headers=api.reader
    )
    assert naive.status_code == 422 and naive.json()["details"][0]["field"] == "since"


@pytest.mark.parametrize("typo", ["review_aproved", "123", ""])
def test_events_list_refuses_a_type_the_service_does_not_record(api: Api, typo: str) -> None:
    """A typo'd filter is a 422 naming `type`, not an empty page that looks like no events."""
    api.post(review_approved("s"))
    for params in ({"type": typo}, {"type": ["review_approved", typo]}):
        answer = api.client.get("/v1/events", params=params, headers=api.reader)
        assert answer.status_code == 422, answer.text
        assert answer.json()["details"][0]["field"].startswith("type")


def test_events_list_filters_by_any_recorded_type_system_ones_included(api: Api) -> None:
    """Every type the service records can be asked for, canonical or system."""
    api.post(review_approved("s"))
    for name in ("review_approved", "candidate_status_changed", "queue_paused", "lease_acquired"):
        answer = api.client.get("/v1/events", params={"type": name}, headers=api.reader)
        assert answer.status_code == 200, (name, answer.text)


def test_submit_enqueues_the_branch_head(api: Api, canonical: Canonical) -> None:
    """`submit` is finalize_ready for the branch head read from the canonical repository."""
    sha = canonical.branch("feat/s")
    api.post(review_approved("s"))
    api.post(branch_pushed("feat/s", sha))
    response = api.client.post(
        "/v1/submit", json={"slug": "s", "branch": "feat/s"}, headers=api.headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["candidate"]["sha"] == sha
    assert response.json()["candidate"]["status"] == "queued"
    missing = api.client.post(
        "/v1/submit", json={"slug": "s", "branch": "nope"}, headers=api.headers
    )
    assert missing.status_code == 409, missing.text
    assert missing.json()["code"] == "branch_not_found"
    assert missing.json()["details"][0]["field"] == "branch"


def test_a_url_repository_is_read_through_a_local_mirror_fetched_before_evaluating(
    settings: Settings, tmp_path: Path, tokens: TokenMaker
) -> None:
    """INTEGRATOR_REPO as a URL: the service keeps its own bare mirror and fetches it first."""
    (tmp_path / "remote").mkdir()
    canonical = Canonical(tmp_path / "remote")
    configured = settings.model_copy(
        update={"repo": f"file://{canonical.bare}", "mirror_dir": str(tmp_path / "mirrors")}
    )
    with TestClient(create_app(configured)) as client:
        api = Api(client, tokens)
        sha = canonical.branch("feat/url")  # pushed after the service started
        body = api.ready("url", "feat/url", sha)
        assert body["candidate"]["status"] == "queued"
        assert body["candidate"]["main_sha_checked"] == canonical.head()
    mirrors = list((tmp_path / "mirrors").iterdir())
    assert len(mirrors) == 1 and mirrors[0].name.endswith(".git")


@pytest.fixture
def watcher(settings: Settings, canonical: Canonical) -> Iterator[MainWatcher]:
    """The service's watcher of canonical main, built while the repository is readable."""
    configured = settings.model_copy(update={"repo": str(canonical.bare)})
    engine = make_engine(configured)
    yield MainWatcher(make_sessionmaker(engine), configured, CanonicalRepo(configured))
    engine.dispose()


def test_a_passing_git_failure_keeps_queued_candidates_queued_and_hands_nothing_out(
    api: Api, canonical: Canonical, tokens: TokenMaker
) -> None:
    """Unknown is not unmet: re-evaluation and dequeue leave the queue as it is, then resume."""
    sha = canonical.branch("feat/q")
    api.ready("q", "feat/q", sha)
    integrator = {"Authorization": f"Bearer {tokens('integrator')}"}
    grant = api.client.post("/v1/lease/acquire", json={"holder": "bot"}, headers=integrator)
    body = {k: grant.json()[k] for k in ("epoch", "token")}

    with Unreadable(canonical):
        evaluated = api.client.post("/v1/queue/evaluate", headers=integrator)
        assert evaluated.status_code == 200, evaluated.text
        [candidate] = api.candidates(slug="q")
        assert (candidate["status"], candidate["position"]) == ("queued", 1)
        nothing = api.client.post("/v1/queue/next", json=body, headers=integrator)
        assert nothing.status_code == 204
        assert api.candidates(slug="q")[0]["status"] == "queued"

    handed = api.client.post("/v1/queue/next", json=body, headers=integrator)
    assert handed.status_code == 200 and handed.json()["sha"] == sha


def test_a_candidate_left_waiting_while_git_was_unreadable_is_queued_by_the_watcher(
    api: Api, canonical: Canonical, watcher: MainWatcher
) -> None:
    """Its git conditions stay open while git cannot tell; the next readable look queues it."""
    sha = canonical.branch("feat/w")
    with Unreadable(canonical):
        body = api.ready("w", "feat/w", sha)
        assert body["candidate"]["status"] == "waiting"
        assert body["candidate"]["unmet"] == ["on_branch", "not_on_main"]
        watcher.run_once()
        assert api.candidates(slug="w")[0]["status"] == "waiting"

    watcher.run_once()

    [candidate] = api.candidates(slug="w")
    assert (candidate["status"], candidate["unmet"]) == ("queued", [])
    assert candidate["main_sha_checked"] == canonical.head()
