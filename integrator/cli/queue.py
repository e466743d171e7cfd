"""`integrator queue list|show`: the queue as the service sees it."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from integrator.cli.client import ApiClient, print_json
from integrator.settings import get_settings

queue_app = typer.Typer(help="The merge queue.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON body.")]


def candidate_line(c: dict[str, Any]) -> str:
    position = "-" if c["position"] is None else str(c["position"])
    return f"{position:>5}  {c['status']:<11}  {c['slug']}  {c['branch']}@{c['sha'][:12]}"


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
    client = ApiClient.from_settings(get_settings())
    body = client.get("/v1/candidates", status=status, all=all_ or None, limit=1000)
    if as_json:
        print_json(body)
        return
    for candidate in body["items"]:
        typer.echo(candidate_line(candidate))


@queue_app.command("show")
def show(
    slug: Annotated[str, typer.Argument(help="The slug.")],
    as_json: JsonFlag = False,
) -> None:
    """The newest candidate of a slug, why it waits, and its history."""
    body = ApiClient.from_settings(get_settings()).get(f"/v1/slugs/{slug}")
    if as_json:
        print_json(body)
        return
    candidate = body["candidate"]
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
        detail = (
            f"{fields.get('from')} -> {fields.get('to')}"
            if event["type"] == "candidate_status_changed"
            else fields.get("sha", "")[:12]
        )
        typer.echo(f"  #{event['seq']} {event['recorded_at']} {event['type']} {detail}")


@queue_app.command("close")
def close(
    slug: Annotated[str, typer.Argument(help="The slug.")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")],
    as_json: JsonFlag = False,
) -> None:
    """Close the slug's newest open candidate (operators)."""
    body = ApiClient.from_settings(get_settings()).post(
        f"/v1/slugs/{slug}/close", {"reason": reason}
    )
    print_json(body) if as_json else typer.echo(f"closed: {candidate_line(body)}")
