"""Push checks, evidence, cutover and rollback through the API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from integrator.api.app import create_app
from integrator.models import Event, HookInstance
from integrator.settings import Settings
from tests.api_world import post_ready
from tests.builders import push_check
from tests.gitrepos import Canonical
from tests.support import TokenMaker

ZERO = "0" * 40


class Ops:
    def __init__(self, client: TestClient, tokens: TokenMaker, canonical: Canonical) -> None:
        self.client = client
        self.canonical = canonical
        self.hook = {"Authorization": f"Bearer {tokens('hook')}"}
        self.operator = {"Authorization": f"Bearer {tokens('operator')}"}
        self.reporter = {"Authorization": f"Bearer {tokens('reporter')}"}
        self.integrator = {"Authorization": f"Bearer {tokens('integrator')}"}

    def check(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post("/v1/push-checks", json=body, headers=self.hook)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def human_main_push(self) -> dict[str, Any]:
        return self.check(push_check("refs/heads/main", self.canonical.head(), "c" * 40))

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.client.post(path, json=body, headers=self.operator)

    def predict_one(self, slug: str) -> dict[str, Any]:
        post_ready(self.client, self.reporter, self.canonical, slug)
        grant = self.client.post(
            "/v1/lease/acquire", json={"holder": "bot"}, headers=self.integrator
        ).json()
        body = {"epoch": grant["epoch"], "token": grant["token"]}
        handed = self.client.post("/v1/queue/next", json=body, headers=self.integrator).json()
        outcome = {**body, "outcome": "would_integrate", "attempt": "a1"}
        response = self.client.post(
            f"/v1/candidates/{handed['id']}/outcome", json=outcome, headers=self.integrator
        )
        assert response.status_code == 200, response.text
        return handed


@pytest.fixture
def ops(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[Ops]:
    canonical = Canonical(tmp_path)
    configured = settings.model_copy(
        update={
            "repo": str(canonical.bare),
            "cutover_min_outcomes": 1,
            "cutover_min_shadow_seconds": 0,
        }
    )
    with TestClient(create_app(configured)) as client:
        yield Ops(client, tokens, canonical)


def events_of(engine: Engine, type_name: str) -> list[Event]:
    with engine.connect() as connection:
        rows = connection.execute(select(Event).where(Event.type == type_name).order_by(Event.seq))
        return list(rows)  # type: ignore[arg-type]


def test_a_fresh_install_is_in_shadow(ops: Ops) -> None:
    """Shadow records, never blocks: the default mode."""
    assert ops.client.get("/v1/mode", headers=ops.hook).json()["mode"] == "shadow"


def test_shadow_allows_and_records_a_human_main_push(ops: Ops, engine: Engine) -> None:
    """push_would_reject with pusher, ref, old, new and identity source; the hook is seen."""
    answer = ops.human_main_push()
    assert answer["allow"] and answer["mode"] == "shadow"
    assert answer["updates"][0]["would_reject"] is True
    assert answer["protected_refs"] == ["refs/heads/main"]
    assert any("after cutover" in line for line in answer["messages"])
    [recorded] = events_of(engine, "push_would_reject")
    fields = recorded.fields
    assert (fields["pusher"], fields["identity_source"], fields["ref"]) == (
        "alice", "plain", "refs/heads/main"
    )  # fmt: skip
    assert fields["old"] == ops.canonical.head() and fields["new"] == "c" * 40
    with engine.connect() as connection:
        hook = connection.execute(select(HookInstance)).one()
    assert hook.mode_seen == "shadow" and hook.instance == "git1:/srv/canonical.git"


def test_cutover_is_refused_with_every_missing_item_as_a_blocker(ops: Ops) -> None:
    """Incomplete evidence: nothing changes, each missing item listed."""
    response = ops.post("/v1/cutover", {"reason": "go"})
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "evidence_incomplete"
    codes = {b.split(":")[0] for b in body["blockers"]}
    assert codes == {"shadow_ran", "live_policy_refuses", "registration_allowed", "rollback_drill"}
    assert ops.client.get("/v1/mode", headers=ops.hook).json()["mode"] == "shadow"


def test_forced_cutover_refuses_humans_on_main_and_rollback_restores_shadow(
    ops: Ops, engine: Engine
) -> None:
    """--force is recorded; in cutover main is refused, branches pass; rollback is immediate."""
    forced = ops.post("/v1/cutover", {"reason": "go now", "force": True})
    assert forced.status_code == 200 and forced.json()["forced"] is True
    refused = ops.human_main_push()
    assert refused["allow"] is False and refused["reason_code"] == "not_registered"
    assert any("integrator submit" in line for line in refused["messages"])
    branch = ops.check(push_check("refs/heads/feature", ZERO, "d" * 40))
    assert branch["allow"] is True
    assert ops.post("/v1/mode", {"mode": "off", "reason": "x"}).status_code == 409
    back = ops.post("/v1/rollback", {"reason": "incident"})
    assert back.status_code == 200 and back.json()["mode"]["mode"] == "shadow"
    [changed_in, changed_out] = events_of(engine, "mode_changed")
    assert changed_in.fields["forced"] is True and changed_out.fields["to"] == "shadow"
    assert len(events_of(engine, "push_rejected")) == 1


def test_rollback_outside_cutover_is_a_recorded_no_op(ops: Ops, engine: Engine) -> None:
    """Always allowed, never an error."""
    response = ops.post("/v1/rollback", {"reason": "just in case"})
    assert response.status_code == 200 and response.json()["mode"]["mode"] == "shadow"
    assert len(events_of(engine, "rollback_noop")) == 1


def test_complete_evidence_allows_cutover_and_predictions_go_back_to_the_queue(
    ops: Ops, engine: Engine
) -> None:
    """All six items pass; predicted candidates are processed for real in position order."""
    predicted = ops.predict_one("p")
    ops.human_main_push()
    drill = ops.post("/v1/rollback", {"reason": "rehearse", "drill": True})
    assert drill.json()["drill"]["refusal_observed"] is True
    evidence = ops.client.get("/v1/evidence", headers=ops.hook).json()
    assert evidence["complete"], evidence["blockers"]
    assert [i["ok"] for i in evidence["items"]] == [True] * 6
    assert evidence["hooks"][0]["pending"] is True
    response = ops.post("/v1/cutover", {"reason": "evidence accepted"})
    assert response.status_code == 200 and response.json()["forced"] is False
    candidate = ops.client.get(f"/v1/candidates/{predicted['id']}", headers=ops.hook).json()
    assert candidate["status"] == "queued" and candidate["position"] == predicted["position"]
    assert ops.human_main_push()["allow"] is False


def test_the_drill_never_leaves_the_service_in_cutover(ops: Ops, engine: Engine) -> None:
    """A round trip inside one transaction: the mode after is shadow, both changes recorded."""
    ops.post("/v1/rollback", {"reason": "rehearse", "drill": True})
    assert ops.client.get("/v1/mode", headers=ops.hook).json()["mode"] == "shadow"
    drills = [e.fields["drill"] for e in events_of(engine, "mode_changed")]
    assert drills == [True, True]


def test_only_operators_change_modes(ops: Ops) -> None:
    """A hook or reporter token cannot switch the guard."""
    for headers in (ops.hook, ops.reporter, ops.integrator):
        assert (
            ops.client.post("/v1/cutover", json={"reason": "x"}, headers=headers).status_code == 403
        )


def test_push_reports_become_branch_pushed_events_once(ops: Ops, engine: Engine) -> None:
    """post-receive's report is keyed by repository, ref, old and new: retries are duplicates."""
    sha = ops.canonical.branch("feat/r")
    body = push_check("refs/heads/feat/r", ZERO, sha)
    first = ops.client.post("/v1/push-reports", json=body, headers=ops.hook).json()
    again = ops.client.post("/v1/push-reports", json=body, headers=ops.hook).json()
    assert (first, again) == ({"recorded": 1, "duplicates": 0}, {"recorded": 0, "duplicates": 1})
    [pushed] = events_of(engine, "branch_pushed")
    assert pushed.fields["branch"] == "feat/r" and pushed.fields["pusher"] == "alice"


def test_spooled_verdicts_and_break_glass_uses_are_recorded_once(ops: Ops, engine: Engine) -> None:
    """Verdicts given without the service arrive later; a bypass is reported as such."""
    item = {**push_check("refs/heads/main", "a" * 40, "b" * 40), "decided_locally": True,
            "allow": True, "reason_code": "service_unavailable", "mode": "cutover",
            "decided_at": "2026-11-24T12:00:00+00:00", "bypass": True}  # fmt: skip
    first = ops.client.post("/v1/push-checks/spool", json={"items": [item]}, headers=ops.hook)
    again = ops.client.post("/v1/push-checks/spool", json={"items": [item]}, headers=ops.hook)
    assert first.json() == {"accepted": 1, "duplicates": 0, "invalid": 0, "refused": []}
    assert again.json() == {"accepted": 0, "duplicates": 1, "invalid": 0, "refused": []}
    [allowed] = events_of(engine, "push_allowed")
    assert allowed.fields["decided_locally"] is True and allowed.fields["bypass"] is True
    assert len(events_of(engine, "push_bypass")) == 1


def test_push_checks_validate_their_input(ops: Ops) -> None:
    """Bad object names are 422 naming the field; a reader cannot ask for verdicts."""
    bad = push_check("refs/heads/main", "nothex", "b" * 40)
    response = ops.client.post("/v1/push-checks", json=bad, headers=ops.hook)
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "updates.0.old"
    assert ops.client.post("/v1/push-checks", json=push_check("refs/heads/x", ZERO, "b" * 40),
                           headers=ops.reporter).status_code == 403  # fmt: skip


def test_a_human_push_landing_a_predicted_candidate_scores_it(ops: Ops, engine: Engine) -> None:
    """post-receive's report of main makes the service read main and score the prediction."""
    predicted = ops.predict_one("landing")
    old = ops.canonical.head()
    new = ops.canonical.merge_to_main(predicted["sha"])
    body = push_check("refs/heads/main", old, new)
    assert ops.client.post("/v1/push-reports", json=body, headers=ops.hook).status_code == 200
    candidate = ops.client.get(f"/v1/candidates/{predicted['id']}", headers=ops.hook).json()
    assert candidate["status"] == "integrated"
    [scored] = events_of(engine, "prediction_scored")
    assert scored.fields["matched_by"] == "reachability" and scored.fields["agreed"] is True


def test_the_service_reads_main_itself_when_no_hook_reports_the_push(
    settings: Settings, tmp_path: Path, tokens: TokenMaker, engine: Engine
) -> None:
    """Post-receive only speeds scoring up: the service's own watch of main finds the landing."""
    canonical = Canonical(tmp_path)
    configured = settings.model_copy(
        update={"repo": str(canonical.bare), "main_watch_interval_seconds": 0.2}
    )
    with TestClient(create_app(configured)) as client:
        ops = Ops(client, tokens, canonical)
        predicted = ops.predict_one("watched")
        canonical.merge_to_main(predicted["sha"])  # no push report: nothing tells the service
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            status = client.get(f"/v1/candidates/{predicted['id']}", headers=ops.hook).json()
            if status["status"] == "integrated":
                break
            time.sleep(0.1)
    assert status is not None and status["status"] == "integrated"
    [scored] = events_of(engine, "prediction_scored")
    assert scored.actor == "service:main-watch"


def test_an_integrator_trailered_commit_on_main_without_a_registration_fails_parity(
    ops: Ops,
) -> None:
    """Anyone can write a trailer: only a registration explains it (evidence item 2)."""
    from tests.gitrepos import git

    canonical = ops.canonical
    git("checkout", "-q", "main", cwd=canonical.work)
    (canonical.work / "forged.txt").write_text("x\n")
    git("add", "forged.txt", cwd=canonical.work)
    git("commit", "-q", "-m", "looks official\n\nIntegrator-Attempt: forged-1", cwd=canonical.work)
    git("push", "-q", "origin", "main", cwd=canonical.work)
    evidence = ops.client.get("/v1/evidence", headers=ops.hook).json()
    parity = next(i for i in evidence["items"] if i["code"] == "shadow_parity")
    assert parity["ok"] is False
    assert parity["numbers"]["unexplained_trailered_commits"] == 1
    assert any("without a registration" in b for b in parity["blockers"])


def test_a_prediction_that_landed_unnoticed_is_scored_at_cutover_not_requeued(
    ops: Ops, engine: Engine
) -> None:
    """At cutover, content already on main is recorded as scoring records it, never merged again."""
    predicted = ops.predict_one("unnoticed")
    ops.canonical.merge_to_main(predicted["sha"])  # no report reached the service
    assert ops.post("/v1/cutover", {"reason": "go", "force": True}).status_code == 200
    candidate = ops.client.get(f"/v1/candidates/{predicted['id']}", headers=ops.hook).json()
    assert candidate["status"] == "integrated"
    [scored] = events_of(engine, "prediction_scored")
    assert scored.fields["candidate_id"] == predicted["id"]
