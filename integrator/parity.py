"""The cutover evidence's history checks, replayed as a checker would.

Pure functions over events in server order: they replay what happened rather
than trusting the current state: the violations of shadow parity, and the
latest uninterrupted stretch of shadow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol


class Recorded(Protocol):
    seq: int
    type: str
    fields: dict[str, Any]


class Timed(Recorded, Protocol):
    recorded_at: datetime


@dataclass(frozen=True)
class ShadowRun:
    """The latest uninterrupted stretch of shadow: the events strictly between its bounds."""

    after_seq: int
    since: datetime
    #: The mode change that ended it; None while shadow still runs.
    until_seq: int | None = None
    until: datetime | None = None

    def holds(self, seq: int) -> bool:
        return seq > self.after_seq and (self.until_seq is None or seq < self.until_seq)


def latest_shadow_run(first: Timed | None, changes: Iterable[Timed]) -> ShadowRun | None:
    """Replay the mode changes: an install is in shadow from its first record, each entry into
    shadow starts a new run and each exit ends it. A rollback drill's instant round trip
    interrupts nothing. None when nothing was ever recorded."""
    if first is None:
        return None
    run = ShadowRun(first.seq - 1, first.recorded_at)
    for change in changes:
        if change.fields.get("drill"):
            continue
        running = run.until_seq is None
        if change.fields.get("to") == "shadow":
            if not running:
                run = ShadowRun(change.seq, change.recorded_at)
        elif running:
            run = replace(run, until_seq=change.seq, until=change.recorded_at)
    return run


def _instant(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def lease_overlaps(takeovers: Iterable[Recorded]) -> list[str]:
    """A takeover must start no earlier than the previous grant's expiry."""
    found = []
    for event in takeovers:
        previous = _instant(event.fields.get("previous_expires_at"))
        granted = _instant(event.fields.get("acquired_at"))
        if previous is not None and granted is not None and granted < previous:
            found.append(
                f"epoch {event.fields.get('epoch')} granted at {granted.isoformat()} before "
                f"epoch {event.fields.get('previous_epoch')} expired at {previous.isoformat()}"
            )
    return found


def dequeue_order_violations(changes: Iterable[Recorded]) -> list[str]:
    """Every dequeue takes the smallest position among the candidates queued at that moment."""
    queued: dict[Any, int] = {}
    found = []
    for event in changes:
        fields = event.fields
        candidate, to, position = (
            fields.get("candidate_id"),
            fields.get("to"),
            fields.get("position"),
        )
        if to == "in_progress" and position is not None:
            smallest = min(queued.values(), default=position)
            if position > smallest:
                found.append(
                    f"candidate {candidate} (position {position}) dequeued while position "
                    f"{smallest} was queued (event #{event.seq})"
                )
        if to == "queued" and position is not None:
            queued[candidate] = position
        else:
            queued.pop(candidate, None)
    return found


def shadow_registrations(history: Iterable[Recorded]) -> list[str]:
    """No registration may be created while the mode is not cutover."""
    mode = "shadow"
    found = []
    for event in history:
        if event.type == "mode_changed":
            mode = str(event.fields.get("to"))
        elif event.type == "registration_created" and mode != "cutover":
            found.append(f"registration {event.fields.get('registration_id')} in {mode}")
    return found
