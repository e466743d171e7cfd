"""Push latency with our hooks against two baselines measured in the same run.

The hooks' cost is reported against a repository with no hooks and one whose two
hooks are no-op Python scripts started the same way (`#!/usr/bin/python3 -IS`, read stdin, exit
0) — the floor for hooks written in Python. Goal: within 1.5x of that floor.

Three bare repositories with the same history: `none`, `noop`, `ours` (installed with
`integrator.hookinstall.install`, a hook token, identity source `plain`). One real `integrator
serve` on a throw-away SQLite database, warmed up before anything is timed; fresh install, so
shadow mode. Every push goes through a server-side transport:
`git push --receive-pack="env -i PATH=/usr/bin:/bin INTEGRATOR_PUSHER=alice git-receive-pack"`.

Cases, each a new commit pushed to all three repositories:

* branch: one commit on `refs/heads/feature` (unprotected: no git subprocess in the hook);
* main: one commit on `refs/heads/main` (protected; `new^1 == old`: one `git rev-parse`; the
  service records `push_would_reject`);
* main+2: two commits on main (`new^1 != old`: `rev-parse`, then `merge-base --is-ancestor`).

The variants run round-robin in a rotating order, so machine noise hits all three alike; after
each push the bench waits SETTLE seconds (untimed) so that post-receive's background report does
not overlap the next push. Then the hook scripts alone: `pre-receive`/`post-receive` started as
git starts them (stdin prepared, `GIT_DIR` set, service warm) against the no-op script, which
separates git's own push cost from ours. For post-receive that is the parent's time only: the
pusher waits for nothing else. Last, the decision time the service records with each verdict
(`latency_ms`: deciding only, not HTTP or recording), per variant.

`--before=REV` adds a fourth repository whose hooks are `hooks/*` at git revision REV, installed
the same way and interleaved with the rest: a before/after comparison in one run. A revision
with a launcher is installed as install places it (launcher, bodies compiled beside the
configuration); an older one's scripts replace the launchers, as it installed them.

    make bench BENCH=hooks            # or: python -m bench hooks --rounds=30 --before=HEAD~1
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

from sqlalchemy import select

from bench.common import GIT_ENV, make_token, percentile, service, temp_database
from integrator import hookinstall
from integrator.cli.local import local_session
from integrator.models import Event
from integrator.settings import Settings, get_settings

ROUNDS = 30
WARMUP = 3
SETTLE = 0.15
PYTHON = "/usr/bin/python3"
SERVER_PATH = "/usr/bin:/bin"
VARIANTS = ("none", "noop", "ours")
BEFORE = "before"
LABELS = {"none": "none", "noop": "no-op Python", "ours": "ours", BEFORE: "ours, before"}
CASES = ("branch", "main", "main+2")
NOOP = f"#!{PYTHON} -IS\nimport sys\nsys.stdin.buffer.read()\n"
RECEIVE_PACK = f"--receive-pack=env -i PATH={SERVER_PATH} INTEGRATOR_PUSHER=alice git-receive-pack"


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


class World:
    """A work clone and bare repositories with the same history, one per variant."""

    def __init__(self, root: Path, variants: tuple[str, ...]) -> None:
        self.root = root
        self.work = root / "work"
        self.variants = variants
        self.bare = {name: root / f"{name}.git" for name in variants}
        git("init", "-q", "--initial-branch=main", str(self.work), cwd=root)
        for bare in self.bare.values():
            git("init", "-q", "--bare", "--initial-branch=main", str(bare), cwd=root)
        self.counter, self.current = 0, "main"
        self.commit("main")
        git("branch", "feature", cwd=self.work)
        self.commit("feature")
        for bare in self.bare.values():
            git("push", "-q", str(bare), "main", "feature", cwd=self.work)

    def install(self, url: str, token: str, before: str | None) -> None:
        for name in ("pre-receive", "post-receive"):
            hook = self.bare["noop"] / "hooks" / name
            hook.write_text(NOOP)
            hook.chmod(0o755)
        options = {"url": url, "token": token, "repository": "bench", "python": PYTHON}
        hookinstall.install(self.bare["ours"], identity_source="plain", **options)
        if before:
            self.install_before(before, options)

    def install_before(self, before: str, options: dict[str, str]) -> None:
        """The hooks of revision `before`, installed the way that revision installs them."""
        checkout = Path(hookinstall.__file__).resolve().parent.parent
        listed = git("ls-tree", "--name-only", before, "hooks/", cwd=checkout).split()
        names = [n for n in ("pre-receive", "post-receive", "launcher") if f"hooks/{n}" in listed]
        sources = self.root / "hooks-before"
        sources.mkdir()
        for name in names:
            (sources / name).write_text(git("show", f"{before}:hooks/{name}", cwd=checkout) + "\n")
        bare = self.bare[BEFORE]
        if "launcher" in names:
            with mock.patch.object(hookinstall, "hook_sources", return_value=sources):
                hookinstall.install(bare, identity_source="plain", **options)
            return
        hookinstall.install(bare, identity_source="plain", **options)
        for name in ("pre-receive", "post-receive"):  # then, the scripts were the hooks
            (bare / "hooks" / name).write_text((sources / name).read_text())

    def commit(self, branch: str) -> str:
        """A new commit on `branch` in the work clone (a new file: the push carries objects)."""
        self.counter += 1
        if branch != self.current:
            git("checkout", "-q", branch, cwd=self.work)
            self.current = branch
        (self.work / f"{branch}-{self.counter}.txt").write_text(f"{self.counter}\n")
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", f"{branch} {self.counter}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def prepare(self, case: str) -> str:
        """Commit what `case` pushes; the refspec to push."""
        if case == "branch":
            self.commit("feature")
            return "feature:refs/heads/feature"
        for _ in range(2 if case == "main+2" else 1):
            self.commit("main")
        return "main:refs/heads/main"

    def push(self, variant: str, refspec: str) -> float:
        started = time.perf_counter()
        result = subprocess.run(
            ["git", "push", "-q", RECEIVE_PACK, str(self.bare[variant]), refspec],
            cwd=self.work,
            env={**os.environ, **GIT_ENV},
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
        if result.returncode != 0 or "service unavailable" in result.stderr:
            raise SystemExit(f"push to {variant} failed or fell back: {result.stderr}")
        return elapsed


def push_rounds(world: World, rounds: int) -> dict[tuple[str, str], list[float]]:
    variants = world.variants
    samples: dict[tuple[str, str], list[float]] = {(c, v): [] for c in CASES for v in variants}
    for index in range(-WARMUP, rounds):
        for case in CASES:
            refspec = world.prepare(case)
            shift = index % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                elapsed = world.push(variant, refspec)
                if index >= 0:
                    samples[(case, variant)].append(elapsed)
                time.sleep(SETTLE)
    return samples


def hook_runner(path: Path, git_dir: Path, stdin: bytes) -> Callable[[], float]:
    """Start a hook as git does (argv[0] = the script, stdin, GIT_DIR, the server's PATH)."""
    env = {"PATH": SERVER_PATH, "GIT_DIR": str(git_dir), "INTEGRATOR_PUSHER": "alice"}

    def run() -> float:
        started = time.perf_counter()
        result = subprocess.run(
            [str(path)], input=stdin, cwd=git_dir, env=env, capture_output=True, check=False
        )
        elapsed = time.perf_counter() - started
        if result.returncode != 0 or b"service unavailable" in result.stderr:
            raise SystemExit(f"{path} failed or fell back: {result.stderr!r}")
        return elapsed

    return run


def script_rounds(world: World, rounds: int) -> dict[str, list[float]]:
    """The hook scripts alone against the no-op script, interleaved the same way."""
    ours, noop = world.bare["ours"], world.bare["noop"]

    def line(old: str, new: str, ref: str) -> bytes:
        old, new = (git("rev-parse", name, cwd=ours) for name in (old, new))
        return f"{old} {new} {ref}\n".encode()

    inputs = {
        "branch": line("feature^", "feature", "refs/heads/feature"),
        "main": line("main^", "main", "refs/heads/main"),
        "main+2": line("main~2", "main", "refs/heads/main"),
    }
    runners = {"no-op script": hook_runner(noop / "hooks" / "pre-receive", noop, inputs["branch"])}
    for variant in [v for v in world.variants if v in ("ours", BEFORE)]:
        bare, suffix = world.bare[variant], "" if variant == "ours" else f" ({BEFORE})"
        for case, stdin in inputs.items():
            runners[f"pre-receive, {case}{suffix}"] = hook_runner(
                bare / "hooks" / "pre-receive", bare, stdin
            )
        runners[f"post-receive (parent), branch{suffix}"] = hook_runner(
            bare / "hooks" / "post-receive", bare, inputs["branch"]
        )
    names = list(runners)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(-WARMUP, rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed = runners[name]()
            if index >= 0:
                samples[name].append(elapsed)
            time.sleep(SETTLE)
    return samples


def recorded_latencies(settings: Settings, world: World) -> dict[str, list[float]]:
    """The service's recorded decision time (`latency_ms`) of each push check, per variant."""
    variants = {str(world.bare[v].resolve()): v for v in world.variants if v in ("ours", BEFORE)}
    found: dict[str, dict[str, float]] = {v: {} for v in variants.values()}
    with local_session(settings) as session:
        for fields in session.scalars(select(Event.fields).where(Event.type.like("push_%"))):
            instance = str(fields.get("hook_instance", "")).partition(":")[2]
            if instance in variants and isinstance(fields.get("latency_ms"), int | float):
                found[variants[instance]][str(fields["push_id"])] = float(fields["latency_ms"])
    return {variant: list(by_push.values()) for variant, by_push in found.items()}


def ms(values: list[float], p: float) -> float:
    return percentile(values, p) * 1000


def report(
    variants: tuple[str, ...],
    pushes: dict[tuple[str, str], list[float]],
    scripts: dict[str, list[float]],
    recorded: dict[str, list[float]],
) -> None:
    rounds = len(next(iter(pushes.values())))
    print(f"{rounds} rounds, variants interleaved round-robin; times in ms\n")
    print("| push | hooks | p50 | p90 | p50 ÷ no-op | p90 ÷ no-op | p50 ÷ none | p50 - no-op p50 |")
    print("|---|---|---|---|---|---|---|---|")
    for case in CASES:
        floor, bare = pushes[(case, "noop")], pushes[(case, "none")]
        for variant in variants:
            values = pushes[(case, variant)]
            extra = ms(values, 50) - ms(floor, 50)
            print(
                f"| {case} | {LABELS[variant]} | {ms(values, 50):.1f} | {ms(values, 90):.1f} | "
                f"{ms(values, 50) / ms(floor, 50):.2f} | {ms(values, 90) / ms(floor, 90):.2f} | "
                f"{ms(values, 50) / ms(bare, 50):.2f} | {extra:+.1f} |"
            )
    print("\n| script alone | p50 | p90 | p50 ÷ no-op script |")
    print("|---|---|---|---|")
    floor = scripts["no-op script"]
    for name, values in scripts.items():
        print(
            f"| {name} | {ms(values, 50):.1f} | {ms(values, 90):.1f} | "
            f"{ms(values, 50) / ms(floor, 50):.2f} |"
        )
    print("\n| service's recorded decision (latency_ms) | checks | p50 | p99 |")
    print("|---|---|---|---|")
    for variant, values in recorded.items():
        if values:
            p50, p99 = percentile(values, 50), percentile(values, 99)
            print(f"| {LABELS[variant]} | {len(values)} | {p50:.1f} | {p99:.1f} |")


def option(argv: list[str], name: str) -> str | None:
    for arg in argv:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def main(argv: list[str]) -> None:
    rounds = max(1, int(option(argv, "rounds") or ROUNDS))
    before = option(argv, "before")
    variants = VARIANTS + ((BEFORE,) if before else ())
    with tempfile.TemporaryDirectory() as folder, temp_database("sqlite") as url:
        root = Path(folder)
        world = World(root, variants)
        settings = get_settings(
            database_url=url,
            repository="bench",
            repo=str(world.bare["ours"]),
            mirror_dir=str(root / "mirrors"),
        )
        token = make_token(settings, "hook")
        with service(settings, root / "service.log") as base:
            world.install(base, token, before)
            print(f"receive-pack: {shlex.quote(RECEIVE_PACK)}")
            if before:
                print(f"before: hooks/ at {before}")
            pushes = push_rounds(world, rounds)
            scripts = script_rounds(world, rounds)
            recorded = recorded_latencies(settings, world)
            for variant in [v for v in variants if v in ("ours", BEFORE)]:
                spool = world.bare[variant] / "integrator" / "state" / "spool"
                if spool.exists() and any(spool.iterdir()):
                    raise SystemExit(f"{variant}: the hook spooled verdicts without the service")
    report(variants, pushes, scripts, recorded)
