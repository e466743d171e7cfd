"""A fuzzer over pre-receive: its stdin, its push options and the service's answer as it reads it.

Whatever arrives (truncated, huge, deeply nested or mistyped JSON, bytes that are not UTF-8,
garbage input lines), the hook never crashes into a refusal in shadow, never crashes into an
allow of a protected update in cutover, and never runs past its deadline and the fallback's
backstop. The hook's body is driven in-process (imported from its file, its HTTP call replaced),
plus a few real runs of the script against a socket that answers the fuzzed bytes. Bounded
examples here; many more under the `stress` marker.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hook_support import HookRepository

HOOK = Path(__file__).resolve().parents[2] / "hooks" / "pre-receive"
DEADLINE = 2.5
#: The deadline, the fallback's two backstops and start-up: a run beyond this has hung.
LONGEST = DEADLINE + 2 * 2.0 + 1.5
ZERO = "0" * 40
SCRIPT_DEADLINE = 0.8
FEW = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
MANY = settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))


def load() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("pre_receive_fuzzed", str(HOOK))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> HookRepository:
    return HookRepository(tmp_path_factory.mktemp("fuzz"), "http://127.0.0.1:9", DEADLINE)


@pytest.fixture(scope="module")
def hook() -> ModuleType:
    return load()


def run_in_process(
    hook: ModuleType,
    server: HookRepository,
    stdin: bytes,
    answer: Callable[..., tuple[int, bytes]],
    options: Sequence[str] = (),
) -> tuple[int, float]:
    """(exit code, seconds) of the hook's main() as run() decides it, in this process."""
    saved_env = dict(os.environ)
    saved = sys.stdin, sys.stderr
    os.environ["GIT_DIR"] = str(server.bare)
    for name in [n for n in os.environ if n.startswith("GIT_PUSH_OPTION")]:
        del os.environ[name]
    os.environ["GIT_PUSH_OPTION_COUNT"] = str(len(options))
    for index, option in enumerate(options):
        os.environ[f"GIT_PUSH_OPTION_{index}"] = option
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    sys.stderr = io.TextIOWrapper(io.BytesIO(), errors="replace")
    setattr(hook, "post_json", answer)  # noqa: B010 (a module loaded from a file)
    started = time.monotonic()
    try:
        try:
            code = hook.main()
        except SystemExit as exc:
            code = exc.code
        except BaseException:
            code = 1 if hook.FAIL_CLOSED[0] else 0
        finally:
            hook.signal.setitimer(hook.signal.ITIMER_REAL, 0)
    finally:
        sys.stdin, sys.stderr = saved
        os.environ.clear()
        os.environ.update(saved_env)
    return (code if isinstance(code, int) else int(code is not None)), time.monotonic() - started


def replying(status: int, raw: bytes) -> Callable[..., tuple[int, bytes]]:
    def post_json(*_args: Any) -> tuple[int, bytes]:
        return status, raw

    return post_json


def unreachable(*_args: Any) -> tuple[int, bytes]:
    raise ConnectionRefusedError  # an OSError the hook's own post_json would turn into Unavailable


# ---- what a service may answer ----

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
anything = json_values | st.sampled_from(["shadow", "cutover", "off", "refs/heads/main"])
#: Values of the wrong type that read as true or false in Python.
mistyped = st.sampled_from(["no", "false", 1, 0, [0], [], {"a": 1}, None, 1.5]) | anything
update_items = st.fixed_dictionaries(
    {"ref": anything, "resolved_ref": anything},
    optional={"allow": st.booleans() | mistyped, "would_reject": anything},
)


@st.composite
def verdicts(draw: st.DrawFn) -> dict[str, Any]:
    """A verdict as the service writes it, with a few of its keys mistyped or missing."""
    verdict: dict[str, Any] = {
        "mode": draw(st.sampled_from(["off", "shadow", "cutover"])),
        "mode_version": draw(st.integers(0, 5)),
        "protected_refs": draw(
            st.lists(st.sampled_from(["refs/heads/main", "refs/heads/next"]), max_size=2)
        ),
        "allow": draw(st.booleans()),
        "reason_code": "registered",
        "messages": draw(st.lists(st.text(max_size=30), max_size=2)),
        "updates": draw(st.lists(update_items, max_size=3)),
    }
    fields = ["allow", "mode", "protected_refs", "updates", "messages"]
    keys = st.lists(st.sampled_from(fields), min_size=1, max_size=2, unique=True)
    for key in draw(keys) if draw(st.booleans()) else []:
        if draw(st.integers(0, 3)) == 0:
            del verdict[key]
        else:
            verdict[key] = draw(mistyped)
    return verdict


@st.composite
def answers(draw: st.DrawFn) -> tuple[int, bytes]:
    kinds = ["verdict"] * 6 + ["truncated", "bytes", "nested", "huge", "text"]
    kind = draw(st.sampled_from(kinds))
    status = draw(st.sampled_from([200] * 8 + [422, 500, 401, 0]))
    if kind == "bytes":
        return status, draw(st.binary(max_size=200))
    if kind == "text":
        return status, draw(st.text(max_size=100)).encode("utf-8", "surrogatepass")
    if kind == "nested":
        depth = draw(st.integers(1, 50_000))
        opener = draw(st.sampled_from(["[", '{"a":', '{"allow": true, "x": [']))
        return status, (opener * depth).encode()
    if kind == "huge":
        size = draw(st.integers(1 << 16, 3 << 20))
        body = {"mode": "cutover", "allow": True, "protected_refs": [], "messages": ["x" * size]}
        return status, json.dumps(body).encode()
    raw = json.dumps(draw(verdicts())).encode()
    if kind == "truncated":
        return status, raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
    return status, raw


def hook_reads(hook: ModuleType, status: int, raw: bytes) -> dict[str, Any] | None:
    """The answer as a verdict the hook may apply, or None when it must fall back."""
    if status != 200:
        return None
    try:
        answer = hook.from_json(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if (
        not isinstance(answer, dict)
        or answer.get("mode") not in ("off", "shadow", "cutover")
        or not isinstance(answer.get("allow"), bool)
        or hook.string_list(answer.get("protected_refs")) is None
    ):
        return None
    return answer


def check_answer(
    hook: ModuleType, server: HookRepository, mode: str, status: int, raw: bytes
) -> None:
    server.cache(mode)
    code, seconds = run_in_process(hook, server, server.main_update, replying(status, raw))
    assert seconds < LONGEST
    read = hook_reads(hook, status, raw)
    if mode == "shadow" and code != 0:
        assert read is not None and not hook.allowed(read), "a crash refused a push in shadow"
    if mode == "cutover" and code == 0:
        assert read is not None and hook.allowed(read), "a crash allowed main in cutover"


@settings(FEW, max_examples=150)
@given(answer=answers(), mode=st.sampled_from(["shadow", "cutover"]))
def test_any_answer_of_the_service_is_applied_or_falls_back_safely(
    hook: ModuleType, server: HookRepository, answer: tuple[int, bytes], mode: str
) -> None:
    check_answer(hook, server, mode, *answer)


@pytest.mark.stress
@MANY
@given(answer=answers(), mode=st.sampled_from(["shadow", "cutover"]))
def test_any_answer_of_the_service_stress(
    hook: ModuleType, server: HookRepository, answer: tuple[int, bytes], mode: str
) -> None:
    check_answer(hook, server, mode, *answer)


# ---- what git and the pusher may send ----

oids = st.sampled_from([ZERO, "a" * 40, "b" * 64, "A" * 40, "1" * 39]) | st.text(
    "0123456789abcdef", min_size=38, max_size=66
)
refs = st.sampled_from(
    ["refs/heads/main", "refs/heads/next", "HEAD", "refs/tags/v1", "refs/notes/x", "refs/heads/"]
) | st.text(max_size=40).map(lambda s: "refs/heads/" + s)
lines = st.one_of(
    st.tuples(oids, oids, refs).map(lambda t: " ".join(t).encode("utf-8", "surrogatepass")),
    st.binary(max_size=80),
)
separators = st.sampled_from([b"\n", b"\r\n", b"\n\n", b" \n"])
#: What git lets a push option hold: anything but NUL and newline (bytes that are not UTF-8
#: reach Python as lone surrogates, like the last sample).
option_text = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00\n"), max_size=300
)
options = st.lists(
    st.sampled_from(
        ["integrator-push=", "integrator-push=abc", "ci.skip", "integrator-push=\udcff"]
    )
    | option_text.map(lambda s: "integrator-push=" + s),
    max_size=3,
)


@st.composite
def pushes(draw: st.DrawFn) -> bytes:
    items = draw(st.lists(lines, max_size=8))
    joined = b"".join(item + draw(separators) for item in items)
    return joined[: draw(st.integers(0, len(joined)))] if draw(st.booleans()) else joined


def allowing(body: dict[str, Any]) -> tuple[int, bytes]:
    answer = {"mode": "shadow", "allow": True, "protected_refs": ["refs/heads/main"]}
    return 200, json.dumps(answer).encode()


def check_input(hook: ModuleType, server: HookRepository, stdin: bytes, opts: list[str]) -> None:
    # shadow, the service letting everything through: nothing may refuse the push
    server.cache("shadow")
    code, seconds = run_in_process(hook, server, stdin, lambda *a: allowing(a[3]), opts)
    assert seconds < LONGEST
    assert code == 0, "a push was refused in shadow by the service's allow"
    # cutover, the service away: an update of main among the garbage is refused
    server.cache("cutover")
    code, seconds = run_in_process(hook, server, server.main_update + stdin, unreachable, opts)
    assert seconds < LONGEST
    assert code == 1, "main was let through in cutover without the service"


@FEW
@given(stdin=pushes(), opts=options)
def test_any_input_and_push_options_keep_the_promises(
    hook: ModuleType, server: HookRepository, stdin: bytes, opts: list[str]
) -> None:
    check_input(hook, server, stdin, opts)


@pytest.mark.stress
@MANY
@given(stdin=pushes(), opts=options)
def test_any_input_and_push_options_stress(
    hook: ModuleType, server: HookRepository, stdin: bytes, opts: list[str]
) -> None:
    check_input(hook, server, stdin, opts)


# ---- the script itself, against a socket that answers the fuzzed bytes ----


class RawService:
    """Accepts connections, reads the request and answers `reply` (after `delay` seconds)."""

    def __init__(self) -> None:
        self.reply = b""
        self.delay = 0.0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stopping = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                self.stopping.wait(self.delay)
                conn.sendall(self.reply)
            except OSError:
                return

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()


@pytest.fixture(scope="module")
def raw_service() -> Iterator[RawService]:
    service = RawService()
    yield service
    service.close()


@pytest.fixture(scope="module")
def script_server(
    tmp_path_factory: pytest.TempPathFactory, raw_service: RawService
) -> HookRepository:
    return HookRepository(tmp_path_factory.mktemp("fuzz-script"), raw_service.url, SCRIPT_DEADLINE)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    answer=answers(),
    framed=st.booleans(),
    delay=st.sampled_from([0.0, 0.0, 0.0, SCRIPT_DEADLINE + 0.5]),
    mode=st.sampled_from(["shadow", "cutover"]),
)
def test_the_script_against_a_service_answering_fuzzed_bytes(
    hook: ModuleType,
    script_server: HookRepository,
    raw_service: RawService,
    answer: tuple[int, bytes],
    framed: bool,
    delay: float,
    mode: str,
) -> None:
    status, raw = answer
    head = f"HTTP/1.0 {status} X\r\nContent-Type: application/json\r\n\r\n".encode()
    raw_service.reply = head + raw if framed else raw
    raw_service.delay = delay
    script_server.cache(mode)
    started = time.monotonic()
    done = subprocess.run(
        ["/usr/bin/python3", "-IS", str(HOOK)],
        input=script_server.main_update,
        cwd=script_server.bare,
        env={"PATH": "/usr/bin:/bin", "GIT_DIR": "."},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert time.monotonic() - started < SCRIPT_DEADLINE + 2 * 2.0 + 1.5
    assert b"Traceback" not in done.stderr
    read = hook_reads(hook, status, raw) if framed and delay == 0.0 else None
    if mode == "shadow" and done.returncode != 0:
        assert read is not None and not hook.allowed(read), done.stderr
    if mode == "cutover" and done.returncode == 0:
        assert read is not None and hook.allowed(read), done.stderr


# ---- every ref name git takes is an update, under a name the service takes ----

#: Bytes of ref names: mostly ones git takes (UTF-8 letters, bytes that are not UTF-8, `.`,
#: `@`, `{`), and a few it refuses, so that git, the judge, says no now and then.
name_bytes = st.lists(
    st.sampled_from([b"a", b"Z", b"0", b"-", b"_", b".", b"@", b"{", b"/"])
    | st.sampled_from(["é", "日", "ж", "🚀", "\u200b", "\u2028", "\xa0", "\u0085"]).map(str.encode)
    | st.binary(min_size=1, max_size=1).filter(lambda b: b[0] >= 0x80)
    | st.sampled_from([b"\\", b"~", b"\x01", b" "]),
    min_size=1,
    max_size=24,
).map(b"".join)


def git_takes(ref: bytes) -> bool:
    done = subprocess.run(["git", "check-ref-format", ref], capture_output=True, check=False)
    return done.returncode == 0


def check_ref_name(hook: ModuleType, ref: bytes) -> None:
    from pydantic import TypeAdapter

    from integrator.api.guard import RefName

    if not git_takes(ref):
        return
    updates, malformed = hook.parse_updates(b"a" * 40 + b" " + b"b" * 40 + b" " + ref + b"\n")
    assert malformed == [] and len(updates) == 1, f"git takes {ref!r}: it must be an update"
    name = updates[0][2]
    assert hook.ref_bytes(name) == ref  # git gets back the very name (symbolic refs, git)
    wire = hook.wire_ref(name)
    if len(wire) <= hook.REF_LIMIT:
        TypeAdapter(RefName).validate_python(wire)  # the service takes what the hook sends
    assert ("\\" in wire) == (wire != name)  # escaped only when it had to be: unambiguous


@FEW
@given(name=name_bytes)
def test_every_ref_name_git_takes_is_an_update_the_service_takes(
    hook: ModuleType, name: bytes
) -> None:
    check_ref_name(hook, b"refs/heads/" + name)


@pytest.mark.stress
@MANY
@given(name=name_bytes)
def test_every_ref_name_git_takes_stress(hook: ModuleType, name: bytes) -> None:
    check_ref_name(hook, b"refs/heads/" + name)
