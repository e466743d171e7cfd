"""What a block costs the queue: from a blocked outcome to the next candidate's hand-out, against
the same worker's gap between two clean candidates, in the same run.

Per backend: a throw-away database, a canonical bare repository, a real `integrator serve`. A
round queues G groups of three candidates, then runs `integrator worker --once` over them:

- `a` and `b` are clean (each adds a file of its own): `a`'s outcome to `b`'s hand-out is the
  clean gap;
- `x` adds the file `b` adds, from the same main: once `b` is in, `x` conflicts and is
  blocked; `x`'s outcome to the next group's `a` hand-out is the gap after a block.

In cutover (the default) the hooks are installed and `b` is pushed to main through them, so
`x` is a real `blocked` (with its `integration_blocked`, and whatever else the service does in
that transaction). In shadow (`--mode shadow`) nothing lands: a commit pushed to main before the
round adds the files the `x`s add (the `b`s add files of their own), and `x` is a
`would_block`.

Both gaps are read from the service's own records: the `recorded_at` of each candidate's
`candidate_status_changed` to its outcome, and of the next one's to `in_progress`. They cover
the outcome's HTTP answer and commit, the worker's turn-around, and the next hand-out
(readiness re-checked against the repository). Goal: after-block ÷ clean ≤ 1.2.

    .venv/bin/python -m bench blocked [--rounds=R] [--groups=G] [--mode=cutover|shadow]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from bench.common import BACKENDS, make_token, service, temp_database
from bench.worker_bench import Repo, git, guard, run_worker, submit
from integrator.db import make_engine
from integrator.models import Event
from integrator.settings import get_settings

OUTCOMES = frozenset({"integrated", "blocked", "predicted"})


def branch(repo: Repo, name: str, path: str, content: str) -> str:
    """A branch off main with one commit writing `path`, pushed; its sha."""
    git("checkout", "-q", "-B", name, "main", cwd=repo.work)
    (repo.work / path).write_text(content)
    git("add", path, cwd=repo.work)
    git("commit", "-q", "-m", f"{name} writes {path}", cwd=repo.work)
    git("push", "-q", "-f", "origin", name, cwd=repo.work)
    git("checkout", "-q", "main", cwd=repo.work)
    return git("rev-parse", name, cwd=repo.work)


def queue_round(
    http: httpx.Client, reporter: str, repo: Repo, round_: int, groups: int, cutover: bool
) -> list[str]:
    """G groups (a, b, x) queued in that order; their slugs, in queue order. x writes the file
    b writes (cutover: b lands first) or main writes (shadow: nothing lands)."""
    git("fetch", "-q", "origin", cwd=repo.work)
    git("reset", "-q", "--hard", "origin/main", cwd=repo.work)
    made: list[tuple[str, str, str]] = []
    for g in range(groups):
        shared = f"r{round_}-g{g}-shared.txt"
        for role in ("a", "b", "x"):
            slug = f"r{round_}-g{g}-{role}"
            path = shared if role == "x" or (role == "b" and cutover) else f"{slug}.txt"
            made.append((slug, f"feat/{slug}", branch(repo, f"feat/{slug}", path, f"{slug}\n")))
    if not cutover:
        for g in range(groups):
            (repo.work / f"r{round_}-g{g}-shared.txt").write_text("main's own\n")
        git("add", "-A", cwd=repo.work)
        git("commit", "-q", "-m", f"main before round {round_}", cwd=repo.work)
        git("push", "-q", "origin", "main", cwd=repo.work)
    for slug, name, sha in made:
        submit(http, reporter, slug, name, sha)
    return [slug for slug, _, _ in made]


def gaps(engine_url: str, slugs: list[str]) -> tuple[list[float], list[float]]:
    """(after a block, between two clean candidates) in seconds, from the service's records
    of this round's candidates."""
    engine = make_engine(get_settings(database_url=engine_url))
    try:
        with Session(engine) as session:
            query = (
                select(Event)
                .where(Event.type == "candidate_status_changed", Event.slug.in_(slugs))
                .order_by(Event.seq)
            )
            changes = [(e.slug, e.fields["to"], e.recorded_at) for e in session.scalars(query)]
    finally:
        engine.dispose()
    handed = {slug: at for slug, to, at in changes if to == "in_progress"}
    done = {slug: (to, at) for slug, to, at in changes if to in OUTCOMES}
    order = sorted(handed, key=lambda slug: handed[slug])
    after_block: list[float] = []
    clean: list[float] = []
    for this, following in itertools.pairwise(order):
        status, at = done[this]
        seconds = (handed[following] - at).total_seconds()
        blocked = this.endswith("-x")
        if blocked and status not in ("blocked", "predicted"):
            raise RuntimeError(f"{this} was meant to conflict but is {status}")
        if blocked:
            after_block.append(seconds)
        elif this.endswith("-a"):
            clean.append(seconds)
    return after_block, clean


def run_backend(
    backend: str, rounds: int, groups: int, cutover: bool
) -> tuple[list[float], list[float], list[float]]:
    """(gaps after a block, gaps between two clean candidates) over every round, and each
    round's ratio of their medians (a busy minute lands on both sides of a round's ratio)."""
    after_block: list[float] = []
    clean: list[float] = []
    ratios: list[float] = []
    with temp_database(backend) as database_url, tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        repo = Repo(root, files=1)
        settings = get_settings(
            database_url=database_url, repo=str(repo.bare), mirror_dir=str(root / "mirrors")
        )
        reporter, integrator = make_token(settings, "reporter"), make_token(settings, "integrator")
        with service(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
            if cutover:
                guard(settings, url, http, repo)
            workspace = root / "worker"
            run_worker(settings, url, integrator, repo, workspace)  # first clone, not measured
            for round_ in range(rounds):
                slugs = queue_round(http, reporter, repo, round_, groups, cutover)
                run_worker(settings, url, integrator, repo, workspace)
                blocked, between = gaps(database_url, slugs)
                if len(blocked) < groups - 1 or not between:
                    raise RuntimeError(
                        f"round {round_}: {len(blocked)} blocks, {len(between)} clean"
                    )
                after_block += blocked
                clean += between
                ratios.append(statistics.median(blocked) / statistics.median(between))
    return after_block, clean, ratios


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"{statistics.median(values) * 1000:.1f} (p90 {p90 * 1000:.1f})"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench blocked")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--mode", choices=("shadow", "cutover"), default="cutover")
    options = parser.parse_args(argv)
    cutover = options.mode == "cutover"
    print(f"{options.rounds} rounds of {options.groups} groups (clean a, clean b, x blocked by "
          f"a conflict), {options.mode}, no check")  # fmt: skip
    print("gap = the service's recorded_at of one outcome to the next candidate's in_progress\n")
    print("| backend | blocks | after a block ms, median (p90) | between clean ms, median (p90) "
          "| ratio | per-round ratio, median (min-max) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for backend in BACKENDS:
        after_block, clean, ratios = run_backend(backend, options.rounds, options.groups, cutover)
        ratio = statistics.median(after_block) / statistics.median(clean)
        spread = f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
        print(
            f"| {backend} | {len(after_block)} | {_ms(after_block)} | {_ms(clean)} "
            f"| {ratio:.2f}x | {spread} |",
            flush=True,
        )
