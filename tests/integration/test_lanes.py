"""The hotfix lane: an operator's promotion puts a slug ahead of the normal lane."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integrator.settings import Settings
from tests.builders import branch_pushed, finalize_ready
from tests.integration.test_processing import World
from tests.support import TokenMaker, run_cli, settings_env
from tests.worker_support import WorkerWorld


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[World]:
    with World.serving(settings, tmp_path, tokens) as world:
        yield world


def lane_change(world: World, slug: str, to: str, reason: str = "incident 42") -> Any:
    verb = "promote" if to == "hotfix" else "demote"
    return world.client.post(
        f"/v1/slugs/{slug}/{verb}", json={"reason": reason}, headers=world.operator
    )


def slug_history(world: World, slug: str) -> list[dict[str, Any]]:
    response = world.client.get(f"/v1/slugs/{slug}", headers=world.reporter)
    assert response.status_code == 200, response.text
    history: list[dict[str, Any]] = response.json()["history"]
    return history


def test_a_hotfix_promoted_behind_ten_queued_candidates_is_handed_out_next(world: World) -> None:
    """The hotfix lane is taken first; within a lane position order holds."""
    for n in range(10):
        world.ready(f"routine-{n}")
    world.ready("incident-fix")
    promoted = lane_change(world, "incident-fix", "hotfix")
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["lane"] == "hotfix" and promoted.json()["position"] == 11

    listed = world.client.get("/v1/candidates", headers=world.reporter).json()["items"]
    assert [(c["slug"], c["lane"]) for c in listed[:2]] == [
        ("incident-fix", "hotfix"),
        ("routine-0", "normal"),
    ]
    status = world.client.get("/v1/status", headers=world.reporter).json()
    assert status["queue"]["turns"][0]["slug"] == "incident-fix"
    assert status["queue"]["turns"][0]["lane"] == "hotfix"

    holder = world.holder()
    taken = []
    for _ in range(3):
        body = holder.next().json()
        taken.append(body["slug"])
        assert holder.outcome(body["id"], "would_integrate", attempt="a").status_code == 200
    assert taken == ["incident-fix", "routine-0", "routine-1"]


def test_promotion_and_demotion_are_recorded_with_reason_and_operator(world: World) -> None:
    world.ready("first")
    world.ready("fix")
    assert lane_change(world, "fix", "hotfix", "prod is down").status_code == 200
    demoted = lane_change(world, "fix", "normal", "false alarm")
    assert demoted.status_code == 200 and demoted.json()["lane"] == "normal"
    changes = [e for e in slug_history(world, "fix") if e["type"].startswith("candidate_")]
    lane_events = [e for e in changes if e["type"] in ("candidate_promoted", "candidate_demoted")]
    assert [(e["type"], e["fields"]["reason"], e["fields"]["to_lane"]) for e in lane_events] == [
        ("candidate_promoted", "prod is down", "hotfix"),
        ("candidate_demoted", "false alarm", "normal"),
    ]
    assert all(e["actor"] for e in lane_events)
    holder = world.holder()
    assert holder.next().json()["slug"] == "first"  # demoted: back in position order


def test_a_successor_inherits_its_slugs_lane_and_position(world: World) -> None:
    world.ready("other")
    world.ready("fix")
    assert lane_change(world, "fix", "hotfix").status_code == 200
    sha = world.canonical.branch("feat/fix", content="second try\n")
    for envelope in (branch_pushed("feat/fix", sha), finalize_ready("fix", "feat/fix", sha)):
        response = world.client.post("/v1/events", json=envelope, headers=world.reporter)
        assert response.status_code == 201, response.text
    newest = world.client.get("/v1/slugs/fix", headers=world.reporter).json()["candidate"]
    assert (newest["sha"], newest["lane"], newest["position"]) == (sha, "hotfix", 2)
    assert world.holder().next().json()["sha"] == sha


def test_bad_lane_changes_are_refused_naming_the_field(world: World) -> None:
    world.ready("fix")
    missing = world.client.post("/v1/slugs/fix/promote", json={}, headers=world.operator)
    assert missing.status_code == 422
    assert [d["field"] for d in missing.json()["details"]] == ["reason"]
    empty = lane_change(world, "fix", "hotfix", reason="")
    assert empty.status_code == 422 and empty.json()["details"][0]["field"] == "reason"
    unknown = lane_change(world, "nobody", "hotfix")
    assert unknown.status_code == 404 and "nobody" in unknown.json()["message"]
    assert lane_change(world, "fix", "normal").status_code == 409  # already normal
    assert lane_change(world, "fix", "hotfix").status_code == 200
    again = lane_change(world, "fix", "hotfix")
    assert again.status_code == 409 and "already in the hotfix lane" in again.json()["message"]


def test_readers_and_reporters_cannot_change_lanes(world: World, tokens: TokenMaker) -> None:
    world.ready("fix")
    for role in ("reader", "reporter", "integrator"):
        auth = {"Authorization": f"Bearer {tokens(role)}"}
        for verb in ("promote", "demote"):
            response = world.client.post(
                f"/v1/slugs/fix/{verb}", json={"reason": "mine first"}, headers=auth
            )
            assert response.status_code == 403, (role, verb, response.text)


@pytest.fixture
def real(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    with WorkerWorld(settings, tmp_path, tokens).start().guard() as world:
        yield world


def test_a_promoted_hotfix_integrates_next_through_a_real_worker(real: WorkerWorld) -> None:
    """Real service, CLI and worker: the fix promoted behind ten queued candidates lands first."""
    routine = [real.ready(f"routine-{n}") for n in range(10)]
    fix = real.ready("incident-fix")

    def cli(role: str, *args: str) -> Any:
        env = settings_env(
            real.settings, INTEGRATOR_URL=real.service.url, INTEGRATOR_TOKEN=real.tokens(role)
        )
        return run_cli(*args, env=env)

    refused = cli("reader", "queue", "promote", "incident-fix", "--reason", "mine first")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    promoted = cli("operator", "queue", "promote", "incident-fix", "--reason", "prod is down")
    assert promoted.returncode == 0, promoted.stderr
    assert "promoted:" in promoted.stdout and "incident-fix [hotfix]" in promoted.stdout
    listed = cli("reader", "queue", "list").stdout.splitlines()
    assert "incident-fix [hotfix]" in listed[1]
    assert "incident-fix [hotfix]" in cli("reader", "status").stdout
    history = cli("reader", "queue", "show", "incident-fix").stdout
    assert "candidate_promoted normal -> hotfix by " in history and "prod is down" in history

    real.cutover()
    assert real.run_worker("--once").returncode == 0
    landed = [
        e.fields["candidate_id"]
        for e in real.events("candidate_status_changed")
        if e.fields["to"] == "integrated"
    ]
    assert landed == [fix, *routine]
