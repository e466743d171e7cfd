"""Builders for the worker tests: a real service on a real canonical repository, candidates
made READY through the API, and `integrator worker` as a subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from integrator.db import make_engine
from integrator.models import Event, Registration
from integrator.settings import Settings
from tests.builders import branch_pushed, finalize_ready, review_approved
from tests.gitrepos import SERVER_PATH, Canonical, git
from tests.support import REPO_ROOT, ServiceProcess, TokenMaker, run_cli, settings_env

T = TypeVar("T")

#: A 3 s lease renewed every 0.5 s (deadline 1 s, margin 0.5 s): takeovers within seconds.
SHORT_LEASE: dict[str, Any] = {
    "lease_ttl_seconds": 3.0,
    "lease_renew_interval_seconds": 0.5,
    "lease_renew_deadline_seconds": 1.0,
    "authorize_margin_seconds": 0.5,
}


def wait_for(condition: Callable[[], T | None], timeout: float = 30.0, what: str = "") -> T:
    """Poll `condition` until it returns something truthy, or fail after `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")


def process_gone(pid: int) -> bool:
    """True when `pid` no longer runs (a zombie awaiting its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def first_parents(world: WorkerWorld, since: str) -> list[str]:
    """main's first-parent commits after `since`, oldest first."""
    out = git("rev-list", "--first-parent", "--reverse", f"{since}..main", cwd=world.canonical.bare)
    return out.split()


def trailers(world: WorkerWorld, sha: str) -> dict[str, str]:
    """The trailers of commit `sha` on the canonical repository (Integrator-Attempt, …)."""
    out = git("show", "--no-patch", "--format=%(trailers:only,unfold)", sha,
              cwd=world.canonical.bare)  # fmt: skip
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


def refs_of(bare: Path) -> str:
    """Every ref of a repository with its object name, byte for byte."""
    return git("for-each-ref", "--format=%(refname) %(objectname)", cwd=bare)


#: The integrator bot's identity, as the git server's transport sets it.
BOT = "integrator-bot"


class WorkerWorld:
    """A canonical repository, a service on it, and the tokens to drive both.

    A context manager: `with WorkerWorld(...).start() as world:` closes it however the
    block ends (the fixtures of the worker tests are that one line)."""

    def __init__(
        self,
        settings: Settings,
        tmp_path: Path,
        tokens: TokenMaker,
        lease: dict[str, Any] | None = None,
    ) -> None:
        self.tmp_path = tmp_path
        self.tokens = tokens
        self.canonical = Canonical(tmp_path)
        self.settings = settings.model_copy(
            update={"repo": str(self.canonical.bare), **(lease or SHORT_LEASE)}
        )
        #: Variables every worker of this world gets on top of the settings.
        self.worker_extra: dict[str, str] = {}
        self.service = ServiceProcess(self.settings, tmp_path / "service.log")
        self.reporter = {"Authorization": f"Bearer {tokens('reporter')}"}
        self.operator = {"Authorization": f"Bearer {tokens('operator')}"}
        self.integrator_token = tokens("integrator")
        self.integrator = {"Authorization": f"Bearer {self.integrator_token}"}
        self.http = httpx.Client(timeout=30)

    def start(self) -> WorkerWorld:
        self.service.start()
        return self

    def close(self) -> None:
        self.http.close()
        self.service.stop()

    def __enter__(self) -> WorkerWorld:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        return f"{self.service.url}{path}"

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(self.url(path), headers=self.operator, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
        return self.http.post(self.url(path), json=body, headers=headers)

    def ready(self, slug: str, path: str | None = None, content: str = "change\n") -> int:
        """A branch with one commit, pushed, approved and finalized: a queued candidate id."""
        branch = f"feat/{slug}"
        sha = self.canonical.branch(branch, path=path, content=content)
        candidate: dict[str, Any] | None = None
        for envelope in (
            review_approved(slug),
            branch_pushed(branch, sha),
            finalize_ready(slug, branch, sha),
        ):
            response = self.post("/v1/events", envelope, self.reporter)
            assert response.status_code == 201, response.text
            candidate = response.json().get("candidate") or candidate
        assert candidate is not None and candidate["status"] == "queued", candidate
        return int(candidate["id"])

    def push_to_main(self, path: str, content: str, message: str) -> str:
        """A human commit straight on main, pushed (shadow allows it)."""
        git("checkout", "-q", "main", cwd=self.canonical.work)
        sha = self.canonical.commit(path, content, message)
        git("push", "-q", "origin", "main", cwd=self.canonical.work)
        return sha

    def candidate(self, candidate_id: int) -> dict[str, Any]:
        body: dict[str, Any] = self.get(f"/v1/candidates/{candidate_id}")
        return body

    def lease(self) -> dict[str, Any]:
        body: dict[str, Any] = self.get("/v1/lease")
        return body

    def events(self, *types: str) -> list[Event]:
        engine = make_engine(self.settings)
        try:
            with Session(engine) as session:
                query = select(Event).where(Event.type.in_(types)).order_by(Event.seq)
                return list(session.scalars(query))
        finally:
            engine.dispose()

    def worker_env(self, **extra: str) -> dict[str, str]:
        return settings_env(
            self.settings,
            INTEGRATOR_URL=self.service.url,
            INTEGRATOR_TOKEN=self.integrator_token,
            **{**self.worker_extra, **extra},
        )

    def guard(self, deadline: float = 10.0) -> WorkerWorld:
        """Install the hooks on the canonical repository, and make the workers push to it the
        way a git server receives pushes: the pusher is set by the server-side transport.

        The deadline is generous: the machines running the tests are noisy, and the hook's
        own deadline has tests of its own.
        """
        env = settings_env(self.settings, INTEGRATOR_URL=self.service.url)
        token_file = self.tmp_path / "hook.token"
        token_file.write_text(self.tokens("hook") + "\n")
        installed = run_cli(
            "hooks", "install", str(self.canonical.bare), "--url", self.service.url,
            "--token-file", str(token_file), "--identity-source", "plain",
            "--deadline", str(deadline), env=env,
        )  # fmt: skip
        assert installed.returncode == 0, installed.stderr
        config = self.tmp_path / "worker.gitconfig"
        server = f"env -i PATH={SERVER_PATH} INTEGRATOR_PUSHER={BOT} git-receive-pack"
        git("config", "--file", str(config), "remote.origin.receivepack", server, cwd=self.tmp_path)
        self.worker_extra["GIT_CONFIG_GLOBAL"] = str(config)
        return self

    def cutover(self) -> None:
        """Switch to cutover (forced: these worlds have no shadow history to show)."""
        forced = self.post("/v1/cutover", {"reason": "test", "force": True}, self.operator)
        assert forced.status_code == 200, forced.text

    def registrations(self) -> list[Registration]:
        engine = make_engine(self.settings)
        try:
            with Session(engine) as session:
                return list(session.scalars(select(Registration).order_by(Registration.id)))
        finally:
            engine.dispose()

    def worker_args(self, *extra: str, workspace: str = "ws") -> list[str]:
        return [
            sys.executable,
            "-m",
            "integrator",
            "worker",
            "--repo",
            str(self.canonical.bare),
            "--workspace",
            str(self.tmp_path / workspace),
            "--poll-interval",
            "0.2",
            *extra,
        ]

    def run_worker(
        self, *extra: str, timeout: float = 60.0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`integrator worker …` to completion."""
        return subprocess.run(
            self.worker_args(*extra),
            env=self.worker_env(**(env or {})),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_worker(
        self,
        *extra: str,
        log_name: str = "worker.log",
        workspace: str = "ws",
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """`integrator worker …` in the background, its output in a log file."""
        log = (self.tmp_path / log_name).open("wb")
        try:
            return subprocess.Popen(
                self.worker_args(*extra, workspace=workspace),
                env=self.worker_env(**(env or {})),
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()


def kill_group_of_pidfile(path: Path) -> None:
    """Clean up a check orphaned by a killed worker (its group outlives the worker)."""
    if path.exists():
        pgid = int(path.read_text().split()[0])
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
