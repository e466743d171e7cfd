"""`--check-retries`: a failed check is rerun on the same tree; a later pass integrates and is
flaky, a failure on every attempt blocks with every attempt as evidence."""

from __future__ import annotations

from pathlib import Path

from integrator.worker.check_config import CheckSpec
from integrator.worker.checks import CheckResult, CheckRun, CheckRunner, run_with_retries
from integrator.worker.landing import PushFacts, Verdict
from integrator.worker.trial import Trial, judge
from integrator.worker.workspace import Merged
from tests.unit.worker.trial_support import BASE, MERGED, assert_recordable, handed


def fails_first_time(marker: Path) -> str:
    """A check that fails while `marker` (outside the worktree) does not exist, creating it."""
    return f"if [ -e {marker} ]; then echo passed; exit 0; fi; touch {marker}; echo flake; exit 1"


def spec(command: str) -> CheckSpec:
    return CheckSpec(name="check", command=command)


def test_a_check_that_fails_once_is_rerun_and_its_pass_decides(tmp_path: Path) -> None:
    """Two runs: the failure (exit 1, its output) and the pass; the tree is reset in between."""
    resets: list[int] = []
    check = spec(fails_first_time(tmp_path / "marker"))
    work = tmp_path / "work"
    work.mkdir()
    runs = run_with_retries(
        CheckRunner(), check, 30, 2, work, tmp_path / "log", reset=lambda: resets.append(1)
    )
    assert [(run.exit_code, run.ok) for run in runs] == [(1, False), (0, True)]
    assert runs[0].output_tail == "flake\n" and runs[1].output_tail == "passed\n"
    assert resets == [1]


def test_a_check_that_always_fails_runs_retries_plus_one_times(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    check = spec(f"echo run >> {counter}; exit 4")
    runs = run_with_retries(CheckRunner(), check, 30, 2, tmp_path, tmp_path / "log", lambda: None)
    assert [run.exit_code for run in runs] == [4, 4, 4]
    assert counter.read_text() == "run\nrun\nrun\n"


def test_without_retries_a_failed_check_runs_once(tmp_path: Path) -> None:
    check = spec(fails_first_time(tmp_path / "marker"))
    runs = run_with_retries(CheckRunner(), check, 30, 0, tmp_path, tmp_path / "log", lambda: None)
    assert [run.exit_code for run in runs] == [1]


def test_a_timed_out_check_is_retried_too(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    check = spec(f"[ -e {marker} ] && exit 0; touch {marker}; sleep 30")
    runs = run_with_retries(CheckRunner(), check, 0.5, 1, tmp_path, tmp_path / "log", lambda: None)
    assert [(run.timed_out, run.ok) for run in runs] == [(True, False), (False, True)]


def test_a_cancelled_check_is_not_retried(tmp_path: Path) -> None:
    """The worker is stopping: no rerun after a cancel."""
    runner = CheckRunner()
    runner.cancel()
    runs = run_with_retries(runner, spec("exit 1"), 30, 3, tmp_path, tmp_path / "log", lambda: None)
    assert len(runs) == 1 and runs[0].cancelled


def run(exit_code: int | None, timed_out: bool = False, tail: str = "out\n") -> CheckResult:
    return CheckResult("make test", exit_code, timed_out, False, tail, 1.25, timeout=30)


def retried(*runs: CheckResult, **facts: object) -> Trial:
    return Trial(
        base=BASE,
        attempt="att-1",
        merge=Merged(ok=True, conflicts=(), output=""),
        merged_sha=MERGED,
        checks=(CheckRun(spec("make test"), runs),),
        **facts,  # type: ignore[arg-type]
    )


def test_a_pass_after_a_failure_would_integrate_with_every_attempt() -> None:
    decision = judge(handed("shadow"), retried(run(1, tail="boom\n"), run(0)))
    assert decision.outcome == "would_integrate"
    assert decision.body()["checks"] == {
        "check": {
            "status": "passed",
            "attempts": [
                {"exit_code": 1, "timed_out": False, "seconds": 1.25, "output_tail": "boom\n"},
                {"exit_code": 0, "timed_out": False, "seconds": 1.25, "output_tail": "out\n"},
            ],
        }
    }
    assert any("flaky" in line for line in decision.diagnostics)


def test_a_pass_after_a_timeout_integrates_in_cutover_with_the_timeout_recorded() -> None:
    push = PushFacts(Verdict.landed, new=MERGED, main=BASE, registration_id=5)
    decision = judge(handed("cutover"), retried(run(None, timed_out=True), run(0), push=push))
    assert decision.outcome == "integrated" and decision.registration_id == 5
    (check,) = decision.checks.values()
    first, second = check["attempts"]
    assert first["timed_out"] is True and "exit_code" not in first
    assert second["exit_code"] == 0


def test_a_plain_pass_carries_its_one_attempt_and_is_not_flaky() -> None:
    decision = judge(handed("shadow"), retried(run(0)))
    (check,) = decision.body()["checks"].values()
    assert check["status"] == "passed" and len(check["attempts"]) == 1
    assert not any("flaky" in line for line in decision.diagnostics)


def test_a_failure_on_every_attempt_blocks_with_each_attempt_as_check_evidence() -> None:
    decision = judge(
        handed("cutover"), retried(run(2, tail="a\n"), run(None, timed_out=True), run(3))
    )
    assert decision.outcome == "blocked"
    assert [(item["kind"], item.get("exit_code")) for item in decision.conflict_evidence] == [
        ("check", 2),
        ("check", None),
        ("check", 3),
    ]
    assert all(item["command"] == "make test" for item in decision.conflict_evidence)
    assert "did not pass on any of 3 attempts" in decision.diagnostics[0]
    assert "exit 2, timed out, exit 3" in decision.diagnostics[0]
    assert "integrator submit" in (decision.next_action or "")
    (check,) = decision.body()["checks"].values()
    assert check["status"] == "failed" and len(check["attempts"]) == 3
    assert_recordable(decision)
