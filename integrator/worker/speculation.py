"""Speculative checks: the next W candidates tested at once, landed one fenced push at a time.

With `--window W` the holder keeps up to W handouts as a chain: `s1 = main + c1`, `s2 = s1 +
c2`, … each merged without a worktree, each checked in a worktree of its own (up to `--jobs`
at once). Why it is shaped this way:

- Outcomes are only ever decided at the bottom of the chain, where everything below has
  landed: a candidate's failure measured on a speculative base is final only once that base
  is main. So the bottom is concluded exactly as the serial worker concludes a candidate
  (`Reporter.conclude`), and a clean bottom lands by the same registered push
  (`Lander.land`): the tested sha is the landed sha, and each commit above is a fast-forward
  of the one below, so it lands as it was tested, with no re-merge and no re-test.
- A failure anywhere (a conflict, a failed check, a refused push) makes everything built on
  it worthless: those builds are discarded (their checks killed, `speculation_discarded`
  recorded) and rebuilt on the last good base right away, not when the failure reaches the
  bottom. A `main` that moved under the chain (break-glass) discards the whole chain.
- A lease loss drops the chain without a word to the service (it would be refused): the next
  grant gives the handouts back to the queue and records their builds as discarded.
- In shadow and `off` nothing lands, so each candidate is merged onto main itself, as the
  serial worker does: the predictions do not depend on how many run at once.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from integrator.gitops import GitError
from integrator.worker.checks import CheckPlan, CheckRun, CheckRunner, run_checks
from integrator.worker.landing import Verdict
from integrator.worker.service_client import (
    EXIT_UNAVAILABLE,
    LeaseLost,
    ServiceUnavailable,
    WorkerExit,
    message_of,
)
from integrator.worker.trial import (
    PREDICTING_MODES,
    PUSH_BACKOFF_SECONDS,
    PUSH_RETRIES,
    Handed,
    Trial,
    merge_message,
)
from integrator.worker.workspace import CheckSlot, Fetched

if TYPE_CHECKING:
    from integrator.worker.loop import Worker

log = logging.getLogger(__name__)

#: How often a chain that is not full asks the queue for more (seconds) while checks run.
REFILL_SECONDS = 1.0


@dataclass
class Link:
    """One handout in the chain: its merge on the base below, and its checks (running or done)."""

    handed: Handed
    trial: Trial
    runner: CheckRunner | None = None
    job: concurrent.futures.Future[tuple[CheckRun, ...]] | None = None
    #: Registered pushes of it that did not land (kept across rebuilds).
    tries: int = 0

    @property
    def predicting(self) -> bool:
        return self.handed.mode in PREDICTING_MODES

    @property
    def pending(self) -> bool:
        return self.job is not None

    @property
    def carries(self) -> bool:
        """Something above may build on it: a commit in cutover, not (yet) known to fail."""
        return (
            not self.predicting
            and self.trial.merged_sha is not None
            and (self.pending or self.trial.clean)
        )

    def cancel(self) -> None:
        if self.runner is not None:
            self.runner.cancel()


class Speculator:
    """The worker's loop with a window above 1; `run` returns when told to stop, or (with
    `--once`) when the queue is drained. `LeaseLost` and `WorkerExit` propagate to the worker
    after the chain was dropped or given back."""

    def __init__(self, worker: Worker, window: int, jobs: int) -> None:
        self.worker = worker
        self.window = window
        self.chain: list[Link] = []
        #: main as the bottom of the chain rests on it (fetched, or what we last landed).
        self.main: str | None = None
        self._asked_at = 0.0
        slots = worker.workspace.check_slots(jobs)
        self._slots: queue.SimpleQueue[CheckSlot] = queue.SimpleQueue()
        for slot in slots:
            self._slots.put(slot)
        self._pool = concurrent.futures.ThreadPoolExecutor(jobs, thread_name_prefix="check")

    def close(self) -> None:
        self.cancel()
        self._pool.shutdown(wait=True)

    def cancel(self) -> None:
        """Kill every running check (a stop request; safe from the signal watcher thread)."""
        for link in list(self.chain):
            link.cancel()

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        stopping = self.worker.stopping
        try:
            while not stopping.is_set():
                drained = self._fill()
                if self._collect() or self._settle():
                    continue
                if not self.chain:
                    if drained and self.worker.options.once:
                        return
                    continue
                self._wait()
            self._give_back("the worker is stopping")
        except (LeaseLost, ServiceUnavailable):
            self._drop()
            raise
        except GitError as exc:
            self._give_back(f"the worker's git failed: {exc}")
            raise WorkerExit(EXIT_UNAVAILABLE, f"git failed: {exc}") from None
        except WorkerExit as exc:
            self._give_back(exc.message)
            raise

    def _fill(self) -> bool:
        """Take handouts until the window is full; True when the queue had nothing more."""
        worker = self.worker
        while len(self.chain) < self.window and not worker.stopping.is_set():
            if self.chain and time.monotonic() - self._asked_at < REFILL_SECONDS:
                return False
            wait = 0.0 if self.chain or worker.options.once else worker.idle_wait
            holding = [link.handed.id for link in self.chain]
            handed = worker.next_handout(wait, window=self.window, holding=holding)
            if handed is None:
                self._asked_at = time.monotonic()
                return True
            self._append(handed)
        return False

    def _append(self, handed: Handed) -> None:
        log.info("took %s (mode %s) into the chain", handed.describe(), handed.mode)
        try:
            self.worker.require_for(handed)
        except WorkerExit:
            self.chain.append(Link(handed, Trial(base="", attempt="")))
            raise
        fetched = self.worker.fetch(handed)
        if self._carrying() and fetched.main != self.main:
            self._main_moved(fetched)
        self.main = fetched.main
        self.chain.append(self._build(handed, len(self.chain)))

    def _main_moved(self, fetched: Fetched) -> None:
        """Someone else moved main (break-glass): nothing built on the old main can land."""
        self.main = fetched.main
        self._rebuild(0, f"main moved under the chain to {fetched.main[:12]}")

    def _carrying(self) -> bool:
        return any(link.carries for link in self.chain)

    def _build(self, handed: Handed, index: int, tries: int = 0) -> Link:
        """Merge `handed` onto what lies below position `index` (main itself in shadow and
        `off`) and start its checks."""
        worker = self.worker
        below = [] if handed.mode in PREDICTING_MODES else [
            link for link in self.chain[:index] if link.carries
        ]  # fmt: skip
        base = below[-1].trial.merged_sha if below else self.main
        if base is None:
            raise ValueError("a chain is built on a fetched main")
        attempt = str(uuid.uuid4())  # chosen before anything is committed
        ws = worker.workspace
        if ws.on_main(handed.sha, base):
            found = Trial(base=base, attempt=attempt, already_on_main=base)
            return Link(handed, found, tries=tries)
        method = worker.options.merge_method
        message = merge_message(handed, worker.keeper.epoch or 0, attempt, method)
        merged = ws.merge(ws.tree_of(base), handed.sha, message, method, worktree=False)
        specs = worker.options.checks
        not_run = tuple(CheckRun(spec) for spec in specs)
        trial = Trial(base=base, attempt=attempt, merge=merged, checks=not_run)
        if not merged.ok or merged.empty or merged.sha is None:
            return Link(handed, trial, tries=tries)
        link = Link(handed, replace(trial, merged_sha=merged.sha), tries=tries)
        self._record(link, "testing", depth=len(below) + 1, below=[b.handed.id for b in below])
        if specs:
            link.runner = CheckRunner()
            plan = worker.check_plan(handed)
            link.job = self._pool.submit(self._check, link.runner, plan, merged.sha)
        return link

    def _check(self, runner: CheckRunner, plan: CheckPlan, commit: str) -> tuple[CheckRun, ...]:
        """In a pool thread: the checks of `commit` in a free worktree."""
        slot = self._slots.get()
        try:
            if not runner.cancelled:
                slot.checkout(commit)
            reset: Callable[[], None] = lambda: slot.checkout(commit)  # noqa: E731
            return run_checks(runner, plan, slot.path, slot.log, reset=reset)
        finally:
            self._slots.put(slot)

    def _collect(self) -> bool:
        """Take in finished checks; a failure discards and rebuilds what was built on it."""
        for index, link in enumerate(self.chain):
            if link.job is None or not link.job.done():
                continue
            carried = link.carries
            link.trial = replace(link.trial, checks=link.job.result())
            link.job = None
            if carried and not link.trial.clean and index + 1 < len(self.chain):
                why = f"{link.handed.describe()} did not pass its checks"
                self._rebuild(index + 1, why, cause=link.handed.id)
            return True
        return False

    def _settle(self) -> bool:
        """Conclude the bottom of the chain when it is decided: land it in cutover, report it."""
        if not self.chain or self.chain[0].pending or self.worker.stopping.is_set():
            return False
        head = self.chain[0]
        trial = head.trial
        worker = self.worker
        if not head.predicting and trial.clean and trial.merged_sha is not None:
            pushed = worker.lander.land(head.handed.id, trial.base, trial.merged_sha,
                                        trial.attempt, trial.check_reports())  # fmt: skip
            trial = replace(trial, push=pushed)
            if pushed.verdict is Verdict.retry and head.tries < PUSH_RETRIES:
                head.tries += 1
                log.warning("%s: push not landed (%s); trying again", head.handed.describe(),
                            pushed.detail)  # fmt: skip
                if pushed.main is not None and pushed.main != trial.base:
                    self._main_moved(worker.fetch(head.handed))
                else:
                    worker.stopping.wait(PUSH_BACKOFF_SECONDS[head.tries - 1])
                return True
        self.chain.pop(0)
        if trial.landed:
            self.main = trial.merged_sha
        worker.reporter.conclude(head.handed, trial)
        if trial.clean and not head.predicting and not trial.landed and self.chain:
            reason = f"{head.handed.describe()} did not land"
            self._rebuild(0, reason, cause=head.handed.id)
        return True

    def _wait(self) -> None:
        jobs = [link.job for link in self.chain if link.job is not None]
        timeout = REFILL_SECONDS if len(self.chain) < self.window else 5.0
        if jobs:
            concurrent.futures.wait(jobs, timeout, concurrent.futures.FIRST_COMPLETED)
        else:
            self.worker.stopping.wait(timeout)

    # -- discarding -------------------------------------------------------------------------

    def _rebuild(self, start: int, reason: str, cause: int | None = None) -> None:
        """Discard the builds from position `start` up and build them again, in order, on what
        lies below. Not while stopping: what is held is given back as it is."""
        if self.worker.stopping.is_set():
            return
        stale = self.chain[start:]
        del self.chain[start:]
        for link in stale:
            link.cancel()
            if link.trial.merged_sha is not None:
                self._record(link, "discarded", reason=reason, cause=cause)
        log.info("rebuilding %d speculative build(s): %s", len(stale), reason)
        for link in stale:
            self.chain.append(self._build(link.handed, len(self.chain), tries=link.tries))

    def _drop(self) -> None:
        """The lease is gone: kill the checks, forget the chain (the next grant requeues it)."""
        for link in self.chain:
            link.cancel()
        self.chain.clear()

    def _give_back(self, reason: str) -> None:
        """Kill the checks and give every handout back to the queue, bottom first."""
        stale, self.chain = self.chain, []
        for link in stale:
            link.cancel()
        for link in stale:
            try:
                self.worker.reporter.give_back(link.handed, reason)
            except (LeaseLost, WorkerExit) as exc:
                log.warning("could not give back %s: %s", link.handed.describe(), exc)
                return

    def _record(self, link: Link, state: str, **extra: Any) -> None:
        """Tell the service about a build (visible in status and metrics); a refusal of this
        record is logged, never a reason to stop integrating."""
        trial = link.trial
        body = {**self.worker.grant(), "attempt": trial.attempt, "state": state,
                "base": trial.base, "sha": trial.merged_sha}  # fmt: skip
        if state == "testing":
            body |= {"depth": extra["depth"], "below": extra["below"]}
        else:
            body |= {"reason": extra["reason"][:2000], "cause_candidate_id": extra["cause"]}
        answer = self.worker.service.post(f"/v1/candidates/{link.handed.id}/speculation", body)
        if answer.status_code != 200:
            log.warning("speculation record for %s refused: HTTP %d %s", link.handed.describe(),
                        answer.status_code, message_of(answer))  # fmt: skip
