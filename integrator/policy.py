"""The push policy: pure functions from facts to one verdict per push.

git hands pre-receive every update of a push at once and refuses all of them
when it fails, so the policy decides each update and then the push as a whole
(docs/decisions/0001-one-verdict-per-push.md). Each rule is one small
function; the service, the evidence checker and the drill all ask the same
`decide`. Identity is attribution, never authority: only a matching
registration lets the integrator through in cutover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from integrator.gitops import is_zero_sha


class Mode(StrEnum):
    """What the pre-receive hook does with updates of protected refs."""

    #: Allow, recorded as push_allowed.
    off = "off"
    #: Allow; record push_would_reject for what cutover would refuse.
    shadow = "shadow"
    #: Allow only the integrator's registered updates; refuse the rest.
    cutover = "cutover"


class Reason(StrEnum):
    """Why an update got its verdict; the text lives in `integrator.messages`."""

    unprotected = "unprotected"
    registered = "registered"
    not_registered = "not_registered"
    integrator_without_registration = "integrator_without_registration"
    registration_mismatch = "registration_mismatch"
    lease_margin = "lease_margin"
    deletion = "deletion"
    creation = "creation"
    not_fast_forward = "not_fast_forward"
    first_parent = "first_parent"
    cannot_verify = "cannot_verify"
    registration_outside_cutover = "registration_outside_cutover"
    mode_off = "mode_off"
    #: Decided by the hook alone while the service was unreachable.
    service_unavailable = "service_unavailable"


@dataclass(frozen=True)
class Update:
    """One ref update as the hook saw it (facts computed in its quarantine)."""

    ref: str
    resolved_ref: str
    old: str
    new: str
    fast_forward: bool | None
    first_parent: bool | None

    @property
    def deletion(self) -> bool:
        return is_zero_sha(self.new)

    @property
    def creation(self) -> bool:
        return is_zero_sha(self.old)


@dataclass(frozen=True)
class RegistrationFacts:
    """What the registration store says about one update carrying a nonce."""

    matches: bool
    epoch_current: bool
    lease_left_ms: int


@dataclass(frozen=True)
class PushFacts:
    mode: Mode
    protected_refs: Sequence[str]
    identities: Sequence[str]
    pusher: str | None
    has_nonce: bool
    authorize_margin_ms: int


@dataclass(frozen=True)
class UpdateVerdict:
    update: Update
    protected: bool
    allow: bool
    would_reject: bool
    reason: Reason


@dataclass(frozen=True)
class PushVerdict:
    allow: bool
    reason: Reason
    updates: tuple[UpdateVerdict, ...]

    @property
    def refused(self) -> tuple[UpdateVerdict, ...]:
        return tuple(u for u in self.updates if not u.allow)


def _always_refused(update: Update) -> Reason | None:
    """Deleting or rewinding a protected ref: refused to everyone in cutover."""
    if update.deletion:
        return Reason.deletion
    if update.fast_forward is False:
        return Reason.not_fast_forward
    return None


def _registered(
    update: Update, facts: PushFacts, registration: RegistrationFacts | None
) -> Reason | None:
    """What cutover would decide: None when a registration authorizes the update."""
    if registration is None:
        if facts.pusher is not None and facts.pusher in facts.identities:
            return Reason.integrator_without_registration
        return Reason.not_registered
    if update.creation:
        return Reason.creation
    if update.fast_forward is None or update.first_parent is None:
        return Reason.cannot_verify
    if not update.first_parent:
        return Reason.first_parent
    if not registration.matches:
        return Reason.registration_mismatch
    if not registration.epoch_current or registration.lease_left_ms < facts.authorize_margin_ms:
        return Reason.lease_margin
    return None


def decide_update(
    update: Update, facts: PushFacts, registration: RegistrationFacts | None
) -> UpdateVerdict:
    if update.resolved_ref not in facts.protected_refs:
        return UpdateVerdict(update, False, True, False, Reason.unprotected)
    refusal = _always_refused(update) or _registered(update, facts, registration)
    would_reject = refusal is not None
    if facts.has_nonce and facts.mode is not Mode.cutover:
        return UpdateVerdict(update, True, False, True, Reason.registration_outside_cutover)
    if facts.mode is Mode.off:
        return UpdateVerdict(update, True, True, would_reject, refusal or Reason.mode_off)
    if facts.mode is Mode.cutover:
        return UpdateVerdict(
            update, True, not would_reject, would_reject, refusal or Reason.registered
        )
    # shadow records what cutover would refuse and never blocks a human
    return UpdateVerdict(update, True, True, would_reject, refusal or Reason.registered)


def decide(
    updates: Sequence[Update],
    facts: PushFacts,
    registrations: Sequence[RegistrationFacts | None] | None = None,
) -> PushVerdict:
    """One verdict per update, and the push's: refused if any update is."""
    found = list(registrations) if registrations is not None else [None] * len(updates)
    return combine([decide_update(u, facts, r) for u, r in zip(updates, found, strict=True)])


def combine(updates: Sequence[UpdateVerdict]) -> PushVerdict:
    """The push's verdict from its updates': refused if any update is."""
    verdicts = tuple(updates)
    refused = [v for v in verdicts if not v.allow]
    reason = refused[0].reason if refused else _push_reason(verdicts)
    return PushVerdict(allow=not refused, reason=reason, updates=verdicts)


def _push_reason(verdicts: Sequence[UpdateVerdict]) -> Reason:
    protected = [v for v in verdicts if v.protected]
    return protected[0].reason if protected else Reason.unprotected
