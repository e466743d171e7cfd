"""The fence holds: a takeover cannot commit between a holder's check and its write.

Two real connections. A fences (``FOR SHARE`` on PostgreSQL; the write lock of
``BEGIN IMMEDIATE`` on SQLite) and, before it writes, B tries to take the
expired lease over. B must wait until A commits — shown by PostgreSQL's own
lock-wait report, not by timing — and then win with the next epoch; A's next
fenced write is refused. The contrast: a plain ``SELECT`` check lets the
takeover commit under A's feet (docs/decisions/0002).
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from integrator import lease
from integrator.db import make_sessionmaker
from integrator.errors import LeaseLost
from integrator.models import Counter, Lease
from integrator.settings import Settings
from tests.lease_support import later, short_lease


class Takeover(threading.Thread):
    """B: acquire the (expired) lease in its own connection and transaction."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        super().__init__(name="takeover", daemon=True)
        self.sessions, self.settings = sessions, settings
        self.backend_pid: int | None = None
        self.started_sql = threading.Event()
        self.grant: lease.Grant | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.sessions.begin() as session:
                if session.get_bind().dialect.name == "postgresql":
                    pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
                    self.backend_pid = int(pid)
                self.started_sql.set()
                self.grant = lease.acquire(session, self.settings, "bot-b")
        except BaseException as exc:
            self.error = exc
        finally:
            self.started_sql.set()


def wait_until_blocked(engine: Engine, takeover: Takeover) -> None:
    """Until B is waiting for a lock: PostgreSQL says so; SQLite's busy wait is only seen
    from outside (B still running after a pause — a real bug is the only way it is done)."""
    assert takeover.started_sql.wait(10)
    if takeover.backend_pid is None:
        takeover.join(timeout=0.5)
        assert takeover.is_alive(), f"the takeover did not wait: {takeover.error!r}"
        return
    query = text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            waiting = connection.execute(query, {"pid": takeover.backend_pid}).scalar_one()
        if waiting == "Lock":
            assert takeover.is_alive()
            return
        assert takeover.is_alive(), f"the takeover did not wait: {takeover.error!r}"
        time.sleep(0.01)
    raise AssertionError("the takeover never waited for the fenced holder's lock")


def write_under_fence(session: Session, settings: Settings, grant: lease.Grant) -> None:
    lease.fence(session, settings, grant.epoch, grant.token)
    session.add(Counter(name=f"written-by-epoch-{grant.epoch}", value=grant.epoch))


def test_a_takeover_waits_for_the_fenced_write_then_fences_the_old_holder_out(
    engine: Engine, settings: Settings
) -> None:
    """B's takeover blocks on A's fenced transaction, commits after it, and A is refused next."""
    sessions = make_sessionmaker(engine)
    base = short_lease(settings)
    with sessions.begin() as session:
        old = lease.acquire(session, base, "bot-a")

    holder_a = sessions()
    holder_a.begin()
    state = lease.fence(holder_a, base, old.epoch, old.token)  # A checks: live, epoch 1
    assert state.held and state.epoch == 1

    takeover = Takeover(sessions, later(base, 11))  # B sees A's grant expired
    takeover.start()
    wait_until_blocked(engine, takeover)

    holder_a.add(Counter(name="written-by-epoch-1", value=1))  # A's write, still under epoch 1
    holder_a.commit()
    holder_a.close()
    takeover.join(timeout=30)
    assert takeover.error is None and takeover.grant is not None
    assert (takeover.grant.epoch, takeover.grant.previous_holder) == (2, "bot-a")

    with pytest.raises(LeaseLost), sessions.begin() as session:
        write_under_fence(session, later(base, 11), old)
    with sessions() as session:
        assert list(session.scalars(select(Counter.name))) == ["written-by-epoch-1"]


def test_a_plain_select_is_not_a_fence_under_read_committed(
    engine: Engine, settings: Settings
) -> None:
    """Without FOR SHARE, a takeover commits between the check and the write (PostgreSQL)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's BEGIN IMMEDIATE serialises every writer: there is no gap to show")
    sessions = make_sessionmaker(engine)
    base = short_lease(settings)
    with sessions.begin() as session:
        old = lease.acquire(session, base, "bot-a")

    with sessions.begin() as holder_a:
        checked = holder_a.execute(
            select(Lease.epoch).where(Lease.key == base.lease_key, Lease.epoch == old.epoch)
        ).scalar_one_or_none()
        assert checked == 1  # the unfenced "check" passes

        takeover = Takeover(sessions, later(base, 11))
        takeover.start()
        takeover.join(timeout=30)  # nothing stops it
        assert takeover.grant is not None and takeover.grant.epoch == 2

        holder_a.add(Counter(name="stale-write", value=old.epoch))  # and this still commits
    with sessions() as session:
        assert session.scalar(select(Lease.epoch)) == 2
        assert session.scalar(select(Counter.value).where(Counter.name == "stale-write")) == 1
