"""A full run in cutover through the hooks, with JSON logs at debug level: no log shows a
secret the run used (API tokens, lease tokens, push nonces), and each request id ties the
worker's lines to the service's."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from integrator.api.app import create_app
from integrator.settings import Settings
from tests.support import REPO_ROOT, ServiceProcess, TokenMaker, settings_env
from tests.worker_support import WorkerWorld

#: Keys of the answers whose values are secrets handed to the worker.
SECRET_KEYS = ("token", "nonce")


class RecordingProxy:
    """Between the worker and the service: forwards every call unchanged and keeps the
    secrets the service hands out (lease tokens, registration nonces), which the database
    only stores hashed."""

    def __init__(self, upstream: str) -> None:
        self.upstream = httpx.Client(base_url=upstream, timeout=60)
        self.secrets: set[str] = set()
        self.request_ids: set[str] = set()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self._forward()

            def do_GET(self) -> None:
                self._forward()

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                proxy.request_ids.add(self.headers.get("X-Request-Id", ""))
                answer = proxy.upstream.request(
                    self.command, self.path, content=body, headers=headers
                )
                proxy.keep(answer)
                self.send_response(answer.status_code)
                for name in ("Content-Type", "X-Request-Id"):
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def keep(self, answer: httpx.Response) -> None:
        try:
            body = answer.json()
        except ValueError:
            return
        if isinstance(body, dict):
            self.secrets.update(str(body[k]) for k in SECRET_KEYS if body.get(k))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.upstream.close()


class DebugService(ServiceProcess):
    """`integrator serve --log-level debug`: everything the service would ever log."""

    def start(self, timeout: float = 30.0) -> None:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "integrator", "serve", "--port", str(self.port),
             "--log-level", "debug"],
            env=settings_env(self.settings), stdout=self._log, stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"service did not start: {self.log_path.read_text()}")


def debug_world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> WorkerWorld:
    """A guarded world whose service logs JSON at debug level into tmp_path/service.log."""
    world = WorkerWorld(settings.model_copy(update={"log_format": "json"}), tmp_path, tokens)
    world.service = DebugService(world.settings, tmp_path / "service.log")
    return world.start().guard()


def api_tokens_of(world: WorkerWorld, reader: str) -> list[str]:
    """Every API token a run used: the worker's, the hooks', the reporter's, the operator's
    and the reader's."""
    return [
        world.integrator_token,
        (world.tmp_path / "hook.token").read_text().strip(),
        *(h["Authorization"].removeprefix("Bearer ") for h in (world.reporter, world.operator)),
        reader,
    ]


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    with debug_world(settings, tmp_path, tokens) as world:
        yield world


def test_no_log_of_a_full_run_shows_a_secret_it_used(
    world: WorkerWorld, tokens: TokenMaker, tmp_path: Path
) -> None:
    """Two candidates land through the guard; the service's, the worker's and the hooks'
    output hold none of the API tokens, lease tokens or nonces of the run."""
    first = world.ready("first")
    second = world.ready("second")
    world.cutover()
    proxy = RecordingProxy(world.service.url)
    try:
        worker_log = tmp_path / "worker.log"
        with worker_log.open("wb") as out:
            done = subprocess.run(
                world.worker_args("--once", "--log-level", "debug"),
                env={**world.worker_env(), "INTEGRATOR_URL": proxy.url},
                cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=120,
            )  # fmt: skip
    finally:
        proxy.close()
    assert done.returncode == 0, worker_log.read_text()
    assert world.candidate(first)["status"] == world.candidate(second)["status"] == "integrated"
    reader = {"Authorization": f"Bearer {tokens('reader')}"}
    scraped = httpx.get(world.url("/metrics"), headers=reader, timeout=30)
    assert 'integrator_outcomes_total{kind="integrated"} 2.0' in scraped.text

    api_tokens = api_tokens_of(world, reader["Authorization"].removeprefix("Bearer "))
    assert len(proxy.secrets) >= 3  # a lease token and a nonce per landing
    logs = [tmp_path / "service.log", worker_log, *tmp_path.rglob("*.log")]
    text = {path: path.read_text(errors="replace") for path in set(logs)}
    assert "took" in text[worker_log]  # the worker did log its steps
    for secret in [*api_tokens, *proxy.secrets]:
        assert len(secret) >= 16
        for path, content in text.items():
            assert secret not in content, f"{path.name} shows a secret"

    service_lines = [json.loads(line) for line in text[tmp_path / "service.log"].splitlines()]
    worker_lines = [json.loads(line) for line in text[worker_log].splitlines()]
    steps = {line["request_id"] for line in worker_lines if "took" in line["message"]}
    assert len(steps) == 2 and steps <= proxy.request_ids
    served = {line["request_id"] for line in service_lines}
    assert steps <= served  # the service's access lines of each step carry the worker's id


def test_each_answer_carries_its_request_id(settings: Settings) -> None:
    """A sane X-Request-Id comes back as sent; a missing or unsafe one is replaced."""
    with TestClient(create_app(settings)) as client:
        kept = client.get("/healthz", headers={"X-Request-Id": "ci-42.step:3"})
        made = client.get("/healthz")
        unsafe = client.get("/nowhere", headers={"X-Request-Id": "x y"})
    assert kept.headers["X-Request-Id"] == "ci-42.step:3"
    assert len(made.headers["X-Request-Id"]) == 32
    assert unsafe.status_code == 404 and unsafe.headers["X-Request-Id"] != "x y"
