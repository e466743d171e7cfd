"""Branch names by git's own rules (`git check-ref-format --branch`, refs.c).

Written out in Python so that validating an event costs no subprocess; a test
compares it with git itself.
"""

from __future__ import annotations

_FORBIDDEN_CHARS = frozenset(" ~^:?*[\\")


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
