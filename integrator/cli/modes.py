"""`integrator mode|cutover|rollback|evidence`: the operator's switch, through the HTTP API."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from integrator.cli.client import EXIT_REFUSED, ApiClient, describe_error, print_json

mode_app = typer.Typer(help="Show or set the guard's mode.", invoke_without_command=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON body.")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (recorded with the change).")]


def _client() -> ApiClient:
    return ApiClient.from_environment()


def _mode_line(body: dict[str, Any]) -> str:
    line = f"mode {body['mode']} (version {body['version']})"
    if body.get("changed_by"):
        line += f", set by {body['changed_by']} at {body['changed_at']}: {body['reason']}"
    return line


@mode_app.callback()
def mode(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Show the mode (off, shadow or cutover)."""
    if ctx.invoked_subcommand is not None:
        return
    body = _client().get("/v1/mode")
    print_json(body) if as_json else typer.echo(_mode_line(body))


@mode_app.command("set")
def mode_set(
    to: Annotated[str, typer.Argument(metavar="off|shadow", help="The new mode.")],
    reason: ReasonOpt,
    as_json: JsonFlag = False,
) -> None:
    """Switch between off and shadow (cutover has its own command, with evidence)."""
    body = _client().post("/v1/mode", {"mode": to, "reason": reason})
    print_json(body) if as_json else typer.echo(_mode_line(body))


def _print_evidence(body: dict[str, Any]) -> None:
    for item in body["items"]:
        mark = "pass" if item["ok"] else "FAIL"
        numbers = ", ".join(f"{k}={v}" for k, v in item["numbers"].items())
        typer.echo(f"[{mark}] {item['title']}" + (f" ({numbers})" if numbers else ""))
        for blocker in item["blockers"]:
            typer.echo(f"       blocker: {blocker}")
    for hook in body["hooks"]:
        state = "pending" if hook["pending"] else "sees cutover"
        typer.echo(
            f"hook {hook['repository']} {hook['instance']}: last seen {hook['last_seen_at']}, "
            f"mode {hook['mode_seen']} ({state})"
        )
    typer.echo("evidence complete" if body["complete"] else "evidence incomplete")


def evidence(as_json: JsonFlag = False) -> None:
    """The go/no-go evidence for cutover; exit 1 while incomplete."""
    body = _client().get("/v1/evidence")
    print_json(body) if as_json else _print_evidence(body)
    if not body["complete"]:
        raise typer.Exit(EXIT_REFUSED)


def cutover(
    reason: ReasonOpt,
    force: Annotated[bool, typer.Option(help="Override incomplete evidence (recorded).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """shadow → cutover: humans are refused on main; exit 1 listing blockers if not ready."""
    client = _client()
    response = client.request(
        "POST", "/v1/cutover", json_body={"reason": reason, "force": force}, ok=(409,)
    )
    body = response.json()
    if response.status_code == 409:
        if as_json:
            print_json(body)
        else:
            typer.echo(f"integrator: {describe_error(response)}", err=True)
            for blocker in body.get("blockers", []):
                typer.echo(f"  blocker: {blocker}", err=True)
        raise typer.Exit(EXIT_REFUSED)
    if as_json:
        print_json(body)
        return
    forced = " (forced: evidence incomplete)" if body["forced"] else ""
    typer.echo(f"{_mode_line(body['mode'])}{forced}")
    for warning in body.get("warnings", []):
        typer.echo(f"warning: {warning}", err=True)


def rollback(
    reason: ReasonOpt,
    drill: Annotated[bool, typer.Option(help="Rehearse cutover → shadow (run in shadow).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """cutover → shadow at once; with --drill, a recorded rehearsal."""
    body = _client().post("/v1/rollback", {"reason": reason, "drill": drill})
    if as_json:
        print_json(body)
        return
    if body.get("drill"):
        d = body["drill"]
        typer.echo(
            f"drill recorded: refusal observed in cutover: {d['refusal_observed']}, "
            f"registrations voided: {d['voided']}"
        )
    typer.echo(_mode_line(body["mode"]))
