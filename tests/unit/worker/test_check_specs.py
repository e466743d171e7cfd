"""Named checks as the worker is configured with them: `--check NAME=CMD` or a plain command,
and `--checks-file` (TOML); every mistake is one readable line."""

from __future__ import annotations

from pathlib import Path

import pytest

from integrator.worker.check_config import (
    CheckConfigError,
    CheckSpec,
    configured_checks,
    parse_check_option,
    read_checks_file,
)


@pytest.mark.parametrize(
    ("text", "name", "command"),
    [
        ("unit=make test", "unit", "make test"),
        ("lint.py-3_x=ruff check .", "lint.py-3_x", "ruff check ."),
        ("e2e=FOO=1 make e2e", "e2e", "FOO=1 make e2e"),
        ("9=true", "9", "true"),
        ("check=x=1 make", "check", "x=1 make"),
    ],
)
def test_a_lowercase_name_right_before_the_first_equals_sign_names_the_check(
    text: str, name: str, command: str
) -> None:
    assert parse_check_option(text) == CheckSpec(name=name, command=command)


@pytest.mark.parametrize(
    "text",
    [
        "make test",
        "FOO=1 make",
        "Unit=make test",
        "pytest -k 'a=b'",
        "./run.sh --level=3",
        "_x=1 make",
        "-x=1",
        "unit =make",
    ],
)
def test_any_other_text_is_one_command_named_check(text: str) -> None:
    """An upper-case assignment, a space before `=`, an option's `=`: all stay commands."""
    assert parse_check_option(text) == CheckSpec(name="check", command=text)


@pytest.mark.parametrize("text", ["unit=", "unit=   ", "", "  "])
def test_an_empty_command_is_refused(text: str) -> None:
    with pytest.raises(CheckConfigError, match="is empty"):
        parse_check_option(text)


def test_a_name_too_long_is_refused() -> None:
    with pytest.raises(CheckConfigError, match="at most 64"):
        parse_check_option("a" * 65 + "=make")


def test_two_checks_with_one_name_are_refused_and_two_plain_ones_are_told_to_be_named() -> None:
    with pytest.raises(CheckConfigError, match="'unit' is declared twice"):
        configured_checks(["unit=make a", "unit=make b"], None)
    with pytest.raises(CheckConfigError, match=r"declared twice \(name each check"):
        configured_checks(["make a", "make b"], None)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "checks.toml"
    path.write_text(text)
    return path


def test_the_file_declares_checks_in_order_with_their_timeouts_and_results(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        """
[checks.unit]
command = "make test"
timeout_seconds = 1800
result = "reports/junit.xml"

[checks.lint]
command = "make lint"
""",
    )
    assert read_checks_file(path) == [
        CheckSpec("unit", "make test", timeout=1800.0, result="reports/junit.xml"),
        CheckSpec("lint", "make lint"),
    ]


def test_the_files_checks_run_before_the_command_lines_and_share_its_names(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, '[checks.unit]\ncommand = "make test"\n')
    specs = configured_checks(["lint=make lint"], path)
    assert [spec.name for spec in specs] == ["unit", "lint"]
    with pytest.raises(CheckConfigError, match="'unit' is declared twice"):
        configured_checks(["unit=make other"], path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not toml [", "not valid TOML"),
        ("", "no checks"),
        ("[checks]\n", "no checks"),
        ('[check.unit]\ncommand = "x"\n', "unknown top-level key(s) check"),
        ('[checks.Unit]\ncommand = "x"\n', "'Unit' is not a check name"),
        ("[checks.unit]\ntimeout_seconds = 5\n", "command must be a non-empty string"),
        ('[checks.unit]\ncommand = ""\n', "command must be a non-empty string"),
        ('[checks.unit]\ncommand = "x"\ntimeout_seconds = 0\n', "positive number"),
        ('[checks.unit]\ncommand = "x"\ntimeout_seconds = "1h"\n', "positive number"),
        ('[checks.unit]\ncommand = "x"\nresult = "/tmp/r.xml"\n', "relative path"),
        ('[checks.unit]\ncommand = "x"\nresult = "../r.xml"\n', "relative path"),
        ('[checks.unit]\ncommand = "x"\nretries = 2\n', "unknown key(s) retries"),
        ('checks = "make"\n', "no checks"),
    ],
)
def test_a_bad_file_is_refused_in_one_line_naming_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CheckConfigError) as refused:
        read_checks_file(path)
    line = str(refused.value)
    assert message in line and str(path) in line and "\n" not in line.strip()


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckConfigError, match="no such file"):
        read_checks_file(tmp_path / "absent.toml")


def test_the_timeout_a_check_runs_under_override_then_its_own_then_the_default() -> None:
    unit = CheckSpec("unit", "make test", timeout=60.0)
    lint = CheckSpec("lint", "make lint")
    assert unit.timeout_or(3600.0) == 60.0
    assert lint.timeout_or(3600.0) == 3600.0
    assert unit.timeout_or(3600.0, {"unit": 7200.0}) == 7200.0
    assert lint.timeout_or(3600.0, {"unit": 7200.0}) == 3600.0
