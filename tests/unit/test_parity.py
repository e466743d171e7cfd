"""Shadow parity replays the recorded history (DESIGN §7, evidence item 2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from integrator.parity import dequeue_order_violations, lease_overlaps, shadow_registrations


@dataclass
class Recorded:
    seq: int
    type: str
    fields: dict[str, Any] = field(default_factory=dict)


def change(seq: int, candidate: int, to: str, position: int | None) -> Recorded:
    fields = {"candidate_id": candidate, "to": to, "position": position}
    return Recorded(seq, "candidate_status_changed", fields)


def takeover(previous_expires_at: str, acquired_at: str) -> Recorded:
    fields = {
        "epoch": 2,
        "previous_epoch": 1,
        "previous_expires_at": f"2026-01-01T00:00:{previous_expires_at}+00:00",
        "acquired_at": f"2026-01-01T00:00:{acquired_at}+00:00",
    }
    return Recorded(1, "lease_taken_over", fields)


def test_a_takeover_after_the_previous_expiry_is_no_overlap() -> None:
    """The takeover of an expired grant is the normal case."""
    assert lease_overlaps([takeover("10", "10")]) == []


def test_a_takeover_before_the_previous_expiry_is_an_overlap() -> None:
    """Two holders at once is the one thing that must never be recorded."""
    assert len(lease_overlaps([takeover("10", "09")])) == 1


def test_dequeues_take_the_smallest_queued_position() -> None:
    """Positions may go down again (a requeued or inherited one) without a violation."""
    history = [
        change(1, 10, "queued", 1),
        change(2, 11, "queued", 2),
        change(3, 10, "in_progress", 1),
        change(4, 10, "queued", 1),  # its epoch ended: back at the head
        change(5, 10, "in_progress", 1),
        change(6, 11, "in_progress", 2),
    ]
    assert dequeue_order_violations(history) == []


def test_a_dequeue_that_skips_a_smaller_position_is_a_violation() -> None:
    """FIFO by position is what the worker promises."""
    history = [
        change(1, 10, "queued", 1),
        change(2, 11, "queued", 2),
        change(3, 11, "in_progress", 2),
    ]
    assert len(dequeue_order_violations(history)) == 1


def test_registrations_are_only_created_in_cutover() -> None:
    """The mode at the time of creation is replayed from mode_changed events."""
    history = [
        Recorded(1, "registration_created", {"registration_id": 1}),
        Recorded(2, "mode_changed", {"to": "cutover"}),
        Recorded(3, "registration_created", {"registration_id": 2}),
    ]
    assert shadow_registrations(history) == ["registration 1 in shadow"]
