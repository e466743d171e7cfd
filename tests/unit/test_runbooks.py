"""The operator's runbooks can be followed as written.

docs/operations.md links every runbook in docs/runbooks/, and every `integrator …` command they
show — in code blocks or inline — names a subcommand and options the CLI really has.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.unit.test_deploy_containers import assert_real_command

DOCS = Path(__file__).resolve().parents[2] / "docs"
OPERATIONS = DOCS / "operations.md"
RUNBOOKS = sorted((DOCS / "runbooks").glob("*.md"))
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`([^`]+)`")
#: What ends one command on a shell line: a comment, a pipe, a list or a substitution.
SEPARATOR = re.compile(r"\s#|&&|\|\||[|;]|\$\(|\)")


def snippets(text: str) -> list[str]:
    """Shell lines of fenced blocks, then inline code spans of the prose around them."""
    lines = [line for block in FENCED.findall(text) for line in block.splitlines()]
    prose = FENCED.sub("", text)
    return lines + [" ".join(span.split()) for span in INLINE.findall(prose)]


def integrator_commands(text: str) -> list[list[str]]:
    """Each `integrator …` argv in the text, up to the end of its shell command."""
    found = []
    for snippet in snippets(text):
        if snippet.lstrip().startswith("#"):
            continue  # an example's output
        for piece in SEPARATOR.split(snippet):
            try:
                words = shlex.split(piece)
            except ValueError:
                words = piece.split()
            if "integrator" in words:
                found.append(words[words.index("integrator") :])
    return found


@pytest.mark.parametrize("runbook", RUNBOOKS, ids=[r.name for r in RUNBOOKS])
def test_every_runbook_is_linked_from_the_operations_guide(runbook: Path) -> None:
    """docs/operations.md links runbooks/NAME.md, so an operator finds it from the guide."""
    assert f"](runbooks/{runbook.name}" in OPERATIONS.read_text()


@pytest.mark.parametrize(
    "document", [OPERATIONS, *RUNBOOKS], ids=[d.name for d in [OPERATIONS, *RUNBOOKS]]
)
def test_every_integrator_command_the_runbooks_show_exists(document: Path) -> None:
    """Each `integrator SUB … --option` shown is a real subcommand with real options."""
    commands = integrator_commands(document.read_text())
    assert commands, f"{document.name} shows no integrator command"
    for argv in commands:
        assert_real_command(argv)
