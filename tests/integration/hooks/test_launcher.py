"""The launcher git runs: the hook's body comes compiled from ``$GIT_DIR/integrator/``, and a
missing or broken body is decided as a crashing hook is (cutover refuses, shadow allows)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.integration.hooks.conftest import FakeService, ServerRepo, git, remote_lines


def cache_mode(repo: ServerRepo, mode: str, **config: object) -> None:
    """The last mode the hook saw; `config` overrides keys of hook.json."""
    (repo.state_dir / "last.json").write_text(json.dumps({"mode": mode}))
    if config:
        path = repo.bare / "integrator" / "hook.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}))


def test_the_body_is_loaded_compiled_not_compiled_on_each_push(installed: ServerRepo) -> None:
    """Python reports the body's code object as read from the cache install wrote."""
    old = installed.ref("main")
    stdin = f"{old} {'6' * 40} refs/heads/feature\n".encode()
    hook = installed.bare / "hooks" / "pre-receive"

    result = subprocess.run(
        ["/usr/bin/python3", "-IS", "-v", str(hook)],
        input=stdin,
        cwd=installed.bare,
        env={"PATH": "/usr/bin:/bin", "GIT_DIR": ".", "INTEGRATOR_PUSHER": "alice"},
        capture_output=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    loaded = [line for line in result.stderr.splitlines() if b"code object from" in line]
    assert [line for line in loaded if b"/integrator/__pycache__/pre_receive.cpython" in line]
    assert b"import 'json'" not in result.stderr and b"import 'enum'" not in result.stderr


def test_a_body_edited_after_install_runs_as_edited(installed: ServerRepo) -> None:
    """The compiled form is checked against the body: an edit is never run stale."""
    body = installed.bare / "integrator" / "pre_receive.py"
    body.write_text(body.read_text() + '\nsys.stderr.write("integrator: edited body\\n")\n')
    installed.commit("second")

    result = installed.push("main")

    assert result.returncode == 0, result.stderr
    assert "integrator: edited body" in remote_lines(result.stderr)


@pytest.mark.parametrize("damage", ["missing", "broken"])
@pytest.mark.parametrize(("mode", "refused"), [("cutover", True), ("shadow", False)])
def test_an_unusable_pre_receive_body_refuses_in_cutover_and_allows_in_shadow(
    installed: ServerRepo, fake: FakeService, damage: str, mode: str, refused: bool
) -> None:
    """Without its body the hook cannot check anything: the last mode seen decides, as for a
    crash; the pusher sees one reason and what to run, the traceback stays in the state dir."""
    cache_mode(installed, mode)
    body = installed.bare / "integrator" / "pre_receive.py"
    if damage == "missing":
        body.unlink()
    else:
        body.write_text("def run(:\n")
    old = installed.ref("main")
    git("branch", "topic", cwd=installed.work)
    installed.commit("second")

    result = installed.push("main", "topic")

    assert (result.returncode != 0) is refused
    assert (installed.ref("main") == old) is refused
    lines = remote_lines(result.stderr)
    problem = "ModuleNotFoundError" if damage == "missing" else "SyntaxError"
    verdict = "push refused" if refused else "push allowed"
    assert f"integrator: internal error (hook body unusable: {problem}); {verdict}" in lines
    assert f"integrator: run `integrator hooks check {installed.bare}`" in lines
    assert "Traceback" not in result.stderr
    assert problem in (installed.state_dir / "last-error.txt").read_text()
    assert fake.received("/v1/push-checks") == []


def test_fail_open_lets_a_push_through_an_unusable_body_in_cutover(installed: ServerRepo) -> None:
    """fail_open in hook.json holds for a missing body too; GitLab's prefix marks the lines."""
    cache_mode(installed, "cutover", fail_open=True, layout="gitlab")
    (installed.bare / "integrator" / "pre_receive.py").unlink()
    new = installed.commit("second")

    result = installed.push("main")

    assert result.returncode == 0, result.stderr
    assert installed.ref("main") == new
    expected = "GL-HOOK-ERR: integrator: internal error (hook body unusable: ModuleNotFoundError)"
    assert any(line.startswith(expected) for line in remote_lines(result.stderr))


def test_an_unusable_post_receive_body_cannot_fail_the_push(installed: ServerRepo) -> None:
    """post-receive cannot refuse anything: it says the push went unreported and exits 0."""
    cache_mode(installed, "cutover")
    (installed.bare / "integrator" / "post_receive.py").write_text("raise KeyError('bug')\n")
    old = installed.ref("main")
    stdin = f"{old} {'6' * 40} refs/heads/main\n".encode()

    result = installed.run_hook(installed.bare / "hooks" / "post-receive", stdin)

    assert result.returncode == 0
    assert b"(hook body unusable: KeyError); push not reported" in result.stderr
    assert b"Traceback" not in result.stderr
