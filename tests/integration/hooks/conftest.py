"""Fixtures for the hook tests: a recording stand-in of the service, and a bare repository with
the hooks installed, pushed to the way a server receives pushes (the pusher is set on the server
side, never taken from the client).

The service is not what these tests are about: ``FakeService`` answers the hook's HTTP contract
with configurable verdicts and records every request, so that a test can assert what the hook
sent. The real service is tested against the hooks elsewhere.

Pushes go through ``--receive-pack="env -i PATH=... INTEGRATOR_PUSHER=alice git-receive-pack"``:
the hook sees only the server side's environment, never the client's.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from integrator import hookinstall
from tests.gitrepos import GIT_ENV

SERVER_PATH = "/usr/bin:/bin"
Body = dict[str, Any]
Answer = Callable[[Body], tuple[int, Body]]


@dataclass(frozen=True)
class Recorded:
    """One request the fake service received."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw) if self.raw else None


@dataclass
class Route:
    answer: Answer
    delay: float = 0.0


def verdict(
    *,
    allow: bool = True,
    mode: str = "shadow",
    messages: tuple[str, ...] = (),
    protected: tuple[str, ...] = ("refs/heads/main",),
    mode_version: int = 1,
) -> Answer:
    """A push-checks answer: `allow` decides every protected update; others always pass."""

    def answer(request: Body) -> tuple[int, Body]:
        updates = [
            {
                "ref": u["ref"],
                "resolved_ref": u["resolved_ref"],
                "allow": allow or u["resolved_ref"] not in protected,
                "would_reject": not allow and u["resolved_ref"] in protected,
                "reason_code": "ok" if allow else "not_registered",
            }
            for u in request["updates"]
        ]
        return 200, {
            "mode": mode,
            "mode_version": mode_version,
            "protected_refs": list(protected),
            "allow": all(u["allow"] for u in updates),
            "reason_code": "ok" if allow else "not_registered",
            "messages": list(messages),
            "updates": updates,
        }

    return answer


def fixed(status: int, body: Body | None = None) -> Answer:
    return lambda _request: (status, body or {})


class FakeService:
    """A ThreadingHTTPServer on 127.0.0.1 that answers per route and records every request."""

    def __init__(self) -> None:
        self.token = "hook-token-" + os.urandom(8).hex()
        self.requests: list[Recorded] = []
        self.routes: dict[tuple[str, str], Route] = {}
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.respond("GET", "/healthz", fixed(200, {"status": "ok"}))
        self.respond("GET", "/v1/whoami", self._whoami)
        self.respond("POST", "/v1/push-checks", verdict())
        self.respond("POST", "/v1/push-reports", fixed(200, {"events": []}))
        self.respond("POST", "/v1/push-checks/spool", fixed(200, {"accepted": 0}))
        self.whoami_role = "hook"
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.block_on_close = False  # a sleeping handler must not hold up teardown
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        self.up = True

    def respond(self, method: str, path: str, answer: Answer, delay: float = 0.0) -> None:
        self.routes[(method, path)] = Route(answer, delay)

    def received(self, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 15.0) -> list[Recorded]:
        """Poll until `count` requests to `path` arrived (fails after `timeout`)."""
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            found = self.received(path)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{count} request(s) to {path} expected, got {self.received(path)}")

    def go_down(self) -> None:
        """Stop listening: connections are refused from now on."""
        if self.up:
            self.up = False
            self.stopping.set()
            self._server.shutdown()
            self._server.server_close()

    def _whoami(self, _request: Body) -> tuple[int, Body]:
        return 200, {"name": "hook-1", "role": self.whoami_role}

    def _record(self, recorded: Recorded) -> None:
        with self._lock:
            self.requests.append(recorded)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                service._record(Recorded(method, self.path, headers, raw))
                route = service.routes.get((method, self.path))
                if route is None:
                    status, body = 404, {"code": "not_found"}
                elif headers.get("authorization") != f"Bearer {service.token}" and (
                    self.path != "/healthz"
                ):
                    status, body = 401, {"code": "unauthenticated"}
                else:
                    if route.delay:
                        service.stopping.wait(route.delay)
                    status, body = route.answer(json.loads(raw) if raw else {})
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the hook gave up waiting: that is what some tests want

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def dead_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def git(*args: str, cwd: Path, check: bool = True) -> str:
    env = {**os.environ, **GIT_ENV}
    # safe.directory: some tests hand the repository to another owner, as on a git server
    argv = ["git", "-c", "safe.directory=*", *args]
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


class ServerRepo:
    """A bare `canonical.git` (one commit on main) and a work clone that pushes to it."""

    def __init__(self, root: Path, service: FakeService) -> None:
        self.root = root
        self.service = service
        self.bare = root / "canonical.git"
        self.work = root / "work"
        git("init", "--quiet", "--bare", "--initial-branch=main", str(self.bare), cwd=root)
        git("init", "--quiet", "--initial-branch=main", str(self.work), cwd=root)
        self.commit("initial")
        git("push", "--quiet", str(self.bare), "main", cwd=self.work)

    @property
    def state_dir(self) -> Path:
        return self.bare / "integrator" / "state"

    def install(self, **options: Any) -> hookinstall.InstallResult:
        settings: dict[str, Any] = {
            "url": self.service.url,
            "token": self.service.token,
            "repository": "canonical",
            "python": "/usr/bin/python3",
        }
        settings.update(options)
        return hookinstall.install(self.bare, **settings)

    def commit(self, message: str) -> str:
        (self.work / "file.txt").write_text(message + "\n")
        git("add", "file.txt", cwd=self.work)
        git("commit", "--quiet", "-m", message, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def ref(self, name: str) -> str | None:
        value = git("rev-parse", "--verify", "-q", name, cwd=self.bare, check=False)
        return value or None

    def push(
        self,
        *refspecs: str,
        pusher: str | None = "alice",
        server_env: dict[str, str] | None = None,
        client_config: tuple[str, ...] = (),
        as_user: int | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`git push` whose receive-pack (and so the hooks) sees only the server's variables.

        `as_user` runs the server side as that uid, as a git host runs it as its git user.
        """
        variables = {"PATH": SERVER_PATH, **(server_env or {})}
        if pusher is not None:
            variables["INTEGRATOR_PUSHER"] = pusher
        assigned = " ".join(f"{k}={shlex.quote(v)}" for k, v in variables.items())
        become = ""
        if as_user is not None:
            become = f"setpriv --reuid={as_user} --regid={as_user} --clear-groups "
        config = [arg for item in client_config for arg in ("-c", item)]
        receive_pack = f"--receive-pack={become}env -i {assigned} git-receive-pack"
        argv = ["git", *config, "push", receive_pack]
        env = {**os.environ, **GIT_ENV}
        return subprocess.run(
            [*argv, str(self.bare), *refspecs],
            cwd=self.work,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def run_hook(
        self, hook: Path, stdin: bytes, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run an installed hook script directly, as git would, with `stdin` as its input."""
        return subprocess.run(
            [str(hook)],
            input=stdin,
            cwd=self.bare,
            env={"PATH": SERVER_PATH, "GIT_DIR": ".", **(env or {})},
            capture_output=True,
            timeout=30,
            check=False,
        )

    def spooled(self) -> list[dict[str, Any]]:
        folder = self.state_dir / "spool"
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]

    def write_override(self, mode: int, expires_at: str = "2999-01-01T00:00:00+00:00") -> Path:
        path = self.state_dir / "override.json"
        body = {"expires_at": expires_at, "reason": "service down, release blocked", "by": "ops"}
        path.write_text(json.dumps(body))
        path.chmod(mode)
        return path


@pytest.fixture
def fake() -> Iterator[FakeService]:
    service = FakeService()
    yield service
    service.go_down()


@pytest.fixture
def repo(tmp_path: Path, fake: FakeService) -> ServerRepo:
    return ServerRepo(tmp_path, fake)


@pytest.fixture
def installed(repo: ServerRepo) -> ServerRepo:
    repo.install()
    return repo


def remote_lines(output: str) -> list[str]:
    """What the pusher saw from the server, without git's `remote: ` prefix."""
    return [
        line[len("remote: ") :].rstrip()
        for line in output.splitlines()
        if line.startswith("remote: ")
    ]
