"""The fault test's history checker on hand-made histories: each rule catches its violation."""

from __future__ import annotations

from collections import Counter

from tests.faults.checker import (
    CandidateRow,
    History,
    LeaseEvent,
    MainCommit,
    PushAttempt,
    RegistrationRow,
    check,
    summary,
)

T0 = "2026-11-26T12:00:00+00:00"
A = "a" * 40
B = "b" * 40
C = "c" * 40
TRAILERS = {"Integrator-Candidate": "7", "Integrator-Attempt": "att"}


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
    history.pushes.append(PushAttempt("bob", "refs/heads/main", C, 1.0, 2.0, 1, "cutover"))
    assert check(history) == []
    history.pushes.append(PushAttempt("bob", "refs/heads/main", C, 1.0, 2.0, 1, "shadow"))
    assert rules_of(history) == {"refused"}
    history.pushes[-1] = PushAttempt("bob", "refs/heads/topic", C, 1.0, 2.0, 1, "cutover")
    assert rules_of(history) == {"refused"}


def test_a_registered_commit_whose_attempt_trailer_is_not_the_registrations_is_caught() -> None:
    history = a_good_history()
    history.mainline[1] = MainCommit(B, (A, C), {**TRAILERS, "Integrator-Attempt": "other"})
    assert rules_of(history) == {"main"}
