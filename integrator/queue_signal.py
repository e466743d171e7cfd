"""Wakes the holder's long-polling `queue/next` when a candidate becomes `queued` here.

A transaction that moves a candidate to `queued` marks its session; once that transaction
commits, every request waiting in this process is woken to look again. It is only a hint:
another replica's admissions never reach this process, so a waiter also looks again on its
own every fraction of a second — the database is the truth.
"""

from __future__ import annotations

import threading

from sqlalchemy import event
from sqlalchemy.orm import Session

_MARK = "integrator.queued"
_changed = threading.Condition()
_generation = 0


def mark_queued(session: Session) -> None:
    """This transaction queues a candidate: wake the waiters when it commits."""
    session.info[_MARK] = True


def generation() -> int:
    """How many committed queueings this process has seen (compare with `wait`'s answer)."""
    with _changed:
        return _generation


def wait(seen: int, timeout: float) -> int:
    """Block until a queueing after `seen` commits, or `timeout` seconds; the generation now."""
    with _changed:
        _changed.wait_for(lambda: _generation != seen, timeout=max(timeout, 0.0))
        return _generation


def notify() -> None:
    global _generation
    with _changed:
        _generation += 1
        _changed.notify_all()


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop(_MARK, False):
        notify()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_MARK, None)
