"""Ref names beyond ASCII, pushed for real through the installed hooks.

git takes any bytes in a ref name but ASCII controls, space, ``~^:?*[\\`` and a few sequences:
UTF-8 (``refs/heads/café``), code points that are not printable, and bytes that are not UTF-8
at all. The hooks must record each such update under its name and decide it as any other ref;
in cutover a branch that is not main passes and main stays guarded. A name the service cannot
hold as text (bytes that are not UTF-8, characters that are not printable) is sent with those
characters escaped (``\\xe9``, ``\\u200b``): git never puts a backslash in a ref name, so the
escaped name cannot be mistaken for another ref.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.gitrepos import GIT_ENV
from tests.integration.hooks.conftest import (
    SERVER_PATH,
    FakeService,
    ServerRepo,
    git,
    remote_lines,
    verdict,
)
from tests.integration.hooks.test_post_receive_service import events_of, poll
from tests.support import ServiceProcess, TokenMaker

#: (name as git holds it, read as os.fsdecode reads it; name the service is sent)
NAMES = (
    ("refs/heads/café", "refs/heads/café"),
    ("refs/heads/日本/ветка-🚀", "refs/heads/日本/ветка-🚀"),
    ("refs/heads/caf\udce9", "refs/heads/caf\\xe9"),  # b"caf\xe9": Latin-1, not UTF-8
    ("refs/heads/zero\u200bwidth", "refs/heads/zero\\u200bwidth"),
)


def branch(repo: ServerRepo, name: str) -> str:
    """Create `name` (any bytes git takes, surrogate-escaped) at HEAD in the work clone."""
    head = git("rev-parse", "HEAD", cwd=repo.work)
    git("update-ref", name, head, cwd=repo.work)
    return head


def push(repo: ServerRepo, *names: str) -> subprocess.CompletedProcess[str]:
    """`repo.push` of each name to itself; git's output may name a ref that is not UTF-8."""
    receive_pack = f"--receive-pack=env -i PATH={shlex.quote(SERVER_PATH)} INTEGRATOR_PUSHER=alice"
    return subprocess.run(
        ["git", "push", receive_pack + " git-receive-pack", str(repo.bare)]
        + [f"{name}:{name}" for name in names],
        cwd=repo.work,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
        check=False,
    )


def sent_refs(fake: FakeService, path: str) -> list[str]:
    return [u["ref"] for r in fake.received(path) for u in r.body["updates"]]


@pytest.mark.parametrize(("name", "wire"), NAMES)
def test_a_shadow_push_of_a_non_ascii_ref_is_checked_and_reported_under_its_name(
    installed: ServerRepo, fake: FakeService, name: str, wire: str
) -> None:
    head = branch(installed, name)

    result = push(installed, name)

    assert result.returncode == 0, result.stderr
    assert installed.ref(name) == head
    assert "malformed" not in result.stderr
    (check,) = fake.received("/v1/push-checks")
    (update,) = check.body["updates"]
    assert (update["ref"], update["resolved_ref"]) == (wire, wire)
    fake.wait_for("/v1/push-reports")
    assert sent_refs(fake, "/v1/push-reports") == [wire]


def test_cutover_lets_a_non_ascii_branch_through_that_only_looks_like_main(
    installed: ServerRepo, fake: FakeService
) -> None:
    """`refs/heads/main-café` is not main: the service decides it, and it passes."""
    fake.respond("POST", "/v1/push-checks", verdict(mode="cutover", allow=False))
    names = ["refs/heads/main-café", "refs/heads/café/refs/heads/main", "refs/heads/main\udce9"]
    for name in names:
        branch(installed, name)

    result = push(installed, *names)

    assert result.returncode == 0, result.stderr
    assert all(installed.ref(n) for n in names)
    (check,) = fake.received("/v1/push-checks")
    refs = [u["ref"] for u in check.body["updates"]]
    assert refs == [
        "refs/heads/main-café",
        "refs/heads/café/refs/heads/main",
        "refs/heads/main\\xe9",
    ]


def test_cutover_keeps_main_guarded_in_a_push_with_non_ascii_branches(
    installed: ServerRepo, fake: FakeService
) -> None:
    fake.respond("POST", "/v1/push-checks", verdict(mode="cutover", allow=False))
    old = installed.ref("main")
    installed.commit("second")
    branch(installed, "refs/heads/café")

    result = push(installed, "refs/heads/main", "refs/heads/café")

    assert result.returncode != 0
    assert installed.ref("main") == old and installed.ref("refs/heads/café") is None
    (check,) = fake.received("/v1/push-checks")
    assert [u["ref"] for u in check.body["updates"]] == ["refs/heads/main", "refs/heads/café"]


def test_cached_cutover_without_the_service_passes_non_ascii_branches_and_refuses_main(
    repo: ServerRepo, fake: FakeService
) -> None:
    repo.install()
    fake.respond("POST", "/v1/push-checks", verdict(mode="cutover"))
    git("branch", "seen-cutover", cwd=repo.work)
    assert repo.push("seen-cutover").returncode == 0
    fake.go_down()
    old = repo.ref("main")
    for name, _ in NAMES:
        branch(repo, name)

    branches = push(repo, *(n for n, _ in NAMES))
    repo.commit("second")
    refused = repo.push("main")

    assert branches.returncode == 0, branches.stderr
    assert all(repo.ref(n) for n, _ in NAMES)
    assert refused.returncode != 0 and repo.ref("main") == old
    assert any("refused: refs/heads/main" in line for line in remote_lines(refused.stderr))
    spooled = [u["ref"] for item in repo.spooled() for u in item["updates"]]
    assert spooled[-len(NAMES) - 1 :] == [wire for _, wire in NAMES] + ["refs/heads/main"]


def test_the_service_records_non_ascii_refs_under_the_names_the_hook_sends(
    tmp_path: Path, fake: FakeService, service: ServiceProcess, tokens: TokenMaker
) -> None:
    """Hook and service agree: every such name is a ref the service takes and records."""
    repo = ServerRepo(tmp_path, fake)
    repo.install(url=service.url, token=tokens("hook"))
    reader = tokens("reader")
    for name, _ in NAMES:
        branch(repo, name)

    result = push(repo, *(n for n, _ in NAMES))

    assert result.returncode == 0, result.stderr
    assert "malformed" not in result.stderr
    allowed: list[dict[str, Any]] = events_of(service, reader, "push_allowed")
    assert sorted(e["fields"]["ref"] for e in allowed) == sorted(wire for _, wire in NAMES)
    utf8 = {"café", "日本/ветка-🚀"}

    def reported() -> set[str]:
        return {e["fields"]["branch"] for e in events_of(service, reader, "branch_pushed")}

    assert poll(lambda: reported() == utf8), reported()


@pytest.mark.parametrize("alias", ["refs/heads/grüne-main", "refs/heads/main\udce9"])
def test_a_non_ascii_alias_of_main_is_checked_as_main(
    installed: ServerRepo, fake: FakeService, alias: str
) -> None:
    """A symbolic ref so named, pointing at main, moves main: it is main's update."""
    fake.respond("POST", "/v1/push-checks", verdict(mode="cutover", allow=False))
    git("symbolic-ref", alias, "refs/heads/main", cwd=installed.bare)
    old = installed.ref("main")
    new = installed.commit("second")
    git("update-ref", alias, new, cwd=installed.work)

    result = push(installed, alias)

    assert result.returncode != 0 and installed.ref("main") == old
    (check,) = fake.received("/v1/push-checks")
    (update,) = check.body["updates"]
    assert update["resolved_ref"] == "refs/heads/main"
    assert (update["fast_forward"], update["first_parent"]) == (True, True)
