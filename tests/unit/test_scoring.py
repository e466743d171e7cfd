"""How a scored prediction fared: the categories and their tally."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from integrator.scoring import Category, categorize, tally


@dataclass
class Recorded:
    fields: dict[str, Any]


def test_a_would_integrate_that_landed_agrees() -> None:
    """Landing is what it predicted, however it landed."""
    assert categorize("would_integrate", (), ("README",)) is Category.agreed


def test_a_block_whose_every_named_file_conflicts_in_the_landing_was_right() -> None:
    """Git had to be overruled by hand on those files: the block was right."""
    assert categorize("would_block", ("a",), ("a", "b")) is Category.blocked_then_resolved


def test_a_block_naming_a_file_the_landing_did_not_conflict_on_disagrees() -> None:
    """Every named file must conflict; a clean landing disagrees."""
    assert categorize("would_block", ("a", "c"), ("a",)) is Category.disagreed
    assert categorize("would_block", ("a",), ()) is Category.disagreed


def test_a_block_for_a_failing_check_that_landed_disagrees() -> None:
    """It names no file, so git cannot show a resolution."""
    assert categorize("would_block", (), ("a",)) is Category.disagreed


def test_the_tally_counts_each_category_and_the_predictions_never_scored() -> None:
    """Records made before categories count by their `agreed`; re-predictions count once."""
    predicted = [Recorded({"candidate_id": n}) for n in (1, 2, 3, 4, 4, 5)]
    scored = [
        Recorded({"candidate_id": 1, "category": "agreed", "agreed": True}),
        Recorded({"candidate_id": 2, "category": "blocked_then_resolved", "agreed": True}),
        Recorded({"candidate_id": 3, "agreed": False}),
    ]
    assert tally(predicted, scored) == {
        "agreed": 1,
        "blocked_then_resolved": 1,
        "disagreed": 1,
        "unscored": 2,
    }
