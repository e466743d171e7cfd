"""A repository on a real git host, the service guarding it, and clients pushing to it as
distinct users through the host's own transport and authentication."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from integrator.db import make_engine
from integrator.models import Base
from integrator.settings import Settings
from tests.builders import branch_pushed, finalize_ready, review_approved
from tests.gitrepos import GIT_ENV
from tests.integration.hosts.hosts import HOOK_PYTHON, client_env
from tests.support import REPO_ROOT, ServiceProcess, TokenMaker, run_cli, settings_env

_names = itertools.count(1)


def repo_name() -> str:
    """A repository name no other test of this run uses on the same host."""
    return f"app{next(_names)}"


def remote(result: subprocess.CompletedProcess[str]) -> str:
    """What the pusher saw from the server's hooks."""
    return "\n".join(line for line in result.stderr.splitlines() if line.startswith("remote:"))


class HostedRepo:
    """A repository served by a real host, guarded by our hooks and a real service.

    ``credentials(user)`` gives the client environment that authenticates as ``user`` on that
    host (an SSH key, or a basic-auth header from configuration in the environment).
    """

    def __init__(
        self,
        settings: Settings,
        tmp_path: Path,
        tokens: TokenMaker,
        *,
        name: str,
        path: Path,
        url: str,
        credentials: Callable[..., dict[str, str]],
    ) -> None:
        self.name, self.path, self.url, self.tmp_path = name, path, url, tmp_path
        self.credentials = credentials
        self.work = tmp_path / "work"
        self.git("init", "-q", "--initial-branch=main", str(self.work), cwd=tmp_path)
        self.git("commit", "-q", "--allow-empty", "-m", "initial")
        self.git("remote", "add", "origin", url)
        pushed = self.push("alice", "main")
        assert pushed.returncode == 0, pushed.stderr
        self.settings = settings.model_copy(update={"repo": str(path)})
        self.service = ServiceProcess(self.settings, tmp_path / "service.log")
        self.service.start()
        self.tokens = {
            role: tokens(role) for role in ("operator", "reporter", "integrator", "hook")
        }
        self.env = settings_env(self.settings, INTEGRATOR_URL=self.service.url)
        self.http = httpx.Client(timeout=30)

    def close(self) -> None:
        self.http.close()
        self.service.stop()

    # -- the git server's side ------------------------------------------------------------

    def install(self, *options: str) -> subprocess.CompletedProcess[str]:
        """`integrator hooks install` as an operator on the git server runs it."""
        token_file = self.tmp_path / "hook.token"
        token_file.write_text(self.tokens["hook"] + "\n")
        return run_cli(
            "hooks", "install", str(self.path), "--url", self.service.url,
            "--token-file", str(token_file), "--python", HOOK_PYTHON,
            "--repository", self.name, *options, env=self.env,
        )  # fmt: skip

    def head(self, ref: str = "refs/heads/main") -> str:
        argv = ["git", f"--git-dir={self.path}", "rev-parse", "--verify", "-q", ref]
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()

    # -- clients --------------------------------------------------------------------------

    def git(self, *args: str, cwd: Path | None = None, user: str = "alice") -> str:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd or self.work,
            env=client_env(**self.credentials(user)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
        return proc.stdout.strip()

    def push(
        self,
        user: str,
        *refspecs: str,
        headers: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """A real `git push` to the host, authenticated as `user` (`env`: what else the
        client sets, e.g. to pass for someone else)."""
        return subprocess.run(
            ["git", "push", "--porcelain", self.url, *refspecs],
            cwd=self.work,
            env=client_env(**{**self.credentials(user, *headers), **(env or {})}),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def sync_main(self) -> None:
        """The clone's main at the host's main (fetched only when the clone lacks it: every
        round trip to a real host costs a connection and an authentication)."""
        head = self.head()
        argv = ["git", "cat-file", "-e", f"{head}^{{commit}}"]
        if subprocess.run(argv, cwd=self.work, capture_output=True, check=False).returncode:
            self.git("fetch", "-q", self.url, "+refs/heads/main:refs/remotes/origin/main")
        self.git("checkout", "-q", "-B", "main", head)

    def commit_on_main(self, label: str) -> str:
        """A commit on top of the host's main, not pushed yet."""
        self.sync_main()
        (self.work / f"{label}.txt").write_text(label + "\n")
        self.git("add", f"{label}.txt")
        self.git("commit", "-q", "-m", f"direct change {label}")
        return self.git("rev-parse", "HEAD")

    def branch(
        self, name: str, user: str = "alice"
    ) -> tuple[str, subprocess.CompletedProcess[str]]:
        """A branch off the host's main with one commit, pushed by `user`."""
        self.sync_main()
        self.git("checkout", "-q", "-B", name, "main")
        (self.work / f"{name.replace('/', '_')}.txt").write_text(name + "\n")
        self.git("add", "-A")
        self.git("commit", "-q", "-m", f"work on {name}")
        sha = self.git("rev-parse", "HEAD")
        return sha, self.push(user, f"{name}:refs/heads/{name}")

    # -- the service ----------------------------------------------------------------------

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env={**self.env, "INTEGRATOR_TOKEN": self.tokens["operator"]})

    def operate(self, action: str, **body: Any) -> None:
        """An operator's mode change through the API (`cutover` forced: no shadow history)."""
        response = self.http.post(
            f"{self.service.url}/v1/{action}",
            json={"reason": "host test", **body},
            headers={"Authorization": f"Bearer {self.tokens['operator']}"},
        )
        assert response.status_code == 200, response.text

    def events(self, type_name: str) -> list[dict[str, Any]]:
        response = self.http.get(
            f"{self.service.url}/v1/events",
            params={"type": type_name},
            headers={"Authorization": f"Bearer {self.tokens['operator']}"},
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def wait_events(
        self,
        type_name: str,
        count: int = 1,
        timeout: float = 20,
        where: Callable[[dict[str, Any]], bool] = lambda _fields: True,
    ) -> list[Any]:
        """The events of a type whose fields match `where`, once there are `count` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events(type_name) if where(e["fields"])]
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{count} {type_name} event(s) did not arrive: {found}")

    def ready(self, slug: str) -> int:
        """A branch pushed by alice, approved and finalized: a queued candidate's id."""
        branch = f"feat/{slug}"
        sha, pushed = self.branch(branch)
        assert pushed.returncode == 0, pushed.stderr
        reporter = {"Authorization": f"Bearer {self.tokens['reporter']}"}
        candidate: dict[str, Any] | None = None
        for envelope in (
            review_approved(slug),
            branch_pushed(branch, sha),
            finalize_ready(slug, branch, sha),
        ):
            response = self.http.post(
                f"{self.service.url}/v1/events", json=envelope, headers=reporter
            )
            assert response.status_code in (200, 201), response.text
            candidate = response.json().get("candidate") or candidate
        assert candidate is not None and candidate["status"] == "queued", candidate
        return int(candidate["id"])

    def candidate(self, candidate_id: int) -> dict[str, Any]:
        response = self.http.get(
            f"{self.service.url}/v1/candidates/{candidate_id}",
            headers={"Authorization": f"Bearer {self.tokens['operator']}"},
        )
        body: dict[str, Any] = response.json()
        return body

    def run_worker(self, url: str, credentials: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """`integrator worker --once` as the bot, pushing to the host at `url` as itself."""
        log = self.tmp_path / "worker.log"
        env = settings_env(
            self.settings,
            INTEGRATOR_URL=self.service.url,
            INTEGRATOR_TOKEN=self.tokens["integrator"],
            **GIT_ENV,
            **credentials,
        )
        argv = [sys.executable, "-m", "integrator", "worker", "--repo", url]
        argv += ["--workspace", str(self.tmp_path / "ws"), "--poll-interval", "0.2", "--once"]
        result = subprocess.run(
            argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
        )
        log.write_text(result.stdout + result.stderr)
        return result

    def database_text(self) -> str:
        """Every row of every table, as text."""
        engine = make_engine(self.settings)
        try:
            with Session(engine) as session:
                rows = [
                    repr(row)
                    for table in Base.metadata.sorted_tables
                    for row in session.execute(select(table)).all()
                ]
        finally:
            engine.dispose()
        return "\n".join(rows)


def files_containing(roots: list[Path], secrets: list[str], skip: set[Path]) -> list[str]:
    """Every file under `roots` (but `skip`) that holds one of `secrets`, as `path: secret#`."""
    found = []
    for root in roots:
        paths = [root] if root.is_file() else root.rglob("*")
        for path in sorted(p for p in paths if p.is_file() and not p.is_symlink()):
            if any(path == s or s in path.parents for s in skip):
                continue
            data = path.read_bytes()
            found += [f"{path}: secret {i}" for i, s in enumerate(secrets) if s.encode() in data]
    return found
