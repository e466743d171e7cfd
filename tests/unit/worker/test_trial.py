"""The worker's decision rules: facts in, the outcome body out (no git, no service)."""

from __future__ import annotations

import subprocess

import pytest

from integrator.merge_conflicts import Conflict
from integrator.worker.check_config import CheckSpec
from integrator.worker.checks import CheckResult, CheckRun
from integrator.worker.landing import PushFacts, Verdict
from integrator.worker.trial import (
    NO_PUSH_OPTIONS,
    Trial,
    judge,
    merge_message,
)
from integrator.worker.workspace import Merged, MergeMethod
from tests.unit.worker.trial_support import BASE, SHA, assert_recordable, handed


def clean_merge() -> Merged:
    return Merged(ok=True, conflicts=(), output="")


def check(exit_code: int | None = 0, timed_out: bool = False) -> CheckResult:
    return CheckResult("make test", exit_code, timed_out, False, "last lines\n", 1.5)


def trial(check: CheckResult | None = None, **facts: object) -> Trial:
    """A trial; `check` is one run of the plain check (named `check`)."""
    values: dict[str, object] = {"base": BASE, "attempt": "att-1", **facts}
    if check is not None:
        values["checks"] = (CheckRun(CheckSpec("check", check.command), (check,)),)
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
    """One conflict evidence item per path; diagnostics and a next action to resubmit."""
    merged = Merged(ok=False, conflicts=(Conflict("a.txt"), Conflict("b/c.py")), output="")
    decision = judge(handed(mode), trial(merge=merged))
    assert decision.outcome == outcome
    assert decision.conflict_evidence == [
        {"kind": "conflict", "path": "a.txt"},
        {"kind": "conflict", "path": "b/c.py"},
    ]
    assert "a.txt, b/c.py" in decision.diagnostics[0]
    assert decision.next_action == (
        "merge main into feat/seven, resolve a.txt, b/c.py, push the branch, then run "
        "`integrator submit --slug feat-7 --branch feat/seven`"
    )
    assert_recordable(decision)


def test_each_conflict_says_what_kind_git_found_with_the_sides_named_main_and_the_branch() -> None:
    """The kind goes into the diagnostics (evidence items take no extra keys)."""
    conflicts = (
        Conflict(
            "doc.bin",
            ("binary",),
            (f"warning: Cannot merge binary files: doc.bin ({BASE} vs. {SHA})",),
        ),
        Conflict(
            "new.txt",
            ("rename/delete",),
            (
                f"CONFLICT (rename/delete): old.txt renamed to new.txt in {SHA}, but deleted in "
                f"{BASE}.",
            ),
        ),
        Conflict("plain.txt"),
    )
    decision = judge(handed(), trial(merge=Merged(ok=False, conflicts=conflicts, output="")))
    assert decision.diagnostics[1:] == [
        "doc.bin: binary conflict — warning: Cannot merge binary files: doc.bin "
        "(main vs. feat/seven)",
        "new.txt: rename/delete conflict — old.txt renamed to new.txt in feat/seven, but "
        "deleted in main.",
    ]
    assert [e["path"] for e in decision.conflict_evidence] == ["doc.bin", "new.txt", "plain.txt"]


def test_paths_that_need_it_are_shell_quoted_in_the_summary_and_the_next_action() -> None:
    """A path with a space reads as one path in `resolve …`; every path stays exact in the
    evidence."""
    conflicts = (Conflict("my notes.txt"), Conflict("naïve.py"))
    decision = judge(handed(), trial(merge=Merged(ok=False, conflicts=conflicts, output="")))
    assert "resolve 'my notes.txt', 'naïve.py', push" in (decision.next_action or "")
    assert [e["path"] for e in decision.conflict_evidence] == ["my notes.txt", "naïve.py"]


def test_bytes_git_could_not_decode_and_nul_are_shown_escaped_so_the_service_can_store_them() -> (
    None
):
    """A Latin-1 file name (surrogate-escaped by the git adapter) and a NUL in a check's output
    would be refused by the service's validation, and a refused outcome stops the worker."""
    latin1 = b"caf\xe9.txt".decode("utf-8", "surrogateescape")
    decision = judge(
        handed(), trial(merge=Merged(ok=False, conflicts=(Conflict(latin1),), output=""))
    )
    assert decision.conflict_evidence == [{"kind": "conflict", "path": "caf\\xe9.txt"}]
    assert_recordable(decision)
    noisy = CheckResult("make test", 1, False, False, "binary\0junk\udcff\n", 0.1)
    failed = judge(handed(), trial(merge=clean_merge(), check=noisy))
    assert failed.conflict_evidence[0]["output_tail"] == "binary\\0junk\\xff\n"
    assert_recordable(failed)


def test_thousands_of_conflicting_paths_are_all_evidence_and_every_line_fits_the_service() -> None:
    """Every path is an evidence item; no diagnostic or next action is over 2,000 characters,
    however long or many the paths are."""
    conflicts = tuple(
        Conflict(f"{'deep/' * 100}{n}.txt", ("content",), ("Merge conflict in it",))
        for n in range(3000)
    )
    decision = judge(handed(), trial(merge=Merged(ok=False, conflicts=conflicts, output="")))
    assert len(decision.conflict_evidence) == 3000
    assert decision.diagnostics[0].endswith(" and 2998 more")  # two 500-character paths fit
    assert decision.diagnostics[-1] == "and 2950 more conflicting paths (all in the evidence)"
    assert all(len(line) <= 2000 for line in [*decision.diagnostics, decision.next_action or ""])
    assert_recordable(decision)


def test_a_failed_check_is_evidence_with_its_command_exit_code_and_output_tail() -> None:
    """kind check, the command, the exit code and the tail of its output; fix and resubmit."""
    decision = judge(handed(), trial(merge=clean_merge(), check=check(exit_code=2)))
    assert decision.outcome == "would_block"
    assert decision.conflict_evidence == [
        {"kind": "check", "command": "make test", "exit_code": 2, "output_tail": "last lines\n"}
    ]
    assert "exit code 2" in decision.diagnostics[0]
    assert decision.next_action == (
        "check `make test` failed: run `make test` on feat/seven merged with main, fix what "
        "fails, push the branch, then run `integrator submit --slug feat-7 --branch feat/seven`"
    )
    assert_recordable(decision)


def test_a_check_killed_by_a_signal_names_the_signal() -> None:
    """The exit code is what the process said (-11); the diagnostic names SIGSEGV."""
    decision = judge(handed(), trial(merge=clean_merge(), check=check(exit_code=-11)))
    assert decision.conflict_evidence[0]["exit_code"] == -11
    assert "killed by signal 11 (SIGSEGV)" in decision.diagnostics[0]


def test_a_timed_out_check_has_no_exit_code_names_its_timeout_and_is_resumed_not_resubmitted() -> (
    None
):
    """A killed check did not exit: no exit code; the same sha goes back with `resume`."""
    timed_out = CheckResult("make test", None, True, False, "last lines\n", 30.2, timeout=30)
    decision = judge(handed(), trial(merge=clean_merge(), check=timed_out))
    assert decision.conflict_evidence == [
        {"kind": "check", "command": "make test", "output_tail": "last lines\n"}
    ]
    assert (
        "timed out" in decision.diagnostics[0]
        and "within its 30s timeout" in decision.diagnostics[0]
    )
    assert "integrator submit" in decision.diagnostics[1]
    assert decision.next_action is not None
    assert decision.next_action.endswith(
        "then run `integrator resume feat-7` to test the same sha again in its original turn"
    )
    assert_recordable(decision)


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
            f"check `make test` passed on {NEW[:12]} before the push in 1.5s",
        ],
        "checks": {
            "check": {
                "status": "passed",
                "attempts": [
                    {
                        "exit_code": 0,
                        "timed_out": False,
                        "seconds": 1.5,
                        "output_tail": "last lines\n",
                    }
                ],
            }
        },
    }


def test_a_push_refused_by_the_integrators_hook_is_blocked_and_resumed_after_the_fix() -> None:
    """kind push: the refusal line and the server's remote: lines; not the change's fault, so
    the same sha is resumed once an operator fixed the server."""
    lines = ("integrator: refused main: nope", "integrator: no ref of this push was updated.")
    decision = judge(
        handed("cutover"),
        pushed(Verdict.refused, registration_id=3, remote_lines=lines, detail=lines[0]),
    )
    assert decision.outcome == "blocked" and decision.main_sha == BASE
    assert decision.conflict_evidence == [
        {"kind": "push", "refusal": lines[0], "output_tail": "\n".join(lines)}
    ]
    assert "hook refused the registered push" in decision.diagnostics[0]
    assert decision.next_action is not None
    assert "then run `integrator resume feat-7`" in decision.next_action
    assert not decision.stop
    assert_recordable(decision)


def test_a_push_refused_by_another_hook_names_the_refusal_and_is_fixed_on_the_branch() -> None:
    """A hook chained before ours judged the content: fix it on the branch and resubmit."""
    lines = ("size-check: refused: file too big",)
    decision = judge(handed("cutover"), pushed(Verdict.refused, remote_lines=lines,
                                               detail=lines[0]))  # fmt: skip
    assert decision.conflict_evidence[0]["refusal"] == lines[0]
    assert decision.next_action == (
        "fix what the refusal names on feat/seven, push the branch, then run "
        "`integrator submit --slug feat-7 --branch feat/seven`"
    )
    assert "integrator resume feat-7" in decision.diagnostics[1]


def test_a_push_that_kept_failing_is_blocked_with_the_last_try_as_evidence() -> None:
    """Exhausted retries block the candidate: the evidence says what the last try did; the
    infrastructure, not the change, is to fix, then the same sha is resumed."""
    decision = judge(handed("cutover"), pushed(Verdict.retry, detail="the push timed out"))
    assert decision.outcome == "blocked"
    assert decision.conflict_evidence == [{"kind": "push", "refusal": "the push timed out"}]
    assert "kept failing (4 tries)" in decision.diagnostics[0]
    assert "then run `integrator resume feat-7`" in (decision.next_action or "")
    assert_recordable(decision)


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
