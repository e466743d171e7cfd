"""What `git merge-tree -z` says about a conflict, read into one record per path.

The worker's evidence names each conflicting path with the kinds git reported on it, so that a
developer sees "modify/delete on a.txt" rather than "the merge failed".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Conflict:
    """One conflicting path of a merge, with the kinds of conflict git reported on it
    (`content`, `binary`, `add/add`, `modify/delete`, `rename/delete`, `rename/rename`,
    `file/directory`, …; none when git said nothing about it) and git's own lines."""

    path: str
    kinds: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()


def _kind(type_: str, message: str) -> str | None:
    """The kind of one of merge-tree's messages: the label of its `CONFLICT (…):` line (the
    more specific, e.g. add/add), else of its stable type; None when it is no conflict."""
    for text in (message, type_):
        label = re.match(r"CONFLICT \(([^)]*)\)", text)
        if label:
            return "content" if label[1] == "contents" else label[1]
    return None


def conflicts_of(paths: Sequence[str], messages: Sequence[str]) -> tuple[Conflict, ...]:
    """Every conflicting path with the kinds of `merge-tree -z`'s messages that name it.

    The messages are records of `<count> NUL <path>… NUL <type> NUL <message> NUL`; a binary
    file gets `binary` (its `content` message says nothing more).
    """
    kinds: dict[str, list[str]] = {path: [] for path in paths}
    texts: dict[str, list[str]] = {path: [] for path in paths}
    at = 0
    while at < len(messages) and messages[at].isdigit():
        count = int(messages[at])
        named = messages[at + 1 : at + 1 + count]
        type_, message = [*messages[at + 1 + count : at + 3 + count], "", ""][:2]
        at += count + 3
        kind = _kind(type_, message)
        if kind is None:
            continue
        for path in named:
            if path in kinds:
                kinds[path].append(kind)
                texts[path].append(message.strip())
    found = []
    for path in paths:
        seen = list(dict.fromkeys(kinds[path]))
        if "binary" in seen and "content" in seen:
            seen.remove("content")
        found.append(Conflict(path, tuple(seen), tuple(dict.fromkeys(texts[path]))))
    return tuple(found)
