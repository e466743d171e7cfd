"""The mutation tool's bookkeeping: a mutant keeps its name when code around it moves, and
every mutant listed as equivalent still exists (a stale entry would hide a new survivor)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[3]


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation_tool", ROOT / "tools" / "mutation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


mutation = _load_tool()

SOURCE = """
def admit(count, limit):
    if count < limit:
        return True
    return count < limit + 1


class Gate:
    def open(self, count):
        return count > 0
"""


def _keys(source: str) -> list[str]:
    target = mutation.Target("gate.py", ())
    return [m.key for m in mutation.enumerate_mutants(target, source)]


def test_a_mutant_is_named_by_its_function_and_change_not_its_line() -> None:
    keys = _keys(SOURCE)
    assert "gate.py:admit:< -> <=" in keys
    assert "gate.py:admit:< -> <= #2" in keys
    assert "gate.py:Gate.open:> -> >=" in keys
    assert "gate.py:admit:1 -> 2" in keys


def test_code_moving_above_a_function_does_not_rename_its_mutants() -> None:
    moved = '"""A docstring."""\nimport os\n\nLIMIT = os.sep\n\n' + SOURCE
    assert set(_keys(SOURCE)) <= set(_keys(moved))


def test_the_same_change_twice_in_a_function_is_counted_in_walk_order() -> None:
    target = mutation.Target("gate.py", ())
    mutants = mutation.enumerate_mutants(target, SOURCE)
    first, second = (m for m in mutants if m.change.startswith("< -> <="))
    assert (first.line, second.line) == (3, 5)
    assert first.shown == "gate.py:admit:< -> <=  @ line 3"


def test_every_listed_equivalent_names_a_mutant_that_exists() -> None:
    listed = mutation.load_equivalent()
    assert listed, "tools/mutation_equivalent.txt lists nothing"
    existing: set[str] = set()
    for target in mutation.TARGETS.values():
        source = (ROOT / target.path).read_text()
        existing.update(m.key for m in mutation.enumerate_mutants(target, source))
    assert sorted(set(listed) - existing) == []
