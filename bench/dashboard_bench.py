"""What the dashboard's refresh costs on a long history: each request the page makes every
5 seconds (and the cutover evidence it makes every 30), with 100,000 events and 10,000
candidates stored — the same history `bench status` seeds.

Per backend: a throw-away database filled in bulk, then a real `integrator serve`
(background evaluation off). Each request alone, sequentially over a kept-alive connection;
then the whole refresh as the page sends it, every request at once, timed until the last
answer. The audit of main has its own benchmark (`bench audit`).

    .venv/bin/python -m bench dashboard [--samples=N] [--evidence-samples=N] [--events=N]
        [--candidates=N]
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from bench import common
from bench.common import BACKENDS, make_token, service, temp_database
from bench.status_bench import CANDIDATES, EVENTS, option, seeded, timed_get

SAMPLES = 100
#: The cutover evidence takes seconds on this history: fewer samples of what includes it.
EVIDENCE_SAMPLES = 10
#: What the page asks at each refresh (the evidence only every sixth time).
REFRESH = (
    "/v1/status",
    "/v1/candidates?limit=200",
    "/v1/followups?limit=200",
    "/v1/queue/pause",
    "/v1/activity",
)
EVIDENCE = "/v1/evidence"


def timed_refresh(http: httpx.Client, paths: tuple[str, ...], count: int) -> list[float]:
    """The page's refresh: every request at once (the browser's connections), until the last."""
    samples = []
    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        for _ in range(count):
            started = time.perf_counter()
            for response in pool.map(http.get, paths):
                assert response.status_code == 200, response.text
            samples.append(time.perf_counter() - started)
    return samples


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
            limits = httpx.Limits(max_keepalive_connections=len(REFRESH) + 1)
            with httpx.Client(base_url=base, headers=headers, timeout=60, limits=limits) as http:
                timed_get(http, "/v1/status", 1)  # records the conditions' first transitions
                for path in REFRESH:
                    record(f"GET {path}", timed_get(http, path, samples))
                few = min(samples, option(argv, "evidence-samples", EVIDENCE_SAMPLES))
                record(f"GET {EVIDENCE}", timed_get(http, EVIDENCE, few))
                record("a refresh (5 requests at once)", timed_refresh(http, REFRESH, samples))
                with_evidence = (*REFRESH, EVIDENCE)
                record("a refresh with the evidence (6 at once)",
                       timed_refresh(http, with_evidence, few))  # fmt: skip
    return rows


def main(argv: list[str]) -> None:
    events, candidates = option(argv, "events", EVENTS), option(argv, "candidates", CANDIDATES)
    print(f"{events} events and {candidates} candidates stored; one client")
    results = [row for backend in BACKENDS for row in run_backend(backend, argv)]
    common.print_latency_table(results)
