"""A main and a branch that conflict in every way git names: the blocked-flow tests' repository.

`conflicting_sides` commits, in a worktree checked out on main, a base with one file per kind
of conflict, then a branch and a main commit that change each file its own way. Nothing is
pushed: the caller pushes main and the branch where its test needs them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

#: A file name that is not UTF-8 (Latin-1 "café"), as git's output decodes it.
LATIN1_NAME = b"caf\xe9.txt".decode("utf-8", "surrogateescape")

#: Every path git reports as conflicting, in git's order, with the kind it names.
CONFLICTS: dict[str, str] = {
    "blob.bin": "binary",
    LATIN1_NAME: "content",
    "deleted-on-branch.txt": "modify/delete",
    "renamed-on-branch.txt": "rename/delete",
    "rr-branch.txt": "rename/rename",
    "rr-main.txt": "rename/rename",
    "rr.txt": "rename/rename",
    "sp ace.txt": "content",
    "ünïcode.txt": "content",
}

_LINES = "".join(f"line {n} of a file long enough to be found renamed\n" for n in range(12))


def _run(work: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.test",
        "GIT_COMMITTER_NAME": "Ada",
        "GIT_COMMITTER_EMAIL": "ada@example.test",
    }
    done = subprocess.run(["git", "-C", str(work), *args], env=env, check=True, capture_output=True)
    return done.stdout.decode().strip()


def _write(work: Path, name: str, content: bytes) -> None:
    with open(os.path.join(os.fsencode(work), os.fsencode(name)), "wb") as handle:
        handle.write(content)


def _commit(work: Path, message: str) -> str:
    _run(work, "add", "-A")
    _run(work, "commit", "-q", "-m", message)
    return _run(work, "rev-parse", "HEAD")


def conflicting_sides(work: Path, branch: str) -> tuple[str, str]:
    """(main's new sha, the branch's sha): both off one new base commit on main, conflicting
    in every path of `CONFLICTS`; the branch also changes `clean.txt`, which merges cleanly."""
    for name in ("sp ace.txt", "ünïcode.txt", LATIN1_NAME, "deleted-on-branch.txt"):
        _write(work, name, b"a\nb\nc\n")
    _write(work, "renamed-on-branch.txt.orig", _LINES.encode())
    _write(work, "rr.txt", ("rr " + _LINES).encode())
    _write(work, "blob.bin", b"\0\1\2 base")
    _write(work, "clean.txt", b"base\n")
    _commit(work, "the base of every conflict")
    _run(work, "checkout", "-q", "-B", branch)
    for name in ("sp ace.txt", "ünïcode.txt", LATIN1_NAME):
        _write(work, name, b"a\nbranch\nc\n")
    _run(work, "rm", "-q", "deleted-on-branch.txt")
    _run(work, "mv", "renamed-on-branch.txt.orig", "renamed-on-branch.txt")
    _run(work, "mv", "rr.txt", "rr-branch.txt")
    _write(work, "blob.bin", b"\0\1\2 branch")
    _write(work, "clean.txt", b"branch\n")
    theirs = _commit(work, f"work on {branch}")
    _run(work, "checkout", "-q", "main")
    for name in ("sp ace.txt", "ünïcode.txt", LATIN1_NAME):
        _write(work, name, b"a\nmain\nc\n")
    _write(work, "deleted-on-branch.txt", b"a\nb\nc\nmore on main\n")
    _run(work, "rm", "-q", "renamed-on-branch.txt.orig")
    _run(work, "mv", "rr.txt", "rr-main.txt")
    _write(work, "blob.bin", b"\0\1\2 main")
    ours = _commit(work, "main changes the same files")
    return ours, theirs
