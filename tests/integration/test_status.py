"""`GET /v1/status` and `integrator status`: what an operator reads, and a stalled queue —
a check that hangs, a worker that died, a hook that stopped calling — reported with its cause
and what to do (exit 1), its transition posted to the webhook once by two replicas."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from integrator.api.app import create_app
from integrator.cli.status import render
from integrator.settings import Settings
from tests.builders import branch_pushed, finalize_ready, review_approved
from tests.gitrepos import Canonical
from tests.integration.test_metrics import samples_of, value
from tests.integration.test_webhooks import Receiver
from tests.support import ServiceProcess, TokenMaker, run_cli, settings_env
from tests.worker_support import WorkerWorld, kill_group_of_pidfile, wait_for

# ---- the document, in-process -------------------------------------------------------------


class Api:
    def __init__(self, client: TestClient, tokens: TokenMaker, canonical: Canonical) -> None:
        self.client = client
        self.canonical = canonical
        self.reader = {"Authorization": f"Bearer {tokens('reader')}"}
        self.reporter = {"Authorization": f"Bearer {tokens('reporter')}"}
        self.operator = {"Authorization": f"Bearer {tokens('operator')}"}
        self.integrator = {"Authorization": f"Bearer {tokens('integrator')}"}

    def emit(self, envelope: dict[str, Any]) -> None:
        response = self.client.post("/v1/events", json=envelope, headers=self.reporter)
        assert response.status_code == 201, response.text

    def ready(self, slug: str) -> None:
        sha = self.canonical.branch(f"feat/{slug}")
        self.emit(review_approved(slug))
        self.emit(branch_pushed(f"feat/{slug}", sha))
        self.emit(finalize_ready(slug, f"feat/{slug}", sha))

    def status(self) -> dict[str, Any]:
        response = self.client.get("/v1/status", headers=self.reader)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def api(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[Api]:
    canonical = Canonical(tmp_path)
    configured = settings.model_copy(
        update={"repo": str(canonical.bare), "conditions_interval_seconds": 0}
    )
    with TestClient(create_app(configured)) as client:
        yield Api(client, tokens, canonical)


def test_the_status_shows_depth_the_oldest_waiting_and_each_turn(api: Api) -> None:
    """A candidate without review waits and says why; queued ones list their turn, unknown
    until a turn has been taken, then estimated from it."""
    sha = api.canonical.branch("feat/unreviewed")
    api.emit(branch_pushed("feat/unreviewed", sha))
    api.emit(finalize_ready("unreviewed", "feat/unreviewed", sha))
    for slug in ("first", "second", "third"):
        api.ready(slug)

    body = api.status()

    assert body["ok"] is True and body["conditions"] == []
    assert body["mode"]["mode"] == "shadow" and body["mode"]["forced"] is False
    assert body["lease"]["held"] is False
    queue = body["queue"]
    assert queue["depth"] == {
        "waiting": 1, "queued": 3, "in_progress": 0, "predicted": 0, "blocked": 0,
    }  # fmt: skip
    oldest = queue["oldest_waiting"]
    assert oldest["slug"] == "unreviewed" and oldest["unmet"] == ["review_approved"]
    assert oldest["why"][0].startswith("review_approved: no review_approved event")
    assert [(t["slug"], t["ahead"], t["eta_seconds"]) for t in queue["turns"]] == [
        ("first", 0, None), ("second", 1, None), ("third", 2, None),
    ]  # fmt: skip
    assert queue["turn_seconds_median"] is None

    grant = api.client.post("/v1/lease/acquire", json={"holder": "bot"}, headers=api.integrator)
    fence = {"epoch": grant.json()["epoch"], "token": grant.json()["token"]}
    handed = api.client.post("/v1/queue/next", json=fence, headers=api.integrator).json()
    outcome = {**fence, "outcome": "would_integrate", "attempt": "a1"}
    api.client.post(f"/v1/candidates/{handed['id']}/outcome", json=outcome, headers=api.integrator)
    api.client.post("/v1/queue/next", json=fence, headers=api.integrator)

    queue = api.status()["queue"]
    assert queue["turns_sampled"] == 1 and queue["turn_seconds_median"] is not None
    median = queue["turn_seconds_median"]
    assert [(t["slug"], t["status"], t["ahead"]) for t in queue["turns"]] == [
        ("second", "in_progress", 0), ("third", "queued", 1),
    ]  # fmt: skip
    assert queue["turns"][1]["eta_seconds"] == round(median)


def test_a_forced_cutover_says_by_whom_and_why(api: Api) -> None:
    forced = api.client.post(
        "/v1/cutover", json={"reason": "release day", "force": True}, headers=api.operator
    )
    assert forced.status_code == 200, forced.text
    mode = api.status()["mode"]
    assert mode["mode"] == "cutover" and mode["forced"] is True
    assert mode["forced_by"] == "operator-3" and mode["forced_reason"] == "release day"


# ---- a stalled queue, through real processes ------------------------------------------------

#: Small real-time thresholds: the conditions appear within seconds.
QUICK: dict[str, Any] = {
    "check_timeout_seconds": 2.0,
    "no_holder_after_seconds": 1.0,
    "stall_after_seconds": 1.0,
    "hook_silent_after_seconds": 3.0,
    "conditions_interval_seconds": 0.2,
}


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    with WorkerWorld(settings.model_copy(update=QUICK), tmp_path, tokens).start() as world:
        yield world


def status_cli(world: WorkerWorld, *args: str) -> Any:
    env = settings_env(
        world.settings, INTEGRATOR_URL=world.service.url, INTEGRATOR_TOKEN=world.tokens("reader")
    )
    return run_cli("status", *args, env=env)


def reports(world: WorkerWorld, code: str) -> Any:
    """`integrator status` once it exits 1 naming `code`, else None."""
    result = status_cli(world)
    return result if result.returncode == 1 and f"  {code} (since" in result.stdout else None


def test_a_hanging_check_then_a_dead_worker_are_reported_with_what_to_do(
    world: WorkerWorld, tmp_path: Path
) -> None:
    """A check that hangs: check_overdue names the candidate. The worker is killed: its
    silence (holder_silent), then the empty lease (no_holder). Exit 1 each time."""
    candidate = world.ready("hangs")
    pidfile = tmp_path / "check.pgid"
    worker = world.start_worker("--check", f"echo $$ > {pidfile}; sleep 600", "--holder", "bot-1")
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the check")
        overdue = wait_for(lambda: reports(world, "check_overdue"), 30, "check_overdue")
        assert (
            "hangs (" in overdue.stdout and "what to do: look at the worker's log" in overdue.stdout
        )
        assert "holder_silent" not in overdue.stdout  # the worker still renews
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        kill_group_of_pidfile(pidfile)
        if worker.poll() is None:
            worker.kill()
    silent = wait_for(lambda: reports(world, "holder_silent"), 30, "holder_silent")
    assert "lease holder bot-1" in silent.stdout and "restart it" in silent.stdout
    wait_for(lambda: reports(world, "no_holder"), 30, "no_holder")
    as_json = status_cli(world, "--json")
    assert as_json.returncode == 1
    body = json.loads(as_json.stdout)
    codes = [c["code"] for c in body["conditions"]]
    assert {"no_holder", "holder_silent", "check_overdue"} <= set(codes)
    assert body["queue"]["turns"][0]["id"] == candidate
    by_code: dict[str, list[str]] = {}
    for event in world.events("condition_raised", "condition_cleared"):
        by_code.setdefault(event.fields["code"], []).append(event.type)
    for code, kinds in by_code.items():  # raised, cleared, raised…: each transition once
        assert kinds == ["condition_raised", "condition_cleared"] * (len(kinds) // 2) + [
            "condition_raised"
        ] * (len(kinds) % 2), (code, kinds)


def test_a_hook_that_stopped_calling_is_reported(world: WorkerWorld) -> None:
    """Hooks installed and called; then they are gone and work keeps arriving: hook_silent."""
    world.guard()
    world.ready("seen")  # its push calls the hook
    env = settings_env(world.settings, INTEGRATOR_URL=world.service.url)
    removed = run_cli("hooks", "uninstall", str(world.canonical.bare), env=env)
    assert removed.returncode == 0, removed.stderr
    time.sleep(0.5)  # past the activity slack (a tenth of the 3 s threshold)
    world.ready("unseen")
    silent = wait_for(lambda: reports(world, "hook_silent"), 30, "hook_silent")
    assert "what to do: run `integrator hooks check REPO.git`" in silent.stdout


def test_two_replicas_post_a_raised_condition_once(
    settings: Settings, tmp_path: Path, tokens: TokenMaker
) -> None:
    """Two service processes on one database evaluate every 0.1 s: the receiver gets one
    `condition_raised` per condition, not one per replica."""
    with Receiver() as receiver:
        extra = {"webhook_url": receiver.url, "webhook_poll_seconds": 0.05,
                 "conditions_interval_seconds": 0.1}  # fmt: skip
        world = WorkerWorld(settings.model_copy(update={**QUICK, **extra}), tmp_path, tokens)
        other = ServiceProcess(world.settings, tmp_path / "replica.log")
        world.start()
        other.start()
        try:
            world.ready("nobody-takes-it")

            def raised() -> list[str]:
                return [h.document["data"]["code"] for h in receiver.hits
                        if h.document["event"] == "condition_raised"]  # fmt: skip

            wait_for(lambda: {"no_holder", "queue_stalled"} <= set(raised()), 30, "raised")
            time.sleep(1.0)  # ten more rounds of each replica
            counts = Counter(raised())
        finally:
            other.stop()
            world.close()
    assert counts == {"no_holder": 1, "queue_stalled": 1}
    assert len({h.delivery for h in receiver.hits}) == len(receiver.hits)


# ---- the pause, the lanes and the flake rate ----------------------------------------------


def test_the_status_shows_the_pause_and_the_lanes(api: Api) -> None:
    """One document: the pause in force (who, why, since, until, a freeze) and queued
    candidates per lane, in the JSON and in the text `integrator status` prints."""
    for slug in ("first", "second", "fix"):
        api.ready(slug)
    promoted = api.client.post(
        "/v1/slugs/fix/promote", json={"reason": "incident"}, headers=api.operator
    )
    assert promoted.status_code == 200, promoted.text
    body = api.status()
    assert body["pause"] is None
    assert body["queue"]["lanes"] == {"hotfix": 1, "normal": 2}
    assert body["flake_rate"] == {"flaky": 0, "passed": 0, "window": 100, "rate": None}
    text = render(body)
    assert "queued by lane: 1 hotfix (taken first), 2 normal" in text
    assert "flake rate: no passing check yet" in text and "paused" not in text

    paused = api.client.post(
        "/v1/queue/pause",
        json={"reason": "release freeze", "until": "2999-01-01T00:00:00Z", "reject_new": True},
        headers=api.operator,
    )
    assert paused.status_code == 200, paused.text
    body = api.status()
    pause = body["pause"]
    assert pause["reason"] == "release freeze" and pause["paused_by"] == "operator-3"
    assert pause["until"] == "2999-01-01T00:00:00Z" and pause["reject_new"] is True
    assert pause["paused_at"] and pause["summary"].startswith("the queue is paused by operator-3")
    assert body["ok"] is True  # paused, not stalled
    shown = api.client.get("/v1/queue/pause", headers=api.reader).json()
    assert shown == {"paused": True, **pause}
    text = render(body)
    assert "paused: the queue is paused by operator-3 since " in text
    assert "until 2999-01-01T00:00:00Z: release freeze" in text and "frozen" in text
    assert api.client.post("/v1/queue/resume-processing", headers=api.operator).status_code == 200
    assert api.status()["pause"] is None


@pytest.fixture
def shadow(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    with WorkerWorld(settings, tmp_path, tokens).start() as world:
        yield world


def test_a_flaky_pass_by_a_real_worker_shows_in_the_status_and_the_metrics(
    shadow: WorkerWorld, tmp_path: Path
) -> None:
    """The real worker with `--check-retries` in shadow: a check that fails once then passes,
    one that passes at once, one that always fails. One flaky pass of two: 50 %, in
    `integrator status` (JSON and text) and in /metrics."""
    marker = tmp_path / "flaked-once"
    check = (
        "if [ -e broken.txt ]; then exit 5; fi; "
        f"if [ -e flaky.txt ] && [ ! -e {marker} ]; then touch {marker}; exit 1; fi; echo ok"
    )
    for slug in ("flaky", "clean", "broken"):
        shadow.ready(slug, path=f"{slug}.txt")
    done = shadow.run_worker("--once", "--check", check, "--check-retries", "1")
    assert done.returncode == 0, done.stderr
    assert len(shadow.events("check_flaky")) == 1

    expected = {"flaky": 1, "passed": 2, "window": 100, "rate": 0.5}
    as_json = status_cli(shadow, "--json")
    assert json.loads(as_json.stdout)["flake_rate"] == expected, as_json.stderr
    text = status_cli(shadow).stdout
    assert "flake rate: 50.0% (1 of the last 2 passes needed a rerun of a check)" in text

    scraped = httpx.get(shadow.url("/metrics"), headers=shadow.operator, timeout=30)
    samples = samples_of(scraped.text)
    assert value(samples, "integrator_checks_flaky_total") == 1
    assert value(samples, "integrator_flake_rate") == 0.5
    assert value(samples, "integrator_flake_rate_passes") == 2
    assert value(samples, "integrator_flake_rate_flaky") == 1
