"""The audit's facts, read once: main's first-parent history from the canonical repository
(one git process), and what the database recorded about main (a few one-pass queries,
never a query per commit). The rules are in `integrator.audit`.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from integrator import audit, modes
from integrator.admission import CanonicalRepo
from integrator.audit import Commit, Landing, ModeChange, Records, Verdict
from integrator.audit_report import Report, Since, within
from integrator.errors import Detail, NotFound, RepositoryUnreadable
from integrator.gitops import Git, GitError, is_zero_sha
from integrator.guard import indexed_branch
from integrator.models import Candidate, Event, Registration
from integrator.settings import Settings

#: Every verdict on an update of a protected ref (the first one says when watching began).
VERDICT_TYPES = ("push_allowed", "push_would_reject", "push_rejected")
_FIELD, _RECORD = "\x1f", "\x00"
_FORMAT = "%H%x1f%P%x1f%an <%ae>%x1f%cI%x1f%(trailers:only,unfold,separator=%x1e)%x1f%s"


class HistoryGit(Git):
    """The verbs the audit needs on top of the shared adapter, each one bounded git call."""

    def first_parent_commits(self, rev: str) -> list[Commit]:
        """Every commit of `rev`'s first-parent history, newest first, in one process."""
        out = self._run("log", "--first-parent", "-z", f"--format={_FORMAT}", rev).stdout
        return [_commit(record) for record in out.split(_RECORD) if record.strip()]

    def first_parents_after(self, rev: str, head: str) -> set[str]:
        """The first-parent commits of `head` that `rev` does not contain."""
        out = self._run("rev-list", "--first-parent", head, f"^{rev}").stdout
        return set(out.split())

    def merge_base(self, one: str, other: str) -> str | None:
        """Their best common ancestor; None when they share none or one is unknown here."""
        proc = self._run("merge-base", one, other, check=False)
        return proc.stdout.strip() or None if proc.returncode == 0 else None


def _commit(record: str) -> Commit:
    sha, parents, author, when, trailers, subject = record.split(_FIELD, 5)
    pairs = [line.partition(":") for line in trailers.split("\x1e") if line] if trailers else []
    return Commit(
        sha=sha.strip(),
        parents=tuple(parents.split()),
        subject=subject,
        author=author,
        committed_at=datetime.fromisoformat(when),
        attempts=tuple(v.strip() for k, _, v in pairs if k.strip() == "Integrator-Attempt"),
        trailered=any(k.strip().startswith(audit.TRAILER_PREFIX) for k, _, _ in pairs),
    )


def read(
    session: Session, settings: Settings, repo: CanonicalRepo, since: Since | None = None
) -> Report:
    """The audit of the canonical main (fetched first when it is a mirror)."""
    if repo.mirror is None:
        raise RepositoryUnreadable(
            "no canonical repository is configured (INTEGRATOR_REPO): the audit reads main there"
        )
    repo.refresh()
    mirror = repo.mirror.git()
    git = HistoryGit(mirror.path, mirror.timeout)
    with _collector_paused():
        try:
            head = git.rev_parse(repo.main_ref)
            chain = git.first_parent_commits(head) if head else []
            shas = _after(git, since, head) if since and since.rev else None
            records = _records(session, settings, repo.main_ref, git, chain)
        except GitError as exc:
            raise RepositoryUnreadable(f"cannot read {repo.main_ref} of the canonical "
                                       f"repository: {exc}") from exc  # fmt: skip
        audited = audit.explain(chain, records)
    shown = within(audited, shas=shas, since=since.time if since else None)
    return Report(settings.repository_name, head, since.text if since else None, shown)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cycle collection while a long history is read: it builds tens of thousands of
    acyclic objects, and each collection they trigger walks the whole service's heap (it
    nearly doubled the audit's time on 10,000 commits). Cycles made meanwhile wait for the
    next collection; nothing is lost."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _after(git: HistoryGit, since: Since, head: str | None) -> set[str]:
    assert since.rev is not None
    found = git.rev_parse(since.rev)
    if found is None:
        message = f"{since.rev} names no commit of the canonical repository"
        raise NotFound(message, details=[Detail("since", "known_revision", message)])
    return git.first_parents_after(found, head) if head else set()


def _records(
    session: Session, settings: Settings, main_ref: str, git: HistoryGit, chain: Sequence[Commit]
) -> Records:
    name = settings.repository_name
    on_chain = {c.sha for c in chain}
    first: tuple[datetime, str | None] | None = None
    verdicts = []
    statement = (
        select(Event.seq, Event.recorded_at, Event.fields)
        .where(Event.type.in_(VERDICT_TYPES), Event.branch == indexed_branch(main_ref),
               Event.repository == name)
        .order_by(Event.seq)
    )  # fmt: skip
    for seq, at, fields in session.execute(statement):
        if fields.get("resolved_ref") != main_ref:
            continue
        old, new = str(fields.get("old")), str(fields.get("new"))
        if first is None:
            first = (at, None if is_zero_sha(old) else old)
        if fields.get("allowed") and not is_zero_sha(new) and new in on_chain:
            verdicts.append(_verdict(seq, at, fields, _base(git, old, new, on_chain)))
    landings = _landings(session, name, main_ref)
    registered = session.execute(
        select(Registration.created_at, Registration.old)
        .where(Registration.repository == name, Registration.ref == main_ref)
        .order_by(Registration.id)
        .limit(1)
    ).first()
    if registered is not None and (first is None or registered[0] < first[0]):
        first = (registered[0], registered[1])
    changes = [
        (at, fields)
        for at, fields in session.execute(
            select(Event.recorded_at, Event.fields)
            .where(Event.type == "mode_changed")
            .order_by(Event.seq)
        )
    ]
    initial = modes.Mode(changes[0][1]["from"]) if changes else modes.current(session).mode
    if changes and first is None:  # no push reached the hook yet: since an operator ran it
        first = (changes[0][0], None)
    return Records(
        verdicts=verdicts,
        landings=landings,
        mode_changes=[ModeChange(at, modes.Mode(f["to"])) for at, f in changes],
        initial_mode=initial,
        guard_since=first[0] if first else None,
        guard_first_old=first[1] if first else None,
    )


def _base(git: HistoryGit, old: str, new: str, on_chain: set[str]) -> str | None:
    """Where an update's commits stop: `old` when main had it on the chain, else (a forced
    update) the merge base; a creation brought everything. An `old` git no longer has
    leaves only `new` itself explained."""
    if is_zero_sha(old):
        return None
    if old in on_chain:
        return old
    found = git.merge_base(old, new)
    if found is not None or git.commit_exists(old):
        return found  # None: unrelated histories, the update brought all of new's
    parents = git.parents(new)
    return parents[0] if parents else None


def _verdict(seq: int, at: datetime, fields: dict[str, Any], base: str | None) -> Verdict:
    return Verdict(
        seq=seq,
        at=at,
        old=str(fields["old"]),
        new=str(fields["new"]),
        base=base,
        mode=modes.Mode(fields.get("mode", modes.DEFAULT_MODE.value)),
        would_reject=bool(fields.get("would_reject")),
        reason_code=str(fields.get("reason_code")),
        pusher=fields.get("pusher"),
        identity_source=fields.get("identity_source"),
        decided_locally=bool(fields.get("decided_locally")),
        bypass=bool(fields.get("bypass")),
    )


def _landings(session: Session, name: str, main_ref: str) -> list[Landing]:
    """Registrations of main the guard let through, with their candidate, its submitter (the
    finalize_ready's actor), approver (the last review_approved before registering) and, for
    a fast-tracked one, who promoted it and why (the last candidate_promoted before)."""
    finalize = aliased(Event)
    landed = (Registration.repository == name, Registration.ref == main_ref,
              Registration.status.in_(audit.LANDING_STATES))  # fmt: skip
    r = Registration
    rows = session.execute(
        select(r.id, r.status, r.old, r.new, r.attempt, r.epoch, r.created_at, r.candidate_id,
               Candidate.slug, Candidate.branch, finalize.actor, Candidate.lane)
        .outerjoin(Candidate, Candidate.id == r.candidate_id)
        .outerjoin(finalize, finalize.seq == Candidate.finalize_seq)
        .where(*landed)
    ).all()  # fmt: skip
    slugs = select(Candidate.slug).join(r, r.candidate_id == Candidate.id).where(*landed)
    approvals: dict[str, list[tuple[datetime, str | None, Any]]] = {}
    promotions: dict[str, list[tuple[datetime, str | None, Any]]] = {}
    for type_, slug, actor, at, fields in session.execute(
        select(Event.type, Event.slug, Event.actor, Event.recorded_at, Event.fields)
        .where(Event.type.in_(("review_approved", "candidate_promoted")),
               Event.repository == name, Event.slug.in_(slugs))
        .order_by(Event.seq)
    ):  # fmt: skip
        seen = approvals if type_ == "review_approved" else promotions
        seen.setdefault(slug or "", []).append((at, actor, fields))
    found = []
    for (
        id_,
        status,
        old,
        new,
        attempt,
        epoch,
        created,
        candidate,
        slug,
        branch,
        by,
        lane,
    ) in rows:
        approved = _last_before(approvals.get(slug or "", []), created)
        promoted = _last_before(promotions.get(slug or "", []), created)
        fast = lane == "hotfix" and promoted is not None
        found.append(Landing(id_, status, old, new, attempt, epoch, created, candidate, slug,
                             branch, submitted_by=by,
                             approved_by=approved[1] if approved else None,
                             lane=lane or "normal",
                             promoted_by=promoted[1] if fast and promoted else None,
                             promotion_reason=(promoted[2] or {}).get("reason")
                             if fast and promoted else None))  # fmt: skip
    return found


def _last_before(
    seen: list[tuple[datetime, str | None, Any]], at: datetime
) -> tuple[datetime, str | None, Any] | None:
    """The last record made before `at`, else the last one (a clock that stepped back)."""
    before = [record for record in seen if record[0] <= at]
    return before[-1] if before else seen[-1] if seen else None
