"""Follow-ups as rules: one open per blocked episode of a slug, linked to the candidate it
follows, moved to a successor, ended by integration or by an operator.

In-process service on a real database and a real canonical repository; the holder reports
outcomes through the API as the worker does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from integrator.models import Event, Followup
from integrator.settings import Settings
from tests.builders import branch_pushed, finalize_ready
from tests.integration.test_processing import Holder, World
from tests.support import TokenMaker


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[World]:
    with World.serving(settings, tmp_path, tokens) as world:
        yield world


CONFLICT = [{"kind": "conflict", "path": "shared.txt", "conflict": "content"}]


def block(holder: Holder, candidate_id: int, attempt: str, evidence: Any = None) -> Any:
    response = holder.outcome(
        candidate_id,
        "blocked",
        attempt=attempt,
        conflict_evidence=evidence or CONFLICT,
        diagnostics=["conflicts with main in shared.txt"],
        next_action="merge main into the branch, resolve shared.txt, push, submit again",
    )
    assert response.status_code == 200, response.text
    return response.json()


def blocked_one(world: World, engine: Engine, slug: str = "alpha") -> tuple[Holder, int]:
    world.ready(slug)
    world.set_mode_cutover(engine)
    holder = world.holder()
    handed = holder.next().json()
    block(holder, handed["id"], "a1")
    return holder, handed["id"]


def followups(world: World, **params: Any) -> list[dict[str, Any]]:
    response = world.client.get("/v1/followups", params=params, headers=world.operator)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def types(engine: Engine, prefix: str) -> list[str]:
    with Session(engine) as session:
        rows = session.scalars(
            select(Event.type).where(Event.type.startswith(prefix)).order_by(Event.seq)
        )
        return list(rows)


def test_a_block_opens_one_followup_linked_to_its_candidate(world: World, engine: Engine) -> None:
    _, candidate = blocked_one(world, engine)
    (followup,) = followups(world)
    assert followup["candidate_id"] == candidate and followup["blocks"] == 1
    assert followup["conflict_evidence"] == CONFLICT
    assert followup["next_action"].startswith("merge main")
    assert types(engine, "followup_") == ["followup_opened"]


def test_reblocking_updates_the_open_followup_and_says_whether_the_evidence_changed(
    world: World, engine: Engine
) -> None:
    holder, _ = blocked_one(world, engine)
    resumed = world.client.post("/v1/slugs/alpha/resume", json={}, headers=world.reporter)
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    block(holder, holder.next().json()["id"], "a2")
    resumed = world.client.post("/v1/slugs/alpha/resume", json={}, headers=world.reporter)
    other = [{"kind": "check", "command": "make test", "exit_code": 2, "output_tail": "FAIL"}]
    block(holder, holder.next().json()["id"], "a3", other)

    (followup,) = followups(world)
    assert followup["blocks"] == 3 and followup["attempt"] == "a3"
    assert followup["conflict_evidence"] == other
    with Session(engine) as session:
        updates = session.scalars(
            select(Event).where(Event.type == "followup_updated").order_by(Event.seq)
        )
        same = [e.fields.get("same_evidence") for e in updates if "same_evidence" in e.fields]
    assert same == [True, False]


def test_the_database_admits_one_open_followup_per_slug(world: World, engine: Engine) -> None:
    _, candidate = blocked_one(world, engine)
    with Session(engine) as session, pytest.raises(IntegrityError):
        session.add(
            Followup(
                repository="canonical",
                slug="alpha",
                open_slug="alpha",
                candidate_id=candidate,
                status="open",
                next_action="x",
            )
        )
        session.commit()


def test_a_successor_takes_the_followup_and_its_integration_resolves_it(
    world: World, engine: Engine
) -> None:
    holder, blocked = blocked_one(world, engine)
    sha = world.canonical.branch("feat/alpha", path="fix.txt", content="fixed\n")
    for envelope in (
        branch_pushed("feat/alpha", sha, key=f"fix-{sha}"),
        finalize_ready("alpha", "feat/alpha", sha),
    ):
        posted = world.client.post("/v1/events", json=envelope, headers=world.reporter)
        assert posted.status_code == 201, posted.text
    successor = posted.json()["candidate"]
    (followup,) = followups(world)
    assert followup["candidate_id"] == successor["id"] != blocked

    handed = holder.next().json()
    assert handed["id"] == successor["id"]
    world.canonical.merge_to_main(sha)
    done = holder.outcome(handed["id"], "already_integrated", attempt="b1")
    assert done.status_code == 200, done.text
    assert followups(world) == []
    (resolved,) = followups(world, status="resolved")
    assert resolved["resolution"] == "integrated" and resolved["candidate_id"] == successor["id"]
    assert types(engine, "followup_") == [
        "followup_opened",
        "followup_updated",
        "followup_resolved",
    ]


def test_after_a_closed_followup_the_next_block_opens_a_new_one(
    world: World, engine: Engine
) -> None:
    holder, _ = blocked_one(world, engine)
    (first,) = followups(world)
    closed = world.client.post(
        f"/v1/followups/{first['id']}/close", json={"reason": "talked to the author"},
        headers=world.operator,
    )  # fmt: skip
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert world.client.post("/v1/slugs/alpha/resume", json={}, headers=world.reporter).is_success
    block(holder, holder.next().json()["id"], "a2")
    (second,) = followups(world)
    assert second["id"] != first["id"] and second["blocks"] == 1


def test_bad_input_to_followups_is_a_4xx_naming_the_field(world: World) -> None:
    bad_status = world.client.get("/v1/followups", params={"status": "stuck"},
                                  headers=world.operator)  # fmt: skip
    assert bad_status.status_code == 422
    assert "status" in bad_status.json()["details"][0]["field"]
    no_reason = world.client.post("/v1/followups/1/close", json={}, headers=world.operator)
    assert no_reason.status_code == 422 and no_reason.json()["details"][0]["field"].endswith(
        "reason"
    )
    missing = world.client.post("/v1/followups/999/close", json={"reason": "x"},
                                headers=world.operator)  # fmt: skip
    assert missing.status_code == 404
    bad_body = world.client.post("/v1/slugs/a/resume", json={"to_back": "maybe"},
                                 headers=world.reporter)  # fmt: skip
    assert bad_body.status_code == 422
