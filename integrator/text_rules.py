"""What text (and numbers) the service takes, said twice in one place: the validator and the
JSON Schema the OpenAPI publishes for it, so that a client (or a fuzzer) that builds a value
from the schema gets it taken and one that breaks it gets a 422 (tests compare them).

Below the API and the event schemas alike: the events' own models publish these patterns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BeforeValidator, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from integrator import refnames


@dataclass(frozen=True)
class Declared:
    """JSON Schema keywords published for a value whose rule a validator of ours decides:
    the pattern says to clients exactly what the validator accepts (a test compares them)."""

    keywords: tuple[tuple[str, Any], ...]

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(dict(self.keywords))
        return schema


def declared(**keywords: Any) -> Declared:
    return Declared(tuple(keywords.items()))


def _escaped(cp: int) -> str:
    return f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"


#: What a name or an identity may not hold: control characters (C0, DEL, C1), separators
#: other than the ASCII space and the invisible format characters of the BMP (bidi controls,
#: zero widths): whatever could break a log line or hide in one. The class is short and in
#: the BMP on purpose, so that every regex engine reads it alike and clients and fuzzers can
#: build values from it. (Lone surrogates, which no UTF-8 text holds, are refused apart.)
_NOT_IN_A_LINE = (
    r"\x00-\x1f\x7f-\xa0\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u1680"
    r"\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\ufeff\ufff9-\ufffb"
)
SPACES = "".join(_escaped(ord(c)) for c in map(chr, range(0x3001)) if c.isspace())
#: One line, not only spaces: every name `str.isprintable()` accepts, and code points that
#: are unassigned, for private use or format characters beyond the BMP.
PRINTABLE_LINE = f"^ *[^ {_NOT_IN_A_LINE}][^{_NOT_IN_A_LINE}]*$"
_LINE = re.compile(PRINTABLE_LINE.removesuffix("$") + r"\Z")


def one_line(value: str) -> str:
    """A name's rule at the edge: the declared pattern, read as JSON Schema reads it."""
    if not value.strip(" "):
        raise ValueError("must not be empty")
    if _LINE.match(value) is None or any("\ud800" <= c <= "\udfff" for c in value):
        raise PydanticCustomError("printable", "must be one line of printable characters")
    return value


#: Text that says something and holds no NUL (`events.prose`).
PROSE_PATTERN = f"^[^\\x00]*[^\\x00{SPACES}][^\\x00]*$"
#: A slug (`refnames.slug_problem`).
SLUG_PATTERN = f"^{refnames._SLUG_RE.pattern}$"
#: A branch name by git's rules (`refnames.branch_name_problem`).
BRANCH_PATTERN = (
    r"^(?!-)(?!HEAD$)(?![/.])(?!.*(?:\.\.|@\{|//|/\.|\.lock/))(?!.*(?:\.lock|/|\.)$)"
    r"[^\x00-\x1f\x7f ~^:?*\[\\]+$"
)
#: A commit id, either case (`events.Sha` lowers it).
SHA_PATTERN = "^[0-9a-fA-F]{40}(?:[0-9a-fA-F]{24})?$"


#: Any text the database can hold (`storable`): no NUL. (Lone surrogates, which no UTF-8 text
#: holds, are refused apart.)
STORABLE_PATTERN = "^[^\\x00]*$"


def unstorable(value: str) -> bool:
    """NUL (PostgreSQL text cannot hold it) or half a surrogate pair (not UTF-8)."""
    return any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in value)


def storable(value: str) -> str:
    """Any text the database can hold: lines are fine, NUL and unpaired surrogates are not."""
    if unstorable(value):
        raise PydanticCustomError("text", "must not contain NUL or unpaired surrogates")
    return value


def _whole_number(value: object) -> object:
    """JSON Schema's `integer` is any number without a fraction: `2.0` is 2."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: Put after a StrictInt's bounds: an integer as JSON Schema reads one, `2` or `2.0`, never
#: `"2"`, `2.5` or `true`.
WHOLE_NUMBER = BeforeValidator(_whole_number)
