"""The registration rules a push check and the evidence share: what a nonce's registration
says about one update, and how an earlier epoch's registration is resolved."""

from __future__ import annotations

from integrator.lease import LeaseState
from integrator.models import Registration
from integrator.modes import Mode
from integrator.policy import PushFacts, Reason, Update, decide
from integrator.registrations import decide_facts, decide_reconciled

MAIN, RELEASE = "refs/heads/main", "refs/heads/release"
OLD, NEW = "a" * 40, "b" * 40
NOW = 1_000_000


def lease(epoch: int = 3, left_ms: int = 60_000, holder: str | None = "bot") -> LeaseState:
    return LeaseState("k", "canonical", holder, epoch, NOW - 1, NOW - 1, NOW + left_ms, NOW)


def registration(**overrides: object) -> Registration:
    values: dict[str, object] = {"repository": "canonical", "ref": MAIN, "old": OLD, "new": NEW,
                                 "epoch": 3, "status": "registered", "attempt": "a1",
                                 "expires_at_ms": NOW + 30_000}  # fmt: skip
    return Registration(**{**values, **overrides})


def reason(seen: Registration | None, state: LeaseState, ref: str = MAIN) -> Reason:
    update = Update(ref, ref, OLD, NEW, True, True)
    facts = PushFacts(Mode.cutover, (MAIN, RELEASE), ("bot",), "bot", True, 15_000)
    found = decide_facts(seen, "canonical", update, state)
    return decide([update], facts, [found]).reason


def test_a_registered_or_authorized_registration_of_the_live_epoch_allows_its_update() -> None:
    """registered: the first push; authorized: its identical retry."""
    assert reason(registration(), lease()) is Reason.registered
    assert reason(registration(status="authorized"), lease()) is Reason.registered


def test_a_spent_expired_or_foreign_registration_does_not_match() -> None:
    """Landed, failed, void or expired ones, another ref, or no registration at all."""
    for status in ("landed", "failed", "void", "expired"):
        assert reason(registration(status=status), lease()) is Reason.registration_mismatch
    assert reason(registration(expires_at_ms=NOW), lease()) is Reason.registration_mismatch
    assert reason(registration(), lease(), ref=RELEASE) is Reason.registration_mismatch
    assert reason(None, lease()) is Reason.registration_mismatch


def test_an_ended_epoch_or_too_little_lease_left_is_refused_for_the_lease() -> None:
    """Whatever became of it, a registration of an earlier epoch is refused as such."""
    assert reason(registration(epoch=2, status="void"), lease()) is Reason.lease_margin
    assert reason(registration(), lease(left_ms=14_999)) is Reason.lease_margin
    assert reason(registration(), lease(left_ms=-1)) is Reason.lease_margin


def test_reconciliation_lands_only_what_main_shows_explained() -> None:
    """Its new among the commits its (new, attempt) explains: landed; otherwise failed."""
    assert decide_reconciled(registration(), {NEW}) == "landed"
    assert decide_reconciled(registration(), {"c" * 40}) == "failed"
