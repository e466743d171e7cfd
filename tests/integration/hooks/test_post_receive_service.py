"""post-receive against a real `integrator serve`: what the service refuses for good is set aside.

A report the service answers with a 4xx (other than 401, 403, 408, 429) can never succeed: it
moves to `rejected/` with the answer, and the reports and verdicts behind it still arrive.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.integration.hooks.conftest import FakeService, ServerRepo, git
from tests.support import ServiceProcess, TokenMaker

ZERO = "0" * 40


def report_body(repository: str, branch: str, new: str) -> dict[str, Any]:
    """A push report as post-receive writes it when the service missed it."""
    return {
        "repository": repository,
        "hook_instance": "test:canonical",
        "hook_version": "1",
        "pusher": "alice",
        "identity_source": "plain",
        "updates": [
            {
                "ref": f"refs/heads/{branch}",
                "resolved_ref": f"refs/heads/{branch}",
                "old": ZERO,
                "new": new,
            }
        ],
    }


def bypass_verdict(new: str) -> dict[str, Any]:
    """A break-glass verdict pre-receive spooled while the service was down."""
    body = report_body("canonical", "main", new)
    body["updates"][0].update(old="1" * 40, fast_forward=None, first_parent=None)
    return {
        **body,
        "registration_nonce": None,
        "decided_locally": True,
        "decided_at": "2026-01-01T00:00:00Z",
        "spool_id": "0000000000003-1-abcd",
        "allow": True,
        "reason_code": "break_glass",
        "mode": "cutover",
        "detail": "connection failed: ConnectionRefusedError",
        "bypass": True,
        "override": {"expires_at": "2999-01-01T00:00:00+00:00", "reason": "outage", "by": "ops"},
    }


def events_of(service: ServiceProcess, token: str, type_name: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{service.url}/v1/events",
        params={"type": type_name},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def poll(condition: Any, timeout: float = 15.0) -> bool:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_a_report_the_service_refuses_for_good_is_set_aside_and_the_rest_still_arrives(
    tmp_path: Path, fake: FakeService, service: ServiceProcess, tokens: TokenMaker
) -> None:
    """A 422 report waiting first no longer holds back a missed report or a break-glass bypass."""
    repo = ServerRepo(tmp_path, fake)
    repo.install(url=service.url, token=tokens("hook"))
    reader = tokens("reader")
    head = git("rev-parse", "HEAD", cwd=repo.work)
    reports = repo.state_dir / "reports"
    reports.mkdir(parents=True)
    refused = report_body("r" * 300, "far-too-long-repository-name", head)  # the service: 422
    (reports / "0000000000001-1.json").write_text(json.dumps(refused))
    (reports / "0000000000002-1.json").write_text(
        json.dumps(report_body("canonical", "missed", head))
    )
    spool = repo.state_dir / "spool"
    spool.mkdir()
    (spool / "0000000000003-1-abcd.json").write_text(json.dumps(bypass_verdict(head)))
    git("branch", "topic", cwd=repo.work)

    assert repo.push("topic").returncode == 0

    rejected = repo.state_dir / "rejected" / "report-0000000000001-1.json"
    assert poll(lambda: not list(spool.glob("*.json")) and not list(reports.glob("*.json")))
    kept = json.loads(rejected.read_text())
    assert (kept["kind"], kept["status"]) == ("report", 422)
    assert "repository" in kept["answer"] and kept["item"] == refused
    branches = {e["fields"]["branch"] for e in events_of(service, reader, "branch_pushed")}
    assert branches == {"topic", "missed"}
    assert len(events_of(service, reader, "push_bypass")) == 1


def test_updates_and_verdicts_a_200_answer_refuses_are_kept_aside_not_dropped(
    tmp_path: Path, fake: FakeService, service: ServiceProcess, tokens: TokenMaker
) -> None:
    """A skipped branch and an invalid spooled verdict land in rejected/; the rest is recorded."""
    repo = ServerRepo(tmp_path, fake)
    repo.install(url=service.url, token=tokens("hook"))
    reader = tokens("reader")
    head = git("rev-parse", "HEAD", cwd=repo.work)
    spool = repo.state_dir / "spool"
    spool.mkdir(parents=True)
    invalid = {**bypass_verdict(head), "updates": "not a list", "spool_id": "0000000000004-1-dead"}
    (spool / "0000000000004-1-dead.json").write_text(json.dumps(invalid))
    (spool / "0000000000005-1-beef.json").write_text(json.dumps(bypass_verdict(head)))
    git("branch", "good", cwd=repo.work)
    git("update-ref", "refs/heads/-x", head, cwd=repo.work)

    pushed = repo.push("good", "refs/heads/-x:refs/heads/-x")
    assert pushed.returncode == 0, pushed.stderr

    rejected = repo.state_dir / "rejected"
    assert poll(lambda: len(list(rejected.glob("*.json"))) == 2 and not list(spool.glob("*")))
    report = json.loads(next(rejected.glob("report-*.json")).read_text())
    assert [s["ref"] for s in json.loads(report["answer"])["skipped"]] == ["refs/heads/-x"]
    spooled = json.loads((rejected / "spool-0000000000004-1-dead.json").read_text())
    assert spooled["item"]["spool_id"] == "0000000000004-1-dead"
    branches = {e["fields"]["branch"] for e in events_of(service, reader, "branch_pushed")}
    assert branches == {"good"}
    assert len(events_of(service, reader, "push_bypass")) == 1
