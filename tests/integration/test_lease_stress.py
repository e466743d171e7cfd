"""Stress: 16+ contender processes, two service replicas, SIGKILL and SIGSTOP.

Contenders (`lease_contender.py`, each a `LeaseKeeper`) fight for a 2 s lease
for 20 s through two `integrator serve` processes sharing one database. The
current holder is killed with SIGKILL (and replaced by a new contender) or
paused with SIGSTOP past the TTL, then resumed. Judged afterwards from the
contenders' logs (SQL times the service answered) and from the events table:
no two grants overlap, epochs rise by one per grant, each epoch has one
holder, and a killed holder is taken over within TTL + 2 retry periods.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from integrator.db import make_engine
from integrator.settings import Settings
from integrator.worker.lease_client import ms_of
from tests.integration.lease_contender import RETRY_INTERVAL
from tests.lease_support import lease_events
from tests.support import REPO_ROOT, ServiceProcess, TokenMaker, settings_env

pytestmark = pytest.mark.stress

CONTENDERS = 16
RUN_SECONDS = 20.0
#: A loaded machine does less per second: run on until the chaos it needs has happened.
MAX_RUN_SECONDS = 90.0
TTL = 2.0
TAKEOVER_BOUND_MS = round((TTL + 2 * RETRY_INTERVAL) * 1000)
CHAOS_EVERY = 3.0


@dataclass
class Chaos:
    """What the test did to whom, in wall-clock ms (the same host clock as SQL time)."""

    kills: list[tuple[int, str, int]] = field(default_factory=list)
    stops: list[tuple[int, str, int]] = field(default_factory=list)


class Contenders:
    def __init__(self, services: list[ServiceProcess], settings: Settings, token: str, logs: Path):
        self.services, self.settings, self.token, self.logs = services, settings, token, logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.stderr: list[IO[bytes]] = []
        self.names = (f"c{n:02d}" for n in itertools.count())

    def spawn(self) -> str:
        holder = next(self.names)
        service = self.services[len(self.processes) % len(self.services)]
        env = settings_env(self.settings, INTEGRATOR_URL=service.url, INTEGRATOR_TOKEN=self.token)
        self.stderr.append((self.logs / f"{holder}.err").open("wb"))
        self.processes[holder] = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.lease_contender", holder,
             str(self.logs / f"{holder}.jsonl"), str(len(self.processes))],
            env=env, cwd=REPO_ROOT, stderr=self.stderr[-1],
        )  # fmt: skip
        return holder

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
            process.wait(timeout=10)
        for stream in self.stderr:
            stream.close()


@pytest.fixture
def stress_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "lease_ttl_seconds": TTL,
            "lease_renew_interval_seconds": 0.5,
            "lease_renew_deadline_seconds": 1.0,
            "authorize_margin_seconds": 0.5,
        }
    )


@pytest.fixture
def replicas(stress_settings: Settings, tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    services = [ServiceProcess(stress_settings, tmp_path / f"service-{n}.log") for n in range(2)]
    try:
        for service in services:
            service.start()
        yield services
    finally:
        for service in services:
            service.stop()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def run_chaos(contenders: Contenders, reader: str, chaos: Chaos) -> int:
    """Kill or pause the current holder every CHAOS_EVERY s, for RUN_SECONDS and until two
    kills and two pauses can be judged (at most MAX_RUN_SECONDS); return the end time (ms)."""
    started = time.monotonic()
    actions = itertools.cycle(("kill", "stop"))
    paused: dict[str, float] = {}
    next_action = started + 2.0
    last_action = started
    url = contenders.services[0].url

    def acting() -> bool:
        enough = len(chaos.kills) >= 2 and len(chaos.stops) >= 2
        return time.monotonic() - started < RUN_SECONDS or not enough

    def done() -> bool:
        settled = time.monotonic() - last_action > TTL + 3 and not paused
        return time.monotonic() - started >= MAX_RUN_SECONDS or (not acting() and settled)

    while not done():
        for holder, resume_at in list(paused.items()):
            if time.monotonic() >= resume_at:
                contenders.processes[holder].send_signal(signal.SIGCONT)
                del paused[holder]
        if acting() and time.monotonic() >= next_action:
            state = httpx.get(f"{url}/v1/lease", headers={"Authorization": f"Bearer {reader}"})
            body = state.json()
            victim = body["holder"]
            if body["held"] and victim in contenders.processes and victim not in paused:
                action = next(actions)
                if action == "kill":
                    contenders.processes[victim].kill()
                    contenders.processes[victim].wait()  # dead by the time we note the time
                    chaos.kills.append((now_ms(), victim, body["epoch"]))
                    contenders.spawn()
                else:
                    contenders.processes[victim].send_signal(signal.SIGSTOP)
                    chaos.stops.append((now_ms(), victim, body["epoch"]))
                    paused[victim] = time.monotonic() + TTL + 1.0
                last_action = time.monotonic()
                next_action = last_action + CHAOS_EVERY
        time.sleep(0.05)
    return now_ms()


def read_logs(logs: Path) -> dict[int, list[dict[str, Any]]]:
    """Every contender's log lines, by epoch."""
    by_epoch: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(logs.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                by_epoch[record["epoch"]].append(record)
    return by_epoch


def intervals_from_logs(
    by_epoch: dict[int, list[dict[str, Any]]],
    deaths: dict[str, int],
    committed_releases: dict[int, int],
) -> dict[int, tuple[int, int]]:
    """What each holder believed: [grant, min(last confirmed expiry, release, death)), SQL ms.

    A holder stops acting before it sends its release ("releasing"); if it is killed
    (by the chaos or at teardown) before logging the answer, the release the service
    committed ends its interval. A SIGKILLed holder believes nothing after its death."""
    result = {}
    for epoch, records in by_epoch.items():
        grants = [r for r in records if r["kind"] == "acquired"]
        if not grants:
            continue
        start = grants[0]["at_ms"]
        end = max(r["expires_at_ms"] for r in records if "expires_at_ms" in r)
        released = [r["at_ms"] for r in records if r["kind"] == "released"]
        if any(r["kind"] == "releasing" for r in records) and epoch in committed_releases:
            released.append(committed_releases[epoch])
        died = [deaths[grants[0]["holder"]]] if grants[0]["holder"] in deaths else []
        result[epoch] = (start, min([end, *released, *died]))
    return result


def test_many_contenders_on_two_replicas_never_overlap_and_take_over_after_kills(
    stress_settings: Settings, replicas: list[ServiceProcess], tokens: TokenMaker, tmp_path: Path
) -> None:
    """16+ processes, kills and pauses: one holder at a time, rising epochs, prompt takeovers."""
    logs = tmp_path / "contenders"
    logs.mkdir()
    contenders = Contenders(replicas, stress_settings, tokens("integrator"), logs)
    chaos = Chaos()
    try:
        for _ in range(CONTENDERS):
            contenders.spawn()
        end_ms = run_chaos(contenders, tokens("reader"), chaos)
    finally:
        contenders.stop_all()

    engine = make_engine(stress_settings)
    try:
        events = lease_events(engine)
    finally:
        engine.dispose()
    grants = [e.fields for e in events if e.type in ("lease_acquired", "lease_taken_over")]
    released = {e.fields["epoch"]: e.fields for e in events if e.type == "lease_released"}
    by_epoch = read_logs(logs)
    committed = {epoch: ms_of(fields["released_at"]) for epoch, fields in released.items()}
    log_intervals = intervals_from_logs(by_epoch, {h: t for t, h, _ in chaos.kills}, committed)

    # Epochs rise by exactly one per grant, in commit order; each names its predecessor.
    epochs = [g["epoch"] for g in grants]
    assert epochs == list(range(1, len(grants) + 1))
    assert all(g["previous_epoch"] == g["epoch"] - 1 for g in grants)

    # Each epoch has exactly one holder, and the contenders agree with the events. A grant
    # nobody logged is one whose holder was killed before it could: by the chaos, or at
    # teardown (the last grant, committed as every contender was being killed).
    killed = {holder for _, holder, _ in chaos.kills}
    for grant in grants:
        holders = {r["holder"] for r in by_epoch.get(grant["epoch"], []) if r["kind"] == "acquired"}
        torn_down = grant is grants[-1] and ms_of(grant["acquired_at"]) >= end_ms - 1000
        unlogged = grant["holder"] in killed or torn_down
        assert holders == {grant["holder"]} or (not holders and unlogged), grant
    assert set(log_intervals) <= set(epochs)

    # No overlap, judged from the events (the row's own expiry for takeovers)...
    for before, after in itertools.pairwise(grants):
        end = released.get(before["epoch"], {}).get("released_at") or after["previous_expires_at"]
        assert ms_of(end) <= ms_of(after["acquired_at"]), (before, after)
    # ...and from what the contenders were told.
    ordered = sorted(log_intervals.items())
    for (e1, (_, end1)), (e2, (start2, _)) in itertools.pairwise(ordered):
        assert end1 <= start2, f"epoch {e1} (until {end1}) overlaps epoch {e2} (from {start2})"

    # A killed holder is taken over within TTL + 2 retry periods.
    starts = {g["epoch"]: ms_of(g["acquired_at"]) for g in grants}
    judged = [k for k in chaos.kills if k[0] + TAKEOVER_BOUND_MS + 1000 < end_ms]
    for killed_at, holder, epoch in judged:
        successor = starts.get(epoch + 1)
        assert successor is not None, f"nobody took over from {holder} (epoch {epoch})"
        assert successor - killed_at <= TAKEOVER_BOUND_MS, (holder, successor - killed_at)

    # A paused holder comes back to a dead grant: it fences itself or is refused, and a
    # release the service accepted can only be one sent before the pause.
    resumed = [s for s in chaos.stops if s[0] + round((TTL + 2) * 1000) < end_ms]
    for stopped_at, holder, epoch in resumed:
        mine = {r["kind"]: r for r in by_epoch.get(epoch, []) if r["holder"] == holder}
        assert {"lost", "self_fenced", "released"} & set(mine), (holder, epoch, mine)
        if "released" in mine:
            assert mine["released"]["at_ms"] <= stopped_at + 500, mine["released"]

    summary = {
        "grants": len(grants),
        "takeovers": sum(1 for e in events if e.type == "lease_taken_over"),
        "kills": len(chaos.kills),
        "stops": len(chaos.stops),
        "contenders": len(contenders.processes),
        "takeover_after_kill_ms": [starts.get(e + 1, 0) - t for t, _, e in judged],
    }
    print(json.dumps(summary))
    assert len(grants) >= 10 and len(chaos.kills) >= 2 and len(chaos.stops) >= 2, summary
    assert len(contenders.processes) >= CONTENDERS
    errors = [p.read_text() for p in logs.glob("*.err") if "Traceback" in p.read_text()]
    assert not errors, errors[0]
    assert os.environ.get("INTEGRATOR_TOKEN") is None
