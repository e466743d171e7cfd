"""Speculative checks: candidates landed per hour at `--window` W = 1, 2, 4, 10, same run.

Each run gets a throw-away database, a canonical bare repository with the hooks installed, a
real `integrator serve` in cutover, and N trivial candidates queued (one file each). A seeded
share of them also adds a file named `broken-<n>`; the check sleeps D seconds and fails when
the tree holds such a file, so a failing candidate's change fails every speculative commit
built on it, as a real regression would. Then `integrator worker --once --window W` drains the
queue, landing every passing candidate on main through the hooks. The serial worker (W = 1)
is the baseline; each run is checked to have landed exactly the passing candidates.

    .venv/bin/python -m bench speculation [--n=40] [--seconds=5] [--windows=1,2,4,10]
                                          [--failures=0,0.1] [--backend=sqlite] [--seed=7]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import make_token, service, settings_env, temp_database
from bench.worker_bench import Repo, git, guard, submit
from integrator.settings import Settings, get_settings


@dataclass(frozen=True)
class Run:
    window: int
    failures: float
    seconds: float
    landed: int
    blocked: int
    discarded: int

    @property
    def per_hour(self) -> float:
        return self.landed / self.seconds * 3600


def queue_candidates(
    http: httpx.Client, reporter: str, repo: Repo, broken: set[int], n: int
) -> None:
    for number in range(n):
        name = f"feat/s{number}"
        git("checkout", "-q", "-B", name, "main", cwd=repo.work)
        path = f"broken-{number}" if number in broken else f"s{number}.txt"
        (repo.work / path).write_text(f"candidate {number}\n")
        git("add", path, cwd=repo.work)
        git("commit", "-q", "-m", f"candidate {number}", cwd=repo.work)
        git("push", "-q", "origin", name, cwd=repo.work)
        git("checkout", "-q", "main", cwd=repo.work)
        submit(http, reporter, f"s{number}", name, git("rev-parse", name, cwd=repo.work))


def count(http: httpx.Client, operator: dict[str, str], status: str) -> int:
    answer = http.get("/v1/candidates", params={"status": status, "limit": 500}, headers=operator)
    answer.raise_for_status()
    body = answer.json()
    return len(body["items"] if isinstance(body, dict) else body)


def discarded(http: httpx.Client, operator: dict[str, str]) -> int:
    answer = http.get("/metrics", headers=operator)
    for line in answer.text.splitlines():
        if line.startswith("integrator_speculative_builds_discarded_total "):
            return int(float(line.split()[1]))
    return 0


def one_run(backend: str, n: int, check_seconds: float, window: int, failures: float,
            seed: int) -> Run:  # fmt: skip
    broken = set(random.Random(seed).sample(range(n), round(n * failures)))
    with temp_database(backend) as database_url, tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        repo = Repo(root, 1)
        settings = get_settings(
            database_url=database_url, repo=str(repo.bare), mirror_dir=str(root / "mirrors")
        )
        with service(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
            operator = {"Authorization": f"Bearer {make_token(settings, 'operator')}"}
            guard(settings, url, http, repo)
            queue_candidates(http, make_token(settings, "reporter"), repo, broken, n)
            elapsed = drain(settings, url, repo, root / "worker", window, check_seconds)
            run = Run(window, failures, elapsed, count(http, operator, "integrated"),
                      count(http, operator, "blocked"), discarded(http, operator))  # fmt: skip
    if (run.landed, run.blocked) != (n - len(broken), len(broken)):
        raise RuntimeError(f"W={window}: landed {run.landed}, blocked {run.blocked} of {n} "
                           f"with {len(broken)} failing")  # fmt: skip
    return run


def drain(settings: Settings, url: str, repo: Repo, workspace: Path, window: int,
          check_seconds: float) -> float:  # fmt: skip
    env = {**settings_env(settings), "INTEGRATOR_URL": url,
           "INTEGRATOR_TOKEN": make_token(settings, "integrator")}  # fmt: skip
    check = f'sleep {check_seconds}; test -z "$(ls broken-* 2>/dev/null)"'
    argv = [sys.executable, "-m", "integrator", "worker", "--once", "--log-level", "warning",
            "--repo", str(repo.bare), "--workspace", str(workspace), "--window", str(window),
            "--check", f"bench={check}"]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=3600)
    return time.perf_counter() - started


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench speculation")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--windows", default="1,2,4,10")
    parser.add_argument("--failures", default="0,0.1")
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--seed", type=int, default=7)
    options = parser.parse_args(argv)
    windows = [int(w) for w in options.windows.split(",")]
    print(f"{options.n} candidates, a {options.seconds:g} s check, {options.backend}, "
          f"seed {options.seed}; W = 1 is the serial baseline of its row\n")  # fmt: skip
    print("| failures | W | seconds | landed | blocked | discarded builds | landed/hour | vs W=1 |")
    print("|---|---|---|---|---|---|---|---|")
    for failures in (float(f) for f in options.failures.split(",")):
        serial: float | None = None
        for window in windows:
            run = one_run(options.backend, options.n, options.seconds, window, failures,
                          options.seed)  # fmt: skip
            serial = serial or run.per_hour
            print(f"| {failures:.0%} | {window} | {run.seconds:.1f} | {run.landed} | "
                  f"{run.blocked} | {run.discarded} | {run.per_hour:.0f} | "
                  f"{run.per_hour / serial:.2f} |", flush=True)  # fmt: skip
