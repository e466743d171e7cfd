"""What the audit of main costs on a long history: `GET /v1/audit` and `integrator audit --json`
over 10,000 first-parent commits, with 100,000 events and 10,000 candidates stored.

Per backend: a bare repository whose main has 10,000 first-parent commits (written with
`git fast-import`): 500 from before the guard, 4,500 pushed by people in shadow (one to three
per push, each push a recorded verdict), 5,000 landed by the queue in cutover (each with its
trailers and a landed registration of its candidate). The database holds those records, the
candidates' submissions and approvals, the registrations' events, and filler events of the
kinds a busy queue records, 100,000 events in all. A real `integrator serve` (background work
off) reads the repository in place. Baseline measured in the same run on the same repository:
`git rev-list --first-parent main`, and `git log --first-parent` with the audit's own format
(a new process each, like the audit's git call).

    .venv/bin/python -m bench audit [--samples=N] [--commits=N] [--events=N]
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, text

from bench import common
from bench.common import BACKENDS, GIT_ENV, make_token, service, settings_env, temp_database
from bench.status_bench import option
from integrator.audit_reader import _FORMAT
from integrator.db import make_engine
from integrator.models import Candidate, Event, Registration
from integrator.settings import Settings, get_settings

SAMPLES = 20
CLI_SAMPLES = 10
COMMITS = 10_000
EVENTS = 100_000
CANDIDATES = 10_000
BEFORE_GUARD = 500
REPOSITORY = "app"
T0 = datetime(2026, 6, 1, tzinfo=UTC)


def build_repository(path: Path, commits: int, rng: random.Random) -> list[tuple[str, str]]:
    """A bare repository with `commits` first-parent commits on main; the second half carry
    the integrator's trailers. (sha, attempt or '') per commit, oldest first."""
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True,
                   env={**GIT_ENV, "PATH": "/usr/bin:/bin"})  # fmt: skip
    attempts = [str(uuid.UUID(int=rng.getrandbits(128))) if n >= commits // 2 else ""
                for n in range(commits)]  # fmt: skip
    stream = []
    for n, attempt in enumerate(attempts):
        when = int((T0 + timedelta(minutes=n)).timestamp())
        message = f"change {n}\n"
        if attempt:
            message += (f"\nIntegrator-Candidate: {n}\nIntegrator-Epoch: 1\n"
                        f"Integrator-Attempt: {attempt}\n")  # fmt: skip
        content = f"{n}\n"
        stream.append(
            f"commit refs/heads/main\nmark :{n + 1}\n"
            f"author Dev {n % 50} <dev{n % 50}@example.test> {when} +0000\n"
            f"committer Dev {n % 50} <dev{n % 50}@example.test> {when} +0000\n"
            f"data {len(message.encode())}\n{message}"
            + (f"from :{n}\n" if n else "")
            + f"M 644 inline f{n % 100}.txt\ndata {len(content)}\n{content}\n"
        )
    subprocess.run(["git", "fast-import", "--quiet"], input="".join(stream).encode(),
                   cwd=path, check=True, env={**GIT_ENV, "PATH": "/usr/bin:/bin"})  # fmt: skip
    shas = subprocess.run(["git", "rev-list", "--first-parent", "--reverse", "main"], cwd=path,
                          check=True, capture_output=True, text=True).stdout.split()  # fmt: skip
    return list(zip(shas, attempts, strict=True))


class Rows:
    """Bulk rows with their own sequence numbers (the finalize_ready seq is the candidate's)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.candidates: list[dict[str, Any]] = []
        self.registrations: list[dict[str, Any]] = []

    def event(self, kind: str, at: datetime, fields: dict[str, Any], **columns: Any) -> int:
        seq = len(self.events) + 1
        self.events.append({
            "seq": seq, "type": kind, "repository": REPOSITORY, "natural_key": f"k{seq}",
            "content_hash": "0" * 64, "slug": columns.get("slug"), "branch": columns.get("branch"),
            "sha": columns.get("sha"), "fields": fields, "actor": columns.get("actor", "bench"),
            "recorded_at": at,
        })  # fmt: skip
        return seq


def verdict_fields(old: str, new: str, mode: str, pusher: str) -> dict[str, Any]:
    return {
        "push_id": uuid.uuid4().hex, "hook_instance": "git1:/srv/app.git",
        "ref": "refs/heads/main", "resolved_ref": "refs/heads/main", "old": old, "new": new,
        "fast_forward": True, "first_parent": False, "protected": True, "mode": mode,
        "would_reject": mode == "shadow", "allowed": mode == "shadow",
        "reason_code": "not_registered", "pusher": pusher, "identity_source": "plain",
        "latency_ms": 3.0, "decided_locally": False, "bypass": False,
    }  # fmt: skip


def seed(settings: Settings, chain: list[tuple[str, str]], events: int, rng: random.Random) -> None:
    rows = Rows()
    at = lambda n: T0 + timedelta(minutes=n, seconds=30)  # noqa: E731 - after commit n
    half = len(chain) // 2
    rows.event("mode_changed", at(BEFORE_GUARD - 1), {"from": "off", "to": "shadow",
               "version": 1, "reason": "install", "forced": False, "drill": False})  # fmt: skip
    n = BEFORE_GUARD
    while n < half:  # people push one to three commits at a time in shadow
        top = min(half, n + rng.randint(1, 3)) - 1
        fields = verdict_fields(chain[n - 1][0], chain[top][0], "shadow", f"dev{n % 50}")
        rows.event("push_would_reject", at(top), fields, branch="main", sha=chain[top][0])
        n = top + 1
    rows.event("mode_changed", at(half - 1), {"from": "shadow", "to": "cutover", "version": 2,
               "reason": "go", "forced": False, "drill": False})  # fmt: skip
    for c in range(1, CANDIDATES + 1):
        slug, branch, sha = f"s{c}", f"feat/s{c}", f"{c:040x}"
        landed = half + c - 1 if half + c - 1 < len(chain) else None
        when = at(landed - 1) if landed else T0 + timedelta(minutes=rng.randrange(len(chain)))
        rows.event("review_approved", when - timedelta(minutes=5), {"slug": slug},
                   slug=slug, actor=f"reviewer{c % 7}")  # fmt: skip
        seq = rows.event("finalize_ready", when - timedelta(minutes=1),
                         {"slug": slug, "branch": branch, "sha": sha}, slug=slug, branch=branch,
                         sha=sha, actor=f"author{c % 30}")  # fmt: skip
        rows.candidates.append({
            "id": c, "repository": REPOSITORY, "slug": slug, "branch": branch, "sha": sha,
            "status": "integrated" if landed else rng.choice(["closed", "superseded"]),
            "position": c, "finalize_seq": seq, "unmet": [], "epoch": 1 if landed else None,
            "created_at": when, "updated_at": when,
        })  # fmt: skip
        rows.event("candidate_status_changed", when, {"candidate_id": c, "to": "queued"}, slug=slug)
        if landed is None:
            continue
        new, attempt = chain[landed]
        rows.registrations.append({
            "id": c, "repository": REPOSITORY, "ref": "refs/heads/main",
            "old": chain[landed - 1][0], "new": new, "candidate_id": c, "epoch": 1,
            "attempt": attempt, "nonce_hash": uuid.uuid4().hex, "status": "landed",
            "expires_at_ms": 0, "created_at": when, "updated_at": when,
        })  # fmt: skip
        for kind in ("created", "authorized", "landed"):
            rows.event(f"registration_{kind}", when, {"registration_id": c, "candidate_id": c})
        fields = verdict_fields(chain[landed - 1][0], new, "cutover", "integrator-bot")
        fields.update(allowed=True, would_reject=False, reason_code="registered")
        rows.event("push_allowed", when, fields, branch="main", sha=new)
    while len(rows.events) < events:  # branches pushed and checked: the bulk of a busy log
        when = T0 + timedelta(minutes=rng.randrange(len(chain)))
        fields = verdict_fields("1" * 40, "2" * 40, "shadow", "dev")
        fields.update(ref="refs/heads/feat/x", resolved_ref="refs/heads/feat/x", protected=False)
        kind = rng.choice(["push_allowed", "branch_pushed", "candidate_status_changed"])
        rows.event(kind, when, fields, branch="feat/x", sha="2" * 40)
    engine = make_engine(settings)
    try:
        with engine.begin() as connection:
            for chunk in range(0, len(rows.events), 10_000):
                connection.execute(insert(Event), rows.events[chunk : chunk + 10_000])
            connection.execute(insert(Candidate), rows.candidates)
            connection.execute(insert(Registration), rows.registrations)
            if engine.dialect.name == "postgresql":
                for table, column in (("events", "seq"), ("candidates", "id"),
                                      ("registrations", "id")):  # fmt: skip
                    connection.execute(text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                        f"(SELECT max({column}) FROM {table}))"
                    ))  # fmt: skip
    finally:
        engine.dispose()


def timed_run(command: list[str], count: int, **kwargs: Any) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, **kwargs)
        samples.append(time.perf_counter() - started)
        assert done.returncode in (0, 1), done.stderr
    return samples


def run_backend(backend: str, argv: list[str], folder: Path) -> list[common.Row]:
    samples = option(argv, "samples", SAMPLES)
    rng = random.Random(19)
    rows: list[common.Row] = []

    def record(name: str, times: list[float]) -> None:
        rows.append(common.latency_row(backend, name, times))

    bare = folder / f"{backend}.git"
    chain = build_repository(bare, option(argv, "commits", COMMITS), rng)
    git = ["git", "-C", str(bare)]
    record("baseline: `git rev-list --first-parent main`",
           timed_run([*git, "rev-list", "--first-parent", "main"], samples))  # fmt: skip
    record("baseline: `git log --first-parent` with the audit's format",
           timed_run([*git, "log", "--first-parent", "-z", f"--format={_FORMAT}", "main"],
                     samples))  # fmt: skip
    with temp_database(backend) as url:
        settings = get_settings(
            database_url=url, repository=REPOSITORY, repo=str(bare),
            conditions_interval_seconds=0, main_watch_interval_seconds=0,
        )  # fmt: skip
        began = time.perf_counter()
        seed(settings, chain, option(argv, "events", EVENTS), rng)
        print(f"{backend}: seeded in {time.perf_counter() - began:.1f} s", flush=True)
        token = make_token(settings, "reader")
        with service(settings) as base:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
                first = http.get("/v1/audit", params={"limit": 10_000}).json()
                assert first["total"] == len(chain), first["total"]
                assert first["unexplained"] == 0, first["unexplained_items"][:3]
                print(f"{backend}: counts {first['counts']}", flush=True)
                for name, params in (("GET /v1/audit?limit=10000 (every commit)",
                                      {"limit": 10_000}),
                                     ("GET /v1/audit (first page of 100)", {})):  # fmt: skip
                    times = []
                    for _ in range(samples):
                        started = time.perf_counter()
                        response = http.get("/v1/audit", params=params)
                        times.append(time.perf_counter() - started)
                        assert response.status_code == 200, response.text
                    record(name, times)
            env = {**settings_env(settings), "INTEGRATOR_URL": base, "INTEGRATOR_TOKEN": token}
            command = [sys.executable, "-m", "integrator", "audit", "--json"]
            record("`integrator audit --json` (a new process)",
                   timed_run(command, option(argv, "cli-samples", CLI_SAMPLES),
                             env=env))  # fmt: skip
    return rows


def main(argv: list[str]) -> None:
    commits, events = option(argv, "commits", COMMITS), option(argv, "events", EVENTS)
    print(f"{commits} first-parent commits, {events} events and {CANDIDATES} candidates stored;"
          " sequential, one client")  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        results = [row for b in BACKENDS for row in run_backend(b, argv, Path(folder))]
    common.print_latency_table(results)
    for backend in BACKENDS:
        mine = {name: p50 for b, name, _, p50, _ in results if b == backend}
        floor = mine["baseline: `git rev-list --first-parent main`"]
        audit = mine["GET /v1/audit?limit=10000 (every commit)"]
        print(f"{backend}: GET /v1/audit (every commit) p50 is {audit / floor:.1f}x the "
              "rev-list baseline")  # fmt: skip
