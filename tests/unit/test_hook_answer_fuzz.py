"""The hooks run as git runs them, against a service that answers anything at all.

Each example runs the real hook file (``/usr/bin/python3 -IS hooks/pre-receive``) as a process,
with a small stdlib HTTP server in a thread answering the generated reply: any status, any
headers (a wrong or missing Content-Length, chunked framing the hook never asked for), a body of
valid JSON with wrong types, missing fields, huge strings or any unicode, invalid JSON, a body
cut short, an answer that comes after the deadline, a connection reset. The promises:

* in shadow, pre-receive refuses only on a well-formed refusal of the service;
* in cutover, a push of main passes only on a well-formed allow; otherwise it is refused in
  readable ``remote:`` lines (``integrator: ...``), never with a traceback;
* in cutover, a push of other refs follows the fallback: allowed when the answer is unusable;
* it never runs past its deadline by more than a small margin;
* post-receive never fails the push (exit 0) and returns at once, whatever the service says.

A few dozen examples in ``make test``; 300 each under the ``stress`` marker (1,000 each
passed too: set ``max_examples`` to run more).
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hook_support import HookRepository

HOOKS = Path(__file__).resolve().parents[2] / "hooks"
PYTHON = "/usr/bin/python3"
DEADLINE = 0.8
#: Start-up on a busy machine, and the fallback's own reading of the push: past this it hung.
MARGIN = 1.5
MODES = ("off", "shadow", "cutover")
FEW = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
MANY = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
#: A thousand runs of a hook, some waiting out its deadline: minutes on a busy machine.
STRESS_SECONDS = 1800


@dataclass
class Reply:
    """What the service does with the next request."""

    status: int = 200
    reason: str = "OK"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    delay: float = 0.0
    #: "normal", "reset" (RST before answering), "headless" (bytes with no status line),
    #: "cut" (the head, then the connection closes mid-body)
    behaviour: str = "normal"


class AnyService:
    """A ThreadingHTTPServer whose every answer is `self.reply`."""

    def __init__(self) -> None:
        self.reply = Reply()
        self.stopping = threading.Event()
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                reply = service.reply
                if reply.delay:
                    service.stopping.wait(reply.delay)
                try:
                    if reply.behaviour == "reset":
                        linger = struct.pack("ii", 1, 0)
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                        self.connection.close()
                        return
                    if reply.behaviour == "headless":
                        self.wfile.write(reply.body)
                        return
                    self.send_response_only(reply.status, reply.reason)
                    for name, value in reply.headers:
                        self.send_header(name, value)
                    self.end_headers()
                    body = reply.body
                    if reply.behaviour == "cut":
                        body = body[: len(body) // 2]
                    self.wfile.write(body)
                except OSError:
                    pass  # the hook gave up: that is what slow answers test

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def close(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()


class Repository(HookRepository):
    """The hooks' bare repository, with a way to run a hook on it as git runs it."""

    def run(self, hook: str, stdin: bytes) -> tuple[subprocess.CompletedProcess[bytes], float]:
        started = time.monotonic()
        done = subprocess.run(
            [PYTHON, "-IS", str(HOOKS / hook)],
            input=stdin,
            cwd=self.bare,
            env={"PATH": "/usr/bin:/bin", "GIT_DIR": "."},
            capture_output=True,
            timeout=30,
            check=False,
        )
        return done, time.monotonic() - started


@pytest.fixture(scope="module")
def service() -> Iterator[AnyService]:
    running = AnyService()
    yield running
    running.close()


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory, service: AnyService) -> Repository:
    return Repository(tmp_path_factory.mktemp("answers"), service.url, DEADLINE)


# ---- what a service may answer ----

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["shadow", "cutover", "off", "refs/heads/main", "true", "1"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
update_items = st.fixed_dictionaries(
    {},
    optional={
        "ref": json_values,
        "resolved_ref": json_values,
        "allow": st.booleans() | json_values,
        "would_reject": json_values,
        "reason_code": json_values,
    },
)


@st.composite
def verdicts(draw: st.DrawFn) -> dict[str, Any]:
    """A verdict as the service writes it, then some keys dropped or given any value."""
    verdict: dict[str, Any] = {
        "mode": draw(st.sampled_from(MODES)),
        "mode_version": draw(st.integers(0, 5)),
        "protected_refs": draw(
            st.lists(st.sampled_from(["refs/heads/main", "refs/heads/next"]), max_size=2)
        ),
        "allow": draw(st.booleans()),
        "reason_code": "ok",
        "messages": draw(st.lists(st.text(max_size=40), max_size=3)),
        "updates": draw(st.lists(update_items, max_size=3)),
    }
    for key in draw(st.lists(st.sampled_from(sorted(verdict)), max_size=3, unique=True)):
        if draw(st.booleans()):
            del verdict[key]
        else:
            verdict[key] = draw(json_values)
    return verdict


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["verdict"] * 5 + ["json", "bytes", "text", "huge", "nested"]))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    if kind == "huge":
        size = draw(st.integers(1 << 10, 3 << 20))
        filler = draw(st.sampled_from(["x", "é", "\U0001f680", "\\u00e9", '\\"']))
        verdict = draw(verdicts())
        verdict[draw(st.sampled_from(["messages", "reason_code", "mode", "zzz"]))] = [
            filler * (size // len(filler.encode()))
        ]
        return json.dumps(verdict).encode()
    if kind == "nested":
        opener = draw(st.sampled_from(["[", '{"a":', '{"allow": true, "x": [']))
        return (opener * draw(st.integers(1, 100_000))).encode()
    text = json.dumps(draw(verdicts()), ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8")


@st.composite
def replies(draw: st.DrawFn) -> Reply:
    body = draw(bodies())
    status = draw(st.sampled_from([200] * 8 + [201, 204, 301, 400, 401, 403, 422, 500, 503]))
    status = draw(st.just(status) | st.integers(100, 999))
    headers = [("Content-Type", draw(st.sampled_from(["application/json", "text/html"])))]
    framing = draw(st.sampled_from(["length", "length", "none", "wrong", "chunked"]))
    if framing == "length":
        headers.append(("Content-Length", str(len(body))))
    elif framing == "wrong":
        headers.append(("Content-Length", str(draw(st.integers(0, 2 * len(body) + 10)))))
    elif framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        body = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    extra = st.tuples(
        st.sampled_from(["X-Any", "Retry-After", "Connection", "Set-Cookie"]),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
    )
    headers += draw(st.lists(extra, max_size=2))
    behaviour = draw(st.sampled_from(["normal"] * 10 + ["reset", "headless", "cut"]))
    delay = draw(st.sampled_from([0.0] * 8 + [DEADLINE + 0.4]))
    reason = draw(st.sampled_from(["OK", "", "Whatever", "\u00e9t\u00e9"]))
    return Reply(status, reason, headers, body, delay, behaviour)


def well_formed(reply: Reply) -> dict[str, Any] | None:
    """The verdict a hook may apply: a 200 whose whole body, read on time, is a verdict."""
    if reply.status != 200 or reply.behaviour != "normal" or reply.delay:
        return None
    if ("Transfer-Encoding", "chunked") in reply.headers:
        return None
    try:
        answer = json.loads(reply.body.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if (
        not isinstance(answer, dict)
        or answer.get("mode") not in MODES
        or not isinstance(answer.get("allow"), bool)
        or not isinstance(answer.get("protected_refs"), list)
        or not all(isinstance(r, str) for r in answer["protected_refs"])
    ):
        return None
    return answer


def refuses(answer: dict[str, Any]) -> bool:
    items = answer.get("updates")
    if not isinstance(items, list):
        items = []
    refused = any(isinstance(i, dict) and i.get("allow") is False for i in items)
    return not answer["allow"] or refused


def readable(stderr: bytes) -> None:
    """What the pusher sees: text lines, no traceback, each ours starting `integrator:`."""
    text = stderr.decode("utf-8")
    assert "Traceback" not in text, text
    assert all(line.startswith("integrator: ") for line in text.splitlines()), text


def check_pre_receive(repository: Repository, service: AnyService, mode: str, reply: Reply) -> None:
    service.reply = reply
    read = well_formed(reply)
    for ref in ("refs/heads/main", "refs/heads/next"):
        repository.cache(mode)
        done, seconds = repository.run("pre-receive", repository.stdin(ref))
        assert seconds < DEADLINE + MARGIN, f"{seconds:.2f} s: past the deadline"
        assert b"Traceback" not in done.stderr, done.stderr
        if read is not None:
            continue  # the service's verdict, applied as it says (tested with the service)
        # unusable: the mode cached before this push decides
        if mode != "cutover" or ref != "refs/heads/main":
            assert done.returncode == 0, (ref, done.stderr)
            readable(done.stderr)
        else:
            assert done.returncode == 1, done.stderr
            readable(done.stderr)
            assert b"integrator: refused: refs/heads/main" in done.stderr, done.stderr
    if read is not None and mode == "shadow" and not refuses(read):
        assert done.returncode == 0, done.stderr


def check_cutover_main(repository: Repository, service: AnyService, reply: Reply) -> None:
    """In cutover main passes only on a well-formed allow, whatever the cache said."""
    service.reply = reply
    repository.cache("cutover")
    done, seconds = repository.run("pre-receive", repository.main_update)
    assert seconds < DEADLINE + MARGIN
    read = well_formed(reply)
    if done.returncode == 0:
        assert read is not None and not refuses(read), (reply, done.stderr)
    else:
        assert done.returncode == 1 and b"Traceback" not in done.stderr, done.stderr


def check_post_receive(repository: Repository, service: AnyService, reply: Reply) -> None:
    service.reply = reply
    done, seconds = repository.run("post-receive", repository.stdin("refs/heads/next"))
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    assert seconds < MARGIN, f"post-receive held the push {seconds:.2f} s"


@FEW
@given(reply=replies(), mode=st.sampled_from(MODES))
def test_pre_receive_applies_only_a_well_formed_verdict_and_falls_back_on_the_rest(
    repository: Repository, service: AnyService, reply: Reply, mode: str
) -> None:
    check_pre_receive(repository, service, mode, reply)


@FEW
@given(reply=replies())
def test_pre_receive_in_cutover_lets_main_through_only_on_a_well_formed_allow(
    repository: Repository, service: AnyService, reply: Reply
) -> None:
    check_cutover_main(repository, service, reply)


@settings(FEW, max_examples=20)
@given(reply=replies())
def test_post_receive_never_fails_the_push_whatever_the_service_answers(
    repository: Repository, service: AnyService, reply: Reply
) -> None:
    check_post_receive(repository, service, reply)


@pytest.mark.stress
@pytest.mark.timeout(STRESS_SECONDS)
@MANY
@given(reply=replies(), mode=st.sampled_from(MODES))
def test_pre_receive_answers_stress(
    repository: Repository, service: AnyService, reply: Reply, mode: str
) -> None:
    check_pre_receive(repository, service, mode, reply)


@pytest.mark.stress
@pytest.mark.timeout(STRESS_SECONDS)
@MANY
@given(reply=replies())
def test_pre_receive_cutover_main_stress(
    repository: Repository, service: AnyService, reply: Reply
) -> None:
    check_cutover_main(repository, service, reply)


@pytest.mark.stress
@pytest.mark.timeout(STRESS_SECONDS)
@MANY
@given(reply=replies())
def test_post_receive_answers_stress(
    repository: Repository, service: AnyService, reply: Reply
) -> None:
    check_post_receive(repository, service, reply)
