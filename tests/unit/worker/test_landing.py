"""The worker's push of main, with real git: what reaches the server, and how answers are read.

The server is a bare repository with a stand-in pre-receive hook (the real hook and service are
exercised in tests/integration/test_worker_cutover.py): what is tested here is the client side.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from integrator.gitops import Git, GitError, PushResult
from integrator.worker.landing import PushFacts, Verdict, push_commit, read_push, remote_lines
from tests.gitrepos import Canonical, git

NONCE = "n0nce-" + "x" * 37
MAIN = "refs/heads/main"

#: Records the push options it got and the command line of every ancestor process.
RECORDING_HOOK = """#!/bin/sh
env | grep '^GIT_PUSH_OPTION' > "$RECORD"
pid=$$
while [ "$pid" -gt 1 ]; do
    printf 'argv: ' >> "$RECORD"; tr '\\0' ' ' < /proc/$pid/cmdline >> "$RECORD"; echo >> "$RECORD"
    pid=$(awk '{print $4}' /proc/$pid/stat)
done
{extra}
"""


class Server:
    """A canonical repository and a worker-side clone whose `origin` is it."""

    def __init__(self, root: Path) -> None:
        self.canonical = Canonical(root)
        self.clone = root / "clone"
        git("clone", "-q", str(self.canonical.bare), str(self.clone), cwd=root)
        self.git = Git(self.clone)
        self.record = root / "record.txt"
        git("config", "receive.advertisePushOptions", "true", cwd=self.canonical.bare)

    def hook(self, extra: str = "exit 0") -> None:
        path = self.canonical.bare / "hooks" / "pre-receive"
        path.write_text(RECORDING_HOOK.replace("{extra}", extra))
        path.chmod(0o755)

    def integration_commit(self) -> tuple[str, str]:
        """(old, new): a commit on top of the server's main, made in the clone only."""
        old = git("rev-parse", "origin/main", cwd=self.clone)
        tree = git("rev-parse", "origin/main^{tree}", cwd=self.clone)
        new = git("commit-tree", tree, "-p", old, "-m", f"integrate {os.urandom(4).hex()}",
                  cwd=self.clone)  # fmt: skip
        return old, new

    def push(self, old: str, new: str) -> PushFacts:
        return push_commit(self.git, MAIN, old, new, NONCE, registration=5)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("RECORD", str(tmp_path / "record.txt"))
    return Server(tmp_path)


def test_the_nonce_reaches_the_hook_as_a_push_option_and_never_argv_a_trace_or_a_log(
    server: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A traced shell (GIT_TRACE*, GIT_CURL_VERBOSE) leaks nothing; the push lands, confirmed."""
    trace = tmp_path / "trace.txt"
    for variable in ("GIT_TRACE", "GIT_TRACE_PACKET", "GIT_TRACE2_EVENT", "GIT_CURL_VERBOSE"):
        monkeypatch.setenv(variable, str(trace) if variable != "GIT_CURL_VERBOSE" else "1")
    server.hook()
    old, new = server.integration_commit()
    caplog.set_level(logging.DEBUG)

    facts = server.push(old, new)

    assert (facts.verdict, facts.main, facts.registration_id) == (Verdict.landed, new, 5)
    assert server.canonical.head() == new
    recorded = server.record.read_text()
    assert f"GIT_PUSH_OPTION_0=integrator-push={NONCE}" in recorded
    ancestors = [line for line in recorded.splitlines() if line.startswith("argv: ")]
    assert any("git push" in line or "git-receive-pack" in line for line in ancestors)
    assert all(NONCE not in line for line in ancestors)
    assert not trace.exists() or NONCE not in trace.read_text()
    assert NONCE not in caplog.text


def test_a_server_that_does_not_advertise_push_options_is_a_configuration_error(
    server: Server,
) -> None:
    """git refuses client-side; nothing is pushed and ls-remote is not needed to say so."""
    git("config", "receive.advertisePushOptions", "false", cwd=server.canonical.bare)
    old, new = server.integration_commit()
    facts = server.push(old, new)
    assert facts.verdict is Verdict.unsupported
    assert server.canonical.head() == old


def test_a_refusal_by_our_hook_on_the_services_verdict_is_a_policy_refusal(
    server: Server,
) -> None:
    """The `integrator: refused <ref>: why` line is the detail; every remote: line is kept."""
    server.hook('echo "integrator: refused main: not registered" >&2\n'
                'echo "integrator: no ref of this push was updated." >&2\nexit 1')  # fmt: skip
    old, new = server.integration_commit()
    facts = server.push(old, new)
    assert facts.verdict is Verdict.refused
    assert facts.detail == "integrator: refused main: not registered"
    assert facts.remote_lines == (
        "integrator: refused main: not registered",
        "integrator: no ref of this push was updated.",
    )
    assert facts.main == old == server.canonical.head()


def test_the_hooks_fallback_after_its_deadline_is_worth_another_try(server: Server) -> None:
    """The hook decided without the service (deadline, service down): retry, not blocked."""
    server.hook(
        'echo "integrator: service unavailable (deadline exceeded); push refused" >&2\n'
        'echo "integrator: refused: refs/heads/main aaa..bbb (protected in cutover mode)" >&2\n'
        "exit 1"
    )
    old, new = server.integration_commit()
    facts = server.push(old, new)
    assert facts.verdict is Verdict.retry and "without the service" in facts.detail
    assert facts.main == old


def test_main_moved_since_the_merge_is_a_lost_compare_and_swap_with_main_as_it_is_now(
    server: Server,
) -> None:
    """--force-with-lease refuses client-side; `main` says where it went (merge again)."""
    old, new = server.integration_commit()
    moved = server.canonical.new_commit_on_main("moved")
    git("push", "-q", "origin", "main", cwd=server.canonical.work)
    facts = server.push(old, new)
    assert facts.verdict is Verdict.retry and "stale info" in facts.detail
    assert facts.main == moved == server.canonical.head()


def test_an_unreachable_server_cannot_be_confirmed_and_raises(server: Server) -> None:
    """Neither the push nor ls-remote got through: the caller gives the candidate back."""
    old, new = server.integration_commit()
    server.canonical.bare.rename(server.canonical.bare.with_name("away.git"))
    with pytest.raises(GitError):
        server.push(old, new)


@pytest.mark.parametrize(
    ("stdout", "stderr", "verdict"),
    [
        ("To x\n=\tn:refs/heads/main\t[up to date]\nDone\n", "", Verdict.landed),
        ("To x\n+\tn:refs/heads/main\to...n (forced update)\nDone\n", "", Verdict.landed),
        ("To x\n!\tn:refs/heads/main\t[rejected] (fetch first)\nDone\n", "", Verdict.retry),
        ("To x\n!\tn:refs/heads/main\t[remote rejected] (failed to update ref)\n", "",
         Verdict.retry),
        ("", "fatal: the remote end hung up unexpectedly\n", Verdict.retry),
        ("To x\n!\tn:refs/heads/main\t[remote rejected] (pre-receive hook declined)\n",
         "remote: size check: too big        \n", Verdict.refused),
    ],
)  # fmt: skip
def test_reading_gits_answer(stdout: str, stderr: str, verdict: Verdict) -> None:
    """Up to date counts as landed (git names this commit on main); a hook's no is a refusal."""
    assert read_push(PushResult(False, stdout, stderr), MAIN)[0] is verdict


def test_remote_lines_drop_the_prefix_and_the_padding() -> None:
    """git pads remote: lines with spaces; empty ones say nothing."""
    assert remote_lines("remote: a   \nremote:\nlocal\nremote: b\n") == ("a", "b")
