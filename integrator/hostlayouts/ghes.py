"""GitHub Enterprise Server: one pre-receive hook, run in a "pre-receive hook environment".

GitHub keeps hook scripts in a repository of the instance and runs them in a chroot built from an
uploaded tarball (the environment); the default environment has no Python. Install therefore
writes two parts: ``hook/integrator-pre-receive``, a shell script for the hooks repository that
starts our hook inside the environment, and ``environment/``, the build context of an environment
(a Dockerfile from Alpine with python3 and git, and ``integrator/``: the launcher, the hook's
body, compiled by the image's own Python when it is built, and ``integrator-hook.json``; the
token is copied there by the operator, never by install).

GitHub gives all pre-receive hooks of a push 5 s together and refuses the push when they run
out, so the hook's deadline is capped at ``MAX_DEADLINE``. Nothing is kept between runs: when the
service cannot be asked and no cached mode is there, ``fallback_mode`` decides. There is no
administrator post-receive: the push webhook (``POST /v1/webhooks/github``) reports instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Of GitHub's 5 s for all pre-receive hooks: the rest is the environment's start-up.
MAX_DEADLINE = 4.0
ENVIRONMENT_PATH = "/integrator"
PYTHON = "/usr/bin/python3"  # Alpine's python3 package
#: Inside the environment; it may not outlive the run.
STATE_DIR = "/tmp/integrator-state"
MODES = ("shadow", "cutover", "off")
DOCKERFILE = """\
# The integrator's pre-receive hook environment for GitHub Enterprise Server.
FROM alpine:3.20
RUN apk add --no-cache python3 git
COPY integrator/ {path}/
RUN test -s {path}/token || {{ echo "copy the hook token to integrator/token first"; exit 1; }}; \\
    chmod 0755 {path}/pre-receive && chmod 0444 {path}/integrator-hook.json {path}/token && \\
    python3 -m compileall -q --invalidation-mode checked-hash {path}/integrator
"""


@dataclass(frozen=True)
class Made:
    hook: Path
    environment: Path
    config: dict[str, object]


def install(
    output: Path,
    *,
    url: str,
    deadline: float = 2.5,
    fail_open: bool = False,
    fallback_mode: str = "shadow",
    protected_refs: Sequence[str] = ("refs/heads/main",),
    environment_path: str = ENVIRONMENT_PATH,
    python: str = PYTHON,
    state_dir: str = STATE_DIR,
) -> Made:
    """Write ``output/hook/`` and ``output/environment/`` (see the module's docstring)."""
    from integrator import hookinstall

    hookinstall.validate_common(
        url=url, python=python, layout="ghes", source="ghes", deadline=deadline
    )
    if deadline > MAX_DEADLINE:
        raise hookinstall.HookInstallError(
            f"--deadline must be at most {MAX_DEADLINE:g} s under GitHub Enterprise: its 5 s "
            "cover every pre-receive hook of a push and the environment's start-up, and a hook "
            "that runs out of time refuses the push"
        )
    if fallback_mode not in MODES:
        raise hookinstall.HookInstallError(
            f"--fallback-mode must be one of {', '.join(MODES)}: {fallback_mode}"
        )
    if not os.path.isabs(environment_path):
        raise hookinstall.HookInstallError(
            f"the environment path must be absolute: {environment_path}"
        )
    if output.exists() and any(output.iterdir()) and not (output / "environment").is_dir():
        raise hookinstall.HookInstallError(f"{output} exists and is not an earlier ghes install")
    config: dict[str, object] = {
        "hook_config_version": 1,
        "url": url.rstrip("/"),
        "token_file": f"{environment_path}/token",
        "repository": "",
        "shared": True,
        "hook_instance": "ghes",
        "identity_source": "ghes",
        "deadline_seconds": float(deadline),
        "fail_open": fail_open,
        "fallback_mode": fallback_mode,
        "state_dir": state_dir,
        "layout": "ghes",
        "protected_refs_default": list(protected_refs),
        "chain": {},
    }
    inside = output / "environment" / "integrator"
    inside.mkdir(parents=True, exist_ok=True)
    launcher, body = hookinstall.render_hook(hookinstall.hook_sources(), "pre-receive", python)
    _write(inside / "pre-receive", launcher, 0o755)
    (inside / "integrator").mkdir(exist_ok=True)  # the body, compiled when the image is built
    _write(inside / "integrator" / "pre_receive.py", body, 0o644)
    _write(inside / "integrator-hook.json", json.dumps(config, indent=2) + "\n", 0o644)
    dockerfile = DOCKERFILE.format(path=environment_path)
    _write(output / "environment" / "Dockerfile", dockerfile, 0o644)
    hook = output / "hook" / "integrator-pre-receive"
    hook.parent.mkdir(exist_ok=True)
    starter = (
        "#!/bin/sh\n"
        "# integrator: starts the integrator's pre-receive hook inside its environment\n"
        f"exec {python} -IS {environment_path}/pre-receive\n"
    )
    _write(hook, starter, 0o755)
    return Made(hook, output / "environment", config)


def _write(path: Path, text: str, mode: int) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
