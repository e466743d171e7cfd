"""A bare repository set up for the hook scripts, for the tests that feed the hooks any input."""

from __future__ import annotations

import json
from pathlib import Path

from tests.gitrepos import git


class HookRepository:
    """A bare repository configured for the hooks: `main` at `old`, `next` at `new` one
    commit ahead; the service at `url`, the hook's token file and its state folder in place."""

    def __init__(self, root: Path, url: str, deadline: float) -> None:
        self.bare = root / "canonical.git"
        work = root / "work"
        git("init", "-q", "--bare", "--initial-branch=main", str(self.bare), cwd=root)
        git("init", "-q", "--initial-branch=main", str(work), cwd=root)
        git("commit", "-q", "--allow-empty", "-m", "one", cwd=work)
        self.old = git("rev-parse", "HEAD", cwd=work)
        git("commit", "-q", "--allow-empty", "-m", "two", cwd=work)
        self.new = git("rev-parse", "HEAD", cwd=work)
        git("push", "-q", str(self.bare), f"{self.old}:refs/heads/main", cwd=work)
        git("push", "-q", str(self.bare), f"{self.new}:refs/heads/next", cwd=work)
        folder = self.bare / "integrator"
        self.state = folder / "state"
        self.state.mkdir(parents=True)
        (folder / "token").write_text("hook-token\n")
        config = {
            "url": url,
            "token_file": str(folder / "token"),
            "repository": "canonical",
            "deadline_seconds": deadline,
        }
        (folder / "hook.json").write_text(json.dumps(config))

    def cache(self, mode: str) -> None:
        """The mode the hook last heard from the service, as its fallback reads it."""
        last = {"mode": mode, "protected_refs": ["refs/heads/main"]}
        (self.state / "last.json").write_text(json.dumps(last))

    def stdin(self, ref: str) -> bytes:
        """The hook's input line for moving `ref` from `old` to `new`."""
        return f"{self.old} {self.new} {ref}\n".encode()

    @property
    def main_update(self) -> bytes:
        return self.stdin("refs/heads/main")
