"""Event ingestion rate and list latency with 100,000 events stored.

Each backend gets a throw-away database seeded with 100k events and 2,000
candidates, and a real `integrator serve` process. Every figure is reported
next to a baseline measured on the same server in the same run: GET /healthz
(no database) and GET /v1/whoami (token check: one indexed read).

    make bench BENCH=events        # or: .venv/bin/python -m bench events
"""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime

import httpx
from sqlalchemy import insert

from bench.common import BACKENDS, make_token, service, summary_ms, temp_database, timed
from integrator.db import make_engine
from integrator.events import content_hash
from integrator.models import Candidate, Event
from integrator.settings import get_settings

SEEDED_EVENTS = 100_000
SEEDED_CANDIDATES = 2_000
SAMPLES = 300


def seed(database_url: str) -> None:
    """100k events (reviews, pushes, status changes) and 2k queued candidates, in bulk."""
    engine = make_engine(get_settings(database_url=database_url))
    now = datetime.now(UTC)
    kinds = itertools.cycle(("review_approved", "branch_pushed", "candidate_status_changed"))
    rows = []
    for n, kind in zip(range(SEEDED_EVENTS), kinds, strict=False):
        sha = f"{n:040x}"
        fields = {"slug": f"s{n % 5000}", "branch": f"b/{n % 5000}", "sha": sha, "n": n}
        rows.append(
            {
                "type": kind,
                "repository": "bench",
                "natural_key": f"seed-{n}",
                "content_hash": content_hash(fields),
                "slug": fields["slug"],
                "branch": fields["branch"],
                "sha": sha,
                "fields": fields,
                "actor": "seed",
                "recorded_at": now,
            }
        )
    candidates = [
        {
            "repository": "bench",
            "slug": f"s{n}",
            "branch": f"b/{n}",
            "sha": f"{n:040x}",
            "status": "queued",
            "position": n + 1,
            "finalize_seq": n + 1,
            "unmet": [],
            "created_at": now,
            "updated_at": now,
        }
        for n in range(SEEDED_CANDIDATES)
    ]
    with engine.begin() as connection:
        for start in range(0, len(rows), 5000):
            connection.execute(insert(Event), rows[start : start + 5000])
        connection.execute(insert(Candidate), candidates)
    engine.dispose()


def run_backend(backend: str) -> list[tuple[str, float, float, float]]:
    results = []
    with temp_database(backend) as url:
        started = time.perf_counter()
        seed(url)
        print(f"{backend}: seeded {SEEDED_EVENTS} events in {time.perf_counter() - started:.1f}s")
        settings = get_settings(database_url=url, repository="bench")
        token = make_token(settings, "reporter")
        with (
            service(settings) as base,
            httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as client,
        ):
            counter = itertools.count()

            def post_event() -> None:
                n = next(counter)
                body = {
                    "type": "review_approved",
                    "fields": {
                        "slug": f"new-{n}",
                        "approved_at": "2026-11-24T12:00:00Z",
                        "review_round": 1,
                        "reviewer_session_id": "bench",
                    },
                }
                assert (
                    client.post(
                        "/v1/events",
                        content=json.dumps(body),
                        headers={"content-type": "application/json"},
                    ).status_code
                    == 201
                )

            def get(path: str) -> None:
                assert client.get(path).status_code == 200, path

            for _ in range(20):  # warm up connections and caches
                get("/healthz")
                get("/v1/whoami")
            cases = {
                "GET /healthz (baseline, no DB)": lambda: get("/healthz"),
                "GET /v1/whoami (baseline, token read)": lambda: get("/v1/whoami"),
                "POST /v1/events (review_approved)": post_event,
                "GET /v1/candidates?limit=100": lambda: get("/v1/candidates?limit=100"),
                "GET /v1/events?limit=100": lambda: get("/v1/events?limit=100"),
                "GET /v1/events?type&slug": lambda: get(
                    "/v1/events?type=review_approved&slug=s1234&limit=100"
                ),
                "GET /v1/events?cursor=90000": lambda: get("/v1/events?cursor=90000&limit=100"),
            }
            baseline_p50 = 0.0
            for name, call in cases.items():
                samples = timed(call, SAMPLES)
                p50, p99 = summary_ms(samples)
                if "whoami" in name:
                    baseline_p50 = p50
                ratio = p50 / baseline_p50 if baseline_p50 else 0.0
                results.append((name, p50, p99, ratio))
    return results


def main(argv: list[str]) -> None:
    print(f"{SEEDED_EVENTS} events stored, {SAMPLES} sequential requests per row, one client")
    for backend in BACKENDS:
        rows = run_backend(backend)
        print(f"\n### {backend}\n")
        print("| request | p50 ms | p99 ms | p50 ÷ whoami p50 | req/s (1 client) |")
        print("|---|---|---|---|---|")
        for name, p50, p99, ratio in rows:
            ratio_text = f"{ratio:.2f}" if ratio else "-"
            print(f"| {name} | {p50:.2f} | {p99:.2f} | {ratio_text} | {1000 / p50:.0f} |")
