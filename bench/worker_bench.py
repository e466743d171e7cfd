"""Worker time per trivial candidate, against a plain `git fetch && git merge --no-ff` loop.

Each backend gets a throw-away database, a canonical bare repository and a real `integrator
serve`. A round makes N candidates READY (one small commit each, on its own branch), then runs
`integrator worker --once` over them; the same round also runs it over an empty queue, and the
difference divided by N is the worker's time per candidate (process start, clone reuse and the
lease round trip cancel out). The baseline, same round and same repository: a shell loop doing
`git fetch -q origin && git merge -q --no-ff <sha>` for the same N shas in a clone of its own.

In cutover (`--mode cutover`) the canonical repository has the hooks installed and the worker
lands each candidate on main: merge, register, push through both hooks, confirm, record. The
baseline then pushes too: `git fetch && git merge --no-ff && git push` to a branch of the same
repository (through the same hooks: main itself refuses everyone but the registered bot).

    make bench BENCH=worker        # or: .venv/bin/python -m bench worker [--rounds=R] [--n=N]
    .venv/bin/python -m bench worker --mode cutover
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.common import BACKENDS, GIT_ENV, make_token, service, settings_env, temp_database
from integrator import hookinstall
from integrator.settings import Settings, get_settings


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, **GIT_ENV}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


class Repo:
    """A bare canonical repository and a work clone to make branches in."""

    def __init__(self, root: Path, files: int) -> None:
        self.root = root
        self.bare = root / "canonical.git"
        self.work = root / "work"
        git("init", "-q", "--bare", "--initial-branch=main", str(self.bare), cwd=root)
        git("clone", "-q", str(self.bare), str(self.work), cwd=root)
        git("checkout", "-q", "-b", "main", cwd=self.work)
        for n in range(files):
            path = self.work / "src" / f"d{n % 50}" / f"f{n}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"file {n}\n" * 20)
        (self.work / "README").write_text("bench\n")
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", "initial", cwd=self.work)
        git("push", "-q", "origin", "main", cwd=self.work)
        self.count = 0

    def branch(self) -> tuple[str, str]:
        self.count += 1
        name = f"feat/c{self.count}"
        git("checkout", "-q", "-B", name, "main", cwd=self.work)
        (self.work / f"c{self.count}.txt").write_text(f"candidate {self.count}\n")
        git("add", f"c{self.count}.txt", cwd=self.work)
        git("commit", "-q", "-m", f"candidate {self.count}", cwd=self.work)
        git("push", "-q", "origin", name, cwd=self.work)
        git("checkout", "-q", "main", cwd=self.work)
        return name, git("rev-parse", name, cwd=self.work)


def make_ready(http: httpx.Client, reporter: str, repo: Repo, n: int) -> list[str]:
    """N queued candidates through the API; returns their shas."""
    shas = []
    for _ in range(n):
        branch, sha = repo.branch()
        submit(http, reporter, branch.replace("/", "-"), branch, sha)
        shas.append(sha)
    return shas


def submit(http: httpx.Client, reporter: str, slug: str, branch: str, sha: str) -> None:
    """approved, pushed and finalized: the candidate is queued."""
    now = datetime.now(UTC).isoformat()
    headers = {"Authorization": f"Bearer {reporter}"}
    for kind, fields in (
        ("review_approved", {"slug": slug, "approved_at": now, "review_round": 1,
                             "reviewer_session_id": "r"}),
        ("branch_pushed", {"branch": branch, "sha": sha, "remote": "canonical",
                           "pushed_at": now, "pusher": "bench"}),
        ("finalize_ready", {"slug": slug, "branch": branch, "sha": sha,
                            "worker_session_id": "w", "orchestrator_session_id": "o",
                            "ready_at": now}),
    ):  # fmt: skip
        answer = http.post("/v1/events", json={"type": kind, "fields": fields}, headers=headers)
        answer.raise_for_status()


def run_worker(settings: Settings, url: str, token: str, repo: Repo, workspace: Path) -> float:
    env = {**settings_env(settings), "INTEGRATOR_URL": url, "INTEGRATOR_TOKEN": token}
    argv = [sys.executable, "-m", "integrator", "worker", "--once", "--log-level", "warning"]
    argv += ["--repo", str(repo.bare), "--workspace", str(workspace)]
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=600)
    return time.perf_counter() - started


def run_baseline(repo: Repo, clone: Path, base: str, shas: list[str], push: bool = False) -> float:
    """The shell loop over `shas`, from a clone reset to `base` (the reset is not timed).

    `base` is main as it was before the worker's run: after it, main already contains the
    shas, and a loop started there would only say "Already up to date" and push nothing. The
    loop is checked to have made (and pushed) one merge per sha.
    """
    if not clone.exists():
        git("clone", "-q", str(repo.bare), str(clone), cwd=repo.root)
    git("fetch", "-q", "origin", cwd=clone)
    git("reset", "-q", "--hard", base, cwd=clone)
    target = "refs/heads/bench-baseline"
    then = f" && git push -q -f origin HEAD:{target}" if push else ""
    script = "".join(
        f"git fetch -q origin && git merge -q --no-ff -m merge {sha}{then}\n" for sha in shas
    )
    started = time.perf_counter()
    subprocess.run(["sh", "-e", "-c", script], cwd=clone, env={**os.environ, **GIT_ENV}, check=True)
    elapsed = time.perf_counter() - started
    head = git("rev-parse", "HEAD", cwd=clone)
    merges = int(git("rev-list", "--count", "--first-parent", f"{base}..{head}", cwd=clone))
    pushed = git("rev-parse", target, cwd=repo.bare) if push else head
    if merges != len(shas) or pushed != head:
        raise RuntimeError(f"the baseline made {merges} merges of {len(shas)} (pushed: {pushed})")
    return elapsed


def guard(settings: Settings, url: str, http: httpx.Client, repo: Repo) -> None:
    """Install the hooks and switch to cutover (forced: no shadow history here)."""
    hookinstall.install(
        repo.bare, url=url, token=make_token(settings, "hook"), repository=None, deadline=10.0
    )
    operator = {"Authorization": f"Bearer {make_token(settings, 'operator')}"}
    answer = http.post("/v1/cutover", json={"reason": "bench", "force": True}, headers=operator)
    answer.raise_for_status()


def run_backend(
    backend: str, rounds: int, n: int, files: int, cutover: bool = False
) -> tuple[list[float], list[float]]:
    """Per-candidate seconds of each round: (worker, baseline).

    The baseline runs before and after the worker in every round (machines here are noisy;
    interleaving keeps a slow minute from landing on one side only), both times from main as
    it was before the worker's run.
    """
    worker_each: list[float] = []
    baseline_each: list[float] = []
    with temp_database(backend) as database_url, tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        repo = Repo(root, files)
        settings = get_settings(
            database_url=database_url, repo=str(repo.bare), mirror_dir=str(root / "mirrors")
        )
        reporter, integrator = make_token(settings, "reporter"), make_token(settings, "integrator")
        with service(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
            if cutover:
                guard(settings, url, http, repo)
            workspace = root / "worker"
            run_worker(settings, url, integrator, repo, workspace)  # first clone, not measured
            baseline = root / "baseline"
            for _ in range(rounds):
                empty = run_worker(settings, url, integrator, repo, workspace)
                shas = make_ready(http, reporter, repo, n)
                base = git("rev-parse", "main", cwd=repo.bare)
                baseline_each.append(run_baseline(repo, baseline, base, shas, cutover) / n)
                full = run_worker(settings, url, integrator, repo, workspace)
                worker_each.append((full - empty) / n)
                baseline_each.append(run_baseline(repo, baseline, base, shas, cutover) / n)
    return worker_each, baseline_each


def _ms(values: list[float]) -> str:
    low, high = min(values) * 1000, max(values) * 1000
    return f"{statistics.median(values) * 1000:.1f} ({low:.0f}-{high:.0f})"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench worker")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--mode", choices=("shadow", "cutover"), default="shadow")
    options = parser.parse_args(argv)
    cutover = options.mode == "cutover"
    print(f"{options.n} trivial candidates per round, {options.rounds} rounds, {options.mode}, "
          "no check")  # fmt: skip
    print("median (min-max) over rounds; the baseline runs before and after each worker run\n")
    loop = "fetch+merge+push" if cutover else "fetch+merge"
    print(f"| backend | repository | worker ms/candidate | {loop} ms/candidate | ratio |")
    print("|---|---|---|---|---|")
    for backend in BACKENDS:
        for files in (1, 5000):
            worker, baseline = run_backend(backend, options.rounds, options.n, files, cutover)
            label = "1 file" if files == 1 else f"{files} files"
            ratio = statistics.median(worker) / statistics.median(baseline)
            print(
                f"| {backend} | {label} | {_ms(worker)} | {_ms(baseline)} | {ratio:.2f}x |",
                flush=True,
            )
