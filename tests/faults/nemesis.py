"""The nemesis: seeded random faults, one at a time, each injected, held and healed.

While the hook cannot reach any service (every replica down, or the hook pointed at a dead
port) it has people push through the hook (`during_outage`): main, a branch, and sometimes
main under the operator's break-glass override.

Every fault runs under `lock`: an operator's mode change takes the lock too, so that a
mode change is never made while the hook cannot reach the service (the hook would keep
deciding from the last mode it saw, which is the documented fallback, not a bug).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable

from tests.faults.pgcluster import PgCluster
from tests.faults.world import FaultWorld

log = logging.getLogger("nemesis")


class Nemesis:
    def __init__(
        self, world: FaultWorld, seed: int, cluster: PgCluster | None, paused: set[int]
    ) -> None:
        self.paused = paused
        self.world = world
        self.cluster = cluster
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.journal: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="nemesis")
        self.faults: dict[str, Callable[[float], str]] = {
            "kill_worker": self.kill_worker,
            "pause_worker": self.pause_worker,
            "kill_replica": self.kill_replica,
            "pause_replica": self.pause_replica,
            "hook_unreachable": self.hook_unreachable,
            "cut_worker_network": self.cut_worker_network,
        }
        if cluster is not None:
            self.faults["restart_postgres"] = self.restart_postgres
        self.faults["all_replicas_down"] = self.all_replicas_down
        self.errors: list[str] = []
        #: Pushes to make while the hook has no service (set by the test: People).
        self.during_outage: Callable[[], str] = lambda: "no pushes"

    def start(self) -> Nemesis:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _run(self) -> None:
        while not self._stop.wait(self.random.uniform(1.0, 3.0)):
            name = self.random.choice(sorted(self.faults))
            hold = self.random.uniform(0.5, 4.0)
            with self.lock:
                began = time.time()
                try:
                    what = self.faults[name](hold)
                except Exception as exc:  # a failed heal must fail the test, not hide
                    self.errors.append(f"{name}: {exc!r}")
                    what = f"error {exc!r}"
            self.injected[name] += 1
            self.journal.append((began, name, what))
            log.info("fault %s: %s", name, what)

    # -- the faults: each returns what it did ---------------------------------------------

    def kill_worker(self, hold: float) -> str:
        self.world.stop_worker()
        time.sleep(hold)
        self.world.start_worker()
        return f"SIGKILL worker, restarted after {hold:.1f}s"

    def pause_worker(self, hold: float) -> str:
        worker = self.world.worker
        if worker is None or worker.poll() is not None:
            self.world.ensure_worker()
            return "worker was not running: restarted"
        os.kill(worker.pid, signal.SIGSTOP)
        time.sleep(hold)
        os.kill(worker.pid, signal.SIGCONT)
        return f"SIGSTOP worker {hold:.1f}s"

    def kill_replica(self, hold: float) -> str:
        replica = self.random.choice(self.world.replicas)
        assert replica.process is not None
        replica.process.kill()
        replica.process.wait(timeout=10)
        time.sleep(hold)
        self.world.start_again(replica)
        return f"SIGKILL replica :{replica.port}, restarted after {hold:.1f}s"

    def pause_replica(self, hold: float) -> str:
        replica = self.random.choice(self.world.replicas)
        assert replica.process is not None
        self.paused.add(replica.port)
        os.kill(replica.process.pid, signal.SIGSTOP)
        time.sleep(hold)
        os.kill(replica.process.pid, signal.SIGCONT)
        time.sleep(0.5)  # what it had queued is answered before it counts as running
        self.paused.discard(replica.port)
        return f"SIGSTOP replica :{replica.port} {hold:.1f}s"

    def all_replicas_down(self, hold: float) -> str:
        """SIGKILL every replica at once: neither the hook nor the worker has a service."""
        started = time.monotonic()
        for replica in self.world.replicas:
            assert replica.process is not None
            replica.process.kill()
            replica.process.wait(timeout=10)
        pushes = self.during_outage()
        time.sleep(max(0.0, hold - (time.monotonic() - started)))
        down = time.monotonic() - started
        for replica in self.world.replicas:
            self.world.start_again(replica)
        return (f"SIGKILL all {len(self.world.replicas)} replicas, restarted after {down:.1f}s "
                f"({pushes})")  # fmt: skip

    def hook_unreachable(self, hold: float) -> str:
        started = time.monotonic()
        url = self.world.hook_url
        self.world.point_hook(self.world.dead_url())
        pushes = self.during_outage()
        time.sleep(max(0.0, hold - (time.monotonic() - started)))
        self.world.point_hook(url)
        return f"hook pointed at a dead port {time.monotonic() - started:.1f}s ({pushes})"

    def cut_worker_network(self, hold: float) -> str:
        self.world.proxy.cut()
        time.sleep(hold)
        self.world.proxy.restore()
        return f"worker's connections cut {hold:.1f}s"

    def restart_postgres(self, hold: float) -> str:
        assert self.cluster is not None
        started = time.monotonic()
        self.cluster.restart()
        return f"pg_ctl restart ({time.monotonic() - started:.1f}s)"
