"""The audit of main: every commit of its first-parent history, and what let it there.

Pure rules: commits and records in, one explanation per commit out (`explain`); the reader
(`integrator.audit_reader`) gathers the facts from the canonical repository and the database.
A commit is explained, in this order, by:

- `queue`: a registration of the integrator whose attempt is the commit's `Integrator-Attempt`
  trailer, whose `new` is the commit and whose `old` is its first parent, and that landed
  (or was authorized by the guard: landing not yet confirmed). A trailer alone explains
  nothing — anyone can write one;
- `push` / `bypass`: a recorded verdict that let an update of main through — a person's
  push in shadow or off (`push`), or a verdict the hook gave alone in cutover, by break-glass
  or fail-open (`bypass`) — whose `old..new` covers the commit on the first-parent chain;
- `before_guard`: history that was already on main when the guard recorded its first verdict
  or registration;
- else `unexplained`. When it reached main is bounded by its explained neighbours (it came
  after the older one and before the newer one): if cutover was in force at any moment of
  that window, it is a *failure* — the guard should have refused it. Otherwise a warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from integrator.policy import Mode

#: Registration states that prove the guard let its exact update through.
LANDING_STATES = ("landed", "authorized", "in_doubt")
#: The trailer prefix the integrator writes (Integrator-Candidate, -Epoch, -Attempt).
TRAILER_PREFIX = "Integrator-"

Kind = Literal["queue", "push", "bypass", "before_guard", "unexplained"]
KINDS: tuple[Kind, ...] = ("queue", "push", "bypass", "before_guard", "unexplained")


# ---- facts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    """One commit of main's first-parent history, as git tells it."""

    sha: str
    parents: tuple[str, ...]
    subject: str
    author: str
    committed_at: datetime
    #: Values of its `Integrator-Attempt` trailers.
    attempts: tuple[str, ...] = ()
    #: It carries any `Integrator-*` trailer.
    trailered: bool = False


@dataclass(frozen=True)
class Verdict:
    """A recorded verdict that let an update of main through (allowed or would-reject)."""

    seq: int
    at: datetime
    old: str
    new: str
    #: Where the update's commits stop on the chain (exclusive): `old` for a fast-forward,
    #: the merge base for a forced update, None when it brought the whole history.
    base: str | None
    mode: Mode
    would_reject: bool
    reason_code: str
    pusher: str | None
    identity_source: str | None
    decided_locally: bool = False
    bypass: bool = False


@dataclass(frozen=True)
class Landing:
    """A registration that may explain its commit, with its candidate's story."""

    registration_id: int
    status: str
    old: str
    new: str
    attempt: str
    epoch: int
    created_at: datetime
    candidate_id: int | None
    slug: str | None
    branch: str | None
    submitted_by: str | None
    approved_by: str | None
    #: `hotfix` when an operator fast-tracked it; then who did and why.
    lane: str = "normal"
    promoted_by: str | None = None
    promotion_reason: str | None = None


@dataclass(frozen=True)
class ModeChange:
    at: datetime
    to: Mode


@dataclass(frozen=True)
class Records:
    """What the database recorded about main (only what `explain` needs)."""

    verdicts: Sequence[Verdict] = ()
    landings: Sequence[Landing] = ()
    #: In the order they happened.
    mode_changes: Sequence[ModeChange] = ()
    initial_mode: Mode = Mode.shadow
    #: The first verdict (any decision) or registration of main — without one, the first mode
    #: change: when the guard began to watch.
    guard_since: datetime | None = None
    #: That first record's `old` (main as the guard first saw it), when it had one.
    guard_first_old: str | None = None


# ---- explanations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    """Why one commit is on main; `fields` are the kind's own (see `as_dict`)."""

    kind: Kind
    fields: dict[str, Any]
    #: When it reached main, as bounded by the record (None when unknown).
    at: datetime | None = None
    #: The mode the record was made in (None when nothing recorded it).
    mode: Mode | None = None


@dataclass(frozen=True)
class Audited:
    commit: Commit
    explanation: Explanation
    mode: Mode | None
    failure: bool


def _queue(landing: Landing) -> Explanation:
    return Explanation(
        "queue",
        {
            "candidate_id": landing.candidate_id,
            "slug": landing.slug,
            "branch": landing.branch,
            "submitted_by": landing.submitted_by,
            "approved_by": landing.approved_by,
            "lane": landing.lane,
            "promoted_by": landing.promoted_by,
            "promotion_reason": landing.promotion_reason,
            "epoch": landing.epoch,
            "registration_id": landing.registration_id,
            "registration_status": landing.status,
            "attempt": landing.attempt,
        },
        landing.created_at,
        Mode.cutover,  # registrations are created only in cutover
    )


def bypass_kind(verdict: Verdict) -> str | None:
    """`break_glass` or `fail_open` for a verdict the hook gave alone that let main move in
    cutover; None for any other verdict."""
    if verdict.mode is not Mode.cutover or not verdict.decided_locally:
        return None
    return "break_glass" if verdict.bypass else "fail_open"


BYPASS_REASONS = {
    "break_glass": "a break-glass override on the git server let it through while the "
    "service was unreachable",
    "fail_open": "the hook is configured fail-open and let it through while the service "
    "was unreachable",
}


def _by_verdict(verdict: Verdict, trailered: bool) -> Explanation:
    common = {
        "pusher": verdict.pusher,
        "identity_source": verdict.identity_source,
        "verdict_event_seq": verdict.seq,
        "old": verdict.old,
        "new": verdict.new,
    }
    kind = bypass_kind(verdict)
    if kind is not None:
        return Explanation(
            "bypass",
            {"bypass_kind": kind, "reason": BYPASS_REASONS[kind], **common},
            verdict.at,
            verdict.mode,
        )
    fields = {
        **common,
        "decision": "would_reject" if verdict.would_reject else "allowed",
        "reason_code": verdict.reason_code,
        "decided_locally": verdict.decided_locally,
        "trailer_without_registration": trailered,
    }
    return Explanation("push", fields, verdict.at, verdict.mode)


# ---- the rules ------------------------------------------------------------------------------


def landing_explains(landing: Landing, commit: Commit) -> bool:
    """The registration's attempt is the commit's trailer, its `new` the commit, its `old` the
    commit's first parent, and the guard let that update through."""
    return (
        landing.status in LANDING_STATES
        and landing.new == commit.sha
        and landing.attempt in commit.attempts
        and commit.parents[:1] == (landing.old,)
    )


def covered(chain: Sequence[Commit], verdicts: Iterable[Verdict]) -> dict[int, Verdict]:
    """Chain index → the verdict whose update brought that commit: the commits from its `new`
    down to its base (exclusive). Several cover one commit when pushes overlap (a retried or
    forced push): the one whose `new` is nearest above the commit wins, then the earliest."""
    index = {c.sha: i for i, c in enumerate(chain)}
    found: dict[int, Verdict] = {}
    placed = [(index[v.new], v) for v in verdicts if v.new in index]
    for top, verdict in sorted(placed, key=lambda p: (-p[0], p[1].seq)):
        stop = index.get(verdict.base, len(chain)) if verdict.base else len(chain)
        for i in range(top, stop):
            found.setdefault(i, verdict)
    return found


def guard_boundary(chain: Sequence[Commit], records: Records, explained: set[int]) -> int:
    """Chain index from which (older) commits are history from before the guard watched.

    Main as the guard first saw it is the first record's `old`; without it (a creation, a
    mode change first, or an old no longer on the chain) the unexplained commits at the
    bottom committed before the first record. No record at all: nothing was ever watched."""
    if records.guard_since is None:
        return 0
    for i, commit in enumerate(chain):
        if commit.sha == records.guard_first_old:
            return i
    since = records.guard_since.replace(microsecond=0)
    boundary = len(chain)
    while (
        boundary > 0
        and boundary - 1 not in explained
        and chain[boundary - 1].committed_at < since  # git keeps whole seconds
    ):
        boundary -= 1
    return boundary


def mode_at(records: Records, moment: datetime | None) -> Mode:
    """The mode in force at `moment` (None: before anything was recorded)."""
    mode = records.initial_mode
    if moment is None:
        return mode
    for change in records.mode_changes:
        if change.at > moment:
            break
        mode = change.to
    return mode


def modes_between(records: Records, after: datetime | None, before: datetime | None) -> list[Mode]:
    """Every mode in force at some moment of the window (after, before); None is open."""
    seen = [mode_at(records, after)]
    for change in records.mode_changes:
        if (after is None or change.at > after) and (before is None or change.at < before):
            seen.append(change.to)
    return list(dict.fromkeys(seen))


def _unexplained(
    records: Records, commit: Commit, after: datetime | None, before: datetime | None
) -> tuple[Explanation, Mode]:
    modes = modes_between(records, after, before)
    mode = Mode.cutover if Mode.cutover in modes else modes[-1]
    if commit.trailered:
        reason = (
            "it carries integrator trailers but no registration has its attempt and sha: "
            "a trailer alone explains nothing"
        )
    else:
        reason = "no registration, push verdict or bypass record covers it"
    fields = {
        "reason": reason,
        "trailer_without_registration": commit.trailered,
        "window_after": after.isoformat() if after else None,
        "window_before": before.isoformat() if before else None,
        "modes": [m.value for m in modes],
    }
    return Explanation("unexplained", fields), mode


def explain(chain: Sequence[Commit], records: Records) -> list[Audited]:
    """One explanation per commit of `chain` (main's first-parent history, newest first)."""
    landings: dict[str, list[Landing]] = {}
    for landing in records.landings:
        landings.setdefault(landing.new, []).append(landing)
    found: dict[int, Explanation] = {}
    for i, commit in enumerate(chain):
        match = next((x for x in landings.get(commit.sha, ()) if landing_explains(x, commit)), None)
        if match is not None:
            found[i] = _queue(match)
    for i, verdict in covered(chain, records.verdicts).items():
        if i not in found:
            found[i] = _by_verdict(verdict, chain[i].trailered)
    boundary = guard_boundary(chain, records, set(found))
    # When each unexplained commit reached main is bounded by its explained neighbours.
    newer: list[datetime | None] = []
    last: datetime | None = None
    for i in range(len(chain)):
        newer.append(last)
        if i in found and found[i].at is not None:
            last = found[i].at
    audited: list[Audited] = [None] * len(chain)  # type: ignore[list-item]
    older: datetime | None = None
    for i in range(len(chain) - 1, -1, -1):
        commit = chain[i]
        if i in found:
            explanation = found[i]
            audited[i] = Audited(commit, explanation, explanation.mode, False)
            older = explanation.at or older
        elif i >= boundary:
            audited[i] = Audited(commit, Explanation("before_guard", {}), None, False)
        else:
            explanation, mode = _unexplained(records, commit, older, newer[i])
            audited[i] = Audited(commit, explanation, mode, mode is Mode.cutover)
    return audited
