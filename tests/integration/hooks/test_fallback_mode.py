"""`fallback_mode` in the hook's configuration: what decides when the service cannot be asked and
no mode was cached (a host that keeps nothing between pushes, a fresh install)."""

from __future__ import annotations

import json

import pytest

from tests.integration.hooks.conftest import ServerRepo, dead_url


def configure(repo: ServerRepo, **config: object) -> None:
    path = repo.bare / "integrator" / "hook.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))


@pytest.mark.parametrize(("fallback", "refused"), [("cutover", True), ("shadow", False)])
def test_without_a_cached_mode_the_fallback_mode_decides(
    repo: ServerRepo, fallback: str, refused: bool
) -> None:
    repo.install(url=dead_url())
    configure(repo, fallback_mode=fallback)
    old = repo.ref("main")
    repo.commit("second")

    result = repo.push("main")

    assert (result.returncode != 0) == refused, result.stderr
    assert (repo.ref("main") == old) == refused


def test_the_launcher_without_a_body_honours_the_fallback_mode_too(repo: ServerRepo) -> None:
    """An unusable body is decided like a crash: no cache, the configured fallback (cutover)."""
    repo.install(url=dead_url())
    configure(repo, fallback_mode="cutover")
    (repo.bare / "integrator" / "pre_receive.py").unlink()
    old = repo.ref("main")
    repo.commit("second")

    result = repo.push("main")

    assert result.returncode != 0 and repo.ref("main") == old, result.stderr
    assert "hook body unusable" in result.stderr
