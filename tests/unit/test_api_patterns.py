"""The patterns the OpenAPI declares say exactly what the service's own rules accept.

A client (or schemathesis) that builds a value from the declared pattern gets it taken; one
that breaks the pattern gets a 422. Checked with Python's `re`, as the rules are.
"""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from integrator.api import schemas
from integrator.event_schemas import printable
from integrator.refnames import branch_name_problem, slug_problem

TRICKY = st.text(alphabet="aZ09./-_@{}~^:?*[\\ \t\n\x00\x7fHEADlock\u00e9\u3000\u200e", max_size=12)
ANY_TEXT = st.text(max_size=12)


def declared(pattern: str, value: str) -> bool:
    """Whether the pattern matches as JSON Schema reads it: `$` is the end of the text, not
    also the place before a final newline as in Python."""
    return re.search(pattern.replace("$", r"\Z"), value) is not None


def printable_ok(value: str) -> bool:
    try:
        printable(value)
    except ValueError:
        return False
    return True


@given(st.one_of(TRICKY, ANY_TEXT))
def test_the_slug_pattern_is_the_slug_rule(value: str) -> None:
    assert declared(schemas.SLUG_PATTERN, value) == (slug_problem(value) is None)


@given(st.one_of(TRICKY, ANY_TEXT))
@settings(max_examples=300)
def test_the_branch_pattern_is_gits_branch_rule(value: str) -> None:
    assert declared(schemas.BRANCH_PATTERN, value) == (branch_name_problem(value) is None)


def line_ok(value: str) -> bool:
    try:
        schemas.one_line(value)
    except ValueError:
        return False
    return True


@given(st.one_of(TRICKY, ANY_TEXT, st.characters().map(str)))
@settings(max_examples=500)
def test_the_printable_line_pattern_is_the_names_rule(value: str) -> None:
    if not any("\ud800" <= c <= "\udfff" for c in value):
        assert declared(schemas.PRINTABLE_LINE, value) == line_ok(value)


@given(st.one_of(TRICKY, ANY_TEXT, st.characters().map(str)))
@settings(max_examples=500)
def test_every_name_printable_takes_is_still_a_name(value: str) -> None:
    """The names' rule at the edge only adds unassigned and private-use code points."""
    if printable_ok(value):
        assert line_ok(value)


@given(st.from_regex(schemas.BRANCH_PATTERN))
def test_a_branch_drawn_from_the_pattern_is_a_branch(value: str) -> None:
    assert branch_name_problem(value.removesuffix("\n")) is None


@given(st.from_regex(schemas.PRINTABLE_LINE))
def test_a_name_drawn_from_the_pattern_is_a_name(value: str) -> None:
    assert line_ok(value.removesuffix("\n"))


@given(st.one_of(TRICKY, ANY_TEXT))
def test_the_prose_pattern_is_the_prose_rule(value: str) -> None:
    expected = "\x00" not in value and bool(value.strip())
    assert declared(schemas.PROSE_PATTERN, value) == expected


def test_every_character_agrees() -> None:
    """Each code point on its own, the whole of Unicode as this Python knows it: the pattern
    and the rule agree (surrogates aside, which no UTF-8 text holds), and what they refuse is
    what `isprintable` refuses among the assigned, public characters of the BMP."""
    pattern = re.compile(schemas.PRINTABLE_LINE.replace("$", r"\Z"))
    wrong = []
    for cp in range(0x110000):
        c = chr(cp)
        if unicodedata.category(c) == "Cs":
            assert not line_ok(c)
            continue
        lax = unicodedata.category(c) in ("Cn", "Co") or cp > 0xFFFF
        matches = pattern.search(c) is not None
        if matches != line_ok(c) or matches != (c != " " and (c.isprintable() or lax)):
            wrong.append(hex(cp))
    assert wrong == []
