"""What people and clients do during the run: candidates made READY, pushes to branches and
to main through the installed hooks, an operator's mode changes, and a steady load of push
checks and events. Every push is timed and recorded with the mode the operator had set."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import threading
import time
import uuid
from typing import Any

import httpx

from tests.builders import finalize_ready, review_approved
from tests.faults.checker import PushAttempt
from tests.faults.nemesis import Nemesis
from tests.faults.world import FaultWorld
from tests.gitrepos import GIT_ENV, SERVER_PATH, git

MAIN = "refs/heads/main"


class People:
    """One thread of people and one operator, so that the mode of every push is exact."""

    def __init__(
        self, world: FaultWorld, nemesis: Nemesis, seed: int, plan: list[tuple[float, str]]
    ):
        self.world, self.nemesis = world, nemesis
        self.random = random.Random(seed + 1)
        self.plan = list(plan)  # (seconds from start, mode), in order
        self.mode = "shadow"
        self.pushes: list[PushAttempt] = []
        self.candidates = 0
        self.unacknowledged: list[str] = []
        self.counter = itertools.count(1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="people")
        self.errors: list[str] = []

    def start(self) -> People:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self.plan and time.monotonic() - self.started >= self.plan[0][0]:
                    self.set_mode(self.plan.pop(0)[1])
                roll = self.random.random()
                if roll < 0.05:
                    self.repoint_hook()
                elif roll < 0.55:
                    self.new_candidate()
                elif roll < 0.8:
                    self.push_main()
                else:
                    self.push_branch()
                self._stop.wait(self.random.uniform(0.2, 1.0))
        except Exception as exc:
            self.errors.append(repr(exc))
            raise

    # -- the operator -----------------------------------------------------------------------

    def set_mode(self, mode: str) -> None:
        """Cutover (forced) or rollback, with no fault active, then a branch push so that the
        hook has seen the new mode before anyone pushes main."""
        with self.nemesis.lock:
            self.world.ensure_worker()
            path, body = (
                ("/v1/cutover", {"reason": "fault test", "force": True})
                if mode == "cutover"
                else ("/v1/rollback", {"reason": "fault test rollback"})
            )
            answer = self.world.call("POST", path, self.world.operator, body)
            assert answer is not None and answer.status_code == 200, answer and answer.text
            self.mode = mode
            for _ in range(20):
                self.push_branch()
                if self.world.hook_cached_mode() == mode:
                    break
            assert self.world.hook_cached_mode() == mode

    def repoint_hook(self) -> None:
        """The git server's hook asks the other replica from now on (no fault active)."""
        with self.nemesis.lock:
            self.world.point_hook(self.random.choice(self.world.replicas).url)

    # -- people -----------------------------------------------------------------------------

    def push(self, pusher: str, refspec: str, ref: str, new: str) -> int | None:
        """A real `git push` whose server side sets the pusher; timed and recorded."""
        server = f"env -i PATH={SERVER_PATH} INTEGRATOR_PUSHER={pusher}"
        started = time.monotonic()
        try:
            result = subprocess.run(
                ["git", "push", "-q", f"--receive-pack={server} git-receive-pack",
                 str(self.world.canonical.bare), refspec],
                cwd=self.world.canonical.work, env={**os.environ, **GIT_ENV},
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            code: int | None = result.returncode
        except subprocess.TimeoutExpired:
            code = None
        ended = time.monotonic()
        self.pushes.append(PushAttempt(pusher, ref, new, started, ended, code, self.mode))
        return code

    def new_candidate(self) -> None:
        n = next(self.counter)
        slug, branch = f"c{n}", f"feat/c{n}"
        work = self.world.canonical.work
        git("checkout", "-q", "-B", branch, self.world.base, cwd=work)
        sha = self.world.canonical.commit(f"candidates/c{n}.txt", f"{n}\n", f"work on c{n}")
        git("checkout", "-q", "--detach", cwd=work)
        for _ in range(5):
            if self.push("alice", f"{sha}:refs/heads/{branch}", f"refs/heads/{branch}", sha) == 0:
                break
            time.sleep(0.3)
        else:
            return
        branch_event = {
            "type": "branch_pushed",
            "idempotency_key": f"people:{branch}:{sha}",
            "fields": {"branch": branch, "sha": sha, "remote": self.world.settings.repository_name,
                       "pushed_at": _now(), "pusher": "alice"},
        }  # fmt: skip
        for envelope in (review_approved(slug), branch_event, finalize_ready(slug, branch, sha)):
            answer = self.world.call("POST", "/v1/events", self.world.reporter, envelope)
            if answer is None or answer.status_code not in (200, 201):
                self.unacknowledged.append(f"{envelope['type']} {slug}")
                return
        self.candidates += 1

    def push_main(self) -> None:
        n = next(self.counter)
        sha = self.world.canonical.new_commit_on_main(f"people/m{n}")
        self.push(self.random.choice(["alice", "bob"]), f"{sha}:{MAIN}", MAIN, sha)

    def push_branch(self) -> None:
        n = next(self.counter)
        work = self.world.canonical.work
        git("checkout", "-q", "-B", f"topic/t{n}", self.world.base, cwd=work)
        sha = self.world.canonical.commit(f"topics/t{n}.txt", f"{n}\n", f"topic t{n}")
        git("checkout", "-q", "--detach", cwd=work)
        ref = f"refs/heads/topic/t{n}"
        self.push("bob", f"{sha}:{ref}", ref, sha)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


class Load:
    """Client threads at a steady rate: push checks as the hook sends them, and events."""

    def __init__(self, world: FaultWorld, checkers: int = 2, rate: float = 10.0) -> None:
        self.world = world
        self.latencies: list[float] = []
        #: (wall time sent, seconds, replica port) of every answered check, paused ones too.
        self.samples: list[tuple[float, float, int]] = []
        #: Ports of replicas the nemesis has stopped (SIGSTOP) right now.
        self.paused: set[int] = set()
        self.answered_while_paused = 0
        self.unanswered = 0
        self.acknowledged: set[str] = set()
        self.sent_events = 0
        self.rate = rate
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._checks, args=(n,), daemon=True) for n in range(checkers)
        ] + [threading.Thread(target=self._events, daemon=True)]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _body(self, n: int) -> dict[str, Any]:
        return {
            "repository": self.world.settings.repository_name,
            "hook_instance": "load:/srv/load.git",
            "hook_version": "1",
            "pusher": f"dev-{n % 7}",
            "identity_source": "plain",
            "updates": [{"ref": MAIN, "resolved_ref": MAIN, "old": f"{n:040x}",
                         "new": f"{n + 1:040x}", "fast_forward": True, "first_parent": False}],
        }  # fmt: skip

    def _checks(self, index: int) -> None:
        n = index * 1_000_000
        while not self._stop.wait(1.0 / self.rate):
            n += 1
            replica = self.world.replicas[n % len(self.world.replicas)]
            started, sent, paused = time.monotonic(), time.time(), replica.port in self.paused
            try:
                answer = httpx.post(f"{replica.url}/v1/push-checks", json=self._body(n),
                                    headers=self.world.hook, timeout=5)  # fmt: skip
            except httpx.TransportError:
                self.unanswered += 1
                continue
            took = time.monotonic() - started
            if answer.status_code == 200:
                self.samples.append((sent, took, replica.port))
                # A replica that was not running (SIGSTOP) answers late: the host's fault,
                # not the service's latency.
                if paused or replica.port in self.paused:
                    self.answered_while_paused += 1
                else:
                    self.latencies.append(took)
            else:
                self.unanswered += 1

    def _events(self) -> None:
        for n in itertools.count(1):
            if self._stop.wait(1.0 / self.rate):
                return
            replica = self.world.replicas[n % len(self.world.replicas)]
            branch = f"load/e{n}"
            envelope = {
                "type": "branch_pushed",
                "idempotency_key": f"load:{branch}",
                "fields": {"branch": branch, "sha": uuid.uuid4().hex + "0" * 8,
                           "remote": self.world.settings.repository_name,
                           "pushed_at": _now(), "pusher": "load"},
            }  # fmt: skip
            self.sent_events += 1
            try:
                answer = httpx.post(f"{replica.url}/v1/events", json=envelope,
                                    headers=self.world.reporter, timeout=5)  # fmt: skip
            except httpx.TransportError:
                continue
            if answer.status_code in (200, 201):
                self.acknowledged.add(branch)
