"""A history checker for the fault test: pure functions from a recorded history to violations.

The history is what the run left behind (lease events, registrations, candidates and their
transitions, blocked evidence, main's first-parent chain) plus what the test itself recorded
(its push attempts with start/end times, the mode it had set and what the hook said, the
events the service acknowledged, every load request and how it ended), the verdicts the hook
gave alone under a break-glass override and uploaded later, and how `GET /v1/audit` explains
each commit of main. Each rule is one small function; `check` runs
them all. Nothing here touches a process, a database or git: the unit tests feed it
hand-made histories that break each rule.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GRANTS = ("lease_acquired", "lease_taken_over", "lease_force_released")
FINAL = ("integrated", "closed", "superseded")
WAITING_ITS_TURN = ("queued", "in_progress")
MAIN = "refs/heads/main"


@dataclass(frozen=True)
class LeaseEvent:
    seq: int
    type: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class RegistrationRow:
    id: int
    candidate_id: int | None
    epoch: int
    attempt: str
    new: str
    status: str


@dataclass(frozen=True)
class CandidateRow:
    id: int
    slug: str
    branch: str
    sha: str
    status: str
    position: int | None


@dataclass(frozen=True)
class MainCommit:
    """One commit of main's first-parent chain (after the run's base), oldest first."""

    sha: str
    parents: tuple[str, ...]
    trailers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PushAttempt:
    """A `git push` the test made: `returncode` None when it had to be killed (it hung)."""

    pusher: str
    ref: str
    new: str
    started: float
    ended: float
    returncode: int | None
    mode: str
    #: The operator had a break-glass override in place on the git server for this push.
    break_glass: bool = False
    #: What the hook said to the pusher (its `remote:` lines, prefix stripped).
    said: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecordedBypass:
    """A verdict the hook gave alone in cutover under a break-glass override that let an
    update of main through, as the service recorded it from the hook's spool."""

    old: str
    new: str
    pusher: str


@dataclass(frozen=True)
class LoadRequest:
    """One request of a load client: `outcome` is answered, refused (an answer of 500 or
    more), unreachable (no connection) or timeout (no answer within the client's timeout);
    `paused` when its replica was stopped (SIGSTOP) while it waited."""

    kind: str
    took: float
    outcome: str
    paused: bool = False


@dataclass
class History:
    lease_events: list[LeaseEvent] = field(default_factory=list)
    registrations: list[RegistrationRow] = field(default_factory=list)
    candidates: list[CandidateRow] = field(default_factory=list)
    #: (candidate id, new status) of every candidate_status_changed, in order.
    transitions: list[tuple[int, str]] = field(default_factory=list)
    #: (slug, branch, sha) of every integration_blocked event.
    blocked_evidence: set[tuple[str, str, str]] = field(default_factory=set)
    mainline: list[MainCommit] = field(default_factory=list)
    #: Every commit reachable from main at the end.
    on_main: set[str] = field(default_factory=set)
    pushes: list[PushAttempt] = field(default_factory=list)
    #: Candidate ids the test saw become READY (queued).
    ready: set[int] = field(default_factory=set)
    #: Idempotency keys of events the service acknowledged, and those stored at the end.
    acknowledged: set[str] = field(default_factory=set)
    stored: set[str] = field(default_factory=set)
    #: Seconds each answered push check took.
    check_latencies: list[float] = field(default_factory=list)
    load_requests: list[LoadRequest] = field(default_factory=list)
    bypasses: list[RecordedBypass] = field(default_factory=list)
    #: sha -> the explanation kind `GET /v1/audit` gives it (None: the audit was not read).
    audit: dict[str, str] | None = None
    hook_deadline: float = 2.5
    push_slack: float = 3.0


@dataclass(frozen=True)
class Violation:
    rule: str
    text: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.text}"


def ms(iso: str) -> int:
    moment = datetime.fromisoformat(iso)
    return round((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000)


def lease_intervals_never_overlap(history: History) -> list[Violation]:
    """Each epoch starts after the previous one ended (released, force-released or expired)
    and epochs rise by one per grant."""
    found: list[Violation] = []
    grants = sorted((e for e in history.lease_events if e.type in GRANTS), key=lambda e: e.seq)
    released = {
        e.fields["epoch"]: ms(e.fields["released_at"])
        for e in history.lease_events
        if e.type == "lease_released"
    }
    for before, after in itertools.pairwise(grants):
        epoch, next_epoch = before.fields["epoch"], after.fields["epoch"]
        if next_epoch != epoch + 1:
            found.append(Violation("lease", f"epoch {epoch} is followed by epoch {next_epoch}"))
        if before.type == "lease_force_released":
            continue  # nobody held the force-released epoch
        start = ms(after.fields.get("acquired_at") or after.fields["released_at"])
        end = released.get(epoch)
        if end is None and "previous_expires_at" in after.fields:
            end = ms(after.fields["previous_expires_at"])
            if after.type == "lease_force_released":
                end = min(end, start)
        if end is None:
            found.append(Violation("lease", f"epoch {epoch} has no end before {next_epoch}"))
        elif end > start:
            found.append(
                Violation("lease", f"epoch {epoch} (until {end}) overlaps {next_epoch} ({start})")
            )
    return found


def covered_by_bypasses(history: History) -> dict[str, RecordedBypass]:
    """The commits of main's first-parent chain that a recorded break-glass verdict let
    through: those after its `old` up to its `new` (nothing if `new` is not on the chain or
    `old` is not below it)."""
    chain = history.mainline
    where = {c.sha: n for n, c in enumerate(chain)}
    covered: dict[str, RecordedBypass] = {}
    for verdict in history.bypasses:
        segment: list[str] = []
        for commit in reversed(chain[: where.get(verdict.new, -1) + 1]):
            if commit.sha == verdict.old:
                break
            segment.append(commit.sha)
            if commit.parents[:1] == (verdict.old,):
                covered.update(dict.fromkeys(segment, verdict))
                break
    return covered


def main_is_explained(history: History) -> list[Violation]:
    """Every first-parent commit of main is a landed registration's `new`, a push the test
    made while the mode let people push main, or a commit a recorded break-glass verdict
    covers; nobody else moved main in cutover (a person did so only with the operator's
    override in place, and the service then holds its record), and every landed registration
    is on the chain."""
    found: list[Violation] = []
    landed = {r.new for r in history.registrations if r.status == "landed"}
    bypassed = covered_by_bypasses(history)
    human = {p.new: p for p in history.pushes if p.ref == MAIN and p.returncode == 0}
    for push in human.values():
        if push.mode == "cutover" and not (push.break_glass and push.new in bypassed):
            found.append(Violation("main", f"{push.pusher} moved main to {push.new} in cutover"))
    chain = {c.sha for c in history.mainline}
    attempts = {r.new: r.attempt for r in history.registrations if r.status == "landed"}
    for commit in history.mainline:
        by_person = commit.sha in human and human[commit.sha].mode != "cutover"
        if commit.sha not in landed and not by_person and commit.sha not in bypassed:
            found.append(Violation("main", f"{commit.sha} on main is explained by nothing"))
        trailer = commit.trailers.get("Integrator-Attempt")
        if commit.sha in landed and trailer != attempts[commit.sha]:
            found.append(Violation("main", f"{commit.sha} carries attempt {trailer}, not its "
                                   f"registration's {attempts[commit.sha]}"))  # fmt: skip
    for sha in sorted(landed - chain):
        found.append(Violation("main", f"landed registration {sha} is not on main"))
    return found


def the_audit_calls_break_glass_a_bypass(history: History) -> list[Violation]:
    """`GET /v1/audit` explains each commit a break-glass verdict covers as a `bypass`, and
    no commit of main as `unexplained`."""
    if history.audit is None:
        return []
    kinds = history.audit
    found = [
        Violation("audit", f"the audit explains break-glass commit {sha} as {kinds.get(sha)}")
        for sha in sorted(covered_by_bypasses(history))
        if kinds.get(sha) != "bypass"
    ]
    found += [
        Violation("audit", f"the audit leaves {c.sha} on main unexplained")
        for c in history.mainline
        if history.audit.get(c.sha, "unexplained") == "unexplained"
    ]
    return found


def nothing_integrated_twice(history: History) -> list[Violation]:
    """One integration per candidate: one transition to integrated, one landed registration,
    one trailered commit, one merge of its sha on main."""
    found: list[Violation] = []
    counts: dict[str, Counter[Any]] = {
        "became integrated": Counter(c for c, to in history.transitions if to == "integrated"),
        "landed registrations": Counter(
            r.candidate_id for r in history.registrations if r.status == "landed"
        ),
        "trailered commits on main": Counter(
            c.trailers["Integrator-Candidate"]
            for c in history.mainline
            if "Integrator-Candidate" in c.trailers
        ),
        "merges of the same sha on main": Counter(
            p for c in history.mainline for p in c.parents[1:]
        ),
    }
    for what, counter in counts.items():
        for key, count in sorted(counter.items(), key=str):
            if count > 1:
                found.append(Violation("twice", f"{what}: {key} x{count}"))
    return found


def ready_candidates_are_accounted_for(history: History) -> list[Violation]:
    """Every READY candidate ended integrated (its sha on main), closed or superseded, blocked
    with evidence, or is still waiting its turn with a position."""
    found: list[Violation] = []
    rows = {c.id: c for c in history.candidates}
    for candidate_id in sorted(history.ready):
        row = rows.get(candidate_id)
        if row is None:
            found.append(Violation("ready", f"candidate {candidate_id} is gone"))
        elif row.status == "integrated" and row.sha not in history.on_main:
            found.append(Violation("ready", f"candidate {row.id} integrated but not on main"))
        elif row.status == "blocked":
            if (row.slug, row.branch, row.sha) not in history.blocked_evidence:
                found.append(Violation("ready", f"candidate {row.id} blocked without evidence"))
        elif row.status in WAITING_ITS_TURN:
            if row.position is None:
                found.append(Violation("ready", f"candidate {row.id} {row.status} sans position"))
        elif row.status not in FINAL:
            found.append(Violation("ready", f"candidate {row.id} ended {row.status}"))
    return found


def no_push_hung(history: History) -> list[Violation]:
    """Every push the test made ended within the hook's deadline and some slack."""
    bound = history.hook_deadline + history.push_slack
    found: list[Violation] = []
    for push in history.pushes:
        took = push.ended - push.started
        if push.returncode is None or took > bound:
            found.append(Violation("hung", f"push of {push.ref} by {push.pusher} took {took:.1f}s"))
    return found


def only_main_in_cutover_is_refused(history: History) -> list[Violation]:
    """A push is refused only when it updates main in cutover: branches always pass, and
    shadow never blocks (not even when the hook cannot reach the service)."""
    return [
        Violation("refused", f"push of {p.ref} by {p.pusher} in {p.mode} exited {p.returncode}")
        for p in history.pushes
        if p.returncode not in (0, None) and (p.ref != MAIN or p.mode != "cutover")
    ]


def refused_by_git_itself(said: tuple[str, ...]) -> bool:
    """Someone moved the ref first: git saw it before any hook ran (`[rejected]`), or after
    the hook let the push through, when its compare-and-swap of the ref failed."""
    return any("[rejected]" in line or line.endswith("(failed to update ref)") for line in said)


def refusals_are_readable(history: History) -> list[Violation]:
    """A refused push was refused by git itself (someone moved main first), or the hook
    said in a line what it refused."""
    found = []
    for push in history.pushes:
        if push.returncode in (0, None) or refused_by_git_itself(push.said):
            continue
        if not any(line.startswith("integrator: refused") for line in push.said):
            found.append(Violation("readable", f"push of {push.ref} by {push.pusher} refused "
                                   f"saying {list(push.said)[:4]}"))  # fmt: skip
    return found


def no_load_request_hung(history: History) -> list[Violation]:
    """Every load request to a running replica ended (answered, refused or not connected)
    before the client's timeout."""
    hung = Counter(r.kind for r in history.load_requests
                   if r.outcome == "timeout" and not r.paused)  # fmt: skip
    return [Violation("hung", f"{n} {kind} requests got no answer in time")
            for kind, n in sorted(hung.items())]  # fmt: skip


def nothing_acknowledged_is_lost(history: History) -> list[Violation]:
    return [
        Violation("lost", f"acknowledged event {key} is not stored")
        for key in sorted(history.acknowledged - history.stored)
    ]


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def push_checks_answer_in_time(history: History) -> list[Violation]:
    p99 = percentile(history.check_latencies, 0.99)
    if p99 >= history.hook_deadline:
        return [Violation("latency", f"p99 of answered push checks {p99:.2f}s")]
    return []


RULES = (
    lease_intervals_never_overlap,
    main_is_explained,
    nothing_integrated_twice,
    ready_candidates_are_accounted_for,
    no_push_hung,
    only_main_in_cutover_is_refused,
    refusals_are_readable,
    nothing_acknowledged_is_lost,
    push_checks_answer_in_time,
    no_load_request_hung,
    the_audit_calls_break_glass_a_bypass,
)


def check(history: History) -> list[Violation]:
    """Every rule's violations, rule by rule."""
    return [violation for rule in RULES for violation in rule(history)]
