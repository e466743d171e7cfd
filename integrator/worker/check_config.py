"""The worker's named checks: `--check NAME=CMD` (repeatable) and `--checks-file FILE`.

Telling a name from a command: `--check` text is `NAME=CMD` only when it *starts* with a check
name — lowercase letters, digits, `_`, `.`, `-`, starting with a letter or a digit —
immediately followed by `=`. Anything else is a plain command, run as the check named
`check`: `FOO=1 make test` (upper case), `make test`, `pytest -k "a=b"` (a space before the
`=`). To run a command that itself starts with a lowercase `var=` assignment, name it:
`--check check=var=1 make test`.

The file is TOML, one table per check, in the order they run:

    [checks.unit]
    command = "make test"
    timeout_seconds = 1800          # optional; default --check-timeout
    result = "reports/junit.xml"    # optional; exit 0 without writing it is `no_result`

Checks from the file run first, then the `--check` ones, in the order given. A duplicate
name, an empty command or a bad file is refused (`CheckConfigError`, one line).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from integrator.check_contract import DEFAULT_NAME, MAX_CHECKS, name_problem

_NAMED = re.compile(r"([a-z0-9][a-z0-9_.-]*)=(.*)", re.DOTALL)
_FILE_KEYS = frozenset({"command", "timeout_seconds", "result"})


class CheckConfigError(ValueError):
    """The checks as configured cannot be run; the message is one line for the operator."""


@dataclass(frozen=True)
class CheckSpec:
    """One named check: a shell command run in the merged tree."""

    name: str
    command: str
    #: Its own timeout in seconds; None: the worker's --check-timeout.
    timeout: float | None = None
    #: A file (relative to the tree) the check must write for a pass.
    result: str | None = None

    def timeout_or(self, default: float, overrides: Mapping[str, float] | None = None) -> float:
        """The timeout it runs under: an operator's override for the candidate, else its own,
        else the default."""
        if overrides and self.name in overrides:
            return float(overrides[self.name])
        return self.timeout if self.timeout is not None else default


def parse_check_option(text: str) -> CheckSpec:
    """One `--check` value: `NAME=CMD` or a plain command (named `check`)."""
    named = _NAMED.fullmatch(text)
    name, command = (named.group(1), named.group(2)) if named else (DEFAULT_NAME, text)
    problem = name_problem(name)
    if problem:
        raise CheckConfigError(f"--check {text!r}: {problem}")
    if not command.strip():
        raise CheckConfigError(f"--check {text!r}: the command of check {name!r} is empty")
    return CheckSpec(name=name, command=command)


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise CheckConfigError(f"{where}: timeout_seconds must be a positive number of seconds")
    if value > 10**7:
        raise CheckConfigError(f"{where}: timeout_seconds is at most 10000000")
    return float(value)


def _result_path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CheckConfigError(f"{where}: result must be a non-empty path inside the tree")
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        raise CheckConfigError(
            f"{where}: result {value!r} must be a relative path inside the tree (no '..')"
        )
    return value


def _spec_from_table(name: str, table: Any, where: str) -> CheckSpec:
    problem = name_problem(name)
    if problem:
        raise CheckConfigError(f"{where}: {problem}")
    if not isinstance(table, dict):
        raise CheckConfigError(f"{where}: [checks.{name}] must be a table with a command")
    unknown = sorted(set(table) - _FILE_KEYS)
    if unknown:
        raise CheckConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: command, timeout_seconds, "
            "result)"
        )
    command = table.get("command")
    if not isinstance(command, str) or not command.strip():
        raise CheckConfigError(f"{where}: command must be a non-empty string")
    timeout = table.get("timeout_seconds")
    result = table.get("result")
    return CheckSpec(
        name=name,
        command=command,
        timeout=None if timeout is None else _positive(timeout, where),
        result=None if result is None else _result_path(result, where),
    )


def read_checks_file(path: Path) -> list[CheckSpec]:
    """The checks a TOML file declares, in file order."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckConfigError(f"--checks-file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckConfigError(f"--checks-file {path}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise CheckConfigError(f"--checks-file {path}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - {"checks"})
    if unknown:
        raise CheckConfigError(
            f"--checks-file {path}: unknown top-level key(s) {', '.join(unknown)}; declare "
            "each check as [checks.NAME]"
        )
    checks = data.get("checks")
    if not isinstance(checks, dict) or not checks:
        raise CheckConfigError(
            f"--checks-file {path}: no checks; declare each as [checks.NAME] with a command"
        )
    return [
        _spec_from_table(name, table, f"--checks-file {path}, check {name!r}")
        for name, table in checks.items()
    ]


def combine(*groups: Iterable[CheckSpec]) -> tuple[CheckSpec, ...]:
    """The checks in run order; a name given twice is refused (plain `--check`s all share the
    name `check`, so two of them must be named)."""
    specs: list[CheckSpec] = []
    seen: set[str] = set()
    for spec in (spec for group in groups for spec in group):
        if spec.name in seen:
            hint = " (name each check: --check NAME=CMD)" if spec.name == DEFAULT_NAME else ""
            raise CheckConfigError(f"check {spec.name!r} is declared twice{hint}")
        seen.add(spec.name)
        specs.append(spec)
    if len(specs) > MAX_CHECKS:
        raise CheckConfigError(f"{len(specs)} checks declared; at most {MAX_CHECKS}")
    return tuple(specs)


def configured_checks(options: Iterable[str], checks_file: Path | None) -> tuple[CheckSpec, ...]:
    """Every check the worker runs: the file's, then each `--check`, validated."""
    from_file = read_checks_file(checks_file) if checks_file is not None else []
    return combine(from_file, [parse_check_option(text) for text in options])
