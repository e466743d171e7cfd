"""Branch names follow git's own `check-ref-format --branch` rules."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from integrator.refnames import branch_name_problem

NAMES = [
    "main",
    "feature/x",
    "a.b",
    "release-1.2",
    "user/alice/fix_7",
    "x@y",
    "été",
    "a+b",
    "",
    "-x",
    "HEAD",
    "@",
    "a..b",
    "a b",
    "a~1",
    "a^",
    "a:b",
    "a?",
    "a*",
    "a[",
    "a\\b",
    "/a",
    "a/",
    "a//b",
    "a.",
    ".a",
    "a/.b",
    "a.lock",
    "a/b.lock/c",
    "a@{1}",
    "a\tb",
    "a\x7fb",
    "refs/heads/x",
    "a/b/c",
    "..",
    "a.lock.b",
]


@pytest.mark.parametrize("name", NAMES)
def test_branch_rules_agree_with_git(name: str, tmp_path: Path) -> None:
    """For every sample, git and our check accept or refuse together (outside a repository,
    where git does not expand `@` to the current branch)."""
    result = subprocess.run(
        ["git", "check-ref-format", "--branch", name],
        capture_output=True,
        check=False,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "GIT_CEILING_DIRECTORIES": str(tmp_path.parent)},
    )
    assert (result.returncode == 0) == (branch_name_problem(name) is None), name
