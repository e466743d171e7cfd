"""`integrator events|submit|queue` against a real service and a real repository."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrator.settings import Settings
from tests.gitrepos import Canonical
from tests.support import ServiceProcess, json_of, run_cli, settings_env


@pytest.fixture
def canonical(tmp_path: Path) -> Canonical:
    return Canonical(tmp_path)


@pytest.fixture
def configured(settings: Settings, canonical: Canonical) -> Settings:
    return settings.model_copy(update={"repo": str(canonical.bare)})


@pytest.fixture
def env(configured: Settings, tmp_path: Path) -> Iterator[dict[str, str]]:
    process = ServiceProcess(configured, tmp_path / "service.log")
    process.start()
    base = settings_env(configured, INTEGRATOR_URL=process.url)
    token = run_cli("tokens", "create", "--role", "reporter", "--name", "dev", env=base)
    yield {**base, "INTEGRATOR_TOKEN": token.stdout.strip()}
    process.stop()


def emit(env: dict[str, str], type_name: str, *pairs: str) -> None:
    args = ["events", "emit", type_name]
    for pair in pairs:
        args += ["--field", pair]
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stderr


def test_invalid_finalize_ready_exits_2_naming_the_missing_field(env: dict[str, str]) -> None:
    """Bad input is exit 2 with one line that names the field and its rule."""
    result = run_cli(
        "events", "emit", "finalize_ready",
        "--field", "slug=x", "--field", "branch=feat/x", "--field", f"sha={'a' * 40}",
        "--field", "orchestrator_session_id=o", "--field", "ready_at=2026-11-24T12:00:00Z",
        env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert "fields.worker_session_id" in result.stderr and "[missing]" in result.stderr
    assert result.stderr.count("\n") == 1


def test_cli_values_are_converted_to_each_fields_type(env: dict[str, str]) -> None:
    """slug=1234 stays the string "1234"; review_round=2 becomes the int 2."""
    emit(
        env, "review_approved", "slug=1234", "approved_at=2026-11-24T12:00:00Z",
        "review_round=2", "reviewer_session_id=r1",
    )  # fmt: skip
    listed = json_of(run_cli("events", "list", "--type", "review_approved", "--json", env=env))
    fields = listed["items"][0]["fields"]
    assert fields["slug"] == "1234" and fields["review_round"] == 2


def test_a_ready_candidate_appears_queued_and_a_waiting_one_says_why(
    env: dict[str, str], canonical: Canonical, tmp_path: Path
) -> None:
    """The issue's acceptance: queue list --json shows queued; queue show explains waiting."""
    sha = canonical.branch("feat/cli")
    emit(
        env, "review_approved", "slug=cli", "approved_at=2026-11-24T12:00:00Z",
        "review_round=1", "reviewer_session_id=r1",
    )  # fmt: skip
    envelope = tmp_path / "pushed.json"
    envelope.write_text(
        json.dumps(
            {
                "type": "branch_pushed",
                "fields": {"branch": "feat/cli", "sha": sha, "remote": "canonical",
                           "pushed_at": "2026-11-24T12:00:00Z", "pusher": "alice"},
                "idempotency_key": "push-1:refs/heads/feat/cli",
            }
        )
    )  # fmt: skip
    assert run_cli("events", "emit", "--file", str(envelope), env=env).returncode == 0
    submitted = run_cli("submit", "--slug", "cli", "--branch", "feat/cli", env=env)
    assert submitted.returncode == 0, submitted.stderr
    assert "queued at position 1" in submitted.stdout

    queued = json_of(run_cli("queue", "list", "--json", env=env))
    assert [(c["slug"], c["status"], c["sha"]) for c in queued["items"]] == [("cli", "queued", sha)]

    waiting_sha = canonical.branch("feat/wait")
    assert run_cli("submit", "--slug", "wait", "--branch", "feat/wait", env=env).returncode == 0
    shown = run_cli("queue", "show", "wait", env=env)
    assert shown.returncode == 0
    assert waiting_sha[:12] in shown.stdout
    assert "waiting: review_approved" in shown.stdout
    assert "waiting: branch_pushed" in shown.stdout
    assert "candidate_status_changed None -> waiting" in shown.stdout


def test_queue_show_of_an_unknown_slug_exits_1(env: dict[str, str]) -> None:
    """404 is a refusal: exit 1 with one line."""
    result = run_cli("queue", "show", "nobody", env=env)
    assert result.returncode == 1 and "no candidate" in result.stderr


def test_submitting_a_branch_the_repository_lacks_is_refused_exit_1(env: dict[str, str]) -> None:
    """A well-formed branch not (yet) pushed is the repository's refusal (409), not bad input."""
    result = run_cli("submit", "--slug", "s", "--branch", "feat/not-pushed", env=env)
    assert result.returncode == 1, result.stderr
    assert "branch_not_found" in result.stderr or "push it first" in result.stderr


def test_pausing_until_a_time_already_past_is_refused_exit_1(env: dict[str, str]) -> None:
    """The request is well-formed; the clock refuses it: exit 1 naming `until`."""
    operator = run_cli("tokens", "create", "--role", "operator", "--name", "op", env=env)
    as_operator = {**env, "INTEGRATOR_TOKEN": operator.stdout.strip()}
    result = run_cli(
        "queue", "pause", "--reason", "r", "--until", "2020-01-01T00:00:00Z", env=as_operator
    )
    assert result.returncode == 1, result.stderr
    assert "until" in result.stderr and result.stderr.count("\n") == 1
