"""pre-receive decides from the cached mode wherever its deadline strikes or it breaks.

After the configuration is read, every path ends in a verdict: the service's, or the fallback's
(cutover refuses protected updates, shadow and off allow), spooled for later upload. A push must
never slip through because the deadline fired before the service was asked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.hooks.conftest import FakeService, ServerRepo, git, verdict

ZERO = "0" * 40
TAGS = 500_000


def cache_mode(repo: ServerRepo, mode: str) -> None:
    """What the hook last heard from the service: `mode`, main protected."""
    repo.state_dir.mkdir(parents=True, exist_ok=True)
    cache = {"mode": mode, "mode_version": 3, "protected_refs": ["refs/heads/main"]}
    (repo.state_dir / "last.json").write_text(json.dumps(cache))


def write_tags(work: Path, count: int) -> None:
    """`count` tags on HEAD in the work clone, written straight into packed-refs (fast)."""
    head = git("rev-parse", "HEAD", cwd=work)
    lines = ["# pack-refs with: peeled fully-peeled sorted "]
    lines += [f"{head} refs/tags/t{n:06d}" for n in range(count)]
    (work / ".git" / "packed-refs").write_text("\n".join(lines) + "\n")


def test_main_pushed_with_half_a_million_tags_is_refused_in_cutover(
    installed: ServerRepo, fake: FakeService
) -> None:
    """The deadline striking while a huge push is read refuses main in cutover, spooled (the push
    takes 9-18 s on two shared cores, most of it git's own)."""
    installed.install(deadline=1.0)
    fake.respond("POST", "/v1/push-checks", verdict(allow=False, mode="cutover"))
    cache_mode(installed, "cutover")
    old = installed.ref("main")
    installed.commit("second")
    write_tags(installed.work, TAGS)

    result = installed.push("main", "refs/tags/*")

    assert result.returncode != 0
    assert installed.ref("main") == old
    assert installed.ref("refs/tags/t000000") is None
    assert "integrator: service unavailable (deadline exceeded" in result.stderr
    assert "push refused" in result.stderr and "internal error" not in result.stderr
    (item,) = installed.spooled()
    assert (item["allow"], item["mode"], item["reason_code"]) == (
        False,
        "cutover",
        "service_unavailable",
    )


SLEEPY = "#!/bin/sh\nexec sleep 5\n"


def uploaded(fake: FakeService) -> list[dict[str, Any]]:
    """The spooled verdicts post-receive uploaded (then deleted)."""
    items: list[dict[str, Any]] = fake.wait_for("/v1/push-checks/spool")[0].body["items"]
    return items


@pytest.mark.parametrize(("mode", "allowed"), [("cutover", False), ("shadow", True)])
def test_a_chained_hook_sleeping_past_the_deadline_leaves_the_verdict_to_the_cached_mode(
    repo: ServerRepo, fake: FakeService, mode: str, allowed: bool
) -> None:
    """A chained hook that outlives the deadline: cutover refuses main, shadow lets it through."""
    foreign = repo.bare / "hooks" / "pre-receive"
    foreign.write_text(SLEEPY)
    foreign.chmod(0o755)
    repo.install(chain_existing=True, deadline=1.0)
    cache_mode(repo, mode)
    old = repo.ref("main")
    new = repo.commit("second")

    result = repo.push("main")

    assert (result.returncode == 0) == allowed, result.stderr
    assert repo.ref("main") == (new if allowed else old)
    assert "chained hook" in result.stderr and "did not finish in time" in result.stderr
    assert fake.received("/v1/push-checks") == []
    (item,) = repo.spooled() or uploaded(fake)  # an allowed push's post-receive uploads it
    assert (item["allow"], item["mode"]) == (allowed, mode)
    assert item["updates"][0]["new"] == new


def stdin_of(*lines: bytes) -> bytes:
    return b"".join(line + b"\n" for line in lines)


@pytest.mark.parametrize(("mode", "expected_rc"), [("cutover", 1), ("shadow", 0)])
def test_a_nul_byte_in_a_pushed_ref_name_cannot_carry_main_past_the_service(
    installed: ServerRepo, fake: FakeService, mode: str, expected_rc: int
) -> None:
    """A name git would never send is ignored; main in the same push is still decided."""
    fake.respond("POST", "/v1/push-checks", verdict(allow=expected_rc == 0, mode=mode))
    cache_mode(installed, mode)
    old = installed.ref("main")
    assert old is not None
    stdin = stdin_of(
        f"{old} {'6' * 40} refs/heads/main".encode(),
        f"{ZERO} {'7' * 40} refs/heads/x".encode() + b"\x00y",
    )

    result = installed.run_hook(installed.bare / "hooks" / "pre-receive", stdin)

    assert result.returncode == expected_rc, result.stderr
    assert b"Traceback" not in result.stderr and b"internal error" not in result.stderr
    assert b"ignored 1 malformed input line(s)" in result.stderr
    (check,) = fake.received("/v1/push-checks")
    assert [u["ref"] for u in check.body["updates"]] == ["refs/heads/main"]


@pytest.mark.parametrize(("mode", "expected_rc"), [("cutover", 1), ("shadow", 0)])
def test_a_malformed_line_naming_main_is_decided_from_the_cached_mode(
    installed: ServerRepo, fake: FakeService, mode: str, expected_rc: int
) -> None:
    """Input the hook cannot parse but that names a protected ref: cutover refuses, shadow not."""
    cache_mode(installed, mode)
    old = installed.ref("main")
    assert old is not None
    stdin = stdin_of(f"{old} {'6' * 40} refs/heads/main".encode() + b"\x00junk")

    result = installed.run_hook(installed.bare / "hooks" / "pre-receive", stdin)

    assert result.returncode == expected_rc, result.stderr
    assert b"Traceback" not in result.stderr
    if mode == "cutover":
        assert fake.received("/v1/push-checks") == []
        (item,) = installed.spooled()
        assert (item["allow"], item["mode"]) == (False, "cutover")
        assert b"could not be read" in result.stderr
