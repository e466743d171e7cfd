"""The liveness rules: pure functions from `Facts` to the conditions that hold.

A merge queue rarely fails loudly: a check never reports, the bot dies, a hook stops being
called — nothing fails, nothing lands. Each condition is one small rule over facts read at one
SQL-clock instant, with its threshold setting, a one-line explanation and the action to take.
`integrator.conditions` reads the facts and records transitions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from integrator.settings import Settings

#: The modes the rules tell apart (the values of `integrator.policy.Mode`).
OFF, CUTOVER = "off", "cutover"


class Code(StrEnum):
    """The liveness conditions, in the order they are reported."""

    #: Candidates queued, and nothing integrated, blocked or evaluated for the stall threshold.
    queue_stalled = "queue_stalled"
    #: Work queued or in progress, and no live lease holder for the no-holder threshold.
    no_holder = "no_holder"
    #: A lease holder that has not renewed within the renew deadline.
    holder_silent = "holder_silent"
    #: A candidate in progress longer than the check timeout.
    check_overdue = "check_overdue"
    #: No hook call for the hook-silent threshold although work reached the repository.
    hook_silent = "hook_silent"
    #: In cutover, and a hook still last saw another mode.
    cutover_pending = "cutover_pending"


#: What each condition means, said when it is cleared and in the docs.
MEANINGS: dict[Code, str] = {
    Code.queue_stalled: "candidates are queued and nothing is integrated, blocked or evaluated",
    Code.no_holder: "work is queued and no worker holds the lease",
    Code.holder_silent: "the lease holder stopped renewing its lease",
    Code.check_overdue: "a candidate has been in progress longer than the check timeout",
    Code.hook_silent: "the repository's hooks stopped calling the service",
    Code.cutover_pending: "in cutover, a hook still acts on the mode it saw before",
}

#: Event types that mean the queue moved: an outcome, a prediction, a landing seen on main.
PROGRESS_EVENTS = (
    "integration_completed",
    "integration_blocked",
    "would_integrate",
    "would_block",
    "prediction_scored",
    "queue_resumed",  # the stall clock starts again when a pause ends
)
#: Event types that need a push to the canonical repository (branch_pushed only when a hook
#: did not report it itself): main moving as the service reads it, or work being submitted.
ACTIVITY_EVENTS = ("finalize_ready", "branch_pushed", "integration_completed", "prediction_scored")
#: Activity this close after the hook's last call is that push's own (reports follow pushes).
HOOK_ACTIVITY_SLACK = timedelta(seconds=60)


@dataclass(frozen=True)
class ActiveCondition:
    """A condition that holds now: since when its threshold was crossed, why, what to do."""

    code: str
    since: datetime
    explanation: str
    action: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "since": iso(self.since)}


@dataclass(frozen=True)
class InProgress:
    candidate_id: int
    slug: str
    sha: str
    epoch: int | None
    since: datetime


@dataclass(frozen=True)
class HookSeen:
    instance: str
    mode_seen: str
    last_seen_at: datetime


@dataclass(frozen=True)
class Facts:
    """Everything the rules read, taken at one SQL-clock instant `now`."""

    now: datetime
    #: The mode's value: off, shadow or cutover.
    mode: str
    mode_changed_at: datetime | None = None
    queued: int = 0
    #: When the longest-queued candidate entered `queued`.
    queued_since: datetime | None = None
    in_progress: list[InProgress] = field(default_factory=list)
    last_progress: datetime | None = None
    holder: str | None = None
    epoch: int = 0
    renewed_at: datetime | None = None
    expires_at: datetime | None = None
    hooks: list[HookSeen] = field(default_factory=list)
    #: The first activity that needed a push, after the hooks' last call (and its slack).
    activity_type: str | None = None
    activity_at: datetime | None = None
    #: An operator paused the queue: queued candidates wait on purpose, not a stall.
    paused: bool = False

    @property
    def last_hook_call(self) -> datetime | None:
        return max((h.last_seen_at for h in self.hooks), default=None)

    @property
    def lease_live(self) -> bool:
        return (
            self.holder is not None and self.expires_at is not None and self.expires_at > self.now
        )


# ---- pure rules ---------------------------------------------------------------------------


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC to the second, with a `Z`."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def human_duration(seconds: float) -> str:
    """`45 s`, `7 min`, `2 h 5 min`, `3 d 4 h`: how long, as an operator reads it."""
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _ago(facts: Facts, moment: datetime) -> str:
    return human_duration((facts.now - moment).total_seconds())


def _after(moment: datetime, seconds: float) -> datetime:
    return moment + timedelta(seconds=seconds)


def queue_stalled(facts: Facts, settings: Settings) -> ActiveCondition | None:
    if not facts.queued or facts.queued_since is None or facts.paused:
        return None
    moved = max(m for m in (facts.last_progress, facts.queued_since) if m is not None)
    since = _after(moved, settings.stall_after_seconds)
    if facts.now < since:
        return None
    return ActiveCondition(
        Code.queue_stalled,
        since,
        f"{facts.queued} candidate(s) queued and nothing integrated, blocked or evaluated "
        f"for {_ago(facts, moved)}",
        "check that a worker holds the lease and takes work (`integrator lease status`, the "
        "worker's log); no_holder, holder_silent or check_overdue, when raised too, say why",
        {
            "queued": facts.queued,
            "last_progress_at": iso(facts.last_progress),
            "threshold_seconds": settings.stall_after_seconds,
        },
    )


def no_holder(facts: Facts, settings: Settings) -> ActiveCondition | None:
    waiting = facts.queued + len(facts.in_progress)
    if not waiting or facts.lease_live:
        return None
    arrivals = [c.since for c in facts.in_progress]
    if facts.queued_since is not None:
        arrivals.append(facts.queued_since)
    work_since = min(arrivals, default=facts.now)
    held_until = facts.expires_at  # the grant's end: expiry, or the release (None: never held)
    alone = max(m for m in (held_until, work_since) if m is not None)
    since = _after(alone, settings.no_holder_after_seconds)
    if facts.now < since:
        return None
    last = f"; the last grant (epoch {facts.epoch}) ended {iso(held_until)}" if held_until else ""
    return ActiveCondition(
        Code.no_holder,
        since,
        f"{waiting} candidate(s) waiting and no worker has held the lease for "
        f"{_ago(facts, alone)}{last}",
        "start the worker (`integrator worker --repo URL …`), or read its log for why it "
        "cannot take the lease",
        {
            "waiting": waiting,
            "last_epoch": facts.epoch,
            "threshold_seconds": settings.no_holder_after_seconds,
        },
    )


def holder_silent(facts: Facts, settings: Settings) -> ActiveCondition | None:
    if facts.holder is None or facts.renewed_at is None:
        return None
    since = _after(facts.renewed_at, settings.lease_renew_deadline_seconds)
    if facts.now < since:
        return None
    expired = facts.expires_at is not None and facts.expires_at <= facts.now
    grant = "its grant has expired" if expired else f"its grant expires {iso(facts.expires_at)}"
    return ActiveCondition(
        Code.holder_silent,
        since,
        f"lease holder {facts.holder} (epoch {facts.epoch}) last renewed "
        f"{_ago(facts, facts.renewed_at)} ago, past the renew deadline of "
        f"{settings.lease_renew_deadline_seconds:g} s; {grant}",
        "the worker is stuck or gone: look at its host and log, and restart it; another "
        "worker takes over once the grant expires, or at once after "
        "`integrator lease release --force --reason …`",
        {
            "holder": facts.holder,
            "epoch": facts.epoch,
            "renewed_at": iso(facts.renewed_at),
            "expires_at": iso(facts.expires_at),
            "expired": expired,
            "threshold_seconds": settings.lease_renew_deadline_seconds,
        },
    )


def check_overdue(facts: Facts, settings: Settings) -> ActiveCondition | None:
    overdue = [
        c for c in facts.in_progress if facts.now >= _after(c.since, settings.check_timeout_seconds)
    ]
    if not overdue:
        return None
    oldest = min(overdue, key=lambda c: c.since)
    return ActiveCondition(
        Code.check_overdue,
        _after(oldest.since, settings.check_timeout_seconds),
        f"{oldest.slug} ({oldest.sha[:12]}) has been in progress for {_ago(facts, oldest.since)}, "
        f"longer than the check timeout of {settings.check_timeout_seconds:g} s",
        "look at the worker's log and its check process: a check that hangs is stopped by the "
        "worker's --check-timeout (the candidate is then blocked and the queue moves on); keep "
        "INTEGRATOR_CHECK_TIMEOUT_SECONDS a little above the worker's --check-timeout",
        {
            "candidate_id": oldest.candidate_id,
            "slug": oldest.slug,
            "sha": oldest.sha,
            "epoch": oldest.epoch,
            "in_progress_since": iso(oldest.since),
            "overdue": len(overdue),
            "threshold_seconds": settings.check_timeout_seconds,
        },
    )


def hook_activity_slack(settings: Settings) -> timedelta:
    """A minute, or a tenth of the threshold when that is shorter."""
    return min(HOOK_ACTIVITY_SLACK, timedelta(seconds=settings.hook_silent_after_seconds / 10))


def hook_silent(facts: Facts, settings: Settings) -> ActiveCondition | None:
    if facts.mode == OFF or facts.activity_at is None:
        return None
    last = facts.last_hook_call
    since = max(_after(last or facts.activity_at, settings.hook_silent_after_seconds),
                facts.activity_at)  # fmt: skip
    if facts.now < since:
        return None
    silent = (
        f"no hook has called the service for {_ago(facts, last)} (last at {iso(last)})"
        if last
        else "no hook has ever called the service"
    )
    return ActiveCondition(
        Code.hook_silent,
        since,
        f"{silent}, yet work reached the repository after that ({facts.activity_type} "
        f"at {iso(facts.activity_at)}): pushes are not being checked",
        "run `integrator hooks check REPO.git` on the git server and reinstall the hooks "
        "(`integrator hooks install`) if they are missing; until then nothing guards main "
        "and shadow records no evidence",
        {
            "last_hook_call": iso(last),
            "activity": facts.activity_type,
            "activity_at": iso(facts.activity_at),
            "threshold_seconds": settings.hook_silent_after_seconds,
        },
    )


def cutover_pending(facts: Facts, settings: Settings) -> ActiveCondition | None:
    if facts.mode != CUTOVER or facts.mode_changed_at is None:
        return None
    pending = [h for h in facts.hooks if h.mode_seen != CUTOVER]
    since = _after(facts.mode_changed_at, settings.cutover_pending_after_seconds)
    if not pending or facts.now < since:
        return None
    named = ", ".join(f"{h.instance} saw {h.mode_seen}" for h in pending)
    return ActiveCondition(
        Code.cutover_pending,
        since,
        f"in cutover for {_ago(facts, facts.mode_changed_at)}, but {len(pending)} hook(s) "
        f"last saw another mode ({named}): such a hook still lets main through when the "
        "service is unreachable",
        "push to the repository (any branch) so that its hook learns the mode; "
        "`integrator evidence` lists every hook and the mode it last saw",
        {
            "pending": [
                {
                    "instance": h.instance,
                    "mode_seen": h.mode_seen,
                    "last_seen_at": iso(h.last_seen_at),
                }
                for h in pending
            ],
            "threshold_seconds": settings.cutover_pending_after_seconds,
        },
    )


RULES: dict[Code, Callable[[Facts, Settings], ActiveCondition | None]] = {
    Code.queue_stalled: queue_stalled,
    Code.no_holder: no_holder,
    Code.holder_silent: holder_silent,
    Code.check_overdue: check_overdue,
    Code.hook_silent: hook_silent,
    Code.cutover_pending: cutover_pending,
}


def judge(facts: Facts, settings: Settings) -> list[ActiveCondition]:
    """Every condition that holds on these facts, in `Code` order."""
    return [found for rule in RULES.values() if (found := rule(facts, settings)) is not None]
