"""The pure rules of speculative builds: what a record must say across its fields, which builds
are under test, which build an ended lease left, and how `integrator status` says the chain."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from integrator.cli.status import _speculation_lines
from integrator.speculation import (
    DISCARDED,
    STARTED,
    STATUS_CHANGED,
    Build,
    Row,
    State,
    problems,
    under_test,
    unended,
)

AT = datetime(2026, 11, 26, 20, 0, tzinfo=UTC)
EPOCH = 4


def build(**overrides: Any) -> Build:
    fields: dict[str, Any] = {"state": State.testing, "attempt": "a", "base": "b" * 40,
                              "sha": "c" * 40, "depth": 1}  # fmt: skip
    return Build(**{**fields, **overrides})


def started(candidate: int, attempt: str, depth: int = 1, epoch: int = EPOCH) -> Row:
    fields = {"candidate_id": candidate, "epoch": epoch, "attempt": attempt, "base": "b" * 40,
              "sha": "c" * 40, "depth": depth, "below": list(range(100, 99 + depth))}  # fmt: skip
    return Row(candidate, STARTED, fields, AT, f"slug-{candidate}")


def discarded(candidate: int, attempt: str, epoch: int = EPOCH) -> Row:
    fields = {"candidate_id": candidate, "epoch": epoch, "attempt": attempt}
    return Row(candidate, DISCARDED, fields, AT, f"slug-{candidate}")


def handed(candidate: int) -> Row:
    fields = {"candidate_id": candidate, "to": "in_progress"}
    return Row(candidate, STATUS_CHANGED, fields, AT, f"slug-{candidate}")


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({}, []),
        ({"depth": 3, "below": (7, 8)}, []),
        ({"depth": None}, ["depth"]),
        ({"depth": 2, "below": ()}, ["below"]),
        ({"depth": 3, "below": (7, 7)}, ["below"]),
        ({"depth": 2, "below": (1,)}, ["below"]),
        ({"state": State.discarded, "reason": None}, ["reason"]),
        ({"state": State.discarded, "reason": "  "}, ["reason"]),
        ({"state": State.discarded, "reason": "main moved", "depth": None}, []),
    ],
)
def test_a_build_is_held_to_the_rules_across_its_fields(
    overrides: dict[str, Any], fields: list[str]
) -> None:
    """Under test: a depth, and exactly the depth - 1 other candidates below it; discarded: why."""
    assert [d.field for d in problems(1, build(**overrides))] == fields


def test_the_chain_is_the_latest_build_of_each_handout_bottom_first() -> None:
    rows = [handed(1), handed(2), handed(3), started(2, "x", depth=2), started(1, "y"),
            started(3, "z", depth=3), started(2, "x2", depth=2)]  # fmt: skip
    shown = under_test(rows, EPOCH)
    assert [(b["candidate_id"], b["attempt"], b["depth"]) for b in shown] == [
        (1, "y", 1), (2, "x2", 2), (3, "z", 3)]  # fmt: skip
    assert shown[2]["below"] == [100, 101] and shown[0]["since"] == "2026-11-26T20:00:00Z"


def test_a_discarded_build_leaves_the_chain_a_discard_of_an_older_one_does_not() -> None:
    rows = [handed(1), handed(2), started(1, "a"), started(2, "b", depth=2), started(2, "c", 2),
            discarded(2, "b"), discarded(1, "a")]  # fmt: skip
    assert [b["attempt"] for b in under_test(rows, EPOCH)] == ["c"]


def test_a_new_handout_or_another_epoch_ends_what_was_built_before() -> None:
    """Given back and handed out again: the earlier build is over; a build of another epoch
    or of another candidate of the same slug is not this handout's."""
    rows = [handed(1), started(1, "old"), handed(1)]
    other_candidate = Row(1, STARTED, started(2, "x").fields, AT, "slug-1")
    assert under_test([*rows, other_candidate], EPOCH) == []
    assert under_test([handed(1), started(1, "old", epoch=EPOCH - 1)], EPOCH) == []


def test_an_ended_lease_leaves_the_latest_build_of_its_epoch_unless_it_was_discarded() -> None:
    rows = [started(1, "a"), discarded(1, "a"), started(1, "b")]
    found = unended(rows, 1, EPOCH)
    assert found is not None and found.fields["attempt"] == "b"
    assert unended([*rows, discarded(1, "b")], 1, EPOCH) is None
    assert unended(rows, 1, EPOCH + 1) is None
    assert unended(rows, 2, EPOCH) is None


def test_status_says_the_chain_in_words() -> None:
    builds = [
        {"candidate_id": 12, "slug": "fix-a", "base": "1a2b3c4d5e6f" + "0" * 28, "below": []},
        {"candidate_id": 13, "slug": "fix-b", "base": "9" * 40, "below": [12]},
    ]
    assert _speculation_lines(builds) == [
        "under test: 12 fix-a on main 1a2b3c4d5e6f; 13 fix-b on 12"
    ]
    assert _speculation_lines([]) == []
