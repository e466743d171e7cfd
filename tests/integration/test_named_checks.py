"""The check contract with a real service, the real worker and real git: named checks run in
order, each with its own timeout; only an exit 0 in time (with its declared result written)
passes; every configured check is reported; the service refuses green without the required
checks; the cutover evidence waits for every check to report; an operator's per-candidate
timeout reaches the worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integrator.settings import Settings
from integrator.worker.check_config import CheckSpec
from integrator.worker.loop import Worker, WorkerExit, WorkerOptions
from tests.support import TokenMaker, run_cli
from tests.worker_support import WorkerWorld


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    with WorkerWorld(settings, tmp_path, tokens).start() as world:
        yield world


@pytest.fixture
def strict(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    """A service that requires the checks `unit` and `lint` for green."""
    required = settings.model_copy(update={"required_checks": ["unit", "lint"]})
    with WorkerWorld(required, tmp_path, tokens).start() as world:
        yield world


def checks_of(world: WorkerWorld, event_type: str, candidate: int) -> list[dict[str, Any]]:
    (event,) = [
        e
        for e in world.events(event_type)
        if e.fields.get("candidate_id", candidate) == candidate
        and e.sha == world.candidate(candidate)["sha"]
    ]
    checks: list[dict[str, Any]] = event.fields["checks"]
    return checks


def statuses(checks: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["name"], c["status"]) for c in checks]


def test_two_named_checks_that_pass_integrate_and_the_outcome_lists_both_passed(
    world: WorkerWorld,
) -> None:
    world.guard()
    candidate = world.ready("both")
    world.cutover()
    done = world.run_worker("--once", "--check", "unit=echo unit", "--check", "lint=echo lint")
    assert done.returncode == 0, done.stderr
    assert world.candidate(candidate)["status"] == "integrated"
    checks = checks_of(world, "integration_completed", candidate)
    assert statuses(checks) == [("unit", "passed"), ("lint", "passed")]
    assert [c["attempts"][0]["output_tail"] for c in checks] == ["unit\n", "lint\n"]
    assert all(c["attempts"][0]["exit_code"] == 0 for c in checks)


def test_the_second_check_failing_blocks_with_its_evidence_and_the_rest_are_not_run(
    world: WorkerWorld, tmp_path: Path
) -> None:
    world.guard()
    candidate = world.ready("second")
    world.cutover()
    ran = tmp_path / "e2e-ran"
    checks_file = tmp_path / "checks.toml"
    checks_file.write_text(
        f"""
[checks.unit]
command = "echo unit ok"

[checks.lint]
command = "echo lint says no; exit 3"

[checks.e2e]
command = "touch {ran}"
"""
    )
    done = world.run_worker("--once", "--checks-file", str(checks_file))
    assert done.returncode == 0, done.stderr
    assert world.candidate(candidate)["status"] == "blocked"
    (blocked,) = world.events("integration_blocked")
    assert statuses(blocked.fields["checks"]) == [
        ("unit", "passed"),
        ("lint", "failed"),
        ("e2e", "not_run"),
    ]
    assert blocked.fields["checks"][2]["attempts"] == []
    (item,) = blocked.fields["conflict_evidence"]
    assert item == {
        "kind": "check",
        "command": "echo lint says no; exit 3",
        "exit_code": 3,
        "output_tail": "lint says no\n",
    }
    first = blocked.fields["diagnostics"][0]
    assert "check lint" in first and "exit code 3" in first and "(status failed)" in first
    assert "not run, since lint did not pass: e2e" in blocked.fields["diagnostics"]
    assert blocked.fields["next_action"].startswith(
        "check lint (`echo lint says no; exit 3`) failed"
    )
    assert not ran.exists()


#: One check whose behaviour each candidate picks with the file it adds.
BEHAVIOURS = (
    "if [ -e skip.txt ]; then echo skipping; exit 77; fi; "
    "if [ -e kill.txt ]; then kill -KILL $$; fi; "
    "if [ -e hang.txt ]; then sleep 60; fi; "
    "if [ -e silent.txt ]; then echo all good; exit 0; fi; "
    "mkdir -p reports; echo '<testsuite/>' > reports/junit.xml"
)


def test_skipped_killed_timed_out_and_resultless_checks_are_failures_each_named(
    world: WorkerWorld, tmp_path: Path
) -> None:
    """Shadow: each would block, with its status in the diagnostics, the next action and the
    outcome's checks; the check's own timeout (3 s) applies, not --check-timeout."""
    ids = {
        name: world.ready(name, path=f"{name}.txt") for name in ("skip", "kill", "hang", "silent")
    }
    good = world.ready("good", path="good.txt")
    checks_file = tmp_path / "checks.toml"
    checks_file.write_text(
        f'[checks.unit]\ncommand = "{BEHAVIOURS}"\ntimeout_seconds = 3\n'
        'result = "reports/junit.xml"\n'
    )
    done = world.run_worker("--once", "--checks-file", str(checks_file), timeout=120)
    assert done.returncode == 0, done.stderr

    expected = {"skip": "skipped", "kill": "killed", "hang": "timed_out", "silent": "no_result"}
    for name, status in expected.items():
        (event,) = [e for e in world.events("would_block") if e.fields["candidate_id"] == ids[name]]
        assert statuses(event.fields["checks"]) == [("unit", status)], name
        assert f"(status {status})" in event.fields["diagnostics"][0], event.fields
        assert "check unit" in event.fields["next_action"]
    (hang,) = [e for e in world.events("would_block") if e.fields["candidate_id"] == ids["hang"]]
    assert "within its 3s timeout" in hang.fields["diagnostics"][0]
    assert hang.fields["checks"][0]["attempts"][0]["timed_out"] is True
    (kill,) = [e for e in world.events("would_block") if e.fields["candidate_id"] == ids["kill"]]
    assert "killed by signal 9 (SIGKILL)" in kill.fields["diagnostics"][0]
    (silent,) = [
        e for e in world.events("would_block") if e.fields["candidate_id"] == ids["silent"]
    ]
    assert "did not write its declared result reports/junit.xml" in silent.fields["diagnostics"][0]
    assert "write reports/junit.xml" in silent.fields["next_action"]
    (passed,) = world.events("would_integrate")
    assert passed.fields["candidate_id"] == good
    assert statuses(passed.fields["checks"]) == [("unit", "passed")]


def test_a_worker_without_a_required_check_refuses_to_start_naming_it(
    strict: WorkerWorld,
) -> None:
    candidate = strict.ready("waits")
    done = strict.run_worker("--once", "--check", "unit=true")
    assert done.returncode == 2
    assert "lint" in done.stderr and "--check lint=CMD" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert strict.candidate(candidate)["status"] == "queued"
    assert strict.get("/v1/checks") == {"required": ["unit", "lint"]}


def test_the_service_refuses_green_without_every_required_check_passed(
    strict: WorkerWorld,
) -> None:
    """409 checks_incomplete naming the check; the handout stays with the holder, which gives
    it back; with every required check passed the same prediction is recorded."""
    candidate = strict.ready("refused")
    grant = strict.post("/v1/lease/acquire", {"holder": "manual"}, strict.integrator).json()
    fence = {"epoch": grant["epoch"], "token": grant["token"]}
    handed = strict.post("/v1/queue/next", fence, strict.integrator)
    assert handed.status_code == 200, handed.text
    assert handed.json()["required_checks"] == ["unit", "lint"]
    passed = {"status": "passed", "attempts": [
        {"exit_code": 0, "timed_out": False, "seconds": 0.1, "output_tail": ""}]}  # fmt: skip
    skipped = {"status": "skipped", "attempts": [
        {"exit_code": 77, "timed_out": False, "seconds": 0.1, "output_tail": ""}]}  # fmt: skip
    outcome = {**fence, "outcome": "would_integrate", "attempt": "a1", "main_sha": None}
    path = f"/v1/candidates/{candidate}/outcome"
    for checks, named in (
        ({"unit": passed}, "'lint' was not run"),
        ({"unit": passed, "lint": skipped}, "'lint' is skipped"),
    ):
        refused = strict.post(path, {**outcome, "checks": checks}, strict.integrator)
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "checks_incomplete"
        assert named in refused.json()["message"]
        assert strict.candidate(candidate)["status"] == "in_progress"
    lint = {**skipped, "status": "passed", "attempts": [{**skipped["attempts"][0], "exit_code": 0}]}
    accepted = strict.post(
        path, {**outcome, "checks": {"unit": passed, "lint": lint}}, strict.integrator
    )
    assert accepted.status_code == 200, accepted.text
    assert strict.candidate(candidate)["status"] == "predicted"


def test_a_report_that_contradicts_itself_is_refused_as_bad_input(world: WorkerWorld) -> None:
    """A `passed` check whose last attempt failed, a key that is no check name, checks as a
    list: 422 naming the check in `checks`."""
    failed = {"exit_code": 1, "timed_out": False, "seconds": 0.1, "output_tail": ""}
    body = {"epoch": 1, "token": "t", "outcome": "would_integrate"}
    lie = {"status": "passed", "attempts": [failed]}
    for checks, field in (
        ({"unit": lie}, "checks.unit"),
        ({"Unit Tests": {"status": "not_run"}}, "checks.Unit Tests"),
        ([{"name": "unit", "status": "not_run", "attempts": []}], "checks"),
    ):
        refused = world.post(
            "/v1/candidates/1/outcome", {**body, "checks": checks}, world.integrator
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["details"][0]["field"].startswith(field), refused.text


def evidence_item(world: WorkerWorld) -> dict[str, Any]:
    body = world.get("/v1/evidence")
    (item,) = [i for i in body["items"] if i["code"] == "checks_reported"]
    return item


def test_cutover_waits_until_every_configured_check_has_reported_on_a_shadow_candidate(
    strict: WorkerWorld, tmp_path: Path
) -> None:
    item = evidence_item(strict)
    assert not item["ok"]
    assert any("unit is required but has not reported" in b for b in item["blockers"])
    refused = strict.post("/v1/cutover", {"reason": "go"}, strict.operator)
    assert refused.status_code == 409
    assert any(b.startswith("checks_reported: check lint") for b in refused.json()["blockers"])

    strict.ready("skips", path="skips.txt")
    checks = "unit=true", "lint=exit 77", "docs=true"
    done = strict.run_worker("--once", *[arg for c in checks for arg in ("--check", c)])
    assert done.returncode == 0, done.stderr
    item = evidence_item(strict)
    assert not item["ok"] and item["numbers"]["reported"] == {"unit": 1, "lint": 0, "docs": 0}
    assert any("lint has never reported" in b and "skipped 1x" in b for b in item["blockers"])
    assert any("docs has never reported" in b and "not_run 1x" in b for b in item["blockers"])

    strict.ready("runs", path="runs.txt")
    checks = "unit=true", "lint=exit 1", "docs=true"
    done = strict.run_worker("--once", *[arg for c in checks for arg in ("--check", c)])
    assert done.returncode == 0, done.stderr
    assert [b for b in evidence_item(strict)["blockers"] if "lint" in b] == []
    assert not evidence_item(strict)["ok"]  # docs did not run after lint failed

    strict.ready("green", path="green.txt")
    checks = "unit=true", "lint=true", "docs=true"
    done = strict.run_worker("--once", *[arg for c in checks for arg in ("--check", c)])
    assert done.returncode == 0, done.stderr
    item = evidence_item(strict)
    assert item["ok"], item
    assert item["numbers"]["reported"] == {"unit": 3, "lint": 2, "docs": 1}


def test_with_no_checks_configured_the_evidence_item_passes_and_says_so(
    world: WorkerWorld,
) -> None:
    item = evidence_item(world)
    assert item["ok"] and "no checks configured" in item["title"]


def test_an_operators_check_timeout_for_one_candidate_reaches_the_worker_and_is_recorded(
    world: WorkerWorld,
) -> None:
    longer = world.ready("longer", path="longer.txt")
    default = world.ready("default", path="default.txt")
    env = world.worker_env()
    env["INTEGRATOR_TOKEN"] = world.tokens("operator")
    set_ = run_cli("queue", "check-timeout", "longer", "unit", "30", "--reason", "slow migration",
                   env=env)  # fmt: skip
    assert set_.returncode == 0, set_.stderr
    assert "unit=30s" in set_.stdout
    for bad in (["longer", "Unit", "30"], ["longer", "unit", "0"]):
        refused = run_cli("queue", "check-timeout", *bad, "--reason", "x", env=env)
        assert refused.returncode == 2, refused.stdout + refused.stderr
    (event,) = world.events("check_timeout_overridden")
    assert event.fields["candidate_id"] == longer and event.fields["check"] == "unit"
    assert event.fields["seconds"] == 30 and event.fields["reason"] == "slow migration"
    shown = run_cli("queue", "show", "longer", env=env)
    assert "check_timeout_overridden unit 30s by" in shown.stdout, shown.stdout

    done = world.run_worker("--once", "--check", "unit=sleep 2", "--check-timeout", "1")
    assert done.returncode == 0, done.stderr
    (passed,) = world.events("would_integrate")
    assert passed.fields["candidate_id"] == longer
    (timed_out,) = world.events("would_block")
    assert timed_out.fields["candidate_id"] == default
    assert statuses(timed_out.fields["checks"]) == [("unit", "timed_out")]


def test_bad_check_configuration_is_one_line_and_exit_2(world: WorkerWorld, tmp_path: Path) -> None:
    for args, message in (
        (["--check", "unit=a", "--check", "unit=b"], "'unit' is declared twice"),
        (["--check", "make a", "--check", "make b"], "name each check"),
        (["--check", "unit="], "is empty"),
        (["--checks-file", str(tmp_path / "absent.toml")], "no such file"),
    ):
        done = world.run_worker("--once", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def in_process_worker(world: WorkerWorld, tmp_path: Path, *checks: CheckSpec) -> Worker:
    settings = world.settings.model_copy(
        update={"url": world.service.url, "token": world.integrator_token}
    )
    options = WorkerOptions(
        repo=str(world.canonical.bare),
        workspace=tmp_path / "in-process",
        checks=checks,
        once=True,
        poll_interval=0.2,
    )
    return Worker(settings, options)


def test_a_worker_that_learns_of_a_required_check_from_its_handout_gives_the_candidate_back(
    strict: WorkerWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The requirement changed after the worker started (simulated: its start-up read said
    none): the handout names the checks, and the worker stops before merging anything."""
    candidate = strict.ready("late")
    bot = in_process_worker(strict, tmp_path, CheckSpec("unit", "true"))
    monkeypatch.setattr(bot, "_required_checks", list)
    with pytest.raises(WorkerExit) as stopped:
        bot.run()
    assert stopped.value.code == 2 and "lint" in stopped.value.message
    assert strict.candidate(candidate)["status"] == "queued"
    assert strict.events("would_integrate", "would_block") == []


def test_a_green_outcome_the_service_refuses_sends_the_candidate_back_and_stops_the_worker(
    strict: WorkerWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should a worker report green without a required check (its own checks skipped here),
    the service's 409 checks_incomplete makes it give the candidate back and exit 2."""
    candidate = strict.ready("unchecked")
    bot = in_process_worker(strict, tmp_path, CheckSpec("unit", "true"))
    monkeypatch.setattr(bot, "_require", lambda *_: None)
    with pytest.raises(WorkerExit) as stopped:
        bot.run()
    assert stopped.value.code == 2
    assert "checks_incomplete" in stopped.value.message and "'lint'" in stopped.value.message
    assert strict.candidate(candidate)["status"] == "queued"
    assert strict.events("would_integrate") == []
