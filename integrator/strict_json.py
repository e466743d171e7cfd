"""JSON read strictly: an object that names a member twice is refused, not collapsed.

RFC 8259 leaves a repeated name to the reader, and Python's keeps the last value, so a check
reported twice or a field given two values would silently lose one. The service reads every
request body with :func:`loads`, and the CLI every file it sends.
"""

from __future__ import annotations

import json
from typing import Any


class _NamedTwice(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"the name {name!r} appears twice in one object")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _NamedTwice(name)
            seen.add(name)
    return members


def loads(body: bytes | str) -> Any:
    """`json.loads`, refusing a repeated name with the `JSONDecodeError` a malformed body gets."""
    try:
        return json.loads(body, object_pairs_hook=_unique_members)
    except _NamedTwice as exc:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        raise json.JSONDecodeError(str(exc), text, 0) from None
