"""The hook scripts as source: Python 3.8, stdlib only, cheap imports, one shared core; their
hand-written JSON agrees with the json module."""

from __future__ import annotations

import ast
import contextlib
import importlib.machinery
import importlib.util
import json
import socket
import time
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

HOOKS = Path(__file__).resolve().parents[2] / "hooks"
NAMES = ("pre-receive", "post-receive")
#: Every script git may run: the hooks and the launcher install puts in their place.
SCRIPTS = (*NAMES, "launcher")
#: Imported at the top of a script: all cheap, all present on any Python >= 3.8.
TOP_LEVEL = {"os", "sys", "time"}
#: Imported only on the path that needs them, or as the fallback of a C core (`_signal`,
#: `_socket`) on an interpreter without it. Never json (re, enum, collections: ~8 ms a push),
#: except by the launcher when the hook's body is unusable.
LAZY = {"_signal", "signal", "_socket", "socket", "subprocess", "ssl", "_thread"}
LAZY |= {"datetime", "traceback", "fcntl"}
#: Names of stdlib functions and methods that appeared after 3.8.
NEWER_ATTRIBUTES = {
    "removeprefix",
    "removesuffix",
    "is_relative_to",
    "with_stem",
    "readlink",
    "bit_count",
    "to_thread",
    "randbytes",
    "unparse",
    "waitstatus_to_exitcode",
    "pidfd_open",
    "cache",
    "pairwise",
    "aiter",
    "anext",
    "from_number",
}
NEWER_MODULES = {"zoneinfo", "graphlib", "tomllib"}
BUILTIN_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}


def source(name: str) -> str:
    return (HOOKS / name).read_text(encoding="utf-8")


def tree(name: str) -> ast.Module:
    return ast.parse(source(name), filename=name, feature_version=(3, 8))


def load(name: str) -> ModuleType:
    """Import a hook as a module (its main() only runs under __main__)."""
    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), str(HOOKS / name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def functions(module: ast.Module) -> dict[str, ast.FunctionDef]:
    return {node.name: node for node in module.body if isinstance(node, ast.FunctionDef)}


@pytest.mark.parametrize("name", SCRIPTS)
def test_hook_parses_as_python_3_8(name: str) -> None:
    """The git server may only have Python 3.8: the grammar must be 3.8's."""
    tree(name)


@pytest.mark.parametrize("name", SCRIPTS)
def test_hook_uses_no_stdlib_api_newer_than_3_8(name: str) -> None:
    """No 3.9+ methods or modules, no dict union, no builtin generics, no annotations at all."""
    problems = []
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Attribute) and node.attr in NEWER_ATTRIBUTES:
            problems.append(f"line {node.lineno}: .{node.attr}")
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            )
            problems += [f"line {node.lineno}: {m}" for m in modules if m in NEWER_MODULES]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            operands = (node.left, node.right)
            if any(isinstance(o, ast.Dict | ast.DictComp) for o in operands):
                problems.append(f"line {node.lineno}: dict | dict")
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            generic = node.value.id in BUILTIN_GENERICS
            problems += [f"line {node.lineno}: {node.value.id}[...]"] if generic else []
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            problems.append(f"line {node.lineno}: annotation")
        if isinstance(node, ast.FunctionDef) and node.returns is not None:
            problems.append(f"line {node.lineno}: return annotation")
        if isinstance(node, ast.Match):
            problems.append(f"line {node.lineno}: match statement")
        if isinstance(node, ast.Call) and any(k.arg == "strict" for k in node.keywords):
            problems.append(f"line {node.lineno}: strict= (3.10)")
    assert problems == []


@pytest.mark.parametrize("name", SCRIPTS)
def test_hook_imports_only_cheap_stdlib_modules_and_never_the_package(name: str) -> None:
    """Every push pays for the imports: a short list at the top, the rest only when needed."""
    module = tree(name)
    top = {a.name for node in module.body if isinstance(node, ast.Import) for a in node.names}
    assert not [node for node in module.body if isinstance(node, ast.ImportFrom)]
    lazy = set()
    for node in ast.walk(module):
        if isinstance(node, ast.Import) and node not in module.body:
            lazy |= {a.name for a in node.names}
        if isinstance(node, ast.ImportFrom) and node.module:
            lazy.add(node.module)
    assert top <= TOP_LEVEL
    assert lazy <= LAZY | ({"json", "time"} if name == "launcher" else set())
    assert "urllib.request" not in source(name) and "import integrator" not in source(name)


@pytest.mark.parametrize("name", SCRIPTS)
def test_hook_starts_with_an_absolute_interpreter_and_one_flag_group(name: str) -> None:
    """`-IS` as one group (Linux passes `-I -S` as a single argument), then the marker line."""
    first, second = source(name).splitlines()[:2]
    assert first == "#!/usr/bin/python3 -IS"
    assert second.startswith("# integrator-hook")
    assert (HOOKS / name).stat().st_mode & 0o111


@pytest.mark.parametrize("name", NAMES)
def test_hook_states_its_contract_and_has_main_die_and_version(name: str) -> None:
    """Module docstring, main(), die() and VERSION = "1", as every hook script here."""
    module = tree(name)
    assert "Contract" in (ast.get_docstring(module) or "")
    assert {"main", "die"} <= set(functions(module))
    assert load(name).VERSION == "1"


def test_code_shared_by_both_hooks_is_identical() -> None:
    """The core both hooks carry (input, config, identity, HTTP) must not drift apart."""
    pre, post = functions(tree("pre-receive")), functions(tree("post-receive"))
    shared = (set(pre) & set(post)) - {"main", "die", "run"}
    core = {"parse_updates", "symref_target", "ref_chain", "guarded_names", "resolve_name"}
    assert core | {"run_git", "load_config", "identity", "post_json", "to_json"} <= shared
    drifted = [n for n in sorted(shared) if ast.dump(pre[n]) != ast.dump(post[n])]
    assert drifted == []


PRE = load("pre-receive")


@given(st.binary(max_size=400))
def test_any_stdin_parses_without_raising_into_well_formed_updates(data: bytes) -> None:
    """Garbage in: valid triples out, the rest counted."""
    updates, malformed = PRE.parse_updates(data)

    assert len(updates) + len(malformed) <= data.count(b"\n") + 1
    for old, new, ref in updates:
        assert PRE.is_oid(old) and PRE.is_oid(new) and PRE.safe_ref(ref)


def test_stdin_lines_are_read_tolerantly() -> None:
    """CRLF, 64-hex names, tags and notes are updates; malformed lines are counted."""
    a, b, z = "a" * 40, "b" * 64, "0" * 64
    data = (
        f"{a} {a} refs/heads/main\r\n\n{z} {b} refs/tags/v1\n{b} {z} refs/notes/commits\n"
        f"junk\n{a} {a}\n{a} {a} refs/../../etc/passwd\n{'A' * 40} {a} refs/heads/x\n"
    ).encode()

    updates, malformed = PRE.parse_updates(data)

    assert [ref for _, _, ref in updates] == [
        "refs/heads/main",
        "refs/tags/v1",
        "refs/notes/commits",
    ]
    assert len(malformed) == 4


def loose(git_dir: Path) -> object:
    """The hooks' reader of symbolic refs stored as files (no git runs on this path)."""
    return lambda name: PRE.symref_target(str(git_dir), name, True, time.monotonic() + 5)


def test_symbolic_refs_are_followed_at_most_five_deep(tmp_path: Path) -> None:
    """alias -> main resolves; a loop stops; a ref escaping the repository is not followed."""
    heads = tmp_path / "refs" / "heads"
    heads.mkdir(parents=True)
    (heads / "alias").write_text("ref: refs/heads/main\n")
    (heads / "main").write_text("a" * 40 + "\n")
    (heads / "loop").write_text("ref: refs/heads/loop\n")
    (heads / "escape").write_text("ref: refs/../../outside\n")
    for n in range(7):
        (heads / f"c{n}").write_text(f"ref: refs/heads/c{n + 1}\n")
    read = loose(tmp_path)

    assert PRE.ref_chain("refs/heads/alias", read) == ["refs/heads/alias", "refs/heads/main"]
    assert PRE.ref_chain("refs/heads/main", read) == ["refs/heads/main"]
    assert PRE.ref_chain("refs/heads/loop", read) == ["refs/heads/loop"]
    assert PRE.ref_chain("refs/heads/escape", read) == ["refs/heads/escape"]
    assert PRE.ref_chain("refs/heads/packed-only", read) == ["refs/heads/packed-only"]
    assert PRE.ref_chain("refs/heads/c0", read)[-1] == "refs/heads/c5"


def test_a_ref_meeting_a_protected_chain_is_named_by_the_protected_ref(tmp_path: Path) -> None:
    """An alias of main is main; a protected alias protects its target; others keep their name."""
    heads = tmp_path / "refs" / "heads"
    heads.mkdir(parents=True)
    (heads / "alias").write_text("ref: refs/heads/main\n")
    (heads / "release").write_text("ref: refs/heads/release-2\n")
    (heads / "via-release").write_text("ref: refs/heads/release\n")
    read = loose(tmp_path)
    guarded = PRE.guarded_names(["refs/heads/main", "refs/heads/release"], read)

    def name(ref: str) -> str:
        return str(PRE.resolve_name(PRE.ref_chain(ref, read), guarded))

    assert name("refs/heads/alias") == "refs/heads/main"
    assert name("refs/heads/release") == "refs/heads/release"
    assert name("refs/heads/release-2") == "refs/heads/release"
    assert name("refs/heads/via-release") == "refs/heads/release"
    assert name("refs/heads/topic") == "refs/heads/topic"


def test_a_ref_name_git_could_not_have_sent_is_malformed() -> None:
    """NUL and other control characters, empty parts: counted, never resolved (a name beyond
    ASCII is one git takes, and so do the hooks)."""
    a = "a" * 40
    names = [b"refs/heads/x\x00y", b"refs/heads/\x7f", b"refs//x"]
    data = b"".join(f"{a} {a} ".encode() + name + b"\n" for name in names)

    updates, malformed = PRE.parse_updates(data)

    assert updates == [] and len(malformed) == len(names)


@pytest.mark.parametrize(
    ("hostport", "expected"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("example.test", ("example.test", 443)),
        ("[::1]:9", ("::1", 9)),
        ("[::1]", ("::1", 443)),
    ],
)
def test_service_address_is_split_into_host_and_port(
    hostport: str, expected: tuple[str, int]
) -> None:
    """IPv6 literals keep their colons; the scheme's port is the default."""
    assert PRE.split_host(hostport, 443) == expected


def test_a_service_named_by_host_name_is_resolved_in_a_thread_and_connected() -> None:
    """`localhost` is not numeric: it is resolved off the main thread, then connected."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        client = PRE.connect("localhost", server.getsockname()[1], time.monotonic() + 5)

        accepted, _ = server.accept()
        accepted.close()
        client.close()


def test_a_host_name_that_does_not_resolve_is_unavailable_not_a_crash() -> None:
    """No answer, or no such name: the service is unavailable, within the deadline."""
    started = time.monotonic()

    with pytest.raises(PRE.Unavailable, match="resolv"):
        PRE.connect("no-such-host.invalid", 80, started + 3)

    assert time.monotonic() - started < 5


def test_process_start_is_counted_into_the_deadline() -> None:
    """started_at() is the process start (never later than now, never more than 1 s earlier)."""
    now = time.monotonic()
    start = PRE.started_at()

    assert now - 1.0 <= start <= time.monotonic()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(2.0, 2.0), (0, 2.5), (31, 2.5), ("3", 2.5), (True, 2.5), (None, 2.5)],
)
def test_deadline_outside_its_range_falls_back_to_the_default(
    value: object, expected: float
) -> None:
    """A damaged hook.json cannot make the hook wait forever."""
    assert PRE.deadline_seconds({"deadline_seconds": value}) == expected


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_the_hooks_write_json_as_the_json_module_does(value: object) -> None:
    """Same text as json.dumps (ASCII, escapes, surrogate pairs, floats), and it reads back."""
    text = PRE.to_json(value)

    assert text == json.dumps(value)
    assert PRE.from_json(text) == value
    assert PRE.from_json(json.dumps(value, indent=2, ensure_ascii=False)) == value


def standard_json(text: str) -> object:
    """json.loads without its extensions (NaN, Infinity), which the hooks never read."""

    def refuse(constant: str) -> object:
        raise ValueError(constant)

    return json.loads(text, parse_constant=refuse)


@given(st.text(max_size=60) | st.sampled_from(['{"a": [1, 2.5e3, -0, "\\u00e9\\ud83d\\ude00"]}']))
def test_the_hooks_read_what_the_json_module_reads_and_fail_only_with_value_error(
    text: str,
) -> None:
    """A document json.loads reads gives the same value. Anything else is a ValueError or, for
    a few malformed numbers and raw control characters, read leniently: never another error."""
    try:
        expected = standard_json(text)
    except ValueError:
        with contextlib.suppress(ValueError):
            PRE.from_json(text)
        return
    assert PRE.from_json(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        '{"a" 1}',
        "[1,]",
        "[1 2]",
        '"open',
        '"\\x"',
        '"\\u+123"',
        '"\\u12"',
        "+1",
        "nul",
        "{} {}",
    ],
)
def test_broken_json_is_a_value_error(text: str) -> None:
    """What the hooks read from disk or the service fails as json.loads fails: ValueError."""
    with pytest.raises(ValueError):
        PRE.from_json(text)
