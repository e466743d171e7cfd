"""`hooks install` run as root on a repository that belongs to the git user: everything it
leaves behind, the repository's own config included, stays the git user's."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.hosts.hosts import HOOK_PYTHON, as_user, chown_tree, host_root
from tests.support import run_cli

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="installs as root for another user")


@pytest.fixture
def installed_as_root() -> Iterator[tuple[Path, pwd.struct_passwd, dict[str, str]]]:
    """A bare repository of `nobody` with a private config, the hooks installed as root."""
    owner = pwd.getpwnam("nobody")
    root = host_root()
    try:
        repo = root / "private.git"
        subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
        (repo / "config").chmod(0o600)
        chown_tree(repo, owner)
        token = root / "hook.token"
        token.write_text("hook-token\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTEGRATOR_")}
        installed = run_cli(
            "hooks", "install", str(repo), "--url", "http://127.0.0.1:9",
            "--token-file", str(token), "--python", HOOK_PYTHON, env=env,
        )  # fmt: skip
        assert installed.returncode == 0, installed.stderr
        yield repo, owner, env
    finally:
        shutil.rmtree(root, ignore_errors=True)


def config_of(repo: Path, owner: pwd.struct_passwd, *args: str) -> subprocess.CompletedProcess[str]:
    """`git config …` on the repository as its owner; the config itself must stay the owner's."""
    info = (repo / "config").stat()
    assert (info.st_uid, info.st_mode & 0o777) == (owner.pw_uid, 0o600)
    return subprocess.run(
        as_user(owner, "git", f"--git-dir={repo}", "config", *args),
        capture_output=True,
        text=True,
        check=False,
    )


def test_install_as_root_leaves_a_private_config_readable_by_its_owner(
    installed_as_root: tuple[Path, pwd.struct_passwd, dict[str, str]],
) -> None:
    """git config rewrites the file: under a 0077 umask (Gitolite's) a root-owned config 0600
    locked the git user out of its own repository."""
    repo, owner, _ = installed_as_root
    read = config_of(repo, owner, "receive.advertisePushOptions")
    assert (read.returncode, read.stdout.strip()) == (0, "true"), read.stderr


def test_uninstall_as_root_leaves_a_private_config_readable_by_its_owner(
    installed_as_root: tuple[Path, pwd.struct_passwd, dict[str, str]],
) -> None:
    """Restoring the push-options setting rewrites the config too: it stays the owner's."""
    repo, owner, env = installed_as_root
    removed = run_cli("hooks", "uninstall", str(repo), env=env)
    assert removed.returncode == 0, removed.stderr
    read = config_of(repo, owner, "--list")
    assert read.returncode == 0, read.stderr
