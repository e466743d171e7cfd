"""Push latency through real git hosts: our hooks against two no-op Python hooks, same run.

The hosts are the test suite's (`tests/integration/hosts`): Gitolite behind its own sshd (alice
pushes with her key; the pusher is GL_USER) and `git http-backend` behind lighttpd with basic
auth (REMOTE_USER), each on 127.0.0.1 as its own unprivileged user. They need root and the
system packages (`make system-packages`).

Per host, three repositories with the same start: `none` (no hooks of ours: Gitolite still runs
its update hook), `noop` (pre-receive and post-receive are no-op Python scripts started the way
ours are, `#!/usr/bin/python3 -IS`, reading stdin — the floor for hooks in Python) and `ours`
(installed with `integrator hooks install`: Gitolite layout and identity, or identity `http`).
One real `integrator serve` on a throw-away SQLite database, shadow mode, warmed up first.

Each round pushes one new commit to `main` of every repository (a protected update: the hook
checks it with the service, which records `push_would_reject`), the variants in a rotating order
so that machine noise hits them alike, SETTLE seconds (untimed) after each push so that
post-receive's background report does not overlap the next one. Beside it, what the service
records for each of those checks (`latency_ms` of `push_would_reject`: its own decision time,
from request to commit — the hook's start-up and git's work are in the push latency only).

    make bench BENCH=hosts            # or: python -m bench hosts --rounds=20
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from bench.common import GIT_ENV, make_token, percentile, service, temp_database
from integrator.cli.local import local_session
from integrator.models import Event
from integrator.settings import get_settings
from tests.integration.hosts.hosts import (
    HOOK_PYTHON,
    GitoliteHost,
    HttpHost,
    host_root,
    missing_requirements,
)

ROUNDS = 20
WARMUP = 2
SETTLE = 0.15
VARIANTS = ("none", "noop", "ours")
NOOP = f"#!{HOOK_PYTHON} -IS\nimport sys\nsys.stdin.buffer.read()\n"


class Target:
    """One repository on one host and the clone that pushes to it as alice."""

    def __init__(self, root: Path, url: str, credentials: dict[str, str]) -> None:
        self.work = root
        self.url = url
        self.env = {**os.environ, **GIT_ENV, **credentials, "GIT_TERMINAL_PROMPT": "0"}
        self.git("init", "-q", "--initial-branch=main", str(root), cwd=root.parent)
        self.count = 0
        self.commit_and_push()

    def git(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["git", *args], cwd=cwd or self.work, env=self.env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise SystemExit(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def commit_and_push(self) -> float:
        """One new commit on main, pushed; the push's wall time in seconds."""
        self.count += 1
        self.git("commit", "-q", "--allow-empty", "-m", f"push {self.count}")
        started = time.perf_counter()
        self.git("push", "-q", self.url, "main")
        return time.perf_counter() - started


def place_noop_hooks(git_dir: Path) -> None:
    """Two no-op Python hooks, the repository owner's, as ours would be."""
    owner = git_dir.stat()
    for name in ("pre-receive", "post-receive"):
        hook = git_dir / "hooks" / name
        hook.write_text(NOOP)
        hook.chmod(0o755)
        os.chown(hook, owner.st_uid, owner.st_gid)


def install(git_dir: Path, name: str, url: str, token_file: Path, *options: str) -> None:
    """`integrator hooks install`, as an operator on the git server runs it."""
    argv = [sys.executable, "-m", "integrator", "hooks", "install", str(git_dir), "--url", url]
    argv += ["--token-file", str(token_file), "--python", HOOK_PYTHON, "--repository", name]
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTEGRATOR_")}
    proc = subprocess.run([*argv, *options], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"hooks install {git_dir}: {proc.stderr.strip()}")


def rounds_of(targets: dict[str, Target], rounds: int) -> dict[str, list[float]]:
    """Push to every variant per round, in a rotating order; warm-up rounds are not kept."""
    samples: dict[str, list[float]] = {v: [] for v in targets}
    order = list(targets)
    for index in range(WARMUP + rounds):
        rotated = order[index % len(order) :] + order[: index % len(order)]
        for variant in rotated:
            elapsed = targets[variant].commit_and_push()
            if index >= WARMUP:
                samples[variant].append(elapsed)
            time.sleep(SETTLE)
    return samples


def recorded_latency(settings_url: str, repository: str) -> list[float]:
    """The hook's own latency, as the service recorded it on each push_would_reject (ms)."""
    settings = get_settings(database_url=settings_url)
    with local_session(settings) as session:
        query = select(Event).where(Event.type == "push_would_reject")
        return [
            float(event.fields["latency_ms"])
            for event in session.scalars(query)
            if event.repository == repository and event.fields.get("latency_ms") is not None
        ]


def hooks_revision() -> str:
    """Which hooks were measured: the checkout's commit, and whether hooks/ differs from it."""
    here = Path(__file__).resolve().parent.parent
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True
    )
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", "hooks"], cwd=here, capture_output=True, text=True
    )
    if head.returncode != 0:
        return "not a git checkout"
    dirty = " (hooks/ has uncommitted changes)" if changed.stdout.strip() else ""
    return f"{head.stdout.strip()}{dirty}"


def report(results: dict[str, dict[str, list[float]]], latency: dict[str, list[float]]) -> None:
    print("| host | hooks | pushes | p50 ms | p99 ms | p50 ÷ no-op p50 |")
    print("|---|---|---|---|---|---|")
    for host, samples in results.items():
        floor = percentile(samples["noop"], 50)
        for variant in VARIANTS:
            values = samples[variant]
            p50, p99 = percentile(values, 50), percentile(values, 99)
            ratio = f"**{p50 / floor:.2f}**" if variant == "ours" else f"{p50 / floor:.2f}"
            ms = f"{p50 * 1000:.0f} | {p99 * 1000:.0f}"
            print(f"| {host} | {variant} | {len(values)} | {ms} | {ratio} |")
    print()
    print("| host | push checks recorded (latency_ms: the service's decision) | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    for host, values in latency.items():
        if values:
            ms = f"{percentile(values, 50):.1f} | {percentile(values, 99):.1f}"
            print(f"| {host} | {len(values)} | {ms} |")


def main(argv: list[str]) -> None:
    missing = missing_requirements()
    if missing:
        print(f"skipped: the real hosts need {', '.join(missing)} (make system-packages, as root)")
        return
    rounds = ROUNDS
    for arg in argv:
        if arg.startswith("--rounds="):
            rounds = max(1, int(arg.split("=", 1)[1]))
    root = host_root()
    safe = root / "root.gitconfig"  # the service reads repositories the host users own
    safe.write_text("[safe]\n\tdirectory = *\n")
    os.environ["GIT_CONFIG_GLOBAL"] = str(safe)
    gitolite = GitoliteHost(root)
    gitolite.allow_config_key(r"receive\.advertisePushOptions")
    web = HttpHost(root)
    try:
        with temp_database("sqlite") as url:
            settings = get_settings(
                database_url=url, repository="ssh-ours", mirror_dir=str(root / "mirrors")
            )
            token_file = root / "hook.token"
            token_file.write_text(make_token(settings, "hook") + "\n")
            with service(settings, root / "service.log") as base:
                results, latency = run(root, gitolite, web, base, token_file, rounds, url)
    finally:
        gitolite.stop()
        web.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"rounds: {rounds} (+{WARMUP} warm-up), settle {SETTLE}s, hooks run with {HOOK_PYTHON}")
    print(f"hooks: {hooks_revision()}")
    report(results, latency)


def run(
    root: Path,
    gitolite: GitoliteHost,
    web: HttpHost,
    base: str,
    token_file: Path,
    rounds: int,
    database_url: str,
) -> tuple[dict[str, dict[str, list[float]]], dict[str, list[float]]]:
    gitolite.start()
    web.start()
    hosts: dict[
        str, tuple[Callable[[str], Path], Callable[[str], str], dict[str, str], tuple[str, ...]]
    ] = {
        "Gitolite over SSH": (
            lambda n: gitolite.add_repo(n, "config receive.advertisePushOptions = true"),
            gitolite.url,
            {"GIT_SSH_COMMAND": gitolite.keys.ssh_command("alice")},
            ("--layout", "gitolite", "--identity-source", "gitolite"),
        ),
        "smart HTTP (lighttpd)": (
            web.add_repo,
            web.url,
            web.client_env("alice"),
            ("--identity-source", "http"),
        ),
    }
    results: dict[str, dict[str, list[float]]] = {}
    latency: dict[str, list[float]] = {}
    for (host, (add, url_of, credentials, options)), prefix in zip(
        hosts.items(), ("ssh", "http"), strict=True
    ):
        targets = {}
        for variant in VARIANTS:
            name = f"{prefix}-{variant}"
            git_dir = add(name)
            targets[variant] = Target(root / f"work-{name}", url_of(name), credentials)
            if variant == "noop":
                place_noop_hooks(git_dir)
            elif variant == "ours":
                install(git_dir, name, base, token_file, *options)
        results[host] = rounds_of(targets, rounds)
        latency[host] = recorded_latency(database_url, f"{prefix}-ours")
    return results, latency
