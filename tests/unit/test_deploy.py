"""deploy/ is ready to copy: units systemd accepts, an environment example per unit, no promises.

Each unit's `EnvironmentFile=/etc/integrator/NAME` has its example in `deploy/NAME.example`,
which names only real settings and sets every variable the unit expands.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from integrator.api.app import create_app
from integrator.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = sorted(DEPLOY.glob("*.service"))
EXAMPLES = sorted(DEPLOY.glob("*.env.example"))
#: `NAME=value` or a commented-out `# NAME=value`.
ASSIGNMENT = re.compile(r"^#?\s*(INTEGRATOR_[A-Z0-9_]+)=", re.MULTILINE)
SETTINGS = {f"INTEGRATOR_{name.upper()}" for name in Settings.model_fields}


def environment_file(unit: Path) -> Path:
    match = re.search(r"^EnvironmentFile=-?(\S+)$", unit.read_text(), re.MULTILINE)
    assert match is not None, f"{unit.name} reads no EnvironmentFile"
    return Path(match.group(1))


def example_for(unit: Path) -> Path:
    return DEPLOY / f"{environment_file(unit).name}.example"


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_systemd_units_pass_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts each unit (binaries pointed at this checkout's venv)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is required in CI")
        pytest.skip("systemd-analyze not installed")
    executable = str(Path(sys.executable).parent / "integrator")
    text = unit.read_text().replace("/opt/integrator/.venv/bin/integrator", executable)
    copy = tmp_path / unit.name
    copy.write_text(text)
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Unknown key" not in result.stderr, result.stderr


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_every_unit_has_an_example_of_the_environment_file_it_reads(unit: Path) -> None:
    """deploy/<basename of EnvironmentFile>.example exists, so an operator knows what to copy."""
    assert example_for(unit).is_file(), f"{unit.name} reads {environment_file(unit)}"


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_every_variable_a_unit_expands_is_set_in_its_example(unit: Path) -> None:
    """A `${INTEGRATOR_X}` on a unit's command line is assigned (uncommented) in its example."""
    expanded = set(re.findall(r"\$\{(INTEGRATOR_[A-Z0-9_]+)\}", unit.read_text()))
    example = example_for(unit)
    assigned = set(re.findall(r"^(INTEGRATOR_[A-Z0-9_]+)=", example.read_text(), re.MULTILINE))
    assert expanded <= assigned, f"{unit.name} expands {sorted(expanded - assigned)}"


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_environment_examples_name_only_real_settings(example: Path) -> None:
    """Every INTEGRATOR_* variable in an example, commented out or not, is a setting."""
    named = set(ASSIGNMENT.findall(example.read_text()))
    assert named, f"{example.name} sets nothing"
    assert named <= SETTINGS, f"not settings: {sorted(named - SETTINGS)}"


def test_deploy_promises_a_dashboard_only_when_the_service_serves_one() -> None:
    """No unit or example mentions a dashboard while the service has no page at `/`."""
    if TestClient(create_app()).get("/").status_code != 404:
        return
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    mentions = [p.name for p in files if "dashboard" in p.read_text().lower()]
    assert mentions == [], f"these promise a dashboard the service does not serve: {mentions}"
