"""How the worker words the service's answers: a failure is not an outage, a refusal is a line."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from integrator.worker.service_client import EXIT_UNAVAILABLE, ServiceClient, WorkerExit


class Answering:
    """A local HTTP server that answers every POST with one status and an error body."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests = 0
        answering = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                answering.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.dumps({"code": "internal_error", "message": "boom", "details": []})
                self.send_response(answering.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def failing() -> Iterator[Answering]:
    server = Answering(500)
    yield server
    server.close()


@pytest.fixture
def unavailable() -> Iterator[Answering]:
    server = Answering(503)
    yield server
    server.close()


def test_a_500_is_reported_at_once_as_the_service_failing_not_as_unavailable(
    failing: Answering,
) -> None:
    """One request, exit 3, and the line says the service failed and what it answered."""
    client = ServiceClient(failing.url, "t")
    with pytest.raises(WorkerExit) as stopped:
        client.post("/v1/candidates/1/outcome", {})
    client.close()
    assert failing.requests == 1
    assert stopped.value.code == EXIT_UNAVAILABLE
    assert stopped.value.message == (
        "the service failed on /v1/candidates/1/outcome: HTTP 500 boom (internal_error)"
    )


def test_an_unavailable_service_is_retried_then_reported_as_unavailable(
    unavailable: Answering,
) -> None:
    """502/503/504 are a restart or a proxy: retried a few times, then exit 3 'unavailable'."""
    client = ServiceClient(unavailable.url, "t")
    with pytest.raises(WorkerExit) as stopped:
        client.post("/v1/queue/next", {})
    client.close()
    assert unavailable.requests == 5
    assert stopped.value.code == EXIT_UNAVAILABLE
    assert stopped.value.message.startswith("service unavailable at http://127.0.0.1:")
    assert stopped.value.message.endswith("(/v1/queue/next): HTTP 503")
