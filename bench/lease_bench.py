"""The lease under load, and takeover after kill -9.

Per backend, on a throw-away database:

1. **Contention, database level**: 32 threads, each with its own engine and
   connection. The lease phase has one holder renewing in a loop and 31
   contenders trying to acquire (refused: the lease is held); the baseline
   phase runs 32 threads of a bare single-row ``UPDATE counters SET value =
   value + 1`` transaction on the same database. Ratios are p50 ÷ p50 and
   p99 ÷ p99 against that baseline.
2. **Contention, over HTTP**: the same shape against a real `integrator
   serve`; `GET /healthz` from 32 threads is the HTTP floor.
3. **Takeover after kill -9**: a holder process (a `LeaseKeeper`, renewing
   every TTL/4) is SIGKILLed at a random point of its renewal cycle while 4
   waiters retry every 50-100 ms; takeover = the new grant's SQL time minus
   the time the holder was dead. The expiry sits between TTL - renew interval
   and TTL after the kill, so that is the expected range.

    make bench BENCH=lease        # or: .venv/bin/python -m bench lease
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.orm import Session

from bench.common import BACKENDS, make_token, service, settings_env, summary_ms, temp_database
from integrator import lease
from integrator.db import make_engine, make_sessionmaker
from integrator.errors import LeaseHeld
from integrator.settings import Settings, get_settings
from integrator.worker.lease_client import LeaseChange, LeaseKeeper

THREADS = 32
PHASE_SECONDS = 4.0
TAKEOVER_TTLS = (1.0, 2.0, 4.0)
KILLS_PER_TTL = 3

HOLDER_SCRIPT = """
import sys, time
from integrator.worker.lease_client import LeaseKeeper
from integrator.settings import get_settings
keeper = LeaseKeeper.from_settings(get_settings(), "victim", retry_interval=0.05)
keeper.acquire()
print(keeper.epoch, flush=True)
time.sleep(3600)
"""


def lease_settings(url: str, ttl: float, repository: str) -> Settings:
    """A lease key of its own per phase; renew every TTL/4, deadline TTL/2, margin TTL/4."""
    return get_settings(
        database_url=url,
        repository=repository,
        lease_ttl_seconds=ttl,
        lease_renew_interval_seconds=ttl / 4,
        lease_renew_deadline_seconds=ttl / 2,
        authorize_margin_seconds=ttl / 4,
    )


def hammer(workers: list[Callable[[], Callable[[], None]]], seconds: float) -> list[list[float]]:
    """Run each worker's call in its own thread for `seconds`; latencies (s) per worker."""
    samples: list[list[float]] = [[] for _ in workers]
    start = threading.Barrier(len(workers) + 1)
    stop = threading.Event()

    def loop(index: int) -> None:
        call = workers[index]()  # set-up (connections) happens before the barrier
        start.wait()
        while not stop.is_set():
            began = time.perf_counter()
            call()
            samples[index].append(time.perf_counter() - began)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    start.wait()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return samples


def db_contention(url: str) -> dict[str, list[float]]:
    """Renew and refused-acquire latencies with 32 threads, then the bare UPDATE baseline."""
    settings = lease_settings(url, 120.0, "bench-db")
    engines = [make_engine(settings) for _ in range(THREADS)]
    with make_sessionmaker(engines[0]).begin() as session:
        lease.ensure_lease_row(session, settings)
        grant = lease.acquire(session, settings, "bench-holder")
        session.execute(text("INSERT INTO counters (name, value) VALUES ('bench', 0)"))

    def session_of(index: int) -> Session:
        return make_sessionmaker(engines[index])()

    def renewer() -> Callable[[], None]:
        session = session_of(0)

        def call() -> None:
            with session.begin():
                lease.renew(session, settings, grant.epoch, grant.token)

        return call

    def contender(index: int) -> Callable[[], Callable[[], None]]:
        def make() -> Callable[[], None]:
            session = session_of(index)

            def call() -> None:
                try:
                    with session.begin():
                        lease.acquire(session, settings, f"bench-{index}")
                except LeaseHeld:
                    pass

            return call

        return make

    def updater(index: int) -> Callable[[], Callable[[], None]]:
        def make() -> Callable[[], None]:
            session = session_of(index)
            statement = text("UPDATE counters SET value = value + 1 WHERE name = 'bench'")

            def call() -> None:
                with session.begin():
                    session.execute(statement)

            return call

        return make

    try:
        lease_samples = hammer([renewer, *(contender(i) for i in range(1, THREADS))], PHASE_SECONDS)
        bare = hammer([updater(i) for i in range(THREADS)], PHASE_SECONDS)
    finally:
        for engine in engines:
            engine.dispose()
    return {
        "renew": lease_samples[0],
        "acquire (refused)": [s for worker in lease_samples[1:] for s in worker],
        "bare UPDATE": [s for worker in bare for s in worker],
    }


def http_contention(url: str) -> dict[str, list[float]]:
    """The same shape over HTTP against one `integrator serve` process."""
    settings = lease_settings(url, 120.0, "bench-http")
    token = make_token(settings, "integrator")
    with service(settings) as base:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers) as client:
            grant = client.post("/v1/lease/acquire", json={"holder": "bench-holder"}).json()
        body = {"epoch": grant["epoch"], "token": grant["token"]}

        def worker(method: str, path: str, payload: Any, ok: int) -> Callable[[], Any]:
            def make() -> Callable[[], None]:
                client = httpx.Client(base_url=base, headers=headers, timeout=60)

                def call() -> None:
                    answer = client.request(method, path, json=payload)
                    assert answer.status_code == ok, answer.text

                return call

            return make

        renew = worker("POST", "/v1/lease/renew", body, 200)
        acquire = worker("POST", "/v1/lease/acquire", {"holder": "bench"}, 409)
        lease_samples = hammer([renew, *([acquire] * (THREADS - 1))], PHASE_SECONDS)
        floor = hammer([worker("GET", "/healthz", None, 200)] * THREADS, PHASE_SECONDS)
    return {
        "renew": lease_samples[0],
        "acquire (409)": [s for worker in lease_samples[1:] for s in worker],
        "GET /healthz": [s for worker in floor for s in worker],
    }


def one_takeover(base: str, env: dict[str, str], token: str, ttl: float) -> float:
    """Kill a renewing holder; ms from its death to the next grant (SQL time)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT], env=env, stdout=subprocess.PIPE
    )
    assert holder.stdout is not None
    holder.stdout.readline()  # granted
    won: list[LeaseChange] = []
    stop = threading.Event()
    headers = {"Authorization": f"Bearer {token}"}
    waiters = [
        LeaseKeeper(
            httpx.Client(base_url=base, headers=headers),
            f"waiter-{n}",
            renew_interval=ttl / 4,
            renew_deadline=ttl / 2,
            retry_interval=0.1,
            on_change=lambda change: won.append(change) if change.kind == "acquired" else None,
        )
        for n in range(4)
    ]
    threads = [threading.Thread(target=w.acquire, kwargs={"stop": stop}) for w in waiters]
    for thread in threads:
        thread.start()
    time.sleep(random.uniform(0, ttl / 4))  # a random point of the renewal cycle
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    dead_ms = time.time_ns() // 1_000_000
    while not won:
        time.sleep(0.005)
    stop.set()
    for thread in threads:
        thread.join()
    for waiter in waiters:
        if waiter.epoch is not None:
            waiter.release()
        waiter.close()
    holder.stdout.close()
    return float(won[0].at_ms or 0) - dead_ms


def takeovers(url: str, ttl: float) -> list[float]:
    """Takeover delays (ms) after SIGKILL of a renewing holder, for one TTL."""
    settings = lease_settings(url, ttl, f"bench-takeover-{ttl:g}")
    token = make_token(settings, "integrator")
    with service(settings) as base:
        env = {**settings_env(settings), "INTEGRATOR_URL": base, "INTEGRATOR_TOKEN": token}
        return [one_takeover(base, env, token, ttl) for _ in range(KILLS_PER_TTL)]


def main(argv: list[str]) -> None:
    print(f"{THREADS} threads, {PHASE_SECONDS:g} s per phase; {KILLS_PER_TTL} kills per TTL")
    for backend in BACKENDS:
        with temp_database(backend) as url:
            db = db_contention(url)
            over_http = http_contention(url)
            taken = {ttl: takeovers(url, ttl) for ttl in TAKEOVER_TTLS}
        print(f"\n### {backend}\n")
        bare50, bare99 = summary_ms(db["bare UPDATE"])
        print("| operation (32 threads) | p50 ms | p99 ms | p50 ÷ bare | p99 ÷ bare | ops |")
        print("|---|---|---|---|---|---|")
        rows = [(f"db: {k}", v) for k, v in db.items()]
        rows += [(f"http: {k}", v) for k, v in over_http.items()]
        for name, samples in rows:
            p50, p99 = summary_ms(samples)
            print(
                f"| {name} | {p50:.2f} | {p99:.2f} | {p50 / bare50:.2f} | {p99 / bare99:.2f} "
                f"| {len(samples)} |"
            )
        print("\n| TTL s | expected (TTL - renew interval .. TTL) ms | takeover after kill -9 ms |")
        print("|---|---|---|")
        for ttl, delays in taken.items():
            shown = ", ".join(f"{d:.0f}" for d in sorted(delays))
            print(f"| {ttl:g} | {ttl * 750:.0f} .. {ttl * 1000:.0f} | {shown} |")
