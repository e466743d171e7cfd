"""The blocked flow, end to end: a blocked candidate never wedges the queue, its author gets a
follow-up that says what to do, and after the fix it integrates in its original turn.

Real processes throughout: the service, `integrator worker` pushing main through the installed
hooks in cutover, the CLI. Order is judged from the canonical repository's main itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integrator.settings import Settings
from tests.builders import branch_pushed, finalize_ready
from tests.gitrepos import git
from tests.support import TokenMaker, run_cli, settings_env
from tests.worker_support import WorkerWorld


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    with WorkerWorld(settings, tmp_path, tokens).start().guard() as world:
        yield world


def cli(world: WorkerWorld, role: str, *args: str) -> Any:
    env = settings_env(
        world.settings, INTEGRATOR_URL=world.service.url, INTEGRATOR_TOKEN=world.tokens(role)
    )
    return run_cli(*args, env=env)


def conflicting(world: WorkerWorld, slug: str) -> int:
    """A queued candidate whose branch and main both change `shared.txt`."""
    candidate = world.ready(slug, path="shared.txt", content=f"{slug}'s version\n")
    world.push_to_main("shared.txt", f"main's version, against {slug}\n", "main edits shared.txt")
    return candidate


def fix_and_submit(world: WorkerWorld, slug: str) -> dict[str, Any]:
    """The author merges main into the branch, resolves, pushes and submits the new head."""
    branch, work = f"feat/{slug}", world.canonical.work
    git("checkout", "-q", branch, cwd=work)
    git("fetch", "-q", "origin", cwd=work)
    git("merge", "-q", "-X", "theirs", "origin/main", "-m", "merge main", cwd=work)
    (work / "shared.txt").write_text(f"{slug}'s version, on top of main's\n")
    git("commit", "-qam", f"resolve shared.txt for {slug}", cwd=work)
    git("push", "-q", "origin", branch, cwd=work)
    sha = git("rev-parse", "HEAD", cwd=work)
    git("checkout", "-q", "main", cwd=work)
    for envelope in (
        branch_pushed(branch, sha, key=f"fix-{sha}"),
        finalize_ready(slug, branch, sha),
    ):
        response = world.post("/v1/events", envelope, world.reporter)
        assert response.status_code == 201, response.text
    return dict(response.json()["candidate"])


def followups(world: WorkerWorld, **params: Any) -> list[dict[str, Any]]:
    return list(world.get("/v1/followups", **params)["items"])


def landed_slugs(world: WorkerWorld, since: str) -> list[str]:
    """The slugs of the integration commits on main's first-parent line after `since`."""
    subjects = git("log", "--first-parent", "--reverse", "--format=%s", f"{since}..main",
                   cwd=world.canonical.bare).splitlines()  # fmt: skip
    return [s.split("(")[1].split(")")[0] for s in subjects if s.startswith("Merge feat/")]


def test_a_conflict_blocks_with_evidence_the_queue_moves_on_and_the_fix_keeps_its_turn(
    world: WorkerWorld,
) -> None:
    blocked = conflicting(world, "alpha")
    position = world.candidate(blocked)["position"]
    world.ready("bravo")
    world.cutover()

    assert world.run_worker("--once").returncode == 0
    assert world.candidate(blocked)["status"] == "blocked"
    (followup,) = followups(world)
    assert followup["candidate_id"] == blocked and followup["status"] == "open"
    assert {"kind": "conflict", "path": "shared.txt"}.items() <= followup["conflict_evidence"][
        0
    ].items()
    assert "integrator submit --slug alpha" in followup["next_action"]

    listed = cli(world, "reader", "blocked", "list")
    assert listed.returncode == 0, listed.stderr
    assert "follow-up" in listed.stdout and "shared.txt" in listed.stdout
    assert "next: merge main into feat/alpha" in listed.stdout
    shown = json.loads(cli(world, "reader", "queue", "show", "alpha", "--json").stdout)
    assert shown["followup"]["id"] == followup["id"]
    again = cli(world, "reporter", "submit", "--slug", "alpha", "--branch", "feat/alpha")
    assert again.returncode == 0, again.stderr
    assert "duplicate" in again.stdout and "`integrator resume alpha`" in again.stdout

    # Later work queues behind the blocked one's turn; the fix takes that turn back.
    later = world.ready("charlie")
    start = world.canonical.head()
    successor = fix_and_submit(world, "alpha")
    assert successor["status"] == "queued" and successor["position"] == position
    assert world.candidate(later)["position"] > position
    (moved,) = followups(world)
    assert moved["candidate_id"] == successor["id"]

    assert world.run_worker("--once").returncode == 0
    assert landed_slugs(world, start) == ["alpha", "charlie"]
    assert followups(world) == []
    (resolved,) = followups(world, status="resolved")
    assert resolved["id"] == followup["id"] and resolved["resolution"] == "integrated"
    assert [e.fields["status"] for e in world.events("followup_opened", "followup_updated",
            "followup_resolved")] == ["open", "open", "resolved"]  # fmt: skip


def test_a_resume_that_still_conflicts_reblocks_once_and_updates_the_same_followup(
    world: WorkerWorld,
) -> None:
    blocked = conflicting(world, "delta")
    world.cutover()
    assert world.run_worker("--once").returncode == 0
    (first,) = followups(world)

    resumed = cli(world, "reporter", "resume", "delta")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed:" in resumed.stdout and "queued" in resumed.stdout
    assert world.run_worker("--once").returncode == 0

    assert world.candidate(blocked)["status"] == "blocked"
    (again,) = followups(world)
    assert again["id"] == first["id"] and again["blocks"] == 2
    assert len(world.events("integration_blocked")) == 2
    assert len(world.events("followup_opened")) == 1
    reblocked = world.events("followup_updated")[-1].fields
    assert reblocked["change"] == "blocked again" and reblocked["same_evidence"] is True


def test_resume_to_the_back_gives_the_turn_up_and_is_recorded(world: WorkerWorld) -> None:
    blocked = conflicting(world, "echo")
    world.cutover()
    assert world.run_worker("--once").returncode == 0
    later = world.ready("foxtrot")
    git("checkout", "-q", "main", cwd=world.canonical.work)

    resumed = world.post("/v1/slugs/echo/resume", {"to_back": True}, world.reporter)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["position"] > world.candidate(later)["position"]
    (moved,) = world.events("candidate_moved_to_back")
    assert moved.fields["candidate_id"] == blocked
    assert moved.fields["to_position"] == resumed.json()["position"]


def test_in_shadow_a_conflict_is_a_prediction_and_opens_no_followup(world: WorkerWorld) -> None:
    predicted = conflicting(world, "golf")
    assert world.run_worker("--once").returncode == 0
    assert world.candidate(predicted)["status"] == "predicted"
    (prediction,) = world.events("would_block")
    assert prediction.fields["conflict_evidence"][0]["path"] == "shared.txt"
    assert followups(world, status=["open", "resolved", "closed"]) == []


def test_resume_answers_what_to_do_when_there_is_nothing_to_resume(world: WorkerWorld) -> None:
    world.ready("hotel")
    queued = world.post("/v1/slugs/hotel/resume", {}, world.reporter)
    assert queued.status_code == 409
    assert "already waits its turn at position" in queued.json()["message"]
    unknown = world.post("/v1/slugs/nobody/resume", {}, world.reporter)
    assert unknown.status_code == 404
    reader = {"Authorization": f"Bearer {world.tokens('reader')}"}
    assert world.post("/v1/slugs/hotel/resume", {}, reader).status_code == 403
    refused = cli(world, "reporter", "resume", "hotel")
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1


def test_an_operator_sends_back_a_handout_of_a_gone_holder_without_waiting_for_the_ttl(
    world: WorkerWorld,
) -> None:
    candidate = world.ready("india")
    grant = world.post("/v1/lease/acquire", {"holder": "bot-1"}, world.integrator).json()
    fence = {"epoch": grant["epoch"], "token": grant["token"]}
    handed = world.post("/v1/queue/next", fence, world.integrator)
    assert handed.status_code == 200 and handed.json()["id"] == candidate

    live = world.post("/v1/slugs/india/resume", {}, world.operator)
    assert live.status_code == 409
    assert "integrator lease release --force" in live.json()["message"]
    closing = world.post("/v1/slugs/india/close", {"reason": "x"}, world.operator)
    assert closing.status_code == 409 and "lease release --force" in closing.json()["message"]

    released = world.post("/v1/lease/force-release", {"reason": "worker died"}, world.operator)
    assert released.status_code == 200, released.text
    by_reporter = world.post("/v1/slugs/india/resume", {}, world.reporter)
    assert by_reporter.status_code == 409 and "an operator" in by_reporter.json()["message"]
    back = world.post("/v1/slugs/india/resume", {}, world.operator)
    assert back.status_code == 200, back.text
    assert (
        back.json()["status"] == "queued" and back.json()["position"] == handed.json()["position"]
    )


def test_an_operator_closes_a_followup_and_closing_the_candidate_ends_its_followup(
    world: WorkerWorld,
) -> None:
    conflicting(world, "juliet")
    conflicting(world, "kilo")
    world.cutover()
    assert world.run_worker("--once").returncode == 0
    juliet, kilo = followups(world)

    closed = cli(world, "operator", "blocked", "close", "juliet", "--reason", "handled by hand")
    assert closed.returncode == 0, closed.stderr
    by_reader = world.post(f"/v1/followups/{kilo['id']}/close", {"reason": "x"},
                           {"Authorization": f"Bearer {world.tokens('reader')}"})  # fmt: skip
    assert by_reader.status_code == 403
    assert world.post("/v1/slugs/kilo/close", {"reason": "abandoned"}, world.operator).is_success

    ended = {f["slug"]: f for f in followups(world, status="closed")}
    assert ended["juliet"]["reason"] == "handled by hand"
    assert ended["kilo"]["reason"] == "candidate closed: abandoned"
    assert followups(world) == []
    twice = world.post(f"/v1/followups/{juliet['id']}/close", {"reason": "x"}, world.operator)
    assert twice.status_code == 409
