"""The fault test's history checker on hand-made histories: each rule catches its violation."""

from __future__ import annotations

from collections import Counter

from tests.faults.checker import (
    CandidateRow,
    History,
    LeaseEvent,
    LoadRequest,
    MainCommit,
    PushAttempt,
    RecordedBypass,
    RegistrationRow,
    check,
)
from tests.faults.summary import summary

T0 = "2026-11-26T12:00:00+00:00"
A = "a" * 40
B = "b" * 40
C = "c" * 40
D = "d" * 40
TRAILERS = {"Integrator-Candidate": "7", "Integrator-Attempt": "att"}
REFUSED = ("integrator: refused main: it is updated only by the integrator",)


def grant(seq: int, epoch: int, at: str, kind: str = "lease_acquired", **extra: str) -> LeaseEvent:
    fields = {"epoch": epoch, "holder": f"h{epoch}", "acquired_at": at, **extra}
    return LeaseEvent(seq, kind, fields)


def a_good_history() -> History:
    """Two epochs taken over after expiry; a human push in shadow; one registered landing."""
    return History(
        lease_events=[
            grant(1, 1, "2026-11-26T12:00:00+00:00"),
            grant(
                2,
                2,
                "2026-11-26T12:00:05+00:00",
                "lease_taken_over",
                previous_expires_at="2026-11-26T12:00:04+00:00",
            ),
        ],
        registrations=[RegistrationRow(1, 7, 2, "att", B, "landed")],
        candidates=[CandidateRow(7, "s", "feat/s", C, "integrated", 1)],
        transitions=[(7, "queued"), (7, "in_progress"), (7, "integrated")],
        mainline=[MainCommit(A, ("0" * 40,)), MainCommit(B, (A, C), TRAILERS)],
        on_main={A, B, C},
        pushes=[PushAttempt("alice", "refs/heads/main", A, 0.0, 1.0, 0, "shadow")],
        ready={7},
        acknowledged={"k1"},
        stored={"k1", "k2"},
        check_latencies=[0.01, 0.02],
    )


def rules_of(history: History) -> set[str]:
    return {violation.rule for violation in check(history)}


def test_a_good_history_passes_and_is_summarised() -> None:
    history = a_good_history()
    assert check(history) == []
    text = summary(history, Counter({"kill_worker": 2}), [])
    assert "kill_worker" in text and "FAILED" not in text


def test_overlapping_lease_holders_are_caught() -> None:
    history = a_good_history()
    history.lease_events[1] = grant(2, 2, "2026-11-26T12:00:03+00:00", "lease_taken_over",
                                    previous_expires_at="2026-11-26T12:00:04+00:00")  # fmt: skip
    assert rules_of(history) == {"lease"}


def test_a_release_after_the_next_grant_and_a_skipped_epoch_are_caught() -> None:
    history = a_good_history()
    history.lease_events = [
        grant(1, 1, T0),
        LeaseEvent(2, "lease_released", {"epoch": 1, "released_at": "2026-11-26T12:00:09+00:00"}),
        grant(3, 3, "2026-11-26T12:00:05+00:00"),
    ]
    texts = [str(v) for v in check(history)]
    assert any("followed by epoch 3" in t for t in texts)
    assert any("overlaps" in t for t in texts)


def test_an_unexplained_commit_on_main_is_caught() -> None:
    history = a_good_history()
    history.registrations = [RegistrationRow(1, 7, 2, "att", B, "authorized")]
    assert "main" in rules_of(history)


def test_a_human_push_that_moved_main_in_cutover_is_caught() -> None:
    history = a_good_history()
    history.pushes = [PushAttempt("alice", "refs/heads/main", A, 0.0, 1.0, 0, "cutover")]
    assert rules_of(history) == {"main"}


def test_a_landed_registration_missing_from_main_is_caught() -> None:
    history = a_good_history()
    history.registrations.append(RegistrationRow(2, 8, 2, "att2", "d" * 40, "landed"))
    assert rules_of(history) == {"main"}


def test_a_candidate_integrated_twice_is_caught() -> None:
    history = a_good_history()
    history.transitions.append((7, "integrated"))
    assert rules_of(history) == {"twice"}


def test_content_merged_twice_on_main_is_caught() -> None:
    history = a_good_history()
    second = MainCommit("e" * 40, (B, C), {**TRAILERS, "Integrator-Attempt": "att2"})
    history.mainline.append(second)
    history.registrations.append(RegistrationRow(2, 7, 2, "att2", "e" * 40, "landed"))
    found = [str(v) for v in check(history)]
    assert any("trailered" in t for t in found) and any("same sha" in t for t in found)
    assert any("landed registrations: 7 x2" in t for t in found)


def test_a_ready_candidate_left_waiting_or_blocked_without_evidence_is_caught() -> None:
    history = a_good_history()
    history.candidates = [CandidateRow(7, "s", "feat/s", C, "waiting", 1)]
    assert rules_of(history) == {"ready"}
    history.candidates = [CandidateRow(7, "s", "feat/s", C, "blocked", 1)]
    assert rules_of(history) == {"ready"}
    history.blocked_evidence = {("s", "feat/s", C)}
    assert check(history) == []
    history.candidates = [CandidateRow(7, "s", "feat/s", C, "queued", None)]
    assert rules_of(history) == {"ready"}
    history.candidates = [CandidateRow(7, "s", "feat/s", C, "queued", 3)]
    assert check(history) == []


def test_an_integrated_candidate_whose_sha_is_not_on_main_is_caught() -> None:
    history = a_good_history()
    history.on_main = {A, B}
    assert rules_of(history) == {"ready"}


def test_a_push_past_the_deadline_or_killed_is_caught() -> None:
    history = a_good_history()
    history.pushes.append(PushAttempt("bob", "refs/heads/x", C, 10.0, 16.0, 0, "cutover"))
    assert rules_of(history) == {"hung"}
    history.pushes[-1] = PushAttempt("bob", "refs/heads/x", C, 10.0, 11.0, None, "cutover")
    assert rules_of(history) == {"hung"}


def test_a_lost_acknowledged_event_and_slow_push_checks_are_caught() -> None:
    history = a_good_history()
    history.acknowledged.add("k3")
    assert rules_of(history) == {"lost"}
    history = a_good_history()
    history.check_latencies = [0.01] * 50 + [3.0] * 2
    assert rules_of(history) == {"latency"}


def test_a_refused_branch_push_or_a_refused_push_in_shadow_is_caught() -> None:
    history = a_good_history()
    refused = PushAttempt("bob", "refs/heads/main", C, 1.0, 2.0, 1, "cutover", said=REFUSED)
    history.pushes.append(refused)
    assert check(history) == []
    history.pushes.append(PushAttempt("bob", "refs/heads/main", C, 1.0, 2.0, 1, "shadow",
                                      said=REFUSED))  # fmt: skip
    assert rules_of(history) == {"refused"}
    history.pushes[-1] = PushAttempt("bob", "refs/heads/topic", C, 1.0, 2.0, 1, "cutover",
                                     said=REFUSED)  # fmt: skip
    assert rules_of(history) == {"refused"}


def test_a_refusal_that_says_nothing_readable_is_caught_but_gits_own_rejection_is_not() -> None:
    history = a_good_history()
    history.pushes.append(PushAttempt("bob", "refs/heads/main", C, 1.0, 2.0, 1, "cutover",
                                      said=("Traceback (most recent call last):",)))  # fmt: skip
    assert rules_of(history) == {"readable"}
    git_said = (" ! [rejected]        main -> main (fetch first)",)
    history.pushes[-1] = PushAttempt("bob", "refs/heads/main", C, 1.0, 2.0, 1, "cutover",
                                     said=git_said)  # fmt: skip
    assert check(history) == []


def test_a_push_the_hook_let_through_but_git_could_not_apply_is_gits_own_refusal() -> None:
    """Another push moved main while the hook ran: git's compare-and-swap of the ref fails
    after the hook said yes (seen in CI: a break-glass push racing the worker's landing)."""
    history = a_good_history()
    git_said = (
        "integrator: service unavailable (connection failed: ConnectionRefusedError); "
        "push allowed by a break-glass override",
        f"error: cannot lock ref 'refs/heads/main': is at {B} but expected {A}",
        "To /srv/canonical.git",
        " ! [remote rejected] HEAD -> main (failed to update ref)",
    )
    history.pushes.append(PushAttempt("ops", "refs/heads/main", C, 1.0, 2.0, 1, "cutover",
                                      break_glass=True, said=git_said))  # fmt: skip
    assert check(history) == []
    declined = (" ! [remote rejected] HEAD -> main (pre-receive hook declined)",)
    history.pushes[-1] = PushAttempt("ops", "refs/heads/main", C, 1.0, 2.0, 1, "cutover",
                                     said=declined)  # fmt: skip
    assert rules_of(history) == {"readable"}


def with_a_break_glass_push(recorded: bool) -> History:
    """In cutover, after B landed, a person pushed D on main under a break-glass override."""
    history = a_good_history()
    history.mainline.append(MainCommit(D, (B,)))
    history.on_main.add(D)
    history.pushes.append(
        PushAttempt("bob", "refs/heads/main", D, 5.0, 6.0, 0, "cutover", break_glass=True)
    )
    if recorded:
        history.bypasses.append(RecordedBypass(B, D, "bob"))
    return history


def test_a_break_glass_commit_is_explained_by_its_recorded_bypass_verdict() -> None:
    history = with_a_break_glass_push(recorded=True)
    history.audit = {A: "push", B: "queue", D: "bypass"}
    assert check(history) == []
    assert "1 recorded bypasses, 1 commits on main they cover" in summary(history, Counter(), [])


def test_a_break_glass_commit_nobody_recorded_is_still_unexplained() -> None:
    history = with_a_break_glass_push(recorded=False)
    texts = [str(v) for v in check(history)]
    assert f"[main] bob moved main to {D} in cutover" in texts
    assert f"[main] {D} on main is explained by nothing" in texts


def test_a_bypass_verdict_explains_only_the_commits_it_covers() -> None:
    history = with_a_break_glass_push(recorded=False)
    history.bypasses.append(RecordedBypass(A, B, "bob"))  # a verdict of another update
    history.bypasses.append(RecordedBypass(C, D, "bob"))  # its old is not below D on main
    assert rules_of(history) == {"main"}
    history = with_a_break_glass_push(recorded=True)
    history.pushes[-1] = PushAttempt("bob", "refs/heads/main", D, 5.0, 6.0, 0, "cutover")
    assert rules_of(history) == {"main"}  # the test did not put an override in place for it


def test_an_audit_that_does_not_call_break_glass_a_bypass_is_caught() -> None:
    history = with_a_break_glass_push(recorded=True)
    history.audit = {A: "push", B: "queue", D: "push"}
    assert rules_of(history) == {"audit"}
    history.audit = {A: "push", B: "queue", D: "bypass", "e" * 40: "queue"}
    del history.audit[A]
    assert rules_of(history) == {"audit"}


def test_a_load_request_without_an_answer_from_a_running_replica_is_caught() -> None:
    history = a_good_history()
    history.load_requests = [
        LoadRequest("check", 0.01, "answered"),
        LoadRequest("event", 0.0, "unreachable"),
        LoadRequest("check", 5.0, "timeout", paused=True),
    ]
    assert check(history) == []
    history.load_requests.append(LoadRequest("event", 5.0, "timeout"))
    assert [str(v) for v in check(history)] == ["[hung] 1 event requests got no answer in time"]


def test_a_registered_commit_whose_attempt_trailer_is_not_the_registrations_is_caught() -> None:
    history = a_good_history()
    history.mainline[1] = MainCommit(B, (A, C), {**TRAILERS, "Integrator-Attempt": "other"})
    assert rules_of(history) == {"main"}
