"""Mutation testing of the decision code: do the tests notice when the code is wrong?

Each mutant is one small change to one module (a comparison flipped at its boundary, `and`
for `or`, a `not` dropped, a constant off by one, a string emptied, a return value lost).
The mutant is written over the module in a throw-away copy of the checkout (never the real
files: other people work in them) and the module's mapped tests run there; a failing test
kills it, a passing run means it survived. Survivors are either killed by a new test or
listed in tools/mutation_equivalent.txt with the reason no test can tell them apart.

    python tools/mutation.py                     # every module below, --min 95
    python tools/mutation.py policy lease        # some of them
    python tools/mutation.py policy --list       # the mutants, without running them
"""

from __future__ import annotations

import argparse
import ast
import datetime
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT_FILE = Path(__file__).resolve().parent / "mutation_equivalent.txt"
#: Copied checkouts leave these out: the venv is used from the real checkout.
SKIP_COPY = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "node_modules")


@dataclass(frozen=True)
class Target:
    """A module, the tests that must notice its mutants, and which of its code is decision.

    The fastest and most pointed tests come first: `pytest -x` stops at the first failure.
    """

    path: str
    tests: tuple[str, ...]
    #: Functions (qualified as `Class.method`) whose code is mutated; None: the whole module.
    functions: frozenset[str] | None = None
    #: Extra pytest arguments (the database-backed tests run on SQLite only).
    pytest_args: tuple[str, ...] = ()


SQLITE_ONLY = ("-k", "not postgresql")

TARGETS: dict[str, Target] = {
    "policy": Target(
        "integrator/policy.py",
        ("tests/unit/test_policy.py", "tests/unit/test_policy_boundaries.py"),
    ),
    "readiness": Target(
        "integrator/readiness.py",
        ("tests/unit/test_readiness.py", "tests/unit/test_readiness_codes.py"),
    ),
    "parity": Target(
        "integrator/parity.py", ("tests/unit/test_parity.py", "tests/unit/test_parity_findings.py")
    ),
    "refnames": Target(
        "integrator/refnames.py",
        ("tests/unit/test_refnames.py", "tests/unit/test_refname_boundaries.py"),
    ),
    "check_contract": Target(
        "integrator/check_contract.py",
        ("tests/unit/test_check_contract_rules.py", "tests/unit/worker/test_named_checks.py"),
    ),
    "trial": Target(
        "integrator/worker/trial.py",
        (
            "tests/unit/worker/test_trial_outcomes.py",
            "tests/unit/worker/test_trial.py",
            "tests/unit/worker/test_retries.py",
        ),
        # from_json, describe and body are plumbing the integration tests cover.
        frozenset(
            {
                "Trial.clean",
                "Trial.failed_check",
                "Trial.landed",
                "merge_message",
                "requeue",
                "_as_real",
                "judge",
                "not_on_main",
                "_clean",
                "_passed_lines",
                "_pushed",
            }
        ),
    ),
    "registrations": Target(
        "integrator/registrations.py",
        (
            "tests/unit/test_registration_decisions.py",
            "tests/unit/test_registration_rules.py",
            "tests/integration/test_registration_boundaries.py",
            "tests/integration/test_registrations.py",
        ),
        # The decisions and the conditional UPDATEs; record/move/get are plumbing.
        frozenset(
            {
                "expiry_ms",
                "decide_create",
                "decide_facts",
                "decide_reconciled",
                "authorize",
                "expire_due",
                "retire_earlier_epochs",
                "fail",
                "land",
                "void_open",
            }
        ),
        SQLITE_ONLY,
    ),
    "lease": Target(
        "integrator/lease.py",
        (
            "tests/integration/test_lease_boundaries.py",
            "tests/unit/test_lease_rules.py",
            "tests/integration/test_lease.py",
        ),
        # The grant decisions; ensure_configured, _record and the messages are plumbing.
        frozenset(
            {
                "LeaseState.held",
                "Grant.took_over",
                "datetime_of_ms",
                "iso_of_ms",
                "ttl_ms",
                "_check_holder",
                "status",
                "acquire",
                "renew",
                "release",
                "force_release",
                "fence",
                "_grant_is_live",
                "_lock_row",
            }
        ),
        SQLITE_ONLY,
    ),
}

_COMPARE_SWAPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
    ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}  # fmt: skip
_OP_TEXT = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
    ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not",
    ast.Add: "+", ast.Sub: "-", ast.And: "and", ast.Or: "or",
}  # fmt: skip


@dataclass(frozen=True)
class Mutant:
    """One change: the `index`-th mutation site in walk order, and how it reads.

    Its key names the function it is in, not the line, so that the equivalents listed in
    tools/mutation_equivalent.txt still name the same mutants after code above them moves.
    """

    module: str
    index: int
    line: int
    scope: str
    change: str

    @property
    def key(self) -> str:
        return f"{self.module}:{self.scope}:{self.change}"

    @property
    def shown(self) -> str:
        """The key and where the mutant is today."""
        return f"{self.key}  @ line {self.line}"


@dataclass
class Score:
    module: str
    killed: list[Mutant] = field(default_factory=list)
    survived: list[Mutant] = field(default_factory=list)
    equivalent: list[Mutant] = field(default_factory=list)

    @property
    def percent(self) -> float:
        counted = len(self.killed) + len(self.survived)
        return 100.0 * len(self.killed) / counted if counted else 100.0


def _skipped_nodes(tree: ast.Module) -> set[int]:
    """ids of nodes never mutated: docstrings, annotations, f-string text, log calls."""
    skip: set[int] = set()

    def whole(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            whole(first if isinstance(first.value.value, str) else None)
        if isinstance(node, ast.arg):
            whole(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            whole(node.returns)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for decorator in node.decorator_list:
                whole(decorator)
        elif isinstance(node, ast.AnnAssign):
            whole(node.annotation)
        elif isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values if isinstance(v, ast.Constant))
        elif _never_mutated(node):
            whole(node)
    return skip


def _never_mutated(node: ast.AST) -> bool:
    """Imports, `if TYPE_CHECKING:` blocks and log calls: plumbing, not decisions."""
    if isinstance(node, ast.ImportFrom | ast.Import):
        return True
    if isinstance(node, ast.If):
        return ast.unparse(node.test) == "TYPE_CHECKING"
    func = node.func if isinstance(node, ast.Call) else None
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in {"log", "logging", "logger"}
    )


def _in_scope(tree: ast.Module, functions: frozenset[str] | None) -> set[int]:
    """ids of the nodes inside the named functions (every node when `functions` is None)."""
    if functions is None:
        return {id(n) for n in ast.walk(tree)}
    scope: set[int] = set()

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if name in functions:
                    scope.update(id(n) for n in ast.walk(child))
                elif isinstance(child, ast.ClassDef):
                    visit(child, f"{name}.")

    visit(tree, "")
    return scope


def _changes(node: ast.AST) -> Iterator[tuple[str, object]]:
    """Every mutation of `node` alone: (how it reads, what to apply)."""
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            swap = _COMPARE_SWAPS.get(type(op))
            if swap is not None:
                yield f"{_OP_TEXT[type(op)]} -> {_OP_TEXT[swap]}", ("compare", i, swap)
    elif isinstance(node, ast.BoolOp):
        logic: type[ast.boolop] = ast.Or if isinstance(node.op, ast.And) else ast.And
        yield f"{_OP_TEXT[type(node.op)]} -> {_OP_TEXT[logic]}", ("boolop", logic)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "not removed", ("not",)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        arith: type[ast.operator] = ast.Sub if isinstance(node.op, ast.Add) else ast.Add
        yield f"{_OP_TEXT[type(node.op)]} -> {_OP_TEXT[arith]}", ("binop", arith)
    elif isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            yield f"{value} -> {not value}", ("const", not value)
        elif isinstance(value, int):
            yield f"{value} -> {value + 1}", ("const", value + 1)
            yield f"{value} -> {value - 1}", ("const", value - 1)
        elif isinstance(value, str) and value:
            shown = repr(value) if len(value) <= 30 else repr(value[:27]) + "..."
            yield f"{shown} -> ''", ("const", "")
    elif isinstance(node, ast.Return) and node.value is not None and not _is_none(node.value):
        yield "return value -> return None", ("return",)


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _apply(node: ast.AST, how: tuple[object, ...]) -> None:
    kind = how[0]
    if kind == "compare":
        assert isinstance(node, ast.Compare)
        index, swap = how[1], how[2]
        assert isinstance(index, int) and isinstance(swap, type)
        node.ops[index] = swap()
    elif kind in {"boolop", "binop"}:
        op = how[1]
        assert isinstance(op, type)
        node.op = op()  # type: ignore[attr-defined]
    elif kind == "const":
        node.value = how[1]  # type: ignore[attr-defined]
    elif kind == "return":
        node.value = ast.Constant(None)  # type: ignore[attr-defined]


def _sites(tree: ast.Module, target: Target) -> Iterator[tuple[ast.AST, str, object]]:
    skip, scope = _skipped_nodes(tree), _in_scope(tree, target.functions)
    for node in ast.walk(tree):
        if id(node) in skip or id(node) not in scope:
            continue
        for change, how in _changes(node):
            yield node, change, how


def _scopes(tree: ast.Module) -> dict[int, str]:
    """id of every node -> the qualified name of the innermost function or class holding it
    (`<module>` outside any)."""
    scopes: dict[int, str] = {}

    def visit(node: ast.AST, name: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = name
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                inner = child.name if name == "<module>" else f"{name}.{child.name}"
            scopes[id(child)] = inner
            visit(child, inner)

    visit(tree, "<module>")
    return scopes


def enumerate_mutants(target: Target, source: str) -> list[Mutant]:
    """Every mutant in walk order; the same change twice in one function is told apart by
    its count there (`#2`)."""
    tree = ast.parse(source)
    scopes = _scopes(tree)
    found: list[Mutant] = []
    seen: dict[tuple[str, str], int] = {}
    for index, (node, change, _) in enumerate(_sites(tree, target)):
        scope = scopes.get(id(node), "<module>")
        count = seen[(scope, change)] = seen.get((scope, change), 0) + 1
        named = change if count == 1 else f"{change} #{count}"
        found.append(Mutant(target.path, index, getattr(node, "lineno", 0), scope, named))
    return found


def mutated_source(target: Target, source: str, mutant: Mutant) -> str:
    """The module with that one change (unparsed: comments go, behaviour stays)."""
    tree = ast.parse(source)
    for index, (node, _, how) in enumerate(_sites(tree, target)):
        if index == mutant.index:
            if isinstance(node, ast.UnaryOp):
                _replace_not(tree, node)
            else:
                assert isinstance(how, tuple)
                _apply(node, how)
            return ast.unparse(tree) + "\n"
    raise LookupError(f"no mutant {mutant.index} in {target.path}")


def _replace_not(tree: ast.Module, node: ast.UnaryOp) -> None:
    """`not x` becomes `x`: swap the node in its parent."""
    for parent in ast.walk(tree):
        for name, value in ast.iter_fields(parent):
            if value is node:
                setattr(parent, name, node.operand)
                return
            if isinstance(value, list) and any(item is node for item in value):
                value[[item is node for item in value].index(True)] = node.operand
                return


def say(text: str = "", flush: bool = False) -> None:
    """One line of the report on stdout."""
    sys.stdout.write(text + "\n")
    if flush:
        sys.stdout.flush()


def load_equivalent(path: Path = EQUIVALENT_FILE) -> dict[str, str]:
    """`module:function:change  reason: why no test can tell it from the original` per line."""
    found: dict[str, str] = {}
    if not path.exists():
        return found
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, reason = line.partition("  reason: ")
        if not reason:
            raise SystemExit(f"{path}: every equivalent mutant needs '  reason: …': {raw!r}")
        found[key.strip()] = reason.strip()
    return found


def run_tests(copy_root: Path, target: Target, timeout: float) -> str:
    """'killed', 'timeout' or 'survived' for the module as it now is in the copy."""
    command = [
        "nice", "-n", "10", str(ROOT / ".venv" / "bin" / "python"), "-m", "pytest",
        "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:schemathesis",
        "-p", "no:hypothesispytest", *target.pytest_args,
        *target.tests,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(copy_root), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run(
            command, cwd=copy_root, env=env, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return "timeout"
    return "survived" if done.returncode == 0 else "killed"


def mutate_module(
    copy_root: Path,
    target: Target,
    equivalent: dict[str, str],
    timeout: float,
    verbose: bool,
    only: set[str] | None = None,
) -> Score:
    module_file = copy_root / target.path
    original = module_file.read_text()
    score = Score(target.path)
    missing = [t for t in target.tests if not (copy_root / t).exists()]
    tests = tuple(t for t in target.tests if t not in missing)
    target = Target(target.path, tests, target.functions, target.pytest_args)
    try:
        module_file.write_text(ast.unparse(ast.parse(original)) + "\n")
        if run_tests(copy_root, target, timeout) != "survived":
            raise SystemExit(f"{target.path}: its tests fail on the unmutated module")
        for mutant in enumerate_mutants(target, original):
            if mutant.key in equivalent:
                score.equivalent.append(mutant)
                continue
            if only is not None and mutant.key not in only:
                continue
            module_file.write_text(mutated_source(target, original, mutant))
            result = run_tests(copy_root, target, timeout)
            (score.survived if result == "survived" else score.killed).append(mutant)
            if verbose:
                say(f"  {result:8} {mutant.shown}", flush=True)
    finally:
        module_file.write_text(original)
    return score


def report(scores: list[Score], minimum: float) -> bool:
    """The table, then each survivor; True when every module reaches `minimum`."""
    say(f"\n{'module':34} {'mutants':>7} {'killed':>6} {'equiv':>5} {'survived':>8} {'score':>7}")
    ok = True
    for s in scores:
        total = len(s.killed) + len(s.survived) + len(s.equivalent)
        mark = "" if s.percent >= minimum else "  < min"
        ok = ok and s.percent >= minimum
        say(
            f"{s.module:34} {total:7} {len(s.killed):6} {len(s.equivalent):5} "
            f"{len(s.survived):8} {s.percent:6.1f}%{mark}"
        )
    for s in scores:
        for mutant in s.survived:
            say(f"survived: {mutant.shown}")
    return ok


def copy_checkout(copy_root: Path, ref: str | None) -> None:
    """The working tree (without the venv and .git), or the files of commit `ref`."""
    if ref is None:
        shutil.copytree(ROOT, copy_root, ignore=SKIP_COPY)
        return
    copy_root.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(copy_root)], input=archive, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("modules", nargs="*", help=f"some of: {', '.join(TARGETS)}")
    parser.add_argument("--min", type=float, default=95.0, help="lowest score per module (%%)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per mutant")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument(
        "--ref", help="mutate this commit (git archive) instead of the working tree, e.g. HEAD"
    )
    parser.add_argument(
        "--only",
        type=Path,
        help="run only the mutants whose keys this file lists (e.g. an earlier run's survivors)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print every mutant's fate")
    args = parser.parse_args(argv)
    names = args.modules or list(TARGETS)
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    equivalent = load_equivalent()
    if args.list:
        for name in names:
            target = TARGETS[name]
            for mutant in enumerate_mutants(target, (ROOT / target.path).read_text()):
                tag = "  (equivalent)" if mutant.key in equivalent else ""
                say(f"{mutant.shown}{tag}")
        return 0
    only = None
    if args.only is not None:
        lines = args.only.read_text().splitlines()
        only = {
            line.strip().removeprefix("survived:").partition("  @ line")[0].strip()
            for line in lines
            if line.strip()
        }
    # A plain kill still restores the module and removes the copy (SystemExit unwinds).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutation-") as temp:
        copy_root = Path(temp) / "checkout"
        copy_checkout(copy_root, args.ref)
        scores = []
        for name in names:
            say(f"{name}: mutating {TARGETS[name].path}", flush=True)
            scores.append(
                mutate_module(
                    copy_root, TARGETS[name], equivalent, args.timeout, args.verbose, only
                )
            )
    ok = report(scores, args.min)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    say(f"{when}, {time.monotonic() - started:.0f}s, minimum {args.min:g}%")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
