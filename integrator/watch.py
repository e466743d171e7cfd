"""The service reads canonical `main` itself: post-receive only speeds it up.

A daemon thread per service process fetches the canonical repository every
`INTEGRATOR_MAIN_WATCH_INTERVAL_SECONDS`, re-evaluates the waiting candidates
that wait on git (a condition unmet, or unknown because git could not be read
at their last check), resolves the registrations of a holder that went silent
against the real main (`integrator.reconcile`: a landed push is recorded
integrated, one that never landed fails once its epoch is over and its
candidate goes back to the queue) and scores the shadow predictions whose
content landed on main — also when no hook reported the push (a host without
post-receive, a report lost on the way). Each records each change once, claimed
by one conditional statement per item, so several replicas watching together
do no harm.

A second daemon thread evaluates the liveness conditions every
`INTEGRATOR_CONDITIONS_INTERVAL_SECONDS` (`integrator.conditions`: each transition is
recorded once, whichever replica sees it first).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from integrator import conditions, reconcile, scoring
from integrator.admission import CanonicalRepo, reevaluate_waiting_on_git
from integrator.gitops import GitError
from integrator.settings import Settings

log = logging.getLogger(__name__)

WATCHER = "service:main-watch"


class MainWatcher:
    def __init__(
        self, sessions: sessionmaker[Session], settings: Settings, repo: CanonicalRepo
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.repo = repo
        self.interval = settings.main_watch_interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="main-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def run_once(self) -> int:
        """One look at the repository; how many predictions it scored."""
        self.repo.refresh()
        with self.sessions() as session:
            with session.begin():
                queued = reevaluate_waiting_on_git(
                    session, self.repo, self.settings.repository_name
                )
            if queued:
                log.info("queued %d waiting candidates after reading the repository", queued)
            self._reconcile(session)
            return len(scoring.score_predictions(session, self.settings, self.repo, by=WATCHER))

    def _reconcile(self, session: Session) -> None:
        try:
            with session.begin():
                resolved = reconcile.resolve_silent(session, self.settings, self.repo, WATCHER)
        except GitError as exc:
            log.warning("cannot resolve silent registrations against git: %s; next round", exc)
            return
        if resolved:
            log.info("registrations of a silent holder resolved against main: %s", resolved)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                scored = self.run_once()
            except Exception:  # keep watching: a failed round is retried at the next one
                log.exception("watching canonical main failed")
                continue
            if scored:
                log.info("scored %d shadow predictions that landed on main", scored)


class ConditionWatcher:
    """Evaluates the liveness conditions from a daemon thread, one look per interval."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="conditions", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.conditions_interval_seconds):
            try:
                transitions = conditions.evaluate(self.sessions, self.settings)
            except Exception:  # keep evaluating: a failed round is retried at the next one
                log.exception("evaluating the liveness conditions failed")
                continue
            for t in transitions:
                if t.condition is not None:
                    log.warning("condition %s raised: %s", t.code, t.condition.explanation)
                else:
                    log.info("condition %s cleared", t.code)


class Watching:
    """The service's background threads that read rather than answer; stopped together."""

    def __init__(self, *threads: MainWatcher | ConditionWatcher) -> None:
        self.threads = threads

    def stop(self) -> None:
        for thread in self.threads:
            thread.stop()


def start_watching(
    sessions: sessionmaker[Session], settings: Settings, repo: CanonicalRepo
) -> Watching:
    """The main watcher when there is a repository to watch and an interval to do it at; the
    condition watcher when it has an interval."""
    threads: list[MainWatcher | ConditionWatcher] = []
    if settings.repo and settings.main_watch_interval_seconds > 0:
        threads.append(MainWatcher(sessions, settings, repo))
    if settings.conditions_interval_seconds > 0:
        threads.append(ConditionWatcher(sessions, settings))
    for thread in threads:
        thread.start()
    return Watching(*threads)
