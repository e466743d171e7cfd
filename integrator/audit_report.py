"""The audit's report: what each explanation says, and the API's body (pages and counts).

The rules are in `integrator.audit`; this module only words and shapes their result.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from integrator.audit import KINDS, Audited, Explanation, Kind
from integrator.errors import Detail, InvalidInput, NotFound


def item(audited: Audited) -> dict[str, Any]:
    """One commit as the API shows it."""
    c, e = audited.commit, audited.explanation
    return {
        "sha": c.sha,
        "subject": c.subject,
        "author": c.author,
        "committed_at": c.committed_at.isoformat(),
        "mode": audited.mode.value if audited.mode else None,
        "explanation": {"kind": e.kind, "summary": summary(e), **e.fields},
        "failure": audited.failure,
    }


# ---- what it says -------------------------------------------------------------------------------


def summary(explanation: Explanation) -> str:
    """One line an operator reads, the same in the CLI and the dashboard."""
    f, mode = explanation.fields, explanation.mode.value if explanation.mode else "?"
    match explanation.kind:
        case "queue":
            line = (
                f"queue: candidate {f['candidate_id']} {f['slug']} ({f['branch']}), submitted by "
                f"{f['submitted_by'] or 'unknown'}, approved by {f['approved_by'] or 'unknown'}, "
                f"epoch {f['epoch']}, registration {f['registration_id']}"
            )
            if f.get("promoted_by"):
                line += f", fast-tracked by {f['promoted_by']}: {f['promotion_reason']}"
            if f["registration_status"] != "landed":
                line += f" ({f['registration_status']}: its landing is not confirmed yet)"
            return line
        case "push":
            refused = f["decision"] == "would_reject"
            decision = "would have been refused in cutover" if refused else "allowed"
            line = (
                f"push by {f['pusher'] or 'an unknown pusher'} ({f['identity_source'] or '?'}) "
                f"in {mode}: {decision}, verdict #{f['verdict_event_seq']}"
            )
            if f["decided_locally"]:
                line += ", decided by the hook alone (service unreachable)"
            if f["trailer_without_registration"]:
                line += "; it carries integrator trailers without a registration"
            return line
        case "bypass":
            kind = f["bypass_kind"].replace("_", "-")
            return (
                f"bypass ({kind}) by {f['pusher'] or 'an unknown pusher'} in {mode}, verdict "
                f"#{f['verdict_event_seq']}: {f['reason']}"
            )
        case "before_guard":
            return "on main before the guard recorded its first verdict"
        case "unexplained":
            if len(f["modes"]) == 1:
                return f"unexplained: {f['reason']}; it reached main in {f['modes'][0]}"
            modes = ", then ".join(f["modes"])
            may = "; it may have come in cutover" if "cutover" in f["modes"] else ""
            return (
                f"unexplained: {f['reason']}; between its explained neighbours the mode was "
                f"{modes}{may}"
            )


# ---- the report ---------------------------------------------------------------------------------

#: The most unexplained commits a report lists apart (the counts are always whole).
UNEXPLAINED_LISTED = 1000


@dataclass(frozen=True)
class Report:
    """The audited range of main, newest first."""

    repository: str
    head: str | None
    since: str | None
    items: Sequence[Audited]

    def count(self, kind: Kind) -> int:
        return sum(1 for a in self.items if a.explanation.kind == kind)

    @property
    def failures(self) -> int:
        return sum(1 for a in self.items if a.failure)

    def as_dict(self, cursor: str | None, limit: int) -> dict[str, Any]:
        """The API's body: one page of items from `cursor` (a sha of the range), and every
        count and unexplained commit of the whole range (failures first)."""
        start = 0
        if cursor is not None:
            start = next((i for i, a in enumerate(self.items) if a.commit.sha == cursor), -1)
            if start < 0:
                message = f"cursor {cursor} is not a commit of the audited range of main"
                raise NotFound(message, details=[Detail("cursor", "in_range", message)])
        page = self.items[start : start + limit]
        following = self.items[start + limit : start + limit + 1]
        unexplained = [a for a in self.items if a.explanation.kind == "unexplained"]
        unexplained.sort(key=lambda a: not a.failure)  # stable: newest first within each
        before = [a.commit.sha for a in self.items if a.explanation.kind == "before_guard"]
        return {
            "repository": self.repository,
            "head": self.head,
            "since": self.since,
            "total": len(self.items),
            "items": [item(a) for a in page],
            "unexplained_after_cutover": self.failures,
            "unexplained": len(unexplained),
            "unexplained_items": [item(a) for a in unexplained[:UNEXPLAINED_LISTED]],
            "counts": {kind: self.count(kind) for kind in KINDS},
            "before_guard": {
                "count": len(before),
                "newest": before[0] if before else None,
                "oldest": before[-1] if before else None,
            },
            "next_cursor": following[0].commit.sha if following else None,
        }


@dataclass(frozen=True)
class Since:
    """`--since`: a revision (the commits after it) or a time (commits committed since)."""

    text: str
    rev: str | None = None
    time: datetime | None = None


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
#: A revision as git reads it, without what could be taken for an option or another argument.
_BLANK = r" \x00-\x1f\x7f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: (White space spelled out: `\s` is read differently by the regex engines reading the spec.)
SINCE_PATTERN = f"^[^-{_BLANK}][^{_BLANK}]{{0,199}}$"
_REV = re.compile(SINCE_PATTERN)


def parse_since(text: str) -> Since:
    """A date (`YYYY-MM-DD`, or ISO 8601; without an offset it is UTC) or a revision."""
    text = text.strip()
    if _DATE.match(text):
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            message = f"{text!r} is not a date: use YYYY-MM-DD or ISO 8601, or a revision"
            raise InvalidInput(message, details=[Detail("since", "date", message)]) from None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return Since(text, time=moment.astimezone(UTC))
    if not _REV.fullmatch(text):
        message = f"{text!r} is neither a date nor a revision"
        raise InvalidInput(message, details=[Detail("since", "revision", message)])
    return Since(text, rev=text)


def within(
    audited: Sequence[Audited], *, shas: set[str] | None = None, since: datetime | None = None
) -> list[Audited]:
    """The audited range: commits of `shas` (those after a revision), or committed at or after
    `since` — each commit judged by its own date (one odd date hides only itself)."""
    return [
        a
        for a in audited
        if (shas is None or a.commit.sha in shas)
        and (since is None or a.commit.committed_at >= since)
    ]
