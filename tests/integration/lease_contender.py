"""One stress-test contender: hold the lease through `LeaseKeeper`, log every change.

Run by tests/integration/test_lease_stress.py as `python -m
tests.integration.lease_contender HOLDER LOG [SEED]`, with INTEGRATOR_URL,
INTEGRATOR_TOKEN and the lease timings in its environment (never on argv).
Each line of LOG is one JSON change — acquired, renewed, self_fenced, lost,
released — with the SQL times the service answered; every line is written
through at once, so a SIGKILL loses nothing already logged.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from typing import Any

from integrator.settings import get_settings
from integrator.worker.lease_client import LeaseChange, LeaseKeeper

RETRY_INTERVAL = 0.5


def main(holder: str, log_path: str, seed: int) -> None:
    rng = random.Random(seed)
    lock = threading.Lock()
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - open for the process's life

    def write(record: dict[str, Any]) -> None:
        with lock:
            log.write(json.dumps({"holder": holder, "wall_ms": time.time_ns() // 10**6, **record}))
            log.write("\n")

    def on_change(change: LeaseChange) -> None:
        write(
            {
                "kind": change.kind,
                "epoch": change.epoch,
                "at_ms": change.at_ms,
                "expires_at_ms": change.expires_at_ms,
            }
        )

    keeper = LeaseKeeper.from_settings(
        get_settings(), holder, retry_interval=RETRY_INTERVAL, on_change=on_change, rng=rng
    )
    while True:
        keeper.acquire()
        epoch = keeper.epoch
        hold_until = time.monotonic() + rng.uniform(0.2, 0.8)
        while keeper.epoch == epoch and time.monotonic() < hold_until:
            if not keeper.fenced_ok():
                write({"kind": "self_fenced", "epoch": epoch})
                break  # a worker would stop before any irreversible step here
            time.sleep(0.02)
        if keeper.epoch == epoch:
            # From here on this holder acts no more: a kill before the answer is logged
            # must not stretch what it believed past the release the service committed.
            write({"kind": "releasing", "epoch": epoch})
            keeper.release()
        time.sleep(rng.uniform(0.0, 0.3))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
