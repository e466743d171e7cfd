"""The worker's own clone of the canonical repository.

The worker never works in the canonical repository: it keeps a clone under its workspace,
reused across restarts (a killed worker leaves it as it was; `prepare` puts it back in
order). Per candidate: fetch, a fresh integration branch at `origin/main`'s sha, and a merge
of the candidate's *recorded* sha — never whatever its branch points at now.

The clone's local configuration switches off what would make the integration depend on the
machine rather than the repository: a global `rerere` could silently resolve a conflict, a
global hooks path could run code, commit signing could prompt.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import shutil
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO

from integrator.gitops import Git, GitError, safe_rev
from integrator.merge_conflicts import Conflict

log = logging.getLogger(__name__)

ORIGIN = "origin"
INTEGRATION_BRANCH = "integrator/integration"
#: `git merge-tree --write-tree` (a merge without a worktree) exists since git 2.38.
MERGE_TREE_SINCE = (2, 38)


class MergeMethod(StrEnum):
    """How the worker combines a candidate with main."""

    #: A merge commit (`--no-ff`) whose first parent is main: the candidate's sha reaches main.
    merge = "merge"
    #: One new commit with the candidate's changes; matched later by patch-id.
    squash = "squash"


@dataclass(frozen=True)
class Merged:
    """A merge attempt; `empty` when merging would leave main's tree as it is."""

    ok: bool
    #: Every conflicting path (what git said about it, when it says: git >= 2.38).
    conflicts: tuple[Conflict, ...]
    output: str
    empty: bool = False
    #: The integration commit, when one was made.
    sha: str | None = None


@dataclass(frozen=True)
class Fetched:
    """Main as the worker's fetch saw it: the base of every merge until the next fetch."""

    main: str
    tree: str


@dataclass(frozen=True)
class CheckSlot:
    """A worktree of the clone where one speculative commit's checks run, beside the others."""

    path: Path
    #: Where a running check's output goes.
    log: Path
    git: WorkspaceGit

    def checkout(self, commit: str) -> None:
        self.git.checkout_detached(commit)


class WorkspaceBusy(RuntimeError):
    """Another worker process is using this workspace."""


class WorkspaceGit(Git):
    """The adapter plus the verbs only the worker needs."""

    def resolve(self, *revs: str) -> list[str | None]:
        """Object names of several revisions in one process (None for a missing one)."""
        out = self._run(
            "cat-file",
            "--batch-check=%(objectname)",
            input="".join(f"{safe_rev(rev)}\n" for rev in revs),
        ).stdout.splitlines()
        return [None if line.endswith(" missing") else line for line in out]

    def commit_tree(self, tree: str, parents: list[str], message: str) -> str:
        """A commit of `tree` with `parents` (first parent first) and `message`."""
        flags = [arg for parent in parents for arg in ("-p", safe_rev(parent))]
        return self._run("commit-tree", safe_rev(tree), *flags, input=message).stdout.strip()

    def version(self) -> tuple[int, ...]:
        """git's version as numbers, e.g. (2, 39, 5)."""
        words = self._run("version").stdout.split()
        numbers = words[2].split(".") if len(words) > 2 else []
        return tuple(int(n) for n in itertools.takewhile(str.isdigit, numbers))

    def abort_merge(self) -> None:
        """Drop a merge left half-way (exits non-zero when there is none: that is fine)."""
        self._run("merge", "--abort", check=False)

    def add_worktree(self, path: Path) -> None:
        """A detached worktree at `path` (checked out later, per commit), dropping any stale one."""
        self._run("worktree", "prune")
        self._run("worktree", "add", "--quiet", "--force", "--detach", "--no-checkout", str(path))

    def checkout_detached(self, commit: str) -> None:
        """HEAD, index and tree at `commit`, untracked and ignored files removed."""
        self._run("checkout", "--quiet", "--force", "--detach", safe_rev(commit), "--")
        self._run("clean", "-ffdxq")

    def fetch_object(self, remote: str, sha: str) -> bool:
        """Fetch one commit by name (a force-pushed branch no longer advertises it)."""
        proc = self._run("fetch", "--quiet", "--no-tags", "--", remote, sha, check=False)
        return proc.returncode == 0 and self.commit_exists(sha)


class Workspace:
    """A clone of `repo_url` under `root`, locked to one worker process at a time."""

    def __init__(
        self, repo_url: str, root: Path, main_branch: str = "main", timeout: float = 600.0
    ) -> None:
        self.repo_url = repo_url
        self.root = Path(root).resolve()
        self.clone_path = self.root / "clone"
        self.main_branch = main_branch
        self.timeout = timeout
        self._lock_file: IO[str] | None = None
        self._dirty = True
        self._merge_tree = False
        self.git = WorkspaceGit(self.clone_path, timeout)

    @property
    def origin_main(self) -> str:
        return f"refs/remotes/{ORIGIN}/{self.main_branch}"

    @property
    def check_log(self) -> Path:
        return self.root / "check.log"

    def prepare(self, identity: str) -> None:
        """Lock the workspace, clone if needed, and put a reused clone back in order."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock()
        if not (self.clone_path / ".git").is_dir():
            shutil.rmtree(self.clone_path, ignore_errors=True)  # a clone killed half-way
            Git.clone(self.repo_url, self.clone_path, timeout=self.timeout)
        git = self.git
        git.config_set(f"remote.{ORIGIN}.url", self.repo_url)
        hooks = self.root / "no-hooks"
        hooks.mkdir(exist_ok=True)
        for key, value in (
            ("user.name", identity),
            ("user.email", f"{identity.replace(' ', '-')}@integrator.invalid"),
            ("commit.gpgSign", "false"),
            ("rerere.enabled", "false"),
            ("core.hooksPath", str(hooks)),
        ):
            git.config_set(key, value)
        # A worker killed mid-merge leaves MERGE_HEAD and a dirty tree; start clean.
        git.abort_merge()
        git.reset_hard("HEAD")
        self._dirty = True
        self._merge_tree = git.version() >= MERGE_TREE_SINCE

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor drops the flock
            self._lock_file = None

    def _lock(self) -> None:
        if self._lock_file is not None:
            return
        handle = (self.root / ".lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise WorkspaceBusy(
                f"workspace {self.root} is in use by another worker; give each its own --workspace"
            ) from None
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock_file = handle

    def fetch(self, sha: str) -> Fetched | None:
        """Fetch main and every branch; make sure `sha` is here. None when main is missing."""
        self.git.fetch(ORIGIN, [f"+refs/heads/*:refs/remotes/{ORIGIN}/*"])
        main, tree, found = self.git.resolve(
            f"{self.origin_main}^{{commit}}", f"{self.origin_main}^{{tree}}", f"{sha}^{{commit}}"
        )
        if found is None and not self.git.fetch_object(ORIGIN, sha):
            raise GitError(["git", "fetch", ORIGIN, sha], None, "", "", "commit not found")
        if main is None or tree is None:
            return None
        return Fetched(main, tree)

    def on_main(self, sha: str, main_sha: str) -> bool:
        return self.git.is_ancestor(sha, main_sha)

    def merge(
        self, base: Fetched, sha: str, message: str, method: MergeMethod, worktree: bool
    ) -> Merged:
        """Merge `sha` onto main's sha `base` as a new commit (never on a branch of origin).

        With git ≥ 2.38 the merge is computed without touching the worktree (`merge-tree
        --write-tree`, the same merge-ort as `git merge`) and committed with `commit-tree`;
        the worktree is checked out only when a check needs it (`worktree`). A merge that
        leaves main's tree unchanged means the candidate's content is on main already.
        """
        if not self._merge_tree:
            return self._merge_in_worktree(base, sha, message, method)
        tree, conflicts = self.git.merge_tree_conflicts(base.main, sha)
        if conflicts:
            return Merged(ok=False, conflicts=conflicts, output="")
        if tree == base.tree:
            return Merged(ok=True, conflicts=(), output="", empty=True)
        parents = [base.main, sha] if method is MergeMethod.merge else [base.main]
        commit = self.git.commit_tree(tree, parents, message)
        if worktree:
            self._checkout(commit)
        return Merged(ok=True, conflicts=(), output="", sha=commit)

    def _checkout(self, commit: str) -> None:
        self.git.checkout_new_branch(INTEGRATION_BRANCH, commit)
        if self._dirty:
            self.git.clean()
            self._dirty = False

    def _merge_in_worktree(
        self, base: Fetched, sha: str, message: str, method: MergeMethod
    ) -> Merged:
        """The path for git < 2.38: a fresh integration branch at `base`, `sha` merged in."""
        self._checkout(base.main)
        try:
            if method is MergeMethod.merge:
                result = self.git.merge_no_ff(sha, message)
            else:
                result = self.git.merge_squash(sha, message)
        except GitError as exc:
            # A squash that changes nothing: the candidate's content is on main already
            # (a human squash-merged it). The adapter has reset the tree; say so.
            if "nothing to commit" in exc.stdout + exc.stderr and self.git.head() == base.main:
                return Merged(ok=True, conflicts=(), output=exc.stdout, empty=True)
            raise
        if not result.ok:
            found = tuple(Conflict(path) for path in result.conflicts)
            return Merged(ok=False, conflicts=found, output=result.output)
        self._dirty = True
        head, tree = self.git.resolve("HEAD^{commit}", "HEAD^{tree}")
        if tree == base.tree:
            return Merged(ok=True, conflicts=(), output=result.output, empty=True)
        return Merged(ok=True, conflicts=(), output=result.output, sha=head)

    def check_slots(self, count: int) -> list[CheckSlot]:
        """`count` worktrees of the clone, one per check that runs at once (speculation); the
        ones an earlier run left are replaced."""
        root = self.root / "slots"
        shutil.rmtree(root, ignore_errors=True)
        slots = []
        for number in range(count):
            path = root / str(number)
            self.git.add_worktree(path)
            log_file = self.root / f"check-{number}.log"
            slots.append(CheckSlot(path, log_file, WorkspaceGit(path, self.timeout)))
        return slots

    def tree_of(self, commit: str) -> Fetched:
        """`commit` as a base to merge onto (a speculative commit, or main)."""
        (tree,) = self.git.resolve(f"{commit}^{{tree}}")
        if tree is None:
            raise GitError(["git", "cat-file", commit], None, "", "", "commit not found")
        return Fetched(commit, tree)

    def reset_to(self, commit: str) -> None:
        """Back to `commit` with a clean tree for a rerun of the check; the rerun dirties it
        again, so the next merge cleans too."""
        self._dirty = True
        self._checkout(commit)
        self._dirty = True

    def mark_dirty(self) -> None:
        """A check ran in the tree: clean untracked files before the next merge."""
        self._dirty = True
