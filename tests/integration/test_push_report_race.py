"""Two reports of one push at once (post-receive retrying while its first report is in flight,
or a push report and GitHub's webhook) record it once; the second is a duplicate, not a 409."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine

from integrator import guard
from integrator.admission import CanonicalRepo
from integrator.db import make_sessionmaker
from integrator.policy import Update
from integrator.settings import Settings
from tests.gitrepos import Canonical
from tests.integration.test_guard_and_cutover import events_of

ZERO = "0" * 40


def test_two_concurrent_reports_of_one_push_record_it_once(
    settings: Settings, tmp_path: Path, engine: Engine
) -> None:
    """The second report looks before the first commits, so both insert; the loser of the
    unique key finds a branch_pushed that differs only by pushed_at: the same push."""
    canonical = Canonical(tmp_path)
    configured = settings.model_copy(update={"repo": str(canonical.bare)})
    sha = canonical.branch("feat/race")
    request = guard.PushRequest(
        repository=configured.repository_name,
        hook_instance="test:race",
        hook_version="1",
        pusher="alice",
        identity_source="plain",
        registration_nonce=None,
        updates=(Update("refs/heads/feat/race", "refs/heads/feat/race", ZERO, sha, None, None),),
    )
    sessions = make_sessionmaker(engine)
    first_wrote = threading.Event()
    results: list[guard.Reported | Exception] = []

    def report(first: bool) -> None:
        repo = CanonicalRepo(configured)
        repo.refresh()
        if not first:
            first_wrote.wait(30)
        try:
            with sessions() as session, session.begin():
                reported = guard.report_pushes(
                    session, repo, request, protected_refs=configured.protected_refs, actor="hook"
                )
                if first:
                    first_wrote.set()
                    threading.Event().wait(0.5)  # still in flight when the second one looks
            results.append(reported)
        except Exception as exc:  # the assertion below shows it
            results.append(exc)

    threads = [threading.Thread(target=report, args=(first,)) for first in (True, False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert all(isinstance(r, guard.Reported) for r in results), results
    counts = sorted((r.recorded, r.duplicates) for r in results if isinstance(r, guard.Reported))
    assert counts == [(0, 1), (1, 0)]
    assert len(events_of(engine, "branch_pushed")) == 1
