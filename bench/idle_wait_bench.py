"""Idle queue: time from `finalize_ready` to the candidate being handed out, polling vs long poll.

Per backend: a throw-away database, a bare canonical repository and a real `integrator serve`.
A holder (this process, over HTTP) takes the lease and loops on `POST /v1/queue/next`, the way
the worker does when the queue is empty:

- `poll 5 s` (how the worker waited before): `wait_seconds` 0, and a 5 s sleep after each 204;
- `long poll 5 s` (how it waits now): `wait_seconds` 5, asked again at once after a 204.

While the holder loops, candidates are made READY one at a time, each at a random moment
(uniform over 0 to 5 s after the previous one was handed out, seeded), and the time from the
`finalize_ready` answer to the `queue/next` answer that hands it out is measured. Each handout
is reported `would_integrate` (shadow) so the queue is empty again. Both loops run in the same
run against the same service, alternating candidate by candidate.

Then the real `integrator worker` (its default `--poll-interval 5`, check `true`) idles on the
same service and a candidate is finalized at a random moment: the time to `predicted` is
recorded too (it includes the merge, the check and the outcome).

    .venv/bin/python -m bench idle_wait [--n=N] [--seed=S]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.common import BACKENDS, make_token, service, settings_env, temp_database
from bench.worker_bench import Repo, submit
from integrator.settings import get_settings

POLL_SECONDS = 5.0


class Holder:
    """The idle loop of a worker, over HTTP: one thread; `handed` maps sha → answer time."""

    def __init__(self, url: str, token: str, long_poll: bool) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}"}
        self.long_poll = long_poll
        self.handed: dict[str, float] = {}
        self.stop = threading.Event()
        answer = self.http.post("/v1/lease/acquire", json={"holder": "bench"}, headers=self.headers)
        answer.raise_for_status()
        self.grant = {"epoch": answer.json()["epoch"], "token": answer.json()["token"]}
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        body: dict[str, Any] = dict(self.grant)
        if self.long_poll:
            body["wait_seconds"] = POLL_SECONDS
        while not self.stop.is_set():
            self._renew()
            answer = self.http.post("/v1/queue/next", json=body, headers=self.headers)
            at = time.monotonic()
            if answer.status_code == 204:
                if not self.long_poll:
                    self.stop.wait(POLL_SECONDS)
                continue
            answer.raise_for_status()
            handed = answer.json()
            self.handed[handed["sha"]] = at
            outcome = {**self.grant, "outcome": "would_integrate", "attempt": str(uuid.uuid4()),
                       "main_sha": handed["main_sha_checked"]}  # fmt: skip
            done = self.http.post(f"/v1/candidates/{handed['id']}/outcome", json=outcome,
                                  headers=self.headers)  # fmt: skip
            done.raise_for_status()

    def _renew(self) -> None:
        self.http.post("/v1/lease/renew", json=self.grant, headers=self.headers).raise_for_status()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.http.post("/v1/lease/release", json=self.grant, headers=self.headers)
        self.http.close()


def one(http: httpx.Client, reporter: str, repo: Repo, handed: dict[str, float],
        pause: float) -> float:  # fmt: skip
    """Finalize one candidate after `pause` seconds; seconds until it was handed out."""
    time.sleep(pause)
    branch, sha = repo.branch()
    submit(http, reporter, branch.replace("/", "-"), branch, sha)
    finalized = time.monotonic()
    deadline = finalized + 60
    while sha not in handed:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{sha} was not handed out within 60 s")
        time.sleep(0.01)
    return handed[sha] - finalized


def holder_latencies(
    url: str, settings: Any, reporter: str, repo: Repo, n: int, rng: random.Random
) -> dict[str, list[float]]:
    """`n` candidates per loop, the two loops alternating (one lease at a time)."""
    integrator = make_token(settings, "integrator")
    found: dict[str, list[float]] = {"poll 5 s": [], "long poll 5 s": []}
    with httpx.Client(base_url=url, timeout=60) as http:
        for _ in range(n):
            for name in found:
                holder = Holder(url, integrator, long_poll=name.startswith("long"))
                try:
                    time.sleep(0.5)  # the loop is idle: its first look found nothing
                    pause = rng.uniform(0, POLL_SECONDS)
                    found[name].append(one(http, reporter, repo, holder.handed, pause))
                finally:
                    holder.close()
    return found


def worker_latencies(
    url: str, settings: Any, reporter: str, repo: Repo, root: Path, n: int, rng: random.Random
) -> list[float]:
    """The real worker, idle, default poll interval: finalize_ready → predicted."""
    token = make_token(settings, "integrator")
    env = {**settings_env(settings), "INTEGRATOR_URL": url, "INTEGRATOR_TOKEN": token}
    argv = [sys.executable, "-m", "integrator", "worker", "--log-level", "warning", "--check",
            "true", "--repo", str(repo.bare), "--workspace", str(root / "worker")]  # fmt: skip
    worker = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latencies = []
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            reader = {"Authorization": f"Bearer {reporter}"}
            time.sleep(3.0)  # cloned, holding the lease, idle
            for _ in range(n):
                time.sleep(rng.uniform(0, POLL_SECONDS))
                branch, sha = repo.branch()
                submit(http, reporter, branch.replace("/", "-"), branch, sha)
                finalized = time.monotonic()
                while True:
                    rows = http.get("/v1/candidates", params={"status": "predicted"},
                                    headers=reader).json()["items"]  # fmt: skip
                    if any(r["sha"] == sha for r in rows):
                        break
                    if time.monotonic() - finalized > 60:
                        raise RuntimeError("the worker did not evaluate the candidate in 60 s")
                    time.sleep(0.01)
                latencies.append(time.monotonic() - finalized)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    return latencies


def _line(backend: str, name: str, values: list[float]) -> str:
    return (f"| {backend} | {name} | {len(values)} | {statistics.median(values):.2f} | "
            f"{statistics.mean(values):.2f} | {max(values):.2f} |")  # fmt: skip


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench idle_wait")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--seed", type=int, default=21)
    options = parser.parse_args(argv)
    print(
        f"{options.n} candidates per loop and backend, finalized at a random moment of an "
        f"idle queue (seed {options.seed}); seconds from the finalize_ready answer\n"
    )
    print("| backend | idle loop | n | median s | mean s | max s |")
    print("|---|---|---|---|---|---|")
    for backend in BACKENDS:
        rng = random.Random(options.seed)
        with temp_database(backend) as database_url, tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            repo = Repo(root, 1)
            settings = get_settings(
                database_url=database_url, repo=str(repo.bare), mirror_dir=str(root / "mirrors")
            )
            reporter = make_token(settings, "reporter")
            with service(settings) as url:
                found = holder_latencies(url, settings, reporter, repo, options.n, rng)
                for name, values in found.items():
                    print(_line(backend, f"{name} → handed out", values), flush=True)
                worker = worker_latencies(url, settings, reporter, repo, root, options.n, rng)
                print(_line(backend, "real worker → predicted (check `true`)", worker),
                      flush=True)  # fmt: skip
