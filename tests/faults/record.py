"""Reads the recorded history back after a run: the database's events, registrations and
candidates, main's first-parent chain from git, the audit's explanation of each of its
commits (`GET /v1/audit`), the hook's deadline as installed, and what the test itself
logged."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from integrator.db import make_engine
from integrator.models import Candidate, Event, Registration
from tests.faults.checker import (
    CandidateRow,
    History,
    LeaseEvent,
    MainCommit,
    RecordedBypass,
    RegistrationRow,
)
from tests.faults.workload import Load, People
from tests.faults.world import FaultWorld
from tests.gitrepos import git

LEASE_TYPES = ("lease_acquired", "lease_taken_over", "lease_released", "lease_force_released")


def mainline(world: FaultWorld) -> list[MainCommit]:
    bare = world.canonical.bare
    out = git("rev-list", "--first-parent", "--reverse", "--parents", f"{world.base}..main",
              cwd=bare)  # fmt: skip
    commits = []
    for line in out.splitlines():
        sha, *parents = line.split()
        text = git("show", "--no-patch", "--format=%(trailers:only,unfold)", sha, cwd=bare)
        trailers = dict(t.split(": ", 1) for t in text.splitlines() if ": " in t)
        commits.append(MainCommit(sha, tuple(parents), trailers))
    return commits


def is_break_glass(fields: dict[str, Any]) -> bool:
    """A verdict the hook gave alone in cutover under an override that let main move."""
    return bool(
        fields.get("decided_locally") and fields.get("bypass") and fields.get("allowed")
        and fields.get("mode") == "cutover" and fields.get("resolved_ref") == "refs/heads/main"
    )  # fmt: skip


def audit_kinds(world: FaultWorld) -> dict[str, str]:
    """sha -> how `GET /v1/audit` explains each commit of main since the run's base."""
    kinds: dict[str, str] = {}
    cursor: str | None = None
    while True:
        params = f"since={world.base}&limit=1000" + (f"&cursor={cursor}" if cursor else "")
        answer = world.call("GET", f"/v1/audit?{params}", world.operator, tries=8)
        assert answer is not None and answer.status_code == 200, answer and answer.text
        body = answer.json()
        kinds.update({i["sha"]: i["explanation"]["kind"] for i in body["items"]})
        cursor = body["next_cursor"]
        if cursor is None:
            return kinds


def read_history(world: FaultWorld, people: People, load: Load) -> History:
    engine = make_engine(world.settings)
    try:
        with Session(engine) as session:
            events = list(session.scalars(select(Event).order_by(Event.seq)))
            registrations = list(session.scalars(select(Registration)))
            candidates = list(session.scalars(select(Candidate)))
            history = History(
                lease_events=[
                    LeaseEvent(e.seq, e.type, e.fields) for e in events if e.type in LEASE_TYPES
                ],
                registrations=[
                    RegistrationRow(r.id, r.candidate_id, r.epoch, r.attempt, r.new, r.status)
                    for r in registrations
                ],
                candidates=[
                    CandidateRow(c.id, c.slug, c.branch, c.sha, c.status, c.position)
                    for c in candidates
                ],
                stored={
                    e.branch for e in events if e.type == "branch_pushed" and e.branch is not None
                },
            )
            for event in events:
                if event.type == "candidate_status_changed":
                    history.transitions.append((event.fields["candidate_id"], event.fields["to"]))
                elif event.type == "integration_blocked":
                    f = event.fields
                    history.blocked_evidence.add((f["slug"], f["branch"], f["sha"]))
                elif is_break_glass(event.fields or {}):
                    f = event.fields
                    history.bypasses.append(RecordedBypass(f["old"], f["new"], f["pusher"]))
    finally:
        engine.dispose()
    history.ready = {c for c, to in history.transitions if to == "queued"}
    history.mainline = mainline(world)
    history.on_main = set(git("rev-list", "main", cwd=world.canonical.bare).split())
    history.pushes = list(people.pushes)
    history.acknowledged = set(load.acknowledged)
    history.check_latencies = list(load.latencies)
    history.load_requests = list(load.requests)
    history.hook_deadline = float(json.loads(world.hook_config.read_text())["deadline_seconds"])
    history.audit = audit_kinds(world)
    return history
