"""The README's five-minute tour works as written.

The tour's shell block runs unchanged except for its port (a free one, so that parallel runs do
not collide), with this checkout's `integrator` on PATH and its temporary directory under the
test's. What it promises in its comments is checked against what it printed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOUR_PORT = "8765"


def tour_script() -> str:
    """The last sh block of the README's tour section: the tour itself (after `make install`)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Five-minute tour", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 2, "the tour is an install block and a tour block"
    return blocks[1]


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def stop_leftovers(tmp: Path) -> None:
    for pid_file in tmp.glob("*/*.pid"):
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


@pytest.mark.slow
def test_the_readme_tour_runs_as_written_from_shadow_to_cutover_and_back(tmp_path: Path) -> None:
    """Every step of the tour does what its comment says, and it stops what it started."""
    script = tour_script()
    assert TOUR_PORT in script
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)}
    try:
        result = subprocess.run(
            ["bash", "-c", script.replace(TOUR_PORT, free_port())],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=240,
            check=False,
        )
    finally:
        stop_leftovers(tmp_path)
    output = result.stdout
    assert result.returncode == 0, output
    expected = [
        '{"status":"ok"}',
        "ops (operator)",
        "mode shadow",
        "after cutover this update of main would be refused",
        "stored review_approved",
        "candidate greeting is queued at position 1",
        "would_integrate",
        "predicted",
        "drill recorded: refusal observed in cutover: True",
        "blocker: no lease holder: start the worker",
        "evidence complete",
        "mode cutover",
        "[remote rejected] main -> main",
        "candidate farewell is queued at position 2",
        "integrated   farewell",
        "in_progress -> integrated",
        "Integrator-Candidate: 2",
        "Integrator-Attempt: ",
        "integrated   greeting",
    ]
    position = 0
    for text in expected:
        found = output.find(text, position)
        assert found >= 0, f"{text!r} missing after position {position}:\n{output}"
        position = found
    assert "Traceback" not in output, output
    assert "token is not valid" not in output, output
