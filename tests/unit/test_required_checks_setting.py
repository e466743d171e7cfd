"""INTEGRATOR_REQUIRED_CHECKS: comma-separated check names, unset or empty for none."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from integrator.settings import get_settings


def test_required_checks_are_read_comma_separated_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INTEGRATOR_REQUIRED_CHECKS", "unit, lint,e2e")
    assert get_settings().required_check_names == ["unit", "lint", "e2e"]


@pytest.mark.parametrize("value", [None, "", " , "])
def test_unset_or_empty_requires_no_check(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is not None:
        monkeypatch.setenv("INTEGRATOR_REQUIRED_CHECKS", value)
    assert get_settings().required_check_names == []


@pytest.mark.parametrize(("value", "message"), [("Unit", "not a check name"), ("a,a", "once")])
def test_a_bad_name_or_a_name_twice_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("INTEGRATOR_REQUIRED_CHECKS", value)
    with pytest.raises(ValidationError, match=message):
        get_settings()
