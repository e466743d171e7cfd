"""Real git repositories for tests: a bare canonical repository and a working clone."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

SERVER_PATH = "/usr/local/bin:/usr/bin:/bin"

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.test",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.test",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
}


def git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    full_env = {**os.environ, **GIT_ENV, **(env or {})}
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=full_env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


class Canonical:
    """A bare `canonical.git` with one commit on main, and a clone to make branches in."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "canonical.git"
        self.work = root / "work"
        git("init", "--bare", "--initial-branch=main", str(self.bare), cwd=root)
        git("clone", "-q", str(self.bare), str(self.work), cwd=root)
        git("checkout", "-q", "-b", "main", cwd=self.work)
        self.commit("README", "hello\n", "initial commit")
        git("push", "-q", "origin", "main", cwd=self.work)

    def commit(self, path: str, content: str, message: str) -> str:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        git("add", path, cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def branch(self, name: str, path: str | None = None, content: str = "change\n") -> str:
        """A branch off main with one commit, pushed to the canonical repository."""
        git("checkout", "-q", "-B", name, "main", cwd=self.work)
        sha = self.commit(path or f"{name.replace('/', '_')}.txt", content, f"work on {name}")
        git("push", "-q", "-f", "origin", name, cwd=self.work)
        git("checkout", "-q", "main", cwd=self.work)
        return sha

    def local_branch(self, name: str) -> str:
        """A commit that exists only in the clone, never pushed."""
        git("checkout", "-q", "-B", name, "main", cwd=self.work)
        sha = self.commit(f"{name}.local", "local\n", f"unpushed {name}")
        git("checkout", "-q", "main", cwd=self.work)
        return sha

    def merge_to_main(self, sha: str) -> str:
        git("checkout", "-q", "main", cwd=self.work)
        git("merge", "-q", "--no-ff", "-m", "merge", sha, cwd=self.work)
        git("push", "-q", "origin", "main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def head(self, ref: str = "refs/heads/main") -> str:
        return git("rev-parse", ref, cwd=self.bare)

    def push_as(
        self, pusher: str, *refspecs: str, options: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        """A real `git push` whose server side sees only what a git host would set: the
        pusher comes from the transport, never from the client's environment."""
        server = f"env -i PATH={SERVER_PATH} INTEGRATOR_PUSHER={shlex.quote(pusher)}"
        config = [arg for option in options for arg in ("-c", f"push.pushOption={option}")]
        return subprocess.run(
            ["git", *config, "push", f"--receive-pack={server} git-receive-pack",
             str(self.bare), *refspecs],
            cwd=self.work,
            env={**os.environ, **GIT_ENV},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip

    def new_commit_on_main(self, name: str) -> str:
        """A local commit on top of the canonical main, not pushed."""
        git("fetch", "-q", "origin", cwd=self.work)
        git("checkout", "-q", "-B", "main", "origin/main", cwd=self.work)
        return self.commit(f"{name}.txt", name + "\n", f"direct change {name}")


class Unreadable:
    """The canonical repository made unreadable for a while (moved away), then restored."""

    def __init__(self, canonical: Canonical) -> None:
        self.path = canonical.bare
        self.away = canonical.bare.with_name("canonical.git.away")

    def __enter__(self) -> Unreadable:
        self.path.rename(self.away)
        return self

    def __exit__(self, *_: object) -> None:
        self.away.rename(self.path)
