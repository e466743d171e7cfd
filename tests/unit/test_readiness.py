"""The readiness predicate: all six conditions, each reported when unmet."""

from __future__ import annotations

from dataclasses import replace

import pytest

from integrator.readiness import Condition, Facts, evaluate

ALL_MET = Facts(
    approved=True,
    finalized=True,
    pushed=True,
    on_branch=True,
    superseded=False,
    on_main=False,
    main_sha="a" * 40,
)


def test_ready_when_all_six_conditions_hold() -> None:
    """READY needs every condition, and records the main it was computed against."""
    result = evaluate(ALL_MET)
    assert result.ready and result.unmet == () and result.main_sha == "a" * 40


@pytest.mark.parametrize(
    ("change", "condition"),
    [
        ({"approved": False}, Condition.review_approved),
        ({"finalized": False}, Condition.finalize_ready),
        ({"pushed": False}, Condition.branch_pushed),
        ({"on_branch": False}, Condition.on_branch),
        ({"superseded": True}, Condition.not_superseded),
        ({"on_main": True}, Condition.not_on_main),
    ],
)
def test_each_unmet_condition_is_named(change: dict[str, bool], condition: Condition) -> None:
    """A waiting candidate can say exactly which condition is missing."""
    result = evaluate(replace(ALL_MET, **change))
    assert not result.ready
    assert result.unmet == (condition,)


def test_unknown_git_facts_are_never_ready_but_are_not_unmet_either() -> None:
    """When git cannot tell (None): not READY (an event's word is not enough), and undecided,
    so that a caller keeps the candidate's state instead of moving it."""
    result = evaluate(replace(ALL_MET, on_branch=None, on_main=None))
    assert not result.ready and result.undecided
    assert result.unmet == ()
    assert result.unknown == result.pending == (Condition.on_branch, Condition.not_on_main)


def test_a_known_unmet_condition_decides_even_when_git_cannot_tell() -> None:
    """Not approved is not approved, whatever git says: the candidate can wait."""
    result = evaluate(replace(ALL_MET, approved=False, on_branch=None, on_main=None))
    assert not result.undecided
    assert result.unmet == (Condition.review_approved,)
    assert result.pending == (
        Condition.review_approved,
        Condition.on_branch,
        Condition.not_on_main,
    )


def test_all_unmet_conditions_are_listed_in_order() -> None:
    """Several missing conditions are all reported, in the design's order."""
    result = evaluate(replace(ALL_MET, approved=False, pushed=False, on_main=True))
    assert result.unmet == (
        Condition.review_approved,
        Condition.branch_pushed,
        Condition.not_on_main,
    )
