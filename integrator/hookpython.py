"""The hooks' interpreter: it must run, as the repository's owner, with ``-IS``, Python >= 3.8.

git runs the hooks as the user that owns the repository, with the interpreter their shebang
names; an interpreter under a private home (a virtualenv under /root) cannot be executed by that
user, so install and check try it as that user.
"""

from __future__ import annotations

import os
import shutil
import subprocess

#: What git is told about the interpreter: runs with -IS, needs Python >= 3.8.
PYTHON_PROBE = "import sys; sys.exit(sys.version_info < (3, 8))"


def interpreter_runs(python: str, uid: int, gid: int) -> tuple[bool, str]:
    """Whether ``python -IS`` runs as the repository owner and is Python >= 3.8."""
    argv = [python, "-IS", "-c", PYTHON_PROBE]
    who = "as this user"
    if os.geteuid() == 0 and uid != 0:
        setpriv, runuser = shutil.which("setpriv"), shutil.which("runuser")
        if setpriv:
            # through env, so that the path is looked up as the owner: setpriv itself may find
            # the program before it drops root's access to a private directory
            become = [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
            argv = [*become, shutil.which("env") or "/usr/bin/env", *argv]
            who = f"as uid {uid}"
        elif runuser:
            argv = [runuser, "-u", _user_name(uid), "--", *argv]
            who = f"as uid {uid}"
        else:
            who = f"as root (no setpriv/runuser to switch to uid {uid})"
    try:
        proc = subprocess.run(
            argv,
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"cannot run {who}: {exc}"
    if proc.returncode == 0:
        return True, f"runs {who}, Python >= 3.8"
    if proc.returncode == 1 and not proc.stderr.strip():
        return False, f"Python older than 3.8 {who}"
    tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    return False, f"cannot run {who}: {tail}"


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
