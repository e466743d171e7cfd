"""Names: branches by git's own rules (`git check-ref-format --branch`, refs.c), and slugs.

Written out in Python so that validating an event costs no subprocess; a test
compares the branch rule with git itself.
"""

from __future__ import annotations

import re

_FORBIDDEN_CHARS = frozenset(" ~^:?*[\\")

#: The longest branch name (without `refs/heads/`) and slug the database stores.
BRANCH_MAX_LENGTH = 255
SLUG_MAX_LENGTH = 200

#: A slug is one URL path segment and one shell word: `queue show SLUG` can always address it.
_SLUG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def slug_problem(slug: str) -> str | None:
    """Why `slug` is not a valid slug, or None when it is."""
    if _SLUG_RE.fullmatch(slug) is None:
        return "must be letters, digits, '.', '_' or '-', starting with a letter or digit"
    return None


def branch_name_problem(name: str) -> str | None:
    """Why `name` is not a valid branch name, or None when it is."""
    if not name:
        return "empty"
    if name.startswith("-"):
        return "starts with '-'"
    if name == "HEAD":
        return "'HEAD' is not a branch name"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "contains a control character"
    bad = sorted(_FORBIDDEN_CHARS.intersection(name))
    if bad:
        return "contains " + " ".join(repr(c) for c in bad)
    if ".." in name:
        return "contains '..'"
    if "@{" in name:
        return "contains '@{'"
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return "has an empty path component"
    if name.endswith("."):
        return "ends with '.'"
    for component in name.split("/"):
        if component.startswith("."):
            return "a component starts with '.'"
        if component.endswith(".lock"):
            return "a component ends with '.lock'"
    return None
