"""Takeover to first push after kill -9, against the lease TTL, in cutover.

Per backend: a throw-away database, a canonical bare repository with the hooks installed, a
real `integrator serve`, cutover, and a short lease (TTL 4 s, renew every 1 s, renew deadline
2 s, authorize margin 1 s). A round tops the queue up to N trivial candidates, starts worker A
(`integrator worker`, not --once), waits for A's first landing on main, waits a random
moment within one renew interval, SIGKILLs A and starts worker B at once. Takeover = from the
kill to main moving by B's first push (polling `git rev-parse main` in the canonical
repository; a move is B's when the registration of the new tip carries a later epoch than A's:
a push A had in flight may still land after the kill, and that is not B's). B is then stopped
with SIGTERM (it gives the lease back) and the next round starts.

A's grant runs out between TTL - renew interval and TTL after the kill; B retries the lease
every renew interval (with jitter), then merges and pushes one candidate through both hooks.

    .venv/bin/python -m bench takeover [--rounds=R] [--n=N] [--backend=sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bench.common import BACKENDS, make_token, service, settings_env, temp_database
from bench.worker_bench import Repo, git, guard, make_ready
from integrator.db import make_engine
from integrator.models import Candidate, Registration
from integrator.settings import Settings, get_settings

#: Short enough for many rounds; valid: deadline > 1.2 x interval, TTL - deadline >= margin.
LEASE = {
    "lease_ttl_seconds": 4.0,
    "lease_renew_interval_seconds": 1.0,
    "lease_renew_deadline_seconds": 2.0,
    "authorize_margin_seconds": 1.0,
}
POLL = 0.01
TIMEOUT = 120.0


class World:
    """The service, the canonical repository and the two workers' workspaces of one backend."""

    def __init__(self, settings: Settings, url: str, repo: Repo, root: Path) -> None:
        self.settings = settings
        self.repo = repo
        self.root = root
        self.engine = make_engine(settings)
        self.env = {
            **settings_env(settings),
            "INTEGRATOR_URL": url,
            "INTEGRATOR_TOKEN": make_token(settings, "integrator"),
        }

    def worker(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "integrator", "worker", "--log-level", "warning"]
        argv += ["--repo", str(self.repo.bare), "--workspace", str(self.root / f"ws-{name}")]
        argv += ["--holder", name, "--poll-interval", "0.2", *extra]
        log = (self.root / f"{name}.log").open("ab")
        try:
            return subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()

    def main(self) -> str:
        return git("rev-parse", "main", cwd=self.repo.bare)

    def moved(self, since: str) -> str:
        """Wait until main is no longer `since`; the new tip."""
        end = time.monotonic() + TIMEOUT
        while time.monotonic() < end:
            head = self.main()
            if head != since:
                return head
            time.sleep(POLL)
        raise RuntimeError(f"main did not move in {TIMEOUT:g} s (logs in {self.root})")

    def epoch_of(self, sha: str) -> int:
        with Session(self.engine) as session:
            query = select(Registration.epoch).where(Registration.new == sha)
            return max(session.scalars(query))

    def queued(self) -> int:
        with Session(self.engine) as session:
            query = select(func.count()).select_from(Candidate).where(Candidate.status == "queued")
            return int(session.scalar(query) or 0)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def one_round(world: World, http: httpx.Client, reporter: str, n: int) -> float:
    """Seconds from SIGKILL of A (after its first landing) to main moving by B's push."""
    make_ready(http, reporter, world.repo, max(0, n - world.queued()))
    a = world.worker("A")
    try:
        landed = world.moved(world.main())
        epoch_a = world.epoch_of(landed)
        time.sleep(random.uniform(0, LEASE["lease_renew_interval_seconds"]))
        a.send_signal(signal.SIGKILL)
        killed = time.perf_counter()
        b = world.worker("B")
    finally:
        a.kill()
        a.wait()
    try:
        if world.queued() == 0:
            raise RuntimeError("A drained the queue before the kill: raise --n")
        head = world.main()
        while True:
            head = world.moved(head)
            if world.epoch_of(head) > epoch_a:
                return time.perf_counter() - killed
    finally:
        stop(b)


def run_backend(backend: str, rounds: int, n: int) -> list[float]:
    with temp_database(backend) as database_url, tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        repo = Repo(root, 1)
        settings = get_settings(
            database_url=database_url,
            repo=str(repo.bare),
            mirror_dir=str(root / "mirrors"),
            **LEASE,
        )
        reporter = make_token(settings, "reporter")
        with service(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
            guard(settings, url, http, repo)
            world = World(settings, url, repo, root)
            try:
                for name in ("A", "B"):  # first clones, not measured
                    world.worker(name, "--once").wait(timeout=TIMEOUT)
                return [one_round(world, http, reporter, n) for _ in range(rounds)]
            finally:
                world.engine.dispose()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench takeover")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--backend", choices=BACKENDS, action="append")
    options = parser.parse_args(argv)
    ttl = LEASE["lease_ttl_seconds"]
    interval = LEASE["lease_renew_interval_seconds"]
    print(f"cutover, TTL {ttl:g} s, renew every {interval:g} s; {options.rounds} rounds, "
          f"queue topped up to {options.n} trivial candidates")  # fmt: skip
    print("takeover = SIGKILL of worker A (a random moment after its first landing) to main "
          "moving by worker B's first push\n")  # fmt: skip
    print("| backend | TTL s | takeover s per round | median (min-max) s "
          "| takeover ÷ TTL, median (min-max) |")  # fmt: skip
    print("|---|---|---|---|---|")
    for backend in options.backend or BACKENDS:
        taken = run_backend(backend, options.rounds, options.n)
        rounds = ", ".join(f"{t:.2f}" for t in taken)
        median = statistics.median(taken)
        spread = f"{median:.2f} ({min(taken):.2f}-{max(taken):.2f})"
        ratio = f"{median / ttl:.2f} ({min(taken) / ttl:.2f}-{max(taken) / ttl:.2f})"
        print(f"| {backend} | {ttl:g} | {rounds} | {spread} | {ratio} |", flush=True)
