"""`integrator audit`: every commit of main and what let it there — failures first, exit 1."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from integrator.cli.client import EXIT_OK, EXIT_REFUSED, ApiClient, print_json

#: The most commits one request asks for (the service's page limit).
PAGE = 10_000
SUBJECT_WIDTH = 50


def _line(item: dict[str, Any]) -> str:
    subject = item["subject"]
    if len(subject) > SUBJECT_WIDTH:
        subject = subject[: SUBJECT_WIDTH - 1] + "…"
    return f"{item['sha'][:12]}  {item['committed_at'][:19]}  {item['author']}  {subject}"


def _unexplained_lines(body: dict[str, Any]) -> list[str]:
    failures = [i for i in body["unexplained_items"] if i["failure"]]
    warnings = [i for i in body["unexplained_items"] if not i["failure"]]
    lines = []
    if failures:
        lines.append(
            f"FAILURE: {body['unexplained_after_cutover']} commit(s) on main that no queue "
            "registration, verdict or bypass record explains, and that may have come in cutover:"
        )
        lines += [f"  {_line(i)}\n      {i['explanation']['summary']}" for i in failures]
    if warnings:
        count = body["unexplained"] - body["unexplained_after_cutover"]
        lines.append(f"warning: {count} unexplained commit(s) while in shadow or off:")
        lines += [f"  {_line(i)}\n      {i['explanation']['summary']}" for i in warnings]
    listed = len(body["unexplained_items"])
    if listed < body["unexplained"]:
        lines.append(f"  … {body['unexplained'] - listed} more unexplained (see --json pages)")
    return lines


def _table(items: list[dict[str, Any]], before: dict[str, Any]) -> list[str]:
    lines = []
    collapsed = False
    for item in items:
        explanation = item["explanation"]
        if explanation["kind"] == "before_guard":
            if not collapsed:
                lines.append(
                    f"  … {before['count']} commit(s) from before the guard watched main "
                    f"({before['oldest'][:12]}..{before['newest'][:12]})"
                )
                collapsed = True
            continue
        mode = item["mode"] or "-"
        flag = "!" if item["failure"] else " "
        lines.append(
            f"{flag} {item['sha'][:12]}  {item['committed_at'][:19]}  {mode:<7}  "
            f"{explanation['summary']}"
        )
    return lines


def render(body: dict[str, Any], items: list[dict[str, Any]]) -> str:
    """The audit as text: failures, then warnings, then every commit (newest first)."""
    counts = body["counts"]
    since = f" since {body['since']}" if body["since"] else ""
    head = (body["head"] or "(no main)")[:12]
    lines = [f"audit of main of {body['repository']} at {head}: {body['total']} commit(s){since}"]
    lines += _unexplained_lines(body)
    lines.append("commits (newest first):")
    lines += _table(items, body["before_guard"])
    lines.append(
        f"explained: {counts['queue']} by the queue, {counts['push']} push(es), "
        f"{counts['bypass']} bypass(es), {counts['before_guard']} before the guard; "
        f"unexplained: {body['unexplained']} ({body['unexplained_after_cutover']} after cutover)"
    )
    return "\n".join(lines)


def audit(
    since: Annotated[
        str | None,
        typer.Option(help="A revision (audit the commits after it) or a date (YYYY-MM-DD)."),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the API's JSON body (the newest 10,000 commits; next_cursor pages on).",
        ),
    ] = False,
) -> None:
    """Explain every commit on main; exit 1 if one is unexplained after cutover."""
    client = ApiClient.from_environment()
    body = client.get("/v1/audit", since=since, limit=PAGE)
    if as_json:
        print_json(body)
    else:
        items = list(body["items"])
        cursor = body["next_cursor"]
        while cursor:
            page = client.get("/v1/audit", since=since, limit=PAGE, cursor=cursor)
            items += page["items"]
            cursor = page["next_cursor"]
        typer.echo(render(body, items))
    raise typer.Exit(EXIT_REFUSED if body["unexplained_after_cutover"] else EXIT_OK)
