"""`integrator worker --check-retries`, with a real service, a real canonical repository and
the real worker in cutover: a check that fails once then passes lands and is recorded as flaky;
one that fails every time blocks with every attempt as evidence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from integrator.settings import Settings
from tests.support import TokenMaker
from tests.worker_support import WorkerWorld


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    with WorkerWorld(settings, tmp_path, tokens).start().guard() as world:
        yield world


def check_command(marker: Path) -> str:
    """Fails on a dirty tree (a rerun must start clean) and leaves junk; always fails on
    broken.txt; fails on flaky.txt until `marker` (outside the worktree) exists."""
    return (
        'test -z "$(git status --porcelain --ignored)" || { echo dirty; exit 9; }; '
        "echo junk > junk.txt; "
        "if [ -e broken.txt ]; then echo always broken; exit 5; fi; "
        f"if [ -e flaky.txt ] && [ ! -e {marker} ]; then touch {marker}; echo flaked; exit 1; fi; "
        "echo ok"
    )


def test_a_flaky_check_lands_and_is_recorded_and_a_broken_one_blocks_with_every_attempt(
    world: WorkerWorld, tmp_path: Path
) -> None:
    flaky = world.ready("flaky", path="flaky.txt")
    broken = world.ready("broken", path="broken.txt")
    world.cutover()
    command = check_command(tmp_path / "flaked-once")
    done = world.run_worker("--once", "--check", command, "--check-retries", "2")
    assert done.returncode == 0, done.stderr

    assert world.candidate(flaky)["status"] == "integrated"
    (event,) = world.events("check_flaky")
    assert event.fields["candidate_id"] == flaky and event.fields["slug"] == "flaky"
    assert event.fields["check"] == "check"
    attempts = event.fields["attempts"]
    assert [(a.get("exit_code"), a["timed_out"]) for a in attempts] == [(1, False), (0, False)]
    assert attempts[0]["output_tail"] == "flaked\n" and attempts[1]["output_tail"] == "ok\n"
    assert all(a["seconds"] >= 0 for a in attempts)

    assert world.candidate(broken)["status"] == "blocked"
    (blocked,) = world.events("integration_blocked")
    evidence = blocked.fields["conflict_evidence"]
    assert [(item["kind"], item["exit_code"]) for item in evidence] == [("check", 5)] * 3
    assert all(item["command"] == command for item in evidence)
    assert all(item["output_tail"] == "always broken\n" for item in evidence)
    assert "did not pass on any of 3 attempts" in blocked.fields["diagnostics"][0]
    (check,) = blocked.fields["checks"]
    assert check["name"] == "check" and check["status"] == "failed"
    assert [a["exit_code"] for a in check["attempts"]] == [5, 5, 5]


def test_outcome_check_attempts_that_cannot_be_stored_are_refused_naming_the_field(
    world: WorkerWorld,
) -> None:
    """A NUL in an output tail, and more attempts than a worker can make: 422, not a 500."""
    attempt = {"exit_code": 1, "timed_out": False, "seconds": 0.5, "output_tail": "bad\0"}
    check = {"status": "failed", "attempts": [attempt]}
    body = {"epoch": 1, "token": "t", "outcome": "would_block", "checks": {"unit": check}}
    refused = world.post("/v1/candidates/1/outcome", body, world.integrator)
    assert refused.status_code == 422, refused.text
    fields = [detail["field"] for detail in refused.json()["details"]]
    assert any("checks" in field and "attempts" in field for field in fields), fields

    many = {**check, "attempts": [{**attempt, "output_tail": "x"}] * 22}
    refused = world.post(
        "/v1/candidates/1/outcome", {**body, "checks": {"unit": many}}, world.integrator
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["details"][0]["field"].startswith("checks.unit.attempts")
