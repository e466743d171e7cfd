"""`--layout ghes`: the pre-receive hook as GitHub Enterprise Server runs it.

GitHub Enterprise cannot run here, so its behaviour is rebuilt from its documentation ("Creating
a pre-receive hook script", "Creating a pre-receive hook environment"): the script from the hooks
repository runs in the environment (here: the environment's files at a test path instead of a
chroot's /integrator) with the push's quarantine and GitHub's variables — `GITHUB_USER_LOGIN`,
`GITHUB_USER_ID`, `GITHUB_REPO_NAME` (owner/name), `GITHUB_REPO_PUBLIC`, `GITHUB_USER_IP`, and
`GITHUB_VIA` when the push comes from the web UI or the API — and nothing else of the server's
environment. All pre-receive hooks of a push share 5 s; one that runs out refuses the push (the
stand-in enforces that with `timeout 5`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from integrator.hookinstall import HookInstallError
from integrator.hostlayouts import ghes
from tests.integration.hooks.conftest import FakeService, ServerRepo, remote_lines, verdict
from tests.support import run_cli

GHES_STAND_IN = """#!/bin/sh
# test stand-in for GitHub Enterprise's pre-receive runner: GitHub's variables only, 5 s in all
exec timeout 5 env -i PATH="$PATH" GIT_DIR="$(cd "${{GIT_DIR:-.}}" && pwd)" \\
  GIT_OBJECT_DIRECTORY="$GIT_OBJECT_DIRECTORY" \\
  GIT_ALTERNATE_OBJECT_DIRECTORIES="$GIT_ALTERNATE_OBJECT_DIRECTORIES" \\
  GIT_PUSH_OPTION_COUNT="${{GIT_PUSH_OPTION_COUNT:-0}}" \\
  GITHUB_USER_LOGIN="$T_LOGIN" GITHUB_USER_ID=42 GITHUB_REPO_NAME=acme/app \\
  GITHUB_REPO_PUBLIC=false GITHUB_USER_IP=192.0.2.7 ${{T_VIA:+GITHUB_VIA="$T_VIA"}} \\
  {hook}
"""


def set_up(repo: ServerRepo, **options: object) -> ghes.Made:
    """Install into a directory, 'build' the environment (the token copied in, as the recipe
    says), and make git run the hooks repository's script the way GitHub runs it."""
    out = repo.root / "integrator-ghes"
    environment = out / "environment" / "integrator"
    settings: dict[str, object] = {
        "url": repo.service.url,
        "environment_path": str(environment),
        "state_dir": str(repo.root / "run-state"),  # a run's /tmp: gone before the next push
    }
    settings.update(options)
    made = ghes.install(out, **settings)  # type: ignore[arg-type]
    (environment / "token").write_text(repo.service.token + "\n")
    hook = repo.bare / "hooks" / "pre-receive"
    hook.write_text(GHES_STAND_IN.format(hook=made.hook))
    hook.chmod(0o755)
    return made


def push(repo: ServerRepo, refspec: str, via: str = "") -> tuple[float, int, list[str]]:
    env = {"T_LOGIN": "alice", "T_VIA": via, "INTEGRATOR_PUSHER": "mallory"}
    started = time.monotonic()
    result = repo.push(refspec, pusher=None, server_env=env)
    return time.monotonic() - started, result.returncode, remote_lines(result.stderr)


def test_install_writes_the_hook_script_and_an_environment_without_the_token(
    repo: ServerRepo,
) -> None:
    made = set_up(repo, fallback_mode="cutover")
    (made.environment / "integrator" / "token").unlink()

    files = sorted(
        str(p.relative_to(made.hook.parents[1])) for p in made.hook.parents[1].rglob("*")
    )
    assert files == [
        "environment", "environment/Dockerfile", "environment/integrator",
        "environment/integrator/integrator", "environment/integrator/integrator-hook.json",
        "environment/integrator/integrator/pre_receive.py", "environment/integrator/pre-receive",
        "hook", "hook/integrator-pre-receive",
    ]  # fmt: skip
    dockerfile = (made.environment / "Dockerfile").read_text()
    assert "apk add --no-cache python3 git" in dockerfile and "integrator/token" in dockerfile
    assert "compileall -q --invalidation-mode checked-hash" in dockerfile
    config = json.loads((made.environment / "integrator" / "integrator-hook.json").read_text())
    assert (config["layout"], config["shared"], config["fallback_mode"]) == (
        "ghes",
        True,
        "cutover",
    )
    assert os.access(made.hook, os.X_OK)
    assert repo.service.token not in "".join(
        p.read_text() for p in made.hook.parents[1].rglob("*") if p.is_file()
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"deadline": 4.5}, "at most 4 s"),
        ({"fallback_mode": "open"}, "--fallback-mode"),
        ({"environment_path": "integrator"}, "absolute"),
    ],
)
def test_install_refuses_what_github_enterprise_cannot_honour(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    with pytest.raises(HookInstallError, match=message):
        ghes.install(tmp_path / "out", url="http://integrator:8000", **options)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_a_refused_push_records_github_s_login_and_via(repo: ServerRepo, fake: FakeService) -> None:
    """Identity GITHUB_USER_LOGIN with GITHUB_VIA; the repository is GitHub's owner/name; the
    configuration comes from the environment's file."""
    set_up(repo)
    fake.respond("POST", "/v1/push-checks", verdict(allow=False, mode="cutover", messages=("no",)))
    old = repo.ref("main")
    repo.commit("second")

    _, rc, lines = push(repo, "main", via="pull request merge button")

    assert rc != 0 and repo.ref("main") == old
    assert "no" in lines
    (check,) = fake.received("/v1/push-checks")
    body = check.body
    assert (body["pusher"], body["identity_source"]) == ("alice", "ghes")
    assert body["identity_detail"] == {"GITHUB_VIA": "pull request merge button"}
    assert body["repository"] == "acme/app"


@pytest.mark.parametrize(("fallback", "allowed"), [("shadow", True), ("cutover", False)])
def test_a_silent_service_is_decided_within_github_s_five_seconds(
    repo: ServerRepo, fake: FakeService, fallback: str, allowed: bool
) -> None:
    """At the largest deadline allowed, the hook decides before GitHub's 5 s run out (which
    would refuse even in shadow); with no cached mode, the configured fallback decides."""
    set_up(repo, deadline=ghes.MAX_DEADLINE, fallback_mode=fallback)
    fake.respond("POST", "/v1/push-checks", verdict(), delay=10)
    new = repo.commit("second")

    elapsed, rc, lines = push(repo, "main")

    assert (rc == 0) == allowed, lines
    assert elapsed < 5.0, elapsed
    assert any("deadline exceeded" in line for line in lines), lines
    assert (repo.ref("main") == new) == allowed


def test_the_cli_writes_the_directory_and_says_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTEGRATOR_")}
    out = tmp_path / "integrator-ghes"

    result = run_cli("hooks", "install", str(out), "--layout", "ghes", "--url",
                     "http://integrator:8000", "--fallback-mode", "cutover", env=env)  # fmt: skip
    too_slow = run_cli("hooks", "install", str(tmp_path / "x"), "--layout", "ghes", "--url",
                       "http://integrator:8000", "--deadline", "4.5", env=env)  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "commit it to the hooks repository" in result.stdout
    assert (
        (out / "hook" / "integrator-pre-receive")
        .read_text()
        .endswith("exec /usr/bin/python3 -IS /integrator/pre-receive\n")
    )
    assert too_slow.returncode == 2 and "at most 4 s" in too_slow.stderr


def test_the_environment_s_build_steps_run_against_its_own_context(tmp_path: Path) -> None:
    """No container engine here: the Dockerfile's COPY and its last RUN (token check, modes,
    compiling the body) are replayed with a local directory standing for the image's /, then the
    launcher runs the body from the compiled cache, as it will in the environment."""
    root = tmp_path / "image-root"
    made = ghes.install(tmp_path / "out", url="http://integrator:8000",
                        environment_path=str(root / "integrator"))  # fmt: skip
    steps = [line for line in (made.environment / "Dockerfile").read_text().split("\nRUN ")][1:]
    copy = [line for line in (made.environment / "Dockerfile").read_text().splitlines()
            if line.startswith("COPY ")]  # fmt: skip
    assert copy == [f"COPY integrator/ {root / 'integrator'}/"]
    last = steps[-1].replace("\\\n", " ").strip()

    shutil.copytree(made.environment / "integrator", root / "integrator")
    without_token = subprocess.run(["sh", "-c", last], capture_output=True, text=True)
    (root / "integrator" / "token").write_text("a-token\n")
    built = subprocess.run(["sh", "-c", last], capture_output=True, text=True)

    assert without_token.returncode != 0 and "copy the hook token" in without_token.stdout
    assert built.returncode == 0, built.stderr
    (compiled,) = (root / "integrator" / "integrator" / "__pycache__").glob("pre_receive.*.pyc")
    assert int.from_bytes(compiled.read_bytes()[4:8], "little") == 0b11  # hash-based, checked
    assert oct((root / "integrator" / "token").stat().st_mode & 0o777) == "0o444"
