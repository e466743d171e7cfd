"""From events to candidates: supersession, readiness against real git, admission.

Runs in the same transaction as the event that triggered it, so that an
accepted event and what it changes are committed together. Conditions 4 and 6
are read from the canonical repository (a direct path, or a local mirror
fetched first), never from an event's word.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from integrator import followups
from integrator.gitops import GitError
from integrator.mirror import Mirror
from integrator.models import Candidate, Event
from integrator.queue import ACTIVE, Status, create, enqueue, transition
from integrator.readiness import GIT_CONDITIONS, Facts, Readiness, evaluate
from integrator.settings import Settings

log = logging.getLogger(__name__)

#: States whose readiness is re-evaluated when facts change.
EVALUATED = (Status.waiting, Status.queued)
#: States a newer finalize_ready supersedes at once (in_progress waits for its outcome).
SUPERSEDABLE = (Status.waiting, Status.queued, Status.predicted, Status.blocked)


@dataclass(frozen=True)
class RepoFacts:
    on_branch: bool | None
    on_main: bool | None
    main_sha: str | None


class CanonicalRepo:
    """Reads reachability from the canonical repository (readiness conditions 4 and 6)."""

    def __init__(self, settings: Settings) -> None:
        self.main_ref = settings.protected_refs[0]
        self.mirror = (
            Mirror(settings.repo, Path(settings.mirror_dir), timeout=60) if settings.repo else None
        )

    def refresh(self) -> None:
        if self.mirror is not None:
            try:
                self.mirror.refresh()
            except GitError as exc:
                log.warning("canonical repository fetch failed: %s", exc)

    def main_sha(self) -> str | None:
        if self.mirror is None:
            return None
        try:
            return self.mirror.git().rev_parse(self.main_ref)
        except GitError:
            return None

    def branch_head(self, branch: str) -> str | None:
        if self.mirror is None:
            return None
        try:
            return self.mirror.git().branch_head(branch)
        except GitError:
            return None

    def facts(self, branch: str, sha: str) -> RepoFacts:
        if self.mirror is None:
            return RepoFacts(None, None, None)
        try:
            git = self.mirror.git()
            branch_ref = f"refs/heads/{branch}"
            main_sha = git.heads(self.main_ref).get(self.main_ref)
            containing = git.refs_containing(sha, self.main_ref, branch_ref)
            if containing is None:  # the commit is not in the canonical repository
                return RepoFacts(False, False, main_sha)
            return RepoFacts(branch_ref in containing, self.main_ref in containing, main_sha)
        except GitError as exc:
            log.warning("cannot read the canonical repository: %s", exc)
            return RepoFacts(None, None, None)


def _approved(session: Session, candidate: Candidate) -> bool:
    return bool(
        session.scalar(
            select(exists().where(Event.type == "review_approved", Event.slug == candidate.slug))
        )
    )


def _pushed(session: Session, candidate: Candidate) -> bool:
    return bool(
        session.scalar(
            select(
                exists().where(
                    Event.type == "branch_pushed",
                    Event.repository == candidate.repository,
                    Event.branch == candidate.branch,
                    Event.sha == candidate.sha,
                )
            )
        )
    )


def _superseded(session: Session, candidate: Candidate) -> bool:
    newer = exists().where(
        Candidate.repository == candidate.repository,
        Candidate.slug == candidate.slug,
        Candidate.finalize_seq > candidate.finalize_seq,
    )
    return candidate.status == Status.superseded or bool(session.scalar(select(newer)))


def check(session: Session, repo: CanonicalRepo, candidate: Candidate) -> Readiness:
    """Gather the facts of one candidate and decide."""
    git_facts = repo.facts(candidate.branch, candidate.sha)
    facts = Facts(
        approved=_approved(session, candidate),
        finalized=True,  # a candidate exists only because its finalize_ready does
        pushed=_pushed(session, candidate),
        on_branch=git_facts.on_branch,
        superseded=_superseded(session, candidate),
        on_main=git_facts.on_main,
        main_sha=git_facts.main_sha,
    )
    return evaluate(facts)


def record(candidate: Candidate, readiness: Readiness) -> None:
    """Keep what a check found: the conditions not known to hold, and the main it read
    (an unreadable repository leaves the last main seen)."""
    candidate.unmet = [c.value for c in readiness.pending]
    if readiness.main_sha is not None:
        candidate.main_sha_checked = readiness.main_sha


def reevaluate(session: Session, repo: CanonicalRepo, candidate: Candidate) -> Readiness:
    """Record a fresh readiness result and move waiting ↔ queued accordingly; a result git
    could not decide moves nothing (the watcher re-evaluates waiting candidates)."""
    readiness = check(session, repo, candidate)
    record(candidate, readiness)
    status = Status(candidate.status)
    if readiness.ready and status is Status.waiting:
        enqueue(session, candidate, reason="ready")
    elif readiness.unmet and status is Status.queued:
        transition(session, candidate, Status.waiting, reason="readiness lost")
    return readiness


def on_finalize_ready(
    session: Session, repo: CanonicalRepo, event: Event, actor: str | None = None
) -> Candidate:
    """Create the candidate of a finalize_ready, supersede older ones, evaluate.

    The successor takes the smallest position of its slug's open chain — an in_progress
    original's too, so that a fix never costs its author their turn — and the lane of the
    newest one. Admissions of one slug
    are serialized (`lock_slug`); when a later finalize_ready of the slug was admitted first,
    this one is born superseded by it.
    """
    fields = event.fields
    lock_slug(session, event.repository, fields["slug"])
    candidate = session.scalar(
        select(Candidate).where(
            Candidate.repository == event.repository,
            Candidate.slug == fields["slug"],
            Candidate.branch == fields["branch"],
            Candidate.sha == fields["sha"],
        )
    )
    if candidate is not None:
        return candidate
    candidate = Candidate(
        repository=event.repository,
        slug=fields["slug"],
        branch=fields["branch"],
        sha=fields["sha"],
        status=Status.waiting.value,
        finalize_seq=event.seq,
        unmet=[],
    )
    session.add(candidate)
    session.flush()
    chain = _open_chain(session, candidate)
    inherited = [c.position for c in chain if c.position is not None]
    candidate.position = min(inherited) if inherited else None
    if chain:  # the slug keeps its lane (a promoted fix's next commit stays in the hotfix lane)
        candidate.lane = chain[-1].lane
    create(session, candidate, reason="finalize_ready", actor=actor)
    newer = [c for c in chain if c.finalize_seq > candidate.finalize_seq]
    if newer:
        supersede(session, candidate, max(newer, key=lambda c: c.finalize_seq), actor=actor)
        return candidate
    for previous in chain:
        if Status(previous.status) in SUPERSEDABLE:
            supersede(session, previous, candidate, actor=actor)
    reevaluate(session, repo, candidate)
    return candidate


def lock_slug(session: Session, repository: str, slug: str) -> None:
    """Serialize the admissions of one slug until the transaction ends, so that two
    finalize_ready arriving together cannot each miss the other. PostgreSQL: a
    transaction-scoped advisory lock on the slug's hash; SQLite: every writer already holds
    the database's write lock."""
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"{repository}\0{slug}".encode()).digest()
    session.execute(select(func.pg_advisory_xact_lock(int.from_bytes(digest[:8], signed=True))))


def _open_chain(session: Session, candidate: Candidate) -> list[Candidate]:
    """The slug's other candidates that are not finished, oldest finalize first."""
    statement = select(Candidate).where(
        Candidate.repository == candidate.repository,
        Candidate.slug == candidate.slug,
        Candidate.id != candidate.id,
        Candidate.status.in_([s.value for s in ACTIVE]),
    )
    return list(session.scalars(statement.order_by(Candidate.finalize_seq)))


def supersede(
    session: Session, previous: Candidate, successor: Candidate, actor: str | None = None
) -> None:
    """Mark `previous` superseded, pointing at its successor (kept for audit); the
    successor takes its position when that comes first."""
    previous.superseded_by = successor.id
    if previous.position is not None and (
        successor.position is None or previous.position < successor.position
    ):
        successor.position = previous.position
    transition(
        session,
        previous,
        Status.superseded,
        reason=f"superseded by candidate {successor.id} ({successor.sha[:12]})",
        actor=actor,
    )
    followups.move_to_successor(session, previous, successor, actor)


def supersede_if_replaced(session: Session, candidate: Candidate) -> None:
    """A candidate that was in_progress when a newer finalize_ready arrived is superseded
    once it has an outcome or is returned to the queue."""
    if Status(candidate.status) not in SUPERSEDABLE:
        return
    successor = session.scalar(
        select(Candidate)
        .where(
            Candidate.repository == candidate.repository,
            Candidate.slug == candidate.slug,
            Candidate.finalize_seq > candidate.finalize_seq,
        )
        .order_by(Candidate.finalize_seq.desc())
        .limit(1)
    )
    if successor is not None:
        supersede(session, candidate, successor)


def on_event(session: Session, repo: CanonicalRepo, event: Event, actor: str | None) -> None:
    """Re-evaluate what a newly stored canonical event can change."""
    if event.type == "finalize_ready":
        on_finalize_ready(session, repo, event, actor)
        return
    if event.type == "review_approved":
        affected = select(Candidate).where(
            Candidate.repository == event.repository, Candidate.slug == event.slug
        )
    elif event.type == "branch_pushed":
        affected = select(Candidate).where(
            Candidate.repository == event.repository, Candidate.branch == event.branch
        )
    else:
        return
    statuses = [s.value for s in EVALUATED]
    for candidate in session.scalars(affected.where(Candidate.status.in_(statuses))):
        reevaluate(session, repo, candidate)


def reevaluate_waiting_on_git(session: Session, repo: CanonicalRepo, repository: str) -> int:
    """Re-check the waiting candidates that wait on the repository (a git condition unmet,
    or unknown because git could not be read): a branch may have moved without a report,
    or git is readable again. Returns how many became queued."""
    statement = select(Candidate).where(
        Candidate.repository == repository, Candidate.status == Status.waiting.value
    )
    waiting = [c for c in session.scalars(statement) if GIT_CONDITIONS & set(c.unmet or ())]
    return sum(1 for c in waiting if reevaluate(session, repo, c).ready)


def reevaluate_all(session: Session, repo: CanonicalRepo, repository: str) -> int:
    """On demand: re-check every waiting and queued candidate; returns how many."""
    statement = select(Candidate).where(
        Candidate.repository == repository,
        Candidate.status.in_([s.value for s in EVALUATED]),
    )
    candidates = list(session.scalars(statement))
    for candidate in candidates:
        reevaluate(session, repo, candidate)
    return len(candidates)
