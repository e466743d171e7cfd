"""Shared bench plumbing: throw-away databases, a real service process, percentiles."""

from __future__ import annotations

import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg

from integrator import migrate
from integrator.cli.local import local_session
from integrator.settings import Settings, get_settings
from integrator.tokens import create_token

PG_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgresql")
#: A git identity and no system or global configuration, for the benches' own commits.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.test",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.test",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    return percentile(samples, 50) * 1000, percentile(samples, 99) * 1000


#: One line of a latency table: backend, what was timed, samples, p50 ms, p99 ms.
Row = tuple[str, str, str, float, float]


def latency_row(backend: str, name: str, times: list[float]) -> Row:
    return (backend, name, str(len(times)), *summary_ms(times))


def print_latency_table(rows: list[Row]) -> None:
    """The rows as the Markdown table the benchmark notes quote."""
    print("\n| backend | request | samples | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for backend, name, count, p50, p99 in rows:
        print(f"| {backend} | {name} | {count} | {p50:.1f} | {p99:.1f} |")


@contextmanager
def temp_database(backend: str) -> Iterator[str]:
    """A migrated throw-away database URL, removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{folder}/bench.db"
            migrate.upgrade(get_settings(database_url=url))
            yield url
        return
    name = f"integrator_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    try:
        migrate.upgrade(get_settings(database_url=url))
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def make_token(settings: Settings, role: str) -> str:
    with local_session(settings) as session:
        _, token = create_token(session, name=f"bench-{role}-{secrets.token_hex(3)}", role=role)
    return token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTEGRATOR_")}
    return {**env, **settings.as_environment()}


@contextmanager
def service(settings: Settings, workers_log: Path | None = None) -> Iterator[str]:
    """`integrator serve` as a subprocess; yields its URL."""
    port = free_port()
    log = (workers_log or Path(tempfile.gettempdir()) / f"bench-serve-{port}.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "integrator",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=settings_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def timed(call: Callable[[], object], count: int) -> list[float]:
    """Run `call` `count` times; the wall time of each call in seconds."""
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def mean(values: list[float]) -> float:
    return statistics.fmean(values)
