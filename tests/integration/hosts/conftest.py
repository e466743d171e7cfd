"""Fixtures for the real hosts: Gitolite behind sshd and `git http-backend` behind lighttpd,
started once per module on 127.0.0.1, each repository guarded by a service of its own.

Without the system packages (`make system-packages`) or root the tests skip with the reason;
under `CI=true` they fail instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrator.settings import Settings
from tests.integration.hosts.hosts import (
    GitoliteHost,
    HttpHost,
    host_root,
    missing_requirements,
)
from tests.integration.hosts.world import HostedRepo, repo_name
from tests.support import TokenMaker


@pytest.fixture(scope="session")
def hosts_available() -> None:
    missing = missing_requirements()
    if not missing:
        return
    reason = f"real git hosts need {', '.join(missing)}: run `make system-packages` as root"
    if os.environ.get("CI") == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def hosts_root(hosts_available: None) -> Iterator[Path]:
    root = host_root()
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def gitolite(hosts_root: Path) -> Iterator[GitoliteHost]:
    """Gitolite whose rc lets gitolite.conf advertise push options, behind its own sshd."""
    host = GitoliteHost(hosts_root)
    host.allow_config_key(r"receive\.advertisePushOptions")
    host.start()
    yield host
    host.stop()


@pytest.fixture(scope="module")
def web(hosts_root: Path) -> Iterator[HttpHost]:
    host = HttpHost(hosts_root).start()
    yield host
    host.stop()


@pytest.fixture
def trust_host_repositories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service and the CLI run as root on repositories the host users own: git refuses
    such a repository unless the global configuration names it safe."""
    config = tmp_path / "root.gitconfig"
    config.write_text("[safe]\n\tdirectory = *\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))


@pytest.fixture
def on_gitolite(
    gitolite: GitoliteHost,
    settings: Settings,
    tmp_path: Path,
    tokens: TokenMaker,
    trust_host_repositories: None,
) -> Iterator[HostedRepo]:
    """A Gitolite repository whose gitolite.conf advertises push options; hooks not installed."""
    name = repo_name()
    path = gitolite.add_repo(name, "config receive.advertisePushOptions = true")
    world = HostedRepo(
        settings,
        tmp_path,
        tokens,
        name=name,
        path=path,
        url=gitolite.url(name),
        credentials=lambda user, *_: {"GIT_SSH_COMMAND": gitolite.keys.ssh_command(user)},
    )
    yield world
    world.close()


@pytest.fixture
def on_http(
    web: HttpHost,
    settings: Settings,
    tmp_path: Path,
    tokens: TokenMaker,
    trust_host_repositories: None,
) -> Iterator[HostedRepo]:
    """A repository behind git http-backend; hooks not installed."""
    name = repo_name()
    path = web.add_repo(name)
    world = HostedRepo(
        settings,
        tmp_path,
        tokens,
        name=name,
        path=path,
        url=web.url(name),
        credentials=web.client_env,
    )
    yield world
    world.close()
