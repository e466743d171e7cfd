"""The service's readable copy of the canonical repository.

Readiness reads git facts (the head of a branch, whether main contains a commit) from the
canonical repository itself, never from an event's word: in place when it is a local
directory the service can read, else from a bare mirror it keeps fetched.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

from integrator.gitops import Git


class Mirror:
    """Keeps the canonical repository readable for the service.

    A readable local git directory is used in place. Anything else (a URL, ``file://``
    included, or a path this process cannot read) is kept as a bare mirror under
    ``cache_dir``, cloned on first use and fetched by :meth:`refresh` before evaluating.
    """

    def __init__(self, source: str, cache_dir: Path, timeout: float = 60.0) -> None:
        self.source = source
        self.cache_dir = Path(cache_dir)
        self.timeout = timeout
        self._lock = threading.Lock()
        self.direct = _is_readable_git_dir(source, timeout)
        if self.direct:
            self.path = Path(source)
        else:
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", source).strip("._-")[-60:]
            digest = hashlib.sha256(source.encode()).hexdigest()[:12]
            self.path = self.cache_dir / f"{name}-{digest}.git"

    def git(self) -> Git:
        """A Git on the readable repository, cloning the mirror first if it does not exist."""
        if not self.direct and not self.path.exists():
            with self._lock:
                if not self.path.exists():
                    self._create()
        return Git(self.path, self.timeout)

    def refresh(self) -> None:
        """Bring the mirror's branches up to date with the source (no-op when direct)."""
        if self.direct:
            return
        with self._lock:
            if not self.path.exists():
                self._create()
                return
            Git(self.path, self.timeout).fetch("origin", ["+refs/heads/*:refs/heads/*"])

    def _create(self) -> None:
        # Clone beside the target and rename into place: a crash or a concurrent replica never
        # leaves a half-cloned mirror where a complete one is expected.
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".mirror-", dir=self.cache_dir))
        try:
            Git.clone(self.source, staging / "repo.git", mirror=True, timeout=self.timeout)
            try:
                (staging / "repo.git").rename(self.path)
            except OSError:
                if not self.path.exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _is_readable_git_dir(source: str, timeout: float) -> bool:
    """True for a local repository (bare, or a worktree's top) that git can open.

    The git dir is compared with ``source`` because git would otherwise happily find an
    enclosing repository for a plain directory.
    """
    if "://" in source or not os.path.isdir(source) or not os.access(source, os.R_OK | os.X_OK):
        return False
    git_dir = Git(Path(source), timeout).git_dir()
    root = Path(source).resolve()
    return git_dir is not None and git_dir.resolve() in (root, root / ".git")
