"""Registered updates through the API: created by the holder in cutover, authorized once by a
push check, landed by the push report, verified for `integrated`, reconciled by the next holder.

The canonical repository is real git; the hook's requests are sent as the hook sends them
(the installed hooks are exercised in test_registered_push_e2e.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from integrator.api.app import create_app
from integrator.models import Event
from integrator.settings import Settings
from tests.api_world import MAIN, ApiWorld, Holder
from tests.gitrepos import Canonical, git
from tests.support import TokenMaker

RELEASE = "refs/heads/release"


class World(ApiWorld):
    """The shared in-process service, with the hook's token and the push checks it sends."""

    def __init__(
        self, client: TestClient, tokens: TokenMaker, canonical: Canonical, engine: Engine
    ) -> None:
        super().__init__(client, tokens, canonical)
        self.engine = engine
        self.hook = tokens.bearer("hook")

    def cutover(self) -> None:
        self.set_mode_cutover(self.engine)

    def merge(self, sha: str, attempt: str, ref: str = MAIN) -> tuple[str, str]:
        """The integrator's commit: `sha` merged directly on the ref's tip with the attempt
        trailer, made in the work clone and not pushed; (old, new)."""
        branch = ref.removeprefix("refs/heads/")
        work = self.canonical.work
        git("fetch", "-q", "origin", cwd=work)
        git("checkout", "-q", "-B", branch, f"origin/{branch}", cwd=work)
        message = f"Merge {sha[:12]}\n\nIntegrator-Attempt: {attempt}"
        git("merge", "-q", "--no-ff", "-m", message, sha, cwd=work)
        return git("rev-parse", f"origin/{branch}", cwd=work), git("rev-parse", "HEAD", cwd=work)

    def land(self, ref: str, new: str) -> None:
        """The ref moves on the server (pushed without hooks: these tests send their reports)."""
        git("push", "-q", str(self.canonical.bare), f"{new}:{ref}", cwd=self.canonical.work)

    def check(self, nonce: str | None, *updates: dict[str, Any], **extra: Any) -> Any:
        body = {"repository": "canonical", "hook_instance": "git1", "pusher": "integrator-bot",
                "identity_source": "plain", "registration_nonce": nonce, "updates": list(updates),
                **extra}  # fmt: skip
        response = self.client.post("/v1/push-checks", json=body, headers=self.hook)
        assert response.status_code == 200, response.text
        return response.json()

    def report(self, *updates: dict[str, Any]) -> None:
        body = {"repository": "canonical", "hook_instance": "git1", "pusher": "integrator-bot",
                "identity_source": "plain", "updates": list(updates)}  # fmt: skip
        response = self.client.post("/v1/push-reports", json=body, headers=self.hook)
        assert response.status_code == 200, response.text

    def registration(self, registration_id: int) -> dict[str, Any]:
        response = self.client.get(f"/v1/registrations/{registration_id}", headers=self.reporter)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def candidate(self, candidate_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.client.get(
            f"/v1/candidates/{candidate_id}", headers=self.reporter
        ).json()
        return result

    def events(self, type_name: str) -> list[Event]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(Event).where(Event.type == type_name).order_by(Event.seq)
            )
            return list(rows)  # type: ignore[arg-type]


def update(old: str, new: str, ref: str = MAIN, *, first_parent: bool = True) -> dict[str, Any]:
    return {"ref": ref, "resolved_ref": ref, "old": old, "new": new, "fast_forward": True,
            "first_parent": first_parent}  # fmt: skip


@pytest.fixture
def world(
    settings: Settings, tmp_path: Path, tokens: TokenMaker, engine: Engine
) -> Iterator[World]:
    canonical = Canonical(tmp_path)
    git("push", "-q", "origin", f"main:{RELEASE}", cwd=canonical.work)
    configured = settings.model_copy(
        update={"repo": str(canonical.bare), "protected_refs": [MAIN, RELEASE]}
    )
    with TestClient(create_app(configured)) as client:
        yield World(client, tokens, canonical, engine)


@pytest.fixture
def handed(world: World) -> tuple[Holder, dict[str, Any]]:
    """In cutover, a holder with one candidate in progress."""
    world.ready("one")
    world.cutover()
    holder = world.holder()
    response = holder.next()
    assert response.status_code == 200, response.text
    return holder, response.json()


def registered(world: World, holder: Holder, candidate: dict[str, Any]) -> dict[str, Any]:
    """A registration of the holder's merge of `candidate` on main: its answer, old and new."""
    attempt = str(uuid.uuid4())
    old, new = world.merge(candidate["sha"], attempt)
    response = holder.register(candidate["id"], old, new, attempt)
    assert response.status_code == 201, response.text
    return {**response.json(), "old": old, "new": new, "attempt": attempt}


def test_a_registration_is_created_only_in_cutover(world: World) -> None:
    """In shadow the integrator never moves main: 409 not_in_cutover, nothing stored."""
    world.ready("shadowed")
    holder = world.holder()
    candidate = holder.next().json()
    old, new = world.merge(candidate["sha"], "a1")
    refused = holder.register(candidate["id"], old, new, "a1")
    assert refused.status_code == 409 and refused.json()["code"] == "not_in_cutover"
    assert world.events("registration_created") == []


def check(status: str, exit_code: int) -> dict[str, Any]:
    return {"status": status,
            "attempts": [{"exit_code": exit_code, "timed_out": False, "seconds": 1.5}]}  # fmt: skip


def test_a_registration_without_every_required_check_passed_is_refused_before_the_push(
    settings: Settings, tmp_path: Path, tokens: TokenMaker, engine: Engine
) -> None:
    """Green is checked when the holder registers, not only when it reports `integrated` after
    the push: a registration missing a required check, or listing one that failed, is 409
    checks_incomplete and nothing is registered; with every check passed it is issued."""
    canonical = Canonical(tmp_path)
    strict = settings.model_copy(
        update={"repo": str(canonical.bare), "required_checks": ["unit", "lint"]}
    )
    with TestClient(create_app(strict)) as client:
        world = World(client, tokens, canonical, engine)
        world.ready("one")
        world.cutover()
        holder = world.holder()
        candidate = holder.next().json()
        old, new = world.merge(candidate["sha"], "a1")
        missing = holder.register(
            candidate["id"], old, new, "a1", checks={"unit": check("passed", 0)}
        )
        assert missing.status_code == 409, missing.text
        assert missing.json()["code"] == "checks_incomplete" and "lint" in missing.json()["message"]
        red = {"unit": check("passed", 0), "lint": check("failed", 1)}
        failed = holder.register(candidate["id"], old, new, "a1", checks=red)
        assert failed.status_code == 409 and failed.json()["code"] == "checks_incomplete"
        assert world.events("registration_created") == []
        green = {"unit": check("passed", 0), "lint": check("passed", 0)}
        issued = holder.register(candidate["id"], old, new, "a1", checks=green)
        assert issued.status_code == 201, issued.text


def test_only_the_current_holder_registers(world: World, handed: tuple[Holder, Any]) -> None:
    """A stale epoch is refused with 409 lease_lost."""
    holder, candidate = handed
    world.force_release()
    world.holder("bot-2")
    old, new = world.merge(candidate["sha"], "a1")
    refused = holder.register(candidate["id"], old, new, "a1")
    assert refused.status_code == 409 and refused.json()["code"] == "lease_lost"


def test_a_registration_needs_the_holders_handout_a_protected_ref_and_commits(
    world: World, handed: tuple[Holder, Any]
) -> None:
    """Another candidate or an unprotected ref is 409 transition_refused; zeros are 422."""
    holder, candidate = handed
    old, new = world.merge(candidate["sha"], "a1")
    world.ready("two")
    waiting = holder.register(candidate["id"] + 1, old, new, "a1")
    assert waiting.status_code == 409 and waiting.json()["code"] == "transition_refused"
    side = holder.register(candidate["id"], old, new, "a1", ref="refs/heads/side")
    assert side.status_code == 409 and "not a protected ref" in side.json()["message"]
    deletion = holder.register(candidate["id"], old, "0" * 40, "a1")
    assert deletion.status_code == 422 and deletion.json()["details"][0]["field"] == "new"


def test_a_registered_update_is_authorized_once_lands_and_its_replay_is_refused(
    world: World, handed: tuple[Holder, Any]
) -> None:
    """registered → authorized (an identical retry passes while main is still old) → landed by
    the push report; the same push again is refused, and the answer never shows the nonce."""
    holder, candidate = handed
    reg = registered(world, holder, candidate)
    assert reg["status"] == "registered" and reg["epoch"] == holder.epoch
    first = world.check(reg["nonce"], update(reg["old"], reg["new"]))
    assert first["allow"] and first["reason_code"] == "registered"
    retry = world.check(reg["nonce"], update(reg["old"], reg["new"]))
    assert retry["allow"], "an identical retry after a hook deadline passes while main is old"
    assert world.registration(reg["id"])["status"] == "authorized"
    world.land(MAIN, reg["new"])
    world.report(update(reg["old"], reg["new"]))
    shown = world.registration(reg["id"])
    assert shown["status"] == "landed" and "nonce" not in shown
    replay = world.check(reg["nonce"], update(reg["old"], reg["new"]))
    assert not replay["allow"] and replay["reason_code"] == "registration_mismatch"
    assert len(world.events("registration_authorized")) == 1
    assert len(world.events("registration_landed")) == 1
    done = holder.integrated(candidate["id"], reg["id"], reg["new"], reg["attempt"])
    assert done.status_code == 200 and done.json()["status"] == "integrated"


def test_a_nonce_replayed_on_another_protected_ref_or_repository_is_refused(
    world: World, handed: tuple[Holder, Any]
) -> None:
    """A registration buys one update of one ref of one repository."""
    holder, candidate = handed
    reg = registered(world, holder, candidate)
    release = world.canonical.head(RELEASE)
    other_ref = world.check(reg["nonce"], update(release, reg["new"], RELEASE))
    assert not other_ref["allow"] and other_ref["reason_code"] == "registration_mismatch"
    other_repo = world.check(reg["nonce"], update(reg["old"], reg["new"]), repository="fork")
    assert not other_repo["allow"]
    assert world.registration(reg["id"])["status"] == "registered"


def test_a_nonce_of_an_earlier_epoch_is_refused_after_a_takeover(
    world: World, handed: tuple[Holder, Any]
) -> None:
    """The takeover voids it; the push check says the epoch ended."""
    holder, candidate = handed
    reg = registered(world, holder, candidate)
    world.force_release()
    world.holder("bot-2")
    refused = world.check(reg["nonce"], update(reg["old"], reg["new"]))
    assert not refused["allow"] and refused["reason_code"] == "lease_margin"
    assert world.registration(reg["id"])["status"] == "void"


def test_an_update_that_is_not_first_parent_is_refused(
    world: World, handed: tuple[Holder, Any]
) -> None:
    """new^1 must be old: the integrator's merge sits directly on main."""
    holder, candidate = handed
    reg = registered(world, holder, candidate)
    refused = world.check(reg["nonce"], update(reg["old"], reg["new"], first_parent=False))
    assert not refused["allow"] and refused["reason_code"] == "first_parent"
    assert world.registration(reg["id"])["status"] == "registered"


def test_less_than_the_authorize_margin_left_is_refused(
    world: World, handed: tuple[Holder, Any], settings: Settings
) -> None:
    """With the SQL clock 110 s on (10 s of a 120 s lease left, margin 15 s) the check refuses."""
    holder, candidate = handed
    reg = registered(world, holder, candidate)
    later = world.client.app.state.settings.model_copy(update={"sql_clock_offset_ms": 110_000})
    with TestClient(create_app(later)) as client:
        body = {"repository": "canonical", "hook_instance": "git1", "pusher": "integrator-bot",
                "registration_nonce": reg["nonce"],
                "updates": [update(reg["old"], reg["new"])]}  # fmt: skip
        answer = client.post("/v1/push-checks", json=body, headers=world.hook).json()
    assert not answer["allow"] and answer["reason_code"] == "lease_margin"
    assert world.registration(reg["id"])["status"] == "registered"


def test_a_new_registration_voids_the_candidates_unused_one_and_fail_ends_one(
    world: World, handed: tuple[Holder, Any]
) -> None:
    """Only the newest registration of a handout can land; the holder fails one it gave up."""
    holder, candidate = handed
    first = registered(world, holder, candidate)
    second = registered(world, holder, candidate)
    assert world.registration(first["id"])["status"] == "void"
    refused = world.check(first["nonce"], update(first["old"], first["new"]))
    assert not refused["allow"]
    failed = holder.fail(second["id"])
    assert failed.status_code == 200 and failed.json()["status"] == "failed"
    again = holder.fail(second["id"])
    assert again.status_code == 409 and again.json()["code"] == "transition_refused"


def test_integrated_needs_a_landed_registration_or_its_commit_on_main(
    world: World, handed: tuple[Holder, Any]
) -> None:
    """No registration, one never authorized, or one whose commit is not on main: refused; an
    authorized one whose commit is on main (no report arrived) is landed by the outcome."""
    holder, candidate = handed
    reg = registered(world, holder, candidate)
    body = {**holder.grant(), "outcome": "integrated", "main_sha": reg["new"], "attempt": "x"}
    missing = world.client.post(f"/v1/candidates/{candidate['id']}/outcome", json=body,
                                headers=holder.auth)  # fmt: skip
    assert missing.status_code == 422 and missing.json()["details"][0]["field"] == "registration_id"
    unused = holder.integrated(candidate["id"], reg["id"], reg["new"], reg["attempt"])
    assert unused.status_code == 409 and "is registered" in unused.json()["message"]
    assert world.check(reg["nonce"], update(reg["old"], reg["new"]))["allow"]
    not_landed = holder.integrated(candidate["id"], reg["id"], reg["new"], reg["attempt"])
    assert not_landed.status_code == 409 and not_landed.json()["code"] == "content_not_on_main"
    world.land(MAIN, reg["new"])  # the post-receive report is lost
    done = holder.integrated(candidate["id"], reg["id"], reg["new"], reg["attempt"])
    assert done.status_code == 200 and done.json()["status"] == "integrated"
    assert world.registration(reg["id"])["status"] == "landed"
    assert len(world.events("integration_completed")) == 1


def test_the_next_holder_records_a_landed_push_of_a_dead_holder_once_without_handing_it_out(
    world: World, handed: tuple[Holder, Any]
) -> None:
    """Authorized, pushed, holder gone before report or outcome: reconciliation lands it."""
    holder, candidate = handed
    reg = registered(world, holder, candidate)
    assert world.check(reg["nonce"], update(reg["old"], reg["new"]))["allow"]
    world.land(MAIN, reg["new"])
    world.force_release()
    successor = world.holder("bot-2")
    assert world.registration(reg["id"])["status"] == "in_doubt"
    assert successor.next().status_code == 204
    assert successor.next().status_code == 204
    assert world.registration(reg["id"])["status"] == "landed"
    assert world.candidate(candidate["id"])["status"] == "integrated"
    [completed] = world.events("integration_completed")
    assert completed.fields["main_sha"] == reg["new"]


def test_an_authorized_push_that_did_not_land_fails_and_its_candidate_leads_the_queue(
    world: World, handed: tuple[Holder, Any]
) -> None:
    """Not on main — a human commit forging its attempt trailer explains nothing — so the
    registration fails and the candidate is handed out again first, with its position."""
    holder, candidate = handed
    world.ready("later")
    reg = registered(world, holder, candidate)
    assert world.check(reg["nonce"], update(reg["old"], reg["new"]))["allow"]
    work = world.canonical.work
    git("checkout", "-q", "-B", "main", reg["old"], cwd=work)
    (work / "forged.txt").write_text("x\n")
    git("add", "forged.txt", cwd=work)
    git("commit", "-q", "-m", f"forged\n\nIntegrator-Attempt: {reg['attempt']}", cwd=work)
    world.land(MAIN, git("rev-parse", "HEAD", cwd=work))
    world.force_release()
    successor = world.holder("bot-2")
    again = successor.next().json()
    assert (again["id"], again["position"]) == (candidate["id"], candidate["position"])
    assert world.registration(reg["id"])["status"] == "failed"
    assert world.events("integration_completed") == []
    [failed] = world.events("registration_failed")
    assert failed.fields["reconciled"] is True
