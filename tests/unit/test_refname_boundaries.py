"""Branch names and slugs at the edges of their rules: every control character (the unit
separator `\x1f` included, the highest one below space), DEL, and the one-character and
the separator-heavy names git still accepts."""

from __future__ import annotations

from typing import cast

import pytest
from sqlalchemy import String

from integrator.models import Candidate
from integrator.refnames import (
    BRANCH_MAX_LENGTH,
    SLUG_MAX_LENGTH,
    branch_name_problem,
    slug_problem,
)


@pytest.mark.parametrize("char", ["\x00", "\t", "\n", "\x1f", "\x7f"])
def test_a_control_character_anywhere_is_refused(char: str) -> None:
    for name in (f"{char}a", f"a{char}b", f"ab{char}"):
        assert branch_name_problem(name) == "contains a control character"


@pytest.mark.parametrize("name", [" a", "a b"])
def test_space_the_first_printable_character_is_refused_by_name(name: str) -> None:
    assert branch_name_problem(name) == "contains ' '"


@pytest.mark.parametrize("name", ["a", "a\x80b", "a/b/c", "a.b.c", "x@y", "a-", "a.locked"])
def test_names_on_the_edge_of_a_rule_are_accepted(name: str) -> None:
    assert branch_name_problem(name) is None


def test_every_problem_has_its_own_words() -> None:
    assert branch_name_problem("") == "empty"
    assert branch_name_problem("-a") == "starts with '-'"
    assert branch_name_problem("HEAD") == "'HEAD' is not a branch name"
    assert branch_name_problem("a:b?") == "contains ':' '?'"
    assert branch_name_problem("a..b") == "contains '..'"
    assert branch_name_problem("a@{1}") == "contains '@{'"
    for name in ("/a", "a/", "a//b"):
        assert branch_name_problem(name) == "has an empty path component"
    assert branch_name_problem("a.") == "ends with '.'"
    assert branch_name_problem("a/.b") == "a component starts with '.'"
    assert branch_name_problem("a.lock/b") == "a component ends with '.lock'"


def test_a_slug_is_one_path_segment_starting_with_a_letter_or_digit() -> None:
    assert slug_problem("fix-7.b_c") is None and slug_problem("7") is None
    assert slug_problem("-fix") == (
        "must be letters, digits, '.', '_' or '-', starting with a letter or digit"
    )
    assert slug_problem("a/b") is not None and slug_problem("") is not None


def test_the_longest_branch_and_slug_are_what_the_database_stores() -> None:
    """A name the rules accept must fit its column: 255 for a branch, 200 for a slug."""
    columns = Candidate.__table__.c
    lengths = [cast(String, columns[name].type).length for name in ("branch", "slug")]
    assert [BRANCH_MAX_LENGTH, SLUG_MAX_LENGTH] == lengths == [255, 200]
