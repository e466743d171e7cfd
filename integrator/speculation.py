"""Speculative builds as the service records them: which merge commit the lease holder checks
for each handout of its window, and which it threw away.

With a window above 1 the holder merges its handouts as a chain (`s1 = main + c1`, `s2 = s1 +
c2`, …) and checks them at once. Each build is one event keyed by its attempt (the commit's
`Integrator-Attempt` trailer): `speculation_started` when its checks start,
`speculation_discarded` when it became worthless — what it rested on failed, main moved under
it, or the lease ended. A discard never moves the candidate: it stays in progress with the
holder, who builds it again. Records are fenced like outcomes (only the holder of the epoch
the candidate was handed to), and a retried record is stored once.

A build is *under test* while its candidate is in progress for the current epoch, it is the
latest build recorded since the candidate was handed out, and no discard of its attempt
followed (an outcome ends the handout itself). A new epoch that gives back an ended epoch's
handouts discards their builds still under test, so a lease loss is counted too. A build
*landed* when a registration with its attempt landed: the tested commit is main's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, distinct, func, select
from sqlalchemy.orm import Session

from integrator import lease
from integrator.errors import Detail, InvalidInput, TransitionRefused
from integrator.event_schemas import SPECULATION_TYPES, content_hash
from integrator.events import find, store_once
from integrator.liveness import iso
from integrator.models import Candidate, Event, Registration
from integrator.queue import Status, get_candidate
from integrator.settings import Settings

STARTED = "speculation_started"
DISCARDED = "speculation_discarded"
#: The status changes that start a handout (a build before it belongs to an earlier one).
STATUS_CHANGED = "candidate_status_changed"


class State(StrEnum):
    #: Its checks run on the speculative merge commit.
    testing = "testing"
    #: Thrown away: the holder builds the candidate again.
    discarded = "discarded"


@dataclass(frozen=True)
class Build:
    """What the holder says about one speculative merge commit of a handout."""

    state: State
    attempt: str
    base: str
    sha: str
    depth: int | None = None
    below: tuple[int, ...] = ()
    reason: str | None = None
    cause_candidate_id: int | None = None


@dataclass(frozen=True)
class Recorded:
    type: str
    event_id: int


@dataclass(frozen=True)
class Row:
    """One event read for the chain: of which handout, its type, fields and time."""

    candidate_id: int
    type: str
    fields: dict[str, Any]
    recorded_at: datetime
    slug: str = field(default="")


# ---- pure rules ---------------------------------------------------------------------------


def problems(candidate_id: int, build: Build) -> list[Detail]:
    """Every rule across fields the build breaks (the schema holds the rest)."""
    found: list[Detail] = []
    if build.state is State.discarded:
        if build.reason is None or not build.reason.strip():
            found.append(Detail("reason", "required", "a discarded build says why"))
        return found
    if build.depth is None:
        found.append(Detail("depth", "required", "a build under test says its depth (1: on main)"))
        return found
    if len(build.below) != build.depth - 1:
        found.append(Detail("below", "depth", f"a build at depth {build.depth} lists the "
                            f"{build.depth - 1} candidate(s) below it, bottom first"))  # fmt: skip
    if candidate_id in build.below or len(set(build.below)) != len(build.below):
        found.append(Detail("below", "distinct", "lists other candidates, each once"))
    return found


def under_test(rows: Iterable[Row], epoch: int) -> list[dict[str, Any]]:
    """The builds under test, bottom of the chain first, from the events of the in-progress
    handouts of `epoch` in `seq` order (rows of other candidates sharing a slug are ignored)."""
    current: dict[int, Row | None] = {}
    for row in rows:
        if row.fields.get("candidate_id") != row.candidate_id:
            continue
        if row.type == STATUS_CHANGED:
            if row.fields.get("to") == Status.in_progress.value:
                current[row.candidate_id] = None  # a new handout: earlier builds are over
        elif row.type == STARTED:
            if row.fields.get("epoch") == epoch:
                current[row.candidate_id] = row
        elif row.type == DISCARDED:
            latest = current.get(row.candidate_id)
            if latest is not None and latest.fields["attempt"] == row.fields.get("attempt"):
                current[row.candidate_id] = None
    builds = [_shown(row) for row in current.values() if row is not None]
    return sorted(builds, key=lambda b: (b["depth"], b["candidate_id"]))


def unended(rows: Iterable[Row], candidate_id: int, epoch: int) -> Row | None:
    """The candidate's latest build of `epoch`, unless a discard of it followed."""
    latest: Row | None = None
    for row in rows:
        if row.fields.get("candidate_id") != candidate_id or row.fields.get("epoch") != epoch:
            continue
        if row.type == STARTED:
            latest = row
        elif latest is not None and row.fields.get("attempt") == latest.fields["attempt"]:
            latest = None
    return latest


def _shown(row: Row) -> dict[str, Any]:
    f = row.fields
    return {"candidate_id": row.candidate_id, "slug": row.slug, "depth": f["depth"],
            "base": f["base"], "sha": f["sha"], "attempt": f["attempt"],
            "below": list(f["below"]), "since": iso(row.recorded_at)}  # fmt: skip


# ---- recording ----------------------------------------------------------------------------


def record(
    session: Session, settings: Settings, *, epoch: int, token: str, candidate_id: int,
    build: Build, by: str,
) -> Recorded:  # fmt: skip
    """A fenced record of one build of the holder's in-progress handout, in the caller's
    transaction. A discard names a build recorded for this handout, with its base and sha."""
    lease.fence(session, settings, epoch, token)
    candidate = get_candidate(session, candidate_id)
    if candidate.status != Status.in_progress or candidate.epoch != epoch:
        raise TransitionRefused(
            f"candidate {candidate.id} is {candidate.status} (epoch {candidate.epoch}); only "
            f"the in_progress handouts of epoch {epoch} take a speculative build"
        )
    found = problems(candidate.id, build)
    if found:
        raise InvalidInput(f"invalid build: {', '.join(d.field for d in found)}", details=found)
    fields: dict[str, Any] = {
        "candidate_id": candidate.id,
        "epoch": epoch,
        "attempt": build.attempt,
        "base": build.base,
        "sha": build.sha,
    }
    if build.state is State.testing:
        fields |= {"depth": build.depth, "below": list(build.below)}
        return _append(session, candidate, STARTED, fields, by)
    _require_started(session, candidate, epoch, build)
    fields |= {"reason": build.reason, "cause_candidate_id": build.cause_candidate_id}
    return _append(session, candidate, DISCARDED, fields, by)


def discard_left_by(
    session: Session, candidate: Candidate, ended_epoch: int, reason: str | None = None
) -> bool:
    """The handout of `ended_epoch` goes back to the queue (its lease is over, or its holder
    gave it back): its build still under test is discarded (True when there was one). In the
    caller's transaction."""
    build = unended(_rows_of(session, candidate, (STARTED, DISCARDED)), candidate.id, ended_epoch)
    if build is None:
        return False
    fields = {key: build.fields[key] for key in ("candidate_id", "epoch", "attempt", "base", "sha")}
    why = reason or f"the lease of epoch {ended_epoch} ended"
    fields |= {"reason": why[:2000], "cause_candidate_id": None}
    _append(session, candidate, DISCARDED, fields, None)
    return True


def _require_started(session: Session, candidate: Candidate, epoch: int, build: Build) -> None:
    started = find(session, STARTED, build.attempt)
    if started is None or (started.fields.get("candidate_id"), started.fields.get("epoch")) != (
        candidate.id, epoch):  # fmt: skip
        raise TransitionRefused(
            f"no build with attempt {build.attempt} was recorded for candidate {candidate.id} "
            f"in epoch {epoch}: record it as testing first"
        )
    for name in ("base", "sha"):
        if started.fields[name] != getattr(build, name):
            message = f"{name} {getattr(build, name)} is not the build's ({started.fields[name]})"
            raise InvalidInput(message, details=[Detail(name, "build", message)])


def _append(
    session: Session, candidate: Candidate, type_name: str, fields: dict[str, Any],
    by: str | None,
) -> Recorded:  # fmt: skip
    """Store the event once per attempt; the same record again answers the stored one."""
    clean = SPECULATION_TYPES[type_name].schema.model_validate(fields).model_dump(mode="json")
    row = Event(type=type_name, repository=candidate.repository, natural_key=clean["attempt"],
                content_hash=content_hash(clean), slug=candidate.slug, sha=clean["sha"],
                fields=clean, actor=by)  # fmt: skip
    stored = store_once(session, row, key_field="attempt")
    return Recorded(type_name, stored.event.seq)


# ---- reading ------------------------------------------------------------------------------


def chain(session: Session, settings: Settings, epoch: int) -> list[dict[str, Any]]:
    """The builds under test of `epoch`'s handouts, bottom first: one query, by the events'
    (type, slug) index from the in-progress candidates."""
    statement = (
        select(Candidate.id, Candidate.slug, Event.type, Event.fields, Event.recorded_at)
        .join(
            Event,
            and_(
                Event.type.in_((STARTED, DISCARDED, STATUS_CHANGED)),
                Event.slug == Candidate.slug,
                Event.repository == Candidate.repository,
            ),
        )
        .where(
            Candidate.repository == settings.repository_name,
            Candidate.status == Status.in_progress.value,
            Candidate.epoch == epoch,
        )
        .order_by(Event.seq)
    )
    rows = [Row(cid, kind, fields, at, slug) for cid, slug, kind, fields, at in
            session.execute(statement)]  # fmt: skip
    return under_test(rows, epoch)


def counts(session: Session, settings: Settings) -> dict[str, int]:
    """Builds started, discarded, and landed (a registration with the build's attempt
    landed), over the whole event log."""
    repository = settings.repository_name
    by_type = dict(
        session.execute(
            select(Event.type, func.count())
            .where(Event.type.in_((STARTED, DISCARDED)), Event.repository == repository)
            .group_by(Event.type)
        ).all()
    )
    landed = session.scalar(
        select(func.count(distinct(Event.seq)))
        .select_from(Registration)
        .join(Event, and_(Event.type == STARTED, Event.natural_key == Registration.attempt))
        .where(
            Registration.repository == repository,
            Registration.status == "landed",
            Event.repository == repository,
        )
    )
    return {"started": by_type.get(STARTED, 0), "discarded": by_type.get(DISCARDED, 0),
            "landed": landed or 0}  # fmt: skip


def _rows_of(session: Session, candidate: Candidate, types: Sequence[str]) -> list[Row]:
    statement = (
        select(Event.type, Event.fields, Event.recorded_at)
        .where(
            Event.type.in_(types),
            Event.slug == candidate.slug,
            Event.repository == candidate.repository,
        )
        .order_by(Event.seq)
    )
    return [Row(candidate.id, kind, fields, at, candidate.slug)
            for kind, fields, at in session.execute(statement)]  # fmt: skip
