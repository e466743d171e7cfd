"""`make` is the front door: its targets pass the reader's choices on to the CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def make_dry_run(*args: str) -> str:
    """What `make -n` would run (nothing is executed)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        ["make", "-n", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    )
    return result.stdout


def test_make_run_serves_on_the_port_and_host_given_to_make() -> None:
    """`make run PORT=8765 HOST=0.0.0.0` starts `integrator serve --host 0.0.0.0 --port 8765`."""
    commands = make_dry_run("run", "PORT=8765", "HOST=0.0.0.0")
    assert "integrator serve --host 0.0.0.0 --port 8765" in commands


def test_make_run_defaults_to_loopback_port_8000_and_names_the_port_option() -> None:
    """Without PORT, `make run` serves on 127.0.0.1:8000 and says how to choose another port."""
    commands = make_dry_run("run")
    assert "integrator serve --host 127.0.0.1 --port 8000" in commands
    assert "PORT=" in commands
