"""`integrator queue …`: the queue as the service sees it, and the operator's controls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from integrator.cli.client import EXIT_REFUSED, ApiClient, fail, print_json

queue_app = typer.Typer(help="The merge queue.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON body.")]


#: `queue list`'s header; each candidate line has the same columns.
CANDIDATE_HEADER = f"{'POS':>5}  {'ID':>6}  {'STATUS':<11}  SLUG  BRANCH@COMMIT"


def candidate_line(c: dict[str, Any]) -> str:
    position = "-" if c["position"] is None else str(c["position"])
    lane = " [hotfix]" if c.get("lane") == "hotfix" else ""  # the normal lane goes unsaid
    return (
        f"{position:>5}  {c['id']:>6}  {c['status']:<11}  {c['slug']}{lane}  "
        f"{c['branch']}@{c['sha'][:12]}"
    )


def followup_lines(f: dict[str, Any]) -> list[str]:
    """A follow-up as its author reads it: what blocked, the evidence, what to do."""
    lines = [
        f"follow-up {f['id']} ({f['status']}): {f['slug']}, candidate {f['candidate_id']}, "
        f"blocked {f['blocks']} time(s), last at {f['blocked_at']}"
    ]
    lines += [f"  why: {line}" for line in f["diagnostics"]]
    for item in f["conflict_evidence"]:
        shown = {k: v for k, v in item.items() if k not in ("kind", "output_tail") and v}
        lines.append(f"  {item['kind']}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
        if item.get("output_tail"):
            tail = str(item["output_tail"]).rstrip().splitlines()[-5:]
            lines += [f"    | {line}" for line in tail]
    if f["status"] == "open":
        lines.append(f"  next: {f['next_action']}")
    else:
        ended = f"{f['resolution']} by {f['resolved_by']} at {f['resolved_at']}"
        lines.append(f"  {ended}: {f['reason']}")
    return lines


@queue_app.command("list")
def list_(
    status: Annotated[list[str] | None, typer.Option(help="Only this status (repeatable).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include finished candidates.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Candidates in queue order."""
    client = ApiClient.from_environment()
    body = client.get("/v1/candidates", status=status, all=all_ or None, limit=1000)
    if as_json:
        print_json(body)
        return
    typer.echo(CANDIDATE_HEADER)
    if not body["items"]:
        typer.echo("no candidates" if status or all_ else "the queue is empty")
    for candidate in body["items"]:
        typer.echo(candidate_line(candidate))


def slug_story(client: ApiClient, name: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The story of slug `name`, else (all digits) of the slug of candidate `name`.

    A slug may itself be all digits (`1234`): the slug wins, the id is the fallback.
    Returns the story and, when found by id, that candidate (it may not be the newest)."""
    if not (name.isascii() and name.isdecimal()):
        return client.get(f"/v1/slugs/{name}"), None
    response = client.request("GET", f"/v1/slugs/{name}", ok=(404,))
    if response.status_code != 404:
        return response.json(), None
    found = client.request("GET", f"/v1/candidates/{name}", ok=(404, 422))
    if not found.is_success:
        fail(EXIT_REFUSED, f"no candidate with slug or id {name!r}")
    candidate = found.json()
    return client.get(f"/v1/slugs/{candidate['slug']}"), candidate


@queue_app.command("show")
def show(
    slug: Annotated[
        str, typer.Argument(metavar="SLUG|ID", help="The slug, or the ID `queue list` prints.")
    ],
    as_json: JsonFlag = False,
) -> None:
    """The newest candidate of a slug (or of candidate ID's slug), why it waits, its history."""
    body, asked = slug_story(ApiClient.from_environment(), slug)
    if as_json:
        print_json(body)
        return
    candidate = body["candidate"]
    if asked and asked["id"] != candidate["id"]:
        typer.echo(f"candidate {asked['id']}: {candidate_line(asked).strip()}")
        typer.echo(f"newest candidate of {asked['slug']}:")
    typer.echo(candidate_line(candidate))
    if candidate["main_sha_checked"]:
        typer.echo(f"checked against main {candidate['main_sha_checked'][:12]}")
    for reason in candidate["why"]:
        typer.echo(f"  waiting: {reason}")
    if body["followup"]:
        typer.echo("\n".join(followup_lines(body["followup"])))
    typer.echo("history:")
    for event in body["history"]:
        fields = event["fields"]
        if event["type"] == "candidate_status_changed":
            detail = f"{fields.get('from')} -> {fields.get('to')}"
        elif event["type"] in ("candidate_promoted", "candidate_demoted"):
            detail = f"{fields['from_lane']} -> {fields['to_lane']} by {event['actor']}: "
            detail += fields["reason"]
        elif event["type"] == "check_timeout_overridden":
            detail = f"{fields['check']} {fields['seconds']:g}s by {event['actor']}: "
            detail += fields["reason"]
        else:
            detail = fields.get("sha", "")[:12]
        typer.echo(f"  #{event['seq']} {event['recorded_at']} {event['type']} {detail}")


SlugArgument = Annotated[str, typer.Argument(help="The slug.")]
ReasonOption = Annotated[str, typer.Option(help="Why (recorded).")]


def slug_control(action: str, done: str, slug: str, reason: str, as_json: bool) -> None:
    """close, promote and demote: one POST with the reason; the service answers the candidate."""
    body = ApiClient.from_environment().post(f"/v1/slugs/{slug}/{action}", {"reason": reason})
    print_json(body) if as_json else typer.echo(f"{done}: {candidate_line(body)}")


@queue_app.command("close")
def close(slug: SlugArgument, reason: ReasonOption, as_json: JsonFlag = False) -> None:
    """Close the slug's newest open candidate (operators)."""
    slug_control("close", "closed", slug, reason, as_json)


@queue_app.command("promote")
def promote(slug: SlugArgument, reason: ReasonOption, as_json: JsonFlag = False) -> None:
    """Move the slug's newest open candidate into the hotfix lane, taken before the normal
    lane (operators). It still passes every check."""
    slug_control("promote", "promoted", slug, reason, as_json)


@queue_app.command("demote")
def demote(slug: SlugArgument, reason: ReasonOption, as_json: JsonFlag = False) -> None:
    """Move the slug's newest open candidate back into the normal lane (operators)."""
    slug_control("demote", "demoted", slug, reason, as_json)


#: `--until` as a duration from now: `90s`, `30m`, `2h`, `1d`.
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def until_of(text: str) -> str:
    """`--until`: an ISO 8601 time with an offset, or a duration from now (`30m`, `2h`)."""
    unit = DURATION_UNITS.get(text[-1:])
    if unit is not None and text[:-1].isdecimal():
        return (datetime.now(UTC) + timedelta(seconds=int(text[:-1]) * unit)).isoformat()
    return text  # the service validates it and names the field when it is not a time


def pause_line(body: dict[str, Any]) -> str:
    return f"paused: {body['summary']}" if body["paused"] else "the queue is not paused"


@queue_app.command("pause")
def pause(
    reason: Annotated[str, typer.Option(help="Why (recorded, shown in status).")],
    until: Annotated[
        str | None,
        typer.Option(help="When it ends by itself: a time with an offset, or 30m, 2h, 1d."),
    ] = None,
    reject_new: Annotated[
        bool, typer.Option("--reject-new", help="Also refuse new finalize_ready (a freeze).")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Stop handing out candidates (operators); the worker keeps its lease and idles."""
    payload: dict[str, Any] = {"reason": reason, "reject_new": reject_new}
    if until is not None:
        payload["until"] = until_of(until)
    body = ApiClient.from_environment().post("/v1/queue/pause", payload)
    print_json(body) if as_json else typer.echo(pause_line(body))


@queue_app.command("resume-processing")
def resume_processing(as_json: JsonFlag = False) -> None:
    """End the pause (operators): the worker takes the next candidate at its next poll."""
    body = ApiClient.from_environment().post("/v1/queue/resume-processing", {})
    print_json(body) if as_json else typer.echo("resumed: the queue hands out candidates again")


@queue_app.command("check-timeout")
def check_timeout(
    slug: SlugArgument,
    name: Annotated[str, typer.Argument(help="The check's name (as the worker names it).")],
    seconds: Annotated[float, typer.Argument(help="Its timeout for this candidate, in seconds.")],
    reason: ReasonOption,
    as_json: JsonFlag = False,
) -> None:
    """Give one check of the slug's newest open candidate a timeout of its own (operators);
    the worker applies it from the candidate's next turn."""
    body = ApiClient.from_environment().post(
        f"/v1/slugs/{slug}/check-timeout", {"check": name, "seconds": seconds, "reason": reason}
    )
    if as_json:
        print_json(body)
        return
    shown = ", ".join(f"{check}={value:g}s" for check, value in body["check_timeouts"].items())
    typer.echo(f"check timeouts of {candidate_line(body['candidate']).strip()}: {shown}")
