"""Registrations of silent epochs, resolved against the canonical ref.

An epoch is *silent* once it can do nothing more under the lease: a later epoch was granted
(a takeover, an operator's force-release), or its grant expired or was released — an expired
grant cannot be renewed and the next grant is a new epoch. What such an epoch registered and
got authorized may or may not have reached the ref; only the ref can tell:

- its `new` is a commit on the ref's first-parent history that it explains (its attempt is
  the commit's `Integrator-Attempt` trailer) → `landed`, and its candidate, still in
  progress for that epoch, is recorded integrated once — never merged again;
- otherwise, once a later epoch exists → `failed`, and its candidate goes back to the queue
  with its position. While the silent epoch is still the current one its push could still
  be on its way (the hook authorized it; git has not moved the ref yet), so it is left.

Two callers, one rule: the new holder before it dequeues (`processing.take_next`, inside
its fenced transaction), and every service replica's main watcher, so that main and the
queue are right before a new holder comes. Each item is claimed by one conditional
statement — the registration's UPDATE … WHERE status = <seen>, the candidate's SELECT …
WHERE status = 'in_progress' AND epoch = <its epoch> FOR UPDATE — so two resolvers racing
for it cannot both move it. The watcher also locks the lease row first: a holder's fenced
report (FOR SHARE) and the watcher's resolution of that epoch then never interleave.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from integrator import lease, on_main, speculation
from integrator.admission import CanonicalRepo, supersede_if_replaced
from integrator.errors import (
    Detail,
    InvalidInput,
    NotOnMain,
    RepositoryUnreadable,
    TransitionRefused,
)
from integrator.models import Candidate, Lease, Registration
from integrator.outcomes import complete
from integrator.queue import Status, return_stale
from integrator.registrations import (
    REGISTRATIONS,
    UNRESOLVED,
    decide_reconciled,
    get,
    move,
    record,
)
from integrator.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reconciled:
    landed: tuple[int, ...] = ()
    failed: tuple[int, ...] = ()
    #: Candidates recorded as integrated from a registration that landed.
    integrated: tuple[int, ...] = ()
    #: Candidates of failed registrations put back in the queue with their position.
    requeued: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.landed or self.failed or self.integrated or self.requeued)


# ---- pure rules ---------------------------------------------------------------------------


def last_silent_epoch(state: lease.LeaseState) -> int:
    """The newest epoch that can do nothing more: the current one once its grant expired or
    was released, else the one before it."""
    return state.epoch if not state.held else state.epoch - 1


def decide(registration: Registration, explained: set[str], state: lease.LeaseState) -> str | None:
    """What a silent epoch's unresolved registration becomes: landed when its commit on the
    ref is explained by it; failed once a later epoch exists; None (left) while its own
    epoch is still the current one, whose authorized push may not have reached the ref yet."""
    after = decide_reconciled(registration, explained)
    if after == "failed" and registration.epoch >= state.epoch:
        return None
    return after


# ---- reading the ref ------------------------------------------------------------------------


def _explained(repo: CanonicalRepo, ref: str, registered: set[tuple[str, str]]) -> set[str]:
    """Commits of `ref` in the canonical repository that these `(new, attempt)` explain.
    Raises GitError when the repository cannot be read (unknown is not "absent")."""
    if repo.mirror is None:
        raise RepositoryUnreadable(
            "no canonical repository is configured (INTEGRATOR_REPO): the service cannot "
            f"read {ref} to tell whether a registered update landed"
        )
    git = repo.mirror.git()
    tip = git.rev_parse(ref)
    return set(on_main.explained_commits(git, tip, registered)) if tip else set()


def confirm_landed(
    session: Session,
    repo: CanonicalRepo,
    candidate: Candidate,
    epoch: int,
    registration_id: int,
    *,
    main_sha: str | None,
    attempt: str | None,
    by: str,
) -> Registration:
    """The registration behind an `integrated` outcome: this candidate's and epoch's, and
    landed — or authorized (or in_doubt: a rollback came while its push was on its way) with
    its commit on the canonical ref, then landed here."""
    registration = get(session, registration_id)
    if (registration.candidate_id, registration.epoch) != (candidate.id, epoch):
        raise TransitionRefused(
            f"registration {registration_id} belongs to candidate {registration.candidate_id} "
            f"(epoch {registration.epoch}), not to candidate {candidate.id} of epoch {epoch}"
        )
    for name, sent, kept in (("main_sha", main_sha, registration.new),
                             ("attempt", attempt, registration.attempt)):  # fmt: skip
        if sent is not None and sent != kept:
            message = f"{name} {sent} is not the registration's ({kept})"
            raise InvalidInput(message, details=[Detail(name, "registration", message)])
    if registration.status == "landed":
        return registration
    if registration.status not in UNRESOLVED:
        raise TransitionRefused(
            f"registration {registration_id} is {registration.status}: its update never "
            "reached the ref; report blocked, or register again and push"
        )
    pair = {(registration.new, registration.attempt)}
    if registration.new not in _explained(repo, registration.ref, pair):
        raise NotOnMain(
            f"registration {registration_id} was authorized but {registration.new[:12]} is not "
            f"on {registration.ref} as the service reads it; confirm the push landed "
            "(`git ls-remote`), else fail the registration and register again"
        )
    c = REGISTRATIONS.c
    for row in move(session, c.id == registration.id, c.status.in_(UNRESOLVED), status="landed"):
        record(session, "landed", row, by, ref=row.ref, new=row.new, by_report=False)
    session.refresh(registration)
    return registration


# ---- resolving ---------------------------------------------------------------------------


def return_to_queue(session: Session, candidate: Candidate) -> bool:
    """in_progress of an ended epoch → queued, keeping its position (never lost), or
    superseded when a newer finalize_ready replaced it meanwhile. Its build still under test,
    if any, is discarded: the lease it was checked under ended."""
    ended = candidate.epoch
    if not return_stale(session, candidate):
        return False
    if ended is not None:
        speculation.discard_left_by(session, candidate, ended)
    supersede_if_replaced(session, candidate)
    return True


def resolve(
    session: Session, settings: Settings, repo: CanonicalRepo, state: lease.LeaseState, by: str
) -> Reconciled:
    """Resolve the registrations of silent epochs against the canonical ref (see the module
    docstring), in the caller's transaction; `state` is the lease row as the caller locked
    it. Raises GitError when the repository cannot be read."""
    silent = last_silent_epoch(state)
    name = settings.repository_name
    unresolved = list(session.scalars(
        select(Registration)
        .where(Registration.repository == name, Registration.epoch <= silent,
               Registration.status.in_(UNRESOLVED))
        .order_by(Registration.id)
    ))  # fmt: skip
    landed = list(session.scalars(
        select(Registration)
        .join(Candidate, Candidate.id == Registration.candidate_id)
        .where(Registration.repository == name, Registration.epoch <= silent,
               Registration.status == "landed", Candidate.status == Status.in_progress.value,
               Candidate.epoch == Registration.epoch)
        .order_by(Registration.id)
    ))  # fmt: skip
    refs = sorted({r.ref for r in unresolved})
    explained = {
        ref: _explained(repo, ref, {(r.new, r.attempt) for r in unresolved if r.ref == ref})
        for ref in refs
    }
    c = REGISTRATIONS.c
    moved: dict[str, list[Registration]] = {"landed": [], "failed": []}
    for registration in unresolved:
        after = decide(registration, explained[registration.ref], state)
        if after is None:
            continue
        rows = move(session, c.id == registration.id, c.status == registration.status,
                    status=after)  # fmt: skip
        if not rows:  # another resolver, or the push report, moved it first
            continue
        record(session, after, rows[0], by, reconciled=True, previous=registration.status,
               by_epoch=state.epoch)  # fmt: skip
        session.refresh(registration)
        moved[after].append(registration)
    integrated = []
    for registration in [*landed, *moved["landed"]]:
        candidate = _handout(session, registration)
        if candidate is not None:
            complete(session, settings, candidate, registration.new, by,
                     f"reconciled: registration {registration.id} of epoch "
                     f"{registration.epoch} landed")  # fmt: skip
            integrated.append(candidate.id)
    requeued = []
    for registration in moved["failed"]:  # after the completions: a landed twin wins
        candidate = _handout(session, registration)
        if candidate is not None and return_to_queue(session, candidate):
            requeued.append(candidate.id)
    return Reconciled(
        tuple(r.id for r in moved["landed"]),
        tuple(r.id for r in moved["failed"]),
        tuple(integrated),
        tuple(requeued),
    )


def resolve_silent(
    session: Session, settings: Settings, repo: CanonicalRepo, by: str
) -> Reconciled:
    """A service replica's turn (the main watcher), in the caller's transaction: lock the
    lease row, then `resolve`. Raises GitError when the repository cannot be read."""
    locked = select(Lease.key).where(Lease.key == settings.lease_key).with_for_update()
    session.execute(locked)
    return resolve(session, settings, repo, lease.status(session, settings), by)


def _handout(session: Session, registration: Registration) -> Candidate | None:
    """The registration's candidate if it is still in progress for the registration's
    epoch, locked for this transaction: one conditional statement per item, so a concurrent
    resolver that committed first leaves nothing here."""
    statement = (
        select(Candidate)
        .where(
            Candidate.id == registration.candidate_id,
            Candidate.status == Status.in_progress.value,
            Candidate.epoch == registration.epoch,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.scalars(statement).first()
