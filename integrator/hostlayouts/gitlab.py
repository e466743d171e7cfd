"""GitLab: the hooks as a ``custom_hooks`` tarball Gitaly sets, never files written into storage.

Since GitLab 15.11 a repository's server hooks are set with ``gitaly hooks set``, which reads a
tarball whose root holds ``custom_hooks/`` and targets one Gitaly node: the commands are printed
for each node. Gitaly runs ``custom_hooks/pre-receive`` (then ``pre-receive.d/*``) in the
repository with an environment reduced to an allow-list plus its own ``GL_*`` variables
(``GL_ID``, ``GL_USERNAME``, ``GL_PROTOCOL``, ``GL_PROJECT_PATH``, ``GL_REPOSITORY``), so no
``INTEGRATOR_*`` variable reaches the hook: its configuration is ``integrator-hook.json`` beside
it, in the tarball. The token and the state directory stay on each node (``node_dir``), out of the
tarball (Gitaly keeps custom hooks in its backups) and out of the storage.

Each hook is the launcher, with the interpreter in its shebang, and its body in
``custom_hooks/integrator/``: Python compiles the body there on its first run and loads it
compiled afterwards (about 25 ms less a push than running the whole script).
"""

from __future__ import annotations

import io
import json
import shlex
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

GITALY = "/opt/gitlab/embedded/bin/gitaly"
GITALY_CONFIG = "/var/opt/gitlab/gitaly/config.toml"
NODE_DIR = "/var/opt/gitlab/integrator"
CONFIG_NAME = "integrator-hook.json"
HOOK_NAMES = ("pre-receive", "post-receive")


@dataclass(frozen=True)
class Bundle:
    """What ``hooks install --layout gitlab`` produced: the tarball and what to run where."""

    tarball: Path
    config: dict[str, object]
    #: (node, commands): for each Gitaly node ("" when none was named: run on each of them)
    commands: tuple[tuple[str, tuple[str, ...]], ...]


def bundle(
    relative_path: str,
    *,
    scripts: dict[str, str],
    config: dict[str, object],
    output: Path,
    storage: str = "default",
    gitaly_config: str = GITALY_CONFIG,
    node_dir: str = NODE_DIR,
    nodes: Sequence[str] = (),
    token_source: str = "hook.token",
) -> Bundle:
    """Write the tarball (``custom_hooks/``: both hooks and their configuration) to ``output``;
    ``scripts`` maps each hook to its text, ``config`` is the hooks' configuration without the
    node's paths, which this adds."""
    full = dict(config)
    full.update(
        token_file=f"{node_dir}/token",
        state_dir=f"{node_dir}/state",
        layout="gitlab",
        hook_instance=f"gitlab:{storage}:{relative_path}",
    )
    members = [
        (f"custom_hooks/{name}", text.encode("utf-8"), 0o644 if name.endswith(".py") else 0o755)
        for name, text in scripts.items()
    ]
    text = json.dumps(full, indent=2) + "\n"
    members.append((f"custom_hooks/{CONFIG_NAME}", text.encode("utf-8"), 0o644))
    output.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(output, "w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("custom_hooks", "custom_hooks/integrator"):
            folder = tarfile.TarInfo(directory)
            folder.type, folder.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(folder)
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    setup = node_commands(relative_path, output, storage, gitaly_config, node_dir, token_source)
    # no node named: the same commands, to run on each node
    commands = tuple((node, over_ssh(node, setup)) for node in nodes) or (("", setup),)
    return Bundle(output, full, commands)


def node_commands(
    relative_path: str,
    tarball: Path,
    storage: str,
    gitaly_config: str,
    node_dir: str,
    token_source: str,
) -> tuple[str, ...]:
    """On one Gitaly node: the node's token and state directory, then the hooks themselves."""
    q = shlex.quote
    return (
        f"sudo install -d -m 0700 -o git -g git {q(node_dir)} {q(node_dir + '/state')}",
        f"sudo install -m 0600 -o git -g git /dev/stdin {q(node_dir + '/token')} "
        f"< {q(token_source)}",
        f"sudo -u git -- {GITALY} hooks set --storage {q(storage)} --repository "
        f"{q(relative_path)} --config {q(gitaly_config)} < {q(str(tarball))}",
    )


def over_ssh(node: str, commands: tuple[str, ...]) -> tuple[str, ...]:
    """The same commands run from here: each one's input redirection stays on this side."""
    remote = []
    for command in commands:
        body, redirect, source = command.rpartition(" < ")
        if not redirect:
            body, source = command, ""
        line = f"ssh {shlex.quote(node)} {shlex.quote(body)}"
        remote.append(f"{line} < {source}" if redirect else line)
    return tuple(remote)


def install(
    relative_path: str,
    *,
    url: str,
    repository: str | None,
    output: Path,
    python: str = "/usr/bin/python3",
    identity_source: str = "gitlab",
    deadline: float = 2.5,
    fail_open: bool = False,
    protected_refs: Sequence[str] = ("refs/heads/main",),
    shared: bool = False,
    storage: str = "default",
    gitaly_config: str = GITALY_CONFIG,
    node_dir: str = NODE_DIR,
    nodes: Sequence[str] = (),
    token_source: str = "hook.token",
) -> Bundle:
    """The tarball and commands for one repository (``relative_path`` on the Gitaly storage), or
    with ``shared`` for any repository (server-wide hooks: the name is ``GL_PROJECT_PATH``)."""
    from integrator import hookinstall

    parts = relative_path.split("/")
    if relative_path.startswith("/") or ".." in parts or not relative_path.endswith(".git"):
        raise hookinstall.HookInstallError(
            "REPO.git must be the repository's relative path on the Gitaly storage (Admin Area, "
            f"the project, 'Relative path', e.g. @hashed/6b/86/….git): {relative_path}"
        )
    if not shared and not repository:
        raise hookinstall.HookInstallError(
            "--repository is required: the name the integrator service knows this repository by"
        )
    hookinstall.validate_common(
        url=url, python=python, layout="gitlab", source=identity_source, deadline=deadline
    )
    scripts = {}
    for name in HOOK_NAMES:  # the launcher, and the body it imports (compiled on its first run)
        launcher, body = hookinstall.render_hook(hookinstall.hook_sources(), name, python)
        scripts[name] = launcher
        scripts[f"integrator/{name.replace('-', '_')}.py"] = body
    config: dict[str, object] = {
        "hook_config_version": 1,
        "url": url.rstrip("/"),
        "repository": repository or "",
        "shared": shared,
        "identity_source": hookinstall.pinned_source("gitlab", identity_source),
        "deadline_seconds": float(deadline),
        "fail_open": fail_open,
        "protected_refs_default": list(protected_refs),
        "chain": {},
    }
    return bundle(
        relative_path,
        scripts=scripts,
        config=config,
        output=output,
        storage=storage,
        gitaly_config=gitaly_config,
        node_dir=node_dir,
        nodes=nodes,
        token_source=token_source,
    )
