"""A speculation window on the service side: a holder that declares `window` W may hold up to
W handouts at once, handed out in queue order; it names those it has (`holding`), so that an
answer lost on the way is handed out again rather than a new one; a lease that ends puts every
one of them back in the queue with its position. Window 1 (the default) is one at a time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integrator.settings import Settings
from tests.integration.test_long_poll import LONG_LEASE, acquire
from tests.support import TokenMaker
from tests.worker_support import WorkerWorld


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    with WorkerWorld(settings, tmp_path, tokens, lease=LONG_LEASE).start() as world:
        yield world


def take(world: WorkerWorld, grant: dict[str, Any], **body: Any) -> dict[str, Any] | None:
    answer = world.post("/v1/queue/next", {**grant, **body}, world.integrator)
    if answer.status_code == 204:
        return None
    assert answer.status_code == 200, answer.text
    handed: dict[str, Any] = answer.json()
    return handed


def test_a_window_of_three_holds_three_handouts_in_queue_order_and_no_fourth(
    world: WorkerWorld,
) -> None:
    ids = [world.ready(slug) for slug in ("one", "two", "three", "four")]
    grant = acquire(world)
    held: list[int] = []
    for _ in range(3):
        handed = take(world, grant, window=3, holding=held)
        assert handed is not None and handed["status"] == "in_progress"
        held.append(handed["id"])
    assert held == ids[:3]
    assert take(world, grant, window=3, holding=held) is None  # the window is full
    assert world.candidate(ids[3])["status"] == "queued"
    done = {**grant, "outcome": "would_integrate", "attempt": "a1",
            "main_sha": world.candidate(ids[0])["main_sha_checked"]}  # fmt: skip
    assert world.post(f"/v1/candidates/{ids[0]}/outcome", done, world.integrator).status_code == 200
    handed = take(world, grant, window=3, holding=held[1:])  # a slot is free again
    assert handed is not None and handed["id"] == ids[3]


def test_a_handout_the_holder_does_not_name_is_handed_out_again_before_a_new_one(
    world: WorkerWorld,
) -> None:
    first, second = world.ready("first"), world.ready("second")
    grant = acquire(world)
    assert (take(world, grant, window=2) or {})["id"] == first
    assert (take(world, grant, window=2) or {})["id"] == first  # its answer was lost
    assert (take(world, grant, window=2, holding=[first]) or {})["id"] == second
    assert (take(world, grant, window=2, holding=[second]) or {})["id"] == first


def test_without_a_window_it_is_one_at_a_time_as_before(world: WorkerWorld) -> None:
    first, second = world.ready("first"), world.ready("second")
    grant = acquire(world)
    assert (take(world, grant) or {})["id"] == first
    assert (take(world, grant) or {})["id"] == first  # a retry: the same handout
    assert take(world, grant, holding=[first]) is None
    assert world.candidate(second)["status"] == "queued"


def test_when_the_lease_ends_every_handout_of_the_window_goes_back_with_its_position(
    world: WorkerWorld,
) -> None:
    ids = [world.ready(slug) for slug in ("one", "two", "three")]
    positions = [world.candidate(i)["position"] for i in ids]
    grant = acquire(world)
    held: list[int] = []
    for _ in ids:
        held.append((take(world, grant, window=3, holding=held) or {})["id"])
    forced = world.post("/v1/lease/force-release", {"reason": "test"}, world.operator)
    assert forced.status_code == 200, forced.text
    successor = acquire(world)
    handed = take(world, successor, window=3)
    assert handed is not None
    assert sorted(handed["requeued"]) == ids
    assert handed["id"] == ids[0]
    assert [world.candidate(i)["position"] for i in ids] == positions


@pytest.mark.parametrize("body", [{"window": 0}, {"window": 33}, {"holding": ["x"]}])
def test_a_window_outside_1_to_32_is_bad_input(world: WorkerWorld, body: dict[str, Any]) -> None:
    grant = acquire(world)
    answer = world.post("/v1/queue/next", {**grant, **body}, world.integrator)
    assert answer.status_code == 422, answer.text
    (field, *_) = [d["field"] for d in answer.json()["details"]]
    assert field.startswith(next(iter(body)))
