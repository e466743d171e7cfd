"""The worker outlives a few seconds without the service: it loses its lease, and comes back
for it once the service answers again, instead of exiting."""

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
    with WorkerWorld(settings, tmp_path, tokens).start() as world:
        yield world


def test_the_worker_survives_its_network_to_the_service_cut_past_its_lease(
    world: WorkerWorld,
) -> None:
    """Cut for 5 s (lease TTL 3 s): the worker is still running after, and integrates."""
    proxy = CuttableProxy([world.service.port]).start()
    world.service.url, service_url = proxy.url, world.service.url  # the worker's way in
    worker = world.start_worker()
    world.service.url = service_url
    try:
        wait_for(lambda: world.lease().get("holder"), 30, "the worker to hold the lease")
        proxy.cut()
        time.sleep(5.0)
        proxy.restore()
        time.sleep(2.0)
        assert worker.poll() is None, (world.tmp_path / "worker.log").read_text()[-2000:]
        candidate = world.ready("after")
        wait_for(lambda: world.candidate(candidate)["status"] == "predicted", 60, "a prediction")
    finally:
        worker.kill()
        worker.wait()
        proxy.close()
