"""Scoring shadow predictions against what really landed on main (DESIGN §7).

A shadow outcome is a prediction, not an integration: the candidate stays `predicted` until
its content reaches `main` by a human push. The service sees that itself by reading the
canonical `main` (post-receive only speeds it up), and records how the prediction fared — the
parity evidence `integrator evidence` reports.

A predicted candidate counts as landed when

- its sha is reachable from main (a merge or a fast-forward): `matched_by = "reachability"`;
- or, for squash and rebase merges (whose shas never reach main), the same change is on main's
  first-parent history since the prediction, compared by `git patch-id --stable`: the
  candidate's whole diff against its merge base equals one commit's (a squash), or each of the
  candidate's commits equals one of them (a rebase): `matched_by = "patch_id"`.

Git is read outside any database transaction (on SQLite a write transaction holds the one
write lock); the write that follows re-reads the candidate under a row lock, so two replicas
scoring at once record each prediction once (a `prediction_scored` event keyed by candidate).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from integrator.admission import CanonicalRepo
from integrator.db import READ_ONLY
from integrator.events import record_system_event
from integrator.gitops import Git, GitError
from integrator.models import Candidate, Event
from integrator.queue import Status, transition
from integrator.settings import Settings

log = logging.getLogger(__name__)

PREDICTIONS = ("would_integrate", "would_block")
LANDED_REASON = "landed on main by a push during shadow"
#: First-parent commits of main examined when the prediction's base is unknown or rewritten.
WINDOW = 500
#: Commits of one candidate compared one by one for a rebase merge.
MAX_REBASED_COMMITS = 100


@dataclass(frozen=True)
class Landing:
    """A predicted candidate whose content was found on main."""

    candidate_id: int
    slug: str
    sha: str
    predicted: str
    main_sha: str
    matched_by: str

    @property
    def agreed(self) -> bool:
        return self.predicted == "would_integrate"


@dataclass(frozen=True)
class Prediction:
    candidate: Candidate
    outcome: str
    base: str | None


@lru_cache(maxsize=20_000)
def _commit_patch_id(repo_path: str, sha: str) -> str | None:
    """A commit's patch-id never changes, so main's commits are diffed once per process."""
    return Git(Path(repo_path)).patch_id(sha)


def predictions(session: Session, repository: str) -> list[Prediction]:
    """Every `predicted` candidate with its last prediction event (outcome and base)."""
    rows = list(
        session.scalars(
            select(Candidate)
            .where(Candidate.repository == repository, Candidate.status == Status.predicted.value)
            .order_by(Candidate.position, Candidate.id)
        )
    )
    found = []
    for candidate in rows:
        event = session.scalar(
            select(Event)
            .where(
                Event.type.in_(PREDICTIONS),
                Event.natural_key == f"prediction:{candidate.id}",
            )
            .order_by(Event.seq.desc())
            .limit(1)
        )
        outcome = event.type if event else "would_integrate"
        base = event.fields.get("main_sha") if event else None
        found.append(Prediction(candidate, outcome, base))
    return found


class _Main:
    """Main's first-parent commits and their patch-ids, read once per scoring run."""

    def __init__(self, git: Git, main_sha: str) -> None:
        self.git = git
        self.sha = main_sha
        self._since: dict[str | None, dict[str, str]] = {}

    def patch_ids_since(self, base: str | None) -> dict[str, str]:
        """patch-id → commit for main's first-parent commits after `base`."""
        if base not in self._since:
            if base and self.git.commit_exists(base) and self.git.is_ancestor(base, self.sha):
                commits = self.git.first_parent_log(f"{base}..{self.sha}")
            else:
                commits = self.git.first_parent_log(self.sha, limit=WINDOW)
            table: dict[str, str] = {}
            for commit in reversed(commits):  # the oldest commit that matches wins
                pid = _commit_patch_id(str(self.git.path), commit)
                if pid is not None:
                    table.setdefault(pid, commit)
            self._since[base] = table
        return self._since[base]


def _match(main: _Main, prediction: Prediction) -> tuple[str, str] | None:
    """(matched_by, main commit) when the candidate's content is on main."""
    git, sha = main.git, prediction.candidate.sha
    if not git.commit_exists(sha):
        return None
    if git.is_ancestor(sha, main.sha):
        return "reachability", main.sha
    table = main.patch_ids_since(prediction.base)
    if not table:
        return None
    whole = git.patch_id(f"{main.sha}...{sha}")  # the diff against the merge base
    if whole is not None and whole in table:
        return "patch_id", table[whole]
    commits = git.first_parent_log(f"{main.sha}..{sha}", limit=MAX_REBASED_COMMITS + 1)
    if 1 < len(commits) <= MAX_REBASED_COMMITS:
        matched = [table.get(_commit_patch_id(str(git.path), c) or "") for c in commits]
        if all(matched):
            return "patch_id", str(matched[0])  # the newest candidate commit's twin
    return None


def find_landed(session: Session, settings: Settings, repo: CanonicalRepo) -> list[Landing]:
    """Read main and the predictions; no writes. The caller has refreshed the mirror."""
    pending = predictions(session, settings.repository_name)
    main_sha = repo.main_sha() if pending else None
    if not pending or main_sha is None or repo.mirror is None:
        return []
    main = _Main(repo.mirror.git(), main_sha)
    landed = []
    for prediction in pending:
        try:
            match = _match(main, prediction)
        except GitError as exc:
            log.warning("cannot score candidate %s: %s", prediction.candidate.id, exc)
            continue
        if match is not None:
            matched_by, commit = match
            candidate = prediction.candidate
            landed.append(
                Landing(
                    candidate_id=candidate.id,
                    slug=candidate.slug,
                    sha=candidate.sha,
                    predicted=prediction.outcome,
                    main_sha=commit,
                    matched_by=matched_by,
                )
            )
    return landed


def record(session: Session, settings: Settings, landed: list[Landing], by: str) -> list[Landing]:
    """Record each landing once: `prediction_scored`, and the candidate `integrated`."""
    recorded = []
    for landing in landed:
        candidate = session.get(
            Candidate, landing.candidate_id, with_for_update=True, populate_existing=True
        )
        if candidate is None or candidate.status != Status.predicted.value:
            continue  # scored by a concurrent run, superseded or closed meanwhile
        record_system_event(
            session,
            type="prediction_scored",
            repository=settings.repository_name,
            fields={**asdict(landing), "actual": "integrated", "agreed": landing.agreed},
            natural_key=f"scored:{landing.candidate_id}",
            slug=candidate.slug,
            branch=candidate.branch,
            sha=candidate.sha,
            actor=by,
        )
        transition(session, candidate, Status.integrated, reason=LANDED_REASON, actor=by)
        recorded.append(landing)
    return recorded


def score_predictions(
    session: Session, settings: Settings, repo: CanonicalRepo, by: str
) -> list[Landing]:
    """Find what landed (a read-only transaction), then record it (a short write one).

    `session` must not be in a transaction; the caller refreshes the mirror first.
    """
    with session.begin():
        session.connection(execution_options={READ_ONLY: True})
        landed = find_landed(session, settings, repo)
    if not landed:
        return []
    with session.begin():
        return record(session, settings, landed, by)
