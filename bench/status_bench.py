"""What an operator's look costs on a long history: `GET /v1/status`, `integrator status` and
`/metrics`, with 100,000 events and 10,000 candidates stored.

Per backend: a throw-away database filled in bulk (candidates mostly finished — integrated,
superseded, closed — and a few hundred in each unfinished state; events of the kinds a busy
queue records: submissions, status changes, outcomes, push verdicts in shadow and cutover,
lease grants and takeovers), then a real `integrator serve` (background evaluation off, so
that only the measured requests run). Sequential requests from one client over a kept-alive
connection; `integrator status` is a new process each time (its start-up included). The first
scrape of a process folds the push verdicts older than five minutes into its running totals
once; it is reported apart, the later scrapes are the p50/p99.

    .venv/bin/python -m bench status [--samples=N] [--events=N] [--candidates=N]
"""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import insert

from bench import common
from bench.common import BACKENDS, make_token, service, settings_env, temp_database
from integrator.db import make_engine
from integrator.models import Candidate, Event
from integrator.settings import Settings, get_settings

SAMPLES = 100
CLI_SAMPLES = 20
EVENTS = 100_000
CANDIDATES = 10_000
REPOSITORY = "app"
#: Unfinished candidates in each state; the rest are finished.
UNFINISHED = {"waiting": 200, "queued": 300, "in_progress": 1, "predicted": 100, "blocked": 50}
FINISHED = ("integrated",) * 8 + ("superseded", "closed")
#: Event kinds after the per-candidate ones, with their weights.
FILLER = {
    "push_allowed": 6,
    "push_rejected": 1,
    "push_would_reject": 1,
    "branch_pushed": 3,
    "review_approved": 2,
    "would_integrate": 1,
    "lease_acquired": 0.05,
    "lease_taken_over": 0.01,
}
REASONS = ("unprotected", "registered", "not_the_integrator", "no_registration")


def option(argv: list[str], name: str, default: int) -> int:
    for arg in argv:
        if arg.startswith(f"--{name}="):
            return int(arg.split("=", 1)[1])
    return default


def seed(settings: Settings, events: int, candidates: int) -> None:
    """Bulk rows: each candidate with its submission and status changes, then filler events
    up to `events`, over the last 90 days."""
    rng = random.Random(18)
    now = datetime.now(UTC)
    start = now - timedelta(days=90)
    states = [s for s, n in UNFINISHED.items() for _ in range(n)]
    states += [rng.choice(FINISHED) for _ in range(candidates - len(states))]
    rng.shuffle(states)
    candidate_rows: list[dict[str, Any]] = []
    event_rows: list[dict[str, Any]] = []

    def event(kind: str, key: str, at: datetime, **fields: Any) -> None:
        event_rows.append({
            "type": kind, "repository": REPOSITORY, "natural_key": key, "content_hash": "0" * 64,
            "slug": fields.get("slug"), "branch": fields.get("branch"), "sha": fields.get("sha"),
            "fields": fields, "actor": "bench", "recorded_at": at,
        })  # fmt: skip

    for n, state in enumerate(states, start=1):
        created = start + (now - start) * (n / candidates)
        done = created + timedelta(minutes=rng.uniform(2, 90))
        slug, branch, sha = f"s{n}", f"feat/s{n}", f"{n:040x}"
        candidate_rows.append({
            "id": n, "repository": REPOSITORY, "slug": slug, "branch": branch, "sha": sha,
            "status": state, "position": n, "finalize_seq": n, "unmet": [],
            "epoch": 1 if state == "in_progress" else None, "created_at": created,
            "updated_at": done if state in FINISHED else created,
        })  # fmt: skip
        ids = {"candidate_id": n, "slug": slug, "branch": branch, "sha": sha}
        event("finalize_ready", f"f{n}", created, **ids)
        event("candidate_status_changed", f"c{n}q", created, to="queued", **ids)
        if state in ("integrated", "predicted", "blocked", "in_progress"):
            event("candidate_status_changed", f"c{n}p", created, to="in_progress", **ids)
        if state in FINISHED or state in ("predicted", "blocked"):
            event("candidate_status_changed", f"c{n}d", done, to=state, **ids)
        if state == "integrated":
            event("integration_completed", f"i{n}", done, **ids)
    kinds, weights = zip(*FILLER.items(), strict=True)
    for n in itertools.count():
        if len(event_rows) >= events:
            break
        kind = rng.choices(kinds, weights)[0]
        at = start + (now - start) * rng.random()
        mode = "cutover" if at > start + timedelta(days=45) else "shadow"
        event(kind, f"x{n}", at, mode=mode, reason_code=rng.choice(REASONS), epoch=n)
    event_rows.sort(key=lambda row: row["recorded_at"])  # the log's order is its time's order
    engine = make_engine(settings)
    try:
        with engine.begin() as connection:
            connection.execute(insert(Candidate), candidate_rows)
            for chunk in range(0, len(event_rows), 10_000):
                connection.execute(insert(Event), event_rows[chunk : chunk + 10_000])
    finally:
        engine.dispose()


def timed_get(http: httpx.Client, path: str, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = http.get(path)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return samples


def seeded(backend: str, url: str, argv: list[str]) -> Settings:
    """The service's settings on `url`, its database seeded with the history the benches read
    (`--events`, `--candidates`); background loops off, so that only requests are timed."""
    settings = get_settings(
        database_url=url,
        repository=REPOSITORY,
        conditions_interval_seconds=0,
        main_watch_interval_seconds=0,
    )
    began = time.perf_counter()
    seed(settings, option(argv, "events", EVENTS), option(argv, "candidates", CANDIDATES))
    print(f"{backend}: seeded in {time.perf_counter() - began:.1f} s", flush=True)
    return settings


def run_backend(backend: str, argv: list[str]) -> list[common.Row]:
    samples = option(argv, "samples", SAMPLES)
    rows: list[common.Row] = []

    def record(name: str, times: list[float]) -> None:
        rows.append(common.latency_row(backend, name, times))

    with temp_database(backend) as url:
        settings = seeded(backend, url, argv)
        token = make_token(settings, "reader")
        with service(settings) as base:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
                record("/metrics (first scrape of the process)", timed_get(http, "/metrics", 1))
                record("/metrics", timed_get(http, "/metrics", samples))
                timed_get(http, "/v1/status", 1)  # records the conditions' first transitions
                record("GET /v1/status", timed_get(http, "/v1/status", samples))
            env = {**settings_env(settings), "INTEGRATOR_URL": base, "INTEGRATOR_TOKEN": token}
            command = [sys.executable, "-m", "integrator", "status", "--json"]
            cli = []
            for _ in range(CLI_SAMPLES):
                started = time.perf_counter()
                done = subprocess.run(command, env=env, capture_output=True)
                cli.append(time.perf_counter() - started)
                assert done.returncode in (0, 1), done.stderr
            record("`integrator status --json` (a new process)", cli)
    return rows


def main(argv: list[str]) -> None:
    events, candidates = option(argv, "events", EVENTS), option(argv, "candidates", CANDIDATES)
    print(f"{events} events and {candidates} candidates stored; sequential, one client")
    results = [row for backend in BACKENDS for row in run_backend(backend, argv)]
    common.print_latency_table(results)
