"""The git adapter against real repositories: a bare origin and a clone, made in tmp_path."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from integrator.gitops import (
    SHA_RE,
    Git,
    GitError,
    GitTimeout,
    is_zero_sha,
)
from tests.conflict_repos import CONFLICTS, conflicting_sides

IDENTITY = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
}


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system configuration, a fixed identity."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for key, value in IDENTITY.items():
        monkeypatch.setenv(key, value)


def sh(cwd: Path, *args: str) -> str:
    """Run git directly, as the test's own hands (not through the adapter)."""
    proc = subprocess.run(
        ["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True
    )
    return proc.stdout.strip()


def commit(work: Path, name: str, content: str, message: str | None = None) -> str:
    (work / name).write_text(content)
    sh(work, "add", name)
    sh(work, "commit", "--quiet", "-m", message or f"write {name}")
    return sh(work, "rev-parse", "HEAD")


@dataclass
class Repos:
    origin: Path
    work: Path
    base: str

    @property
    def git(self) -> Git:
        return Git(self.work, timeout=10)

    def branch(self, name: str, *files: tuple[str, str]) -> str:
        """A branch ``name`` off ``base`` with one commit per (file, content); its head sha."""
        sh(self.work, "checkout", "--quiet", "-B", name, self.base)
        for file, content in files:
            commit(self.work, file, content)
        sh(self.work, "checkout", "--quiet", "main")
        return sh(self.work, "rev-parse", name)


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    origin = tmp_path / "origin.git"
    sh(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    work = tmp_path / "work"
    sh(tmp_path, "clone", "--quiet", str(origin), str(work))
    sh(work, "checkout", "--quiet", "-B", "main")
    base = commit(work, "README", "hello\n")
    sh(work, "push", "--quiet", "origin", "main")
    return Repos(origin, work, base)


def test_sha_helpers_accept_sha1_and_sha256_names_only() -> None:
    """SHA_RE takes 40 or 64 lowercase hex; is_zero_sha recognises both all-zero names."""
    assert SHA_RE.fullmatch("a" * 40) and SHA_RE.fullmatch("b" * 64)
    assert not SHA_RE.fullmatch("A" * 40) and not SHA_RE.fullmatch("a" * 41)
    assert is_zero_sha("0" * 40) and is_zero_sha("0" * 64)
    assert not is_zero_sha("0" * 39 + "1")


def test_is_ancestor_is_true_for_an_ancestor_and_false_for_a_sibling(repos: Repos) -> None:
    """merge-base --is-ancestor: rc 0 is True, rc 1 is False."""
    left = repos.branch("left", ("a", "1\n"))
    right = repos.branch("right", ("b", "2\n"))
    assert repos.git.is_ancestor(repos.base, left)
    assert not repos.git.is_ancestor(left, right)


def test_is_ancestor_raises_when_it_cannot_verify(repos: Repos) -> None:
    """An unknown object is neither yes nor no: it raises GitError with the command."""
    with pytest.raises(GitError) as caught:
        repos.git.is_ancestor("no-such-thing", repos.base)
    assert caught.value.returncode == 128
    assert "merge-base --is-ancestor no-such-thing" in str(caught.value)


def test_missing_revisions_read_as_none_not_errors(repos: Repos) -> None:
    """rev_parse, branch_head and commit_exists answer "absent" for what is not there."""
    git = repos.git
    assert git.rev_parse("refs/heads/nope") is None
    assert git.rev_parse("1" * 40) is None
    assert git.branch_head("nope") is None
    assert not git.commit_exists("1" * 40)
    assert git.branch_head("main") == repos.base == git.rev_parse("main")
    assert git.commit_exists(repos.base)


def test_a_revision_that_looks_like_an_option_is_refused(repos: Repos) -> None:
    """Names come from events; one starting with '-' never reaches git's option parser."""
    with pytest.raises(ValueError):
        repos.git.rev_parse("--output=/tmp/x")


def test_an_alias_of_main_resolves_to_main_in_a_bare_repository(repos: Repos) -> None:
    """A symbolic ref chain (alias2 → alias → main) resolves to refs/heads/main."""
    sh(repos.origin, "symbolic-ref", "refs/heads/alias", "refs/heads/main")
    sh(repos.origin, "symbolic-ref", "refs/heads/alias2", "refs/heads/alias")
    git = Git(repos.origin)
    assert git.symbolic_ref("refs/heads/main") is None
    assert git.resolve_symbolic("refs/heads/alias2") == "refs/heads/main"
    assert git.resolve_symbolic("refs/heads/main") == "refs/heads/main"
    assert git.branch_head("alias") == repos.base


def test_merge_no_ff_writes_a_merge_commit_whose_trailers_read_back(repos: Repos) -> None:
    """The merge sits on top of the old head (first parent) and carries the given trailers."""
    feature = repos.branch("feature", ("a", "1\n"), ("b", "2\n"))
    git = repos.git
    git.checkout_new_branch("integration", "main")
    message = (
        "Merge feature\n\n"
        "Integrator-Candidate: 42\nIntegrator-Epoch: 7\nIntegrator-Attempt: 0f0e-uuid\n"
    )
    result = git.merge_no_ff(feature, message)
    assert result.ok and result.conflicts == ()
    head = git.head()
    assert git.parents(head) == [repos.base, feature]
    assert git.first_parent_log(head) == [head, repos.base]
    assert git.first_parent_log(head, limit=1) == [head]
    assert git.commit_message(head).startswith("Merge feature\n")
    assert git.trailers(head) == {
        "Integrator-Candidate": ["42"],
        "Integrator-Epoch": ["7"],
        "Integrator-Attempt": ["0f0e-uuid"],
    }


def test_a_conflicting_merge_reports_paths_and_leaves_no_half_merge(repos: Repos) -> None:
    """On conflict: ok is False, the paths are named, HEAD is unchanged and the tree clean."""
    ours = repos.branch("ours", ("README", "ours\n"))
    theirs = repos.branch("theirs", ("README", "theirs\n"))
    git = repos.git
    git.checkout_new_branch("integration", ours)
    result = git.merge_no_ff(theirs, "Merge theirs")
    assert not result.ok
    assert result.conflicts == ("README",)
    assert "CONFLICT" in result.output
    assert git.head() == ours
    assert not (repos.work / ".git" / "MERGE_HEAD").exists()
    assert sh(repos.work, "status", "--porcelain") == ""


def test_a_merge_that_fails_without_conflict_raises(repos: Repos) -> None:
    """An unknown sha is not a conflict to report: it is an error."""
    with pytest.raises(GitError):
        repos.git.merge_no_ff("1" * 40, "Merge nothing")


def test_merge_squash_adds_one_commit_on_top_with_the_message(repos: Repos) -> None:
    """A squash merge is a single-parent commit holding the branch's changes."""
    feature = repos.branch("feature", ("a", "1\n"), ("b", "2\n"))
    git = repos.git
    git.checkout_new_branch("integration", "main")
    result = git.merge_squash(feature, "Squash feature\n\nIntegrator-Candidate: 42\n")
    assert result.ok
    head = git.head()
    assert git.parents(head) == [repos.base]
    assert git.trailers(head) == {"Integrator-Candidate": ["42"]}
    assert (repos.work / "b").read_text() == "2\n"
    assert not git.is_ancestor(feature, head)


def test_a_conflicting_squash_is_reset_to_a_clean_worktree(repos: Repos) -> None:
    """A squash leaves no MERGE_HEAD, so it is undone by a hard reset instead."""
    ours = repos.branch("ours", ("README", "ours\n"))
    theirs = repos.branch("theirs", ("README", "theirs\n"))
    git = repos.git
    git.checkout_new_branch("integration", ours)
    result = git.merge_squash(theirs, "Squash theirs")
    assert (result.ok, result.conflicts) == (False, ("README",))
    assert git.head() == ours
    assert sh(repos.work, "status", "--porcelain") == ""


def test_patch_id_matches_a_squash_and_a_merge_to_the_branch_range(repos: Repos) -> None:
    """The same change has one patch id whether squashed, merged, or seen as base..branch."""
    feature = repos.branch("feature", ("a", "1\n"), ("b", "2\n"))
    git = repos.git
    git.checkout_new_branch("squashed", "main")
    git.merge_squash(feature, "Squash feature")
    squashed = git.head()
    git.checkout_new_branch("merged", "main")
    git.merge_no_ff(feature, "Merge feature")
    merged = git.head()
    expected = git.patch_id(f"{repos.base}..{feature}")
    assert expected is not None and len(expected) == 40
    assert git.patch_id(squashed) == expected == git.patch_id(merged)
    assert git.patch_id(feature) != expected  # the last commit alone is another change
    assert git.patch_id(repos.base) is not None  # a root commit diffs from the empty tree
    assert git.patch_id(f"{feature}..{feature}") is None


def test_a_command_past_its_timeout_is_killed_and_raises_git_timeout(repos: Repos) -> None:
    """The editor git starts is killed with it: no wait for the 5 s sleep to finish."""
    git = Git(repos.work, timeout=0.5, env={"GIT_EDITOR": "sleep 5; :"})
    started = time.monotonic()
    with pytest.raises(GitTimeout) as caught:
        git._run("commit", "--amend")
    assert time.monotonic() - started < 3
    assert caught.value.returncode is None
    assert "killed after 0.5s" in str(caught.value)


def test_inherited_redirection_tracing_and_injected_config_are_scrubbed(
    repos: Repos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIT_DIR, GIT_TRACE and GIT_CONFIG_* from the environment do not reach git."""
    trace = tmp_path / "trace.log"
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("GIT_TRACE", str(trace))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "integrator.injected")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "yes")
    git = repos.git
    assert git.head() == repos.base
    assert git.config_get("integrator.injected") is None
    assert not trace.exists()


def test_integrator_variables_do_not_reach_git_or_what_it_runs(
    repos: Repos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token in INTEGRATOR_TOKEN never reaches git's hooks, filters or helpers."""
    monkeypatch.setenv("INTEGRATOR_TOKEN", "itg_secret")
    seen = tmp_path / "seen.txt"
    git = Git(repos.work, env={"GIT_EDITOR": f"env > {seen}; :"})
    git._run("commit", "--amend", "--allow-empty")
    assert seen.exists() and "itg_secret" not in seen.read_text()


def test_extra_env_is_applied_after_scrubbing(repos: Repos) -> None:
    """Configuration passed explicitly (as the push option nonce is) does reach git."""
    extra = {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "integrator.given",
        "GIT_CONFIG_VALUE_0": "yes",
    }
    assert Git(repos.work, env=extra).config_get("integrator.given") == "yes"


def test_config_set_then_get_round_trips(repos: Repos) -> None:
    """config_get reads what config_set wrote and None for an unset key."""
    git = repos.git
    git.config_set("integrator.repository", "demo")
    assert git.config_get("integrator.repository") == "demo"
    assert git.config_get("integrator.absent") is None


def test_push_reports_a_stale_lease_as_a_rejection_not_an_error(repos: Repos) -> None:
    """--force-with-lease against the wrong old sha comes back ok=False; the right one lands."""
    git = repos.git
    new = commit(repos.work, "c", "3\n")
    stale = git.push("origin", "HEAD:refs/heads/main", force_with_lease=f"refs/heads/main:{new}")
    assert not stale.ok
    assert "rejected" in stale.stdout + stale.stderr
    pushed = git.push(
        "origin", "HEAD:refs/heads/main", force_with_lease=f"refs/heads/main:{repos.base}"
    )
    assert pushed.ok
    assert git.ls_remote("origin", ["refs/heads/main"]) == {"refs/heads/main": new}


def test_fetch_prunes_branches_gone_from_the_remote(repos: Repos) -> None:
    """fetch brings new refs and, by default, drops those the remote deleted."""
    sh(repos.origin, "branch", "gone", "main")
    git = repos.git
    git.fetch("origin", ["+refs/heads/*:refs/remotes/origin/*"])
    assert git.rev_parse("refs/remotes/origin/gone") == repos.base
    sh(repos.origin, "branch", "-D", "gone")
    git.fetch("origin", ["+refs/heads/*:refs/remotes/origin/*"])
    assert git.rev_parse("refs/remotes/origin/gone") is None


def test_init_bare_and_clone_return_adapters_on_the_new_repositories(tmp_path: Path) -> None:
    """init_bare creates parents and names main; clone --mirror copies every branch."""
    bare = Git.init_bare(tmp_path / "deep" / "new.git")
    assert bare.symbolic_ref("HEAD") == "refs/heads/main"
    assert bare.config_get("core.bare") == "true"
    mirror = Git.clone(str(bare.path), tmp_path / "copy.git", mirror=True)
    assert mirror.config_get("remote.origin.mirror") == "true"


def test_the_exact_command_is_logged_but_never_env_values_or_url_passwords(
    repos: Repos, caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG shows the command line and env names; a nonce or a URL password never appears."""
    git = Git(repos.work, timeout=10, env={"GIT_CONFIG_VALUE_0": "nonce-s3cret"})
    with caplog.at_level("DEBUG", logger="integrator.gitops"):
        git.config_get("user.name")
        with pytest.raises(GitError) as caught:
            git.ls_remote("http://ada:pa55word@127.0.0.1:9/repo.git")
    assert f"git -C {repos.work} config --get user.name" in caplog.text
    assert "GIT_CONFIG_VALUE_0" in caplog.text
    assert "nonce-s3cret" not in caplog.text
    assert "pa55word" not in caplog.text + str(caught.value)


def test_first_parent_trailers_are_read_in_one_pass(repos: Repos) -> None:
    """Every value of one trailer key on main's first-parent history, newest first."""
    git = repos.git
    git.checkout_new_branch("integration", repos.base)
    for n in (1, 2):
        (repos.work / f"t{n}.txt").write_text(f"{n}\n")
        git._run("add", f"t{n}.txt")
        message = f"change {n}\n\nIntegrator-Attempt: attempt-{n}\nOther: x\n"
        git._run("commit", "-q", "-m", message)
    head = git.head()
    found = git.first_parent_trailer(head, "Integrator-Attempt", limit=10)
    assert [value for _, value in found] == ["attempt-2", "attempt-1"]
    assert found[0][0] == head


def test_refs_containing_answers_for_several_refs_in_one_pass(repos: Repos) -> None:
    """Which refs hold a commit; a prefix-matched ref is not mistaken for the one asked."""
    git = repos.git
    on_feat = repos.branch("feat", ("f.txt", "f\n"))
    repos.branch("topic/deeper", ("g.txt", "g\n"))
    main, feat = "refs/heads/main", "refs/heads/feat"
    assert git.refs_containing(repos.base, main, feat) == {main, feat}
    assert git.refs_containing(repos.base, "refs/heads/topic") == set()  # not topic/deeper
    assert git.refs_containing(on_feat, main, feat) == {feat}
    assert git.refs_containing(on_feat, main, "refs/heads/missing") == set()
    assert git.refs_containing("e" * 40, main, feat) is None
    assert git.heads(main, feat, "refs/heads/missing") == {main: repos.base, feat: on_feat}


def test_merge_tree_names_every_conflicting_path_with_the_kind_git_reports(repos: Repos) -> None:
    """Content, binary, modify/delete, rename/delete and rename/rename conflicts, paths with a
    space, non-ASCII and non-UTF-8 names: each path once, with its kind and git's words."""
    ours, theirs = conflicting_sides(repos.work, "side")
    tree, conflicts = repos.git.merge_tree_conflicts(ours, theirs)
    assert SHA_RE.fullmatch(tree)
    assert {c.path: c.kinds for c in conflicts} == {
        path: (kind,) for path, kind in CONFLICTS.items()
    }
    assert [c.path for c in conflicts] == list(CONFLICTS)
    (renamed,) = [c for c in conflicts if c.path == "renamed-on-branch.txt"]
    assert renamed.messages == (
        f"CONFLICT (rename/delete): renamed-on-branch.txt.orig renamed to "
        f"renamed-on-branch.txt in {theirs}, but deleted in {ours}.",
    )
    assert repos.git.merge_tree(ours, theirs) == (tree, tuple(CONFLICTS))


def test_a_clean_merge_tree_has_no_conflicts(repos: Repos) -> None:
    """Auto-merging messages of a clean merge are not conflicts."""
    left = repos.branch("left", ("a", "1\n2\n3\n"))
    sh(repos.work, "checkout", "-q", "-B", "right", left)
    commit(repos.work, "a", "1\n2\n3\nright\n")
    right = sh(repos.work, "rev-parse", "HEAD")
    sh(repos.work, "checkout", "-q", "-B", "left2", left)
    commit(repos.work, "a", "left\n1\n2\n3\n")
    tree, conflicts = repos.git.merge_tree_conflicts(sh(repos.work, "rev-parse", "HEAD"), right)
    assert conflicts == () and SHA_RE.fullmatch(tree)


def test_a_conflicting_merge_in_a_worktree_names_non_ascii_paths_as_they_are(
    repos: Repos,
) -> None:
    """The path older git takes: `é.txt`, not git's quoted `"\\303\\251.txt"`."""
    ours = repos.branch("ours", ("é.txt", "ours\n"), ("sp ace", "ours\n"))
    theirs = repos.branch("theirs", ("é.txt", "theirs\n"), ("sp ace", "theirs\n"))
    git = repos.git
    git.checkout_new_branch("integration", ours)
    assert git.merge_no_ff(theirs, "Merge theirs").conflicts == ("sp ace", "é.txt")
    git.checkout_new_branch("integration", ours)
    assert git.merge_squash(theirs, "Squash theirs").conflicts == ("sp ace", "é.txt")
    assert sh(repos.work, "status", "--porcelain") == ""
