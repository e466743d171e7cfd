"""Install, check and uninstall the server-side hooks in a bare repository.

What ``install`` leaves behind, all owned by the repository's owner (the user git runs the hooks
as; we chown when running as root):

* the hooks (``hooks/pre-receive`` and ``hooks/post-receive``; ``hooks/<name>.d/integrator`` under
  Gitea, ``custom_hooks/<name>`` under GitLab, pre-receive only under GitHub Enterprise), mode
  0755, with the shebang rewritten to ``#!<python> -IS`` and recognised later by their marker line:
  each is the shipped launcher, which imports the hook's body;
* the bodies, ``$GIT_DIR/integrator/pre_receive.py`` and ``post_receive.py`` (0600: the shipped
  hooks, unchanged), compiled into ``$GIT_DIR/integrator/__pycache__`` (``integrator.hookbodies``);
* ``$GIT_DIR/integrator/hook.json`` (0600), ``$GIT_DIR/integrator/token`` (0600) and the state
  directory ``$GIT_DIR/integrator/state`` (0700: cached mode, spool, break-glass override);
* ``receive.advertisePushOptions=true`` (the worker's registration nonce is a push option); the
  value it replaced is kept in hook.json for ``uninstall``.

A hook that is not ours is never overwritten: with ``chain_existing=True`` it is moved to
``<name>.integrator-orig`` and run before ours with the same input; otherwise install refuses.

This writes into the repository itself (``custom_hooks/`` for GitLab before 15.11, a repository
on a GitHub Enterprise appliance's disk for tests). ``integrator hooks install`` with the gitlab
or ghes layout writes what those hosts take instead (``integrator.hostlayouts``): a tarball for
Gitaly, a hooks-repository script and a pre-receive environment.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import os
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from integrator import hookbodies, hosting
from integrator.errors import InvalidInput
from integrator.hookpython import interpreter_runs
from integrator.hostlayouts import gitea

MARKER = "# integrator-hook"
HOOK_NAMES = ("pre-receive", "post-receive")
LAYOUTS = ("plain", "gitea", "gitolite", "gitlab", "ghes")
IDENTITY_SOURCES = ("auto", "gitlab", "gitea", "gitolite", "ghes", "http", "plain")
ORIG_SUFFIX = ".integrator-orig"
ADVERTISE = "receive.advertisePushOptions"
MAX_DEADLINE = 30.0
#: Inherited variables (prefixes) that would point git at another repository or a quarantine,
#: or inject configuration: install runs from shells and from hooks alike.
_GIT_SCRUB = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_QUARANTINE_PATH",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_KEY_",
    "GIT_CONFIG_VALUE_",
    "GIT_CONFIG_PARAMETERS",
)


class HookInstallError(InvalidInput):
    """The hooks could not be installed, checked or removed: what was asked cannot be done
    with this repository or these options (the CLI exits 2 with the one line)."""

    code = "hook_install_failed"


@dataclass(frozen=True)
class InstallResult:
    """Where everything went."""

    git_dir: Path
    hooks: tuple[Path, ...]
    config_path: Path
    token_path: Path
    state_dir: Path
    repository: str
    hook_instance: str
    #: foreign hooks moved aside and chained before ours: (moved to, originally at)
    chained: tuple[tuple[Path, Path], ...]


@dataclass(frozen=True)
class CheckItem:
    """One line of ``integrator hooks check``."""

    name: str
    ok: bool
    detail: str


def hook_sources() -> Path:
    """The shipped hook scripts: the wheel's ``integrator/_hooks``, else the checkout's hooks/."""
    shipped = importlib.resources.files("integrator") / "_hooks"
    if shipped.is_dir():
        return Path(str(shipped))
    return Path(__file__).resolve().parent.parent / "hooks"


def hook_paths(git_dir: Path, layout: str) -> dict[str, Path]:
    """Where each hook lives under a hosting layout."""
    names = ("pre-receive",) if layout == "ghes" else HOOK_NAMES
    if layout == "gitea":
        return {name: git_dir / "hooks" / f"{name}.d" / "integrator" for name in names}
    if layout == "gitlab":
        return {name: git_dir / "custom_hooks" / name for name in names}
    return {name: git_dir / "hooks" / name for name in names}


def is_ours(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return MARKER.encode() in head


def install(
    repo: Path,
    *,
    url: str,
    token: str,
    repository: str | None,
    python: str = "/usr/bin/python3",
    layout: str = "plain",
    identity_source: str = "auto",
    deadline: float = 2.5,
    fail_open: bool = False,
    chain_existing: bool = False,
    protected_refs: Sequence[str] = ("refs/heads/main",),
) -> InstallResult:
    """Install (or re-install) the hooks into the bare repository ``repo``.

    Everything is checked before anything changes: the options, the repository, the
    interpreter (run as the repository's owner) and the hooks already there.
    """
    _validate(
        url=url,
        token=token,
        python=python,
        layout=layout,
        source=identity_source,
        deadline=deadline,
    )
    git_dir = _bare_git_dir(repo)
    owner = os.stat(git_dir)
    hooks_path = _git(git_dir, "config", "--get", "core.hooksPath").stdout.strip()
    if hooks_path:
        raise HookInstallError(
            f"{git_dir} sets core.hooksPath={hooks_path}: git would not run hooks installed "
            "here; install into that directory with a shared integrator-hook.json instead"
        )
    ok, detail = interpreter_runs(python, owner.st_uid, owner.st_gid)
    if not ok:
        raise HookInstallError(f"--python {python} is unusable by the repository owner: {detail}")
    targets = hook_paths(git_dir, layout)
    if layout == "gitolite":
        conflicts = hosting.gitolite_conflicts(git_dir, tuple(targets))
        if conflicts:
            raise HookInstallError("; ".join(conflicts))
    if layout == "gitea":
        problems = gitea.wrapper_problems(git_dir, tuple(targets))
        if problems:
            raise HookInstallError("; ".join(problems))
    moves = _plan_moves(targets, chain_existing)
    scripts = {name: render_hook(hook_sources(), name, python) for name in targets}

    config_dir = git_dir / "integrator"
    config_path, token_path, state_dir = (config_dir / n for n in ("hook.json", "token", "state"))
    previous = _read_config(config_path)
    old_chain = previous.get("chain")
    chains: dict[str, Any] = dict(old_chain) if isinstance(old_chain, dict) else {}
    for hook, (target, orig) in moves.items():
        # git never ran a non-executable hook, so neither do we
        chains[hook] = str(orig) if os.access(target, os.X_OK) else None
    name = repository or (git_dir.name[:-4] if git_dir.name.endswith(".git") else git_dir.name)
    config = {
        "hook_config_version": 1,
        "url": url.rstrip("/"),
        "token_file": str(token_path),
        "repository": name,
        "hook_instance": f"{socket.gethostname()}:{git_dir}",
        "identity_source": pinned_source(layout, identity_source),
        "deadline_seconds": float(deadline),
        "fail_open": fail_open,
        "state_dir": str(state_dir),
        "layout": layout,
        "protected_refs_default": list(protected_refs),
        "chain": {hook: chains.get(hook) for hook in HOOK_NAMES},
        "advertise_push_options_before": previous.get(
            "advertise_push_options_before", _config_local(git_dir, ADVERTISE)
        ),
    }
    for directory in (config_dir, state_dir):
        directory.mkdir(mode=0o700, exist_ok=True)
        directory.chmod(0o700)
    _write(token_path, token.strip() + "\n", 0o600)
    _write(config_path, json.dumps(config, indent=2) + "\n", 0o600)
    _git(git_dir, "config", "--local", ADVERTISE, "true", check=True)
    if not hosting.advertises_push_options(git_dir):  # verified, not assumed
        raise HookInstallError(
            f"git receive-pack does not advertise push-options in {git_dir} even with "
            f"{ADVERTISE}=true (git older than 2.10?): the integrator's pushes would fail"
        )
    # git config rewrites the file: as root it would become root's (unreadable to the git user
    # under a 0077 umask such as Gitolite's)
    written = [git_dir / "config", config_dir, config_path, token_path, state_dir]
    written += _place_hooks(targets, scripts, moves, config_dir, python)
    if os.geteuid() == 0:  # the hooks run as the owner: what they read must be the owner's
        for path in written:
            os.chown(path, owner.st_uid, owner.st_gid)
    return InstallResult(
        git_dir=git_dir,
        hooks=tuple(targets.values()),
        config_path=config_path,
        token_path=token_path,
        state_dir=state_dir,
        repository=name,
        hook_instance=str(config["hook_instance"]),
        chained=tuple((orig, target) for target, orig in moves.values()),
    )


def uninstall(repo: Path, *, discard_spool: bool = False) -> None:
    """Remove our hooks and ``$GIT_DIR/integrator/``; restore what install replaced.

    Verdicts decided without the service and not yet uploaded live in the spool; removing them
    loses evidence (break-glass bypasses included), so that needs ``discard_spool=True``.
    """
    git_dir = _bare_git_dir(repo)
    config_dir = git_dir / "integrator"
    config = _read_config(config_dir / "hook.json")
    spooled = sorted((config_dir / "state" / "spool").glob("*.json"))
    if spooled and not discard_spool:
        raise HookInstallError(
            f"{len(spooled)} verdict(s) given without the service are still spooled in "
            f"{spooled[0].parent}: let a push upload them once the service is back, or discard "
            "them explicitly"
        )
    ours: list[Path] = []
    restores: list[tuple[Path, Path]] = []
    for layout in LAYOUTS:
        for target in hook_paths(git_dir, layout).values():
            orig = target.with_name(target.name + ORIG_SUFFIX)
            if target.exists() and is_ours(target):
                ours.append(target)
            elif (target.exists() or target.is_symlink()) and orig.exists():
                raise HookInstallError(
                    f"{target} is not ours and {orig.name} is waiting to be restored there: "
                    "move one of them away first"
                )
            if orig.exists() or orig.is_symlink():
                restores.append((orig, target))
    for target in dict.fromkeys(ours):
        target.unlink()
    for orig, target in dict.fromkeys(restores):
        os.replace(orig, target)
    if "advertise_push_options_before" in config:
        before = config["advertise_push_options_before"]
        if before is None:
            _git(git_dir, "config", "--local", "--unset", ADVERTISE)
        else:
            _git(git_dir, "config", "--local", ADVERTISE, str(before), check=True)
        if os.geteuid() == 0:  # git rewrote the config as root: give it back to its owner
            owner = os.stat(git_dir)
            os.chown(git_dir / "config", owner.st_uid, owner.st_gid)
    if config_dir.exists():
        shutil.rmtree(config_dir)


def check(repo: Path) -> list[CheckItem]:
    """Everything that must hold for the hooks to work, each with what was found."""
    from integrator import hookcheck

    return hookcheck.check(repo)


# -- helpers ---------------------------------------------------------------------------------


def pinned_source(layout: str, source: str) -> str:
    """The identity source a layout implies when none was chosen (``auto``): a host sets its own
    variable, and another host's variable that reached the hook must not be taken instead."""
    return (
        layout if source == "auto" and layout in ("gitea", "gitolite", "gitlab", "ghes") else source
    )


def validate_common(*, url: str, python: str, layout: str, source: str, deadline: float) -> None:
    """The options every layout shares, checked before anything is written (the interpreter's
    path only: it may live on another machine)."""
    netloc = url.partition("://")[2].partition("/")[0]
    if not url.startswith(("http://", "https://")) or not netloc or "@" in netloc:
        raise HookInstallError(f"--url must be http(s)://host[:port] without credentials: {url}")
    if layout not in LAYOUTS:
        raise HookInstallError(f"--layout must be one of {', '.join(LAYOUTS)}: {layout}")
    if source not in IDENTITY_SOURCES:
        raise HookInstallError(
            f"--identity-source must be one of {', '.join(IDENTITY_SOURCES)}: {source}"
        )
    if not os.path.isabs(python) or any(c.isspace() for c in python):
        raise HookInstallError(f"--python must be an absolute path without spaces: {python}")
    _validate_deadline(deadline)


def _validate(
    *, url: str, token: str, python: str, layout: str, source: str, deadline: float
) -> None:
    validate_common(url=url, python=python, layout=layout, source=source, deadline=deadline)
    if not token.strip() or any(c.isspace() for c in token.strip()):
        raise HookInstallError("the hook token is empty or contains whitespace")
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise HookInstallError(f"--python {python} is not an executable file")


def _git(git_dir: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_GIT_SCRUB)}
    proc = subprocess.run(
        ["git", f"--git-dir={git_dir}", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if check and proc.returncode != 0:
        raise HookInstallError(f"git {' '.join(args)} failed in {git_dir}: {proc.stderr.strip()}")
    return proc


def _bare_git_dir(repo: Path) -> Path:
    path = Path(repo).resolve()
    proc = _git(path, "rev-parse", "--is-bare-repository") if path.is_dir() else None
    if proc is None or proc.returncode != 0 or proc.stdout.strip() != "true":
        raise HookInstallError(f"{repo} is not a bare git repository")
    return path


def _config_local(git_dir: Path, key: str) -> str | None:
    proc = _git(git_dir, "config", "--local", "--get", key)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _validate_deadline(deadline: float) -> None:
    finite = isinstance(deadline, int | float) and math.isfinite(deadline)
    if not finite or not 0 < deadline <= MAX_DEADLINE:
        raise HookInstallError(f"--deadline must be in (0, {MAX_DEADLINE:g}] seconds: {deadline}")


def _place_hooks(
    targets: dict[str, Path],
    scripts: dict[str, tuple[str, str]],
    moves: dict[str, tuple[Path, Path]],
    config_dir: Path,
    python: str,
) -> list[Path]:
    """Write and compile the bodies, then move foreign hooks aside and write the launchers (a
    launcher never runs without its body); the paths written (for chown)."""
    bodies = [hookbodies.body_path(config_dir, hook) for hook in targets]
    for hook, body in zip(targets, bodies, strict=True):
        _write(body, scripts[hook][1], 0o600)
    try:
        written = [*bodies, *hookbodies.compile_bodies(python, bodies)]
    except ValueError as exc:
        raise HookInstallError(str(exc)) from exc
    for hook, target in targets.items():
        if not target.parent.is_dir():
            target.parent.mkdir(parents=True)
            written.append(target.parent)
        if hook in moves:
            os.replace(target, moves[hook][1])
        _write(target, scripts[hook][0], 0o755)
        written.append(target)
    return written


def _plan_moves(targets: dict[str, Path], chain_existing: bool) -> dict[str, tuple[Path, Path]]:
    """Foreign hooks to move aside, checked in full before anything changes."""
    moves = {}
    for name, target in targets.items():
        if not (target.exists() or target.is_symlink()) or is_ours(target):
            continue
        orig = target.with_name(target.name + ORIG_SUFFIX)
        if not chain_existing:
            raise HookInstallError(
                f"{target} exists and is not ours: pass --chain-existing to keep it (moved to "
                f"{orig.name}, run before ours with the same input), or move it away yourself"
            )
        if orig.exists() or orig.is_symlink():
            raise HookInstallError(f"{target} is not ours and {orig} already exists")
        moves[name] = (target, orig)
    return moves


def render_hook(sources: Path, hook: str, python: str) -> tuple[str, str]:
    """(launcher, body) of ``hook``: the launcher git runs, with the interpreter in its shebang,
    and the shipped script it imports, unchanged."""
    texts = []
    for source in (sources / hookbodies.LAUNCHER, sources / hook):
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise HookInstallError(f"hook script missing from this installation: {exc}") from exc
        first, _, rest = text.partition("\n")
        if not first.startswith("#!") or MARKER not in rest.split("\n", 1)[0]:
            raise HookInstallError(f"{source} is not an integrator hook script")
        texts.append(text)
    launcher = f"#!{python} -IS\n" + texts[0].partition("\n")[2]
    try:
        return hookbodies.render_launcher(launcher, hook), texts[1]
    except ValueError as exc:
        raise HookInstallError(f"{sources / hookbodies.LAUNCHER}: {exc}") from exc


def _read_config(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write(path: Path, text: str, mode: int) -> None:
    """Atomically replace ``path`` with ``text`` at ``mode`` (never readable by others first)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(temporary, path)
