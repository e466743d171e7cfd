"""The integrator's registered push through the installed hooks and a real service process.

The nonce travels as git does it for the worker: the push option comes from
GIT_CONFIG_COUNT/GIT_CONFIG_KEY_0=push.pushOption/GIT_CONFIG_VALUE_0 in the client's
environment, never on the command line; the server runs receive-pack with only its own
variables and advertises push options.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from integrator.settings import Settings
from tests.builders import branch_pushed, finalize_ready, review_approved
from tests.gitrepos import GIT_ENV, SERVER_PATH, git
from tests.integration.test_guard_e2e import Guarded, remote

MAIN = "refs/heads/main"


class Integrating:
    """A guarded repository in cutover, and the lease holder with one candidate in progress."""

    def __init__(self, guarded: Guarded) -> None:
        self.guarded = guarded
        self.canonical = guarded.canonical
        self.url = guarded.service.url
        env = guarded.operator_env
        self.integrator = {"Authorization": f"Bearer {Guarded.token(env, 'integrator')}"}
        self.reporter = {"Authorization": f"Bearer {Guarded.token(env, 'reporter')}"}
        git("config", "receive.advertisePushOptions", "true", cwd=self.canonical.bare)
        sha = self.canonical.branch("feat/one")
        for envelope in (review_approved("one"), branch_pushed("feat/one", sha),
                         finalize_ready("one", "feat/one", sha)):  # fmt: skip
            assert self.post("/v1/events", envelope, self.reporter).status_code == 201
        assert guarded.cli("cutover", "--force", "--reason", "test").returncode == 0
        grant = self.post("/v1/lease/acquire", {"holder": "bot"}, self.integrator).json()
        self.grant = {"epoch": grant["epoch"], "token": grant["token"]}
        self.candidate = self.post("/v1/queue/next", self.grant, self.integrator).json()

    def post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, headers=headers, timeout=30)

    def get(self, path: str) -> Any:
        return httpx.get(f"{self.url}{path}", headers=self.reporter, timeout=30).json()

    def merge(self, attempt: str) -> tuple[str, str]:
        """The integrator's merge on main's tip with its attempt trailer; (old, new)."""
        work = self.canonical.work
        git("fetch", "-q", "origin", cwd=work)
        git("checkout", "-q", "-B", "main", "origin/main", cwd=work)
        message = f"Merge feat/one\n\nIntegrator-Attempt: {attempt}"
        git("merge", "-q", "--no-ff", "-m", message, self.candidate["sha"], cwd=work)
        return git("rev-parse", "origin/main", cwd=work), git("rev-parse", "HEAD", cwd=work)

    def register(self, old: str, new: str, attempt: str) -> dict[str, Any]:
        body = {**self.grant, "candidate_id": self.candidate["id"], "ref": MAIN, "old": old,
                "new": new, "attempt": attempt}  # fmt: skip
        response = self.post("/v1/registrations", body, self.integrator)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def push(self, nonce: str, refspec: str, old: str) -> subprocess.CompletedProcess[str]:
        """The worker's push: the nonce only in the environment, compare-and-swap on old."""
        server = f"env -i PATH={SERVER_PATH} INTEGRATOR_PUSHER=integrator-bot"
        env = {**os.environ, **GIT_ENV, "GIT_CONFIG_COUNT": "1",
               "GIT_CONFIG_KEY_0": "push.pushOption",
               "GIT_CONFIG_VALUE_0": f"integrator-push={nonce}"}  # fmt: skip
        return subprocess.run(
            ["git", "push", "--porcelain", f"--force-with-lease={MAIN}:{old}",
             f"--receive-pack={server} git-receive-pack", str(self.canonical.bare), refspec],
            cwd=self.canonical.work, env=env, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip

    def wait_status(self, registration_id: int, status: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get(f"/v1/registrations/{registration_id}")["status"] == status:
                return
            time.sleep(0.1)
        raise AssertionError(f"registration {registration_id} never became {status}")


@pytest.fixture
def integrating(tmp_path: Path, settings: Settings) -> Iterator[Integrating]:
    world = Guarded(tmp_path, settings)
    try:
        yield Integrating(world)
    finally:
        world.service.stop()


def test_the_registered_update_lands_once_and_its_nonce_buys_nothing_more(
    integrating: Integrating,
) -> None:
    """The push lands and post-receive marks the registration landed; the same nonce on the
    next commit, or through a symbolic alias of main, is refused and main does not move."""
    attempt = str(uuid.uuid4())
    old, new = integrating.merge(attempt)
    registration = integrating.register(old, new, attempt)
    pushed = integrating.push(registration["nonce"], f"{new}:{MAIN}", old)
    assert pushed.returncode == 0, pushed.stderr
    assert integrating.canonical.head() == new
    assert registration["nonce"] not in pushed.stdout + pushed.stderr
    integrating.wait_status(registration["id"], "landed")
    body = {**integrating.grant, "outcome": "integrated", "main_sha": new, "attempt": attempt,
            "registration_id": registration["id"]}  # fmt: skip
    done = integrating.post(
        f"/v1/candidates/{integrating.candidate['id']}/outcome", body, integrating.integrator
    )
    assert done.status_code == 200 and done.json()["status"] == "integrated", done.text

    following = integrating.canonical.new_commit_on_main("replayed")
    replay = integrating.push(registration["nonce"], f"{following}:{MAIN}", new)
    assert replay.returncode != 0
    assert "integrator: refused main: no usable registration" in remote(replay)
    canonical = integrating.canonical
    git("symbolic-ref", "refs/heads/trunk", MAIN, cwd=canonical.bare)
    alias = integrating.push(registration["nonce"], f"{following}:refs/heads/trunk", new)
    assert alias.returncode != 0 and "an alias of main" in remote(alias)
    assert canonical.head() == new


def test_a_nonce_of_an_earlier_epoch_cannot_move_main_after_a_takeover(
    integrating: Integrating,
) -> None:
    """The old holder's push arrives after a takeover: refused, its registration void."""
    attempt = str(uuid.uuid4())
    old, new = integrating.merge(attempt)
    registration = integrating.register(old, new, attempt)
    released = integrating.guarded.cli("lease", "release", "--force", "--reason", "takeover")
    assert released.returncode == 0, released.stderr
    late = integrating.push(registration["nonce"], f"{new}:{MAIN}", old)
    assert late.returncode != 0
    assert "the registration's lease epoch has ended" in remote(late)
    assert integrating.canonical.head() == old
    assert integrating.get(f"/v1/registrations/{registration['id']}")["status"] == "void"
