"""``integrator hooks check``: everything that must hold for the installed hooks to work.

Each item says what was found, so that a failing line tells the operator what to fix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx

from integrator import hookbodies, hosting
from integrator.hookinstall import (
    ADVERTISE,
    LAYOUTS,
    CheckItem,
    HookInstallError,
    _bare_git_dir,
    _git,
    hook_paths,
    hook_sources,
    is_ours,
)
from integrator.hookpython import interpreter_runs
from integrator.hostlayouts import gitea


def check(repo: Path) -> list[CheckItem]:
    """Everything that must hold for the hooks to work, each with what was found."""
    try:
        git_dir = _bare_git_dir(repo)
    except HookInstallError as exc:
        return [CheckItem("repository", False, exc.message)]
    items = [CheckItem("repository", True, f"bare repository {git_dir}")]
    owner = os.stat(git_dir)
    config_path = git_dir / "integrator" / "hook.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("not an object")
        items.append(CheckItem("configuration", True, str(config_path)))
    except (OSError, ValueError) as exc:
        items.append(CheckItem("configuration", False, f"{config_path}: {exc}"))
        config = {}
    layout = str(config.get("layout")) if config.get("layout") in LAYOUTS else "plain"
    interpreters: set[str] = set()
    for name, path in hook_paths(git_dir, layout).items():
        items.append(_check_hook(name, path))
        if path.exists() and is_ours(path):
            first = path.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]
            interpreters.add(first[2:].split()[0] if first.startswith("#!") else "")
        chain = config.get("chain")
        chain = chain.get(name) if isinstance(chain, dict) else chain
        if isinstance(chain, str) and chain:
            runnable = os.access(chain, os.X_OK)
            items.append(CheckItem(f"{name} chain", runnable, f"{chain} runs before ours"))
    names = tuple(hook_paths(git_dir, layout))
    found = hookbodies.check_items(git_dir / "integrator", names, hook_sources(), owner.st_uid)
    items.extend(CheckItem(*item) for item in found)
    for python in sorted(interpreters):
        ok, detail = interpreter_runs(python, owner.st_uid, owner.st_gid)
        items.append(CheckItem("interpreter", ok, f"{python}: {detail}"))
    items.append(_check_private(Path(str(config.get("token_file"))), 0o600, "token file", owner))
    items.append(
        _check_private(Path(str(config.get("state_dir"))), 0o700, "state directory", owner)
    )
    advertised = _git(git_dir, "config", "--type=bool", "--get", ADVERTISE).stdout.strip()
    offered = hosting.advertises_push_options(git_dir)
    said = "advertises" if offered else "does not advertise"
    detail = f"git receive-pack {said} push-options ({ADVERTISE}={advertised or 'unset'})"
    items.append(CheckItem("push options", offered, detail))
    if layout == "gitolite":
        names = tuple(hook_paths(git_dir, layout))
        found = hosting.gitolite_items(git_dir, str(config.get("repository")), names)
        items.extend(CheckItem(*item) for item in found)
    if layout == "gitea":
        names = tuple(hook_paths(git_dir, layout))
        items.extend(CheckItem(*item) for item in gitea.items(git_dir, names))
    if config.get("identity_source") == "http":
        items.extend(CheckItem(*item) for item in hosting.http_items(git_dir))
    if config.get("url"):
        items.extend(_check_service(str(config["url"]), Path(str(config.get("token_file")))))
    return items


def _check_hook(name: str, path: Path) -> CheckItem:
    if not path.exists():
        return CheckItem(f"{name} hook", False, f"{path} is missing")
    if not is_ours(path):
        return CheckItem(f"{name} hook", False, f"{path} is not ours")
    if not os.access(path, os.X_OK):
        return CheckItem(f"{name} hook", False, f"{path} is not executable")
    return CheckItem(f"{name} hook", True, f"{path}")


def _check_private(path: Path, mode: int, name: str, owner: os.stat_result) -> CheckItem:
    try:
        info = path.stat()
    except OSError:
        return CheckItem(name, False, f"{path} is missing")
    problems = []
    if info.st_mode & 0o777 != mode:
        problems.append(f"mode {info.st_mode & 0o777:o}, want {mode:o}")
    if info.st_uid != owner.st_uid:
        problems.append(f"owner uid {info.st_uid}, want the repository owner {owner.st_uid}")
    return CheckItem(name, not problems, "; ".join(problems) or f"{path} ({mode:o})")


def _check_service(url: str, token_file: Path) -> list[CheckItem]:
    url = url.rstrip("/")
    try:
        health = httpx.get(f"{url}/healthz", timeout=3.0, trust_env=False)
        detail = f"{url}/healthz: HTTP {health.status_code}"
        reachable = CheckItem("service", health.status_code == 200, detail)
    except httpx.HTTPError as exc:
        return [CheckItem("service", False, f"{url} unreachable: {type(exc).__name__}: {exc}")]
    try:
        token = token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        return [reachable, CheckItem("hook token", False, f"cannot read {token_file}: {exc}")]
    try:
        answer = httpx.get(
            f"{url}/v1/whoami",
            headers={"Authorization": f"Bearer {token}"},
            timeout=3.0,
            trust_env=False,
        )
    except httpx.HTTPError as exc:
        return [reachable, CheckItem("hook token", False, f"{type(exc).__name__}: {exc}")]
    if answer.status_code != 200:
        detail = f"refused by the service (HTTP {answer.status_code}): install a hook-role token"
        return [reachable, CheckItem("hook token", False, detail)]
    try:
        role, who = answer.json().get("role"), answer.json().get("name")
    except (ValueError, AttributeError):
        return [reachable, CheckItem("hook token", False, "unparsable /v1/whoami answer")]
    if role != "hook":
        detail = f"token {who!r} has role {role!r}; the hooks need a token of role 'hook'"
        return [reachable, CheckItem("hook token", False, detail)]
    return [reachable, CheckItem("hook token", True, f"token {who!r}, role hook")]
