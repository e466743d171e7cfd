"""A push the hook refused only because it could not reach the service is retried over a few
seconds, not four times in one: a short outage of the service must not block candidates."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrator.settings import Settings
from tests.support import TokenMaker, free_port
from tests.worker_support import WorkerWorld, wait_for


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    with WorkerWorld(settings, tmp_path, tokens).start().guard(deadline=1.0) as world:
        yield world


def point_hook(world: WorkerWorld, url: str) -> None:
    path = world.canonical.bare / "integrator" / "hook.json"
    config = json.loads(path.read_text())
    config["url"] = url
    path.write_text(json.dumps(config))


def test_a_candidate_outlives_a_three_second_outage_of_the_hooks_service(
    world: WorkerWorld,
) -> None:
    """The hook falls back (cutover: refused) for 3 s; the candidate then lands, unblocked."""
    world.cutover()
    candidate = world.ready("one")
    point_hook(world, f"http://127.0.0.1:{free_port()}")
    worker = world.start_worker()
    try:
        wait_for(lambda: world.registrations(), 30, "the worker's first registration")
        time.sleep(3.0)
        point_hook(world, world.service.url)
        ended = wait_for(
            lambda: (c := world.candidate(candidate))["status"] in ("integrated", "blocked") and c,
            60,
            "the candidate's outcome",
        )
    finally:
        worker.kill()
        worker.wait()
    assert ended["status"] == "integrated", ended
