"""Registered updates: the only way the lease holder moves a protected ref in cutover.

A registration names one update `(repository, ref, old, new)` of one candidate and one
attempt, made by the holder of one epoch. Its nonce is random, shown once and stored only
hashed; it buys exactly that update. States and their events:

    registered → authorized → landed | failed       (registration_authorized, _landed, _failed)
    registered → void | expired                      (registration_voided, _expired)
    authorized → in_doubt  (its epoch or cutover ended)   (registration_in_doubt)
    in_doubt → landed      (the report of its push)  (registration_landed)
    in_doubt | authorized of a silent epoch → landed | failed   (`integrator.reconcile`)

Every change of status is one conditional UPDATE whose row count says whether it happened,
so two requests racing for one registration cannot both move it. Times are integer ms of
the SQL clock, as for the lease. Writes made by the holder (create, fail) run after
`lease.fence` in the caller's transaction and take the fenced lease state as proof.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, and_, exists, select, update
from sqlalchemy.orm import Session

from integrator import modes
from integrator.db import now_ms
from integrator.errors import Detail, InvalidInput, NotFound, NotInCutover, TransitionRefused
from integrator.events import record_system_event
from integrator.gitops import is_zero_sha
from integrator.models import Candidate, Lease, Registration, utcnow
from integrator.policy import RegistrationFacts, Update
from integrator.queue import Status, get_candidate
from integrator.settings import Settings

if TYPE_CHECKING:
    from integrator.lease import LeaseState

REGISTRATIONS = cast(Table, Registration.__table__)
#: A registration that can still authorize an update.
OPEN = ("registered", "authorized")
#: Authorized before its epoch went silent, or never resolved: resolved against the ref.
UNRESOLVED = ("in_doubt", "authorized")
#: state → what it becomes when its epoch ends
RETIRED = {"registered": "void", "authorized": "in_doubt"}


@dataclass(frozen=True)
class Issued:
    """A new registration; `nonce` is shown to the holder once and never stored or logged."""

    registration: Registration
    nonce: str = field(repr=False)


def hash_nonce(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


def record(session: Session, kind: str, row: Any, by: str | None = None, **extra: Any) -> None:
    fields = {"registration_id": row.id, "candidate_id": row.candidate_id, "epoch": row.epoch,
              **extra}  # fmt: skip
    record_system_event(
        session, type=f"registration_{kind}", repository=row.repository, fields=fields, actor=by
    )


def move(session: Session, *where: Any, status: str) -> list[Any]:
    """One conditional UPDATE to `status`; the rows it moved."""
    c = REGISTRATIONS.c
    statement = (
        update(REGISTRATIONS)
        .where(*where)
        .values(status=status, updated_at=utcnow())
        .returning(c.id, c.repository, c.candidate_id, c.epoch, c.ref, c.old, c.new, c.attempt)
    )
    return list(session.execute(statement).all())


# ---- pure rules ---------------------------------------------------------------------------


def expiry_ms(fenced: LeaseState, settings: Settings) -> int:
    """Valid until the earlier of the lease's expiry and the registration lifetime."""
    lifetime = round(settings.registration_ttl_seconds * 1000)
    return min(fenced.expires_at_ms or fenced.now_ms, fenced.now_ms + lifetime)


def decide_create(
    mode: modes.Mode, protected_refs: list[str], ref: str, candidate: Candidate, epoch: int
) -> NotInCutover | TransitionRefused | None:
    """Why the holder of `epoch` may not register this update now (None: it may)."""
    if mode is not modes.Mode.cutover:
        return NotInCutover(f"the service is in {mode}: registrations are created only in cutover")
    if ref not in protected_refs:
        return TransitionRefused(
            f"{ref} is not a protected ref ({', '.join(protected_refs)}): push it without "
            "a registration"
        )
    if candidate.status != Status.in_progress or candidate.epoch != epoch:
        return TransitionRefused(
            f"candidate {candidate.id} is {candidate.status} (epoch {candidate.epoch}); only "
            f"the in_progress handout of epoch {epoch} can be registered"
        )
    return None


def decide_facts(
    seen: Registration | None, repository: str, update: Update, state: LeaseState
) -> RegistrationFacts:
    """What the policy needs to know about the registration a push's nonce names.

    It matches when it names this repository, resolved ref, old and new and can still be
    used (registered, or authorized for an identical retry, and not expired). Once its
    epoch has ended it is refused for that reason, whatever became of it meanwhile.
    """
    left = (state.expires_at_ms or state.now_ms) - state.now_ms
    if seen is None:
        return RegistrationFacts(matches=False, epoch_current=state.held, lease_left_ms=left)
    epoch_current = state.held and seen.epoch == state.epoch
    same = (seen.repository, seen.ref, seen.old, seen.new) == (
        repository, update.resolved_ref, update.old, update.new
    )  # fmt: skip
    usable = seen.status in OPEN and seen.expires_at_ms > state.now_ms
    return RegistrationFacts(same and (usable or not epoch_current), epoch_current, left)


def decide_reconciled(registration: Registration, explained: set[str]) -> str:
    """landed when its `new` is a commit on main that it explains (attempt and new), else
    failed: an ended epoch can no longer push it."""
    return "landed" if registration.new in explained else "failed"


# ---- the holder's fenced writes ------------------------------------------------------------


def create(
    session: Session,
    settings: Settings,
    fenced: LeaseState,
    *,
    candidate_id: int,
    ref: str,
    old: str,
    new: str,
    attempt: str,
    by: str,
) -> Issued:
    """Register one update for the holder's in_progress candidate; earlier unconsumed
    registrations of that candidate in this epoch are void (only the newest can land)."""
    for name, sha in (("old", old), ("new", new)):
        if is_zero_sha(sha):
            message = f"{name} must be a commit: registrations neither create nor delete refs"
            raise InvalidInput(message, details=[Detail(name, "not_zero", message)])
    candidate = get_candidate(session, candidate_id)
    mode = modes.current(session).mode
    refusal = decide_create(mode, settings.protected_refs, ref, candidate, fenced.epoch)
    if refusal is not None:
        raise refusal
    c = REGISTRATIONS.c
    for row in move(session, c.candidate_id == candidate.id, c.epoch == fenced.epoch,
                      c.status == "registered", status="void"):  # fmt: skip
        record(session, "voided", row, by, reason="replaced by a new registration")
    nonce = secrets.token_urlsafe(32)
    registration = Registration(
        repository=settings.repository_name, ref=ref, old=old, new=new,
        candidate_id=candidate.id, epoch=fenced.epoch, attempt=attempt,
        nonce_hash=hash_nonce(nonce), status="registered",
        expires_at_ms=expiry_ms(fenced, settings),
    )  # fmt: skip
    session.add(registration)
    session.flush()
    record(session, "created", registration, by, ref=ref, old=old, new=new, attempt=attempt,
           expires_at_ms=registration.expires_at_ms)  # fmt: skip
    return Issued(registration, nonce)


def get(session: Session, registration_id: int) -> Registration:
    found = session.get(Registration, registration_id)
    if found is None:
        raise NotFound(f"no registration with id {registration_id}")
    return found


def fail(
    session: Session,
    settings: Settings,
    fenced: LeaseState,
    registration_id: int,
    *,
    reason: str,
    by: str,
) -> Registration:
    """The holder gives up a registration of its epoch whose push was refused or did not
    land (registered or authorized → failed), before registering afresh."""
    c = REGISTRATIONS.c
    moved = move(session, c.id == registration_id, c.epoch == fenced.epoch,
                   c.status.in_(OPEN), status="failed")  # fmt: skip
    registration = get(session, registration_id)
    if not moved:
        raise TransitionRefused(
            f"registration {registration_id} is {registration.status} (epoch "
            f"{registration.epoch}); only a registered or authorized one of epoch "
            f"{fenced.epoch} can be failed"
        )
    record(session, "failed", moved[0], by, reason=reason)
    session.refresh(registration)
    return registration


def expire_due(session: Session, settings: Settings) -> int:
    """Registered ones past their expiry can no longer authorize anything: expired."""
    c = REGISTRATIONS.c
    moved = move(session, c.repository == settings.repository_name, c.status == "registered",
                   c.expires_at_ms <= now_ms(session, settings), status="expired")  # fmt: skip
    for row in moved:
        record(session, "expired", row)
    return len(moved)


# ---- the guard's side ----------------------------------------------------------------------


def by_nonce(session: Session, nonce: str) -> Registration | None:
    return session.scalar(select(Registration).where(Registration.nonce_hash == hash_nonce(nonce)))


def authorize(
    session: Session, settings: Settings, registration: Registration, repository: str,
    update: Update, by: str | None,
) -> bool:  # fmt: skip
    """Let `update` through on `registration`: registered → authorized, or an identical
    retry of an authorized one (git gives `old` as the ref's value, so a retry can only
    pass while the ref still equals old). Each is one conditional UPDATE that re-checks
    everything — the lease row's epoch and margin included — so a replay, a concurrent
    push or a takeover in between leaves it refused."""
    now = now_ms(session, settings)
    c, lease = REGISTRATIONS.c, cast(Table, Lease.__table__).c
    margin = round(settings.authorize_margin_seconds * 1000)
    lease_live = exists().where(
        lease.key == settings.lease_key,
        lease.epoch == c.epoch,
        lease.holder.is_not(None),
        lease.expires_at_ms - now >= margin,
    )
    same = and_(
        c.id == registration.id, c.repository == repository, c.ref == update.resolved_ref,
        c.old == update.old, c.new == update.new, c.expires_at_ms > now, lease_live,
    )  # fmt: skip
    moved = move(session, same, c.status == "registered", status="authorized")
    if moved:
        record(session, "authorized", moved[0], by, ref=update.resolved_ref, new=update.new)
        return True
    return bool(move(session, same, c.status == "authorized", status="authorized"))


def land(session: Session, repository: str, update: Update, by: str | None) -> list[int]:
    """A protected ref moved old → new: the authorized registration of that update landed
    (in_doubt too: its epoch or cutover ended while its push was on its way)."""
    c = REGISTRATIONS.c
    moved = move(session, c.repository == repository, c.ref == update.resolved_ref,
                   c.old == update.old, c.new == update.new, c.status.in_(UNRESOLVED),
                   status="landed")  # fmt: skip
    for row in moved:
        record(session, "landed", row, by, ref=row.ref, new=row.new, by_report=True)
    return [row.id for row in moved]


# ---- epochs and modes end --------------------------------------------------------------------


def retire_earlier_epochs(session: Session, repository: str, epoch: int) -> dict[str, int]:
    """On every lease grant (takeovers and force-releases included), in the grant's own
    transaction: unconsumed registrations of earlier epochs become void, authorized ones
    in_doubt — the new holder resolves those against the real ref before it dequeues."""
    c = REGISTRATIONS.c
    counts: dict[str, int] = {}
    for before, after in RETIRED.items():
        changed = move(session, c.repository == repository, c.status == before,
                         c.epoch < epoch, status=after)  # fmt: skip
        for row in changed:
            record(session, "voided" if after == "void" else "in_doubt", row, by_epoch=epoch)
        counts[after] = len(changed)
    return counts


def void_open(session: Session, repository: str, reason: str) -> int:
    """Leaving cutover: unconsumed registrations become void; authorized ones in_doubt — the
    hook may already have let their push through, so only the ref (its landing report, or the
    reconciler once the epoch is silent) can tell whether they landed. Returns how many it
    retired."""
    c = REGISTRATIONS.c
    voided = move(session, c.repository == repository, c.status == "registered", status="void")
    for row in voided:
        record(session, "voided", row, reason=reason)
    doubted = move(session, c.repository == repository, c.status == "authorized",
                   status="in_doubt")  # fmt: skip
    for row in doubted:
        record(session, "in_doubt", row, reason=reason)
    return len(voided) + len(doubted)
