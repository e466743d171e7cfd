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
from integrator.models import Event
from integrator.settings import Settings
from tests.builders import branch_pushed, finalize_ready, review_approved
from tests.gitrepos import Canonical, git
from tests.support import REPO_ROOT, ServiceProcess, TokenMaker, settings_env

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


def refs_of(bare: Path) -> str:
    """Every ref of a repository with its object name, byte for byte."""
    return git("for-each-ref", "--format=%(refname) %(objectname)", cwd=bare)


class WorkerWorld:
    """A canonical repository, a service on it, and the tokens to drive both."""

    def __init__(self, settings: Settings, tmp_path: Path, tokens: TokenMaker) -> None:
        self.tmp_path = tmp_path
        self.canonical = Canonical(tmp_path)
        self.settings = settings.model_copy(
            update={"repo": str(self.canonical.bare), **SHORT_LEASE}
        )
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

    def worker_env(self) -> dict[str, str]:
        return settings_env(
            self.settings, INTEGRATOR_URL=self.service.url, INTEGRATOR_TOKEN=self.integrator_token
        )

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

    def run_worker(self, *extra: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """`integrator worker …` to completion."""
        return subprocess.run(
            self.worker_args(*extra),
            env=self.worker_env(),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_worker(self, *extra: str, log_name: str = "worker.log") -> subprocess.Popen[bytes]:
        """`integrator worker …` in the background, its output in a log file."""
        log = (self.tmp_path / log_name).open("wb")
        try:
            return subprocess.Popen(
                self.worker_args(*extra),
                env=self.worker_env(),
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
