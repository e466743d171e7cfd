"""Prometheus values read from the database at each scrape, the same on every replica.

`DatabaseCollector` opens one read session per scrape and runs a handful of cheap queries:
queue depth by state, time in queue over the last integrations, outcome, takeover,
flaky-check and speculative-build counts, the flake rate over the last passes, the lease, the
mode, push verdicts, and every liveness condition (`conditions.active`, a pure read). Counters
are counts of the append-only event log, so they only grow and every replica reports the same
number (alert rules take `max`).

Push verdicts are counted by mode and reason, which live in each event's fields: a process
folds the events older than `SETTLED` into a running total once (in `seq` order, stopping at
the first younger one) and counts the younger ones again at each scrape. An event whose
transaction commits after a higher `seq` was seen is still counted as long as that
transaction took less than `SETTLED`.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from integrator import conditions, lease, modes, speculation, status
from integrator.db import read_session
from integrator.liveness import Code
from integrator.models import Candidate, Event
from integrator.settings import Settings

log = logging.getLogger(__name__)

#: Integrations whose time in queue the quantiles are over.
TIME_IN_QUEUE_SAMPLE = 100
QUANTILES = (0.5, 0.9, 1.0)
#: Outcome event types and the kind each counts as.
OUTCOME_KINDS = {
    "integration_completed": "integrated",
    "integration_blocked": "blocked",
    "would_integrate": "would_integrate",
    "would_block": "would_block",
}
TAKEOVER = lease.LEASE_TAKEN_OVER
FLAKY = status.FLAKY_EVENT
#: Push-check event types and the decision each records.
VERDICT_DECISIONS = {
    "push_allowed": "allowed",
    "push_rejected": "rejected",
    "push_would_reject": "would_reject",
}
#: Events older than this are folded into the running totals for good.
SETTLED = timedelta(minutes=5)

VerdictKey = tuple[str, str, str]


class VerdictTally:
    """Push verdicts by (mode, decision, reason) over the whole event log, read incrementally.

    Each read is one range of the primary key (`seq` past what is folded), whatever the
    event types in it: the fold advances over every settled event, so a quiet spell of
    pushes does not leave a long range to read again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settled_seq = 0
        self._settled: Counter[VerdictKey] = Counter()

    def read(self, session: Session, settings: Settings, now: datetime) -> Counter[VerdictKey]:
        with self._lock:  # concurrent scrapes fold once
            rows = session.execute(
                select(
                    Event.seq,
                    Event.type,
                    Event.repository,
                    Event.fields["mode"].as_string(),
                    Event.fields["reason_code"].as_string(),
                    Event.recorded_at,
                )
                .where(Event.seq > self._settled_seq)
                .order_by(Event.seq)
            ).all()
            recent: Counter[VerdictKey] = Counter()
            settling = True
            for seq, kind, repository, mode, reason, recorded_at in rows:
                settling = settling and recorded_at < now - SETTLED
                if settling:
                    self._settled_seq = seq
                if kind not in VERDICT_DECISIONS or repository != settings.repository_name:
                    continue
                key = (mode or "unknown", VERDICT_DECISIONS[kind], reason or "unknown")
                (self._settled if settling else recent)[key] += 1
            return self._settled + recent


class DatabaseCollector(Collector):
    """The database's values, read when Prometheus scrapes (`sessions` is the app's, which
    exists only once the app has started)."""

    def __init__(
        self, sessions: Callable[[], sessionmaker[Session] | None], settings: Settings
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.verdicts = VerdictTally()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "integrator_database_up", "1 when this scrape could read the database"
        )
        factory = self.sessions()
        if factory is None:
            up.add_metric([], 0)
            yield up
            return
        try:
            with read_session(factory) as session:
                families = list(self._read(session))
        except DBAPIError as exc:  # the scrape says so instead of failing (the error's text
            # can name the server, so only its kind is logged)
            log.warning("metrics: cannot read the database: %s", type(exc.orig).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self, session: Session) -> Iterator[Metric]:
        settings = self.settings
        state = lease.status(session, settings)
        now = lease.datetime_of_ms(state.now_ms)
        yield from lease_metrics(state)
        yield mode_metric(modes.current(session).mode.value)
        depth = GaugeMetricFamily(
            "integrator_queue_candidates", "Candidates in each unfinished state", labels=["state"]
        )
        for state_name, count in status.depth(session, settings).items():
            depth.add_metric([state_name], count)
        yield depth
        yield from time_in_queue(session, settings)
        yield from event_counts(session, settings)
        yield from speculative_builds(session, settings)
        yield from flake_rate(session, settings)
        verdicts = CounterMetricFamily(
            "integrator_push_verdicts",
            "Push-check verdicts per update, by mode, decision and reason",
            labels=["mode", "decision", "reason"],
        )
        for (mode, decision, reason), count in sorted(
            self.verdicts.read(session, settings, now).items()
        ):
            verdicts.add_metric([mode, decision, reason], count)
        yield verdicts
        active = {c.code for c in conditions.active(session, settings)}
        gauge = GaugeMetricFamily(
            "integrator_condition_active",
            "1 while the liveness condition holds",
            labels=["condition"],
        )
        for code in Code:
            gauge.add_metric([code.value], 1 if code.value in active else 0)
        yield gauge


def lease_metrics(state: lease.LeaseState) -> Iterator[Metric]:
    yield GaugeMetricFamily("integrator_lease_epoch", "The lease's epoch", value=state.epoch)
    yield GaugeMetricFamily(
        "integrator_lease_held", "1 while a holder's grant is unexpired", value=int(state.held)
    )
    if state.held and state.expires_at_ms is not None:
        yield GaugeMetricFamily(
            "integrator_lease_expires_in_seconds",
            "Time left on the current grant",
            value=(state.expires_at_ms - state.now_ms) / 1000,
        )


def mode_metric(current: str) -> Metric:
    gauge = GaugeMetricFamily("integrator_mode", "1 for the current mode", labels=["mode"])
    for mode in modes.Mode:
        gauge.add_metric([mode.value], 1 if mode.value == current else 0)
    return gauge


def time_in_queue(session: Session, settings: Settings) -> Iterator[Metric]:
    """From each candidate's finalize_ready (its creation) to integrated, over the last ones."""
    rows = session.execute(
        select(Candidate.created_at, Candidate.updated_at)
        .where(Candidate.repository == settings.repository_name, Candidate.status == "integrated")
        .order_by(Candidate.updated_at.desc())
        .limit(TIME_IN_QUEUE_SAMPLE)
    ).all()
    waits = sorted((done - created).total_seconds() for created, done in rows)
    yield GaugeMetricFamily(
        "integrator_time_in_queue_sampled",
        "Integrations the time-in-queue quantiles are over",
        value=len(waits),
    )
    if not waits:
        return
    gauge = GaugeMetricFamily(
        "integrator_time_in_queue_seconds",
        f"Submitted to integrated, over the last {TIME_IN_QUEUE_SAMPLE} integrations",
        labels=["quantile"],
    )
    for quantile in QUANTILES:  # nearest rank: always a wait that happened
        rank = max(math.ceil(quantile * len(waits)), 1)
        gauge.add_metric([f"{quantile:g}"], waits[rank - 1])
    yield gauge


def event_counts(session: Session, settings: Settings) -> Iterator[Metric]:
    """Outcomes by kind, lease takeovers and flaky passes: one count per event type (index
    only)."""
    rows = session.execute(
        select(Event.type, func.count())
        .where(
            Event.type.in_([*OUTCOME_KINDS, TAKEOVER, FLAKY]),
            Event.repository == settings.repository_name,
        )
        .group_by(Event.type)
    )
    counted: dict[str, int] = {event_type: count for event_type, count in rows}
    outcomes = CounterMetricFamily(
        "integrator_outcomes", "Outcomes recorded, by kind", labels=["kind"]
    )
    for event_type, kind in OUTCOME_KINDS.items():
        outcomes.add_metric([kind], counted.get(event_type, 0))
    yield outcomes
    yield CounterMetricFamily(
        "integrator_lease_takeovers",
        "Grants that took an expired holder's lease over",
        value=counted.get(TAKEOVER, 0),
    )
    yield CounterMetricFamily(
        "integrator_checks_flaky",
        "Checks that passed only on a rerun on the same commit (check_flaky events)",
        value=counted.get(FLAKY, 0),
    )


def speculative_builds(session: Session, settings: Settings) -> Iterator[Metric]:
    """Speculative builds (`integrator worker --window W`): started, discarded, and landed as
    tested (a registration with the build's attempt landed)."""
    counted = speculation.counts(session, settings)
    for kind, help_text in (
        ("started", "Speculative merge commits whose checks started (speculation_started)"),
        ("discarded", "Speculative builds thrown away: what they rested on failed, main moved "
                      "or the lease ended (speculation_discarded)"),
        ("landed", "Speculative builds that landed on main as tested (an integrated outcome "
                   "with the build's attempt)"),
    ):  # fmt: skip
        yield CounterMetricFamily(
            f"integrator_speculative_builds_{kind}", help_text, value=counted[kind]
        )


def flake_rate(session: Session, settings: Settings) -> Iterator[Metric]:
    """The flake rate over the last passes, as `integrator status` shows it (0 before any)."""
    flakes = status.flake_rate(session, settings)
    window = flakes["window"]
    yield GaugeMetricFamily(
        "integrator_flake_rate_passes",
        f"Passes (integrated or would_integrate) in the flake rate's window of {window}",
        value=flakes["passed"],
    )
    yield GaugeMetricFamily(
        "integrator_flake_rate_flaky",
        "Of those passes, how many needed a rerun of a check",
        value=flakes["flaky"],
    )
    yield GaugeMetricFamily(
        "integrator_flake_rate",
        f"Flaky passes / passes over the last {window} passes (0 before the first)",
        value=flakes["rate"] or 0,
    )
