"""Operator controls over the queue's order: the lanes.

A promotion puts a slug's newest open candidate in the `hotfix` lane, which the worker
empties before the `normal` one; a demotion puts it back. Either is an operator's recorded
decision (`candidate_promoted` / `candidate_demoted`, with the reason and who). A promoted
candidate is only taken sooner: it passes every readiness condition and check as before.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from integrator.errors import TransitionRefused
from integrator.events import record_system_event
from integrator.models import Candidate, utcnow
from integrator.queue import Lane, candidate_fields, newest_open
from integrator.settings import Settings

#: The event each lane change records.
LANE_EVENTS = {Lane.hotfix: "candidate_promoted", Lane.normal: "candidate_demoted"}


def move_to_lane(
    session: Session, settings: Settings, slug: str, lane: Lane, *, reason: str, by: str
) -> Candidate:
    """Put the slug's newest open candidate in `lane` (its successors inherit it); recorded."""
    candidate = newest_open(session, settings.repository_name, slug)
    if candidate.lane == lane.value:
        raise TransitionRefused(
            f"candidate {candidate.id} ({slug}) is already in the {lane.value} lane"
        )
    previous = candidate.lane
    candidate.lane = lane.value
    candidate.updated_at = utcnow()
    session.flush()
    record_system_event(
        session,
        type=LANE_EVENTS[lane],
        repository=candidate.repository,
        fields={
            **candidate_fields(candidate),
            "from_lane": previous,
            "to_lane": lane.value,
            "position": candidate.position,
            "reason": reason,
        },
        slug=candidate.slug,
        branch=candidate.branch,
        sha=candidate.sha,
        actor=by,
    )
    return candidate
