"""`hooks install` and `hooks check` on a Gitolite as its admin leaves it: what to add for push
options, and refusals where Gitolite would replace our hooks. No sshd needed: these are about
the files."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrator import hookinstall
from tests.integration.hosts.hosts import HOOK_PYTHON, GitoliteHost, chown_tree
from tests.support import REPO_ROOT, run_cli

RC_LINE = "GIT_CONFIG_KEYS => 'receive\\.advertisePushOptions',"


@pytest.fixture(scope="module")
def stock_gitolite(hosts_root: Path) -> GitoliteHost:
    """A Gitolite whose .gitolite.rc is as installed: gitolite.conf may set no git config."""
    root = hosts_root / "stock"
    root.mkdir(mode=0o755)
    return GitoliteHost(root)


@pytest.fixture
def cli_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    token = tmp_path / "hook.token"
    token.write_text("hook-token-for-files-only\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTEGRATOR_")}
    yield {**env, "HOOK_TOKEN_FILE": str(token)}


def install(repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "hooks", "install", str(repo), "--url", "http://127.0.0.1:9", "--token-file",
        env["HOOK_TOKEN_FILE"], "--python", HOOK_PYTHON, "--layout", "gitolite",
        "--identity-source", "gitolite", env=env,
    )  # fmt: skip


def check_lines(repo: Path, _env: dict[str, str]) -> dict[str, str]:
    """`hooks check`'s lines by name, as the CLI prints them (in-process: no start-up cost)."""
    return {
        item.name: f"[{'ok' if item.ok else 'FAIL'}] {item.name}: {item.detail}"
        for item in hookinstall.check(repo)
    }


def test_install_and_check_say_exactly_what_gitolite_needs_for_push_options(
    stock_gitolite: GitoliteHost, cli_env: dict[str, str]
) -> None:
    repo = stock_gitolite.add_repo("advice")

    installed = install(repo, cli_env)

    assert installed.returncode == 0, installed.stderr
    assert f"add to {stock_gitolite.rc} (inside %RC): {RC_LINE}" in installed.stdout
    assert (
        "add to gitolite.conf under `repo advice`: config receive.advertisePushOptions = true"
    ) in installed.stdout
    line = check_lines(repo, cli_env)["gitolite push options"]
    assert line.startswith("[ok]") and "set in the repository's own config only" in line
    assert RC_LINE in line and "config receive.advertisePushOptions = true" in line

    # the admin follows the advice: the setting now lives in gitolite.conf, survives compiles
    stock_gitolite.allow_config_key(r"receive\.advertisePushOptions")
    conf = stock_gitolite.conf.read_text()
    stock_gitolite.conf.write_text(
        conf.replace(
            "repo advice\n", "repo advice\n    config receive.advertisePushOptions = true\n"
        )
    )
    stock_gitolite.compile()
    lines = check_lines(repo, cli_env)
    assert lines["gitolite push options"] == (
        "[ok] gitolite push options: gitolite.conf sets receive.advertisePushOptions"
    )
    assert lines["gitolite update hook"].startswith("[ok]")
    assert "gitolite" not in install(repo, cli_env).stdout.replace(str(repo), "")


def test_install_refuses_a_hook_name_gitolite_links_from_its_common_hooks(
    stock_gitolite: GitoliteHost, cli_env: dict[str, str]
) -> None:
    """`gitolite setup` would replace our post-receive with its own link: refused, nothing
    written."""
    repo = stock_gitolite.add_repo("common")
    common = stock_gitolite.home / ".gitolite" / "hooks" / "common" / "post-receive"
    common.write_text("#!/bin/sh\nexit 0\n")
    common.chmod(0o755)
    try:
        refused = install(repo, cli_env)
    finally:
        common.unlink()

    assert refused.returncode != 0
    assert f"Gitolite links {common} into every repository" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not (repo / "hooks" / "pre-receive").exists()
    assert not (repo / "integrator").exists()


def test_check_says_when_a_repository_is_not_gitolites(tmp_path: Path) -> None:
    """--layout gitolite on a repository no Gitolite serves: check says so."""
    repo = tmp_path / "lone.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True, cwd=REPO_ROOT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTEGRATOR_")}
    token = tmp_path / "token"
    token.write_text("t\n")
    installed = install(repo, {**env, "HOOK_TOKEN_FILE": str(token)})
    assert installed.returncode == 0, installed.stderr
    assert check_lines(repo, env)["gitolite"].startswith("[FAIL] gitolite: no .gitolite.rc")


def test_install_refuses_a_repository_with_gitolite_repo_specific_pre_receive(
    stock_gitolite: GitoliteHost, cli_env: dict[str, str]
) -> None:
    """`option hook.pre-receive` makes Gitolite link its multi-hook driver as hooks/pre-receive on
    every compile: ours would not survive it."""
    rc = stock_gitolite.rc.read_text()
    local = '# LOCAL_CODE                =>  "$rc{GL_ADMIN_BASE}/local",'
    assert local in rc and "    ENABLE => [\n" in rc
    rc = rc.replace(local, local.lstrip("# "))
    stock_gitolite.rc.write_text(
        rc.replace("    ENABLE => [\n", "    ENABLE => [\n'repo-specific-hooks',\n")
    )
    scripts = stock_gitolite.home / ".gitolite" / "local" / "hooks" / "repo-specific"
    scripts.mkdir(parents=True)
    (scripts / "audit").write_text("#!/bin/sh\ncat >/dev/null\n")
    (scripts / "audit").chmod(0o755)
    chown_tree(stock_gitolite.home / ".gitolite" / "local", stock_gitolite.user)
    repo = stock_gitolite.add_repo("specific", "option hook.pre-receive = audit")
    assert os.readlink(repo / "hooks" / "pre-receive").endswith("multi-hook-driver")

    refused = install(repo, cli_env)

    assert refused.returncode != 0
    assert "gitolite.conf sets `option hook.pre-receive` for this repository" in refused.stderr
    assert os.readlink(repo / "hooks" / "pre-receive").endswith("multi-hook-driver")
    assert not (repo / "integrator").exists()
