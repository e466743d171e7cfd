"""The push's own answer, when it proves main is at the pushed commit, is not read back.

Same real-git server as tests/unit/worker/test_landing.py (a bare repository, the worker's
clone): git's porcelain status line for main is the server's word that main went old → new.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from integrator.gitops import PushResult
from integrator.worker.landing import Verdict, proves_landed
from tests.gitrepos import git
from tests.unit.worker.test_landing import MAIN, Server


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("RECORD", str(tmp_path / "record.txt"))
    return Server(tmp_path)


def test_a_push_whose_status_line_names_this_commit_has_landed_even_if_main_moves_on(
    server: Server,
) -> None:
    """git's own status line for main (this commit, updated) is the server's word that main went
    old → new: a later move of main (here by post-receive) does not turn it into a retry."""
    old, new = server.integration_commit()
    later = git("commit-tree", f"{new}^{{tree}}", "-p", new, "-m", "after ours", cwd=server.clone)
    git("push", "-q", "origin", f"{later}:refs/heads/elsewhere", cwd=server.clone)
    hook = server.canonical.bare / "hooks" / "post-receive"
    hook.write_text(f"#!/bin/sh\ngit update-ref refs/heads/main {later}\n")
    hook.chmod(0o755)

    facts = server.push(old, new)

    assert (facts.verdict, facts.main) == (Verdict.landed, new)
    assert server.canonical.head() == later


def test_a_landed_push_is_not_read_back_with_ls_remote(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """The push's answer proves where main is: no second connection to the server for it."""
    old, new = server.integration_commit()
    caplog.set_level(logging.DEBUG, logger="integrator.gitops")

    facts = server.push(old, new)

    assert (facts.verdict, facts.main) == (Verdict.landed, new)
    assert "ls-remote" not in caplog.text


@pytest.mark.parametrize(
    ("stdout", "proven"),
    [
        (" \tN:refs/heads/main\to..n\nDone\n", True),
        ("=\tN:refs/heads/main\t[up to date]\nDone\n", True),
        (" \tO:refs/heads/main\to..n\nDone\n", False),
        (" \tN:refs/heads/main-2\to..n\nDone\n", False),
        ("!\tN:refs/heads/main\t[remote rejected] (hook declined)\n", False),
        ("", False),
    ],
)  # fmt: skip
def test_only_a_status_line_naming_this_commit_and_main_proves_the_update(
    stdout: str, proven: bool
) -> None:
    """Another source, another ref, a rejection or no answer at all leave main to ls-remote."""
    assert proves_landed(PushResult(True, stdout, ""), MAIN, "N") is proven
