"""The registration rules at their edges: how long a registration lives, who may create one,
and what a nonce's registration tells the policy at the instants its lease and it expire."""

from __future__ import annotations

import pytest

from integrator.errors import NotInCutover, TransitionRefused
from integrator.lease import LeaseState
from integrator.models import Candidate, Registration
from integrator.modes import Mode
from integrator.policy import RegistrationFacts, Update
from integrator.registrations import decide_create, decide_facts, decide_reconciled, expiry_ms
from integrator.settings import get_settings

MAIN, RELEASE = "refs/heads/main", "refs/heads/release"
OLD, NEW = "a" * 40, "b" * 40
NOW = 1_000_000
UPDATE = Update(MAIN, MAIN, OLD, NEW, True, True)


def lease(expires_at_ms: int | None, epoch: int = 3, holder: str | None = "bot") -> LeaseState:
    return LeaseState("k", "canonical", holder, epoch, NOW - 1, NOW - 1, expires_at_ms, NOW)


def registration(**overrides: object) -> Registration:
    values: dict[str, object] = {"repository": "canonical", "ref": MAIN, "old": OLD, "new": NEW,
                                 "epoch": 3, "status": "registered", "attempt": "a1",
                                 "expires_at_ms": NOW + 1}  # fmt: skip
    return Registration(**{**values, **overrides})


def facts(seen: Registration | None, state: LeaseState) -> RegistrationFacts:
    return decide_facts(seen, "canonical", UPDATE, state)


@pytest.mark.parametrize(
    ("lease_expires_at", "expected"),
    [(NOW + 300_000, NOW + 300_000), (NOW + 300_001, NOW + 300_000), (NOW + 5, NOW + 5)],
)
def test_a_registration_lives_until_the_earlier_of_the_lease_expiry_and_300_s(
    lease_expires_at: int, expected: int
) -> None:
    settings = get_settings(registration_ttl_seconds=300.0)
    assert expiry_ms(lease(lease_expires_at), settings) == expected


def test_without_a_lease_expiry_a_registration_expires_at_once() -> None:
    assert expiry_ms(lease(None), get_settings(registration_ttl_seconds=300.0)) == NOW


def candidate(status: str = "in_progress", epoch: int | None = 3) -> Candidate:
    return Candidate(id=12, status=status, epoch=epoch)


def test_the_in_progress_handout_of_the_epoch_may_register_a_protected_ref() -> None:
    assert decide_create(Mode.cutover, [MAIN, RELEASE], RELEASE, candidate(), 3) is None


@pytest.mark.parametrize("mode", [Mode.shadow, Mode.off])
def test_registrations_are_created_only_in_cutover(mode: Mode) -> None:
    refusal = decide_create(mode, [MAIN], MAIN, candidate(), 3)
    assert isinstance(refusal, NotInCutover)
    assert str(refusal) == f"the service is in {mode}: registrations are created only in cutover"


def test_an_unprotected_ref_is_pushed_without_a_registration() -> None:
    refusal = decide_create(Mode.cutover, [MAIN, RELEASE], "refs/heads/x", candidate(), 3)
    assert isinstance(refusal, TransitionRefused)
    assert str(refusal) == (
        "refs/heads/x is not a protected ref (refs/heads/main, refs/heads/release): push it "
        "without a registration"
    )


@pytest.mark.parametrize(("status", "epoch"), [("queued", 3), ("in_progress", 2)])
def test_only_the_in_progress_handout_of_this_epoch_is_registered(status: str, epoch: int) -> None:
    refusal = decide_create(Mode.cutover, [MAIN], MAIN, candidate(status, epoch), 3)
    assert isinstance(refusal, TransitionRefused)
    assert str(refusal) == (
        f"candidate 12 is {status} (epoch {epoch}); only the in_progress handout of epoch 3 "
        "can be registered"
    )


def test_the_lease_left_is_counted_to_the_millisecond() -> None:
    assert facts(registration(), lease(NOW + 15_000)) == RegistrationFacts(True, True, 15_000)
    assert facts(None, lease(NOW + 7)) == RegistrationFacts(False, True, 7)
    assert facts(None, lease(None)) == RegistrationFacts(False, False, 0)


def test_at_its_lease_expiry_instant_the_epoch_is_no_longer_current() -> None:
    assert facts(registration(), lease(NOW)) == RegistrationFacts(True, False, 0)
    assert facts(registration(), lease(NOW + 1)).epoch_current


def test_a_registration_is_usable_until_its_own_expiry_instant() -> None:
    assert facts(registration(expires_at_ms=NOW + 1), lease(NOW + 60_000)).matches
    assert not facts(registration(expires_at_ms=NOW), lease(NOW + 60_000)).matches


def test_a_registration_of_an_ended_epoch_still_names_its_update() -> None:
    """So the refusal says the lease moved on, not that the nonce is wrong."""
    spent = registration(epoch=2, status="landed", expires_at_ms=NOW)
    assert facts(spent, lease(NOW + 60_000)) == RegistrationFacts(True, False, 60_000)
    other = registration(epoch=2, new="c" * 40)
    assert not facts(other, lease(NOW + 60_000)).matches


@pytest.mark.parametrize(
    "changed", [{"repository": "other"}, {"ref": RELEASE}, {"old": NEW}, {"new": OLD}]
)
def test_every_part_of_the_update_must_match(changed: dict[str, str]) -> None:
    assert not facts(registration(**changed), lease(NOW + 60_000)).matches


def test_a_reconciled_registration_lands_only_if_main_explains_its_new() -> None:
    assert decide_reconciled(registration(), {NEW, "c" * 40}) == "landed"
    assert decide_reconciled(registration(), set()) == "failed"
