"""No idle wait: `POST /v1/queue/next` with `wait_seconds` long-polls, so a candidate that
becomes READY while the queue is empty is handed out within a second — whether it was queued
through this service process (which wakes the waiter) or through another replica on the same
database (which the waiter notices by looking again every half second). The real worker uses
it: with a 30 s poll interval, an idle worker still takes a new candidate at once."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from integrator.settings import Settings
from tests.builders import branch_pushed, finalize_ready, review_approved
from tests.support import ServiceProcess, TokenMaker
from tests.worker_support import WorkerWorld, wait_for

#: A lease long enough that the TTL cap (a quarter of it) does not shorten the waits below.
LONG_LEASE: dict[str, Any] = {
    "lease_ttl_seconds": 40.0,
    "lease_renew_interval_seconds": 5.0,
    "lease_renew_deadline_seconds": 10.0,
    "authorize_margin_seconds": 5.0,
}


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    with WorkerWorld(settings, tmp_path, tokens, lease=LONG_LEASE).start() as world:
        yield world


def acquire(world: WorkerWorld) -> dict[str, Any]:
    answer = world.post("/v1/lease/acquire", {"holder": "long-poller"}, world.integrator)
    assert answer.status_code == 200, answer.text
    grant: dict[str, Any] = answer.json()
    return {"epoch": grant["epoch"], "token": grant["token"]}


class Poll:
    """One `queue/next` long poll in a thread of its own; when it was answered, and how."""

    def __init__(self, url: str, headers: dict[str, str], body: dict[str, Any]) -> None:
        self.response: httpx.Response | None = None
        self.answered_at = 0.0
        self.thread = threading.Thread(target=self._run, args=(url, headers, body))
        self.thread.start()

    def _run(self, url: str, headers: dict[str, str], body: dict[str, Any]) -> None:
        with httpx.Client(timeout=60) as client:
            self.response = client.post(f"{url}/v1/queue/next", json=body, headers=headers)
        self.answered_at = time.monotonic()

    def result(self) -> httpx.Response:
        self.thread.join(timeout=60)
        assert self.response is not None
        return self.response


def make_ready(world: WorkerWorld, url: str, slug: str) -> tuple[float, int]:
    """Approve, push and finalize a branch through the service at `url`: the time the
    finalize_ready was answered (the candidate is queued in the same transaction), and the
    candidate's id."""
    branch = f"feat/{slug}"
    sha = world.canonical.branch(branch, path=f"{slug}.txt", content=f"{slug}\n")
    with httpx.Client(timeout=30) as client:
        for envelope in (review_approved(slug), branch_pushed(branch, sha)):
            assert client.post(f"{url}/v1/events", json=envelope,
                               headers=world.reporter).status_code == 201  # fmt: skip
        answer = client.post(f"{url}/v1/events", json=finalize_ready(slug, branch, sha),
                             headers=world.reporter)  # fmt: skip
    finalized = time.monotonic()
    assert answer.status_code == 201, answer.text
    assert answer.json()["candidate"]["status"] == "queued"
    return finalized, int(answer.json()["candidate"]["id"])


def test_an_empty_queue_answers_204_at_once_without_wait_and_after_the_wait_with_it(
    world: WorkerWorld,
) -> None:
    grant = acquire(world)
    started = time.monotonic()
    now = world.post("/v1/queue/next", grant, world.integrator)
    assert now.status_code == 204 and time.monotonic() - started < 1.0
    started = time.monotonic()
    waited = world.post("/v1/queue/next", {**grant, "wait_seconds": 1.5}, world.integrator)
    took = time.monotonic() - started
    assert waited.status_code == 204
    assert 1.4 <= took < 4.0, took


def test_a_candidate_queued_during_the_wait_is_handed_out_within_a_second(
    world: WorkerWorld,
) -> None:
    grant = acquire(world)
    poll = Poll(world.service.url, world.integrator, {**grant, "wait_seconds": 20})
    time.sleep(1.0)  # the poll is waiting on an empty queue
    assert poll.response is None
    finalized, _ = make_ready(world, world.service.url, "woken")
    answer = poll.result()
    assert answer.status_code == 200, answer.text
    assert answer.json()["slug"] == "woken" and answer.json()["status"] == "in_progress"
    latency = poll.answered_at - finalized
    print(f"finalize_ready -> handed out (same process): {latency:.3f} s")
    assert latency < 1.0, latency


def test_a_candidate_queued_through_another_replica_is_noticed_by_looking_again(
    world: WorkerWorld,
) -> None:
    """The other replica's admission does not wake this process: the waiter's own look at the
    database every half second finds it."""
    other = ServiceProcess(world.settings, world.tmp_path / "replica.log")
    other.start()
    try:
        grant = acquire(world)
        poll = Poll(world.service.url, world.integrator, {**grant, "wait_seconds": 20})
        time.sleep(1.0)
        finalized, _ = make_ready(world, other.url, "elsewhere")
        answer = poll.result()
    finally:
        other.stop()
    assert answer.status_code == 200, answer.text
    assert answer.json()["slug"] == "elsewhere"
    latency = poll.answered_at - finalized
    print(f"finalize_ready -> handed out (other replica): {latency:.3f} s")
    assert latency < 2.0, latency


def test_the_wait_is_capped_at_a_quarter_of_the_lease_ttl(
    settings: Settings, tmp_path: Path, tokens: TokenMaker
) -> None:
    """A 3 s lease: a 20 s wait answers after about 0.75 s, far from the lease's expiry."""
    world = WorkerWorld(settings, tmp_path, tokens).start()  # the 3 s test lease
    try:
        grant = acquire(world)
        started = time.monotonic()
        answer = world.post("/v1/queue/next", {**grant, "wait_seconds": 20}, world.integrator)
        took = time.monotonic() - started
    finally:
        world.close()
    assert answer.status_code == 204
    assert 0.7 <= took < 2.5, took


@pytest.mark.parametrize("wait", [-1, 30.5, "soon"])
def test_a_wait_outside_0_to_30_seconds_is_bad_input(world: WorkerWorld, wait: Any) -> None:
    grant = acquire(world)
    answer = world.post("/v1/queue/next", {**grant, "wait_seconds": wait}, world.integrator)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["code"] and body["message"]
    assert [d["field"] for d in body["details"]] == ["wait_seconds"]


def test_an_idle_worker_takes_a_new_candidate_within_a_second_and_stops_promptly(
    world: WorkerWorld,
) -> None:
    """The real worker with a 30 s poll interval: a candidate finalized while it idles is
    evaluated (shadow: `predicted`) within a second plus its check; SIGTERM while it idles
    ends it within the long poll's 5 s."""
    worker = world.start_worker("--poll-interval", "30", "--check", "true")
    try:
        wait_for(lambda: world.lease().get("holder"), timeout=30, what="the worker's lease")
        time.sleep(1.5)  # idle: the worker's first look found nothing
        finalized, candidate = make_ready(world, world.service.url, "idle")
        done = wait_for(
            lambda: world.candidate(candidate)["status"] in ("predicted", "blocked"),
            timeout=30,
            what="the idle worker's evaluation",
        )
        latency = time.monotonic() - finalized
        assert done
        assert world.candidate(candidate)["status"] == "predicted"
        print(f"finalize_ready -> predicted by an idle worker (check `true`): {latency:.3f} s")
        assert latency < 3.0, latency
        time.sleep(1.0)  # idle again, inside a long poll
        stop = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
        assert time.monotonic() - stop < 8.0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
