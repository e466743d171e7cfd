"""`integrator blocked list|close` and `integrator resume`: what is blocked, and the way back."""

from __future__ import annotations

from typing import Annotated

import typer

from integrator.cli.client import EXIT_REFUSED, ApiClient, fail, print_json
from integrator.cli.queue import JsonFlag, candidate_line, followup_lines

blocked_app = typer.Typer(help="Blocked candidates and their follow-ups.", no_args_is_help=True)


@blocked_app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Resolved and closed ones too.")] = False,
    slug: Annotated[str | None, typer.Option(help="Only this slug.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Open follow-ups of blocked candidates: evidence and the next action."""
    status = ["open", "resolved", "closed"] if all_ else None
    body = ApiClient.from_environment().get("/v1/followups", status=status, slug=slug, limit=1000)
    if as_json:
        print_json(body)
        return
    if not body["items"]:
        typer.echo("nothing is blocked")
    for followup in body["items"]:
        typer.echo("\n".join(followup_lines(followup)))


@blocked_app.command("close")
def close(
    slug: Annotated[str, typer.Argument(help="The slug whose open follow-up to close.")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")],
    as_json: JsonFlag = False,
) -> None:
    """Close a slug's open follow-up (operators); the candidate stays as it is."""
    client = ApiClient.from_environment()
    found = client.get("/v1/followups", slug=slug, status="open")["items"]
    if not found:
        fail(EXIT_REFUSED, f"{slug} has no open follow-up")
    body = client.post(f"/v1/followups/{found[0]['id']}/close", {"reason": reason})
    print_json(body) if as_json else typer.echo(f"closed follow-up {body['id']} of {slug}")


def resume(
    slug: Annotated[str, typer.Argument(help="The slug to resume.")],
    to_back: Annotated[
        bool, typer.Option("--to-back", help="Give up the original turn: queue at the back.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Re-check a blocked slug and queue it again in its original turn."""
    body = ApiClient.from_environment().post(f"/v1/slugs/{slug}/resume", {"to_back": to_back})
    if as_json:
        print_json(body)
        return
    typer.echo(f"resumed: {candidate_line(body)}")
    for reason in body["why"]:
        typer.echo(f"  waiting: {reason}")
