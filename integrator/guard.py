"""The server-side guard's service half: decide a push, record every update, report pushes.

The hook computes the facts only it can see (quarantined objects); the policy
decides; this module records each update with mode, what cutover would have
decided, what was decided, reason, pusher and identity source, and keeps the
proof that each repository's hook is really called.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Executable, Table, bindparam, or_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from integrator import events, lease, modes, registrations
from integrator.admission import CanonicalRepo, on_event
from integrator.errors import IdempotencyCollision, InvalidInput
from integrator.messages import push_messages
from integrator.models import HookInstance, Registration, utcnow
from integrator.policy import (
    PushFacts,
    PushVerdict,
    Reason,
    Update,
    UpdateVerdict,
    combine,
    decide,
)
from integrator.refnames import BRANCH_MAX_LENGTH
from integrator.settings import Settings

#: How stale `hook_instances.last_seen_at` may get before a push rewrites it.
LAST_SEEN_REFRESH = timedelta(seconds=5)


@dataclass(frozen=True)
class PushRequest:
    """What pre-receive sends once per push."""

    repository: str
    hook_instance: str
    hook_version: str | None
    pusher: str | None
    identity_source: str
    registration_nonce: str | None
    updates: tuple[Update, ...]
    #: Unprotected updates the hook counted but did not send.
    updates_left_out: int = 0
    #: The host's other variables about the pusher (GL_ID, GITHUB_VIA): attribution only.
    identity_detail: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class PushAnswer:
    verdict: PushVerdict
    mode: modes.ModeView
    protected_refs: tuple[str, ...]
    messages: list[str]


def push_facts(settings: Settings, mode: modes.Mode, pusher: str | None, nonce: bool) -> PushFacts:
    return PushFacts(
        mode=mode,
        protected_refs=tuple(settings.protected_refs),
        identities=tuple(settings.identities),
        pusher=pusher,
        has_nonce=nonce,
        authorize_margin_ms=int(settings.authorize_margin_seconds * 1000),
    )


def check_push(session: Session, settings: Settings, request: PushRequest) -> PushAnswer:
    """Decide one push and record every update in the caller's transaction."""
    started = time.perf_counter()
    mode = modes.current(session)
    facts = push_facts(settings, mode.mode, request.pusher, request.registration_nonce is not None)
    registration = None
    if request.registration_nonce is not None and mode.mode is modes.Mode.cutover:
        registration = registrations.by_nonce(session, request.registration_nonce)
    verdict = _decide_registered(session, settings, request, facts, registration)
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    push_id = uuid.uuid4().hex
    events.record_rows(
        session,
        [
            push_record(
                request,
                item,
                mode=mode.mode,
                push_id=push_id,
                latency_ms=latency_ms,
                decided_locally=False,
            )
            for item in verdict.updates
        ],
    )
    touch_hook(session, request, mode)
    return PushAnswer(
        verdict, mode, tuple(settings.protected_refs), push_messages(verdict, mode.mode)
    )


def _decide_registered(
    session: Session,
    settings: Settings,
    request: PushRequest,
    facts: PushFacts,
    registration: Registration | None,
) -> PushVerdict:
    """The policy's verdict; in cutover, a protected update it lets through on the push's
    registration is authorized in this transaction, or refused when that conditional
    statement finds the registration no longer usable (spent, replaced, epoch ended)."""
    if request.registration_nonce is None or facts.mode is not modes.Mode.cutover:
        return decide(request.updates, facts)
    state = lease.status(session, settings)
    found = [
        registrations.decide_facts(registration, request.repository, u, state)
        for u in request.updates
    ]
    verdicts = []
    for item in decide(request.updates, facts, found).updates:
        if item.protected and item.allow:
            authorized = registration is not None and registrations.authorize(
                session, settings, registration, request.repository, item.update, request.pusher
            )
            if not authorized:
                item = replace(item, allow=False, would_reject=True,
                               reason=Reason.registration_mismatch)  # fmt: skip
        verdicts.append(item)
    return combine(verdicts)


def event_type_of(item: UpdateVerdict, mode: modes.Mode) -> str:
    if not item.allow:
        return "push_rejected"
    if item.would_reject and mode is modes.Mode.shadow:
        return "push_would_reject"
    return "push_allowed"


def push_record(
    request: PushRequest,
    item: UpdateVerdict,
    *,
    mode: modes.Mode,
    push_id: str,
    latency_ms: float | None,
    decided_locally: bool,
    bypass: bool = False,
    natural_key: str | None = None,
) -> dict[str, Any]:
    """The event row of one update, for `events.record_rows`."""
    update = item.update
    fields = {
        "push_id": push_id,
        "hook_instance": request.hook_instance,
        "ref": update.ref,
        "resolved_ref": update.resolved_ref,
        "old": update.old,
        "new": update.new,
        "fast_forward": update.fast_forward,
        "first_parent": update.first_parent,
        "protected": item.protected,
        "mode": mode.value,
        "would_reject": item.would_reject,
        "allowed": item.allow,
        "reason_code": item.reason.value,
        "pusher": request.pusher,
        "identity_source": request.identity_source,
        "identity_detail": request.identity_detail,
        "updates_left_out": request.updates_left_out,
        "latency_ms": latency_ms,
        "decided_locally": decided_locally,
        "bypass": bypass,
    }
    return {
        "type": event_type_of(item, mode),
        "repository": request.repository,
        "natural_key": natural_key or uuid.uuid4().hex,
        "content_hash": events.content_hash(fields),
        "slug": None,
        "branch": indexed_branch(update.resolved_ref),
        "sha": None if update.deletion else update.new,
        "fields": fields,
        "actor": request.pusher,
        "recorded_at": utcnow(),
    }


def indexed_branch(ref: str) -> str | None:
    """The branch column of a push record; a name git accepts but the column cannot hold
    is left out of it (the full ref stays in the record's fields)."""
    branch = ref.removeprefix("refs/heads/")
    return branch if len(branch) <= BRANCH_MAX_LENGTH else None


def touch_hook(session: Session, request: PushRequest, mode: modes.ModeView) -> None:
    """Last seen, and the mode this hook instance was last told (one upsert)."""
    now = utcnow()
    session.execute(
        _touch_statement(session.get_bind().dialect.name),
        {
            "repository": request.repository,
            "instance": request.hook_instance,
            "hook_version": request.hook_version,
            "last_seen_at": now,
            "mode_seen": mode.mode.value,
            "mode_version_seen": mode.version,
            "stale_before": now - LAST_SEEN_REFRESH,
        },
    )


_TOUCHED = ("hook_version", "last_seen_at", "mode_seen", "mode_version_seen")


@functools.cache
def _touch_statement(dialect: str) -> Executable:
    """The hook's upsert, built once per dialect; each push binds its values."""
    table = cast(Table, HookInstance.__table__)
    insert_into = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert_into(table).values(
        {name: bindparam(name) for name in ("repository", "instance", *_TOUCHED)}
    )
    # Rewrite the row only when it says something new: a changed mode or version, or a
    # last-seen older than the refresh interval (busy repositories push many times a second).
    stale = or_(
        table.c.mode_version_seen != statement.excluded.mode_version_seen,
        table.c.mode_seen != statement.excluded.mode_seen,
        table.c.last_seen_at < bindparam("stale_before"),
    )
    return statement.on_conflict_do_update(
        index_elements=["repository", "instance"],
        set_={name: statement.excluded[name] for name in _TOUCHED},
        where=stale,
    )


def record_spooled(
    session: Session, settings: Settings, item: dict[str, Any], request: PushRequest
) -> bool:
    """A verdict the hook gave without the service; stored once, keyed by its content.

    The hook could not verify registrations, so every protected update it let
    through is recorded as one cutover would have refused; a break-glass use is
    also a `push_bypass` event.
    """
    digest = hashlib.sha256(json.dumps(item, sort_keys=True).encode()).hexdigest()
    key = f"spool:{digest}"
    if events.key_exists(session, key):
        return False
    mode = _mode_of(item.get("mode"))
    allow = bool(item.get("allow"))
    bypass = bool(item.get("bypass"))
    rows = []
    for n, update in enumerate(request.updates):
        protected = update.resolved_ref in settings.protected_refs
        verdict = UpdateVerdict(
            update,
            protected,
            allow or not protected,
            protected,
            Reason.service_unavailable if protected else Reason.unprotected,
        )
        rows.append(
            push_record(
                request,
                verdict,
                mode=mode,
                push_id=f"spool-{digest[:24]}",
                latency_ms=None,
                decided_locally=True,
                bypass=bypass and protected,
                natural_key=key if n == 0 else f"{key}:{n}",
            )
        )
    events.record_rows(session, rows)
    if bypass:
        events.record_system_event(
            session,
            type="push_bypass",
            repository=request.repository,
            fields={
                "hook_instance": request.hook_instance,
                "decided_at": item.get("decided_at"),
                "refs": [u.resolved_ref for u in request.updates],
            },
            natural_key=f"bypass:{digest}",
            actor=request.pusher,
        )
    return True


def _mode_of(raw: Any) -> modes.Mode:
    try:
        return modes.Mode(str(raw))
    except ValueError:
        return modes.DEFAULT_MODE


@dataclass(frozen=True)
class Skipped:
    """An update git accepted that our rules refuse: reported back, never recorded."""

    ref: str
    field: str
    rule: str
    message: str


@dataclass(frozen=True)
class Reported:
    recorded: int
    duplicates: int
    skipped: list[Skipped]


def report_pushes(
    session: Session,
    repo: CanonicalRepo,
    request: PushRequest,
    *,
    protected_refs: Sequence[str],
    actor: str,
) -> Reported:
    """post-receive: a `branch_pushed` per moved branch, keyed `<repo>:<ref>:<old>:<new>`;
    a protected ref that moved old → new lands the authorized registration of that update.

    Each update stands alone: one branch our rules refuse is skipped with its reason,
    the others are recorded.
    """
    recorded = duplicates = 0
    skipped: list[Skipped] = []
    pushed_at = utcnow().isoformat()
    for update in request.updates:
        if update.resolved_ref in protected_refs and not update.deletion:
            registrations.land(session, request.repository, update, actor)
        if update.deletion or not update.resolved_ref.startswith("refs/heads/"):
            continue
        try:
            fields = events.validate_fields(
                "branch_pushed",
                {
                    "branch": update.resolved_ref.removeprefix("refs/heads/"),
                    "sha": update.new,
                    "remote": request.repository,
                    "pushed_at": pushed_at,
                    "pusher": request.pusher or "unknown",
                },
            )
        except InvalidInput as exc:
            skipped += [
                Skipped(update.ref, d.field.removeprefix("fields."), d.rule, d.message)
                for d in exc.details
            ]
            continue
        key = f"{request.repository}:{update.resolved_ref}:{update.old}:{update.new}"
        if events.find(session, "branch_pushed", events.natural_key("branch_pushed", fields, key)):
            duplicates += 1  # a retried report: its pushed_at differs, the push does not
            continue
        try:
            appended = events.append(
                session,
                type_name="branch_pushed",
                fields=fields,
                repository=request.repository,
                idempotency_key=key,
                actor=actor,
            )
        except IdempotencyCollision:
            # a concurrent report of the same push (post-receive retrying while its first
            # report is in flight, or GitHub's webhook) committed first: only pushed_at differs
            duplicates += 1
            continue
        if appended.duplicate:
            duplicates += 1
            continue
        recorded += 1
        on_event(session, repo, appended.event, actor)
    return Reported(recorded, duplicates, skipped)
