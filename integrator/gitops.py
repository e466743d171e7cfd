"""Thin adapter over the ``git`` command line: one verb per method, one place that runs git.

Every call goes through :meth:`Git._run`, which bounds it with a timeout (the whole process
group is killed on expiry), logs the exact command at DEBUG (never environment values), and
gives git a scrubbed environment: a service started from a hook or a traced shell must not
inherit another repository's ``GIT_DIR``, a quarantine, injected configuration, or a
``GIT_TRACE`` that would write the worker's push nonce to a log.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from integrator.merge_conflicts import Conflict, conflicts_of

log = logging.getLogger(__name__)

SHA_RE = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
ZERO_SHA_RE = re.compile(r"0{40}(?:0{24})?")
#: SHA_RE anchored, for schemas that take a pattern string.
SHA_PATTERN = f"^(?:{SHA_RE.pattern})$"

#: Inherited variables that would point git at another repository, inject configuration or
#: trace the command (and with it a push option) somewhere we do not control.
_SCRUBBED = frozenset(
    {"GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_INDEX_FILE", "GIT_QUARANTINE_PATH"}
    | {"GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES"}
    | {"GIT_CONFIG_COUNT", "GIT_CONFIG_PARAMETERS", "GIT_CURL_VERBOSE"}
)
#: INTEGRATOR_* too: git runs hooks, credential helpers and filters that need no token of ours.
_SCRUBBED_PREFIXES = ("GIT_TRACE", "GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_", "INTEGRATOR_")
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def is_zero_sha(value: str) -> bool:
    """True for git's all-zero object name: the old side of a creation, the new of a deletion."""
    return ZERO_SHA_RE.fullmatch(value) is not None


def _render(argv: Sequence[str]) -> str:
    """The command as a shell line, with any ``user:password@`` in a URL masked."""
    return _URL_CREDENTIALS.sub("***@", shlex.join(argv))


def _git_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _SCRUBBED and not key.startswith(_SCRUBBED_PREFIXES)
    }
    env.update(extra)
    env["GIT_TERMINAL_PROMPT"] = "0"  # a missing credential fails instead of hanging
    env["LC_ALL"] = "C"  # messages we match on are not translated
    return env


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def safe_rev(value: str) -> str:
    """Refuse a revision that git would read as an option (names come from events)."""
    if not value or value.startswith("-"):
        raise ValueError(f"not a revision: {value!r}")
    return value


class GitError(Exception):
    """A git command failed; the message is the exact command and the tail of its stderr."""

    def __init__(
        self,
        args_: Sequence[str],
        returncode: int | None,
        stdout: str,
        stderr: str,
        why: str | None = None,
    ) -> None:
        self.args_ = tuple(args_)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        super().__init__(f"{_render(self.args_)}: {why or f'exit {returncode}'}: {tail}")


class GitTimeout(GitError):
    """A git command ran past its timeout; it was killed with what it started."""


@dataclass(frozen=True)
class MergeResult:
    """Outcome of a merge attempt; on a conflict the worktree has already been restored."""

    ok: bool
    conflicts: tuple[str, ...]
    output: str


@dataclass(frozen=True)
class PushResult:
    """Outcome of a push: a rejection is an answer for the caller to judge, not an error."""

    ok: bool
    stdout: str
    stderr: str


class Git:
    """Verbs on one repository (bare or worktree), each a bounded git call."""

    def __init__(
        self,
        git_dir_or_worktree: Path,
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(git_dir_or_worktree)
        self.timeout = timeout
        self.env: Mapping[str, str] = dict(env or {})

    @classmethod
    def init_bare(
        cls,
        path: Path,
        initial_branch: str = "main",
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> Git:
        """Create a bare repository at ``path`` (parents included) and return a Git on it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        Git(path.parent, timeout, env)._run(
            "init", "--quiet", "--bare", f"--initial-branch={initial_branch}", str(path)
        )
        return cls(path, timeout, env)

    @classmethod
    def clone(
        cls,
        url: str,
        dest: Path,
        bare: bool = False,
        mirror: bool = False,
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> Git:
        """Clone ``url`` into ``dest`` and return a Git on the new repository."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        flags = [flag for flag, wanted in (("--bare", bare), ("--mirror", mirror)) if wanted]
        Git(dest.parent, timeout, env)._run("clone", "--quiet", *flags, "--", url, str(dest))
        return cls(dest, timeout, env)

    def _run(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``git -C <path> *args``; raise GitError on failure (if ``check``), GitTimeout."""
        argv = ["git", "-C", str(self.path), *args]
        limit = self.timeout if timeout is None else timeout
        extra = {**self.env, **(env or {})}
        log.debug("running %s (extra env: %s)", _render(argv), ", ".join(sorted(extra)) or "-")
        # A session of its own, so that on expiry we kill git *and* what it started (editor,
        # ssh, hooks): a grandchild holding our pipes would otherwise keep us waiting.
        with subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_git_env(extra),
            encoding="utf-8",
            errors="surrogateescape",
            start_new_session=True,
        ) as proc:
            try:
                stdout, stderr = proc.communicate(input, timeout=limit)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                stdout, stderr = proc.communicate()
                raise GitTimeout(argv, None, stdout, stderr, f"killed after {limit}s") from None
            except BaseException:
                _kill_group(proc)
                raise
        if check and proc.returncode != 0:
            raise GitError(argv, proc.returncode, stdout, stderr)
        return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)

    def _unless_missing(self, *args: str) -> str | None:
        """Stdout of a query whose exit code 1 means "no such thing" (anything else raises)."""
        proc = self._run(*args, check=False)
        if proc.returncode == 1:
            return None
        if proc.returncode != 0:
            raise GitError(proc.args, proc.returncode, proc.stdout, proc.stderr)
        return proc.stdout.strip()

    # -- reading -------------------------------------------------------------------------------

    def rev_parse(self, rev: str) -> str | None:
        """Full sha of the commit ``rev`` names, or None when there is no such commit."""
        return self._unless_missing(
            "rev-parse", "--verify", "--quiet", f"{safe_rev(rev)}^{{commit}}"
        )

    def git_dir(self) -> Path | None:
        """The absolute git dir git finds from here, or None when it finds no repository."""
        proc = self._run("rev-parse", "--absolute-git-dir", check=False)
        return Path(proc.stdout.strip()) if proc.returncode == 0 else None

    def commit_exists(self, sha: str) -> bool:
        """True when ``sha`` names a commit present here.

        Not ``cat-file -e sha^{commit}``: it exits 128 for a missing object, as for a broken
        repository, so the two could not be told apart.
        """
        return self.rev_parse(sha) is not None

    def branch_head(self, branch: str) -> str | None:
        """Sha of ``refs/heads/<branch>``, or None when the branch does not exist."""
        return self.rev_parse(f"refs/heads/{branch}")

    def head(self) -> str:
        """Sha of HEAD (raises on an unborn branch)."""
        return self._run("rev-parse", "--verify", "HEAD^{commit}").stdout.strip()

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """True when ``descendant`` contains ``ancestor``; an unknown object raises GitError."""
        proc = self._run(
            "merge-base", "--is-ancestor", safe_rev(ancestor), safe_rev(descendant), check=False
        )
        if proc.returncode not in (0, 1):
            raise GitError(proc.args, proc.returncode, proc.stdout, proc.stderr)
        return proc.returncode == 0

    def symbolic_ref(self, ref: str) -> str | None:
        """The ref ``ref`` points at, one level only; None when ``ref`` is not symbolic."""
        return self._unless_missing("symbolic-ref", "--quiet", "--no-recurse", safe_rev(ref))

    def resolve_symbolic(self, ref: str, max_depth: int = 5) -> str:
        """The ref that ``ref`` finally points at (itself when it is not symbolic).

        A push to an alias of ``main`` moves ``main``, so policy matches on this.
        """
        current = ref
        for _ in range(max_depth + 1):
            target = self.symbolic_ref(current)
            if target is None:
                return current
            current = target
        raise GitError(["git", "symbolic-ref", ref], None, "", "", f"over {max_depth} levels")

    def first_parent_log(self, rev: str, limit: int | None = None) -> list[str]:
        """Shas on the first-parent history of ``rev``, newest first."""
        count = [] if limit is None else [f"--max-count={limit}"]
        return self._run("rev-list", "--first-parent", *count, safe_rev(rev)).stdout.split()

    def commit_message(self, sha: str) -> str:
        """The raw message of commit ``sha``."""
        return self._run("show", "--no-patch", "--format=%B", safe_rev(sha)).stdout.rstrip("\n")

    def trailers(self, sha: str) -> dict[str, list[str]]:
        """Trailers of commit ``sha`` as parsed by git, key → values in order."""
        out = self._run(
            "show", "--no-patch", "--format=%(trailers:only,unfold)", safe_rev(sha)
        ).stdout
        found: dict[str, list[str]] = {}
        for line in out.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                found.setdefault(key.strip(), []).append(value.strip())
        return found

    def heads(self, *refs: str) -> dict[str, str]:
        """ref → sha for those of ``refs`` that exist, read in one process."""
        out = self._run("for-each-ref", "--format=%(refname) %(objectname)", *refs).stdout
        found = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
        return {ref: sha for ref, sha in found.items() if ref in refs}

    def refs_containing(self, sha: str, *refs: str) -> set[str] | None:
        """Which of ``refs`` have ``sha`` in their history (one process); None if the commit
        is unknown here."""
        result = self._run(
            "for-each-ref", f"--contains={safe_rev(sha)}", "--format=%(refname)", *refs, check=False
        )
        if result.returncode != 0:
            if not self.commit_exists(sha):
                return None
            raise GitError(("for-each-ref", "--contains", sha), result.returncode,
                           result.stdout, result.stderr)  # fmt: skip
        return set(result.stdout.split()) & set(refs)

    def first_parent_trailer(self, rev: str, key: str, limit: int) -> list[tuple[str, str]]:
        """(commit, value) for every ``key`` trailer on the first-parent history of ``rev``,
        newest first — one git process however long the history."""
        fmt = f"--format=%H%x00%(trailers:key={key},valueonly,unfold,separator=%x00)"
        out = self._run("log", "--first-parent", f"--max-count={limit}", fmt, safe_rev(rev)).stdout
        found: list[tuple[str, str]] = []
        for line in out.splitlines():
            sha, _, values = line.partition("\0")
            found.extend((sha, v.strip()) for v in values.split("\0") if v.strip())
        return found

    def parents(self, sha: str) -> list[str]:
        """Parent shas of commit ``sha``, first parent first."""
        return self._run("show", "--no-patch", "--format=%P", safe_rev(sha)).stdout.split()

    def merge_tree(self, ours: str, theirs: str) -> tuple[str, tuple[str, ...]]:
        """(tree, conflicting paths) of merging `theirs` into `ours`, without a worktree
        (`git merge-tree --write-tree`, git >= 2.38): the worker's merge and scoring's replay."""
        tree, conflicts = self.merge_tree_conflicts(ours, theirs)
        return tree, tuple(conflict.path for conflict in conflicts)

    def merge_tree_conflicts(self, ours: str, theirs: str) -> tuple[str, tuple[Conflict, ...]]:
        """(tree, every conflicting path with what git says about it) of merging `theirs`
        into `ours` without a worktree; no conflict on a clean merge."""
        proc = self._run(
            "merge-tree", "--write-tree", "--name-only", "-z",
            safe_rev(ours), safe_rev(theirs), check=False,
        )  # fmt: skip
        if proc.returncode not in (0, 1):
            raise GitError(proc.args, proc.returncode, proc.stdout, proc.stderr)
        tree, *rest = proc.stdout.split("\0")
        if proc.returncode == 0:
            return tree, ()
        paths = tuple(dict.fromkeys(itertools.takewhile(bool, rest)))
        return tree, conflicts_of(paths, rest[len(paths) + 1 :])

    def patch_id(self, rev_range_or_sha: str) -> str | None:
        """``git patch-id --stable`` of the change a commit or a range introduces.

        Used to match squash and rebase merges, whose shas never reach ``main``:
        for a commit, the diff from its first parent (a merge commit counts as one change);
        for ``A..B``, the combined diff from A to B. None when the diff is empty.
        """
        spec = safe_rev(rev_range_or_sha)
        if ".." in spec:
            sides = [spec]
        else:
            first = self.parents(spec)[:1]
            sides = [*first, spec] if first else [self._empty_tree(), spec]
        diff = self._run(
            "diff", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames", *sides
        ).stdout
        out = self._run("patch-id", "--stable", input=diff).stdout.split()
        return out[0] if out else None

    def _empty_tree(self) -> str:
        return self._run("hash-object", "-t", "tree", "--stdin", input="").stdout.strip()

    def ls_remote(self, remote: str, refs: Sequence[str] = ()) -> dict[str, str]:
        """Ref → sha as advertised by ``remote`` (``refs`` are git's tail-matching patterns)."""
        out = self._run("ls-remote", "--", remote, *refs).stdout
        pairs = (line.split("\t", 1) for line in out.splitlines() if "\t" in line)
        return {ref: sha for sha, ref in pairs}

    def config_get(self, key: str) -> str | None:
        """Value of configuration ``key``, or None when unset."""
        return self._unless_missing("config", "--get", key)

    # -- writing -------------------------------------------------------------------------------

    def config_set(self, key: str, value: str) -> None:
        """Set configuration ``key`` in this repository."""
        self._run("config", key, value)

    def fetch(self, remote: str, refspecs: Sequence[str], prune: bool = True) -> None:
        """Fetch ``refspecs`` from ``remote``, pruning what it no longer has by default."""
        self._run("fetch", "--quiet", *(["--prune"] if prune else []), "--", remote, *refspecs)

    def checkout_new_branch(self, name: str, start: str) -> None:
        """Point branch ``name`` at ``start`` and check it out, discarding local changes."""
        self._run("checkout", "--quiet", "--force", "-B", safe_rev(name), safe_rev(start), "--")

    def merge_no_ff(self, sha: str, message: str) -> MergeResult:
        """Merge ``sha`` into HEAD with a merge commit; a conflict is aborted, never left."""
        proc = self._run("merge", "--no-ff", "--no-edit", "-m", message, safe_rev(sha), check=False)
        if proc.returncode == 0:
            return MergeResult(True, (), proc.stdout + proc.stderr)
        conflicts = self._conflicts()
        self._run("merge", "--abort", check=False)  # exits 128 when no merge was started
        return self._failed(proc, conflicts)

    def merge_squash(self, sha: str, message: str) -> MergeResult:
        """Commit the changes of ``sha`` on top of HEAD as one commit with ``message``."""
        proc = self._run("merge", "--squash", safe_rev(sha), check=False)
        if proc.returncode == 0:
            proc = self._run("commit", "--quiet", "-m", message, check=False)
            if proc.returncode == 0:
                return MergeResult(True, (), proc.stdout + proc.stderr)
        conflicts = self._conflicts()
        self.reset_hard("HEAD")  # a squash leaves no MERGE_HEAD, so --abort cannot undo it
        return self._failed(proc, conflicts)

    def _conflicts(self) -> tuple[str, ...]:
        out = self._run("diff", "--name-only", "-z", "--diff-filter=U", check=False).stdout
        return tuple(path for path in out.split("\0") if path)

    @staticmethod
    def _failed(proc: subprocess.CompletedProcess[str], conflicts: tuple[str, ...]) -> MergeResult:
        """A conflict is an outcome; any other failure (unknown sha, dirty tree) is an error."""
        if not conflicts:
            raise GitError(proc.args, proc.returncode, proc.stdout, proc.stderr)
        return MergeResult(False, conflicts, proc.stdout + proc.stderr)

    def reset_hard(self, rev: str) -> None:
        """Make HEAD, index and worktree equal to ``rev``."""
        self._run("reset", "--quiet", "--hard", safe_rev(rev), "--")

    def clean(self) -> None:
        """Remove every untracked and ignored file, directories and nested repositories too."""
        self._run("clean", "-ffdxq")

    def push(
        self,
        remote: str,
        refspec: str,
        force_with_lease: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> PushResult:
        """Push ``refspec``; a rejection comes back as ``ok=False``, a timeout raises.

        ``force_with_lease`` is ``<ref>:<expected old sha>``. ``env`` carries what must never be
        on a command line, such as the push option holding the registration nonce.
        """
        lease = [] if force_with_lease is None else [f"--force-with-lease={force_with_lease}"]
        proc = self._run("push", "--porcelain", *lease, "--", remote, refspec, check=False, env=env)
        return PushResult(proc.returncode == 0, proc.stdout, proc.stderr)
