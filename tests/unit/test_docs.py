"""The product's documentation stands on its own and matches the code.

README.md, CHANGELOG.md, docs/ and deploy/ are what a user of a clone has: they never cite
documents a clone does not contain, every setting is documented with its real default, and every
relative link leads somewhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from integrator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
USER_FACING = sorted(
    [
        ROOT / "README.md",
        ROOT / "CHANGELOG.md",
        ROOT / "Makefile",
        ROOT / ".ci" / "run",
        *(ROOT / "docs").rglob("*.md"),
        *(p for p in (ROOT / "deploy").iterdir() if p.is_file()),
    ]
)
MARKDOWN = [p for p in USER_FACING if p.suffix == ".md"]
CONFIGURATION = ROOT / "docs" / "configuration.md"
#: A citation of the internal contract, which is not part of the product.
INTERNAL = re.compile(r"DESIGN\s*§|DESIGN\.md|\.\./shared")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", USER_FACING, ids=_name)
def test_user_facing_text_never_cites_the_internal_design_document(path: Path) -> None:
    """No "DESIGN §N", DESIGN.md or ../shared: a clone has none of them."""
    found = [
        f"{_name(path)}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if INTERNAL.search(line)
    ]
    assert found == []


def documented_default(value: object) -> str:
    """How configuration.md writes a default."""
    if value is None:
        return "(unset)"
    if isinstance(value, list):
        return "`" + ",".join(str(v) for v in value) + "`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_in_the_configuration_table_with_its_real_default(name: str) -> None:
    """docs/configuration.md has a row `| INTEGRATOR_X | default | …` for each setting."""
    variable = f"INTEGRATOR_{name.upper()}"
    rows = [
        line
        for line in CONFIGURATION.read_text().splitlines()
        if line.startswith(f"| `{variable}` |")
    ]
    assert len(rows) == 1, f"{variable}: expected one row in docs/configuration.md"
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert cells[1] == documented_default(Settings.model_fields[name].default), rows[0]


def anchors(path: Path) -> set[str]:
    """The anchors a Markdown renderer gives the headings of `path` (GitHub's rule)."""
    found = set()
    for line in path.read_text().splitlines():
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            text = heading.group(1).strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found


def leads_somewhere(source: Path, target: str) -> bool:
    file_part, _, anchor = target.partition("#")
    linked = (source.parent / file_part).resolve() if file_part else source
    if not linked.exists():
        return False
    return not anchor or linked.is_dir() or anchor in anchors(linked)


@pytest.mark.parametrize("path", MARKDOWN, ids=_name)
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(path: Path) -> None:
    """A relative link names an existing file (and, after #, one of its headings)."""
    targets = [t for t in LINK.findall(path.read_text()) if not re.match(r"[a-z]+:", t)]
    broken = [t for t in targets if not leads_somewhere(path, t)]
    assert broken == [], f"{_name(path)}: broken links {broken}"
