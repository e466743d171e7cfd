"""What the cutover evidence says when it finds an overlap: both epochs and both instants,
so that an operator can find the two grants in the lease's events."""

from __future__ import annotations

from integrator.parity import lease_overlaps
from tests.unit.test_parity import Recorded


def test_an_overlap_names_both_epochs_and_both_instants() -> None:
    takeover = Recorded(
        9,
        "lease_taken_over",
        {
            "epoch": 4,
            "previous_epoch": 3,
            "acquired_at": "2026-01-01T10:00:00.000+00:00",
            "previous_expires_at": "2026-01-01T10:00:00.001+00:00",
        },
    )
    assert lease_overlaps([takeover]) == [
        "epoch 4 granted at 2026-01-01T10:00:00+00:00 before epoch 3 expired at "
        "2026-01-01T10:00:00.001000+00:00"
    ]


def test_a_takeover_at_the_previous_expiry_instant_is_no_overlap() -> None:
    at = "2026-01-01T10:00:00.000+00:00"
    takeover = Recorded(9, "lease_taken_over", {"acquired_at": at, "previous_expires_at": at})
    assert lease_overlaps([takeover]) == []


def test_a_first_grant_without_a_previous_expiry_is_no_overlap() -> None:
    grant = Recorded(9, "lease_acquired", {"acquired_at": "2026-01-01T10:00:00+00:00"})
    assert lease_overlaps([grant]) == []
