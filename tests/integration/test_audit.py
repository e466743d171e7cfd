"""The audit of main on real rollouts: real pushes through the installed hooks, real worker
landings in cutover, commits put on main around the guard, and `integrator audit` as a
subprocess against a real service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from integrator.api.app import create_app
from integrator.api.audit import AuditOut
from integrator.settings import Settings
from tests.gitrepos import Canonical, git
from tests.integration.test_cli_startup import probe
from tests.support import TokenMaker, free_port, json_of, run_cli, settings_env
from tests.worker_support import WorkerWorld, wait_for


def around_the_guard(bare: Path, message: str) -> str:
    """A commit put on main by someone with shell access on the git server: written into the
    bare repository and the ref moved with `git update-ref`, no push, no hook."""
    main = git("rev-parse", "refs/heads/main", cwd=bare)
    tree = git("rev-parse", f"{main}^{{tree}}", cwd=bare)
    commit = git("commit-tree", tree, "-p", main, "-m", message, cwd=bare)
    git("update-ref", "refs/heads/main", commit, main, cwd=bare)
    return commit


class Auditor:
    """`integrator audit` as a reader runs it, against a world's service."""

    def __init__(self, world: WorkerWorld) -> None:
        token = world.tokens("reader", "auditor")
        self.env = settings_env(world.settings, INTEGRATOR_URL=world.service.url,
                                INTEGRATOR_TOKEN=token)  # fmt: skip

    def run(self, *args: str) -> Any:
        return run_cli("audit", *args, env=self.env)

    def json(self, *args: str) -> tuple[int, dict[str, Any]]:
        done = self.run("--json", *args)
        assert done.returncode in (0, 1), done.stderr
        return done.returncode, json_of(done)


def by_sha(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["sha"]: item for item in body["items"]}


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    with WorkerWorld(settings, tmp_path, tokens).start().guard() as world:
        yield world


def test_a_full_rollout_is_explained_and_a_commit_around_the_guard_in_cutover_fails_it(
    world: WorkerWorld,
) -> None:
    """Shadow (a person pushes main, the worker predicts), cutover (the queue lands through
    the hooks): every commit explained, exit 0. Then a commit written into the bare
    repository with update-ref, and one carrying a forged integrator trailer: both listed
    first as failures, exit 1."""
    auditor = Auditor(world)
    initial = world.canonical.head()
    world.canonical.new_commit_on_main("by-alice")
    assert world.canonical.push_as("alice", "main").returncode == 0
    pushed = world.canonical.head()
    first, second = world.ready("first"), world.ready("second")
    assert world.run_worker("--once").returncode == 0  # shadow: predictions only
    assert world.canonical.head() == pushed
    world.cutover()
    fast = world.post("/v1/slugs/second/promote", {"reason": "incident 7"}, world.operator)
    assert fast.status_code == 200, fast.text
    landed = world.run_worker("--once")
    assert landed.returncode == 0, landed.stderr
    assert world.candidate(first)["status"] == world.candidate(second)["status"] == "integrated"
    wait_for(lambda: all(r.status == "landed" for r in world.registrations()), 30, "landed")

    code, body = auditor.json()

    assert code == 0
    assert (body["unexplained"], body["unexplained_after_cutover"]) == (0, 0)
    items = by_sha(body)
    assert items[initial]["explanation"]["kind"] == "before_guard"
    alice = items[pushed]["explanation"]
    assert (alice["kind"], alice["pusher"], alice["decision"]) == ("push", "alice", "would_reject")
    assert items[pushed]["mode"] == "shadow"
    registrations = world.registrations()
    queued = [items[r.new] for r in registrations]
    reporter = world.events("finalize_ready")[0].actor
    # The fast-tracked one landed first, and says who fast-tracked it and why.
    for item, registration, candidate in zip(queued, registrations, [second, first], strict=True):
        explanation = item["explanation"]
        assert explanation["kind"] == "queue" and item["mode"] == "cutover"
        assert (explanation["candidate_id"], explanation["registration_id"]) == (
            candidate, registration.id
        )  # fmt: skip
        assert explanation["epoch"] == registration.epoch
        assert explanation["submitted_by"] == explanation["approved_by"] == reporter
    hotfix, normal = (item["explanation"] for item in queued)
    promoter = world.events("candidate_promoted")[0].actor
    assert (hotfix["lane"], hotfix["promoted_by"], hotfix["promotion_reason"]) == (
        "hotfix", promoter, "incident 7"
    )  # fmt: skip
    assert f"fast-tracked by {promoter}: incident 7" in hotfix["summary"]
    assert (normal["lane"], normal["promoted_by"]) == ("normal", None)
    assert body["counts"] == {"queue": 2, "push": 1, "bypass": 0, "before_guard": 1,
                              "unexplained": 0}  # fmt: skip

    sneaked = around_the_guard(world.canonical.bare, "hotfix straight on the server")
    forged = around_the_guard(
        world.canonical.bare,
        f"looks queued\n\nIntegrator-Candidate: {first}\nIntegrator-Epoch: 1\n"
        f"Integrator-Attempt: {registrations[0].attempt}",
    )
    code, body = auditor.json()

    assert code == 1
    assert (body["unexplained"], body["unexplained_after_cutover"]) == (2, 2)
    assert [i["sha"] for i in body["unexplained_items"]] == [forged, sneaked]
    failed = by_sha(body)
    assert failed[sneaked]["failure"] and failed[sneaked]["mode"] == "cutover"
    assert failed[forged]["explanation"]["trailer_without_registration"] is True
    assert failed[registrations[1].new]["explanation"]["kind"] == "queue"

    human = auditor.run()
    assert human.returncode == 1, human.stderr
    lines = human.stdout.splitlines()
    assert lines[1].startswith("FAILURE: 2 commit(s) on main that no queue registration")
    assert forged[:12] in lines[2] and sneaked[:12] in lines[4]
    assert "a trailer alone explains nothing" in lines[3]
    assert "1 commit(s) from before the guard watched main" in human.stdout


def test_since_takes_a_revision_or_a_date_and_refuses_what_is_neither(
    world: WorkerWorld,
) -> None:
    """`--since REV` audits the commits after it; `--since DATE` those committed since."""
    auditor = Auditor(world)
    start = world.canonical.head()
    world.canonical.new_commit_on_main("one")
    assert world.canonical.push_as("alice", "main").returncode == 0
    one = world.canonical.head()
    world.canonical.new_commit_on_main("two")
    assert world.canonical.push_as("bob", "main").returncode == 0
    two = world.canonical.head()

    _, after_start = auditor.json("--since", start)
    _, after_one = auditor.json("--since", "main~1")
    _, today = auditor.json("--since", "2000-01-01")
    _, future = auditor.json("--since", "2999-01-01T00:00:00+00:00")

    assert [i["sha"] for i in after_start["items"]] == [two, one]
    assert [i["sha"] for i in after_one["items"]] == [two]
    assert after_one["items"][0]["explanation"]["pusher"] == "bob"
    assert [i["sha"] for i in today["items"]] == [two, one, start]
    assert future["items"] == [] and future["total"] == 0
    for bad, rule, code in (("no-such-rev", "known_revision", 1), ("2026-02-30", "date", 2)):
        refused = auditor.run("--since", bad)
        assert refused.returncode == code, refused.stderr
        assert "since: " in refused.stderr and f"[{rule}]" in refused.stderr


def test_a_commit_around_the_guard_in_shadow_bounded_by_shadow_pushes_is_only_a_warning(
    world: WorkerWorld,
) -> None:
    """Shadow records and never blocks: an unexplained commit there is listed, exit 0."""
    auditor = Auditor(world)
    world.canonical.new_commit_on_main("before")
    assert world.canonical.push_as("alice", "main").returncode == 0
    sneaked = around_the_guard(world.canonical.bare, "around the guard, in shadow")
    world.canonical.new_commit_on_main("after")
    assert world.canonical.push_as("alice", "main").returncode == 0

    code, body = auditor.json()
    human = auditor.run()

    assert code == 0 and human.returncode == 0
    assert (body["unexplained"], body["unexplained_after_cutover"]) == (1, 0)
    (warning,) = body["unexplained_items"]
    assert (warning["sha"], warning["mode"], warning["failure"]) == (sneaked, "shadow", False)
    assert "warning: 1 unexplained commit(s) while in shadow or off" in human.stdout


# ---- the same rules through the API, with verdicts recorded the way the hook uploads them ----


class Api:
    def __init__(self, client: TestClient, tokens: TokenMaker, canonical: Canonical) -> None:
        self.client = client
        self.canonical = canonical
        self.hook = {"Authorization": f"Bearer {tokens('hook')}"}
        self.operator = {"Authorization": f"Bearer {tokens('operator')}"}
        self.reader = {"Authorization": f"Bearer {tokens('reader')}"}

    def audit(self, **params: Any) -> httpx.Response:
        return self.client.get("/v1/audit", params=params, headers=self.reader)

    def spool(self, old: str, new: str, *, bypass: bool) -> None:
        """A verdict the hook gave alone in cutover, uploaded once the service is back."""
        item = {
            "repository": "canonical", "hook_instance": "git1:/srv/canonical.git",
            "hook_version": "1", "pusher": "root-on-git1", "identity_source": "plain",
            "updates": [{"ref": "refs/heads/main", "resolved_ref": "refs/heads/main",
                         "old": old, "new": new, "fast_forward": True, "first_parent": True}],
            "decided_locally": True, "allow": True, "mode": "cutover", "bypass": bypass,
            "reason_code": "break_glass" if bypass else "fail_open",
            "decided_at": "2026-11-26T12:00:00+00:00",
        }  # fmt: skip
        uploaded = self.client.post("/v1/push-checks/spool", json={"items": [item]},
                                    headers=self.hook)  # fmt: skip
        assert uploaded.json()["accepted"] == 1, uploaded.text


@pytest.fixture
def api(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[Api]:
    canonical = Canonical(tmp_path)
    configured = settings.model_copy(update={"repo": str(canonical.bare)})
    with TestClient(create_app(configured)) as client:
        yield Api(client, tokens, canonical)


@pytest.mark.parametrize(("bypass", "kind"), [(True, "break_glass"), (False, "fail_open")])
def test_a_protected_push_let_through_by_the_hook_alone_in_cutover_is_a_bypass(
    api: Api, bypass: bool, kind: str
) -> None:
    """Break-glass or fail-open while the service was down: explained by the spooled record."""
    forced = api.client.post("/v1/cutover", json={"reason": "go", "force": True},
                             headers=api.operator)  # fmt: skip
    assert forced.status_code == 200, forced.text
    old = api.canonical.head()
    new = around_the_guard(api.canonical.bare, "emergency fix while the service was down")
    before = api.audit().json()
    assert new in [i["sha"] for i in before["unexplained_items"] if i["failure"]]

    api.spool(old, new, bypass=bypass)
    body = api.audit().json()

    top = body["items"][0]
    assert (top["sha"], top["mode"], top["failure"]) == (new, "cutover", False)
    assert top["explanation"]["kind"] == "bypass"
    assert top["explanation"]["bypass_kind"] == kind
    assert top["explanation"]["pusher"] == "root-on-git1"
    assert body["unexplained_after_cutover"] == 0


def test_pages_follow_the_cursor_and_bad_input_is_a_422_naming_the_field(api: Api) -> None:
    """limit and cursor page the history newest first; since, cursor and limit are checked."""
    for n in range(3):
        around_the_guard(api.canonical.bare, f"commit {n}")
    history = git("rev-list", "--first-parent", "main", cwd=api.canonical.bare).split()

    first = api.audit(limit=2).json()
    rest = api.audit(limit=2, cursor=first["next_cursor"]).json()

    assert [i["sha"] for i in first["items"] + rest["items"]] == history
    AuditOut.model_validate(first)  # the body is what the OpenAPI document says
    assert rest["next_cursor"] is None and first["total"] == rest["total"] == 4
    for params, field, status in (
        ({"since": "no-such-rev"}, "since", 404),  # no such commit
        ({"cursor": "f" * 40}, "cursor", 404),  # no such commit in the range
        ({"since": "2026-02-30"}, "since", 422),
        ({"since": "--all"}, "since", 422),
        ({"since": "a b"}, "since", 422),
        ({"cursor": "not-a-sha"}, "cursor", 422),
        ({"limit": 0}, "limit", 422),
    ):
        refused = api.audit(**params)
        assert refused.status_code == status, (params, refused.text)
        assert refused.json()["details"][0]["field"] == field


def test_the_audit_command_loads_no_server_side_code() -> None:
    """It speaks HTTP only: it starts as fast as the other read commands."""
    unreachable = settings_env(Settings(), INTEGRATOR_URL=f"http://127.0.0.1:{free_port()}",
                               INTEGRATOR_TOKEN="itg_probe_probe")  # fmt: skip
    for args in (["audit"], ["audit", "--since", "main~3", "--json"]):
        code, stderr, loaded = probe(*args, env=unreachable)
        assert code == 3 and stderr.startswith("integrator: service unreachable"), stderr
        assert loaded == set()


def test_a_canonical_repository_that_cannot_be_read_is_a_503_to_retry_not_a_500(
    api: Api,
) -> None:
    """The service is fine and the request is fine; the repository is not there now (a mount
    gone, a mirror being replaced): say so as unavailable, with when to try again."""
    moved = api.canonical.bare.with_name("elsewhere.git")
    api.canonical.bare.rename(moved)
    try:
        refused = api.audit()
    finally:
        moved.rename(api.canonical.bare)

    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "repository_unreadable"
    assert "canonical repository" in refused.json()["message"]
    assert int(refused.headers["Retry-After"]) > 0
    assert api.audit().status_code == 200
