"""The integrator worker against a real service, real repositories and real processes."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrator.settings import Settings
from integrator.worker.check_config import CheckSpec
from integrator.worker.lease_client import LeaseKeeper
from integrator.worker.loop import Worker, WorkerExit, WorkerOptions
from tests.gitrepos import git
from tests.support import TokenMaker
from tests.worker_support import (
    WorkerWorld,
    kill_group_of_pidfile,
    process_gone,
    refs_of,
    wait_for,
)


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    with WorkerWorld(settings, tmp_path, tokens).start() as world:
        yield world


def test_a_shadow_run_predicts_each_candidate_and_leaves_canonical_refs_byte_for_byte(
    world: WorkerWorld,
) -> None:
    """--once drains the queue, records would_integrate/would_block, and never moves a ref."""
    clean_a = world.ready("clean-a")
    conflicting = world.ready("conflicting", path="README", content="theirs\n")
    clean_b = world.ready("clean-b")
    world.push_to_main("README", "ours\n", "a human edit of README on main")
    before = refs_of(world.canonical.bare)

    result = world.run_worker("--once", "--check", "test -f README")

    assert result.returncode == 0, result.stderr
    assert refs_of(world.canonical.bare) == before
    assert {world.candidate(c)["status"] for c in (clean_a, conflicting, clean_b)} == {"predicted"}
    predictions = world.events("would_integrate", "would_block")
    by_candidate = {e.fields["candidate_id"]: e for e in predictions}
    assert len(predictions) == 3 and len(by_candidate) == 3
    assert by_candidate[clean_a].type == by_candidate[clean_b].type == "would_integrate"
    blocked = by_candidate[conflicting]
    assert blocked.type == "would_block"
    assert blocked.fields["conflict_evidence"] == [
        {"kind": "conflict", "path": "README", "conflict": "content"}
    ]
    assert "README" in blocked.fields["diagnostics"][0]
    assert blocked.fields["main_sha"] == world.canonical.head()
    assert world.lease()["holder"] is None


def test_a_check_that_hangs_past_its_timeout_is_a_would_block_with_its_output_tail(
    world: WorkerWorld,
) -> None:
    """The check's group is killed at --check-timeout; the evidence says so and shows output."""
    candidate = world.ready("hangs")
    result = world.run_worker(
        "--once", "--check", "echo checking-now; sleep 60", "--check-timeout", "1"
    )
    assert result.returncode == 0, result.stderr
    (event,) = world.events("would_block")
    (evidence,) = event.fields["conflict_evidence"]
    assert evidence["kind"] == "check"
    assert evidence["command"] == "echo checking-now; sleep 60"
    assert "exit_code" not in evidence
    assert "checking-now" in evidence["output_tail"]
    assert "timeout" in evidence["output_tail"]
    assert "timed out" in event.fields["diagnostics"][0]
    assert world.candidate(candidate)["status"] == "predicted"


def test_the_check_sees_no_integrator_token_and_no_injected_git_configuration(
    world: WorkerWorld, tmp_path: Path
) -> None:
    """INTEGRATOR_*, GIT_CONFIG_* and GIT_TRACE* never reach the check's environment."""
    world.ready("env")
    dump = tmp_path / "check-env.txt"
    env = {**world.worker_env(), "GIT_CONFIG_COUNT": "1", "GIT_TRACE": "1"}
    env["GIT_CONFIG_KEY_0"], env["GIT_CONFIG_VALUE_0"] = "push.pushOption", "secret"
    result = subprocess.run(
        world.worker_args("--once", "--check", f"env > {dump}"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    names = {line.split("=", 1)[0] for line in dump.read_text().splitlines() if "=" in line}
    assert not {n for n in names if n.startswith(("INTEGRATOR_", "GIT_CONFIG_", "GIT_TRACE"))}
    assert world.integrator_token not in dump.read_text()
    assert world.integrator_token not in result.stderr


def test_sigterm_during_a_check_kills_its_process_group_requeues_and_releases(
    world: WorkerWorld, tmp_path: Path
) -> None:
    """The check and its children die, the candidate is queued again, the lease is free."""
    candidate = world.ready("long-check")
    child_pid_file = tmp_path / "child.pid"
    check = f"sleep 120 & echo $! > {child_pid_file}; wait"
    worker = world.start_worker("--check", check)
    try:
        child = int(wait_for(lambda: child_pid_file.exists() and child_pid_file.read_text(),
                             what="the check's child"))  # fmt: skip
        assert not process_gone(child)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, (tmp_path / "worker.log").read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
    wait_for(lambda: process_gone(child), timeout=10, what="the check's child to die")
    assert world.candidate(candidate)["status"] == "queued"
    assert world.lease()["holder"] is None
    assert world.events("would_integrate", "would_block") == []


def test_a_worker_killed_mid_candidate_is_replaced_after_lease_expiry_and_nothing_is_lost(
    world: WorkerWorld, tmp_path: Path
) -> None:
    """kill -9 during the check; a second worker takes over, finishes every candidate once."""
    first = world.ready("first")
    second = world.ready("second")
    marker, pidfile = tmp_path / "first-attempt", tmp_path / "check.pgid"
    # The first run of the check parks (so that the kill lands during it); later runs pass.
    check = f"if [ -e {marker} ]; then exit 0; fi; touch {marker}; echo $$ > {pidfile}; sleep 60"
    victim = world.start_worker("--check", check, "--holder", "victim", log_name="victim.log")
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the check")
        assert world.candidate(first)["status"] == "in_progress"
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        kill_group_of_pidfile(pidfile)
    assert world.lease()["holder"] == "victim"

    result = world.run_worker("--once", "--check", check, "--holder", "successor", timeout=90)

    assert result.returncode == 0, result.stderr
    assert world.candidate(first)["status"] == world.candidate(second)["status"] == "predicted"
    outcomes = world.events("would_integrate", "would_block", "integration_completed")
    assert sorted(e.fields["candidate_id"] for e in outcomes) == [first, second]
    (takeover,) = world.events("lease_taken_over")
    assert takeover.fields["previous_holder"] == "victim"
    requeued = [
        e
        for e in world.events("candidate_status_changed")
        if e.fields["candidate_id"] == first and e.fields["to"] == "queued"
    ]
    assert len(requeued) == 2  # admitted once, returned once after the victim's epoch ended
    assert world.lease()["holder"] is None


def test_a_human_merge_of_predicted_candidates_scores_each_prediction_once(
    world: WorkerWorld,
) -> None:
    """Reachable from main → integrated, scored; a would_block landed only by resolving the
    files it named by hand was right about the block."""
    good = world.ready("good")
    bad = world.ready("bad", path="README", content="theirs\n")
    world.push_to_main("README", "ours\n", "a human edit of README on main")
    assert world.run_worker("--once").returncode == 0
    good_sha, bad_sha = world.candidate(good)["sha"], world.candidate(bad)["sha"]
    world.canonical.merge_to_main(good_sha)
    git("merge", "-q", "-X", "ours", "-m", "resolved by hand", bad_sha, cwd=world.canonical.work)
    git("push", "-q", "origin", "main", cwd=world.canonical.work)

    scored = world.post("/v1/predictions/score", {}, world.operator).json()["scored"]

    by_id = {s["candidate_id"]: s for s in scored}
    assert by_id[good]["matched_by"] == by_id[bad]["matched_by"] == "reachability"
    assert (by_id[good]["category"], by_id[bad]["category"]) == (
        "agreed",
        "blocked_then_resolved",
    )
    assert by_id[bad]["predicted"] == "would_block"
    for candidate_id in (good, bad):
        candidate = world.candidate(candidate_id)
        assert candidate["status"] == "integrated"
        assert candidate["reason"] == "landed on main by a push during shadow"
    again = world.post("/v1/predictions/score", {}, world.integrator).json()
    assert again == {"scored": []}
    assert len(world.events("prediction_scored")) == 2


def test_a_squash_merge_of_a_predicted_candidate_is_scored_by_patch_id_on_evaluate(
    world: WorkerWorld,
) -> None:
    """The squashed sha never reaches main; the same patch does, found by patch-id."""
    candidate = world.ready("squashed", path="feature.txt", content="a\nb\nc\n")
    assert world.run_worker("--once").returncode == 0
    world.push_to_main("other.txt", "unrelated\n", "something else landed first")
    sha = world.candidate(candidate)["sha"]
    git("merge", "-q", "--squash", sha, cwd=world.canonical.work)
    git("commit", "-q", "-m", "squash of feat/squashed", cwd=world.canonical.work)
    git("push", "-q", "origin", "main", cwd=world.canonical.work)

    response = world.post("/v1/queue/evaluate", {}, world.operator)

    assert response.status_code == 200, response.text
    assert world.candidate(candidate)["status"] == "integrated"
    (event,) = world.events("prediction_scored")
    assert event.fields["matched_by"] == "patch_id"
    assert event.fields["main_sha"] == world.canonical.head()
    assert (event.fields["predicted"], event.fields["agreed"]) == ("would_integrate", True)


def test_a_candidate_already_squashed_onto_main_is_closed_as_already_integrated(
    world: WorkerWorld,
) -> None:
    """A squash integration that would change nothing means the content is on main."""
    candidate = world.ready("landed", path="landed.txt", content="x\n")
    sha = world.candidate(candidate)["sha"]
    git("merge", "-q", "--squash", sha, cwd=world.canonical.work)
    git("commit", "-q", "-m", "landed by hand", cwd=world.canonical.work)
    git("push", "-q", "origin", "main", cwd=world.canonical.work)
    before = refs_of(world.canonical.bare)

    result = world.run_worker("--once", "--merge-method", "squash")

    assert result.returncode == 0, result.stderr
    assert world.candidate(candidate)["status"] == "integrated"
    (completed,) = world.events("integration_completed")
    assert completed.fields["main_sha"] == world.canonical.head()
    assert refs_of(world.canonical.bare) == before


def test_the_worker_fences_itself_and_does_not_report_past_its_renew_deadline(
    world: WorkerWorld, tmp_path: Path
) -> None:
    """Its monotonic clock jumps past the deadline during the check: no outcome is sent."""
    candidate = world.ready("fenced")
    jumped = tmp_path / "clock-jumped"
    settings = world.settings.model_copy(
        update={"url": world.service.url, "token": world.integrator_token}
    )
    options = WorkerOptions(
        repo=str(world.canonical.bare),
        workspace=tmp_path / "in-process",
        checks=(CheckSpec("check", f"touch {jumped}"),),
        once=True,
        holder="stalled",
    )
    # No background renewals: the only thing that moves is the clock the self-fence reads.
    keeper = LeaseKeeper.from_settings(
        settings,
        "stalled",
        background=False,
        clock=lambda: time.monotonic() + (60.0 if jumped.exists() else 0.0),
    )
    with pytest.raises(WorkerExit) as stopped:
        Worker(settings, options, keeper=keeper).run()
    assert stopped.value.code == 1 and "self-fence" in stopped.value.message
    assert world.events("would_integrate", "would_block") == []
    assert world.candidate(candidate)["status"] == "in_progress"


def test_a_shadow_prediction_survives_a_forced_cutover_and_a_rollback_and_is_made_again(
    world: WorkerWorld,
) -> None:
    """Predict, cutover (forced), rollback, predict again: the second outcome is recorded."""
    candidate = world.ready("round-trip")
    assert world.run_worker("--once").returncode == 0
    assert world.candidate(candidate)["status"] == "predicted"
    forced = world.post("/v1/cutover", {"reason": "try it", "force": True}, world.operator)
    assert forced.status_code == 200, forced.text
    assert world.candidate(candidate)["status"] == "queued"
    back = world.post("/v1/rollback", {"reason": "undo"}, world.operator)
    assert back.status_code == 200, back.text

    result = world.run_worker("--once")

    assert result.returncode == 0, result.stderr
    assert world.candidate(candidate)["status"] == "predicted"
    predictions = world.events("would_integrate")
    assert [e.fields["candidate_id"] for e in predictions] == [candidate, candidate]
    assert len({e.fields["epoch"] for e in predictions}) == 2


def test_a_worker_with_a_token_of_another_role_says_so_in_one_line_and_exits_refused(
    world: WorkerWorld, tokens: TokenMaker
) -> None:
    """No raw JSON: what was refused, the role the token has and the one it needs; exit 1."""
    env = {**world.worker_env(), "INTEGRATOR_TOKEN": tokens("reporter", name="tour-reporter")}
    result = subprocess.run(
        world.worker_args("--once"), env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "{" not in last
    assert "lease" in last and "reporter" in last and "needs integrator" in last


def test_a_forged_candidate_trailer_on_main_does_not_mark_the_candidate_integrated(
    world: WorkerWorld,
) -> None:
    """A trailer explains a commit only with a matching registration (none in shadow): the
    candidate whose id a human commit on main names is predicted like any other."""
    candidate = world.ready("forged", path="feature.txt", content="real work\n")
    forged = (
        "unrelated change\n\n"
        f"Integrator-Candidate: {candidate}\nIntegrator-Epoch: 1\nIntegrator-Attempt: made-up\n"
    )
    world.push_to_main("other.txt", "something else\n", forged)

    result = world.run_worker("--once")

    assert result.returncode == 0, result.stderr
    assert world.candidate(candidate)["status"] == "predicted"
    assert world.events("integration_completed") == []
    (prediction,) = world.events("would_integrate")
    assert prediction.fields["candidate_id"] == candidate


def test_the_service_refuses_already_integrated_for_content_it_does_not_find_on_main(
    world: WorkerWorld,
) -> None:
    """The worker's word is not enough: neither reachable, nor the same patch, nor registered."""
    candidate = world.ready("claimed")
    grant = world.post("/v1/lease/acquire", {"holder": "liar"}, world.integrator).json()
    body = {"epoch": grant["epoch"], "token": grant["token"]}
    handed = world.post("/v1/queue/next", body, world.integrator).json()
    assert handed["id"] == candidate

    claim = world.post(
        f"/v1/candidates/{candidate}/outcome",
        {**body, "outcome": "already_integrated", "attempt": "a", "main_sha": "0" * 40},
        world.integrator,
    )

    assert claim.status_code == 409, claim.text
    assert claim.json()["code"] == "content_not_on_main"
    assert world.candidate(candidate)["status"] == "in_progress"
    assert world.events("integration_completed") == []


def test_changes_on_main_inside_a_larger_commit_are_predicted_when_the_service_cannot_confirm(
    world: WorkerWorld,
) -> None:
    """The merge changes nothing, but no commit of main has the candidate's patch: the
    service refuses already_integrated and the worker reports the clean merge instead."""
    candidate = world.ready("folded", path="folded.txt", content="folded\n")
    git("checkout", "-q", "main", cwd=world.canonical.work)
    (world.canonical.work / "folded.txt").write_text("folded\n")
    (world.canonical.work / "more.txt").write_text("and more\n")
    git("add", "folded.txt", "more.txt", cwd=world.canonical.work)
    git(
        "commit", "-q", "-m", "a bigger change that happens to contain it", cwd=world.canonical.work
    )
    git("push", "-q", "origin", "main", cwd=world.canonical.work)

    result = world.run_worker("--once")

    assert result.returncode == 0, result.stderr
    assert world.candidate(candidate)["status"] == "predicted"
    (prediction,) = world.events("would_integrate")
    assert "changes nothing" in prediction.fields["diagnostics"][0]
