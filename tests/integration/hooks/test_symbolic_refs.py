"""Symbolic refs are resolved as git resolves them, and protect in both directions.

A push to an alias of main moves main; a push to the target of a protected symbolic ref moves
that protected ref. Either way the hooks name the update by the protected ref, which is what the
service's policy matches (`resolved_ref`).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.integration.hooks.conftest import FakeService, ServerRepo, git, verdict

HOOKS = Path(__file__).resolve().parents[3] / "hooks"
RELEASE = "refs/heads/release"


def load_pre_receive() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("pre_receive", str(HOOKS / "pre-receive"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def git_version() -> tuple[int, ...]:
    out = subprocess.run(["git", "--version"], capture_output=True, text=True, check=True).stdout
    return tuple(int(part) for part in out.split()[2].split(".")[:2])


def test_an_alias_of_a_packed_main_is_checked_as_main(
    installed: ServerRepo, fake: FakeService
) -> None:
    """A loose symbolic ref whose target lives only in packed-refs still resolves to main."""
    git("pack-refs", "--all", cwd=installed.bare)
    assert not (installed.bare / "refs" / "heads" / "main").exists()
    git("symbolic-ref", "refs/heads/alias", "refs/heads/main", cwd=installed.bare)
    old = installed.ref("main")
    new = installed.commit("through the alias")

    result = installed.push("main:refs/heads/alias")

    assert result.returncode == 0, result.stderr
    assert installed.ref("main") == new
    (update,) = fake.received("/v1/push-checks")[-1].body["updates"]
    assert (update["ref"], update["resolved_ref"]) == ("refs/heads/alias", "refs/heads/main")
    assert (update["old"], update["fast_forward"]) == (old, True)


@pytest.fixture
def protected_alias(repo: ServerRepo, fake: FakeService) -> ServerRepo:
    """`release` is protected and is a symbolic ref to the branch `release-2`; cutover."""
    git("push", "--quiet", str(repo.bare), "main:refs/heads/release-2", cwd=repo.work)
    git("symbolic-ref", RELEASE, "refs/heads/release-2", cwd=repo.bare)
    repo.install(protected_refs=(RELEASE,))
    fake.respond(
        "POST", "/v1/push-checks", verdict(allow=False, mode="cutover", protected=(RELEASE,))
    )
    return repo


@pytest.mark.parametrize("target", ["refs/heads/release", "refs/heads/release-2"])
def test_a_protected_symbolic_ref_is_protected_through_either_name(
    protected_alias: ServerRepo, fake: FakeService, target: str
) -> None:
    """Pushing the protected alias or its target moves the protected ref: both are checked as it."""
    before = protected_alias.ref("refs/heads/release-2")
    protected_alias.commit("release fix")

    result = protected_alias.push(f"main:{target}")

    assert result.returncode != 0
    assert protected_alias.ref("refs/heads/release-2") == before
    (update,) = fake.received("/v1/push-checks")[-1].body["updates"]
    assert (update["ref"], update["resolved_ref"]) == (target, RELEASE)
    assert update["fast_forward"] is True  # protected: facts computed


def test_post_receive_reports_the_target_of_a_protected_alias_under_the_protected_name(
    protected_alias: ServerRepo, fake: FakeService
) -> None:
    """The report names the protected ref that moved, as the check did."""
    fake.respond("POST", "/v1/push-checks", verdict(protected=(RELEASE,)))
    new = protected_alias.commit("release fix")

    assert protected_alias.push("main:refs/heads/release-2").returncode == 0

    report = fake.wait_for("/v1/push-reports")[-1]
    (update,) = report.body["updates"]
    assert (update["ref"], update["resolved_ref"], update["new"]) == (
        "refs/heads/release-2",
        RELEASE,
        new,
    )


@pytest.fixture
def alarm() -> Iterator[ModuleType]:
    """pre-receive as a module, with its SIGALRM handler (run_git's timer) for the test."""
    hook = load_pre_receive()
    previous = signal.signal(signal.SIGALRM, hook.on_alarm)
    try:
        yield hook
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_resolving_through_git_agrees_with_the_loose_files(
    repo: ServerRepo, alarm: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path taken when refs are not plain files (reftable) gives git's own answers."""
    git("pack-refs", "--all", cwd=repo.bare)
    git("symbolic-ref", "refs/heads/alias", "refs/heads/main", cwd=repo.bare)
    git("symbolic-ref", "refs/heads/alias2", "refs/heads/alias", cwd=repo.bare)
    monkeypatch.setenv("GIT_DIR", str(repo.bare))
    names = ["refs/heads/alias", "refs/heads/alias2", "refs/heads/main", "refs/heads/none"]

    def chains(files: bool) -> list[list[str]]:
        deadline = time.monotonic() + 10

        def read(name: str) -> str | None:
            target: str | None = alarm.symref_target(str(repo.bare), name, files, deadline)
            return target

        return [alarm.ref_chain(name, read) for name in names]

    assert chains(False) == chains(True)
    assert chains(False)[1] == ["refs/heads/alias2", "refs/heads/alias", "refs/heads/main"]
    assert alarm.files_backend(str(repo.bare))


@pytest.mark.skipif(git_version() < (2, 45), reason="reftable needs git >= 2.45")
def test_an_alias_of_main_in_a_reftable_repository_is_checked_as_main(
    tmp_path: Path, fake: FakeService
) -> None:
    """With refs in a reftable there are no loose files: git itself resolves the alias."""
    repo = ServerRepo(tmp_path, fake)
    reftable = tmp_path / "reftable.git"
    git(
        "clone",
        "--quiet",
        "--bare",
        "--ref-format=reftable",
        str(repo.bare),
        str(reftable),
        cwd=tmp_path,
    )
    repo.bare = reftable
    repo.install()
    git("symbolic-ref", "refs/heads/alias", "refs/heads/main", cwd=reftable)
    new = repo.commit("through the alias")

    result = repo.push("main:refs/heads/alias")

    assert result.returncode == 0, result.stderr
    assert repo.ref("main") == new
    (update,) = fake.received("/v1/push-checks")[-1].body["updates"]
    assert (update["ref"], update["resolved_ref"]) == ("refs/heads/alias", "refs/heads/main")
    assert update["fast_forward"] is True
