"""`integrator status`: one readable block — and exit 1 while anything needs an operator."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from integrator.cli.client import EXIT_OK, EXIT_REFUSED, ApiClient, print_json
from integrator.liveness import human_duration


def _mode_line(mode: dict[str, Any]) -> str:
    line = f"mode: {mode['mode']} (version {mode['version']})"
    if mode["changed_by"]:
        line += f", set by {mode['changed_by']} at {mode['changed_at']}: {mode['reason']}"
    if mode["forced"]:
        line += (
            f"\n  FORCED past incomplete evidence by {mode['forced_by']}: {mode['forced_reason']}"
        )
    return line


def _lease_line(lease: dict[str, Any]) -> str:
    if lease["held"]:
        return (
            f"lease: held by {lease['holder']}, epoch {lease['epoch']}, "
            f"expires in {human_duration(lease['expires_in_seconds'])}"
        )
    if lease["last_holder"] or lease["epoch"]:
        return (
            f"lease: no holder (last grant: epoch {lease['epoch']}, "
            f"{lease['last_holder'] or 'released'}, ended {lease['expires_at']})"
        )
    return "lease: never held"


def _eta(turn: dict[str, Any]) -> str:
    if turn["status"] == "in_progress":
        return "in progress"
    if turn["ahead"] == 0:
        return "next"
    if turn["eta_seconds"] is None:
        return f"{turn['ahead']} ahead, turn in: unknown (no recent turns to estimate from)"
    return f"{turn['ahead']} ahead, turn in about {human_duration(turn['eta_seconds'])}"


def _queue_lines(queue: dict[str, Any]) -> list[str]:
    depth = ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in queue["depth"].items())
    lanes = queue["lanes"]
    lines = [
        f"queue: {depth}",
        f"  queued by lane: {lanes['hotfix']} hotfix (taken first), {lanes['normal']} normal",
    ]
    oldest = queue["oldest_waiting"]
    if oldest:
        lines.append(
            f"  oldest waiting: {oldest['slug']} {oldest['branch']}@{oldest['sha'][:12]}, "
            f"for {human_duration(oldest['age_seconds'])}"
        )
        lines += [f"    unmet {why}" for why in oldest["why"]]
    if queue["turns"]:
        median = queue["turn_seconds_median"]
        basis = (
            f"a turn takes about {human_duration(median)}, the median of the last "
            f"{queue['turns_sampled']}"
            if median is not None
            else "no recent turns to estimate from"
        )
        lines.append(f"  turns ({basis}):")
        for turn in queue["turns"]:
            position = "-" if turn["position"] is None else str(turn["position"])
            where = f"{turn['branch']}@{turn['sha'][:12]}"
            lane = " [hotfix]" if turn.get("lane") == "hotfix" else ""
            lines.append(f"  {position:>5}  {turn['slug']}{lane}  {where}  {_eta(turn)}")
        if queue["more_queued"]:
            lines.append(f"  … and {queue['more_queued']} more queued")
    return lines


def _speculation_lines(builds: list[dict[str, Any]]) -> list[str]:
    """The chain under test in words: each build and what it rests on (main, or the build of
    the candidate below it)."""
    if not builds:
        return []
    parts = []
    for build in builds:
        below = build["below"]
        on = f"on {below[-1]}" if below else f"on main {build['base'][:12]}"
        parts.append(f"{build['candidate_id']} {build['slug']} {on}")
    return [f"under test: {'; '.join(parts)}"]


def _pause_lines(pause: dict[str, Any] | None) -> list[str]:
    """A paused queue is said first: it explains an idle worker (and is not a stall)."""
    if not pause:
        return []
    lines = [f"paused: {pause['summary']}"]
    if pause["reject_new"]:
        lines.append("  frozen: new finalize_ready are refused")
    lines.append(
        "  no turn is taken while paused (not a stall); the estimates below start when it ends"
    )
    lines.append("  resume with `integrator queue resume-processing`")
    return lines


def _flake_line(flakes: dict[str, Any]) -> str:
    if not flakes["passed"]:
        return "flake rate: no passing check yet"
    return (
        f"flake rate: {flakes['rate']:.1%} ({flakes['flaky']} of the last {flakes['passed']} "
        "passes needed a rerun of a check)"
    )


def _condition_lines(conditions: list[dict[str, Any]]) -> list[str]:
    if not conditions:
        return ["conditions: none active"]
    lines = [f"conditions: {len(conditions)} active"]
    for condition in conditions:
        lines.append(
            f"  {condition['code']} (since {condition['since']}): {condition['explanation']}"
        )
        lines.append(f"    what to do: {condition['action']}")
    return lines


def render(body: dict[str, Any]) -> str:
    """The status document as one block of text."""
    lines = [
        f"integrator status of {body['repository']} at {body['now']}",
        _mode_line(body["mode"]),
        _lease_line(body["lease"]),
        *_pause_lines(body["pause"]),
        *_queue_lines(body["queue"]),
        *_speculation_lines(body.get("speculation") or []),
        _flake_line(body["flake_rate"]),
        *_condition_lines(body["conditions"]),
    ]
    return "\n".join(lines)


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON body.")] = False,
) -> None:
    """Mode, lease, the pause, queue and turns, the builds under test, the flake rate, and every
    active condition; exit 1 if any is active (a paused queue is not one)."""
    body = ApiClient.from_environment().get("/v1/status")
    print_json(body) if as_json else typer.echo(render(body))
    raise typer.Exit(EXIT_REFUSED if body["conditions"] else EXIT_OK)
