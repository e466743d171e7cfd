"""The worker's clone with real git: merges without a worktree agree with `git merge`."""

from __future__ import annotations

from pathlib import Path

import pytest

from integrator.worker.workspace import Fetched, Merged, MergeMethod, Workspace, WorkspaceBusy
from tests.conflict_repos import CONFLICTS, conflicting_sides
from tests.gitrepos import Canonical, git


@pytest.fixture
def canonical(tmp_path: Path) -> Canonical:
    return Canonical(tmp_path)


def workspace(canonical: Canonical, root: Path, merge_tree: bool) -> Workspace:
    ws = Workspace(str(canonical.bare), root)
    ws.prepare("bot")
    ws._merge_tree = merge_tree  # the path older git takes, forced for the comparison
    return ws


def merged(ws: Workspace, sha: str, method: MergeMethod) -> tuple[Merged, Fetched]:
    fetched = ws.fetch(sha)
    assert fetched is not None
    return ws.merge(fetched, sha, "integrate\n\nIntegrator-Candidate: 1\n", method, False), fetched


@pytest.mark.parametrize("method", list(MergeMethod))
def test_both_merge_paths_make_the_same_tree_parents_and_conflicts(
    canonical: Canonical, tmp_path: Path, method: MergeMethod
) -> None:
    """merge-tree + commit-tree and checkout + merge agree on clean, conflicting and empty."""
    clean = canonical.branch("feat/clean", path="new.txt")
    conflict = canonical.branch("feat/conflict", path="README", content="theirs\n")
    landed = canonical.branch("feat/landed", path="landed.txt")
    git("checkout", "-q", "main", cwd=canonical.work)
    canonical.commit("README", "ours\n", "main edits README")
    git("cherry-pick", landed, cwd=canonical.work)
    git("push", "-q", "origin", "main", cwd=canonical.work)
    results = {}
    for merge_tree in (True, False):
        ws = workspace(canonical, tmp_path / f"ws-{merge_tree}", merge_tree)
        ok, base = merged(ws, clean, method)
        bad, _ = merged(ws, conflict, method)
        empty, _ = merged(ws, landed, method)
        assert ok.sha is not None
        tree = git("rev-parse", f"{ok.sha}^{{tree}}", cwd=ws.clone_path)
        parents = git("show", "-s", "--format=%P", ok.sha, cwd=ws.clone_path).split()
        trailers = git("show", "-s", "--format=%(trailers:only)", ok.sha, cwd=ws.clone_path)
        paths = tuple(conflict.path for conflict in bad.conflicts)
        results[merge_tree] = (tree, parents, bad.ok, paths, empty.empty, trailers)
        assert parents[0] == base.main
        ws.close()
    assert results[True] == results[False]
    assert results[True][2:5] == (False, ("README",), True)


def test_a_second_worker_on_the_same_workspace_is_refused(
    canonical: Canonical, tmp_path: Path
) -> None:
    """The workspace is locked while a worker uses it; released when it stops."""
    first = workspace(canonical, tmp_path / "ws", True)
    with pytest.raises(WorkspaceBusy):
        Workspace(str(canonical.bare), tmp_path / "ws").prepare("other")
    first.close()
    workspace(canonical, tmp_path / "ws", True).close()


def test_a_commit_no_branch_advertises_any_more_is_fetched_by_its_sha(
    canonical: Canonical, tmp_path: Path
) -> None:
    """A force-pushed branch: the recorded sha is still merged, not the new tip."""
    recorded = canonical.branch("feat/moved", path="first.txt")
    ws = workspace(canonical, tmp_path / "ws", True)
    canonical.branch("feat/moved", path="second.txt")  # force-pushed over the recorded sha
    result, _ = merged(ws, recorded, MergeMethod.merge)
    assert result.ok and result.sha is not None
    assert git("show", "-s", "--format=%P", result.sha, cwd=ws.clone_path).split()[1] == recorded
    ws.close()


@pytest.mark.parametrize("merge_tree", [True, False])
def test_every_conflicting_path_is_named_and_the_clone_is_left_clean(
    canonical: Canonical, tmp_path: Path, merge_tree: bool
) -> None:
    """Both merge paths name every path of every kind of conflict, leave no merge in
    progress, no stray file and a clean index; git >= 2.38 also says which kind."""
    ours, theirs = conflicting_sides(canonical.work, "feat/conflicts")
    git("push", "-q", "origin", "main", "feat/conflicts", cwd=canonical.work)
    ws = workspace(canonical, tmp_path / "ws", merge_tree)
    result, base = merged(ws, theirs, MergeMethod.merge)
    assert base.main == ours and not result.ok
    assert [c.path for c in result.conflicts] == list(CONFLICTS)
    if merge_tree:
        assert {c.path: c.kinds for c in result.conflicts} == {
            path: (kind,) for path, kind in CONFLICTS.items()
        }
    assert not (ws.clone_path / ".git" / "MERGE_HEAD").exists()
    assert git("status", "--porcelain", "--ignored", cwd=ws.clone_path) == ""
    assert git("ls-files", "--unmerged", cwd=ws.clone_path) == ""
    ws.close()
