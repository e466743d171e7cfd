"""What a push check writes besides its verdict: the push record, and the hook's last-seen row
rewritten only when it says something new. Pinned because the hot path builds these
statements once and only binds each push's values."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from integrator import guard, modes
from integrator.db import make_sessionmaker
from integrator.models import Event, HookInstance, utcnow
from integrator.policy import Update
from integrator.settings import Settings

MAIN = "refs/heads/main"
ZERO = "0" * 40


def request(n: int = 1, *, instance: str = "git1:/srv/canonical.git") -> guard.PushRequest:
    return guard.PushRequest(
        repository="canonical",
        hook_instance=instance,
        hook_version="1",
        pusher="alice",
        identity_source="plain",
        registration_nonce=None,
        updates=(Update(MAIN, MAIN, f"{n:040x}", f"{n + 1:040x}", True, False),),
    )


@pytest.fixture
def sessions(engine: Engine) -> Iterator[Session]:
    with make_sessionmaker(engine)() as session:
        yield session


def check(session: Session, settings: Settings, n: int = 1) -> guard.PushAnswer:
    with session.begin():
        return guard.check_push(session, settings, request(n))


def seen(session: Session) -> HookInstance:
    with session.begin():
        row = session.scalars(select(HookInstance)).one()
        session.expunge(row)
        return row


def as_aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=utcnow().tzinfo)


def test_a_push_check_records_the_update_with_its_verdict_and_the_mode_it_was_decided_in(
    sessions: Session, settings: Settings
) -> None:
    """One push_would_reject in shadow, with the facts the hook sent and no slug."""
    answer = check(sessions, settings)
    assert answer.mode.mode is modes.Mode.shadow and answer.mode.version == 0
    with sessions.begin():
        [event] = sessions.scalars(select(Event).where(Event.type == "push_would_reject")).all()
    assert (event.repository, event.branch, event.sha, event.actor, event.slug) == (
        "canonical", "main", f"{2:040x}", "alice", None
    )  # fmt: skip
    assert event.fields["mode"] == "shadow" and event.fields["reason_code"] == "not_registered"
    assert event.fields["old"] == f"{1:040x}" and event.fields["decided_locally"] is False


def test_every_update_of_a_push_is_recorded_in_order_with_its_own_verdict(
    sessions: Session, settings: Settings
) -> None:
    """One record per update, all with the push's id, in the order the hook sent them."""
    feature = "refs/heads/feat/x"
    push = replace(
        request(1),
        updates=(
            Update(feature, feature, ZERO, "a" * 40, None, None),
            Update(MAIN, MAIN, "b" * 40, "c" * 40, True, False),
            Update("refs/tags/v1", "refs/tags/v1", ZERO, "d" * 40, None, None),
        ),
        updates_left_out=7,
    )
    with sessions.begin():
        guard.check_push(sessions, settings, push)
    with sessions.begin():
        rows = sessions.scalars(select(Event).where(Event.type.like("push_%")).order_by(Event.seq))
        recorded = [(e.type, e.fields["ref"], e.branch, e.fields["push_id"]) for e in rows]
    push_id = recorded[0][3]
    assert recorded == [
        ("push_allowed", feature, "feat/x", push_id),
        ("push_would_reject", MAIN, "main", push_id),
        ("push_allowed", "refs/tags/v1", "refs/tags/v1", push_id),
    ]


def test_the_mode_is_read_in_the_push_checks_own_transaction(
    sessions: Session, settings: Settings
) -> None:
    """A mode change committed before the push check is the mode it is decided in."""
    with sessions.begin():
        modes.set_mode(sessions, modes.Mode.off, by="op", reason="test", repository="canonical")
    answer = check(sessions, settings)
    assert answer.mode.mode is modes.Mode.off and answer.mode.version == 1
    assert answer.verdict.allow
    with sessions.begin():
        recorded = sessions.scalars(select(Event.type).where(Event.type.like("push_%"))).all()
    assert recorded == ["push_allowed"]
    assert seen(sessions).mode_seen == "off"


def test_the_hooks_row_is_rewritten_only_when_the_mode_changed_or_it_is_stale(
    sessions: Session, settings: Settings
) -> None:
    """Busy repositories push many times a second: last-seen moves at most every few seconds,
    but a new mode or version is written at once."""
    check(sessions, settings, 1)
    first = seen(sessions)
    check(sessions, settings, 2)
    assert seen(sessions).last_seen_at == first.last_seen_at  # fresh: not rewritten

    old = utcnow() - guard.LAST_SEEN_REFRESH - timedelta(seconds=1)
    with sessions.begin():
        sessions.execute(update(HookInstance).values(last_seen_at=old))
    check(sessions, settings, 3)
    assert as_aware(seen(sessions).last_seen_at) > old + guard.LAST_SEEN_REFRESH  # stale: refreshed

    with sessions.begin():
        modes.set_mode(sessions, modes.Mode.off, by="op", reason="test", repository="canonical")
    check(sessions, settings, 4)
    row = seen(sessions)
    assert (row.mode_seen, row.mode_version_seen) == ("off", 1)


def test_sqlite_commits_survive_a_crash_of_the_service_without_an_fsync_per_push(
    engine: Engine, settings: Settings
) -> None:
    """WAL with synchronous=NORMAL: a commit is in the WAL file before it is acknowledged
    (a killed service loses nothing), and only checkpoints wait for the disk."""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's journal settings")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
