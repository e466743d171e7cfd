"""What the worker reports, rule by rule: the subjects of merge and squash commits, a
requeue reason cut to what the service stores, checks that were not run, flaky passes, and
each way a registered push can end."""

from __future__ import annotations

import pytest

from integrator.worker.check_config import CheckSpec
from integrator.worker.checks import CheckResult, CheckRun
from integrator.worker.landing import PushFacts, Verdict
from integrator.worker.trial import (
    PUSH_RETRIES,
    Decision,
    Trial,
    judge,
    merge_message,
    not_on_main,
    requeue,
)
from integrator.worker.workspace import Merged, MergeMethod
from tests.unit.worker.trial_support import BASE, MERGED, SHA, handed


def result(exit_code: int | None = 0, seconds: float = 1.25) -> CheckResult:
    return CheckResult("make test", exit_code, False, False, "tail\n", seconds)


def run(name: str, *exits: int | None) -> CheckRun:
    return CheckRun(CheckSpec(name, f"make {name}"), tuple(result(e) for e in exits))


def clean(**facts: object) -> Trial:
    values: dict[str, object] = {"base": BASE, "attempt": "att-1",
                                 "merge": Merged(ok=True, conflicts=(), output=""),
                                 "merged_sha": MERGED, **facts}  # fmt: skip
    return Trial(**values)  # type: ignore[arg-type]


def test_a_merge_commit_and_a_squash_commit_have_their_own_subjects() -> None:
    merge = merge_message(handed(), 4, "att-1", MergeMethod.merge)
    squash = merge_message(handed(), 4, "att-1", MergeMethod.squash)
    trailers = "Integrator-Candidate: 7\nIntegrator-Epoch: 4\nIntegrator-Attempt: att-1\n"
    assert merge == f"Merge feat/seven (feat-7) at {SHA[:12]}\n\n{trailers}"
    assert squash == f"feat-7: feat/seven at {SHA[:12]} (squashed)\n\n{trailers}"
    assert merge_message(handed(), 4, "att-1") == merge


def test_a_requeue_reason_is_cut_to_the_2000_characters_the_service_stores() -> None:
    assert requeue("r" * 2000).reason == "r" * 2000
    assert requeue("r" * 2001 + "tail").reason == "r" * 2000
    decision = requeue("why")
    assert (decision.outcome, decision.stop) == ("requeue", False)
    assert requeue("why", stop=True).stop


def test_the_body_leaves_out_what_is_empty() -> None:
    assert Decision(outcome="requeue", reason="why").body() == {
        "outcome": "requeue",
        "reason": "why",
    }


def test_a_trial_is_clean_only_with_a_commit_and_every_check_passed() -> None:
    assert clean(checks=(run("unit", 0),)).clean
    assert not clean(merged_sha=None).clean
    assert not clean(checks=(run("unit", 0), run("lint", 1))).clean


def test_the_failed_check_is_the_first_one_run_that_did_not_pass() -> None:
    trial = clean(checks=(run("unit", 0), run("lint", 1), run("docs", 2), run("never")))
    failed = trial.failed_check
    assert failed is not None and failed.spec.name == "lint"
    assert clean(checks=(run("unit", 0), run("never"))).failed_check is None


def test_the_checks_not_run_after_a_failure_are_named_in_the_diagnostics() -> None:
    trial = clean(checks=(run("unit", 1), run("lint"), run("docs")))
    decision = judge(handed(), trial)
    assert decision.outcome == "would_block"
    assert decision.diagnostics[-1] == "not run, since unit did not pass: lint, docs"
    assert [(name, c["status"]) for name, c in decision.checks.items()] == [
        ("unit", "failed"),
        ("lint", "not_run"),
        ("docs", "not_run"),
    ]


def test_a_failure_with_nothing_left_unrun_adds_no_such_note() -> None:
    decision = judge(handed(), clean(checks=(run("unit", 0), run("lint", 1))))
    assert not any(line.startswith("not run") for line in decision.diagnostics)


def test_in_cutover_a_failed_check_is_a_real_block() -> None:
    assert judge(handed("cutover"), clean(checks=(run("unit", 1),))).outcome == "blocked"
    assert judge(handed("off"), clean(checks=(run("unit", 1),))).outcome == "would_block"


def test_a_clean_prediction_says_where_it_merged_and_each_pass_and_flaky_retry() -> None:
    decision = judge(handed(), clean(checks=(run("unit", 1, 1, 0), run("lint", 0))))
    assert decision.outcome == "would_integrate" and decision.main_sha == BASE
    assert decision.diagnostics == [
        f"merged cleanly onto main at {BASE[:12]} as {MERGED[:12]}",
        "check unit (`make unit`) passed in 1.2s",
        "flaky: check unit did not pass 2 time(s) before passing on attempt 3",
        "check lint (`make lint`) passed in 1.2s",
    ]


def test_a_prediction_without_a_commit_says_it_changes_nothing() -> None:
    decision = judge(handed(), clean(merged_sha=None))
    assert decision.diagnostics == [
        f"merges cleanly onto main at {BASE[:12]} and changes nothing there"
    ]


def test_an_empty_merge_is_already_integrated_and_a_trial_without_merge_is_a_bug() -> None:
    empty = Merged(ok=True, conflicts=(), output="", empty=True)
    decision = judge(handed("cutover"), clean(merge=empty))
    assert (decision.outcome, decision.main_sha) == ("already_integrated", BASE)
    assert decision.reason == "its content is already on main"
    with pytest.raises(ValueError, match="found the content on main"):
        judge(handed(), clean(merge=None))


def push(verdict: Verdict, **facts: object) -> PushFacts:
    return PushFacts(verdict, MERGED, **facts)  # type: ignore[arg-type]


def test_a_landed_push_is_integrated_on_the_pushed_commit() -> None:
    trial = clean(checks=(run("unit", 0),), push=push(Verdict.landed, registration_id=12))
    assert trial.landed
    decision = judge(handed("cutover"), trial)
    assert (decision.outcome, decision.main_sha, decision.registration_id) == (
        "integrated", MERGED, 12
    )  # fmt: skip
    assert decision.diagnostics == [
        f"merged onto main at {BASE[:12]} as {MERGED[:12]} and pushed (registration 12)",
        f"check unit (`make unit`) passed on {MERGED[:12]} before the push in 1.2s",
    ]


def test_a_push_the_service_withdrew_gives_the_candidate_back_with_the_detail() -> None:
    trial = clean(push=push(Verdict.withdrawn, detail="mode is shadow"))
    assert not trial.landed
    decision = judge(handed("cutover"), trial)
    assert (decision.outcome, decision.stop) == ("requeue", False)
    assert decision.reason == "the service left cutover before the push of main: mode is shadow"


def test_a_push_that_kept_failing_is_blocked_after_every_try() -> None:
    decision = judge(handed("cutover"), clean(push=push(Verdict.retry, detail="deadline")))
    assert decision.outcome == "blocked"
    assert any(f"{PUSH_RETRIES + 1}" in line for line in decision.diagnostics)


def test_a_clean_merge_not_on_main_for_the_service_is_judged_as_the_merge_it_is() -> None:
    empty = Merged(ok=True, conflicts=(), output="", empty=True)
    decision = not_on_main(handed(), clean(merge=empty, merged_sha=None))
    assert decision.outcome == "would_integrate"


@pytest.mark.parametrize("merge", [None, Merged(ok=False, conflicts=(), output="")])
def test_a_sha_only_this_worker_sees_on_main_stops_the_worker(merge: Merged | None) -> None:
    decision = not_on_main(handed(), clean(merge=merge, already_on_main=SHA))
    assert (decision.outcome, decision.stop) == ("requeue", True)
    assert decision.reason == (
        f"candidate 7 (feat-7, feat/seven at {SHA[:12]}) is on main at {BASE[:12]} as this "
        "worker fetched it, but not on main as the service reads it; returned to the queue: "
        "check that the worker and the service use the same repository (--repo and "
        "INTEGRATOR_REPO)"
    )


def test_in_cutover_an_empty_merge_the_service_cannot_find_goes_back_for_an_operator() -> None:
    empty = Merged(ok=True, conflicts=(), output="", empty=True)
    decision = not_on_main(handed("cutover"), clean(merge=empty, merged_sha=None))
    assert (decision.outcome, decision.stop) == ("requeue", True)
    assert decision.reason is not None
    assert decision.reason.startswith(
        f"candidate 7 (feat-7, feat/seven at {SHA[:12]}) changes nothing on main at {BASE[:12]}, "
    )
    assert decision.reason.endswith("run `integrator queue close feat-7 --reason …`")
