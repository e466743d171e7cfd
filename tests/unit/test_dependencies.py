"""Every runtime dependency declared in pyproject.toml is used by the product.

An unused dependency is installed on every server and audited for nothing
(docs/decisions/0004-git-through-one-command-line-adapter.md).
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("integrator", "migrations")
#: Distributions loaded by name rather than imported: SQLAlchemy picks the driver from the URL.
LOADED_BY_NAME = {"psycopg": "postgresql+psycopg"}


def runtime_dependencies() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0] for spec in project["dependencies"]]
    return [name.lower().replace("-", "_") for name in names]


def product_sources() -> list[Path]:
    return [path for folder in PRODUCT for path in sorted((ROOT / folder).rglob("*.py"))]


def imported_top_level_modules() -> set[str]:
    found: set[str] = set()
    for path in product_sources():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_every_runtime_dependency_is_imported_or_loaded_by_the_product() -> None:
    """A declared runtime dependency that nothing in integrator/ or migrations/ uses is dropped."""
    imported = imported_top_level_modules()
    sources = "\n".join(path.read_text() for path in product_sources())
    unused = []
    for name in runtime_dependencies():
        if name in LOADED_BY_NAME:
            if LOADED_BY_NAME[name] not in sources:
                unused.append(name)
        elif name not in imported:
            unused.append(name)
    assert unused == [], f"declared in pyproject.toml but never used by the product: {unused}"
