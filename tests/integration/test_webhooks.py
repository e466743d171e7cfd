"""The webhook: real service processes post the outbox to a real receiver on 127.0.0.1.

The receiver is `http.server` in a thread, answering from a script (a status, or a hang) and
recording every hit with its headers and exact body. What the outbox says (GET
/v1/webhooks/deliveries) is compared with what the receiver saw.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from integrator.cli.local import local_session
from integrator.db import make_engine, make_sessionmaker
from integrator.models import WebhookDelivery
from integrator.settings import Settings
from integrator.webhooks import (
    CLAIM_MARGIN_SECONDS,
    claim,
    due_ids,
    enqueue,
    record_delivered,
    record_failed,
)
from tests.support import ServiceProcess, TokenMaker, free_port
from tests.worker_support import WorkerWorld, wait_for

SECRET = "webhook-secret-for-tests"
#: Fast retries: 0.2 s, 0.4 s, 0.8 s … (±25 %), looked for every 50 ms.
FAST: dict[str, Any] = {
    "webhook_secret": SECRET,
    "webhook_poll_seconds": 0.05,
    "webhook_retry_base_seconds": 0.2,
    "webhook_retry_max_seconds": 2.0,
    "webhook_timeout_seconds": 2.0,
}
HANG = "hang"


@dataclass
class Hit:
    started: float
    ended: float | None
    headers: dict[str, str]
    body: bytes
    answer: int | str

    @property
    def delivery(self) -> str:
        return self.headers["x-integrator-delivery"]

    @property
    def document(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Answers each POST with the next scripted answer (then `default`); `hang` holds the
    request until released. Records every hit and the most posts of one delivery at once."""

    def __init__(self, *script: int | str, default: int | str = 200, delay: float = 0.0) -> None:
        self.script = list(script)
        self.default = default
        self.delay = delay
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self.in_flight: Counter[str] = Counter()
        self.most_at_once = 0
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length", 0)))
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self.lock:
            answer = self.script.pop(0) if self.script else self.default
            hit = Hit(time.monotonic(), None, headers, body, answer)
            self.hits.append(hit)
            delivery = headers.get("x-integrator-delivery", "")
            self.in_flight[delivery] += 1
            self.most_at_once = max(self.most_at_once, self.in_flight[delivery])
        try:
            if answer == HANG:
                self.release.wait(60)
                return
            time.sleep(self.delay)
            request.send_response(int(answer))
            request.send_header("Content-Length", "2")
            request.end_headers()
            request.wfile.write(b"ok")
        finally:
            with self.lock:
                self.in_flight[delivery] -= 1
                hit.ended = time.monotonic()

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def hits_of(self, delivery: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.delivery == delivery]


def valid_signature(hit: Hit) -> bool:
    """The receiver's check, as docs/operations.md shows it."""
    expected = "sha256=" + hmac.new(SECRET.encode(), hit.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, hit.headers.get("x-integrator-signature-256", ""))


class Outbox:
    """The outbox as a reader sees it through the API."""

    def __init__(self, service: ServiceProcess, tokens: TokenMaker) -> None:
        self.service = service
        self.headers = {"Authorization": f"Bearer {tokens('reader')}"}

    def items(self, **params: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.service.url}/v1/webhooks/deliveries",
            params={"limit": "1000", **params},
            headers=self.headers,
            timeout=10,
        )
        assert response.status_code == 200, response.text
        assert SECRET not in response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def settled(self, count: int) -> list[dict[str, Any]] | None:
        """Every item, once `count` of them are delivered or failed (else None)."""
        items = self.items()
        done = [i for i in items if i["status"] in ("delivered", "failed")]
        return items if len(items) == count and len(done) == count else None


def enqueue_integrated(settings: Settings, candidate_id: int) -> None:
    with local_session(settings) as session:
        enqueue(session, settings, "integrated", {"candidate_id": candidate_id, "slug": "s"})


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Start service processes; each is stopped at the end."""
    started: list[ServiceProcess] = []

    def start(settings: Settings, name: str = "service") -> ServiceProcess:
        process = ServiceProcess(settings, tmp_path / f"{name}.log")
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def test_a_receiver_that_fails_twice_gets_three_posts_of_one_delivery_each_signed(
    settings: Settings, tokens: TokenMaker, serve: Any
) -> None:
    """500, 500, 200: exactly three hits, as the outbox counts them, with one delivery id,
    valid signatures, the try's number in the body and growing waits between them."""
    with Receiver(500, 500, 200) as receiver:
        settings = settings.model_copy(update={"webhook_url": receiver.url, **FAST})
        outbox = Outbox(serve(settings), tokens)
        enqueue_integrated(settings, 41)

        (item,) = wait_for(lambda: outbox.settled(1), 30, "the delivery")
        time.sleep(0.5)  # nothing more is posted once delivered

        assert len(receiver.hits) == 3 == item["attempts"]
        assert item["status"] == "delivered" and item["delivered_at"]
        assert item["last_error"] == "HTTP 500"
        assert item["next_attempt_at"] is None
        assert {h.delivery for h in receiver.hits} == {item["delivery_id"]}
        assert all(valid_signature(h) for h in receiver.hits)
        documents = [h.document for h in receiver.hits]
        assert [d["attempt"] for d in documents] == [1, 2, 3]
        assert {d["id"] for d in documents} == {item["delivery_id"]}
        assert (
            documents[0]["event"] == "integrated" == receiver.hits[0].headers["x-integrator-event"]
        )
        assert documents[0]["data"] == {"candidate_id": 41, "slug": "s"}
        assert documents[0]["repository"] == settings.repository_name
        assert documents[0]["created_at"].endswith("Z")
        assert receiver.hits[0].headers["content-type"] == "application/json"
        assert receiver.hits[0].headers["user-agent"].startswith("integrator-webhook/")
        first, second, third = (h.started for h in receiver.hits)
        assert second - first >= 0.15 and third - second >= 0.3  # 0.2 s, then 0.4 s (±25 %)
        assert outbox.items(status="delivered") == [item]
        assert outbox.items(status="pending") == []


def test_a_receiver_that_is_down_is_retried_with_backoff_until_the_delivery_fails(
    settings: Settings, tokens: TokenMaker, serve: Any
) -> None:
    """Connection refused at every try: four tries (0.2, 0.4, 0.8 s apart ±25 %), then
    failed with the connection error; the service keeps answering."""
    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    settings = settings.model_copy(update={"webhook_url": url, "webhook_max_attempts": 4, **FAST})
    outbox = Outbox(serve(settings), tokens)
    begun = time.monotonic()
    enqueue_integrated(settings, 1)

    (item,) = wait_for(lambda: outbox.settled(1), 30, "the delivery to fail")

    assert time.monotonic() - begun >= 0.15 + 0.3 + 0.6
    assert item["status"] == "failed" and item["attempts"] == 4
    assert item["last_error"].startswith("ConnectError")
    assert item["delivered_at"] is None and item["next_attempt_at"] is None
    assert outbox.items(status="failed") == [item]


def test_without_a_webhook_url_nothing_is_kept_and_the_outbox_is_for_token_holders(
    settings: Settings, tokens: TokenMaker, serve: Any
) -> None:
    """No URL: enqueue stores nothing. The listing needs a token; a bad status is a 422."""
    service = serve(settings)
    outbox = Outbox(service, tokens)
    enqueue_integrated(settings, 1)
    assert outbox.items() == []
    url = f"{service.url}/v1/webhooks/deliveries"
    assert httpx.get(url, timeout=10).status_code == 401
    bad = httpx.get(url, params={"status": "lost"}, headers=outbox.headers, timeout=10)
    assert bad.status_code == 422
    assert bad.json()["details"][0]["field"] == "status"


def test_two_replicas_post_each_delivery_once_at_a_time(
    settings: Settings, tokens: TokenMaker, serve: Any
) -> None:
    """Two service processes on one database share the outbox: every post the receiver saw
    is an attempt the outbox counts, one delivery is never posted by both at once, and each
    is delivered by exactly one 2xx."""
    with Receiver(*([500] * 10), delay=0.02) as receiver:
        settings = settings.model_copy(update={"webhook_url": receiver.url, **FAST})
        outbox = Outbox(serve(settings, "one"), tokens)
        serve(settings, "two")
        for candidate in range(30):
            enqueue_integrated(settings, candidate)

        items = wait_for(lambda: outbox.settled(30), 60, "every delivery")

        assert {i["status"] for i in items} == {"delivered"}
        posts = Counter(h.delivery for h in receiver.hits)
        assert {i["delivery_id"]: i["attempts"] for i in items} == dict(posts)
        assert sum(posts.values()) == 30 + 10
        delivered = Counter(h.delivery for h in receiver.hits if h.answer == 200)
        assert set(delivered.values()) == {1} and len(delivered) == 30
        assert receiver.most_at_once == 1


@pytest.fixture
def hook_world(
    settings: Settings, tmp_path: Path, tokens: TokenMaker, request: pytest.FixtureRequest
) -> Iterator[tuple[WorkerWorld, Receiver]]:
    """A canonical repository guarded by the hooks, a service with a webhook to a receiver
    that answers as the test's parameter says (a status, or a hang longer than the test)."""
    answer = request.param
    with Receiver(default=answer) as receiver:
        hooked = settings.model_copy(
            update={"webhook_url": receiver.url, **FAST, "webhook_timeout_seconds": 30.0}
        )
        world = WorkerWorld(hooked, tmp_path, tokens).start().guard()
        try:
            yield world, receiver
        finally:
            world.close()


@pytest.mark.parametrize("hook_world", [HANG, 500], indirect=True)
def test_a_receiver_that_hangs_or_fails_does_not_delay_the_next_integration(
    hook_world: tuple[WorkerWorld, Receiver],
) -> None:
    """The first landing's `integrated` delivery is being posted (hanging, or failing and
    retried) while the worker lands the next candidate: it lands in about the first's time,
    far within the post's 30 s timeout, and its own delivery waits in the outbox."""
    world, receiver = hook_world
    first = world.ready("first")
    world.cutover()
    begun = time.monotonic()
    assert world.run_worker("--once").returncode == 0
    first_took = time.monotonic() - begun
    assert world.candidate(first)["status"] == "integrated"
    wait_for(lambda: receiver.hits, 30, "the first delivery's post")
    second = world.ready("second")

    begun = time.monotonic()
    result = world.run_worker("--once")
    second_took = time.monotonic() - begun

    assert result.returncode == 0, result.stderr
    assert world.candidate(second)["status"] == "integrated"
    print(f"webhook {receiver.default}: first landing {first_took:.2f} s, next {second_took:.2f} s")
    assert second_took < 2 * first_took + 5
    items = Outbox(world.service, world.tokens).items()
    assert [i["status"] for i in items] == ["pending", "pending"]
    if receiver.default == HANG:
        assert len(receiver.hits) == 1 and receiver.hits[0].ended is None  # still hanging
        assert receiver.hits[0].document["data"]["candidate_id"] == first
        assert [i["attempts"] for i in items] == [0, 1]  # newest first: the second waits


@pytest.mark.parametrize("hook_world", [200], indirect=True)
def test_a_block_its_resume_and_the_landing_are_posted_once_each_in_order(
    hook_world: tuple[WorkerWorld, Receiver],
) -> None:
    """Through the real flow in cutover: a push refused by a server hook blocks the candidate
    (`blocked`); after the hook is fixed the author resumes and the worker lands it
    (`followup_resolved`, then `integrated`). One signed post per delivery, as counted."""
    world, receiver = hook_world
    candidate = world.ready("refused")
    world.cutover()
    hook = world.canonical.bare / "hooks" / "pre-receive"
    guard = hook.read_text()
    hook.write_text("#!/bin/sh\necho 'size-check: refused: file too big' >&2\nexit 1\n")
    assert world.run_worker("--once").returncode == 0
    assert world.candidate(candidate)["status"] == "blocked"
    hook.write_text(guard)
    resumed = world.post("/v1/slugs/refused/resume", {}, world.reporter)
    assert resumed.status_code == 200, resumed.text
    assert world.run_worker("--once").returncode == 0
    assert world.candidate(candidate)["status"] == "integrated"

    outbox = Outbox(world.service, world.tokens)
    items = wait_for(lambda: outbox.settled(3), 30, "three deliveries")

    assert [i["kind"] for i in reversed(items)] == ["blocked", "followup_resolved", "integrated"]
    assert [i["attempts"] for i in items] == [1, 1, 1]
    assert [h.delivery for h in receiver.hits] == [i["delivery_id"] for i in reversed(items)]
    assert all(valid_signature(h) for h in receiver.hits)
    blocked, resolved, integrated = (h.document for h in receiver.hits)
    assert [h.headers["x-integrator-event"] for h in receiver.hits] == [
        blocked["event"],
        resolved["event"],
        integrated["event"],
    ]
    assert blocked["data"]["candidate_id"] == candidate
    assert blocked["data"]["slug"] == "refused"
    assert "size-check: refused" in json.dumps(blocked["data"]["conflict_evidence"])
    assert blocked["data"]["next_action"]
    assert resolved["data"]["followup_id"] == blocked["data"]["followup_id"]
    assert resolved["data"]["resolution"] == "integrated"
    assert integrated["data"]["candidate_id"] == candidate
    assert integrated["data"]["main_sha"] == world.canonical.head()


def test_a_claim_is_one_conditional_update_and_only_the_claim_that_posted_records(
    settings: Settings,
) -> None:
    """Claimed once, an item is nobody else's until its claim expires (time moved by the SQL
    clock's offset); the expired claim's late result then changes nothing."""
    settings = settings.model_copy(update={"webhook_url": "http://127.0.0.1:9/hook", **FAST})
    enqueue_integrated(settings, 5)
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    try:
        (item,) = due_ids(sessions, settings)
        with sessions() as session:
            first = claim(session, settings, item)
            assert first is not None and first.attempt == 1
            assert claim(session, settings, item) is None
            assert due_ids(sessions, settings) == []
        hold_ms = round((settings.webhook_timeout_seconds + CLAIM_MARGIN_SECONDS) * 1000)
        later = settings.model_copy(update={"sql_clock_offset_ms": hold_ms + 1000})
        with sessions() as session:
            second = claim(session, later, item)
            assert second is not None and second.attempt == 2
            assert not record_delivered(session, first)  # the expired claim's late answer
            assert record_failed(session, later, second, "HTTP 502") == "pending"
            row = session.get_one(WebhookDelivery, item)
            assert (row.status, row.attempts, row.last_error) == ("pending", 2, "HTTP 502")
            assert row.claimed_until_ms is None
    finally:
        engine.dispose()
