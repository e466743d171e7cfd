"""Scoring shadow predictions against canonical main, read by the service itself."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from integrator import scoring
from integrator.admission import CanonicalRepo
from integrator.api.app import create_app
from integrator.db import READ_ONLY, make_sessionmaker
from integrator.models import Event
from integrator.settings import Settings
from tests.builders import branch_pushed, finalize_ready, review_approved
from tests.gitrepos import Canonical, git
from tests.support import TokenMaker, json_of, run_cli, settings_env
from tests.worker_support import WorkerWorld


class Shadow:
    """A service in shadow on a canonical repository, and a holder that records predictions."""

    def __init__(self, client: TestClient, tokens: TokenMaker, canonical: Canonical) -> None:
        self.client = client
        self.canonical = canonical
        self.reporter = {"Authorization": f"Bearer {tokens('reporter')}"}
        self.operator = {"Authorization": f"Bearer {tokens('operator')}"}
        self.integrator = {"Authorization": f"Bearer {tokens('integrator')}"}
        grant = client.post("/v1/lease/acquire", json={"holder": "bot"}, headers=self.integrator)
        self.grant = {k: grant.json()[k] for k in ("epoch", "token")}

    def predicted(self, slug: str, commits: int = 1, outcome: str = "would_integrate") -> int:
        """A candidate with `commits` commits on its branch, handed out and predicted."""
        branch = f"feat/{slug}"
        git("checkout", "-q", "-B", branch, "main", cwd=self.canonical.work)
        for n in range(commits):
            sha = self.canonical.commit(f"{slug}-{n}.txt", f"{slug} {n}\n", f"{slug} part {n}")
        git("push", "-q", "-f", "origin", branch, cwd=self.canonical.work)
        git("checkout", "-q", "main", cwd=self.canonical.work)
        for envelope in (
            review_approved(slug),
            branch_pushed(branch, sha),
            finalize_ready(slug, branch, sha),
        ):
            assert self.client.post("/v1/events", json=envelope, headers=self.reporter).is_success
        handed = self.client.post("/v1/queue/next", json=self.grant, headers=self.integrator)
        assert handed.json()["slug"] == slug, handed.text
        extra: dict[str, Any] = {"attempt": "a", "main_sha": self.canonical.head()}
        if outcome == "would_block":
            extra["conflict_evidence"] = [{"kind": "check", "command": "make", "exit_code": 1}]
            extra["diagnostics"] = ["make failed"]
        body = {**self.grant, "outcome": outcome, **extra}
        candidate_id = int(handed.json()["id"])
        reported = self.client.post(
            f"/v1/candidates/{candidate_id}/outcome", json=body, headers=self.integrator
        )
        assert reported.json()["status"] == "predicted", reported.text
        return candidate_id

    def sha(self, candidate_id: int) -> str:
        return str(self.status_of(candidate_id)["sha"])

    def status_of(self, candidate_id: int) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get(
            f"/v1/candidates/{candidate_id}", headers=self.operator
        ).json()
        return body

    def score(self, headers: dict[str, str] | None = None) -> Any:
        return self.client.post("/v1/predictions/score", headers=headers or self.operator)


@pytest.fixture
def shadow(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[Shadow]:
    canonical = Canonical(tmp_path)
    configured = settings.model_copy(update={"repo": str(canonical.bare)})
    with TestClient(create_app(configured)) as client:
        yield Shadow(client, tokens, canonical)


def push_main(canonical: Canonical) -> None:
    git("push", "-q", "origin", "main", cwd=canonical.work)


def test_a_rebase_merge_of_a_multi_commit_candidate_is_scored_by_patch_id(
    shadow: Shadow,
) -> None:
    """Each of the candidate's commits has its twin on main's first-parent history."""
    candidate = shadow.predicted("rebased", commits=2)
    shadow.canonical.commit("unrelated.txt", "x\n", "main moved on")
    git("cherry-pick", f"main..{shadow.sha(candidate)}", cwd=shadow.canonical.work)
    push_main(shadow.canonical)

    (scored,) = shadow.score().json()["scored"]

    assert (scored["candidate_id"], scored["matched_by"]) == (candidate, "patch_id")
    assert scored["main_sha"] == shadow.canonical.head()
    assert shadow.status_of(candidate)["status"] == "integrated"


def test_a_prediction_whose_content_is_not_on_main_stays_predicted(shadow: Shadow) -> None:
    """A different change on main is no match; nothing is recorded."""
    candidate = shadow.predicted("pending")
    shadow.canonical.commit("pending-0.txt", "something else\n", "same file, other content")
    push_main(shadow.canonical)
    assert shadow.score().json() == {"scored": []}
    assert shadow.status_of(candidate)["status"] == "predicted"


def test_a_would_block_that_landed_is_scored_as_a_disagreement(shadow: Shadow) -> None:
    """The prediction said blocked, main says integrated: agreed is false."""
    candidate = shadow.predicted("blocked-but-landed", outcome="would_block")
    shadow.canonical.merge_to_main(shadow.sha(candidate))
    (scored,) = shadow.score().json()["scored"]
    assert (scored["predicted"], scored["actual"], scored["agreed"]) == (
        "would_block",
        "integrated",
        False,
    )


def test_two_scoring_runs_that_both_saw_a_landing_record_it_once(
    shadow: Shadow, settings: Settings, engine: Engine
) -> None:
    """The write re-reads the candidate under a lock: the second run finds it scored."""
    candidate = shadow.predicted("raced")
    shadow.canonical.merge_to_main(shadow.sha(candidate))
    configured = settings.model_copy(update={"repo": str(shadow.canonical.bare)})
    repo = CanonicalRepo(configured)
    sessions = make_sessionmaker(engine)
    with sessions() as first, sessions() as second:
        for session in (first, second):  # both read before either writes
            session.connection(execution_options={READ_ONLY: True})
        seen_first = scoring.find_landed(first, configured, repo)
        seen_second = scoring.find_landed(second, configured, repo)
        first.rollback()
        second.rollback()
        with first.begin():
            recorded_first = scoring.record(first, configured, seen_first, by="replica-1")
        with second.begin():
            recorded_second = scoring.record(second, configured, seen_second, by="replica-2")
    assert (len(seen_first), len(seen_second)) == (1, 1)
    assert (len(recorded_first), len(recorded_second)) == (1, 0)
    with engine.connect() as connection:
        count = connection.scalar(
            select(func.count()).select_from(Event).where(Event.type == "prediction_scored")
        )
    assert count == 1


def test_only_operators_hooks_and_the_integrator_may_score(
    shadow: Shadow, tokens: TokenMaker
) -> None:
    """A reporter or reader token is refused with 403."""
    for role in ("reporter", "reader"):
        refused = shadow.score({"Authorization": f"Bearer {tokens(role)}"})
        assert refused.status_code == 403, refused.text
    hook = shadow.score({"Authorization": f"Bearer {tokens('hook')}"})
    assert hook.status_code == 200


# -- how a prediction fared: a right block is not a disagreement -------------------------------


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    """A real service, and the real worker to make the predictions."""
    with WorkerWorld(settings, tmp_path, tokens).start() as world:
        yield world


def merge_by_hand(canonical: Canonical, sha: str, resolved: dict[str, str]) -> str:
    """A human merge of `sha` into main that conflicts, resolved by hand and pushed."""
    git("checkout", "-q", "main", cwd=canonical.work)
    with pytest.raises(subprocess.CalledProcessError):
        git("merge", "-q", "--no-ff", "-m", "merge, resolved by hand", sha, cwd=canonical.work)
    for path, content in resolved.items():
        (canonical.work / path).write_text(content)
        git("add", path, cwd=canonical.work)
    git("commit", "-q", "--no-edit", cwd=canonical.work)
    push_main(canonical)
    return canonical.head()


def scored_once(world: WorkerWorld) -> dict[int, dict[str, Any]]:
    """Score what landed; each landing's `prediction_scored` record by candidate."""
    assert world.post("/v1/predictions/score", {}, world.operator).status_code == 200
    return {e.fields["candidate_id"]: e.fields for e in world.events("prediction_scored")}


def test_a_would_block_that_lands_through_a_hand_resolution_of_its_files_was_right(
    world: WorkerWorld,
) -> None:
    """git's merge of the landing conflicts on the files the block named: blocked_then_resolved."""
    blocked = world.ready("conflicting", path="README", content="theirs\n")
    world.push_to_main("README", "ours\n", "a human edit of README on main")
    assert world.run_worker("--once").returncode == 0
    (prediction,) = world.events("would_block")
    assert prediction.fields["conflict_evidence"] == [
        {"kind": "conflict", "path": "README", "conflict": "content"}
    ]

    landing = merge_by_hand(world.canonical, world.candidate(blocked)["sha"], {"README": "both\n"})

    scored = scored_once(world)[blocked]
    assert (scored["category"], scored["agreed"]) == ("blocked_then_resolved", True)
    assert (scored["conflicts"], scored["main_sha"]) == (["README"], landing)
    assert world.candidate(blocked)["status"] == "integrated"


def test_recomputing_the_landing_merge_writes_nothing_into_the_canonical_repository(
    world: WorkerWorld,
) -> None:
    """The service reads canonical in place: git's merge of the landing leaves no object there."""
    blocked = world.ready("conflicting", path="README", content="theirs\n")
    world.push_to_main("README", "ours\n", "a human edit of README on main")
    assert world.run_worker("--once").returncode == 0
    merge_by_hand(world.canonical, world.candidate(blocked)["sha"], {"README": "both\n"})
    objects = world.canonical.bare / "objects"
    before = sorted(p.relative_to(objects) for p in objects.rglob("*") if p.is_file())

    assert scored_once(world)[blocked]["category"] == "blocked_then_resolved"

    assert sorted(p.relative_to(objects) for p in objects.rglob("*") if p.is_file()) == before


def test_a_would_integrate_that_landed_cleanly_is_agreed(world: WorkerWorld) -> None:
    """The main commit that brought it in is recorded (the merge, not main's tip)."""
    clean = world.ready("clean")
    assert world.run_worker("--once").returncode == 0
    landing = world.canonical.merge_to_main(world.candidate(clean)["sha"])
    world.push_to_main("later.txt", "later\n", "main moved on after the merge")

    scored = scored_once(world)[clean]

    assert (scored["category"], scored["agreed"]) == ("agreed", True)
    assert scored["main_sha"] == landing


def test_a_would_block_whose_branch_then_merges_cleanly_is_a_disagreement(
    world: WorkerWorld,
) -> None:
    """Main dropped its conflicting change; the branch landed without a resolution."""
    blocked = world.ready("conflicting", path="README", content="theirs\n")
    edit = world.push_to_main("README", "ours\n", "a human edit of README on main")
    assert world.run_worker("--once").returncode == 0
    assert [e.type for e in world.events("would_integrate", "would_block")] == ["would_block"]
    git("revert", "--no-edit", edit, cwd=world.canonical.work)
    world.canonical.merge_to_main(world.candidate(blocked)["sha"])  # clean: no conflict left

    scored = scored_once(world)[blocked]

    assert (scored["category"], scored["agreed"]) == ("disagreed", False)
    assert scored["conflicts"] == []


def test_evidence_reports_each_category_separately_in_json_and_in_text(
    world: WorkerWorld, tokens: TokenMaker
) -> None:
    """Agreed, right blocks, disagreements and unscored predictions, each counted."""
    world.push_to_main("NOTES", "base\n", "notes on main")
    clean = world.ready("clean")
    resolved = world.ready("resolved", path="README", content="theirs\n")
    reverted = world.ready("reverted", path="NOTES", content="branch notes\n")
    world.ready("pending")
    world.push_to_main("README", "ours\n", "a human edit of README on main")
    notes = world.push_to_main("NOTES", "main notes\n", "a human edit of NOTES on main")
    assert world.run_worker("--once").returncode == 0
    sha = {c: world.candidate(c)["sha"] for c in (clean, resolved, reverted)}
    world.canonical.merge_to_main(sha[clean])
    merge_by_hand(world.canonical, sha[resolved], {"README": "both\n"})
    git("revert", "--no-edit", notes, cwd=world.canonical.work)
    world.canonical.merge_to_main(sha[reverted])
    assert len(scored_once(world)) == 3
    env = settings_env(
        world.settings, INTEGRATOR_URL=world.service.url, INTEGRATOR_TOKEN=tokens("operator")
    )

    as_json = run_cli("evidence", "--json", env=env)
    as_text = run_cli("evidence", env=env)

    items = {i["code"]: i for i in json_of(as_json)["items"]}
    numbers = items["shadow_parity"]["numbers"]
    assert {k: v for k, v in numbers.items() if k.startswith("prediction")} == {
        "predictions_scored": 3,
        "predictions_agreed": 1,
        "predictions_blocked_then_resolved": 1,
        "predictions_disagreed": 1,
        "predictions_unscored": 1,
        "prediction_agreement": 0.667,
    }
    for shown in ("predictions_agreed=1", "predictions_blocked_then_resolved=1",
                  "predictions_disagreed=1", "predictions_unscored=1"):  # fmt: skip
        assert shown in as_text.stdout, as_text.stdout
