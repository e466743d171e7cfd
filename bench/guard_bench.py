"""Push-check decisions under load, next to trivial endpoints of the same server.

64 concurrent clients (asyncio + httpx, one connection each) against one real
`integrator serve`; each push check records one update (a shadow human push
to main). Baselines on the same server in the same run: GET /healthz (no
database) and GET /v1/whoami (token check). Goal: push checks at ≥ 50 % of the
trivial endpoint's throughput with p99 at most 2x its p99.

    make bench BENCH=guard
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

import httpx

from bench.common import BACKENDS, make_token, percentile, service, temp_database
from integrator.settings import get_settings

CONCURRENCY = 64
PER_CLIENT = 10
ROUNDS = 6


def push_body(n: int) -> dict[str, object]:
    return {
        "repository": "bench",
        "hook_instance": "bench:/srv/bench.git",
        "hook_version": "1",
        "pusher": f"dev-{n % 50}",
        "identity_source": "plain",
        "updates": [
            {
                "ref": "refs/heads/main",
                "resolved_ref": "refs/heads/main",
                "old": f"{n:040x}",
                "new": f"{n + 1:040x}",
                "fast_forward": True,
                "first_parent": False,
            }
        ],
    }


Call = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]

CASES: dict[str, Call] = {
    "GET /healthz": lambda c, n: c.get("/healthz"),
    "GET /v1/whoami": lambda c, n: c.get("/v1/whoami"),
    "POST /v1/push-checks": lambda c, n: c.post("/v1/push-checks", json=push_body(n)),
}


async def load(clients: list[httpx.AsyncClient], call: Call) -> tuple[int, float, list[float]]:
    """Every client sends PER_CLIENT requests in turn: (requests, seconds, latencies)."""
    latencies: list[float] = []
    counter = itertools.count()

    async def client_loop(client: httpx.AsyncClient) -> None:
        for _ in range(PER_CLIENT):
            started = time.perf_counter()
            response = await call(client, next(counter))
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(c) for c in clients))
    return len(latencies), time.perf_counter() - started, latencies


async def measure(base: str, token: str) -> list[tuple[str, float, float, float]]:
    """One keep-alive connection per client, opened and warmed before any case is timed;
    the cases alternate over ROUNDS rounds so that machine noise hits them alike."""
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=1)
    clients = [
        httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=limits)
        for _ in range(CONCURRENCY)
    ]
    totals = {name: (0, 0.0, []) for name in CASES}
    try:
        await load(clients, CASES["GET /healthz"])  # warm-up: connections open
        for _ in range(ROUNDS):
            for name, call in CASES.items():
                count, seconds, latencies = await load(clients, call)
                done, spent, seen = totals[name]
                totals[name] = (done + count, spent + seconds, seen + latencies)
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return [
        (name, done / spent, percentile(seen, 50) * 1000, percentile(seen, 99) * 1000)
        for name, (done, spent, seen) in totals.items()
    ]


def run_backend(backend: str) -> list[tuple[str, float, float, float]]:
    with temp_database(backend) as url:
        settings = get_settings(database_url=url, repository="bench")
        token = make_token(settings, "hook")
        with service(settings) as base:
            return asyncio.run(measure(base, token))


def main(argv: list[str]) -> None:
    print(
        f"{CONCURRENCY} concurrent clients x {PER_CLIENT} requests x {ROUNDS} interleaved rounds, "
        "one uvicorn process"
    )
    for backend in BACKENDS:
        rows = run_backend(backend)
        base = {name: (rate, p99) for name, rate, _, p99 in rows}
        print(f"\n### {backend}\n")
        print("| request | req/s | p50 ms | p99 ms | throughput ÷ whoami | p99 ÷ whoami p99 |")
        print("|---|---|---|---|---|---|")
        for name, rate, p50, p99 in rows:
            who_rate, who_p99 = base["GET /v1/whoami"]
            print(
                f"| {name} | {rate:.0f} | {p50:.1f} | {p99:.1f} | {rate / who_rate:.2f} | "
                f"{p99 / who_p99:.2f} |"
            )
