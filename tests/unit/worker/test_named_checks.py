"""Named checks on a real tree: in order, each from a clean tree with its own timeout; only an
exit 0 in time (with the declared result written) passes."""

from __future__ import annotations

from pathlib import Path

from integrator.check_contract import CheckStatus, not_green, status_of
from integrator.worker.check_config import CheckSpec
from integrator.worker.checks import CheckPlan, CheckRunner, run_checks


def plan(*specs: CheckSpec, retries: int = 0, **overrides: float) -> CheckPlan:
    return CheckPlan(specs, default_timeout=30.0, retries=retries, overrides=overrides)


def run(tmp_path: Path, checks: CheckPlan, resets: list[int] | None = None) -> list[CheckStatus]:
    work = tmp_path / "tree"
    work.mkdir(exist_ok=True)
    calls = resets if resets is not None else []
    done = run_checks(CheckRunner(), checks, work, tmp_path / "log", reset=lambda: calls.append(1))
    return [each.status for each in done]


def test_every_check_runs_in_order_and_passes_only_by_exiting_zero(tmp_path: Path) -> None:
    order = tmp_path / "order"
    statuses = run(
        tmp_path,
        plan(
            CheckSpec("unit", f"echo unit >> {order}"),
            CheckSpec("lint", f"echo lint >> {order}"),
        ),
    )
    assert statuses == [CheckStatus.passed, CheckStatus.passed]
    assert order.read_text() == "unit\nlint\n"


def test_after_the_first_check_that_fails_the_rest_are_not_run(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    statuses = run(
        tmp_path,
        plan(
            CheckSpec("unit", "true"),
            CheckSpec("lint", "exit 3"),
            CheckSpec("e2e", f"touch {ran}"),
        ),
    )
    assert statuses == [CheckStatus.passed, CheckStatus.failed, CheckStatus.not_run]
    assert not ran.exists()


def test_exit_77_is_skipped_a_signal_is_killed_and_both_fail(tmp_path: Path) -> None:
    assert run(tmp_path, plan(CheckSpec("unit", "exit 77"))) == [CheckStatus.skipped]
    assert run(tmp_path, plan(CheckSpec("unit", "kill -KILL $$"))) == [CheckStatus.killed]


def test_each_check_has_its_own_timeout_and_an_override_wins(tmp_path: Path) -> None:
    slow = CheckSpec("slow", "sleep 5", timeout=0.3)
    assert run(tmp_path, plan(slow)) == [CheckStatus.timed_out]
    quick = CheckSpec("quick", "sleep 0.5", timeout=0.1)
    assert run(tmp_path, plan(quick, quick=10.0)) == [CheckStatus.passed]


def test_exit_zero_without_the_declared_result_is_no_result(tmp_path: Path) -> None:
    report = CheckSpec("unit", "true", result="reports/junit.xml")
    assert run(tmp_path, plan(report)) == [CheckStatus.no_result]
    empty = CheckSpec("unit", "mkdir -p reports; : > reports/junit.xml", result="reports/junit.xml")
    assert run(tmp_path, plan(empty)) == [CheckStatus.no_result]
    wrote = CheckSpec(
        "unit", "mkdir -p reports; echo ok > reports/junit.xml", result="reports/junit.xml"
    )
    assert run(tmp_path, plan(wrote)) == [CheckStatus.passed]


def test_a_result_left_in_the_tree_before_the_run_does_not_count(tmp_path: Path) -> None:
    """A committed (or stale) result file is removed first: only this run's file counts."""
    tree = tmp_path / "tree"
    (tree / "reports").mkdir(parents=True)
    (tree / "reports" / "junit.xml").write_text("<old/>")
    report = CheckSpec("unit", "true", result="reports/junit.xml")
    assert run(tmp_path, plan(report)) == [CheckStatus.no_result]


def test_a_result_outside_the_tree_through_a_symlink_does_not_count(tmp_path: Path) -> None:
    outside = tmp_path / "outside.xml"
    outside.write_text("<ok/>")
    report = CheckSpec("unit", f"ln -s {outside} r.xml", result="r.xml")
    assert run(tmp_path, plan(report)) == [CheckStatus.no_result]


def test_every_check_after_the_first_starts_from_a_reset_tree(tmp_path: Path) -> None:
    resets: list[int] = []
    run(tmp_path, plan(CheckSpec("a", "true"), CheckSpec("b", "true")), resets)
    assert resets == [1]


def test_a_status_is_a_pass_only_for_exit_zero_in_time() -> None:
    assert status_of(0, timed_out=False) is CheckStatus.passed
    assert status_of(0, timed_out=True) is CheckStatus.timed_out
    assert status_of(None, timed_out=False) is CheckStatus.killed
    assert status_of(-9, timed_out=False) is CheckStatus.killed
    assert status_of(77, timed_out=False) is CheckStatus.skipped
    assert status_of(1, timed_out=False) is CheckStatus.failed
    assert status_of(0, timed_out=False, result_written=False) is CheckStatus.no_result


def test_green_needs_every_required_check_passed_and_no_listed_check_failed() -> None:
    passed = {"name": "unit", "status": "passed", "attempts": []}
    assert not_green(["unit"], [passed]) == []
    assert not_green([], [passed]) == []
    assert not_green(["unit", "lint"], [passed]) == ["required check 'lint' was not run"]
    skipped = {"name": "lint", "status": "skipped", "attempts": []}
    assert not_green(["lint"], [passed, skipped]) == ["required check 'lint' is skipped"]
    assert not_green([], [passed, skipped]) == ["check 'lint' is skipped"]
