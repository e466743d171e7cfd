"""The push policy at its edges: the authorize margin to the millisecond, pushes of several
protected refs, the reason each mode records, and the codes events and the API carry."""

from __future__ import annotations

import pytest

from integrator.policy import (
    Mode,
    PushFacts,
    Reason,
    RegistrationFacts,
    Update,
    UpdateVerdict,
    combine,
    decide,
)

MAIN, RELEASE, FEATURE = "refs/heads/main", "refs/heads/release", "refs/heads/feature"
A, B, ZERO = "a" * 40, "b" * 40, "0" * 40
MARGIN_MS = 15_000


def facts(mode: Mode, pusher: str | None = "bot", nonce: bool = True) -> PushFacts:
    return PushFacts(mode, (MAIN, RELEASE), ("bot",), pusher, nonce, MARGIN_MS)


def update(ref: str = MAIN, old: str = A, new: str = B, *, ff: bool | None = True,
           first: bool | None = True) -> Update:  # fmt: skip
    return Update(ref, ref, old, new, ff, first)


def registered(lease_left_ms: int = 60_000, **changed: bool) -> RegistrationFacts:
    values = {"matches": True, "epoch_current": True, **changed}
    return RegistrationFacts(lease_left_ms=lease_left_ms, **values)


def test_exactly_the_margin_left_on_the_lease_is_enough() -> None:
    verdict = decide([update()], facts(Mode.cutover), [registered(MARGIN_MS)])
    assert verdict.allow and verdict.reason is Reason.registered


def test_one_ms_under_the_margin_is_refused_for_the_lease() -> None:
    verdict = decide([update()], facts(Mode.cutover), [registered(MARGIN_MS - 1)])
    assert not verdict.allow and verdict.reason is Reason.lease_margin


def test_a_push_of_two_protected_refs_needs_both_registered() -> None:
    """The push takes the first refused update's reason; the allowed one stays allowed."""
    updates = [update(MAIN), update(RELEASE)]
    verdict = decide(updates, facts(Mode.cutover), [registered(), None])
    assert not verdict.allow and verdict.reason is Reason.integrator_without_registration
    assert [(v.protected, v.allow) for v in verdict.updates] == [(True, True), (True, False)]
    assert verdict.refused == (verdict.updates[1],)
    both = decide(updates, facts(Mode.cutover), [registered(), registered()])
    assert both.allow and both.reason is Reason.registered and both.refused == ()


def test_an_allowed_push_takes_its_first_protected_updates_reason() -> None:
    verdict = decide([update(FEATURE), update(MAIN)], facts(Mode.cutover), [None, registered()])
    assert verdict.allow and verdict.reason is Reason.registered
    assert [v.reason for v in verdict.updates] == [Reason.unprotected, Reason.registered]


def test_a_push_of_unprotected_refs_only_is_unprotected() -> None:
    assert combine([]).reason is Reason.unprotected
    verdict = decide([update(FEATURE, ff=False)], facts(Mode.cutover))
    assert verdict.allow and verdict.reason is Reason.unprotected
    assert not verdict.updates[0].protected and not verdict.updates[0].would_reject


def test_off_records_what_cutover_would_refuse_and_mode_off_otherwise() -> None:
    """off allows everything; its reason is cutover's refusal, or mode_off when there is none."""
    human = decide([update()], facts(Mode.off, pusher="alice", nonce=False)).updates[0]
    assert (human.allow, human.would_reject, human.reason) == (True, True, Reason.not_registered)
    fine = decide([update()], facts(Mode.off, nonce=False), [registered()]).updates[0]
    assert (fine.allow, fine.would_reject, fine.reason) == (True, False, Reason.mode_off)


def test_shadow_allows_and_records_cutovers_verdict() -> None:
    rewind = decide([update(ff=False)], facts(Mode.shadow, nonce=False), [registered()])
    item = rewind.updates[0]
    assert (rewind.allow, item.would_reject, item.reason) == (True, True, Reason.not_fast_forward)
    assert item.protected
    fine = decide([update()], facts(Mode.shadow, nonce=False), [registered()]).updates[0]
    assert (fine.allow, fine.would_reject, fine.reason) == (True, False, Reason.registered)


def test_a_registration_outside_cutover_would_be_rejected_and_is_refused() -> None:
    item = decide([update()], facts(Mode.shadow), [registered()]).updates[0]
    assert (item.protected, item.allow, item.would_reject) == (True, False, True)


def test_a_person_without_a_name_is_simply_not_registered() -> None:
    verdict = decide([update()], facts(Mode.cutover, pusher=None, nonce=False))
    assert verdict.reason is Reason.not_registered


@pytest.mark.parametrize(
    ("proposed", "reason"),
    [
        (update(first=None), Reason.cannot_verify),
        (update(ff=None), Reason.cannot_verify),
        (update(old=ZERO), Reason.creation),
        (update(new=ZERO), Reason.deletion),
    ],
)
def test_what_cannot_be_checked_or_creates_or_deletes_is_refused(
    proposed: Update, reason: Reason
) -> None:
    verdict = decide([proposed], facts(Mode.cutover), [registered()])
    assert not verdict.allow and verdict.reason is reason


def test_creation_and_deletion_are_read_from_the_zero_sha() -> None:
    assert update(old=ZERO).creation and not update(old=ZERO).deletion
    assert update(new=ZERO).deletion and not update(new=ZERO).creation


def test_an_update_verdict_keeps_its_update() -> None:
    proposed = update()
    verdict: UpdateVerdict = decide([proposed], facts(Mode.cutover), [registered()]).updates[0]
    assert verdict.update is proposed


def test_the_mode_and_reason_codes_are_the_words_events_and_the_api_carry() -> None:
    assert [m.value for m in Mode] == ["off", "shadow", "cutover"]
    assert [r.value for r in Reason] == [
        "unprotected", "registered", "not_registered", "integrator_without_registration",
        "registration_mismatch", "lease_margin", "deletion", "creation", "not_fast_forward",
        "first_parent", "cannot_verify", "registration_outside_cutover", "mode_off",
        "service_unavailable",
    ]  # fmt: skip


def test_an_allowed_push_of_two_protected_refs_takes_the_first_ones_reason() -> None:
    """off lets both through; the push is recorded with the first protected update's reason."""
    verdict = decide(
        [update(MAIN), update(RELEASE)], facts(Mode.off, nonce=False), [None, registered()]
    )
    assert verdict.allow
    assert [v.reason for v in verdict.updates] == [
        Reason.integrator_without_registration,
        Reason.mode_off,
    ]
    assert verdict.reason is Reason.integrator_without_registration


def test_a_push_refused_twice_is_refused_for_the_first_refusal() -> None:
    updates = [update(MAIN, ff=False), update(RELEASE, new=ZERO)]
    verdict = decide(updates, facts(Mode.cutover), [registered(), registered()])
    assert [v.reason for v in verdict.refused] == [Reason.not_fast_forward, Reason.deletion]
    assert verdict.reason is Reason.not_fast_forward


def test_one_registration_fact_per_update_or_it_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="zip"):
        decide([update(MAIN), update(RELEASE)], facts(Mode.cutover), [registered()])
