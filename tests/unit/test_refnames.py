"""Branch names follow git's own `check-ref-format --branch` rules."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from integrator.refnames import branch_name_problem, slug_problem

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


@pytest.mark.parametrize("slug", ["feat-1", "Issue_14.fix", "2026.01", "a"])
def test_a_slug_of_letters_digits_dots_dashes_and_underscores_is_valid(slug: str) -> None:
    """Such a slug is one URL path segment and one shell word."""
    assert slug_problem(slug) is None


@pytest.mark.parametrize("slug", ["", "a/b", "..", ".a", "-a", "a b", "a?b", "a#b", "a%2F", "é"])
def test_a_slug_that_a_url_or_a_shell_would_split_is_invalid(slug: str) -> None:
    """`queue show SLUG` and `queue close SLUG` must be able to address every slug."""
    assert slug_problem(slug)
