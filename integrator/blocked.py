"""Resume: a blocked candidate goes back through readiness into its original turn.

`integrator resume SLUG` (its author's tooling or an operator) re-checks the newest open
candidate of the slug against the events and the canonical repository: READY goes back to
`queued` with the position it had, anything else to `waiting` with what is unmet, already on
main to `integrated`. `--to-back` gives the turn up for the next position, recorded. A new
`finalize_ready` with a new sha resumes too (the successor inherits the position, see
`admission`). Nothing resumes on its own: a candidate that blocks again stays blocked, with
its follow-up updated, until someone acts — a block is never retried in a loop.

An operator can also send back a handout whose holder is gone (its epoch ended or its
lease expired) without waiting for anything.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from integrator import followups, lease
from integrator.admission import CanonicalRepo, check, record
from integrator.errors import NotFound, TransitionRefused
from integrator.events import record_system_event
from integrator.messages import explain_unmet
from integrator.models import Candidate
from integrator.outcomes import complete
from integrator.queue import (
    ACTIVE,
    Status,
    candidate_fields,
    candidates_of_slug,
    next_position,
    return_stale,
    transition,
)
from integrator.readiness import Condition
from integrator.settings import Settings


def resume(
    session: Session,
    settings: Settings,
    repo: CanonicalRepo,
    slug: str,
    *,
    to_back: bool,
    by: str,
    operator: bool,
) -> Candidate:
    """Re-queue the slug's blocked candidate (or an operator's stale handout) in its turn."""
    candidate = _newest_open(session, settings, slug)
    status = Status(candidate.status)
    if status is Status.in_progress:
        _may_send_back(session, settings, candidate, operator=operator)
    elif status is not Status.blocked:
        raise TransitionRefused(_not_blocked(candidate))
    if to_back:
        _to_back(session, candidate, by)
    if status is Status.in_progress:
        if not return_stale(session, candidate):
            raise TransitionRefused(f"{slug} moved meanwhile; try again")
    else:
        _recheck(session, settings, repo, candidate, by, to_back=to_back)
    followups.on_resumed(session, candidate, by, to_back=to_back)
    return candidate


def _newest_open(session: Session, settings: Settings, slug: str) -> Candidate:
    rows = candidates_of_slug(session, settings.repository_name, slug)
    if not rows:
        raise NotFound(f"no candidate for slug {slug!r}")
    open_ones = [c for c in rows if Status(c.status) in ACTIVE]
    if not open_ones:
        newest = rows[-1]
        raise TransitionRefused(
            f"{slug} has nothing to resume: its newest candidate ({newest.sha[:12]}) is "
            f"{newest.status}; submit the branch again to start over"
        )
    return open_ones[-1]


def _not_blocked(candidate: Candidate) -> str:
    what = f"{candidate.slug} ({candidate.sha[:12]}) is {candidate.status}, not blocked"
    if candidate.status == Status.queued:
        return f"{what}: it already waits its turn at position {candidate.position}"
    if candidate.status == Status.waiting:
        unmet = "; ".join(explain_unmet(list(candidate.unmet or []))) or "a re-check"
        return f"{what}: it is not READY yet ({unmet})"
    return f"{what}: nothing to resume"


def _may_send_back(
    session: Session, settings: Settings, candidate: Candidate, *, operator: bool
) -> None:
    """An in_progress handout goes back to the queue only when its holder is gone, and
    only by an operator's hand (the next holder returns it by itself)."""
    state = lease.status(session, settings)
    if state.held and state.epoch == candidate.epoch:
        raise TransitionRefused(
            f"{candidate.slug} ({candidate.sha[:12]}) is being integrated by {state.holder} "
            f"(epoch {state.epoch}); wait for its outcome. If that worker is dead, an operator "
            "ends its lease now (`integrator lease release --force --reason …`) and then runs "
            f"`integrator resume {candidate.slug}` or `integrator queue close {candidate.slug} "
            "--reason …`"
        )
    if not operator:
        raise TransitionRefused(
            f"{candidate.slug} ({candidate.sha[:12]}) was handed to epoch {candidate.epoch}, "
            "which has ended; the next holder returns it to the queue by itself, or an "
            f"operator runs `integrator resume {candidate.slug}` now"
        )


def _to_back(session: Session, candidate: Candidate, by: str) -> None:
    """Give the turn up: the candidate draws the next position; recorded."""
    old = candidate.position
    candidate.position = next_position(session, candidate.repository)
    session.flush()
    record_system_event(
        session,
        type="candidate_moved_to_back",
        repository=candidate.repository,
        fields={
            **candidate_fields(candidate),
            "from_position": old,
            "to_position": candidate.position,
        },
        slug=candidate.slug,
        branch=candidate.branch,
        sha=candidate.sha,
        actor=by,
    )


def _recheck(
    session: Session,
    settings: Settings,
    repo: CanonicalRepo,
    candidate: Candidate,
    by: str,
    *,
    to_back: bool,
) -> None:
    repo.refresh()
    readiness = check(session, repo, candidate)
    record(candidate, readiness)
    turn = (
        f"at the back (position {candidate.position})"
        if to_back
        else f"in its turn (position {candidate.position})"
    )
    if readiness.ready:
        transition(session, candidate, Status.queued, reason=f"resumed by {by} {turn}", actor=by)
    elif readiness.unmet == (Condition.not_on_main,):
        complete(session, settings, candidate, readiness.main_sha, by, "already on main")
    else:
        transition(session, candidate, Status.waiting,
                   reason=f"resumed by {by}; not READY yet", actor=by)  # fmt: skip
