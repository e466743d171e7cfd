"""The hooks' bodies: the shipped hook scripts, placed in ``$GIT_DIR/integrator/`` and compiled.

git runs a small launcher in place of each hook (the shipped ``launcher``, its ``HOOK`` line
naming the hook); the launcher imports the hook's body from ``$GIT_DIR/integrator/``, so that
Python loads it compiled from ``__pycache__`` instead of compiling the whole script on every
push. Install compiles each body with the hooks' own interpreter (its cache tag is the one the
hooks look for) into hash-checked files: a body changed later is recompiled, never run stale.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

LAUNCHER = "launcher"
HOOK_LINE = 'HOOK = "pre-receive"'
FILES = {"pre-receive": "pre_receive.py", "post-receive": "post_receive.py"}
CACHE = "__pycache__"
COMPILE = (
    "import py_compile, sys\n"
    "mode = py_compile.PycInvalidationMode.CHECKED_HASH\n"
    "for path in sys.argv[1:]:\n"
    "    py_compile.compile(path, doraise=True, invalidation_mode=mode)\n"
)


def body_path(config_dir: Path, hook: str) -> Path:
    return config_dir / FILES[hook]


def render_launcher(text: str, hook: str) -> str:
    """The launcher for ``hook``; ValueError when ``text`` is not the launcher."""
    if text.count(HOOK_LINE) != 1:
        raise ValueError(f"the launcher has no single line {HOOK_LINE}")
    return text.replace(HOOK_LINE, f'HOOK = "{hook}"')


def compile_bodies(python: str, bodies: Sequence[Path]) -> list[Path]:
    """Compile ``bodies`` with ``python -IS``; what the cache now holds (for chown).

    ValueError (with the interpreter's last line) when they do not compile."""
    proc = subprocess.run(
        [python, "-IS", "-c", COMPILE, *map(str, bodies)],
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise ValueError(f"{python} cannot compile the hooks: {tail}")
    caches = {body.parent / CACHE for body in bodies}
    return [path for cache in sorted(caches) for path in (cache, *sorted(cache.iterdir()))]


def check_items(
    config_dir: Path, hooks: Sequence[str], sources: Path, owner_uid: int
) -> list[tuple[str, bool, str]]:
    """(name, ok, detail) per installed hook: its body is there and is the shipped script; the
    compiled files, if any yet, belong to the repository's owner (who can refresh them)."""
    items = []
    for hook in hooks:
        body, name = body_path(config_dir, hook), f"{hook} body"
        try:
            current = body.read_bytes() == (sources / hook).read_bytes()
        except OSError as exc:
            items.append((name, False, f"{exc.filename}: {exc.strerror}: reinstall the hooks"))
            continue
        if not current:
            detail = f"{body} differs from this installation's {hook}: reinstall the hooks"
            items.append((name, False, detail))
            continue
        cache = config_dir / CACHE
        owners = {p: _uid(p) for p in (cache, *cache.glob(body.stem + ".*"))}
        foreign = [p for p, uid in owners.items() if uid not in (None, owner_uid)]
        if foreign:
            detail = f"{foreign[0]} is not the repository owner's: the hook cannot refresh it"
            items.append((name, False, detail))
            continue
        items.append((name, True, f"{body} (compiled in {cache})"))
    return items


def _uid(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except OSError:
        return None
