"""The check runner with real processes: scrubbed environment, whole-group kills, output tail."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from integrator.worker.checks import TAIL_BYTES, CheckRunner, check_environment
from tests.worker_support import process_gone, wait_for


def test_the_check_environment_drops_tokens_injected_git_configuration_and_traces() -> None:
    """INTEGRATOR_*, GIT_CONFIG_*, GIT_TRACE*, GIT_DIR go; PATH and HOME stay."""
    env = check_environment(
        {
            "PATH": "/usr/bin",
            "HOME": "/home/bot",
            "INTEGRATOR_TOKEN": "secret",
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "push.pushOption",
            "GIT_CONFIG_VALUE_0": "integrator-push=nonce",
            "GIT_CONFIG_PARAMETERS": "'core.x'='1'",
            "GIT_TRACE_PACKET": "1",
            "GIT_CURL_VERBOSE": "1",
            "GIT_DIR": "/elsewhere",
        }
    )
    assert env == {"PATH": "/usr/bin", "HOME": "/home/bot"}


def test_a_passing_check_reports_exit_code_zero_and_its_output(tmp_path: Path) -> None:
    """stdout and stderr land in the tail, in order."""
    result = CheckRunner().run("echo out; echo err >&2; exit 0", 30, tmp_path, tmp_path / "log")
    assert result.ok and result.exit_code == 0
    assert result.output_tail == "out\nerr\n"


def test_a_failing_check_keeps_only_the_tail_of_a_long_output(tmp_path: Path) -> None:
    """The end is where failures are; the beginning is dropped and marked."""
    result = CheckRunner().run(
        "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done; exit 3",
        30,
        tmp_path,
        tmp_path / "log",
    )
    assert (result.ok, result.exit_code) == (False, 3)
    assert result.output_tail.startswith("…")
    assert result.output_tail.endswith("line-2999\n")
    assert len(result.output_tail.encode()) <= TAIL_BYTES + len("…".encode())


def test_the_timeout_kills_the_whole_process_group_including_background_children(
    tmp_path: Path,
) -> None:
    """Not just the shell: what it started in the background dies too."""
    child_file = tmp_path / "child.pid"
    started = time.monotonic()
    result = CheckRunner().run(
        f"sleep 60 & echo $! > {child_file}; wait", 0.5, tmp_path, tmp_path / "log"
    )
    assert time.monotonic() - started < 10
    assert result.timed_out and result.exit_code is None and not result.ok
    wait_for(lambda: process_gone(int(child_file.read_text())), timeout=10, what="child")


def test_cancel_from_another_thread_kills_a_running_check(tmp_path: Path) -> None:
    """What the worker's SIGTERM handler does: the group dies, the run returns cancelled."""
    runner = CheckRunner()
    threading.Thread(
        target=lambda: (
            wait_for(lambda: (tmp_path / "pid").exists(), what="check start"),
            runner.cancel(),
        ),
        daemon=True,
    ).start()
    result = runner.run(f"echo $$ > {tmp_path / 'pid'}; sleep 60", 120, tmp_path, tmp_path / "log")
    assert result.cancelled and not result.timed_out and result.exit_code is None
