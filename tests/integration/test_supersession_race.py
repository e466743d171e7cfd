"""Two finalize_ready of one slug admitted at the same moment: exactly one stays active."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from integrator import events
from integrator.admission import CanonicalRepo, on_event
from integrator.db import make_engine, make_sessionmaker
from integrator.models import Candidate
from integrator.queue import candidates_of_slug
from integrator.settings import Settings
from tests.builders import finalize_ready
from tests.gitrepos import Canonical

ROUNDS = 8


def test_concurrent_finalize_ready_of_one_slug_supersede_one_another(
    settings: Settings, tmp_path: Path
) -> None:
    """Both transactions store their event, then admit it together: the older candidate is
    superseded by the newer, whichever transaction gets there first."""
    canonical = Canonical(tmp_path)
    configured = settings.model_copy(update={"repo": str(canonical.bare)})
    engine = make_engine(configured)
    if engine.dialect.name != "postgresql":
        engine.dispose()
        pytest.skip("SQLite runs one writer at a time: the race exists only on PostgreSQL")
    sessions, repo = make_sessionmaker(engine), CanonicalRepo(configured)
    shas = [canonical.branch("feat/race", path=f"f{n}.txt") for n in range(2)]
    try:
        for round_ in range(ROUNDS):
            slug = f"race-{round_}"
            _admit_together(sessions, repo, configured.repository_name, slug, shas)
            with sessions() as session:
                older, newer = candidates_of_slug(session, configured.repository_name, slug)
                assert _state(older) == ("superseded", newer.id), f"round {round_}"
                assert newer.status != "superseded", f"round {round_}"
                assert newer.position == older.position
    finally:
        engine.dispose()


def _admit_together(
    sessions: sessionmaker[Session], repo: CanonicalRepo, repository: str, slug: str,
    shas: list[str],
) -> None:  # fmt: skip
    """One thread per sha: each stores its finalize_ready, waits for the other, admits it."""
    together = threading.Barrier(len(shas))
    failures: list[BaseException] = []

    def admit(sha: str) -> None:
        try:
            fields = events.validate_fields(
                "finalize_ready", finalize_ready(slug, "feat/race", sha)["fields"]
            )
            with sessions() as session, session.begin():
                appended = events.append(
                    session, type_name="finalize_ready", fields=fields,
                    repository=repository, actor="test",
                )  # fmt: skip
                together.wait(timeout=30)
                on_event(session, repo, appended.event, "test")
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=admit, args=(sha,)) for sha in shas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures


def _state(candidate: Candidate) -> tuple[str, int | None]:
    return candidate.status, candidate.superseded_by
