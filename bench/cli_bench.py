"""CLI start-up against the floor of a small HTTP client, measured in the same run.

Each sample is the wall time of one new process, as a script or a monitor starts it:

* floor: `python -c "import httpx"` (the interpreter and the HTTP client, nothing else);
* `integrator --help` (no service needed);
* `integrator queue list` against a real `integrator serve` on a throw-away SQLite database,
  with a reader token (an empty queue: one authenticated round-trip, a header and a line).

The CLI runs as `python -m integrator` with the bench's interpreter, from a scratch directory.
Every round runs each case once, in a new random order, so that machine noise hits them alike;
the report gives the median and p90 of each and median ÷ the floor's median. Goal: ≤ 2.

`--before=REV` adds the same two commands with `integrator/` as it was at git revision REV
(extracted to a scratch directory, first on PYTHONPATH), interleaved with the rest.

    make bench BENCH=cli              # or: python -m bench cli --rounds=60 --before=HEAD~1
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

from bench.common import make_token, percentile, service, settings_env, temp_database
from integrator.settings import get_settings

ROUNDS = 40
FLOOR = "floor"
REPO_ROOT = Path(__file__).resolve().parent.parent


def option(argv: list[str], name: str) -> str | None:
    for arg in argv:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def extract_package(revision: str, into: Path) -> None:
    """`integrator/` at `revision`, written under `into`."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "integrator"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def cases(before: Path | None) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each case's argv and extra environment."""
    python = [sys.executable, "-m", "integrator"]
    found = {
        FLOOR: ([sys.executable, "-c", "import httpx"], {}),
        "integrator --help": ([*python, "--help"], {}),
        "integrator queue list": ([*python, "queue", "list"], {}),
    }
    if before is not None:
        old = {"PYTHONPATH": str(before)}
        found["integrator --help (before)"] = ([*python, "--help"], old)
        found["integrator queue list (before)"] = ([*python, "queue", "list"], old)
    return found


def run_rounds(
    chosen: dict[str, tuple[list[str], dict[str, str]]],
    env: dict[str, str],
    cwd: Path,
    rounds: int,
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in chosen}
    order = list(chosen)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            argv, extra = chosen[name]
            started = time.perf_counter()
            result = subprocess.run(
                argv, env={**env, **extra}, cwd=cwd, capture_output=True, text=True
            )
            samples[name].append(time.perf_counter() - started)
            if result.returncode != 0:
                raise SystemExit(f"{name}: exit {result.returncode}: {result.stderr.strip()}")
    return samples


def report(samples: dict[str, list[float]], rounds: int) -> None:
    floor = percentile(samples[FLOOR], 50)
    print(f"{rounds} rounds, interleaved; python {sys.version.split()[0]}, {os.cpu_count()} cores")
    print("\n| command | median ms | p90 ms | median ÷ floor |")
    print("|---|---|---|---|")
    for name, values in samples.items():
        label = 'python -c "import httpx" (floor)' if name == FLOOR else f"`{name}`"
        median = percentile(values, 50)
        print(
            f"| {label} | {median * 1000:.0f} | {percentile(values, 90) * 1000:.0f} | "
            f"{median / floor:.2f} |"
        )


def main(argv: list[str]) -> None:
    rounds = max(1, int(option(argv, "rounds") or ROUNDS))
    revision = option(argv, "before")
    with tempfile.TemporaryDirectory() as folder, temp_database("sqlite") as url:
        root = Path(folder)
        before = None
        if revision:
            before = root / "before"
            extract_package(revision, before)
            print(f"before: integrator/ at {revision}")
        settings = get_settings(database_url=url, repository="bench")
        token = make_token(settings, "reader")
        with service(settings, root / "service.log") as base:
            env = {**settings_env(settings), "INTEGRATOR_URL": base, "INTEGRATOR_TOKEN": token}
            chosen = cases(before)
            run_rounds(chosen, env, root, 2)  # warm the page cache and the service
            samples = run_rounds(chosen, env, root, rounds)
    report(samples, rounds)
