"""Cutover and rollback, gated on evidence computed from the recorded history (DESIGN §7).

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

from integrator import lease, modes, scoring
from integrator.admission import CanonicalRepo, check
from integrator.errors import EvidenceIncomplete, TransitionRefused
from integrator.events import record_system_event
from integrator.guard import push_facts
from integrator.models import Candidate, Event, HookInstance, Registration, utcnow
from integrator.parity import dequeue_order_violations, lease_overlaps, shadow_registrations
from integrator.policy import RegistrationFacts, Update, decide
from integrator.queue import Status
from integrator.queue import transition as move
from integrator.registrations import void_open
from integrator.settings import Settings

PREDICTION_TYPES = ("would_integrate", "would_block")


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


def _events(session: Session, *types: str) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.type.in_(types)).order_by(Event.seq)))


def shadow_has_run(session: Session, settings: Settings) -> Item:
    predictions = _events(session, *PREDICTION_TYPES)
    distinct = len({e.fields.get("candidate_id") for e in predictions})
    first = predictions[0].recorded_at if predictions else None
    span = (utcnow() - first).total_seconds() if first else 0.0
    need_n, need_t = settings.cutover_min_outcomes, settings.cutover_min_shadow_seconds
    blockers = []
    if distinct < need_n:
        blockers.append(f"{distinct} shadow outcomes for distinct candidates, need {need_n}")
    if span < need_t:
        blockers.append(f"shadow outcomes span {span:.0f} s, need {need_t:.0f} s")
    numbers = {
        "outcomes": distinct,
        "min_outcomes": need_n,
        "seconds": round(span),
        "min_seconds": need_t,
    }
    return Item("shadow_ran", "shadow mode has run", not blockers, numbers, blockers)


def shadow_parity(session: Session, repo: CanonicalRepo) -> Item:
    overlaps = lease_overlaps(_events(session, "lease_taken_over"))
    order = dequeue_order_violations(_events(session, "candidate_status_changed"))
    in_shadow = shadow_registrations(_events(session, "mode_changed", "registration_created"))
    unexplained = _unexplained_trailered_commits(session, repo)
    scored = _events(session, "prediction_scored")
    agreed = sum(1 for e in scored if e.fields.get("agreed"))
    blockers = [
        *(f"lease grants overlap: {o}" for o in overlaps),
        *(f"dequeue out of position order: {o}" for o in order),
        *(f"registration created in shadow: {r}" for r in in_shadow),
        *(f"integrator-trailered commit on main without a registration: {c}" for c in unexplained),
    ]
    numbers = {
        "lease_overlaps": len(overlaps),
        "dequeue_order_violations": len(order),
        "registrations_in_shadow": len(in_shadow),
        "unexplained_trailered_commits": len(unexplained),
        "predictions_scored": len(scored),
        "prediction_agreement": round(agreed / len(scored), 3) if scored else None,
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
    unexplained = []
    for sha, attempt in git.first_parent_trailer(main, "Integrator-Attempt", limit=2000):
        explained = session.scalar(
            select(Registration.id).where(Registration.attempt == attempt, Registration.new == sha)
        )
        if explained is None:
            unexplained.append(sha[:12])
    return unexplained


def live_policy_refuses_last_human_push(session: Session, settings: Settings) -> Item:
    recorded = [e for e in _events(session, "push_would_reject") if e.fields.get("protected")]
    if not recorded:
        return Item(
            "live_policy_refuses",
            "the live policy refuses the last recorded would-be refusal",
            False,
            {},
            ["no push_would_reject of a protected ref recorded yet: shadow has seen no human push"],
        )
    last = recorded[-1].fields
    replayed = Update(
        last["ref"], last["resolved_ref"], last["old"], last["new"],
        last.get("fast_forward"), last.get("first_parent"),
    )  # fmt: skip
    facts = push_facts(settings, modes.Mode.cutover, last.get("pusher"), False)
    verdict = decide([replayed], facts)
    numbers = {"replayed_seq": recorded[-1].seq, "reason_code": verdict.reason.value}
    blockers = [] if not verdict.allow else ["the live policy would allow it"]
    return Item("live_policy_refuses", "the live policy refuses the last recorded would-be refusal",
                not blockers, numbers, blockers)  # fmt: skip


def live_policy_allows_registration(session: Session, settings: Settings) -> Item:
    title = "the live policy allows a registration from the live lease row"
    state = lease.status(session, settings)
    if not state.held or state.expires_at_ms is None:
        return Item("registration_allowed", title, False, {}, ["no lease holder: start the worker"])
    old, new = "1" * 40, "2" * 40
    proposed = Update(settings.protected_refs[0], settings.protected_refs[0], old, new, True, True)
    left = state.expires_at_ms - state.now_ms
    facts = push_facts(settings, modes.Mode.cutover, state.holder, True)
    verdict = decide([proposed], facts, [RegistrationFacts(True, True, left)])
    numbers = {"holder": state.holder, "epoch": state.epoch, "lease_left_ms": left}
    blockers = [] if verdict.allow else [f"refused: {verdict.reason.value}"]
    return Item("registration_allowed", title, not blockers, numbers, blockers)


def drill_recorded(session: Session) -> Item:
    drills = [e for e in _events(session, "rollback_drill") if e.fields.get("refusal_observed")]
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


def evidence(session: Session, settings: Settings, repo: CanonicalRepo) -> Evidence:
    items = [
        shadow_has_run(session, settings),
        shadow_parity(session, repo),
        live_policy_refuses_last_human_push(session, settings),
        live_policy_allows_registration(session, settings),
        drill_recorded(session),
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
        candidate.unmet = [c.value for c in readiness.unmet]
        if readiness.ready:
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
