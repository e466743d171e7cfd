"""`integrator hooks install|check|uninstall` as a library, against real bare repositories."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrator import hookinstall
from integrator.hookinstall import HookInstallError
from tests.integration.hooks.conftest import (
    FakeService,
    ServerRepo,
    dead_url,
    fixed,
    git,
    remote_lines,
)
from tests.integration.hooks.test_layout_gitea import shape_like_gitea

NOBODY = 65534
REPO_ROOT = Path(__file__).resolve().parents[3]


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_hook(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def items_by_name(items: list[hookinstall.CheckItem]) -> dict[str, hookinstall.CheckItem]:
    return {item.name: item for item in items}


def test_hook_sources_are_the_checkout_hooks_when_not_installed_from_a_wheel() -> None:
    """Without the wheel's integrator/_hooks, the scripts come from the checkout's hooks/."""
    assert hookinstall.hook_sources() == REPO_ROOT / "hooks"
    for name in ("pre-receive", "post-receive", "launcher"):
        assert (hookinstall.hook_sources() / name).is_file()


def test_install_puts_a_launcher_in_place_and_the_compiled_body_beside_the_configuration(
    repo: ServerRepo,
) -> None:
    """git runs the launcher; the shipped script is the body, private, compiled by the hooks'
    own interpreter into a cache its loader checks against the body."""
    result = repo.install(layout="ghes")

    config_dir = repo.bare / "integrator"
    (hook,) = result.hooks
    assert 'HOOK = "pre-receive"' in hook.read_text() and len(hook.read_text()) < 5000
    body = config_dir / "pre_receive.py"
    assert body.read_text() == (hookinstall.hook_sources() / "pre-receive").read_text()
    assert mode_of(body) == 0o600
    assert not (config_dir / "post_receive.py").exists()  # GHES runs no post-receive
    (compiled,) = (config_dir / "__pycache__").glob("pre_receive.cpython-*.pyc")
    assert int.from_bytes(compiled.read_bytes()[4:8], "little") == 0b11  # hash-based, checked
    items = items_by_name(hookinstall.check(repo.bare))
    assert items["pre-receive body"].ok, items["pre-receive body"].detail


def test_check_finds_a_missing_body_and_one_that_is_not_the_shipped_script(
    installed: ServerRepo,
) -> None:
    """Each body is checked on its own; reinstalling is the fix."""
    config_dir = installed.bare / "integrator"
    (config_dir / "pre_receive.py").unlink()
    (config_dir / "post_receive.py").write_text("# an older hook\n")

    items = items_by_name(hookinstall.check(installed.bare))

    assert not items["pre-receive body"].ok and "No such file" in items["pre-receive body"].detail
    post = items["post-receive body"]
    assert not post.ok and "differs from this installation's post-receive" in post.detail
    installed.install()
    assert all(item.ok for item in hookinstall.check(installed.bare))


def test_install_writes_hooks_configuration_token_and_state_privately(repo: ServerRepo) -> None:
    """Hooks 0755 with the chosen interpreter; config and token 0600; state 0700."""
    git("config", "receive.advertisePushOptions", "false", cwd=repo.bare)

    result = repo.install(repository=None, deadline=1.5)

    git_dir = repo.bare
    assert result.hooks == (git_dir / "hooks" / "pre-receive", git_dir / "hooks" / "post-receive")
    for hook in result.hooks:
        assert mode_of(hook) == 0o755
        first, second = hook.read_text().splitlines()[:2]
        assert first == "#!/usr/bin/python3 -IS"
        assert second.startswith(hookinstall.MARKER)
    assert mode_of(result.config_path) == 0o600
    assert mode_of(result.token_path) == 0o600
    assert mode_of(result.state_dir) == 0o700
    assert result.token_path.read_text().strip() == repo.service.token
    config = json.loads(result.config_path.read_text())
    assert config["repository"] == result.repository == "canonical"
    assert config["hook_instance"] == result.hook_instance
    assert result.hook_instance.endswith(f":{git_dir}")
    assert config["url"] == repo.service.url
    assert config["token_file"] == str(result.token_path)
    assert config["state_dir"] == str(result.state_dir)
    assert (config["deadline_seconds"], config["fail_open"], config["layout"]) == (
        1.5,
        False,
        "plain",
    )
    assert config["protected_refs_default"] == ["refs/heads/main"]
    assert config["advertise_push_options_before"] == "false"
    assert repo.service.token not in result.config_path.read_text()
    assert git("config", "receive.advertisePushOptions", cwd=git_dir) == "true"


def test_reinstalling_over_our_own_hooks_is_idempotent(repo: ServerRepo) -> None:
    """A second install updates the configuration and keeps what the first one replaced."""
    repo.install()
    (repo.state_dir / "last.json").write_text('{"mode": "cutover"}')

    result = repo.install(url="http://127.0.0.1:9", fail_open=True)

    config = json.loads(result.config_path.read_text())
    assert (config["url"], config["fail_open"]) == ("http://127.0.0.1:9", True)
    assert config["advertise_push_options_before"] is None
    assert config["chain"] == {"pre-receive": None, "post-receive": None}
    assert (repo.state_dir / "last.json").exists()  # the cached mode survives a re-install


def test_install_refuses_to_overwrite_a_foreign_hook_without_chaining(repo: ServerRepo) -> None:
    """A hook that is not ours stays untouched, and the message names the option."""
    foreign = repo.bare / "hooks" / "pre-receive"
    write_hook(foreign, "exit 0\n")

    with pytest.raises(HookInstallError, match="--chain-existing"):
        repo.install()

    assert foreign.read_text() == "#!/bin/sh\nexit 0\n"
    assert not (repo.bare / "integrator").exists()
    assert not (repo.bare / "hooks" / "post-receive").exists()


def test_a_chained_pre_receive_runs_first_and_its_refusal_refuses_the_push(
    repo: ServerRepo, fake: FakeService
) -> None:
    """The existing hook keeps its say: its refusal (and output) stands, ours is not asked."""
    foreign = repo.bare / "hooks" / "pre-receive"
    write_hook(foreign, "cat >/dev/null\necho 'size policy: file too large' >&2\nexit 3\n")

    result = repo.install(chain_existing=True)

    moved = repo.bare / "hooks" / "pre-receive.integrator-orig"
    assert result.chained == ((moved, foreign),)
    assert hookinstall.is_ours(foreign) and moved.is_file()
    old = repo.ref("main")
    repo.commit("second")
    pushed = repo.push("main")
    assert pushed.returncode != 0 and repo.ref("main") == old
    assert "size policy: file too large" in remote_lines(pushed.stderr)
    assert fake.received("/v1/push-checks") == []


def test_a_chained_pre_receive_that_passes_sees_the_input_then_ours_decides(
    repo: ServerRepo, fake: FakeService
) -> None:
    """The chained hook gets the buffered stdin; then the service is asked as usual."""
    seen = repo.root / "seen.txt"
    write_hook(repo.bare / "hooks" / "pre-receive", f"cat > {seen}\n")
    repo.install(chain_existing=True)
    new = repo.commit("second")

    assert repo.push("main").returncode == 0

    assert seen.read_text().split()[1:] == [new, "refs/heads/main"]
    assert len(fake.received("/v1/push-checks")) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"deadline": 0}, "deadline must be in"),
        ({"deadline": 30.5}, "deadline must be in"),
        ({"deadline": float("nan")}, "deadline must be in"),
        ({"python": "python3"}, "absolute path"),
        ({"python": "/nonexistent/python3"}, "not an executable file"),
        ({"layout": "github"}, "--layout must be one of"),
        ({"identity_source": "USER"}, "--identity-source must be one of"),
        ({"token": "  "}, "token is empty"),
        ({"url": "ftp://example"}, "--url must be"),
        ({"url": "http://user:pw@example"}, "without credentials"),
    ],
)
def test_install_refuses_bad_options_with_one_clear_line(
    repo: ServerRepo, options: dict[str, object], message: str
) -> None:
    """Each unusable option is refused before anything is written."""
    with pytest.raises(HookInstallError, match=message) as info:
        repo.install(**options)

    assert "\n" not in info.value.message
    assert not (repo.bare / "integrator").exists()


def test_install_refuses_a_repository_that_is_not_bare(repo: ServerRepo) -> None:
    """Only bare repositories receive pushes through these hooks."""
    with pytest.raises(HookInstallError, match="is not a bare git repository"):
        hookinstall.install(repo.work, url=repo.service.url, token="t", repository=None)
    with pytest.raises(HookInstallError, match="is not a bare git repository"):
        hookinstall.install(repo.root / "missing.git", url="http://x", token="t", repository=None)


def test_install_refuses_when_core_hooks_path_sends_git_elsewhere(repo: ServerRepo) -> None:
    """Hooks that git would never run are not installed silently."""
    git("config", "core.hooksPath", "/srv/shared-hooks", cwd=repo.bare)

    with pytest.raises(HookInstallError, match=r"core\.hooksPath"):
        repo.install()


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("gitea", ("hooks/pre-receive.d/integrator", "hooks/post-receive.d/integrator")),
        ("gitlab", ("custom_hooks/pre-receive", "custom_hooks/post-receive")),
        ("gitolite", ("hooks/pre-receive", "hooks/post-receive")),
        ("ghes", ("hooks/pre-receive",)),
    ],
)
def test_layouts_put_the_hooks_where_the_host_runs_them(
    repo: ServerRepo, layout: str, expected: tuple[str, ...]
) -> None:
    """Gitea runs hooks/<name>.d/*, GitLab custom_hooks/, GHES has no post-receive."""
    hosts_own = repo.bare / "hooks" / "pre-receive"
    if layout == "gitea":
        shape_like_gitea(repo)

    result = repo.install(layout=layout)

    assert result.hooks == tuple(repo.bare / path for path in expected)
    assert all(hookinstall.is_ours(hook) for hook in result.hooks)
    if layout == "gitea":
        assert not hookinstall.is_ours(hosts_own)
    checks = items_by_name(hookinstall.check(repo.bare))
    names = ["pre-receive", "post-receive"][: len(expected)]
    assert [checks[f"{name} hook"].ok for name in names] == [True] * len(expected)
    assert "post-receive hook" not in checks or layout != "ghes"


def test_check_is_all_ok_with_a_reachable_service_and_a_hook_token(installed: ServerRepo) -> None:
    """Every item passes on a healthy install."""
    items = hookinstall.check(installed.bare)

    assert [item for item in items if not item.ok] == []
    names = {item.name for item in items}
    expected = {"repository", "configuration", "pre-receive hook", "post-receive hook"}
    assert expected | {"interpreter", "token file", "state directory", "push options"} <= names
    assert {"service", "hook token"} <= names


def test_check_lists_what_is_wrong(repo: ServerRepo) -> None:
    """A down service, a loose token file and unadvertised push options are each reported."""
    result = repo.install(url=dead_url())
    result.token_path.chmod(0o644)
    git("config", "receive.advertisePushOptions", "false", cwd=repo.bare)
    (repo.bare / "hooks" / "post-receive").chmod(0o644)

    failed = {item.name: item.detail for item in hookinstall.check(repo.bare) if not item.ok}

    assert set(failed) == {"service", "token file", "push options", "post-receive hook"}
    assert "unreachable" in failed["service"]
    assert "mode 644, want 600" in failed["token file"]
    assert "not executable" in failed["post-receive hook"]


def test_check_refuses_a_token_without_the_hook_role(
    installed: ServerRepo, fake: FakeService
) -> None:
    """A valid token of another role is not enough for the hooks."""
    fake.whoami_role = "reader"

    item = items_by_name(hookinstall.check(installed.bare))["hook token"]

    assert not item.ok and "role 'reader'" in item.detail


def test_check_reports_a_refused_token(installed: ServerRepo, fake: FakeService) -> None:
    """A token the service does not know is reported as refused."""
    fake.respond("GET", "/v1/whoami", fixed(401))

    item = items_by_name(hookinstall.check(installed.bare))["hook token"]

    assert not item.ok and "HTTP 401" in item.detail


def test_check_of_an_uninstalled_repository_fails_clearly(repo: ServerRepo) -> None:
    """Nothing installed: the configuration and the hooks are reported missing."""
    failed = {item.name for item in hookinstall.check(repo.bare) if not item.ok}

    assert {"configuration", "pre-receive hook", "post-receive hook", "token file"} <= failed


def test_uninstall_restores_chained_hooks_and_the_push_options_setting(repo: ServerRepo) -> None:
    """Uninstall leaves the repository as install found it."""
    foreign = repo.bare / "hooks" / "post-receive"
    write_hook(foreign, "exit 0\n")
    repo.install(chain_existing=True)

    hookinstall.uninstall(repo.bare)

    assert foreign.read_text() == "#!/bin/sh\nexit 0\n"
    assert not (repo.bare / "hooks" / "pre-receive").exists()
    assert not (repo.bare / "hooks" / "post-receive.integrator-orig").exists()
    assert not (repo.bare / "integrator").exists()  # the bodies and their compiled cache too
    assert git("config", "--get", "receive.advertisePushOptions", cwd=repo.bare, check=False) == ""


def test_uninstall_restores_a_previous_push_options_value(repo: ServerRepo) -> None:
    """A value set before install comes back."""
    git("config", "receive.advertisePushOptions", "false", cwd=repo.bare)
    repo.install()
    repo.install()

    hookinstall.uninstall(repo.bare)

    assert git("config", "receive.advertisePushOptions", cwd=repo.bare) == "false"


def test_uninstall_keeps_spooled_verdicts_unless_told_to_discard_them(repo: ServerRepo) -> None:
    """Verdicts given without the service are evidence: they are not deleted by accident."""
    repo.install(url=dead_url())
    repo.commit("second")
    assert repo.push("main").returncode == 0

    with pytest.raises(HookInstallError, match="still spooled"):
        hookinstall.uninstall(repo.bare)
    assert hookinstall.is_ours(repo.bare / "hooks" / "pre-receive")

    hookinstall.uninstall(repo.bare, discard_spool=True)
    assert not (repo.bare / "integrator").exists()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory another user can traverse (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="integrator-hooks-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def nobody_repo(open_dir: Path, fake: FakeService) -> ServerRepo:
    """A repository owned by another user than the one installing, as on a git server."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as the repository owner")
    repo = ServerRepo(open_dir, fake)
    for path in [repo.bare, *repo.bare.rglob("*")]:
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
    return repo


def test_hooks_run_as_the_repository_owner_with_files_it_owns(nobody_repo: ServerRepo) -> None:
    """Installed by root, the files belong to the owner, and its pushes are checked."""
    result = nobody_repo.install()
    config_dir = nobody_repo.bare / "integrator"
    compiled = [config_dir / "__pycache__", *(config_dir / "__pycache__").iterdir()]
    bodies = [config_dir / "pre_receive.py", config_dir / "post_receive.py", *compiled]
    for path in (result.config_path, result.token_path, result.state_dir, *result.hooks, *bodies):
        assert path.stat().st_uid == NOBODY, path
    new = nobody_repo.commit("second")

    pushed = nobody_repo.push("main", as_user=NOBODY)

    assert pushed.returncode == 0, pushed.stderr
    assert nobody_repo.ref("main") == new
    assert nobody_repo.service.received("/v1/push-checks")[0].body["pusher"] == "alice"
    assert (nobody_repo.state_dir / "last.json").stat().st_uid == NOBODY
    assert all(item.ok for item in hookinstall.check(nobody_repo.bare))


def test_check_finds_a_compiled_cache_the_owner_cannot_refresh(nobody_repo: ServerRepo) -> None:
    """A cache left to root (say, compiled by hand) would keep an edited body from compiling."""
    nobody_repo.install()
    os.chown(nobody_repo.bare / "integrator" / "__pycache__", 0, 0)

    found = items_by_name(hookinstall.check(nobody_repo.bare))["pre-receive body"]

    assert not found.ok and "is not the repository owner's" in found.detail


def test_install_refuses_an_interpreter_the_owner_cannot_execute(
    nobody_repo: ServerRepo, open_dir: Path
) -> None:
    """An interpreter under a private home (like /root) is refused at install time."""
    private = open_dir / "private"
    private.mkdir(mode=0o700)
    (private / "python3").symlink_to("/usr/bin/python3")

    with pytest.raises(HookInstallError, match="unusable by the repository owner"):
        nobody_repo.install(python=str(private / "python3"))
