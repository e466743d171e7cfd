"""The service's record of speculative builds: the lease holder says which merge commit it tests
for each handout of its window (`POST /v1/candidates/{id}/speculation`, fenced like an
outcome), and which it threw away; `GET /v1/status` shows the chain under test, `/metrics`
counts builds started, discarded and landed, and a lease that ends discards what it left.

The app runs in process on a real database (SQLite and PostgreSQL) and a real canonical
repository; the landed build is a real merge commit, registered, authorized and landed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from integrator.api.app import create_app
from integrator.settings import Settings
from tests.gitrepos import Canonical
from tests.integration.test_registered_push import MAIN, Holder, World, update
from tests.support import TokenMaker

BASE = "1a2b3c4d5e6f" + "0" * 28


def sha(n: int) -> str:
    return f"{n:040x}"


@pytest.fixture
def world(
    settings: Settings, tmp_path: Path, tokens: TokenMaker, engine: Engine
) -> Iterator[World]:
    canonical = Canonical(tmp_path)
    configured = settings.model_copy(update={"repo": str(canonical.bare)})
    with TestClient(create_app(configured)) as client:
        yield World(client, tokens, canonical, engine)


def take(world: World, holder: Holder, count: int, window: int = 3) -> list[dict[str, Any]]:
    held: list[dict[str, Any]] = []
    for _ in range(count):
        body = {**holder.grant(), "window": window, "holding": [c["id"] for c in held]}
        answer = world.client.post("/v1/queue/next", json=body, headers=holder.auth)
        assert answer.status_code == 200, answer.text
        held.append(answer.json())
    return held


def build_of(depth: int, below: list[int], base: str, commit: str, **extra: Any) -> dict[str, Any]:
    return {"attempt": str(uuid.uuid4()), "state": "testing", "base": base, "sha": commit,
            "depth": depth, "below": below, **extra}  # fmt: skip


def discarded(build: dict[str, Any], reason: str, cause: int | None = None) -> dict[str, Any]:
    return {"attempt": build["attempt"], "state": "discarded", "base": build["base"],
            "sha": build["sha"], "reason": reason, "cause_candidate_id": cause}  # fmt: skip


def say(world: World, holder: Holder, candidate: int, body: dict[str, Any]) -> Any:
    return world.client.post(
        f"/v1/candidates/{candidate}/speculation", json={**holder.grant(), **body},
        headers=holder.auth,
    )  # fmt: skip


def chain(world: World) -> list[dict[str, Any]]:
    answer = world.client.get("/v1/status", headers=world.reporter)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["speculation"]
    return found


def metric(world: World, name: str) -> float:
    text = world.client.get("/metrics", headers=world.reporter).text
    (line,) = [row for row in text.splitlines() if row.startswith(name + " ")]
    return float(line.split()[1])


@pytest.fixture
def three(world: World) -> tuple[Holder, list[dict[str, Any]]]:
    """A holder with a window of three holding three handouts."""
    for slug in ("fix-a", "fix-b", "fix-c"):
        world.ready(slug)
    holder = world.holder()
    return holder, take(world, holder, 3)


def test_the_chain_under_test_is_shown_in_depth_order_with_each_base(
    world: World, three: tuple[Holder, list[dict[str, Any]]]
) -> None:
    """Builds at depth 1, 2, 3 (recorded out of order): status lists them bottom first, each on
    the build below it, and the first on main."""
    holder, (a, b, c) = three
    first = build_of(1, [], BASE, sha(1))
    second = build_of(2, [a["id"]], sha(1), sha(2))
    third = build_of(3, [a["id"], b["id"]], sha(2), sha(3))
    for candidate, build in ((b, second), (a, first), (c, third)):
        answer = say(world, holder, candidate["id"], build)
        assert answer.status_code == 200, answer.text
        assert answer.json()["recorded"] == "speculation_started"
        assert answer.json()["event_id"] >= 1
    shown = chain(world)
    assert [(s["candidate_id"], s["slug"], s["depth"], s["base"], s["sha"]) for s in shown] == [
        (a["id"], "fix-a", 1, BASE, sha(1)),
        (b["id"], "fix-b", 2, sha(1), sha(2)),
        (c["id"], "fix-c", 3, sha(2), sha(3)),
    ]
    assert shown[2]["below"] == [a["id"], b["id"]] and shown[2]["attempt"] == third["attempt"]
    assert all(s["since"].endswith("Z") or "+00:00" in s["since"] for s in shown)
    assert metric(world, "integrator_speculative_builds_started_total") == 3


def test_the_same_record_twice_is_stored_once(
    world: World, three: tuple[Holder, list[dict[str, Any]]]
) -> None:
    holder, (a, *_) = three
    build = build_of(1, [], BASE, sha(1))
    first, again = (say(world, holder, a["id"], build) for _ in range(2))
    assert first.status_code == again.status_code == 200, again.text
    assert first.json()["event_id"] == again.json()["event_id"]
    assert metric(world, "integrator_speculative_builds_started_total") == 1


def test_a_discard_leaves_the_chain_and_the_candidate_in_progress_and_is_counted(
    world: World, three: tuple[Holder, list[dict[str, Any]]]
) -> None:
    """The third build sat on a second that failed: it is discarded (with the cause), leaves
    the chain, is counted; the candidate stays with the holder, who rebuilds it."""
    holder, (a, b, c) = three
    builds = [build_of(1, [], BASE, sha(1)), build_of(2, [a["id"]], sha(1), sha(2)),
              build_of(3, [a["id"], b["id"]], sha(2), sha(3))]  # fmt: skip
    for candidate, build in zip((a, b, c), builds, strict=True):
        assert say(world, holder, candidate["id"], build).status_code == 200
    why = "candidate 2 (fix-b) failed its checks"
    answer = say(world, holder, c["id"], discarded(builds[2], why, cause=b["id"]))
    assert answer.status_code == 200, answer.text
    assert answer.json()["recorded"] == "speculation_discarded"
    assert [s["candidate_id"] for s in chain(world)] == [a["id"], b["id"]]
    assert world.candidate(c["id"])["status"] == "in_progress"
    (event,) = world.events("speculation_discarded")
    assert event.fields["reason"] == why and event.fields["cause_candidate_id"] == b["id"]
    assert metric(world, "integrator_speculative_builds_discarded_total") == 1
    rebuilt = build_of(2, [a["id"]], sha(1), sha(4))
    assert say(world, holder, c["id"], rebuilt).status_code == 200
    assert [(s["candidate_id"], s["depth"]) for s in chain(world)][-1] == (c["id"], 2)


def test_a_build_that_lands_is_counted_landed_and_leaves_the_chain(world: World) -> None:
    """In cutover the tested merge commit is registered, authorized and landed; the
    `integrated` outcome with the build's attempt counts it as a landed speculative build."""
    world.ready("fix-a")
    world.cutover()
    holder = world.holder()
    (candidate,) = take(world, holder, 1)
    attempt = str(uuid.uuid4())
    old, new = world.merge(candidate["sha"], attempt)
    build = {**build_of(1, [], old, new), "attempt": attempt}
    assert say(world, holder, candidate["id"], build).status_code == 200
    registered = holder.register(candidate["id"], old, new, attempt)
    assert registered.status_code == 201, registered.text
    nonce, registration = registered.json()["nonce"], registered.json()["id"]
    assert world.check(nonce, update(old, new))["allow"]
    world.land(MAIN, new)
    world.report(update(old, new))
    done = holder.integrated(candidate["id"], registration, new, attempt)
    assert done.status_code == 200, done.text
    assert chain(world) == []
    assert metric(world, "integrator_speculative_builds_landed_total") == 1
    assert metric(world, "integrator_speculative_builds_started_total") == 1


def test_a_stale_epoch_is_refused_as_lease_lost(
    world: World, three: tuple[Holder, list[dict[str, Any]]]
) -> None:
    holder, (a, *_) = three
    world.force_release()
    answer = say(world, holder, a["id"], build_of(1, [], BASE, sha(1)))
    assert answer.status_code == 409 and answer.json()["code"] == "lease_lost", answer.text
    assert world.events("speculation_started") == []


def test_a_candidate_that_is_not_the_holders_handout_is_refused(world: World) -> None:
    """A queued candidate (not handed out) takes no build record: 409 as for an outcome."""
    taken, waiting = world.ready("fix-a"), world.ready("fix-b")
    assert taken and waiting
    holder = world.holder()
    (handed,) = take(world, holder, 1, window=1)
    queued = next(c for c in world.client.get("/v1/candidates", headers=world.reporter).json()[
        "items"] if c["status"] == "queued")  # fmt: skip
    answer = say(world, holder, queued["id"], build_of(1, [], BASE, sha(1)))
    assert answer.status_code == 409 and answer.json()["code"] == "transition_refused"
    missing = say(world, holder, 999_999, build_of(1, [], BASE, sha(1)))
    assert missing.status_code == 404, missing.text
    assert world.candidate(handed["id"])["status"] == "in_progress"


def test_a_discard_names_a_build_that_was_recorded(
    world: World, three: tuple[Holder, list[dict[str, Any]]]
) -> None:
    holder, (a, b, _) = three
    unknown = discarded(build_of(1, [], BASE, sha(1)), "main moved under the chain")
    answer = say(world, holder, a["id"], unknown)
    assert answer.status_code == 409, answer.text
    build = build_of(1, [], BASE, sha(1))
    assert say(world, holder, a["id"], build).status_code == 200
    elsewhere = say(world, holder, b["id"], discarded(build, "main moved under the chain"))
    assert elsewhere.status_code == 409, elsewhere.text
    other = {**discarded(build, "main moved under the chain"), "sha": sha(9)}
    wrong = say(world, holder, a["id"], other)
    assert wrong.status_code == 422 and wrong.json()["details"][0]["field"] == "sha"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sha": "xyz"}, "sha"),
        ({"base": "a" * 41}, "base"),
        ({"depth": 0}, "depth"),
        ({"depth": 33}, "depth"),
        ({"depth": None}, "depth"),
        ({"attempt": "not-a-uuid"}, "attempt"),
        ({"state": "running"}, "state"),
        ({"below": [7]}, "below"),
        ({"state": "discarded", "depth": None}, "reason"),
        ({"state": "discarded", "reason": " "}, "reason"),
    ],
)
def test_bad_fields_are_refused_naming_the_field(
    world: World,
    three: tuple[Holder, list[dict[str, Any]]],
    change: dict[str, Any],
    field: str,
) -> None:
    holder, (a, *_) = three
    body = {**build_of(1, [], BASE, sha(1)), **change}
    answer = say(world, holder, a["id"], {k: v for k, v in body.items() if v is not None})
    assert answer.status_code == 422, answer.text
    assert field in [d["field"] for d in answer.json()["details"]], answer.json()
    assert world.events("speculation_started") == []


def test_a_new_epoch_discards_the_builds_the_ended_lease_left_under_test(
    world: World, three: tuple[Holder, list[dict[str, Any]]]
) -> None:
    """A force-release ends the holder's lease; at the next grant's first dequeue its three
    handouts go back to the queue, and each build still under test is recorded discarded
    once (the one the holder had discarded itself is not discarded again)."""
    holder, (a, b, c) = three
    builds = [build_of(1, [], BASE, sha(1)), build_of(2, [a["id"]], sha(1), sha(2)),
              build_of(3, [a["id"], b["id"]], sha(2), sha(3))]  # fmt: skip
    for candidate, build in zip((a, b, c), builds, strict=True):
        assert say(world, holder, candidate["id"], build).status_code == 200
    assert (
        say(world, holder, c["id"], discarded(builds[2], "main moved under the chain")).status_code
        == 200
    )
    world.force_release()
    successor = world.holder("bot-2")
    (first,) = take(world, successor, 1, window=1)
    assert first["id"] == a["id"] and sorted(first["requeued"]) == sorted(
        [a["id"], b["id"], c["id"]]
    )
    ended = {e.fields["candidate_id"]: e.fields for e in world.events("speculation_discarded")}
    assert set(ended) == {a["id"], b["id"], c["id"]}
    for candidate, build in ((a, builds[0]), (b, builds[1])):
        fields = ended[candidate["id"]]
        assert fields["reason"] == f"the lease of epoch {holder.epoch} ended"
        assert (fields["attempt"], fields["sha"], fields["epoch"]) == (
            build["attempt"], build["sha"], holder.epoch)  # fmt: skip
        assert fields["cause_candidate_id"] is None
    assert ended[c["id"]]["reason"] == "main moved under the chain"
    assert chain(world) == []
    assert metric(world, "integrator_speculative_builds_discarded_total") == 3


def test_closing_a_handout_an_ended_lease_left_discards_its_build(
    world: World, three: tuple[Holder, list[dict[str, Any]]]
) -> None:
    """An operator closes a candidate whose holder is gone before any new grant: the build it
    had under test is discarded, as the next grant would have done."""
    holder, (a, *_) = three
    build = build_of(1, [], BASE, sha(1))
    assert say(world, holder, a["id"], build).status_code == 200
    world.force_release()
    closed = world.client.post(
        "/v1/slugs/fix-a/close", json={"reason": "abandoned"}, headers=world.operator
    )
    assert closed.status_code == 200, closed.text
    (event,) = world.events("speculation_discarded")
    assert event.fields["attempt"] == build["attempt"]
    assert event.fields["reason"] == f"the lease of epoch {holder.epoch} ended"


def test_a_handout_given_back_discards_its_build_under_test(
    world: World, three: tuple[Holder, list[dict[str, Any]]]
) -> None:
    """A holder that stops gives its handouts back (`requeue`): the build each had under test
    ends there, discarded with the holder's reason, so every started build is accounted for."""
    holder, (a, *_) = three
    build = build_of(1, [], BASE, sha(1))
    assert say(world, holder, a["id"], build).status_code == 200

    given = world.client.post(
        f"/v1/candidates/{a['id']}/outcome",
        json={**holder.grant(), "outcome": "requeue", "reason": "the worker is stopping"},
        headers=holder.auth,
    )

    assert given.status_code == 200, given.text
    (ended,) = world.events("speculation_discarded")
    assert ended.fields["attempt"] == build["attempt"]
    assert ended.fields["reason"] == "given back to the queue: the worker is stopping"
    assert chain(world) == []
    assert metric(world, "integrator_speculative_builds_discarded_total") == 1
