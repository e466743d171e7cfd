"""Is a candidate's content on main? Only what the canonical repository proves counts.

A worker's `already_integrated` is a claim; the service records it only when it finds the
content on main itself:

- the candidate's sha is reachable from main, or a commit of main carries the same patch
  (`git patch-id --stable`: squash and rebase merges), matched as landed predictions are;
- or a commit on main's first-parent history is explained by a registration of this
  candidate: the registration's attempt is the commit's `Integrator-Attempt` trailer and
  its `new` is that commit. A trailer on its own explains nothing: anyone can write one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from integrator import scoring
from integrator.admission import CanonicalRepo
from integrator.gitops import Git
from integrator.models import Candidate, Registration

#: How far back on main's first-parent history a registration can explain a commit.
TRAILER_WINDOW = 1000


@dataclass(frozen=True)
class OnMain:
    """Where the content was found: `reachability`, `patch_id` or `registration`."""

    matched_by: str
    commit: str


def find(session: Session, repo: CanonicalRepo, candidate: Candidate) -> OnMain | None:
    """The proof that `candidate` is on the canonical main, or None. Raises GitError when
    the repository cannot be read (unknown is not "absent")."""
    if repo.mirror is None:
        return None
    git = repo.mirror.git()
    main = git.rev_parse(repo.main_ref)
    if main is None:
        return None
    landed = scoring.match_on_main(git, main, candidate)
    if landed is not None:
        return OnMain(*landed)
    explained = _registered_commit(session, git, main, candidate)
    return OnMain("registration", explained) if explained else None


def _registered_commit(session: Session, git: Git, main: str, candidate: Candidate) -> str | None:
    registered = set(
        session.execute(
            select(Registration.new, Registration.attempt).where(
                Registration.candidate_id == candidate.id
            )
        ).tuples()
    )
    explained = explained_commits(git, main, registered)
    return explained[0] if explained else None


def explained_commits(git: Git, main: str, registered: set[tuple[str, str]]) -> list[str]:
    """Commits of `main`'s first-parent history (newest first) that a registration explains:
    its `(new, attempt)` is the commit and its `Integrator-Attempt` trailer. A trailer alone,
    or a registered `new` without its attempt, explains nothing."""
    if not registered:  # shadow never registers: no git call
        return []
    # One registration whose commit is main's tip (the worker's outcome arriving before
    # post-receive's report): a commit stands once in the first-parent history, so the tip
    # alone decides — one commit read instead of the whole window.
    window = 1 if {new for new, _ in registered} == {main} else TRAILER_WINDOW
    history = git.first_parent_trailer(main, "Integrator-Attempt", window)
    return [commit for commit, attempt in history if (commit, attempt) in registered]
