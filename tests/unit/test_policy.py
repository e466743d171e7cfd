"""The push policy: one verdict per push, each rule named."""

from __future__ import annotations

from dataclasses import replace

import pytest

from integrator.messages import push_messages
from integrator.modes import Mode
from integrator.policy import PushFacts, Reason, RegistrationFacts, Update, decide

MAIN = "refs/heads/main"
A, B, ZERO = "a" * 40, "b" * 40, "0" * 40


def facts(mode: Mode, pusher: str | None = "alice", nonce: bool = False) -> PushFacts:
    return PushFacts(mode, (MAIN,), ("integrator-bot",), pusher, nonce, 15_000)


def update(ref: str = MAIN, old: str = A, new: str = B, ff: bool | None = True,
           first: bool | None = False, resolved: str | None = None) -> Update:  # fmt: skip
    return Update(ref, resolved or ref, old, new, ff, first)


GOOD_REGISTRATION = RegistrationFacts(matches=True, epoch_current=True, lease_left_ms=60_000)


def test_branch_only_pushes_always_pass_in_every_mode() -> None:
    """Unprotected refs are never the guard's business."""
    for mode in Mode:
        verdict = decide([update("refs/heads/feature")], facts(mode))
        assert verdict.allow and verdict.reason is Reason.unprotected


def test_shadow_allows_a_human_main_push_and_flags_it() -> None:
    """Shadow records, never blocks."""
    verdict = decide([update()], facts(Mode.shadow))
    assert verdict.allow
    assert verdict.updates[0].would_reject and verdict.updates[0].reason is Reason.not_registered


def test_cutover_refuses_a_human_main_push() -> None:
    """Cutover allows only registered updates."""
    verdict = decide([update()], facts(Mode.cutover))
    assert not verdict.allow and verdict.reason is Reason.not_registered


def test_off_allows_everything_but_still_knows_what_cutover_would_do() -> None:
    """off records push_allowed so that audit can explain every commit."""
    item = decide([update()], facts(Mode.off)).updates[0]
    assert item.allow and item.would_reject


def test_a_mixed_push_is_refused_whole_and_names_the_protected_ref() -> None:
    """git refuses every ref of a push when pre-receive fails: say so."""
    verdict = decide([update(), update("refs/heads/feature")], facts(Mode.cutover))
    assert not verdict.allow
    assert [u.allow for u in verdict.updates] == [False, True]
    lines = push_messages(verdict, Mode.cutover)
    assert lines[0].startswith("integrator: refused main:")
    assert "were not updated either (feature)" in lines[1]
    assert "integrator submit --slug" in lines[2]


def test_a_push_to_an_alias_of_main_counts_as_main() -> None:
    """Symbolic refs are resolved before matching protected refs."""
    verdict = decide([update("refs/heads/trunk", resolved=MAIN)], facts(Mode.cutover))
    assert not verdict.allow
    assert "an alias of main" in push_messages(verdict, Mode.cutover)[0]


@pytest.mark.parametrize(
    ("changed", "reason"),
    [
        ({"new": ZERO}, Reason.deletion),
        ({"ff": False}, Reason.not_fast_forward),
    ],
)
def test_delete_and_rewind_of_main_are_refused_even_with_a_registration(
    changed: dict[str, object], reason: Reason
) -> None:
    """Nobody deletes or rewinds main in cutover, not even the integrator."""
    proposed = update(first=True, **changed)  # type: ignore[arg-type]
    verdict = decide([proposed], facts(Mode.cutover, "integrator-bot", True), [GOOD_REGISTRATION])
    assert not verdict.allow and verdict.reason is reason


def test_the_integrator_identity_without_a_registration_is_refused() -> None:
    """Identity is attribution, not authority; the message says what is missing."""
    verdict = decide([update()], facts(Mode.cutover, pusher="integrator-bot"))
    assert verdict.reason is Reason.integrator_without_registration
    assert "registers every update" in push_messages(verdict, Mode.cutover)[-1]


def test_a_matching_registration_with_lease_margin_and_first_parent_is_allowed() -> None:
    """The one way through in cutover."""
    verdict = decide([update(first=True)], facts(Mode.cutover, nonce=True), [GOOD_REGISTRATION])
    assert verdict.allow and verdict.reason is Reason.registered


@pytest.mark.parametrize(
    ("registration", "proposed", "reason"),
    [
        (
            replace(GOOD_REGISTRATION, matches=False),
            update(first=True),
            Reason.registration_mismatch,
        ),
        (replace(GOOD_REGISTRATION, lease_left_ms=14_999), update(first=True), Reason.lease_margin),
        (replace(GOOD_REGISTRATION, epoch_current=False), update(first=True), Reason.lease_margin),
        (GOOD_REGISTRATION, update(first=False), Reason.first_parent),
        (GOOD_REGISTRATION, update(ff=None, first=True), Reason.cannot_verify),
        (GOOD_REGISTRATION, update(old=ZERO, first=True), Reason.creation),
    ],
)
def test_each_registration_condition_is_required(
    registration: RegistrationFacts, proposed: Update, reason: Reason
) -> None:
    """Match, epoch with margin, first parent, verifiable facts — each refused alone."""
    verdict = decide([proposed], facts(Mode.cutover, nonce=True), [registration])
    assert not verdict.allow and verdict.reason is reason


@pytest.mark.parametrize("mode", [Mode.shadow, Mode.off])
def test_a_registration_nonce_outside_cutover_is_refused(mode: Mode) -> None:
    """The integrator never moves main before cutover."""
    verdict = decide([update(first=True)], facts(mode, nonce=True), [GOOD_REGISTRATION])
    assert not verdict.allow and verdict.reason is Reason.registration_outside_cutover


def test_shadow_messages_warn_without_blocking() -> None:
    """The human learns what cutover will do, and that nothing was blocked."""
    lines = push_messages(decide([update()], facts(Mode.shadow)), Mode.shadow)
    assert lines[0].startswith("integrator (shadow): after cutover this update of main")
    assert "nothing was blocked" in lines[-1]
