"""A long-running worker started while the service is away (its supervisor restarted it
during an outage) waits for the service, as it waits for the lease, instead of exiting 3
(found by the fault test)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrator.settings import Settings
from tests.faults.proxy import CuttableProxy
from tests.support import TokenMaker
from tests.worker_support import WorkerWorld, wait_for


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    world = WorkerWorld(settings, tmp_path, tokens).start()
    try:
        yield world
    finally:
        world.close()


def test_a_worker_started_during_an_outage_waits_for_the_service_then_works(
    world: WorkerWorld,
) -> None:
    proxy = CuttableProxy([world.service.port]).start()
    proxy.cut()
    world.service.url, service_url = proxy.url, world.service.url  # the worker's way in
    worker = world.start_worker()
    world.service.url = service_url
    try:
        time.sleep(10.0)  # past the worker's start and its own retries of one call (~3 s)
        proxy.restore()
        candidate = world.ready("after")
        predicted = wait_for(
            lambda: (
                worker.poll() is not None or world.candidate(candidate)["status"] == "predicted"
            ),
            60,
            "a prediction",
        )
        assert predicted and worker.poll() is None, (world.tmp_path / "worker.log").read_text()[
            -2000:
        ]
    finally:
        worker.kill()
        worker.wait()
        proxy.close()
