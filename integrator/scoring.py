"""Scoring shadow predictions against what really landed on main.

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

Landing is not the whole verdict: a `would_block` that named conflicting files was right when
people could land it only by resolving those files by hand. So the merge git itself makes of
the candidate into main as main stood just before the landing (for a merge commit: of its two
parents) is recomputed; when it conflicts on every file the prediction named, the block was
right (`blocked_then_resolved`), otherwise the prediction and main disagree.

Git is read outside any database transaction (on SQLite a write transaction holds the one
write lock); the write that follows re-reads the candidate under a row lock, so two replicas
scoring at once record each prediction once (a `prediction_scored` event keyed by candidate).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

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
#: Predicted candidates whose content has not been seen on main (yet).
UNSCORED = "unscored"


class Category(StrEnum):
    """How a prediction fared against what landed."""

    #: would_integrate, and it landed.
    agreed = "agreed"
    #: would_block on conflicts, and it landed only through a resolution of those files.
    blocked_then_resolved = "blocked_then_resolved"
    #: would_block, and it landed without resolving what the prediction named.
    disagreed = "disagreed"


def categorize(predicted: str, named: Sequence[str], conflicts: Sequence[str]) -> Category:
    """A block was right when every file it named conflicts in git's own merge of the landing:
    whoever landed it had to resolve them. A block for a failing check names no file: git
    cannot tell whether the landing fixed it, so it stays a disagreement."""
    if predicted != "would_block":
        return Category.agreed
    if named and set(named) <= set(conflicts):
        return Category.blocked_then_resolved
    return Category.disagreed


class _Recorded(Protocol):
    fields: dict[str, Any]


def category_of(scored: dict[str, Any]) -> str:
    """The category a `prediction_scored` records (records made before categories: `agreed`)."""
    recorded = scored.get("category")
    if isinstance(recorded, str):
        return recorded
    return Category.agreed.value if scored.get("agreed") else Category.disagreed.value


def tally(predicted: Iterable[_Recorded], scored: Iterable[_Recorded]) -> dict[str, int]:
    """Scored predictions per category, and the predicted candidates never scored."""
    counts = {category.value: 0 for category in Category}
    landed = set()
    for event in scored:
        counts[category_of(event.fields)] += 1
        landed.add(event.fields.get("candidate_id"))
    counts[UNSCORED] = len({event.fields.get("candidate_id") for event in predicted} - landed)
    return counts


@dataclass(frozen=True)
class Landing:
    """A predicted candidate whose content was found on main."""

    candidate_id: int
    slug: str
    sha: str
    predicted: str
    #: The commit of main by which the content is there.
    main_sha: str
    matched_by: str
    category: str
    #: Files git's own merge of the landing conflicts on (looked at for a would_block only).
    conflicts: tuple[str, ...] = ()

    @property
    def agreed(self) -> bool:
        return self.category != Category.disagreed


@dataclass(frozen=True)
class Prediction:
    candidate: Candidate
    outcome: str
    base: str | None
    #: The files a would_block named as conflicting.
    named: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Match:
    matched_by: str
    #: The main commit by which the whole content is on main.
    main_sha: str
    #: The first main commit that carries any of it (its first parent is main before).
    first: str


class _MainGit(Git):
    """The adapter and git's merge without a worktree, plus the walk scoring needs."""

    def landed_by(self, sha: str, main: str) -> str:
        """The first-parent commit of `main` that brought `sha` in (`sha` for a fast-forward)."""
        if sha == main:
            return sha
        descendants = self._run(
            "rev-list", "--first-parent", "--ancestry-path", f"{sha}..{main}"
        ).stdout.split()
        oldest = descendants[-1]
        return sha if self.parents(oldest)[:1] == [sha] else oldest

    def conflicts(self, ours: str, theirs: str) -> tuple[str, ...]:
        """Files git's merge of `theirs` into `ours` conflicts on. The merge's objects go to a
        scratch directory: the repository may be the canonical one itself, read in place."""
        objects = self._run(
            "rev-parse", "--path-format=absolute", "--git-path", "objects"
        ).stdout.strip()
        with tempfile.TemporaryDirectory(prefix="integrator-scoring-") as scratch:
            scratch_env = {
                **self.env,
                "GIT_OBJECT_DIRECTORY": scratch,
                "GIT_ALTERNATE_OBJECT_DIRECTORIES": objects,
            }
            return Git(self.path, self.timeout, scratch_env).merge_tree(ours, theirs)[1]


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
        recorded = session.scalars(
            select(Event)
            .where(Event.type.in_(PREDICTIONS), Event.slug == candidate.slug)
            .order_by(Event.seq.desc())
        )
        event = next((e for e in recorded if e.fields.get("candidate_id") == candidate.id), None)
        if event is None:
            found.append(Prediction(candidate, "would_integrate", None))
            continue
        named = tuple(
            str(item["path"])
            for item in event.fields.get("conflict_evidence") or []
            if item.get("kind") == "conflict" and item.get("path")
        )
        found.append(Prediction(candidate, event.type, event.fields.get("main_sha"), named))
    return found


class _Main:
    """Main's first-parent commits and their patch-ids, read once per scoring run."""

    def __init__(self, git: Git, main_sha: str) -> None:
        self.git = _MainGit(git.path, git.timeout, git.env)
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


def _match(main: _Main, prediction: Prediction) -> _Match | None:
    """Where on main the candidate's content is, if it is."""
    git, sha = main.git, prediction.candidate.sha
    if not git.commit_exists(sha):
        return None
    if git.is_ancestor(sha, main.sha):
        landed = git.landed_by(sha, main.sha)
        return _Match("reachability", landed, landed)
    table = main.patch_ids_since(prediction.base)
    if not table:
        return None
    whole = git.patch_id(f"{main.sha}...{sha}")  # the diff against the merge base
    if whole is not None and whole in table:
        return _Match("patch_id", table[whole], table[whole])
    commits = git.first_parent_log(f"{main.sha}..{sha}", limit=MAX_REBASED_COMMITS + 1)
    if 1 < len(commits) <= MAX_REBASED_COMMITS:
        matched = [table.get(_commit_patch_id(str(git.path), c) or "") for c in commits]
        if all(matched):  # the newest candidate commit's twin, and the oldest one's
            return _Match("patch_id", str(matched[0]), str(matched[-1]))
    return None


def match_on_main(git: Git, main_sha: str, candidate: Candidate) -> tuple[str, str] | None:
    """(matched_by, main commit) when the candidate's content is on main: the one rule for
    "this content landed" (reachability, patch-id), shared with the outcome check."""
    found = _match(_Main(git, main_sha), Prediction(candidate, "", None))
    return (found.matched_by, found.main_sha) if found is not None else None


def _judge(main: _Main, prediction: Prediction, match: _Match) -> Landing:
    """The landing and its category; git's merge is recomputed only for a would_block."""
    conflicts: tuple[str, ...] = ()
    if prediction.outcome == "would_block" and prediction.named:
        before = main.git.parents(match.first)[:1]
        if before:
            conflicts = main.git.conflicts(before[0], prediction.candidate.sha)
    candidate = prediction.candidate
    return Landing(
        candidate_id=candidate.id,
        slug=candidate.slug,
        sha=candidate.sha,
        predicted=prediction.outcome,
        main_sha=match.main_sha,
        matched_by=match.matched_by,
        category=categorize(prediction.outcome, prediction.named, conflicts).value,
        conflicts=conflicts,
    )


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
            if match is not None:
                landed.append(_judge(main, prediction, match))
        except GitError as exc:  # unknown is not a verdict: the next round tries again
            log.warning("cannot score candidate %s: %s", prediction.candidate.id, exc)
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
