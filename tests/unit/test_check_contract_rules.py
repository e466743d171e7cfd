"""The check contract's rules at their edges: a check name's length and shape, what each
exit says, when a report contradicts its own attempts, and the limits an outcome carries."""

from __future__ import annotations

import pytest

from integrator.check_contract import (
    DEFAULT_NAME,
    MAX_CHECK_ATTEMPTS,
    MAX_CHECKS,
    NAME_MAX_LENGTH,
    REPORTED,
    SKIPPED_EXIT_CODE,
    CheckStatus,
    consistency_problem,
    missing,
    name_problem,
    not_green,
    status_of,
)

PASSED = {"exit_code": 0, "timed_out": False}


def test_a_check_name_is_at_most_64_characters() -> None:
    assert name_problem("a" * 64) is None
    assert name_problem("a" * 65) == "a check name is at most 64 characters"


@pytest.mark.parametrize("name", ["unit", "0", "a_b.c-d", DEFAULT_NAME])
def test_lowercase_names_starting_with_a_letter_or_digit_are_check_names(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["", "Unit", "-unit", ".unit", "unit test", "FOO=1"])
def test_anything_else_is_refused_with_the_rule(name: str) -> None:
    assert name_problem(name) == (
        f"{name!r} is not a check name: use lowercase letters, digits, '_', '.' and '-', "
        "starting with a letter or a digit"
    )


@pytest.mark.parametrize(
    ("exit_code", "status"),
    [
        (-1, CheckStatus.killed),
        (1, CheckStatus.failed),
        (SKIPPED_EXIT_CODE - 1, CheckStatus.failed),
        (77, CheckStatus.skipped),
        (SKIPPED_EXIT_CODE + 1, CheckStatus.failed),
        (0, CheckStatus.passed),
    ],
)
def test_each_exit_code_has_one_status(exit_code: int, status: CheckStatus) -> None:
    assert status_of(exit_code, timed_out=False) is status


def test_a_timeout_wins_over_any_exit_and_a_missing_result_only_spoils_exit_zero() -> None:
    assert status_of(77, timed_out=True) is CheckStatus.timed_out
    assert status_of(1, timed_out=False, result_written=False) is CheckStatus.failed


def test_a_not_run_check_has_no_attempts_and_every_other_has_one() -> None:
    assert consistency_problem(CheckStatus.not_run, []) is None
    assert consistency_problem(CheckStatus.not_run, [PASSED]) == "a not_run check has no attempts"
    assert consistency_problem(CheckStatus.failed, []) == "a failed check has at least one attempt"
    assert consistency_problem(CheckStatus.failed, [{"exit_code": 1, "timed_out": False}]) is None


def test_a_passed_check_is_judged_by_its_last_attempt() -> None:
    failed = {"exit_code": 1, "timed_out": False}
    assert consistency_problem(CheckStatus.passed, [failed, PASSED]) is None
    expected = "a passed check's last attempt exited 0 within its timeout"
    assert consistency_problem(CheckStatus.passed, [PASSED, failed]) == expected
    late = {"exit_code": 0, "timed_out": True}
    assert consistency_problem(CheckStatus.passed, [late]) == expected
    assert consistency_problem(CheckStatus.timed_out, [late]) is None


def test_a_failed_required_check_and_a_failed_extra_one_are_each_named() -> None:
    checks = [
        {"name": "unit", "status": "failed"},
        {"name": "lint", "status": "passed"},
        {"name": "docs", "status": "timed_out"},
    ]
    assert not_green(["unit", "lint"], checks) == [
        "required check 'unit' is failed",
        "check 'docs' is timed_out",
    ]


def test_missing_lists_the_required_checks_a_worker_lacks_in_the_services_order() -> None:
    assert missing(["unit", "lint", "docs"], ["docs", "other"]) == ["unit", "lint"]
    assert missing([], ["unit"]) == []


def test_only_a_pass_a_failure_and_a_timeout_count_as_reported() -> None:
    assert sorted(REPORTED) == ["failed", "passed", "timed_out"]


def test_the_status_codes_and_limits_outcomes_carry() -> None:
    assert [s.value for s in CheckStatus] == [
        "passed", "failed", "timed_out", "killed", "skipped", "no_result", "not_run",
    ]  # fmt: skip
    assert (DEFAULT_NAME, NAME_MAX_LENGTH, MAX_CHECKS, MAX_CHECK_ATTEMPTS) == ("check", 64, 50, 21)


def test_a_passed_checks_exit_code_may_be_written_as_a_whole_number() -> None:
    """`0.0` is the integer 0 to JSON Schema: the published `const: 0` takes it, so does the
    service."""
    from integrator.check_reports import CheckReport

    report = CheckReport.model_validate(
        {"status": "passed", "attempts": [{"exit_code": 0.0, "timed_out": False, "seconds": 1}]}
    )
    assert report.attempts[0].exit_code == 0


def test_checks_are_keyed_by_name_and_kept_in_the_order_they_ran() -> None:
    """A request names each check once, as a key; the service keeps them as the events list
    them: each with its name, in the order sent. A key that is no check name is refused."""
    from pydantic import TypeAdapter, ValidationError

    from integrator.check_reports import ChecksByName, listed

    by_name = TypeAdapter(ChecksByName)
    sent = {"unit": {"status": "failed", "attempts": [{"exit_code": 1, "timed_out": False,
            "seconds": 2}]}, "lint": {"status": "not_run"}}  # fmt: skip
    assert listed(by_name.validate_python(sent)) == [
        {"name": "unit", "status": "failed",
         "attempts": [{"exit_code": 1, "timed_out": False, "seconds": 2.0, "output_tail": ""}]},
        {"name": "lint", "status": "not_run", "attempts": []},
    ]  # fmt: skip
    for bad in ("Unit", "", "-x", "x" * 65):
        with pytest.raises(ValidationError):
            by_name.validate_python({bad: {"status": "not_run"}})
    with pytest.raises(ValidationError):
        by_name.validate_python({f"c{n}": {"status": "not_run"} for n in range(MAX_CHECKS + 1)})
