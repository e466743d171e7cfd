"""The service's readable copy of the canonical repository: in place when it can, else a
bare mirror in its cache, fetched by refresh."""

from __future__ import annotations

from pathlib import Path

import pytest

from integrator.mirror import Mirror
from tests.gitrepos import Canonical, git


@pytest.fixture
def canonical(tmp_path: Path) -> Canonical:
    (tmp_path / "repos").mkdir()
    return Canonical(tmp_path / "repos")


def test_mirror_of_a_readable_local_repository_reads_it_in_place(
    canonical: Canonical, tmp_path: Path
) -> None:
    """A local git dir is used directly; refresh does nothing and no cache is made."""
    cache = tmp_path / "cache"
    mirror = Mirror(str(canonical.bare), cache)
    assert mirror.direct
    mirror.refresh()
    assert mirror.git().path == canonical.bare
    assert mirror.git().branch_head("main") == canonical.head()
    assert not cache.exists()


def test_mirror_never_takes_a_plain_directory_inside_a_repository_for_it(
    canonical: Canonical, tmp_path: Path
) -> None:
    """git would find the enclosing repository; the mirror must not read that one."""
    (canonical.work / "sub").mkdir()
    assert not Mirror(str(canonical.work / "sub"), tmp_path / "cache").direct


def test_mirror_of_a_file_url_is_cloned_and_refresh_sees_later_pushes(
    canonical: Canonical, tmp_path: Path
) -> None:
    """file:// counts as a URL: a bare mirror in the cache, updated (and pruned) by refresh."""
    cache = tmp_path / "cache"
    mirror = Mirror(canonical.bare.as_uri(), cache)
    assert not mirror.direct
    mirrored = mirror.git()
    assert mirrored.path.parent == cache and mirrored.path.name.endswith(".git")
    assert mirrored.branch_head("main") == canonical.head()
    later = canonical.branch("later")
    assert mirrored.branch_head("later") is None
    mirror.refresh()
    assert mirrored.branch_head("later") == later
    git("push", "--quiet", "origin", ":later", cwd=canonical.work)
    mirror.refresh()
    assert mirrored.branch_head("later") is None
    assert [p.name for p in cache.iterdir()] == [mirrored.path.name]  # no staging left behind
