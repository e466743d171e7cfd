"""What people and clients do during the run: candidates made READY, pushes to branches and
to main through the installed hooks, an operator's mode changes and break-glass overrides,
and a steady load of push checks and events. Every push is timed and recorded with the mode
the operator had set and what the hook said."""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import threading
import time
import uuid
from typing import Any

import httpx

from tests.builders import finalize_ready, review_approved
from tests.faults.checker import LoadRequest, PushAttempt
from tests.faults.nemesis import Nemesis
from tests.faults.world import FaultWorld
from tests.gitrepos import GIT_ENV, SERVER_PATH, git

MAIN = "refs/heads/main"


class People:
    """One thread of people and one operator, so that the mode of every push is exact. The
    nemesis makes pushes too while the service is away (`during_outage`): `lock` keeps the
    shared work tree to one push at a time."""

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
        self.lock = threading.RLock()

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
                elif roll < 0.08:
                    self.break_glass_while_the_service_answers()
                else:
                    with self.lock:
                        if roll < 0.55:
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
            with self.lock:
                for _ in range(20):
                    self.push_branch()
                    if self.world.hook_cached_mode() == mode:
                        break
            assert self.world.hook_cached_mode() == mode

    def override(self, present: bool) -> None:
        """The operator on the git server writes (or removes) the break-glass override: the
        git user's own file, mode 0600, expiring in two minutes."""
        path = self.world.canonical.bare / "integrator" / "state" / "override.json"
        if not present:
            path.unlink(missing_ok=True)
            return
        expires = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 120))
        body = {"expires_at": expires, "reason": "fault test: service down", "by": "ops"}
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(body))
        temporary.chmod(0o600)
        temporary.replace(path)

    def break_glass_push(self) -> int | None:
        """A person pushes main with the operator's override in place (and removed after)."""
        with self.lock:
            self.override(True)
            try:
                return self.push_main(break_glass=True)
            finally:
                self.override(False)

    def break_glass_while_the_service_answers(self) -> None:
        """No fault active: the service decides, the override plays no part (in cutover the
        push is refused)."""
        with self.nemesis.lock:
            self.break_glass_push()

    def during_outage(self) -> str:
        """Called by the nemesis while the hook cannot reach any service: main and a branch
        pushed as usual (in cutover main is refused by the fallback, in readable lines), and
        sometimes main again under a break-glass override (let through, the bypass spooled).
        Says how each push ended."""
        with self.lock:
            codes = {"main": self.push_main(), "branch": self.push_branch()}
            if self.random.random() < 0.5:
                codes["break-glass main"] = self.break_glass_push()
        return f"in {self.mode}: " + ", ".join(
            f"{what} {'let through' if code == 0 else f'exit {code}'}"
            for what, code in codes.items()
        )

    def repoint_hook(self) -> None:
        """The git server's hook asks the other replica from now on (no fault active)."""
        with self.nemesis.lock:
            self.world.point_hook(self.random.choice(self.world.replicas).url)

    # -- people -----------------------------------------------------------------------------

    def push(
        self, pusher: str, refspec: str, ref: str, new: str, break_glass: bool = False
    ) -> int | None:
        """A real `git push` whose server side sets the pusher; timed and recorded with what
        the hook said."""
        server = f"env -i PATH={SERVER_PATH} INTEGRATOR_PUSHER={pusher}"
        started, said = time.monotonic(), ""
        try:
            result = subprocess.run(
                ["git", "push", "-q", f"--receive-pack={server} git-receive-pack",
                 str(self.world.canonical.bare), refspec],
                cwd=self.world.canonical.work, env={**os.environ, **GIT_ENV},
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            code: int | None = result.returncode
            said = result.stderr
        except subprocess.TimeoutExpired:
            code = None
        ended = time.monotonic()
        lines = tuple(line.removeprefix("remote: ").rstrip() for line in said.splitlines())
        self.pushes.append(
            PushAttempt(pusher, ref, new, started, ended, code, self.mode, break_glass, lines)
        )
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

    def push_main(self, break_glass: bool = False) -> int | None:
        n = next(self.counter)
        sha = self.world.canonical.new_commit_on_main(f"people/m{n}")
        pusher = "ops" if break_glass else self.random.choice(["alice", "bob"])
        return self.push(pusher, f"{sha}:{MAIN}", MAIN, sha, break_glass)

    def push_branch(self) -> int | None:
        n = next(self.counter)
        work = self.world.canonical.work
        git("checkout", "-q", "-B", f"topic/t{n}", self.world.base, cwd=work)
        sha = self.world.canonical.commit(f"topics/t{n}.txt", f"{n}\n", f"topic t{n}")
        git("checkout", "-q", "--detach", cwd=work)
        ref = f"refs/heads/topic/t{n}"
        return self.push("bob", f"{sha}:{ref}", ref, sha)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


#: Load clients unless FAULT_CLIENTS says otherwise ("CHECKS,EVENTS" or "CHECKS"; then a
#: quarter as many event clients), and each client's steady rate unless FAULT_RATE does.
CLIENTS = os.environ.get("FAULT_CLIENTS", "16,4")
RATE = float(os.environ.get("FAULT_RATE", "3"))
#: A load request with no answer after this long hung (a paused replica answers once resumed).
CLIENT_TIMEOUT = 8.0


def client_counts(text: str) -> tuple[int, int]:
    checks, _, events = text.partition(",")
    return int(checks), int(events) if events else max(1, int(checks) // 4)


class Load:
    """Client threads, each at its own steady rate (a missed slot is skipped, never made up in
    a burst): push checks as the hook sends them, and events. Each client keeps one
    connection open, as a busy git server's clients would not; the hook's own connections are
    exercised by the people's real pushes."""

    def __init__(self, world: FaultWorld, clients: str = CLIENTS, rate: float = RATE) -> None:
        self.world = world
        self.checkers, self.emitters = client_counts(clients)
        self.rate = rate
        self.latencies: list[float] = []
        #: (wall time sent, seconds, replica port) of every answered check, paused ones too.
        self.samples: list[tuple[float, float, int]] = []
        self.requests: list[LoadRequest] = []
        #: Ports of replicas the nemesis has stopped (SIGSTOP) right now.
        self.paused: set[int] = set()
        self.acknowledged: set[str] = set()
        self._stop = threading.Event()
        total = self.checkers + self.emitters
        self._threads = [
            threading.Thread(target=self._client, args=(n, n < self.checkers, n / total),
                             daemon=True, name=f"load-{n}")
            for n in range(total)
        ]  # fmt: skip

    @property
    def answered_while_paused(self) -> int:
        return sum(1 for r in self.requests if r.paused and r.outcome == "answered")

    @property
    def unanswered(self) -> int:
        return sum(1 for r in self.requests if r.kind == "check" and r.outcome != "answered")

    @property
    def sent_events(self) -> int:
        return sum(1 for r in self.requests if r.kind == "event")

    def describe(self) -> str:
        total = (self.checkers + self.emitters) * self.rate
        return (f"{self.checkers} push-check clients and {self.emitters} event clients at "
                f"{self.rate:g}/s each ({total:g} requests/s in all)")  # fmt: skip

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _check_body(self, n: int) -> dict[str, Any]:
        return {
            "repository": self.world.settings.repository_name,
            "hook_instance": "load:/srv/load.git",
            "hook_version": "1",
            "pusher": f"dev-{n % 7}",
            "identity_source": "plain",
            "updates": [{"ref": MAIN, "resolved_ref": MAIN, "old": f"{n:040x}",
                         "new": f"{n + 1:040x}", "fast_forward": True, "first_parent": False}],
        }  # fmt: skip

    def _event_body(self, branch: str) -> dict[str, Any]:
        return {
            "type": "branch_pushed",
            "idempotency_key": f"load:{branch}",
            "fields": {"branch": branch, "sha": uuid.uuid4().hex + "0" * 8,
                       "remote": self.world.settings.repository_name,
                       "pushed_at": _now(), "pusher": "load"},
        }  # fmt: skip

    def _client(self, index: int, checks: bool, phase: float) -> None:
        period = 1.0 / self.rate
        due = time.monotonic() + phase * period
        with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
            for n in itertools.count(index * 1_000_000):
                due += period
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return
                due = max(due, time.monotonic() - period)
                if checks:
                    self._check(client, n)
                else:
                    self._event(client, n)

    def _send(
        self, client: httpx.Client, kind: str, n: int, path: str, body: Any, headers: Any
    ) -> httpx.Response | None:
        replica = self.world.replicas[n % len(self.world.replicas)]
        started, sent, paused = time.monotonic(), time.time(), replica.port in self.paused
        answer: httpx.Response | None = None
        try:
            answer = client.post(f"{replica.url}{path}", json=body, headers=headers)
            code = answer.status_code
            outcome = "answered" if code < 400 else "refused" if code >= 500 else f"{code}"
        except httpx.TimeoutException:
            outcome = "timeout"
        except httpx.TransportError:
            outcome = "unreachable"
        took = time.monotonic() - started
        # A replica that was not running (SIGSTOP) answers late: the host's fault, not the
        # service's latency.
        paused = paused or replica.port in self.paused
        self.requests.append(LoadRequest(kind, took, outcome, paused))
        if kind == "check" and outcome == "answered":
            self.samples.append((sent, took, replica.port))
            if not paused:
                self.latencies.append(took)
        return answer

    def _check(self, client: httpx.Client, n: int) -> None:
        self._send(client, "check", n, "/v1/push-checks", self._check_body(n), self.world.hook)

    def _event(self, client: httpx.Client, n: int) -> None:
        branch = f"load/e{n}"
        answer = self._send(client, "event", n, "/v1/events", self._event_body(branch),
                            self.world.reporter)  # fmt: skip
        if answer is not None and answer.status_code in (200, 201):
            self.acknowledged.add(branch)
