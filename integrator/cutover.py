"""Cutover and rollback, gated on evidence computed from the recorded history.

Each go/no-go item is a small function over what the database recorded (and,
for item 2, what canonical `main` holds), checked as a checker would — by
replaying events, not by trusting current state. Incomplete evidence changes
nothing; `--force` is recorded as such; rollback always works, at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from integrator import lease, modes, registrations, scoring
from integrator.admission import CanonicalRepo, check, record
from integrator.check_contract import REPORTED
from integrator.errors import EvidenceIncomplete, TransitionRefused
from integrator.events import record_system_event
from integrator.gitops import GitError
from integrator.guard import push_facts
from integrator.models import Candidate, HookInstance, Registration, utcnow
from integrator.parity import (
    ShadowRun,
    dequeue_order_violations,
    lease_overlaps,
    shadow_registrations,
)
from integrator.policy import Update, decide
from integrator.queue import Status
from integrator.queue import transition as move
from integrator.registrations import void_open
from integrator.settings import Settings
from integrator.shadow_history import Kind, last_protected_would_reject, picked, shadow_run, whole

PREDICTION_TYPES = scoring.PREDICTIONS
#: Stands for the merge commit the holder has not made yet; the policy reads only its facts.
NEXT_MERGE = "f" * 40


@dataclass(frozen=True)
class Item:
    """One go/no-go item: pass or fail, with its numbers and what blocks it."""

    code: str
    title: str
    ok: bool
    numbers: dict[str, Any] = field(default_factory=dict)
    blockers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Evidence:
    items: list[Item]
    hooks: list[dict[str, Any]]

    @property
    def complete(self) -> bool:
        return all(i.ok for i in self.items)

    @property
    def blockers(self) -> list[str]:
        return [f"{i.code}: {b}" for i in self.items for b in i.blockers]


def shadow_has_run(session: Session, settings: Settings) -> Item:
    """Outcomes and time of the latest uninterrupted stretch of shadow: predictions made in
    `off` are not shadow outcomes, and leaving shadow (not a drill) starts the count again."""
    title = "shadow mode has run (counted since shadow last began)"
    run = shadow_run(session)
    predicted = (
        picked(session, PREDICTION_TYPES, {"candidate_id": Kind.integer}, run) if run else []
    )
    outcomes = len({e.fields["candidate_id"] for e in predicted})
    span = ((run.until or utcnow()) - run.since).total_seconds() if run else 0.0
    need_n, need_t = settings.cutover_min_outcomes, settings.cutover_min_shadow_seconds
    when = _stretch(run)
    blockers = []
    if outcomes < need_n:
        blockers.append(f"{outcomes} shadow outcomes for distinct candidates {when}, need {need_n}")
    if span < need_t:
        blockers.append(f"shadow has run {span:.0f} s {when}, need {need_t:.0f} s")
    numbers = {
        "outcomes": outcomes,
        "min_outcomes": need_n,
        "seconds": round(span),
        "min_seconds": need_t,
        "shadow_since": run.since.isoformat() if run else None,
        "shadow_until": run.until.isoformat() if run and run.until else None,
    }
    return Item("shadow_ran", title, not blockers, numbers, blockers)


def _stretch(run: ShadowRun | None) -> str:
    if run is None:
        return "(nothing recorded yet)"
    since = f"{run.since:%Y-%m-%d %H:%M:%S} UTC"
    if run.until is None:
        return f"since shadow last began at {since}"
    return f"from {since} until shadow was left at {run.until:%Y-%m-%d %H:%M:%S} UTC"


def shadow_parity(session: Session, repo: CanonicalRepo) -> Item:
    overlaps = lease_overlaps(whole(session, "lease_taken_over"))
    dequeues = {"candidate_id": Kind.integer, "to": Kind.text, "position": Kind.integer}
    order = dequeue_order_violations(picked(session, ["candidate_status_changed"], dequeues))
    in_shadow = shadow_registrations(
        picked(session, ["mode_changed", "registration_created"],
               {"to": Kind.text, "registration_id": Kind.text})
    )  # fmt: skip
    try:
        unexplained = _unexplained_trailered_commits(session, repo)
        unreadable = []
    except GitError as exc:  # unknown is not "none found": the item cannot pass
        unexplained, unreadable = [], [f"cannot read canonical main to look for trailers: {exc}"]
    scored = picked(session, ["prediction_scored"], {"candidate_id": Kind.integer,
                    "category": Kind.json, "agreed": Kind.json})  # fmt: skip
    predicted = picked(session, PREDICTION_TYPES, {"candidate_id": Kind.integer})
    fared = scoring.tally(predicted, scored)
    right = fared[scoring.Category.agreed] + fared[scoring.Category.blocked_then_resolved]
    blockers = [
        *(f"lease grants overlap: {o}" for o in overlaps),
        *(f"dequeue out of position order: {o}" for o in order),
        *(f"registration created in shadow: {r}" for r in in_shadow),
        *(f"integrator-trailered commit on main without a registration: {c}" for c in unexplained),
        *unreadable,
    ]
    numbers = {
        "lease_overlaps": len(overlaps),
        "dequeue_order_violations": len(order),
        "registrations_in_shadow": len(in_shadow),
        "unexplained_trailered_commits": len(unexplained),
        "predictions_scored": len(scored),
        **{f"predictions_{category}": count for category, count in fared.items()},
        "prediction_agreement": round(right / len(scored), 3) if scored else None,
    }
    return Item(
        "shadow_parity", "shadow parity in the recorded history", not blockers, numbers, blockers
    )


def _unexplained_trailered_commits(session: Session, repo: CanonicalRepo) -> list[str]:
    if repo.mirror is None:
        return []
    git = repo.mirror.git()
    main = git.rev_parse(repo.main_ref)
    if main is None:
        return []
    trailered = git.first_parent_trailer(main, "Integrator-Attempt", limit=2000)
    attempts = sorted({attempt for _, attempt in trailered})
    query = select(Registration.attempt, Registration.new).where(Registration.attempt.in_(attempts))
    explained = {(attempt, new) for attempt, new in session.execute(query)} if attempts else set()
    return [sha[:12] for sha, attempt in trailered if (attempt, sha) not in explained]


def live_policy_refuses_last_human_push(session: Session, settings: Settings) -> Item:
    recorded = last_protected_would_reject(session)
    if recorded is None:
        return Item(
            "live_policy_refuses",
            "the live policy refuses the last recorded would-be refusal",
            False,
            {},
            ["no push_would_reject of a protected ref recorded yet: shadow has seen no human push"],
        )
    last = recorded.fields
    replayed = Update(
        last["ref"], last["resolved_ref"], last["old"], last["new"],
        last.get("fast_forward"), last.get("first_parent"),
    )  # fmt: skip
    facts = push_facts(settings, modes.Mode.cutover, last.get("pusher"), False)
    verdict = decide([replayed], facts)
    numbers = {"replayed_seq": recorded.seq, "reason_code": verdict.reason.value}
    blockers = [] if not verdict.allow else ["the live policy would allow it"]
    return Item("live_policy_refuses", "the live policy refuses the last recorded would-be refusal",
                not blockers, numbers, blockers)  # fmt: skip


def live_policy_allows_registration(
    session: Session, settings: Settings, repo: CanonicalRepo
) -> Item:
    """The lease holder's next update of canonical main, decided as a push check would.

    A dry run: nothing is registered. The registration is the one the holder would get now
    (main's ref from main's current sha, the lease row's epoch, valid until the earlier of
    the lease's expiry and the registration lifetime), judged by the same rule a push check
    applies to a real one, then by the push policy in cutover. The merge it would push does
    not exist yet; the worker always builds it directly on main, which is what the hook
    would find (fast-forward, first parent).
    """
    title = "the live policy allows a registration from the live lease row"
    state = lease.status(session, settings)
    if not state.held or state.expires_at_ms is None:
        return Item("registration_allowed", title, False, {}, ["no lease holder: start the worker"])
    ref, old = repo.main_ref, repo.main_sha()
    if old is None:
        blocker = (
            f"cannot read {ref} in the canonical repository: "
            "the integrator's update has nothing to build on"
        )
        return Item("registration_allowed", title, False, {"ref": ref}, [blocker])
    proposed = Update(ref, ref, old, NEXT_MERGE, fast_forward=True, first_parent=True)
    would_register = Registration(
        repository=settings.repository_name, ref=ref, old=old, new=NEXT_MERGE,
        epoch=state.epoch, status="registered",
        expires_at_ms=registrations.expiry_ms(state, settings),
    )  # fmt: skip
    registration = registrations.decide_facts(
        would_register, settings.repository_name, proposed, state
    )
    facts = push_facts(settings, modes.Mode.cutover, state.holder, True)
    verdict = decide([proposed], facts, [registration])
    numbers = {
        "holder": state.holder,
        "epoch": state.epoch,
        "lease_left_ms": registration.lease_left_ms,
        "ref": ref,
        "old": old,
        "reason_code": verdict.reason.value,
        "registration": "a dry run of the registration the holder would get now "
        "(nothing is registered)",
    }
    blockers = [] if verdict.allow else [f"refused: {verdict.reason.value}"]
    return Item("registration_allowed", title, not blockers, numbers, blockers)


def checks_reported(session: Session, settings: Settings) -> Item:
    """Every configured check has reported a result on at least one shadow candidate.

    The configured checks are the required ones (`INTEGRATOR_REQUIRED_CHECKS`) and every check
    the shadow outcomes listed. A check counts as reported only when it ran to a verdict
    (passed, failed, timed out) on a prediction made in the latest stretch of shadow: a check
    that was always skipped, never wrote its result or never ran could stay silent for ever
    after cutover, and a queue waiting on it would stall without anyone seeing why.
    """
    run = shadow_run(session)
    seen: dict[str, dict[str, int]] = {name: {} for name in settings.required_check_names}
    predicted = picked(session, PREDICTION_TYPES, {"checks": Kind.json}, run) if run else []
    for event in predicted:
        for listed in event.fields["checks"] or []:
            statuses = seen.setdefault(str(listed["name"]), {})
            statuses[listed["status"]] = statuses.get(listed["status"], 0) + 1
    title = "every configured check has reported a result on at least one shadow candidate"
    if not seen:
        numbers = {"checks": 0, "required": []}
        return Item("checks_reported", f"{title} (no checks configured)", True, numbers)
    reported = {name: sum(n for s, n in statuses.items() if s in REPORTED)
                for name, statuses in seen.items()}  # fmt: skip
    blockers = [_silent(name, seen[name]) for name, count in reported.items() if not count]
    numbers = {
        "checks": len(seen),
        "required": settings.required_check_names,
        "reported": reported,
    }
    return Item("checks_reported", title, not blockers, numbers, blockers)


def _silent(name: str, statuses: dict[str, int]) -> str:
    if not statuses:
        return (
            f"check {name} is required but has not reported on any shadow candidate: run the "
            f"shadow worker with --check {name}=CMD"
        )
    shown = ", ".join(f"{status} {count}x" for status, count in sorted(statuses.items()))
    return (
        f"check {name} has never reported a result (passed, failed or timed out) on a shadow "
        f"candidate, only: {shown}; a skipped, resultless or unrun check proves nothing"
    )


def drill_recorded(session: Session) -> Item:
    drills = [e for e in whole(session, "rollback_drill") if e.fields.get("refusal_observed")]
    numbers = {
        "drills": len(drills),
        "last": drills[-1].recorded_at.isoformat() if drills else None,
    }
    blockers = [] if drills else ["no rollback drill recorded: run `integrator rollback --drill`"]
    return Item("rollback_drill", "a rollback drill is recorded", not blockers, numbers, blockers)


def hooks_seen(session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(select(HookInstance).order_by(HookInstance.repository))
    return [
        {
            "repository": h.repository,
            "instance": h.instance,
            "last_seen_at": h.last_seen_at.isoformat(),
            "mode_seen": h.mode_seen,
            "pending": h.mode_seen != modes.Mode.cutover.value,
        }
        for h in rows
    ]


def hook_warnings(hooks: list[dict[str, Any]]) -> list[str]:
    """What a cutover leaves open: a hook that has not seen cutover yet still lets main
    through when it cannot reach the service (it decides from the last mode it saw)."""
    if not hooks:
        return [
            "no hook has ever called the service: pushes to main are not checked at all; "
            "install the hooks (`integrator hooks install REPO.git`)"
        ]
    return [
        f"hook {h['instance']} of {h['repository']} last saw {h['mode_seen']}: until its next "
        "push it still lets main through when the service is unreachable; push to the "
        "repository (any branch) so that it learns cutover"
        for h in hooks
        if h["pending"]
    ]


def evidence(session: Session, settings: Settings, repo: CanonicalRepo) -> Evidence:
    items = [
        shadow_has_run(session, settings),
        shadow_parity(session, repo),
        live_policy_refuses_last_human_push(session, settings),
        live_policy_allows_registration(session, settings, repo),
        drill_recorded(session),
        checks_reported(session, settings),
    ]
    return Evidence(items, hooks_seen(session))


def cutover(
    session: Session, settings: Settings, repo: CanonicalRepo, *, by: str, reason: str, force: bool
) -> Evidence:
    """shadow → cutover on complete evidence (or recorded force); predictions go back to work."""
    now = modes.current(session).mode
    if now is not modes.Mode.shadow:
        raise TransitionRefused(f"cutover only from shadow; the mode is {now}")
    found = evidence(session, settings, repo)
    if not found.complete and not force:
        raise EvidenceIncomplete(
            "cutover refused: the evidence is incomplete",
            extra={"blockers": found.blockers},
        )
    modes.change(
        session, modes.Mode.cutover, by=by, reason=reason,
        repository=settings.repository_name, forced=force and not found.complete,
    )  # fmt: skip
    _requeue_predictions(session, settings, repo, by)
    return found


def _requeue_predictions(
    session: Session, settings: Settings, repo: CanonicalRepo, by: str
) -> None:
    """Predictions that already landed are scored (the same record scoring writes);
    every other predicted candidate still READY is processed for real, in position order."""
    scoring.record(session, settings, scoring.find_landed(session, settings, repo), by)
    predicted = session.scalars(
        select(Candidate)
        .where(Candidate.repository == settings.repository_name, Candidate.status == "predicted")
        .order_by(Candidate.position)
    )
    for candidate in predicted:
        readiness = check(session, repo, candidate)
        record(candidate, readiness)
        # git could not tell: queued all the same, dequeue re-checks before handing it out
        if readiness.ready or readiness.undecided:
            move(session, candidate, Status.queued, reason="cutover: processed for real")
        else:
            move(session, candidate, Status.waiting, reason="cutover: no longer READY")


def rollback(session: Session, settings: Settings, *, by: str, reason: str) -> modes.ModeView:
    """cutover → shadow at once; outside cutover a recorded no-op."""
    now = modes.current(session)
    if now.mode is not modes.Mode.cutover:
        record_system_event(
            session, type="rollback_noop", repository=settings.repository_name,
            fields={"reason": reason, "mode": now.mode.value}, actor=by,
        )  # fmt: skip
        return now
    view = modes.change(
        session, modes.Mode.shadow, by=by, reason=reason, repository=settings.repository_name
    )
    void_open(session, settings.repository_name, "rollback")
    return view


def drill(session: Session, settings: Settings, *, by: str, reason: str) -> dict[str, Any]:
    """A recorded cutover → shadow round trip, inside one transaction so no push sees it."""
    if modes.current(session).mode is not modes.Mode.shadow:
        raise TransitionRefused("run the drill in shadow")
    name = settings.repository_name
    modes.change(session, modes.Mode.cutover, by=by, reason=reason, repository=name, drill=True)
    human = Update(
        settings.protected_refs[0], settings.protected_refs[0], "1" * 40, "2" * 40, True, True
    )
    live_mode = modes.current(session).mode
    refused = not decide([human], push_facts(settings, live_mode, "drill", False)).allow
    voided = void_open(session, name, "rollback drill")
    modes.change(session, modes.Mode.shadow, by=by, reason=reason, repository=name, drill=True)
    fields = {"refusal_observed": refused, "mode_during_drill": live_mode.value, "voided": voided}
    record_system_event(session, type="rollback_drill", repository=name, fields=fields, actor=by)
    return fields
