"""The evidence replays the recorded history: shadow parity and the latest shadow run."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from integrator.parity import (
    dequeue_order_violations,
    latest_shadow_run,
    lease_overlaps,
    shadow_registrations,
)

START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Recorded:
    seq: int
    type: str
    fields: dict[str, Any] = field(default_factory=dict)
    recorded_at: datetime = START


def mode_changed(seq: int, to: str, hours: int, drill: bool = False) -> Recorded:
    fields = {"to": to, "drill": drill}
    return Recorded(seq, "mode_changed", fields, START + timedelta(hours=hours))


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


def test_a_fresh_install_is_in_shadow_from_its_first_record() -> None:
    """No mode change recorded: shadow runs from the first event, and still runs."""
    run = latest_shadow_run(Recorded(5, "lease_acquired"), [])
    assert run is not None
    assert (run.since, run.until, run.holds(5), run.holds(4)) == (START, None, True, False)


def test_nothing_recorded_is_no_shadow_run() -> None:
    """An empty history has not run shadow at all."""
    assert latest_shadow_run(None, []) is None


def test_entering_shadow_again_starts_a_new_run() -> None:
    """off then shadow: what happened before the latest entry into shadow does not count."""
    changes = [mode_changed(2, "off", 1), mode_changed(3, "shadow", 2)]
    run = latest_shadow_run(Recorded(1, "lease_acquired"), changes)
    assert run is not None
    assert (run.after_seq, run.since, run.until_seq) == (3, START + timedelta(hours=2), None)


def test_leaving_shadow_ends_the_run_where_it_was_left() -> None:
    """In off or cutover the run that counts is the last one, up to the change that ended it."""
    changes = [mode_changed(2, "shadow", 1), mode_changed(3, "cutover", 5)]
    run = latest_shadow_run(Recorded(1, "lease_acquired"), changes)
    assert run is not None
    assert (run.since, run.until) == (START, START + timedelta(hours=5))
    assert (run.holds(2), run.holds(3)) == (True, False)


def test_a_drill_round_trip_does_not_interrupt_the_run() -> None:
    """The drill's cutover and its way back are recorded, and ignored here."""
    changes = [mode_changed(2, "cutover", 3, drill=True), mode_changed(3, "shadow", 3, drill=True)]
    run = latest_shadow_run(Recorded(1, "lease_acquired"), changes)
    assert run is not None and (run.since, run.until) == (START, None)
