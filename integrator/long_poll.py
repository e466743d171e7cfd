"""The holder's long poll: `take_next`, and when nothing can be handed out, a wait for it.

An idle holder asks `queue/next` with a wait instead of sleeping between polls, so that a
candidate queued while the queue is empty is handed out at once: a queueing committed in this
process wakes the waiter (`queue_signal`); one committed by another replica is found by looking
at the database again every `RECHECK_SECONDS` — the database is the truth.
"""

from __future__ import annotations

import time
from collections.abc import Collection

from sqlalchemy.orm import Session, sessionmaker

from integrator import controls, queue_signal
from integrator.admission import CanonicalRepo
from integrator.db import read_session
from integrator.processing import Handout, take_next
from integrator.queue import handed_to, next_queued
from integrator.settings import Settings

#: A long-polling holder looks at the database again at least this often (seconds): another
#: replica's admissions do not wake this process.
RECHECK_SECONDS = 0.5
#: The longest wait, as a fraction of the lease's TTL: a waiting holder keeps renewing.
WAIT_TTL_FRACTION = 0.25


def take_next_waiting(
    sessions: sessionmaker[Session], settings: Settings, repo: CanonicalRepo, *, epoch: int,
    token: str, by: str, wait_seconds: float, window: int = 1, holding: Collection[int] = (),
) -> Handout | None:  # fmt: skip
    """`take_next`, and when nothing is queued, wait up to `wait_seconds` for a candidate.

    Each look is a transaction of its own; between looks the request holds no transaction
    and no connection. It looks again when a candidate is queued in this process, and at
    least every `RECHECK_SECONDS`; the git mirror is fetched only when the database shows a
    queued candidate. The wait never exceeds a quarter of the lease TTL, so that the lease
    (renewed meanwhile) is far from expiry when the answer arrives."""
    deadline = time.monotonic() + min(wait_seconds, settings.lease_ttl_seconds * WAIT_TTL_FRACTION)
    seen = queue_signal.generation()
    repo.refresh()
    while True:
        with sessions() as session, session.begin():
            handout = take_next(session, settings, repo, epoch=epoch, token=token, by=by,
                                window=window, holding=holding)  # fmt: skip
            if handout is not None:
                session.expunge(handout.candidate)  # answered from what was read, after commit
                return handout
        while (left := deadline - time.monotonic()) > 0:
            seen = queue_signal.wait(seen, min(left, RECHECK_SECONDS))
            if _dequeuable(sessions, settings, epoch, window):
                break
        else:
            return None
        repo.refresh()


def _dequeuable(
    sessions: sessionmaker[Session], settings: Settings, epoch: int, window: int
) -> bool:
    """A cheap read (no write lock, no fence): would `take_next` find a queued candidate now,
    with no pause in force and room in the holder's window? `take_next` fences and decides."""
    with read_session(sessions) as session:
        if next_queued(session, settings.repository_name) is None:
            return False
        if len(handed_to(session, settings.repository_name, epoch)) >= window:
            return False
        return controls.pause_in_force(session, settings) is None
