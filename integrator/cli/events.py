"""`integrator events emit|list` and `integrator submit`: through the HTTP API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from integrator import strict_json
from integrator.cli.client import EXIT_BAD_INPUT, ApiClient, fail, print_json

events_app = typer.Typer(help="Canonical events: emit and list.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON body.")]


def convert_fields(type_name: str, pairs: list[str]) -> dict[str, Any]:
    """`k=v` pairs, each value converted to its field's type (text stays text)."""
    # The event schemas live beside the database code: imported only when there are fields.
    if not pairs:
        return {}
    from integrator.event_schemas import EVENT_TYPES, string_fields

    text_fields = string_fields(type_name) if type_name in EVENT_TYPES else frozenset()
    fields: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(EXIT_BAD_INPUT, f"--field {pair!r}: expected key=value")
        if key in fields:
            fail(EXIT_BAD_INPUT, f"--field {key}: given twice; give each field once")
        if key in text_fields or type_name not in EVENT_TYPES:
            fields[key] = value
            continue
        try:
            fields[key] = json.loads(value)
        except ValueError:
            fields[key] = value  # the service names the field and its rule
    return fields


def _read_envelope(path: Path) -> dict[str, Any]:
    try:
        data = strict_json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        fail(EXIT_BAD_INPUT, f"--file {path}: {exc}")
    if not isinstance(data, dict):
        fail(EXIT_BAD_INPUT, f"--file {path}: expected a JSON object")
    return data


def describe_posted(body: dict[str, Any]) -> str:
    event = body["event"]
    verb = "duplicate of" if body["duplicate"] else "stored"
    line = f"{verb} {event['type']} #{event['seq']}"
    candidate = body.get("candidate")
    if candidate:
        line += f"; candidate {candidate['slug']} is {candidate['status']}"
        if candidate["position"] is not None and candidate["status"] == "queued":
            line += f" at position {candidate['position']}"
        if candidate["why"]:
            line += " (" + "; ".join(candidate["why"]) + ")"
        if body["duplicate"] and candidate["status"] == "blocked":
            line += (
                f": this commit was blocked; push a fix and submit the new head, or run "
                f"`integrator resume {candidate['slug']}` to try the same commit again"
            )
    return line


@events_app.command("emit")
def emit(
    type_name: Annotated[str | None, typer.Argument(metavar="TYPE", help="The event type.")] = None,
    field: Annotated[
        list[str] | None, typer.Option("--field", "-f", help="key=value, repeatable.")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="A JSON envelope {type, fields, ...}.")
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Caller's idempotency key.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Emit a canonical event (review_approved, finalize_ready, branch_pushed)."""
    envelope: dict[str, Any] = _read_envelope(file) if file else {}
    if type_name:
        envelope["type"] = type_name
    if "type" not in envelope:
        fail(EXIT_BAD_INPUT, "give the event TYPE (or a --file whose JSON has a type)")
    fields = dict(envelope.get("fields") or {})
    fields.update(convert_fields(str(envelope["type"]), field or []))
    envelope["fields"] = fields
    if idempotency_key:
        envelope["idempotency_key"] = idempotency_key
    body = ApiClient.from_environment().post("/v1/events", envelope)
    print_json(body) if as_json else typer.echo(describe_posted(body))


@events_app.command("list")
def list_(
    type_name: Annotated[list[str] | None, typer.Option("--type", help="Filter by type.")] = None,
    slug: Annotated[str | None, typer.Option(help="Filter by slug.")] = None,
    branch: Annotated[str | None, typer.Option(help="Filter by branch.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """List events in server order."""
    client = ApiClient.from_environment()
    body = client.get("/v1/events", type=type_name, slug=slug, branch=branch, limit=limit)
    if as_json:
        print_json(body)
        return
    typer.echo("SEQ\tRECORDED_AT\tTYPE\tFIELDS")
    if not body["items"]:
        typer.echo("no events" + (" match" if type_name or slug or branch else " yet"))
    for event in body["items"]:
        fields = " ".join(f"{k}={v}" for k, v in event["fields"].items())
        typer.echo(f"#{event['seq']}\t{event['recorded_at']}\t{event['type']}\t{fields}")


def submit(
    slug: Annotated[str, typer.Option(help="The work's slug.")],
    branch: Annotated[str, typer.Option(help="The pushed branch.")],
    sha: Annotated[
        str | None, typer.Option(help="The commit (default: the branch head on the server).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Ask for a branch to be integrated: finalize_ready for its head."""
    client = ApiClient.from_environment()
    body = client.post("/v1/submit", {"slug": slug, "branch": branch, "sha": sha})
    print_json(body) if as_json else typer.echo(describe_posted(body))
