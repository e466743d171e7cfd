"""The liveness rules, on hand-built facts: each holds past its threshold and not before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from integrator.liveness import (
    Code,
    Facts,
    HookSeen,
    InProgress,
    check_overdue,
    cutover_pending,
    holder_silent,
    hook_activity_slack,
    hook_silent,
    human_duration,
    judge,
    no_holder,
    queue_stalled,
)
from integrator.policy import Mode
from integrator.settings import Settings, get_settings

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def facts(**overrides: Any) -> Facts:
    values: dict[str, Any] = {"now": NOW, "mode": Mode.shadow}
    return Facts(**{**values, **overrides})


@pytest.fixture
def settings() -> Settings:
    return get_settings(
        stall_after_seconds=600,
        no_holder_after_seconds=300,
        lease_renew_deadline_seconds=60,
        check_timeout_seconds=3900,
        hook_silent_after_seconds=86400,
        cutover_pending_after_seconds=600,
    )


def handout(seconds_ago: float, slug: str = "fix-login") -> InProgress:
    return InProgress(7, slug, "a" * 40, 3, ago(seconds_ago))


def test_a_queue_with_no_outcome_past_the_stall_threshold_is_stalled(settings: Settings) -> None:
    """Queued for 11 min, last outcome 20 min ago, threshold 10 min: stalled since 1 min."""
    found = queue_stalled(facts(queued=2, queued_since=ago(660), last_progress=ago(1200)), settings)
    assert found is not None and found.code == Code.queue_stalled
    assert found.since == ago(60)
    assert "2 candidate(s) queued" in found.explanation and "11 min" in found.explanation
    assert found.details["queued"] == 2


def test_a_queue_is_not_stalled_before_the_threshold_or_when_empty(settings: Settings) -> None:
    """A recent outcome, a recently queued candidate, or nothing queued: no stall."""
    assert (
        queue_stalled(facts(queued=1, queued_since=ago(3600), last_progress=ago(599)), settings)
        is None
    )
    assert (
        queue_stalled(facts(queued=1, queued_since=ago(599), last_progress=ago(9999)), settings)
        is None
    )
    assert queue_stalled(facts(queued=0, last_progress=ago(9999)), settings) is None


def test_work_without_a_live_holder_past_the_threshold_is_no_holder(settings: Settings) -> None:
    """The grant expired 6 min ago with work queued for longer: no_holder since 1 min."""
    found = no_holder(
        facts(queued=1, queued_since=ago(3600), holder="bot", epoch=4, expires_at=ago(360)),
        settings,
    )
    assert found is not None and found.since == ago(60)
    assert "epoch 4" in found.explanation and "start the worker" in found.action


def test_a_lease_never_held_counts_from_the_oldest_waiting_work(settings: Settings) -> None:
    """No grant ever: counted from when work arrived, in progress work included."""
    found = no_holder(facts(in_progress=[handout(400)]), settings)
    assert found is not None and found.since == ago(100)
    assert no_holder(facts(queued=1, queued_since=ago(200)), settings) is None


def test_a_live_holder_or_no_work_is_not_no_holder(settings: Settings) -> None:
    live = facts(queued=1, queued_since=ago(9999), holder="bot", expires_at=NOW + timedelta(1))
    assert no_holder(live, settings) is None
    assert no_holder(facts(expires_at=ago(9999)), settings) is None


def test_a_holder_past_its_renew_deadline_is_silent_until_the_row_changes(
    settings: Settings,
) -> None:
    """Renewed 90 s ago with a 60 s deadline: silent since 30 s; still so once expired."""
    held = facts(holder="bot", epoch=2, renewed_at=ago(90), expires_at=NOW + timedelta(seconds=30))
    found = holder_silent(held, settings)
    assert found is not None and found.since == ago(30)
    assert found.details["expired"] is False and "bot (epoch 2)" in found.explanation
    expired = holder_silent(
        facts(holder="bot", epoch=2, renewed_at=ago(200), expires_at=ago(80)), settings
    )
    assert expired is not None and expired.details["expired"] is True
    assert holder_silent(facts(holder="bot", renewed_at=ago(59)), settings) is None
    assert holder_silent(facts(holder=None, renewed_at=ago(999)), settings) is None


def test_a_candidate_in_progress_past_the_check_timeout_is_overdue(settings: Settings) -> None:
    """The oldest overdue handout is named; a younger one is not overdue."""
    found = check_overdue(facts(in_progress=[handout(100, "young"), handout(4000)]), settings)
    assert found is not None and found.since == ago(100)
    assert found.details["slug"] == "fix-login" and found.details["overdue"] == 1
    assert "fix-login (aaaaaaaaaaaa)" in found.explanation
    assert check_overdue(facts(in_progress=[handout(3899)]), settings) is None


def test_activity_after_a_long_hook_silence_is_hook_silent(settings: Settings) -> None:
    """Last hook call two days ago, a finalize_ready since: silent since a day after the call."""
    hooks = [HookSeen("git1", "shadow", ago(2 * 86400))]
    found = hook_silent(
        facts(hooks=hooks, activity_type="finalize_ready", activity_at=ago(3600)), settings
    )
    assert found is not None and found.since == ago(3600)
    assert "finalize_ready" in found.explanation and "hooks check" in found.action


def test_hooks_that_never_called_are_silent_a_threshold_after_the_first_activity(
    settings: Settings,
) -> None:
    found = hook_silent(facts(activity_type="branch_pushed", activity_at=ago(90000)), settings)
    assert found is not None and found.since == ago(90000 - 86400)
    assert "no hook has ever called" in found.explanation
    assert (
        hook_silent(facts(activity_type="branch_pushed", activity_at=ago(80000)), settings) is None
    )


def test_no_activity_or_mode_off_is_never_hook_silent(settings: Settings) -> None:
    hooks = [HookSeen("git1", "shadow", ago(9 * 86400))]
    assert hook_silent(facts(hooks=hooks), settings) is None
    off = facts(mode=Mode.off, hooks=hooks, activity_type="finalize_ready", activity_at=ago(10))
    assert hook_silent(off, settings) is None


def test_the_activity_slack_is_a_minute_or_a_tenth_of_a_short_threshold() -> None:
    assert hook_activity_slack(get_settings()) == timedelta(seconds=60)
    assert hook_activity_slack(get_settings(hook_silent_after_seconds=2)) == timedelta(seconds=0.2)


def test_a_hook_that_saw_another_mode_after_cutover_is_pending(settings: Settings) -> None:
    """In cutover for 11 min, one of two hooks last saw shadow: pending since 1 min."""
    hooks = [HookSeen("git1", "shadow", ago(3600)), HookSeen("git2", "cutover", ago(5))]
    found = cutover_pending(
        facts(mode=Mode.cutover, mode_changed_at=ago(660), hooks=hooks), settings
    )
    assert found is not None and found.since == ago(60)
    assert found.details["pending"][0]["instance"] == "git1"
    assert "still lets main through" in found.explanation
    young = facts(mode=Mode.cutover, mode_changed_at=ago(500), hooks=hooks)
    assert cutover_pending(young, settings) is None
    shadow = facts(mode=Mode.shadow, mode_changed_at=ago(9999), hooks=hooks)
    assert cutover_pending(shadow, settings) is None


def test_judge_reports_every_holding_condition_in_code_order(settings: Settings) -> None:
    dead = facts(
        queued=1,
        queued_since=ago(9999),
        in_progress=[handout(9999)],
        holder="bot",
        renewed_at=ago(9999),
        expires_at=ago(9000),
    )
    assert [c.code for c in judge(dead, settings)] == [
        Code.queue_stalled,
        Code.no_holder,
        Code.holder_silent,
        Code.check_overdue,
    ]
    assert judge(facts(), settings) == []


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (45.4, "45 s"), (119, "119 s"), (420, "7 min"), (7500, "2 h 5 min"),
     (7200, "2 h"), (3 * 86400 + 4 * 3600, "3 d 4 h"), (-3, "0 s")],
)  # fmt: skip
def test_durations_read_as_an_operator_says_them(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text
