"""`--layout gitlab`: a custom_hooks tarball, set by Gitaly, run under Gitaly's environment.

GitLab cannot run here, so the repository is shaped as Gitaly leaves it and its hook is run as
Gitaly runs custom hooks (GitLab's "Git server hooks" page, Gitaly's custom hook runner):

* `gitaly hooks set` unpacks the tarball's `custom_hooks/` into the repository;
* Gitaly runs `custom_hooks/pre-receive`, then `custom_hooks/pre-receive.d/*`, stopping at the
  first failure, in the repository, with an environment reduced to an allow-list (PATH, HOME,
  the quarantine's GIT_OBJECT_DIRECTORY/GIT_ALTERNATE_OBJECT_DIRECTORIES, push options) plus
  GIT_DIR (absolute) and its own GL_ID, GL_USERNAME, GL_PROTOCOL, GL_PROJECT_PATH, GL_REPOSITORY:
  nothing else of the pusher's or the server's environment (no INTEGRATOR_*) reaches the hook;
* a line that starts with `GL-HOOK-ERR: ` is shown in GitLab's web UI.

The stand-in below is what git runs as `hooks/pre-receive` (Gitaly points git at its own hooks);
it takes the GL_* values from receive-pack's environment, as Gitaly takes them from its payload.
"""

from __future__ import annotations

import json
import os
import tarfile
import time
from pathlib import Path

import pytest

from integrator.hookinstall import HookInstallError
from integrator.hostlayouts import gitlab
from tests.integration.hooks.conftest import FakeService, ServerRepo, remote_lines, verdict
from tests.support import run_cli

GITALY_STAND_IN = """#!/bin/sh
# test stand-in for Gitaly's hook runner: allow-listed environment, custom hooks in order
repo=$(cd "${GIT_DIR:-.}" && pwd)
for hook in "$repo/custom_hooks/$(basename "$0")" "$repo/custom_hooks/$(basename "$0").d/"*; do
  [ -f "$hook" ] && [ -x "$hook" ] || continue
  env -i PATH="$PATH" HOME=/nonexistent GIT_DIR="$repo" \\
    GIT_OBJECT_DIRECTORY="$GIT_OBJECT_DIRECTORY" \\
    GIT_ALTERNATE_OBJECT_DIRECTORIES="$GIT_ALTERNATE_OBJECT_DIRECTORIES" \\
    GIT_PUSH_OPTION_COUNT="${GIT_PUSH_OPTION_COUNT:-0}" \\
    GL_ID="$T_GL_ID" GL_USERNAME="$T_GL_USERNAME" GL_PROTOCOL="$T_GL_PROTOCOL" \\
    GL_PROJECT_PATH="$T_GL_PROJECT_PATH" GL_REPOSITORY="$T_GL_REPOSITORY" \\
    "$hook" || exit $?
done
"""

RELATIVE = "@hashed/6b/86/6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b.git"


def gitlab_env(protocol: str = "ssh") -> dict[str, str]:
    return {
        "T_GL_ID": "user-42",
        "T_GL_USERNAME": "alice",
        "T_GL_PROTOCOL": protocol,
        "T_GL_PROJECT_PATH": "acme/app",
        "T_GL_REPOSITORY": "project-1",
        "INTEGRATOR_URL": "http://127.0.0.1:9",  # what a stripped environment must not pass on
        "INTEGRATOR_PUSHER": "mallory",
    }


def set_hooks(repo: ServerRepo, node: Path, **options: object) -> gitlab.Bundle:
    """Build the tarball, prepare the node's directory, and do what `gitaly hooks set` does."""
    settings: dict[str, object] = {
        "url": repo.service.url,
        "repository": "app",
        "output": repo.root / "hooks.tar",
        "node_dir": str(node),
    }
    settings.update(options)
    made = gitlab.install(RELATIVE, **settings)  # type: ignore[arg-type]
    (node / "state").mkdir(parents=True, mode=0o700)
    (node / "token").write_text(repo.service.token + "\n")
    (node / "token").chmod(0o600)
    with tarfile.open(made.tarball) as tar:
        tar.extractall(repo.bare, filter="tar")
    for name in ("pre-receive", "post-receive"):
        hook = repo.bare / "hooks" / name
        hook.write_text(GITALY_STAND_IN)
        hook.chmod(0o755)
    return made


@pytest.fixture
def node(tmp_path: Path) -> Path:
    return tmp_path / "node"


def cache(node: Path, mode: str) -> None:
    body = {"mode": mode, "mode_version": 3, "protected_refs": ["refs/heads/main"]}
    (node / "state" / "last.json").write_text(json.dumps(body))


def test_the_tarball_holds_the_hooks_and_their_configuration_never_the_token(
    repo: ServerRepo, node: Path
) -> None:
    """custom_hooks/ at the root, executable hooks, the node's paths in the configuration."""
    made = set_hooks(repo, node, python="/opt/gitlab/embedded/bin/python3")

    with tarfile.open(made.tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
        config = json.loads(tar.extractfile("custom_hooks/integrator-hook.json").read())  # type: ignore[union-attr]
        first = tar.extractfile("custom_hooks/pre-receive").readline()  # type: ignore[union-attr]
    assert set(members) == {
        "custom_hooks",
        "custom_hooks/pre-receive",
        "custom_hooks/post-receive",
        "custom_hooks/integrator-hook.json",
        "custom_hooks/integrator",
        "custom_hooks/integrator/pre_receive.py",
        "custom_hooks/integrator/post_receive.py",
    }
    assert members["custom_hooks/pre-receive"].mode == 0o755
    assert members["custom_hooks/integrator/pre_receive.py"].mode == 0o644
    assert first == b"#!/opt/gitlab/embedded/bin/python3 -IS\n"
    assert config["token_file"] == f"{node}/token" and config["state_dir"] == f"{node}/state"
    assert (config["layout"], config["repository"], config["shared"]) == ("gitlab", "app", False)
    assert repo.service.token.encode() not in made.tarball.read_bytes()


def test_the_commands_are_printed_for_every_gitaly_node(repo: ServerRepo, node: Path) -> None:
    """One `gitaly hooks set` per node, run from here over ssh with the tarball as its input."""
    made = set_hooks(repo, node, nodes=("gitaly-1", "gitaly-2"), storage="cluster")

    assert [name for name, _ in made.commands] == ["gitaly-1", "gitaly-2"]
    for name, commands in made.commands:
        setting = commands[-1]
        assert setting.startswith(f"ssh {name} ")
        assert "gitaly hooks set --storage cluster --repository" in setting
        assert RELATIVE in setting and "--config /var/opt/gitlab/gitaly/config.toml" in setting
        assert setting.endswith(f"< {made.tarball}")
        assert any(c.endswith("< hook.token") and f"{node}/token" in c for c in commands)


@pytest.mark.parametrize(
    ("path", "options"),
    [
        ("/var/opt/gitlab/git-data/repositories/acme/app.git", {}),
        ("@hashed/../../etc.git", {}),
        (RELATIVE, {"repository": None}),
    ],
)
def test_install_refuses_what_gitaly_could_not_use(
    tmp_path: Path, path: str, options: dict[str, object]
) -> None:
    settings: dict[str, object] = {
        "url": "http://integrator:8000",
        "repository": "app",
        "output": tmp_path / "hooks.tar",
    }
    settings.update(options)
    with pytest.raises(HookInstallError):
        gitlab.install(path, **settings)  # type: ignore[arg-type]
    assert not (tmp_path / "hooks.tar").exists()


def test_a_refused_push_under_gitaly_s_environment(
    repo: ServerRepo, fake: FakeService, node: Path
) -> None:
    """Configuration from the file (the environment is stripped), GitLab's identity with GL_ID,
    every line GL-HOOK-ERR:."""
    set_hooks(repo, node)
    fake.respond(
        "POST", "/v1/push-checks", verdict(allow=False, mode="cutover", messages=("no", "use x"))
    )
    old = repo.ref("main")
    repo.commit("second")

    result = repo.push("main", pusher=None, server_env=gitlab_env())

    assert result.returncode != 0 and repo.ref("main") == old
    assert remote_lines(result.stderr)[:2] == ["GL-HOOK-ERR: no", "GL-HOOK-ERR: use x"]
    (check,) = fake.received("/v1/push-checks")
    body = check.body
    assert (body["pusher"], body["identity_source"]) == ("alice", "gitlab")
    assert body["identity_detail"] == {"GL_ID": "user-42", "GL_PROTOCOL": "ssh"}
    assert body["repository"] == "app"  # this repository's tarball names it
    assert body["hook_instance"] == f"gitlab:default:{RELATIVE}"
    # the launcher imported the body, which Python compiled beside it for the next push
    assert list((repo.bare / "custom_hooks" / "integrator" / "__pycache__").glob("pre_receive.*"))


def test_a_web_merge_gets_words_for_gitlab_s_ui(
    repo: ServerRepo, fake: FakeService, node: Path
) -> None:
    """GL_PROTOCOL=web (the merge button): no advice about pushing refs separately."""
    set_hooks(repo, node)
    fake.respond("POST", "/v1/push-checks", verdict(allow=False, mode="cutover"))
    repo.commit("second")

    result = repo.push("main", pusher=None, server_env=gitlab_env("web"))

    lines = remote_lines(result.stderr)
    assert result.returncode != 0
    assert lines[0] == (
        "GL-HOOK-ERR: main is updated only by the integrator, so merging into it here is "
        "switched off."
    )
    assert lines[1].startswith("GL-HOOK-ERR: Queue the source branch for the integrator")
    assert not any("separately" in line for line in lines)


def test_a_shared_tarball_names_the_repository_from_gl_project_path(
    repo: ServerRepo, fake: FakeService, node: Path
) -> None:
    """Server-wide hooks serve every project: the name is GitLab's."""
    set_hooks(repo, node, shared=True, repository=None)
    new = repo.commit("second")

    result = repo.push("main:topic", pusher=None, server_env=gitlab_env())

    assert result.returncode == 0, result.stderr
    assert fake.received("/v1/push-checks")[0].body["repository"] == "acme/app"
    (report,) = fake.wait_for("/v1/push-reports")
    assert report.body["repository"] == "acme/app"
    assert report.body["updates"][0]["new"] == new


def test_the_deadline_holds_under_gitaly_with_a_silent_service(
    repo: ServerRepo, fake: FakeService, node: Path
) -> None:
    """The cached cutover refuses main within the deadline, in GitLab's words."""
    set_hooks(repo, node, deadline=1.0)
    cache(node, "cutover")
    fake.respond("POST", "/v1/push-checks", verdict(), delay=10)
    old = repo.ref("main")
    repo.commit("second")

    started = time.monotonic()
    result = repo.push("main", pusher=None, server_env=gitlab_env())
    elapsed = time.monotonic() - started

    assert result.returncode != 0 and repo.ref("main") == old
    assert elapsed < 5.0, elapsed
    lines = remote_lines(result.stderr)
    assert lines and all(line.startswith("GL-HOOK-ERR: ") for line in lines), lines
    assert any("deadline exceeded" in line for line in lines)


def test_the_cli_prints_the_commands_and_refuses_bad_input_with_exit_2(tmp_path: Path) -> None:
    """`integrator hooks install --layout gitlab`: exit 0 with the commands; an absolute path
    (not Gitaly's relative one) is bad input: one line, exit 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTEGRATOR_")}
    common = ["--layout", "gitlab", "--url", "http://integrator:8000", "--repository", "app"]
    output = tmp_path / "hooks.tar"

    made = run_cli("hooks", "install", RELATIVE, *common, "--output", str(output),
                   "--gitaly-node", "gitaly-1", env=env)  # fmt: skip
    refused = run_cli("hooks", "install", "/srv/app.git", *common, env=env)

    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert lines[1] == "on gitaly-1:"
    assert lines[2].startswith("  ssh gitaly-1 'sudo install -d -m 0700")
    assert "gitaly hooks set" in lines[4] and lines[4].endswith(f"< {output}")
    assert refused.returncode == 2, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
