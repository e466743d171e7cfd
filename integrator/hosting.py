"""What a git host does around our hooks, for ``hooks install`` and ``hooks check``.

Gitolite owns part of every repository it serves: ``gitolite setup`` (and every compile) links
each file of its common hooks directories into each repository, replacing a hook of the same
name; ``hooks/update`` is its access control; ``option hook.<name>`` replaces a hook with its
multi-hook driver; and ``gitolite.conf`` may set a git config key only when ``.gitolite.rc``
allows it in ``GIT_CONFIG_KEYS``. Our hooks sit beside all that: they must not share a name with
a common hook, and push options are best advertised from ``gitolite.conf`` so that the setting
lives where the Gitolite admin looks.

Behind ``git http-backend`` receive-pack is enabled for authenticated users unless
``http.receivepack`` is false.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
from pathlib import Path

ADVERTISE = "receive.advertisePushOptions"
RC_NAME = ".gitolite.rc"
#: What .gitolite.rc needs so that gitolite.conf may set the key (a Perl regex, one of a list).
RC_LINE = "GIT_CONFIG_KEYS => 'receive\\.advertisePushOptions',"
_RC_KEYS = re.compile(r"^\s*GIT_CONFIG_KEYS\s*=>\s*(['\"])(.*?)\1", re.M)
_RC_LOCAL_CODE = re.compile(r"^\s*LOCAL_CODE\s*=>\s*(['\"])(.*?)\1", re.M)

#: What gitolite.conf needs under the repository's `repo` line (beside its access rules).
CONF_LINE = f"config {ADVERTISE} = true"

#: One line of ``hooks check``: name, ok, detail.
Item = tuple[str, bool, str]


def gitolite_home(git_dir: Path) -> Path | None:
    """The Gitolite user's home: the nearest directory above the repository holding
    ``.gitolite.rc`` (repositories live in ``~/repositories`` by default), else the owner's
    home."""
    for parent in git_dir.parents:
        if (parent / RC_NAME).is_file():
            return parent
    try:
        home = Path(pwd.getpwuid(os.stat(git_dir).st_uid).pw_dir)
    except (KeyError, OSError):
        return None
    return home if (home / RC_NAME).is_file() else None


def _rc_text(home: Path) -> str:
    try:
        return (home / RC_NAME).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _common_hook_dirs(home: Path, rc: str) -> list[Path]:
    """Where Gitolite's common hooks come from: its admin base and the rc's LOCAL_CODE."""
    admin_base = home / ".gitolite"
    dirs = [admin_base / "hooks" / "common"]
    found = _RC_LOCAL_CODE.search(rc)
    if found:
        local = found.group(2).replace("$rc{GL_ADMIN_BASE}", str(admin_base))
        local = local.replace("$ENV{HOME}", str(home))
        dirs.append(Path(local) / "hooks" / "common")
    return dirs


def key_allowed(rc: str) -> bool:
    """Whether gitolite.conf may set receive.advertisePushOptions under this rc file."""
    found = _RC_KEYS.search(rc)
    for pattern in found.group(2).split() if found else ():
        try:
            if re.fullmatch(pattern, ADVERTISE, re.IGNORECASE):
                return True
        except re.error:
            continue
    return False


def _conf_sets_key(git_dir: Path) -> bool:
    """Whether gitolite.conf sets the key for this repository (its compiled ``gl-conf``)."""
    try:
        compiled = (git_dir / "gl-conf").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    # %one_config = ('repo' => [[line, 'key', 'value'], ...])
    pattern = rf"'{re.escape(ADVERTISE)}',\s*'true'"
    return re.search(pattern, compiled, re.IGNORECASE) is not None


def gitolite_conflicts(git_dir: Path, hook_names: tuple[str, ...]) -> list[str]:
    """Why Gitolite would replace our hooks in this repository (empty when it would not)."""
    home = gitolite_home(git_dir)
    problems = []
    for folder in _common_hook_dirs(home, _rc_text(home)) if home else ():
        for name in hook_names:
            if (folder / name).exists():
                problems.append(
                    f"Gitolite links {folder / name} into every repository on `gitolite setup`, "
                    f"replacing our {name}: to keep it, move it out of {folder} into each "
                    f"repository's hooks/{name} (a file, not a link) and install with "
                    "--chain-existing: it then runs before ours"
                )
    try:
        compiled = (git_dir / "gl-conf").read_text(encoding="utf-8", errors="replace")
    except OSError:
        compiled = ""
    for name in hook_names:
        if f"'gitolite-options.hook.{name}'" in compiled:
            problems.append(
                f"gitolite.conf sets `option hook.{name}` for this repository: Gitolite replaces "
                f"hooks/{name} with its multi-hook driver on every compile; remove that option "
                "and chain the hook with --chain-existing instead"
            )
    return problems


def gitolite_advice(git_dir: Path, repository: str) -> list[str]:
    """What the Gitolite admin should add so that push options stay advertised (empty when
    gitolite.conf already sets it)."""
    home = gitolite_home(git_dir)
    if home is None or _conf_sets_key(git_dir):
        return []
    advice = []
    if not key_allowed(_rc_text(home)):
        advice.append(f"add to {home / RC_NAME} (inside %RC): {RC_LINE}")
    advice.append(f"add to gitolite.conf under `repo {repository}`: {CONF_LINE}")
    return advice


def gitolite_items(git_dir: Path, repository: str, hook_names: tuple[str, ...]) -> list[Item]:
    """The Gitolite lines of ``hooks check``."""
    home = gitolite_home(git_dir)
    if home is None:
        detail = f"no {RC_NAME} above {git_dir} nor in its owner's home: not served by Gitolite?"
        return [("gitolite", False, detail)]
    conflicts = gitolite_conflicts(git_dir, hook_names)
    items: list[Item] = [("gitolite", True, f"home {home}")]
    items.append(("gitolite hooks", not conflicts, "; ".join(conflicts) or "no conflict"))
    update = git_dir / "hooks" / "update"
    if update.is_symlink():
        items.append(("gitolite update hook", True, f"{update} -> {os.readlink(update)}"))
    else:
        detail = f"{update} is not Gitolite's link: its access control is not enforced here"
        items.append(("gitolite update hook", False, f"{detail}; run `gitolite setup`"))
    advice = gitolite_advice(git_dir, repository)
    advertised = _advertised(git_dir)
    if not advice:
        items.append(("gitolite push options", True, f"gitolite.conf sets {ADVERTISE}"))
    else:
        where = "set in the repository's own config only" if advertised else "not advertised"
        items.append(("gitolite push options", advertised, f"{where}; " + "; ".join(advice)))
    return items


def http_items(git_dir: Path) -> list[Item]:
    """The smart-HTTP lines of ``hooks check``: receive-pack must be enabled."""
    value = _git_config(git_dir, "http.receivepack")
    if value == "false":
        return [
            (
                "http receive-pack",
                False,
                "http.receivepack=false: git http-backend refuses every push",
            )
        ]
    shown = value or "unset (enabled for authenticated users)"
    return [("http receive-pack", True, f"http.receivepack={shown}")]


def _advertised(git_dir: Path) -> bool:
    return _git_config(git_dir, ADVERTISE) == "true"


def _git_config(git_dir: Path, key: str) -> str:
    proc = subprocess.run(
        ["git", f"--git-dir={git_dir}", "config", "--type=bool", "--get", key],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_NOSYSTEM": "1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc.stdout.strip()


def advertises_push_options(git_dir: Path) -> bool:
    """Whether git, receiving a push here, offers push options: what ``receive-pack`` itself
    advertises (its first line), not what one config file says."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_DIR", "GIT_CONFIG"))}
    try:
        proc = subprocess.Popen(
            # as root, the repository is another user's: git would refuse to read it
            [
                "git",
                "-c",
                f"safe.directory={git_dir}",
                "receive-pack",
                "--advertise-refs",
                str(git_dir),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return False
    assert proc.stdout is not None
    try:
        first = proc.stdout.readline(65536)  # the refs' list follows; only the first line counts
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    capabilities = first.partition(b"\0")[2] or first
    return b"push-options" in capabilities.split()
