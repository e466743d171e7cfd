"""The worker's decision rules: facts in, the outcome body out (no git, no service)."""

from __future__ import annotations

import subprocess

import pytest

from integrator.worker.checks import CheckResult
from integrator.worker.landing import PushFacts, Verdict
from integrator.worker.trial import (
    NO_PUSH_OPTIONS,
    Handed,
    Trial,
    judge,
    merge_message,
)
from integrator.worker.workspace import Merged, MergeMethod

BASE = "b" * 40
SHA = "c" * 40


def handed(mode: str = "shadow") -> Handed:
    return Handed(id=7, slug="feat-7", branch="feat/seven", sha=SHA, mode=mode, position=3)


def clean_merge() -> Merged:
    return Merged(ok=True, conflicts=(), output="")


def check(exit_code: int | None = 0, timed_out: bool = False) -> CheckResult:
    return CheckResult("make test", exit_code, timed_out, False, "last lines\n", 1.5)


def trial(**facts: object) -> Trial:
    values: dict[str, object] = {"base": BASE, "attempt": "att-1", **facts}
    return Trial(**values)  # type: ignore[arg-type]


def test_a_clean_merge_in_shadow_is_would_integrate_on_the_base_it_merged_onto() -> None:
    """main_sha is the base, the attempt is carried, and the passing check is mentioned."""
    decision = judge(handed(), trial(merge=clean_merge(), merged_sha="d" * 40, check=check()))
    assert (decision.outcome, decision.main_sha, decision.attempt) == (
        "would_integrate",
        BASE,
        "att-1",
    )
    assert any("make test" in line for line in decision.diagnostics)
    assert not decision.stop


def test_off_mode_predicts_like_shadow() -> None:
    """The integrator never moves main outside cutover."""
    assert judge(handed("off"), trial(merge=clean_merge())).outcome == "would_integrate"


@pytest.mark.parametrize(("mode", "outcome"), [("shadow", "would_block"), ("cutover", "blocked")])
def test_a_conflict_names_every_path_as_evidence(mode: str, outcome: str) -> None:
    """One conflict evidence item per path; diagnostics and a next action to resume."""
    merged = Merged(ok=False, conflicts=("a.txt", "b/c.py"), output="CONFLICT")
    decision = judge(handed(mode), trial(merge=merged))
    assert decision.outcome == outcome
    assert decision.conflict_evidence == [
        {"kind": "conflict", "path": "a.txt"},
        {"kind": "conflict", "path": "b/c.py"},
    ]
    assert "a.txt, b/c.py" in decision.diagnostics[0]
    assert decision.next_action and "integrator submit --slug feat-7" in decision.next_action


def test_a_failed_check_is_evidence_with_its_command_exit_code_and_output_tail() -> None:
    """kind check, the command, the exit code and the tail of its output."""
    decision = judge(handed(), trial(merge=clean_merge(), check=check(exit_code=2)))
    assert decision.outcome == "would_block"
    assert decision.conflict_evidence == [
        {"kind": "check", "command": "make test", "exit_code": 2, "output_tail": "last lines\n"}
    ]
    assert "exit code 2" in decision.diagnostics[0]


def test_a_timed_out_check_has_no_exit_code_and_says_it_was_killed() -> None:
    """A killed check did not exit: the evidence carries no exit code."""
    decision = judge(handed(), trial(merge=clean_merge(), check=check(None, timed_out=True)))
    assert "exit_code" not in decision.conflict_evidence[0]
    assert "timed out" in decision.diagnostics[0]


@pytest.mark.parametrize("mode", ["shadow", "cutover"])
def test_content_already_on_main_is_already_integrated_in_any_mode(mode: str) -> None:
    """Reachable (or trailer-explained) content and an empty squash are not merged again."""
    for facts in ({"already_on_main": BASE}, {"merge": Merged(True, (), "", empty=True)}):
        decision = judge(handed(mode), trial(**facts))
        assert (decision.outcome, decision.main_sha) == ("already_integrated", BASE)


NEW = "d" * 40


def pushed(verdict: Verdict, **facts: object) -> Trial:
    push = PushFacts(verdict, NEW, **facts)  # type: ignore[arg-type]
    return trial(merge=clean_merge(), merged_sha=NEW, check=check(), push=push)


def test_a_landed_push_in_cutover_is_integrated_with_the_tested_commit_and_registration() -> None:
    """main_sha is the pushed commit (the tested one), with its attempt and registration."""
    decision = judge(handed("cutover"), pushed(Verdict.landed, registration_id=12, main=NEW))
    assert decision.body() == {
        "outcome": "integrated",
        "attempt": "att-1",
        "main_sha": NEW,
        "registration_id": 12,
        "diagnostics": [
            f"merged onto main at {BASE[:12]} as {NEW[:12]} and pushed (registration 12)",
            f"check `make test` passed on {NEW[:12]} before the push",
        ],
    }


def test_a_push_refused_by_the_hook_is_blocked_with_the_refusal_as_push_evidence() -> None:
    """kind push: the refusal line and the server's remote: lines; a next action to resume."""
    lines = ("integrator: refused main: nope", "integrator: no ref of this push was updated.")
    decision = judge(
        handed("cutover"),
        pushed(Verdict.refused, registration_id=3, remote_lines=lines, detail=lines[0]),
    )
    assert decision.outcome == "blocked" and decision.main_sha == BASE
    assert decision.conflict_evidence == [
        {"kind": "push", "refusal": lines[0], "output_tail": "\n".join(lines)}
    ]
    assert "refused the push" in decision.diagnostics[0]
    assert decision.next_action and "integrator submit --slug feat-7" in decision.next_action
    assert not decision.stop


def test_a_push_that_kept_failing_is_blocked_with_the_last_try_as_evidence() -> None:
    """Exhausted retries block the candidate: the evidence says what the last try did."""
    decision = judge(handed("cutover"), pushed(Verdict.retry, detail="the push timed out"))
    assert decision.outcome == "blocked"
    assert decision.conflict_evidence == [{"kind": "push", "refusal": "the push timed out"}]
    assert "kept failing" in decision.diagnostics[0]


def test_a_server_without_push_options_gives_the_candidate_back_and_stops_the_worker() -> None:
    """A configuration error, not the candidate's fault: one line naming the setting."""
    decision = judge(handed("cutover"), pushed(Verdict.unsupported))
    assert (decision.outcome, decision.stop, decision.reason) == ("requeue", True, NO_PUSH_OPTIONS)
    assert "receive.advertisePushOptions=true" in NO_PUSH_OPTIONS
    assert "\n" not in NO_PUSH_OPTIONS


def test_a_registration_refused_because_the_service_left_cutover_gives_the_candidate_back() -> None:
    """Nothing was pushed: the candidate goes back to the queue, the worker goes on."""
    decision = judge(handed("cutover"), pushed(Verdict.withdrawn, detail="mode is shadow"))
    assert (decision.outcome, decision.stop) == ("requeue", False)


def test_a_clean_merge_in_cutover_is_never_judged_without_its_push() -> None:
    """The worker pushes before judging: a missing push is a bug, not an outcome."""
    with pytest.raises(ValueError, match="judged by its push"):
        judge(handed("cutover"), trial(merge=clean_merge(), merged_sha=NEW, check=check()))


@pytest.mark.parametrize("method", list(MergeMethod))
def test_the_merge_message_ends_with_the_three_trailers_git_parses(method: MergeMethod) -> None:
    """Integrator-Candidate, -Epoch and -Attempt, as `git interpret-trailers` reads them."""
    message = merge_message(handed(), epoch=4, attempt="0b5e-attempt", method=method)
    parsed = subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=message,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert parsed.splitlines() == [
        "Integrator-Candidate: 7",
        "Integrator-Epoch: 4",
        "Integrator-Attempt: 0b5e-attempt",
    ]


def test_a_merge_that_changes_nothing_but_is_not_on_main_for_the_service_is_a_clean_merge() -> None:
    """The service's refusal of already_integrated turns an empty merge into would_integrate."""
    from integrator.worker.trial import not_on_main

    empty = Merged(ok=True, conflicts=(), output="", empty=True)
    decision = not_on_main(handed(), trial(merge=empty))
    assert decision.outcome == "would_integrate"
    assert decision.diagnostics == [
        f"merges cleanly onto main at {BASE[:12]} and changes nothing there"
    ]


def test_a_sha_on_main_for_the_worker_but_not_for_the_service_is_given_back_and_stops() -> None:
    """Two views of main disagree: nothing is claimed, the worker stops with what to check."""
    from integrator.worker.trial import not_on_main

    decision = not_on_main(handed(), trial(already_on_main=BASE))
    assert (decision.outcome, decision.stop) == ("requeue", True)
    assert "--repo and INTEGRATOR_REPO" in (decision.reason or "")


def test_in_cutover_an_empty_merge_the_service_cannot_find_on_main_goes_back_for_an_operator() -> (
    None
):
    """Nothing to push and nothing proven: requeue, stop, and name the close command."""
    from integrator.worker.trial import not_on_main

    empty = Merged(ok=True, conflicts=(), output="", empty=True)
    decision = not_on_main(handed("cutover"), trial(merge=empty))
    assert (decision.outcome, decision.stop) == ("requeue", True)
    assert "integrator queue close feat-7" in (decision.reason or "")
