"""pre-receive and a real service agree on limits: a push of any size gets the service's verdict.

The service takes at most 10,000 updates, refs of at most 1,024 characters and nonces of at
most 200 per check. The hook sends what the policy decides on (every update of a protected ref)
in full, a bounded sample of the rest and the count of what it left out: a huge push, a very
long branch name or an over-long push option is decided by the service, never by the hook's
"service unavailable" fallback (which in cutover refuses main).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from integrator.db import make_sessionmaker
from integrator.modes import Mode, change
from tests.integration.hooks.conftest import FakeService, ServerRepo, dead_url, git, remote_lines
from tests.support import ServiceProcess, TokenMaker

MANY = 10_001


def set_mode(engine: Engine, mode: str) -> None:
    if mode == "shadow":
        return  # a fresh install starts in shadow
    with make_sessionmaker(engine)() as session, session.begin():
        change(session, Mode(mode), by="test", reason="test", repository="canonical")


def events_of(service: ServiceProcess, token: str, type_name: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{service.url}/v1/events",
        params={"type": type_name},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def many_branches(repo: ServerRepo, count: int) -> None:
    """`count` branches at HEAD in the client, created in one git process."""
    head = git("rev-parse", "HEAD", cwd=repo.work)
    lines = "".join(f"create refs/heads/many/b{n:05d} {head}\n" for n in range(count))
    subprocess.run(
        ["git", "update-ref", "--stdin"],
        input=lines,
        text=True,
        cwd=repo.work,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def served(
    tmp_path: Path, fake: FakeService, service: ServiceProcess, tokens: TokenMaker
) -> tuple[ServerRepo, str]:
    repo = ServerRepo(tmp_path, fake)
    repo.install(url=service.url, token=tokens("hook"), deadline=10.0)
    return repo, tokens("reader")


@pytest.mark.parametrize("mode", ["shadow", "cutover"])
def test_a_push_of_more_than_10000_refs_gets_the_services_verdict(
    served: tuple[ServerRepo, str], service: ServiceProcess, engine: Engine, mode: str
) -> None:
    """10,001 new branches and main in one push: main is decided by the service, as alone."""
    repo, reader = served
    set_mode(engine, mode)
    many_branches(repo, MANY)
    repo.commit("second")

    result = repo.push("--all")

    lines = remote_lines(result.stderr)
    assert not any("service unavailable" in line for line in lines), lines
    if mode == "shadow":
        assert result.returncode == 0, result.stderr
        (event,) = events_of(service, reader, "push_would_reject")
        assert event["fields"]["updates_left_out"] > 0
    else:
        assert result.returncode == 1
        assert any("refused main" in line and "direct pushes" in line for line in lines), lines
        (event,) = events_of(service, reader, "push_rejected")
        assert event["fields"]["ref"] == "refs/heads/main"
    recorded = events_of(service, reader, "push_allowed")
    assert 0 < len(recorded) + 1 + event["fields"]["updates_left_out"] == MANY + 1


def test_a_push_of_more_than_10000_unprotected_refs_passes_in_cutover(
    served: tuple[ServerRepo, str], service: ServiceProcess, engine: Engine
) -> None:
    repo, _reader = served
    set_mode(engine, "cutover")
    many_branches(repo, MANY)

    result = repo.push("refs/heads/many/*:refs/heads/many/*")

    assert result.returncode == 0, result.stderr
    assert not any("service unavailable" in line for line in remote_lines(result.stderr))
    assert repo.ref("refs/heads/many/b10000") is not None


def long_branch() -> str:
    """A 1,100-character branch name, nested so that no path part passes a file name's limit."""
    name = "/".join(["x" * 200] * 5) + "/" + "y" * 95
    assert len(name) == 1100
    return name


@pytest.mark.parametrize("mode", ["shadow", "cutover"])
def test_a_branch_name_over_1024_characters_is_no_reason_to_refuse(
    served: tuple[ServerRepo, str], service: ServiceProcess, engine: Engine, mode: str
) -> None:
    repo, reader = served
    set_mode(engine, mode)
    git("branch", long_branch(), cwd=repo.work)

    result = repo.push(long_branch())

    assert result.returncode == 0, result.stderr
    assert not any("service unavailable" in line for line in remote_lines(result.stderr))
    assert repo.ref("refs/heads/" + long_branch()) is not None
    assert not events_of(service, reader, "push_rejected")


@pytest.mark.parametrize("mode", ["shadow", "cutover"])
def test_main_with_a_long_branch_is_decided_by_the_service(
    served: tuple[ServerRepo, str], service: ServiceProcess, engine: Engine, mode: str
) -> None:
    repo, reader = served
    set_mode(engine, mode)
    git("branch", long_branch(), cwd=repo.work)
    repo.commit("second")

    result = repo.push("main", long_branch())

    lines = remote_lines(result.stderr)
    assert not any("service unavailable" in line for line in lines), lines
    assert result.returncode == (0 if mode == "shadow" else 1), result.stderr
    kind = "push_would_reject" if mode == "shadow" else "push_rejected"
    (event,) = events_of(service, reader, kind)
    assert event["fields"]["ref"] == "refs/heads/main"
    assert event["fields"]["updates_left_out"] == 1


@pytest.mark.parametrize("mode", ["shadow", "cutover"])
def test_an_over_long_nonce_gets_a_real_refusal(
    served: tuple[ServerRepo, str], service: ServiceProcess, engine: Engine, mode: str
) -> None:
    """A push option no registration can have issued: refused by the service, and said so."""
    repo, reader = served
    set_mode(engine, mode)
    repo.commit("second")
    option = "push.pushOption=integrator-push=" + "n" * 300

    result = repo.push("main", client_config=(option,))

    lines = remote_lines(result.stderr)
    assert result.returncode == 1
    assert not any("service unavailable" in line for line in lines), lines
    assert any("integrator-push" in line and "300 characters" in line for line in lines), lines
    (event,) = events_of(service, reader, "push_rejected")
    assert event["fields"]["ref"] == "refs/heads/main"


def test_post_receive_reports_a_push_of_many_refs_in_parts_the_service_takes(
    installed: ServerRepo, fake: FakeService
) -> None:
    """2,500 branches: three reports of at most 1,000 updates; a name over 1,024 is left out."""
    many_branches(installed, 2500)
    git("branch", long_branch(), cwd=installed.work)

    result = installed.push("--all")

    assert result.returncode == 0, result.stderr
    reports = fake.wait_for("/v1/push-reports", 3)
    sizes = sorted(len(r.body["updates"]) for r in reports)
    assert sizes == [500, 1000, 1000]
    refs = {u["ref"] for r in reports for u in r.body["updates"]}
    assert "refs/heads/" + long_branch() not in refs
    (check,) = fake.received("/v1/push-checks")
    assert len(check.body["updates"]) == 100
    assert check.body["updates_left_out"] == 2401


def test_a_verdict_given_without_the_service_is_spooled_in_a_shape_the_service_takes(
    repo: ServerRepo,
) -> None:
    """The spooled verdict of a push with a 1,100-character branch and 150 others: main, a
    sample and the count, never a name the service refuses (the whole item would be)."""
    from integrator.api.guard import SpooledIn

    repo.install(url=dead_url())
    many_branches(repo, 150)
    git("branch", long_branch(), cwd=repo.work)
    repo.commit("second")

    result = repo.push("--all")

    assert result.returncode == 0, result.stderr
    (item,) = repo.spooled()
    refs = [u["ref"] for u in item["updates"]]
    assert "refs/heads/main" in refs and len(refs) == 101
    assert item["updates_left_out"] == 51
    assert SpooledIn.model_validate(item).updates_left_out == 51
