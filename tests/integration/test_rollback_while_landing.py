"""Mode changes and break-glass around the worker's push (found by the fault test): a rollback
while its authorized push lands (main did move in cutover: a fact to record, not a move to
refuse), a cutover while a shadow prediction is tried, a push let through by a break-glass
override; the worker goes on instead of exiting.

Real processes: the service, `integrator worker --once`, `git push` through the installed
hooks; the operator's rollback is sent from the git server between the pre-receive's verdict
and the update of main.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrator.settings import Settings
from tests.gitrepos import git
from tests.support import TokenMaker, free_port
from tests.worker_support import WorkerWorld


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    with WorkerWorld(settings, tmp_path, tokens).start().guard() as world:
        yield world


def roll_back_after_the_verdict(world: WorkerWorld) -> None:
    """The pre-receive hook as installed, then, once, the operator's rollback when it let an
    update of main through."""
    hooks = world.canonical.bare / "hooks"
    real = hooks / "pre-receive.real"
    (hooks / "pre-receive").rename(real)
    marker = world.tmp_path / "rolled-back"
    token = world.operator["Authorization"]
    (hooks / "pre-receive").write_text(
        f"#!{sys.executable}\n"
        "import json, os, subprocess, sys, urllib.request\n"
        "data = sys.stdin.buffer.read()\n"
        f"code = subprocess.run([{str(real)!r}], input=data).returncode\n"
        f"if code == 0 and b' refs/heads/main' in data and not os.path.exists({str(marker)!r}):\n"
        f"    open({str(marker)!r}, 'w').close()\n"
        f"    request = urllib.request.Request({world.url('/v1/rollback')!r},\n"
        "        data=json.dumps({'reason': 'incident'}).encode(),\n"
        f"        headers={{'Authorization': {token!r}, 'Content-Type': 'application/json'}})\n"
        "    urllib.request.urlopen(request, timeout=10).read()\n"
        "sys.exit(code)\n"
    )
    (hooks / "pre-receive").chmod(0o755)


def test_a_rollback_while_the_authorized_push_lands_is_recorded_and_the_worker_goes_on(
    world: WorkerWorld,
) -> None:
    candidate = world.ready("landing")
    start = world.canonical.head()
    world.cutover()
    roll_back_after_the_verdict(world)

    result = world.run_worker("--once", "--check", "true")

    assert (world.tmp_path / "rolled-back").exists()
    assert world.get("/v1/mode")["mode"] == "shadow"
    assert result.returncode == 0, result.stderr
    (registration,) = world.registrations()
    assert (registration.status, registration.old) == ("landed", start)
    assert registration.new == world.canonical.head()
    assert world.candidate(candidate)["status"] == "integrated"
    assert len(world.events("integration_completed")) == 1


def test_a_cutover_while_a_shadow_prediction_is_tried_gives_the_candidate_back_to_land_it(
    world: WorkerWorld,
) -> None:
    """The converse race: the worker took the candidate in shadow, the operator cut over
    during its check, so its prediction is refused; it gives the candidate back and, now in
    cutover, lands it for real (once)."""
    candidate = world.ready("predicted")
    start = world.canonical.head()
    marker = world.tmp_path / "cut-over"
    token = world.operator["Authorization"]
    check = world.tmp_path / "check.py"
    check.write_text(
        "import json, os, urllib.request\n"
        f"if not os.path.exists({str(marker)!r}):\n"
        f"    open({str(marker)!r}, 'w').close()\n"
        f"    request = urllib.request.Request({world.url('/v1/cutover')!r},\n"
        "        data=json.dumps({'reason': 'go', 'force': True}).encode(),\n"
        f"        headers={{'Authorization': {token!r}, 'Content-Type': 'application/json'}})\n"
        "    urllib.request.urlopen(request, timeout=10).read()\n"
    )

    result = world.run_worker("--once", "--check", f"{sys.executable} {check}")

    assert marker.exists() and world.get("/v1/mode")["mode"] == "cutover"
    assert result.returncode == 0, result.stderr
    (registration,) = world.registrations()
    assert (registration.status, registration.old) == ("landed", start)
    assert world.candidate(candidate)["status"] == "integrated"
    assert len(world.events("integration_completed")) == 1


def test_a_worker_push_let_through_by_break_glass_is_reported_as_content_on_main(
    world: WorkerWorld,
) -> None:
    """The hook has no service and the operator's break-glass override is in place when the
    worker pushes: main moves without the guard authorizing the registration. The service
    will not confirm that registration; the worker reports the content on main instead (the
    service finds it there) and goes on."""
    candidate = world.ready("glass")
    world.cutover()
    git("push", "-q", "origin", "HEAD:refs/heads/topic", cwd=world.canonical.work)
    state = world.canonical.bare / "integrator" / "state"
    assert json.loads((state / "last.json").read_text())["mode"] == "cutover"  # the hook saw it
    override = state / "override.json"
    override.write_text(json.dumps({"expires_at": "2999-01-01T00:00:00+00:00",
                                    "reason": "service down", "by": "ops"}))  # fmt: skip
    override.chmod(0o600)
    config = world.canonical.bare / "integrator" / "hook.json"
    hook = json.loads(config.read_text())
    hook["url"] = f"http://127.0.0.1:{free_port()}"
    config.write_text(json.dumps(hook))

    result = world.run_worker("--once", "--check", "true")

    assert result.returncode == 0, result.stderr
    (registration,) = world.registrations()
    assert registration.status == "registered"  # the guard never saw it
    assert registration.new == world.canonical.head()
    assert world.candidate(candidate)["status"] == "integrated"
    assert len(world.events("integration_completed")) == 1
