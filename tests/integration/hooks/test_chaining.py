"""A hook that was there before install keeps running, chained before ours, within our deadline."""

from __future__ import annotations

import time

from tests.integration.hooks.conftest import FakeService, ServerRepo, remote_lines
from tests.integration.hooks.test_pre_receive_deadline import cache_mode


def write_hook(repo: ServerRepo, name: str, body: str) -> None:
    hook = repo.bare / "hooks" / name
    hook.write_text("#!/bin/sh\n" + body)
    hook.chmod(0o755)


def test_a_chained_hook_that_leaves_a_child_behind_cannot_hold_the_push_past_the_deadline(
    repo: ServerRepo, fake: FakeService
) -> None:
    """A shell hook whose `sleep` outlives it: git waits for every process holding the hook's
    stderr, so the whole process group of the chained hook goes when the deadline strikes."""
    write_hook(repo, "pre-receive", "cat >/dev/null\necho checking >&2\nsleep 8\n")
    repo.install(chain_existing=True, deadline=1.0)
    cache_mode(repo, "shadow")
    new = repo.commit("second")

    started = time.monotonic()
    result = repo.push("main")
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stderr
    assert repo.ref("main") == new
    assert elapsed < 6.0, elapsed
    lines = remote_lines(result.stderr)
    assert "checking" in lines  # the chained hook's output passes through
    assert any("chained hook" in line and "did not finish in time" in line for line in lines)


def test_an_accepting_chained_hook_leaves_the_verdict_to_the_service(
    repo: ServerRepo, fake: FakeService
) -> None:
    """Exit 0 from the chained hook: ours asks the service once, with the same updates."""
    write_hook(repo, "pre-receive", "cat >/dev/null\necho 'policy ok' >&2\nexit 0\n")
    repo.install(chain_existing=True)
    new = repo.commit("second")

    result = repo.push("main")

    assert result.returncode == 0 and repo.ref("main") == new
    assert "policy ok" in remote_lines(result.stderr)
    (check,) = fake.received("/v1/push-checks")
    assert [u["new"] for u in check.body["updates"]] == [new]
