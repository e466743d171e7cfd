"""post-receive: reports what moved without making the pusher wait."""

from __future__ import annotations

import time

from tests.integration.hooks.conftest import FakeService, ServerRepo, dead_url, fixed, git

ZERO = "0" * 40


def test_push_reports_every_ref_that_moved_with_its_resolved_ref(
    installed: ServerRepo, fake: FakeService
) -> None:
    """One push-report per push names the pusher and each update, symbolic refs resolved."""
    git("symbolic-ref", "refs/heads/alias", "refs/heads/main", cwd=installed.bare)
    old = installed.ref("main")
    new = installed.commit("second")
    git("branch", "topic", cwd=installed.work)

    assert installed.push("main:refs/heads/alias", "topic").returncode == 0

    (report,) = fake.wait_for("/v1/push-reports")
    body = report.body
    assert report.headers["authorization"] == f"Bearer {fake.token}"
    assert (body["repository"], body["hook_version"]) == ("canonical", "1")
    assert (body["pusher"], body["identity_source"]) == ("alice", "plain")
    assert body["hook_instance"].endswith(f":{installed.bare}")
    assert sorted(body["updates"], key=lambda u: u["ref"]) == [
        {"ref": "refs/heads/alias", "resolved_ref": "refs/heads/main", "old": old, "new": new},
        {"ref": "refs/heads/topic", "resolved_ref": "refs/heads/topic", "old": ZERO, "new": new},
    ]


def test_a_slow_service_does_not_delay_the_push(installed: ServerRepo, fake: FakeService) -> None:
    """The reporting child lets go of git's pipes: a 3 s report does not hold the push."""
    fake.respond("POST", "/v1/push-reports", fixed(200, {}), delay=3.0)
    new = installed.commit("second")

    started = time.monotonic()
    result = installed.push("main")
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stderr
    assert elapsed < 2.0, elapsed
    (report,) = fake.wait_for("/v1/push-reports")
    assert report.body["updates"][0]["new"] == new


def test_verdicts_spooled_while_the_service_was_down_are_uploaded_by_the_next_push(
    repo: ServerRepo, fake: FakeService
) -> None:
    """Verdicts decided locally, and the report the service missed, arrive once it is back."""
    repo.install(url=dead_url())
    first = repo.commit("while down")
    assert repo.push("main").returncode == 0
    (spooled,) = repo.spooled()
    missed = repo.state_dir / "reports"
    assert deadline_poll(lambda: len(list(missed.glob("*.json"))) == 1)

    repo.install()  # the service is back at its address
    second = repo.commit("service back")
    assert repo.push("main").returncode == 0

    (upload,) = fake.wait_for("/v1/push-checks/spool")
    assert upload.body["items"] == [spooled]
    assert spooled["updates"][0]["new"] == first
    reports = fake.wait_for("/v1/push-reports", count=2)
    assert {r.body["updates"][0]["new"] for r in reports} == {first, second}
    assert deadline_poll(lambda: not repo.spooled() and not list(missed.glob("*.json")))


def test_spool_stays_when_the_upload_is_refused(installed: ServerRepo, fake: FakeService) -> None:
    """A spooled verdict is deleted only after a 200: a refused upload is sent again next time."""
    fake.respond("POST", "/v1/push-checks", fixed(503))
    fake.respond("POST", "/v1/push-checks/spool", fixed(500))
    installed.commit("second")
    assert installed.push("main").returncode == 0
    (first,) = fake.wait_for("/v1/push-checks/spool")
    git("branch", "topic", cwd=installed.work)

    assert installed.push("topic").returncode == 0

    _, second = fake.wait_for("/v1/push-checks/spool", count=2)
    (kept,) = first.body["items"]
    assert len(second.body["items"]) == 2
    assert second.body["items"][0]["spool_id"] == kept["spool_id"]


def test_chained_post_receive_runs_with_the_same_input(repo: ServerRepo, fake: FakeService) -> None:
    """A post-receive that was there before install still runs and sees git's input."""
    seen = repo.root / "seen.txt"
    hook = repo.bare / "hooks" / "post-receive"
    hook.write_text(f"#!/bin/sh\ncat > {seen}\necho previous hook ran\n")
    hook.chmod(0o755)
    repo.install(chain_existing=True)
    new = repo.commit("second")

    result = repo.push("main")

    assert result.returncode == 0
    assert "remote: previous hook ran" in result.stderr
    assert seen.read_text().split()[1:] == [new, "refs/heads/main"]
    fake.wait_for("/v1/push-reports")


def deadline_poll(condition: object, timeout: float = 15.0) -> bool:
    """Poll `condition()` until true or the timeout passes."""
    assert callable(condition)
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())
