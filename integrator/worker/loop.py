"""The integrator bot: lease, dequeue, merge in its own clone, check, report.

The loop, and why it is shaped this way:

1. Prepare the workspace (clone or reuse) *before* taking the lease: a slow clone must not
   eat into the lease, and a second worker on the same workspace is refused up front.
2. Acquire the lease (`LeaseKeeper`: retry with jitter while busy, renew in the background).
3. `POST /v1/queue/next` with the grant; when idle, with `wait_seconds` (a long poll: the
   service answers as soon as a candidate is queued, so an idle queue costs no latency). The
   service requeues what an ended epoch left `in_progress` (a killed predecessor) at the head,
   so a restart resumes from durable state;
   the worker keeps nothing that matters in memory.
4. Per candidate: fetch; its sha already reachable from main → `already_integrated`; else
   merge the candidate's *recorded* sha onto `origin/main`'s sha with the candidate, epoch
   and attempt trailers (the attempt uuid chosen before committing), run the named checks in
   order, each from a clean tree with its own timeout (a failed one is rerun up to
   `--check-retries` times on the same commit; after one that does not pass, the rest are
   `not_run`). A merge that changes nothing is `already_integrated` too. A trailer on main is
   never taken as proof (anyone can write one): the service checks every `already_integrated`
   against main itself, and when it does not find the content there the merge is reported for
   what it is.
5. In cutover, a clean merge is pushed by `integrator.worker.landing`: registered, then *that same
   commit* pushed (the tested sha is the landed sha). A try that did not land is retried a
   bounded number of times with a fresh registration; when main moved meanwhile, the candidate
   is merged and checked again first. In shadow and `off` nothing is ever pushed.
6. Self-fence: right before every irreversible step (pushing, reporting) stop unless the
   last successful renewal was *sent* less than the renew deadline ago. The service's fence
   (and, for the push, the hook's check of the registration) is what stops a holder that
   stalls after asking.
7. Report what `integrator.worker.trial.judge` decides.

SIGTERM (or SIGINT): kill a running check's process group, give the candidate back
(`requeue`), release the lease, exit 0. `--once` drains until the queue answers 204.

The service names the checks it requires for green (`GET /v1/checks`, and each handout): a
worker whose configuration lacks one stops at once (exit 2) — at start, or giving the candidate
back — rather than report outcomes the service would refuse.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from dataclasses import replace
from typing import Any

from integrator.check_contract import missing
from integrator.gitops import GitError
from integrator.settings import Settings
from integrator.worker.checks import CheckPlan, CheckRun, CheckRunner, run_checks
from integrator.worker.landing import Lander, Verdict
from integrator.worker.lease_client import LeaseClientError, LeaseKeeper
from integrator.worker.options import WorkerOptions, default_holder
from integrator.worker.reporting import Reporter
from integrator.worker.service_client import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    LeaseLost,
    ServiceClient,
    ServiceUnavailable,
    WorkerExit,
    refused,
)
from integrator.worker.speculation import Speculator
from integrator.worker.trial import (
    PREDICTING_MODES,
    PUSH_BACKOFF_SECONDS,
    PUSH_RETRIES,
    Handed,
    Trial,
    merge_message,
)
from integrator.worker.workspace import Fetched, Workspace, WorkspaceBusy

log = logging.getLogger(__name__)

__all__ = ["Worker", "WorkerExit", "WorkerOptions", "default_holder"]

#: The longest one idle `queue/next` waits on the service (long poll): a candidate queued
#: meanwhile is answered at once; a stop request waits at most this long for the answer.
LONG_POLL_SECONDS = 5.0


class Worker:
    """One integrator bot process. `run()` returns the exit code; `request_stop()` is the
    signal handler's body."""

    def __init__(
        self, settings: Settings, options: WorkerOptions, keeper: LeaseKeeper | None = None
    ) -> None:
        if not settings.token:
            raise WorkerExit(EXIT_BAD_INPUT, "INTEGRATOR_TOKEN is not set (an integrator token)")
        self.settings = settings
        self.options = options
        self.keeper = keeper or LeaseKeeper.from_settings(settings, options.holder)
        self.service = ServiceClient(settings.url, settings.token)
        main_ref = settings.protected_refs[0]
        self.workspace = Workspace(
            options.repo, options.workspace, main_branch=main_ref.removeprefix("refs/heads/")
        )
        self.runner = CheckRunner()
        self.lander = Lander(
            self.workspace.git,
            self.service,
            main_ref,
            grant=self.grant,
            fenced_ok=self.keeper.fenced_ok,
            pause=settings.test_pause_before_push,
        )
        self.reporter = Reporter(self.service, fenced_ok=self.keeper.fenced_ok, grant=self.grant)
        self.stopping = threading.Event()
        self._signals: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._speculator: Speculator | None = None

    def request_stop(self) -> None:
        """Stop soon: running checks are killed now; the candidates are given back."""
        self.stopping.set()
        self.runner.cancel()
        if self._speculator is not None:
            self._speculator.cancel()

    def on_signal(self, signum: int) -> None:
        """The body of a SIGTERM/SIGINT handler: only calls that are safe there.

        A handler runs between two bytecodes of the main thread, possibly while that thread
        holds an `Event`'s lock, so it must not call `Event.set()`. It kills the check's
        process group (a flag and a `killpg`) and hands the rest to a watcher thread through
        `SimpleQueue.put`, which is reentrant.
        """
        self.runner.cancel()
        self._signals.put(signum)

    def _watch_signals(self) -> None:
        while (signum := self._signals.get()) is not None:
            log.info("signal %d: stopping after giving the current candidate back", signum)
            self.request_stop()

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        watcher = threading.Thread(target=self._watch_signals, name="worker-signals", daemon=True)
        watcher.start()
        try:
            try:
                self.workspace.prepare(self.options.holder)
            except WorkspaceBusy as exc:
                raise WorkerExit(EXIT_REFUSED, str(exc)) from None
            except GitError as exc:
                raise WorkerExit(
                    EXIT_UNAVAILABLE, f"cannot clone {self.options.repo}: {exc}"
                ) from None
            required = self._required_checks_once_answered()
            if required is None:
                return EXIT_OK  # stopped while waiting for the service
            self._require(required, "the service")
            if not self._acquire():
                return EXIT_OK
            while not self.stopping.is_set():
                try:
                    if self.options.window > 1:
                        self._speculate()
                        break
                    asked = 0.0 if self.options.once else self.idle_wait
                    started = time.monotonic()
                    handed = self.next_handout(asked)
                    if handed is None:
                        if self.options.once:
                            break
                        # The service waited (long poll); if it answered early, wait the rest.
                        self.stopping.wait(max(asked - (time.monotonic() - started), 0.0))
                        continue
                    self._process(handed)
                except (LeaseLost, ServiceUnavailable) as exc:
                    if self.stopping.is_set():
                        log.warning("lease lost while stopping: %s", exc)
                        break
                    if isinstance(exc, ServiceUnavailable) and self.options.once:
                        raise
                    # An outage outlives the grant's trust: give it up, ask again once it ends.
                    self._lease_lost(str(exc))
                    if not self._acquire():
                        break
            return EXIT_OK
        finally:
            self._shutdown()

    def _required_checks_once_answered(self) -> list[str] | None:
        """The required checks; a long-running worker started while the service is away (a
        supervisor restarting it during an outage) waits for it, as it waits for the lease.
        `--once` exits 3. None: stopped while waiting."""
        while True:
            try:
                return self._required_checks()
            except ServiceUnavailable as exc:
                if self.options.once:
                    raise
                log.warning("%s; asking again", exc)
            if self.stopping.wait(self.idle_wait):
                return None

    def _required_checks(self) -> list[str]:
        response = self.service.get("/v1/checks")
        if response.status_code != 200:
            refused(response, "reading the required checks")
        return [str(name) for name in response.json().get("required", [])]

    def _require(self, required: list[str] | tuple[str, ...], who: str) -> None:
        """Stop (exit 2) when the service requires a check this worker does not run."""
        lacking = missing(required, (spec.name for spec in self.options.checks))
        if lacking:
            names = ", ".join(lacking)
            raise WorkerExit(
                EXIT_BAD_INPUT,
                f"{who} requires check(s) {names} (INTEGRATOR_REQUIRED_CHECKS) and this worker "
                f"does not run them: add --check {lacking[0]}=CMD (or [checks.{lacking[0]}] to "
                "--checks-file)",
            )

    def _acquire(self) -> bool:
        try:
            won = self.keeper.acquire(stop=self.stopping)
        except LeaseClientError as exc:
            raise WorkerExit(EXIT_REFUSED, str(exc)) from None
        if won:
            log.info("holding the lease as %s (epoch %s)", self.options.holder, self.keeper.epoch)
        return won

    def _lease_lost(self, why: str) -> None:
        """Drop the grant; `--once` ends here, a long-running worker tries to take it again."""
        log.warning("lease lost: %s", why)
        self.keeper.release()  # answers lease_lost and drops the grant if it is gone
        if self.options.once:
            raise WorkerExit(
                EXIT_REFUSED,
                f"lease lost ({why}); what this worker held goes back to the queue at the next "
                "grant",
            )

    def _speculate(self) -> None:
        jobs = self.options.jobs or self.options.window
        self._speculator = Speculator(self, self.options.window, jobs)
        try:
            self._speculator.run()
        finally:
            self._speculator.close()
            self._speculator = None

    def _shutdown(self) -> None:
        self._signals.put(None)
        try:
            if self.keeper.epoch is not None:
                self.keeper.release()
        finally:
            self.keeper.close()
            self.service.close()
            self.workspace.close()

    # -- one candidate ----------------------------------------------------------------------

    def _process(self, handed: Handed) -> None:
        log.info("took %s (mode %s)", handed.describe(), handed.mode)
        if self.stopping.is_set():
            self.reporter.give_back(handed, "the worker is stopping")
            return
        try:
            self.require_for(handed)
        except WorkerExit as exc:
            self.reporter.give_back(handed, exc.message)
            raise
        try:
            trial = self._try(handed)
        except GitError as exc:
            self.reporter.give_back(handed, f"the worker's git failed: {exc}")
            raise WorkerExit(
                EXIT_UNAVAILABLE, f"git failed on {handed.describe()}: {exc}"
            ) from None
        except ServiceUnavailable:
            raise  # nothing to tell a service that does not answer: the next grant requeues it
        except WorkerExit as exc:
            self.reporter.give_back(handed, exc.message)
            raise
        if self.stopping.is_set() and not trial.landed:  # what landed is recorded, always
            self.reporter.give_back(handed, "the worker is stopping (signal)")
            return
        self.reporter.conclude(handed, trial)

    def require_for(self, handed: Handed) -> None:
        """Stop (exit 2) when the service requires, for this handout, a check not run here."""
        self._require(handed.required_checks, f"the service, handing out {handed.describe()},")

    def _try(self, handed: Handed) -> Trial:
        trial = self._merge_and_check(handed)
        if handed.mode in PREDICTING_MODES:
            return trial
        for retry in range(PUSH_RETRIES + 1):
            if not trial.clean or trial.merged_sha is None or self.stopping.is_set():
                return trial
            pushed = self.lander.land(
                handed.id, trial.base, trial.merged_sha, trial.attempt, trial.check_reports()
            )
            trial = replace(trial, push=pushed)
            if pushed.verdict is not Verdict.retry or retry == PUSH_RETRIES:
                return trial
            log.warning("%s: push not landed (%s); trying again", handed.describe(), pushed.detail)
            if pushed.main != trial.base:  # main moved: merge and check again on the new main
                trial = self._merge_and_check(handed)
            else:
                self.stopping.wait(PUSH_BACKOFF_SECONDS[retry])
        return trial

    def _merge_and_check(self, handed: Handed) -> Trial:
        attempt = str(uuid.uuid4())  # chosen before anything is committed
        ws = self.workspace
        fetched = self.fetch(handed)
        base = fetched.main
        if ws.on_main(handed.sha, base):
            return Trial(base=base, attempt=attempt, already_on_main=base)
        epoch = self.keeper.epoch or 0
        message = merge_message(handed, epoch, attempt, self.options.merge_method)
        specs = self.options.checks
        merged = ws.merge(
            fetched, handed.sha, message, self.options.merge_method, worktree=bool(specs)
        )
        not_run = tuple(CheckRun(spec) for spec in specs)
        if not merged.ok or merged.empty:
            return Trial(base=base, attempt=attempt, merge=merged, checks=not_run)
        if not specs or self.stopping.is_set() or merged.sha is None:
            return Trial(base=base, attempt=attempt, merge=merged, merged_sha=merged.sha,
                         checks=not_run)  # fmt: skip
        ws.mark_dirty()
        commit = merged.sha
        checks = run_checks(self.runner, self.check_plan(handed), ws.clone_path, ws.check_log,
                            reset=lambda: ws.reset_to(commit))  # fmt: skip
        return Trial(base=base, attempt=attempt, merge=merged, merged_sha=commit, checks=checks)

    def fetch(self, handed: Handed) -> Fetched:
        """Main and every branch fetched, the handout's commit here; main's sha is the base."""
        fetched = self.workspace.fetch(handed.sha)
        if fetched is None:
            raise WorkerExit(
                EXIT_REFUSED, f"{self.workspace.origin_main} does not exist in {self.options.repo}"
            )
        return fetched

    def check_plan(self, handed: Handed) -> CheckPlan:
        """The configured checks with the operator's timeouts for this candidate."""
        specs = self.options.checks
        unknown = sorted(set(handed.check_timeouts) - {spec.name for spec in specs})
        if unknown:
            log.warning("timeout overrides for checks this worker does not run: %s", unknown)
        return CheckPlan(specs, self.options.check_timeout, self.options.check_retries,
                         dict(handed.check_timeouts))  # fmt: skip

    # -- the service ------------------------------------------------------------------------

    @property
    def idle_wait(self) -> float:
        """How long one `queue/next` may wait on the service for a candidate to be queued."""
        return min(self.options.poll_interval, LONG_POLL_SECONDS)

    def next_handout(
        self, wait_seconds: float = 0.0, window: int = 1, holding: list[int] | None = None
    ) -> Handed | None:
        """The next candidate for this holder, or None when nothing is queued; with a window,
        `holding` names the handouts the holder keeps."""
        body = self.grant()
        if wait_seconds:
            body["wait_seconds"] = wait_seconds
        if window > 1:
            body |= {"window": window, "holding": holding or []}
        response = self.service.post("/v1/queue/next", body)
        if response.status_code == 204:
            return None
        if response.status_code == 200:
            return Handed.from_json(response.json())
        refused(response, "queue/next")

    def grant(self) -> dict[str, Any]:
        try:
            return self.keeper.grant_body()
        except LeaseClientError:
            raise LeaseLost("no grant held") from None
