"""Fenced queue processing: only the current lease holder takes work and reports outcomes.

Each operation is one transaction that first locks the lease row through
`lease.fence` and checks epoch, token and expiry; a holder that lost its lease
changes nothing. A candidate left `in_progress` by an epoch that is no longer
current goes back to `queued` with its position, so it is never lost; one handout
takes at most one outcome. No failure to record an outcome strands a candidate: an
unexpected one sets the handout aside (`blocked`, with the reason) in a transaction of its
own, so that it is not handed out again and again; an operator can close it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from integrator import (
    controls,
    followups,
    lease,
    modes,
    on_main,
    reconcile,
    registrations,
    speculation,
)
from integrator.admission import CanonicalRepo, check, record, supersede_if_replaced
from integrator.errors import IntegratorError, NotOnMain, RepositoryUnreadable, TransitionRefused
from integrator.gitops import GitError
from integrator.models import Candidate, Registration
from integrator.outcomes import (
    Outcome,
    Report,
    block,
    check_mode,
    complete,
    predict,
    record_flaky,
    require_green,
    required,
)
from integrator.queue import (
    Status,
    claim,
    get_candidate,
    handed_to,
    newest_open,
    next_queued,
    return_stale,
    stale_in_progress,
)
from integrator.queue import transition as move
from integrator.readiness import Condition
from integrator.settings import Settings

log = logging.getLogger(__name__)


class OutcomeNotRecorded(IntegratorError):
    """The service failed to record the outcome; the candidate was set aside as blocked."""

    code = "outcome_not_recorded"


@dataclass(frozen=True)
class Handout:
    """A candidate now `in_progress` for the caller's epoch, and the mode to work in."""

    candidate: Candidate
    mode: modes.Mode
    main_sha: str | None
    requeued: tuple[int, ...] = ()
    #: An operator's timeouts for this candidate's checks, by check name (seconds).
    check_timeouts: dict[str, float] = field(default_factory=dict)


def requeue_stale(session: Session, settings: Settings, epoch: int) -> list[int]:
    """Whatever an ended epoch left in_progress goes back to the queue (`return_to_queue`)."""
    stale = stale_in_progress(session, settings.repository_name, epoch)
    return [candidate.id for candidate in stale if reconcile.return_to_queue(session, candidate)]


def take_next(
    session: Session, settings: Settings, repo: CanonicalRepo, *, epoch: int, token: str, by: str,
    window: int = 1, holding: Collection[int] = (),
) -> Handout | None:  # fmt: skip
    """Hand the smallest-position READY candidate to the holder of `epoch`, or None.

    First, earlier epochs' registrations are resolved against the canonical ref (landed:
    the candidate is recorded integrated once; not landed: failed, and the candidate goes
    back to the head of the queue). When the ref cannot be read, or the queue is paused,
    nothing is handed out.

    The holder may hold up to `window` handouts at once (a speculation window; 1 = one at a
    time) and names those it knows of in `holding`: a handout of this epoch it does not name
    (an answer lost on the way) is handed out again first; with `window` handouts held, none
    more."""
    fenced = lease.fence(session, settings, epoch, token)
    registrations.expire_due(session, settings)
    try:
        resolved = reconcile.resolve(session, settings, repo, fenced, by)
    except GitError as exc:
        log.warning("cannot resolve earlier registrations against git: %s; retrying later", exc)
        return None
    if resolved:
        log.info("earlier registrations resolved: %s", resolved)
    requeued = (*resolved.requeued, *requeue_stale(session, settings, epoch))
    mode = modes.current(session).mode
    current = handed_to(session, settings.repository_name, epoch)
    for held in current:
        if held.id not in holding:  # a retry whose first answer was lost: the same handout
            return Handout(held, mode, held.main_sha_checked, requeued,
                           controls.check_timeouts(session, held))  # fmt: skip
    if len(current) >= window:
        return None
    controls.end_if_expired(session, settings)
    if controls.pause_in_force(session, settings) is not None:
        return None  # paused: the holder keeps its lease and idles
    while (candidate := next_queued(session, settings.repository_name)) is not None:
        readiness = check(session, repo, candidate)
        if readiness.undecided:  # git cannot tell now: hand nothing out, move nothing
            log.warning("cannot re-check candidate %s against git; retrying later", candidate.id)
            return None
        record(candidate, readiness)
        if readiness.ready:
            if claim(session, candidate, epoch):
                return Handout(candidate, mode, readiness.main_sha, requeued,
                               controls.check_timeouts(session, candidate))  # fmt: skip
            continue
        if readiness.unmet == (Condition.not_on_main,):
            complete(session, settings, candidate, readiness.main_sha, by, "already on main")
        else:
            move(session, candidate, Status.waiting, reason="readiness re-check failed")
    return None


#: The largest speculation window a holder may declare (handouts held at once).
MAX_WINDOW = 32


def report(
    session: Session,
    settings: Settings,
    repo: CanonicalRepo,
    *,
    epoch: int,
    token: str,
    candidate_id: int,
    outcome: Report,
    by: str,
) -> Candidate:
    """Record the outcome of a candidate handed to `epoch`; at most one per handout. A green
    outcome without every required check passed is refused (`ChecksIncomplete`): the handout
    stays with the holder, which gives it back (`requeue`)."""
    lease.fence(session, settings, epoch, token)
    candidate = _handout(session, candidate_id, epoch)
    if candidate is None:
        current = get_candidate(session, candidate_id)
        raise TransitionRefused(
            f"candidate {current.id} is {current.status} (epoch {current.epoch}); "
            f"only the in_progress handout of epoch {epoch} takes an outcome"
        )
    # Held: a cutover (or rollback) committing meanwhile would not see this outcome's effect.
    mode = modes.current(session, hold=True).mode
    check_mode(outcome.outcome, mode, registered=outcome.registration_id is not None)
    require_green(outcome, settings.required_check_names)
    kind = outcome.outcome
    if kind is Outcome.requeue:
        why = outcome.reason or "returned by the holder"
        speculation.discard_left_by(session, candidate, epoch, f"given back to the queue: {why}")
        move(session, candidate, Status.queued, reason=why)
    elif kind is Outcome.integrated:
        landed = _landed(session, repo, candidate, epoch, outcome, by)
        complete(session, settings, candidate, landed.new, by,
                 f"epoch {epoch}, registration {landed.id}", outcome.checks)  # fmt: skip
    elif kind is Outcome.already_integrated:
        found = _found_on_main(session, repo, candidate)
        complete(session, settings, candidate, found.commit, by,
                 f"already on main ({found.matched_by})")  # fmt: skip
    elif kind is Outcome.blocked:
        block(session, settings, candidate, outcome, by)
    else:
        predict(session, settings, candidate, outcome, epoch, by)
    record_flaky(session, settings, candidate, outcome, by=by)
    supersede_if_replaced(session, candidate)
    return candidate


def report_or_set_aside(
    session: Session,
    settings: Settings,
    repo: CanonicalRepo,
    *,
    epoch: int,
    token: str,
    candidate_id: int,
    outcome: Report,
    by: str,
) -> Candidate:
    """`report` in a transaction; when it fails unexpectedly, the handout is set aside in
    a transaction of its own and `OutcomeNotRecorded` says so. `session` must be idle."""
    try:
        with session.begin():
            return report(session, settings, repo, epoch=epoch, token=token,
                          candidate_id=candidate_id, outcome=outcome, by=by)  # fmt: skip
    except IntegratorError:
        raise  # an answer about the request (refused, invalid, lease lost): nothing to undo
    except Exception as exc:
        log.exception("recording %s for candidate %s failed", outcome.outcome, candidate_id)
        failure = f"{outcome.outcome.value} ({type(exc).__name__})"
    with session.begin():
        aside = set_aside(session, settings, epoch=epoch, token=token,
                          candidate_id=candidate_id, failure=failure, by=by)  # fmt: skip
    what = f"candidate {candidate_id}" if aside is None else f"{aside.slug} ({aside.sha[:12]})"
    raise OutcomeNotRecorded(
        f"the service failed to record {failure} for {what}; the candidate is set aside as "
        "blocked and will not be handed out again: the service log has the details"
    )


def set_aside(
    session: Session,
    settings: Settings,
    *,
    epoch: int,
    token: str,
    candidate_id: int,
    failure: str,
    by: str,
) -> Candidate | None:
    """The handout whose outcome could not be recorded becomes `blocked` with the reason;
    None when it is no longer this epoch's handout."""
    lease.fence(session, settings, epoch, token)
    candidate = _handout(session, candidate_id, epoch)
    if candidate is None:
        return None
    reason = (
        f"the service could not record the worker's {failure}; see the service log, then "
        f"close it (`integrator queue close {candidate.slug} --reason …`) or push a new "
        "commit and submit the branch again"
    )
    move(session, candidate, Status.blocked, reason=reason, actor=by)
    action = (
        f"an operator reads the service log for {failure}; once its cause is fixed, run "
        f"`integrator resume {candidate.slug}` (or close it: `integrator queue close "
        f"{candidate.slug} --reason …`)"
    )
    followups.on_blocked(session, settings, candidate, {"attempt": None,
        "conflict_evidence": [], "diagnostics": [reason], "next_action": action,
        "blocked_at": datetime.now(UTC).isoformat()}, by)  # fmt: skip
    supersede_if_replaced(session, candidate)
    return candidate


def close(session: Session, settings: Settings, slug: str, *, reason: str, by: str) -> Candidate:
    """An operator closes the slug's newest open candidate. One left in_progress by a holder
    that is gone (its epoch ended or its lease expired) first goes back to the queue, as the
    next grant would return it; the live holder's handout is not taken from under it."""
    candidate = newest_open(session, settings.repository_name, slug)
    if candidate.status == Status.in_progress:
        state = lease.status(session, settings)
        if state.held and state.epoch == candidate.epoch:
            raise TransitionRefused(
                f"candidate {candidate.id} ({slug}) is being worked on by {state.holder} "
                f"(epoch {state.epoch}); wait for its outcome, or end that lease first "
                "(`integrator lease release --force --reason …`) and close it then"
            )
        ended = candidate.epoch
        if not return_stale(session, candidate):
            raise TransitionRefused(f"candidate {candidate.id} moved meanwhile; try again")
        if ended is not None:
            speculation.discard_left_by(session, candidate, ended)
    move(session, candidate, Status.closed, reason=reason, actor=by)
    followups.on_candidate_closed(session, settings, candidate, by, reason)
    return candidate


def _handout(session: Session, candidate_id: int, epoch: int) -> Candidate | None:
    candidate = get_candidate(session, candidate_id)
    if candidate.status != Status.in_progress or candidate.epoch != epoch:
        return None
    return candidate


def _landed(
    session: Session, repo: CanonicalRepo, candidate: Candidate, epoch: int, outcome: Report,
    by: str,
) -> Registration:  # fmt: skip
    registration_id = required(outcome.registration_id, "registration_id")
    try:
        return reconcile.confirm_landed(
            session, repo, candidate, epoch, registration_id,
            main_sha=outcome.main_sha, attempt=outcome.attempt, by=by,
        )  # fmt: skip
    except GitError as exc:
        log.warning("cannot verify registration %s on main: %s", registration_id, exc)
        raise RepositoryUnreadable(
            "the canonical repository cannot be read now, so the service cannot confirm "
            f"registration {registration_id} landed; it stays with you: report again later"
        ) from None


def register(
    session: Session,
    settings: Settings,
    *,
    epoch: int,
    token: str,
    candidate_id: int,
    ref: str,
    old: str,
    new: str,
    attempt: str,
    checks: list[dict[str, Any]],
    by: str,
) -> registrations.Issued:
    """A fenced registration of one update of the holder's in_progress candidate.

    Its checks are held to the same rule as a green outcome, before the push rather than
    after it: a commit whose checks do not show every required check passed never lands.
    """
    fenced = lease.fence(session, settings, epoch, token)
    require_green(Report(Outcome.integrated, checks=checks), settings.required_check_names)
    registrations.expire_due(session, settings)
    return registrations.create(session, settings, fenced, candidate_id=candidate_id, ref=ref,
                                old=old, new=new, attempt=attempt, by=by)  # fmt: skip


def fail_registration(
    session: Session, settings: Settings, *, epoch: int, token: str, registration_id: int,
    reason: str, by: str,
) -> Registration:  # fmt: skip
    """The holder says its registered push was refused or did not land."""
    fenced = lease.fence(session, settings, epoch, token)
    return registrations.fail(session, settings, fenced, registration_id, reason=reason, by=by)


def _found_on_main(session: Session, repo: CanonicalRepo, candidate: Candidate) -> on_main.OnMain:
    try:
        found = on_main.find(session, repo, candidate)
    except GitError as exc:
        log.warning("cannot verify candidate %s on main: %s", candidate.id, exc)
        raise RepositoryUnreadable(
            "the canonical repository cannot be read now, so the service cannot confirm "
            f"candidate {candidate.id} is on main; it stays with you: report again later"
        ) from None
    if found is None:
        raise NotOnMain(
            f"candidate {candidate.id} ({candidate.sha[:12]}) is not on main as the service "
            "reads it: its sha is not reachable from main, no commit of main has its patch "
            "and no registration explains one; report what merging it found instead"
        )
    return found
