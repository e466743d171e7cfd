"""The fault test's summary: what ran, what the load met, what was injected, what held."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.faults.checker import (
    GRANTS,
    RULES,
    History,
    PushAttempt,
    Violation,
    covered_by_bypasses,
    lease_intervals_never_overlap,
    main_is_explained,
    no_load_request_hung,
    no_push_hung,
    nothing_acknowledged_is_lost,
    nothing_integrated_twice,
    only_main_in_cutover_is_refused,
    percentile,
    push_checks_answer_in_time,
    ready_candidates_are_accounted_for,
    refusals_are_readable,
    the_audit_calls_break_glass_a_bypass,
)


def summary(history: History, faults: Counter[str], violations: list[Violation]) -> str:
    """A few lines for the test's output: what ran, what was injected, what held."""
    statuses = Counter(c.status for c in history.candidates if c.id in history.ready)
    failed = {v.rule for v in violations}
    latencies = history.check_latencies
    outcomes = Counter(f"{r.kind} {r.outcome}" for r in history.load_requests)
    glass = [p for p in history.pushes if p.break_glass]
    lines = [
        f"operations: {len(history.pushes)} pushes, {len(history.ready)} READY candidates "
        f"({dict(statuses)}), {len(history.mainline)} commits on main, "
        f"{sum(1 for e in history.lease_events if e.type in GRANTS)} lease grants",
        f"load: {dict(sorted(outcomes.items()))}; {len(history.acknowledged)} events "
        f"acknowledged; push checks p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms of {len(latencies)} "
        f"(deadline {history.hook_deadline:g} s)",
        f"break-glass pushes: {dict(Counter(_fate(p) for p in glass))}, "
        f"{len(history.bypasses)} recorded bypasses, "
        f"{len(covered_by_bypasses(history))} commits on main they cover",
        f"faults: {dict(sorted(faults.items()))} ({sum(faults.values())} in all)",
        "checks: "
        + ", ".join(f"{r.__name__} {'FAILED' if _rule_name(r) in failed else 'ok'}" for r in RULES),
    ]
    return "\n".join(lines)


def _fate(push: PushAttempt) -> str:
    return f"{push.mode} {'let through' if push.returncode == 0 else 'refused'}"


_RULE_NAMES = {
    lease_intervals_never_overlap: "lease",
    main_is_explained: "main",
    nothing_integrated_twice: "twice",
    ready_candidates_are_accounted_for: "ready",
    no_push_hung: "hung",
    only_main_in_cutover_is_refused: "refused",
    refusals_are_readable: "readable",
    nothing_acknowledged_is_lost: "lost",
    push_checks_answer_in_time: "latency",
    no_load_request_hung: "hung",
    the_audit_calls_break_glass_a_bypass: "audit",
}


def _rule_name(rule: Any) -> str:
    return _RULE_NAMES[rule]
