"""`integrator lease status|release --force`: the lease seen by operators.

Acquire and renew belong to the worker (`integrator.worker.lease_client`), not to a
human at a prompt: the CLI only shows the lease and lets an operator end it.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from integrator.cli.client import EXIT_BAD_INPUT, ApiClient, fail, print_json

lease_app = typer.Typer(help="The integrator lease: who holds it, and ending it.")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON body.")]


def _describe(body: dict[str, Any]) -> str:
    if body.get("held"):
        return (
            f"held by {body['holder']} (epoch {body['epoch']}) until {body['expires_at']}, "
            f"renewed {body['renewed_at']}; ttl {body['ttl_seconds']:g}s"
        )
    if body.get("holder"):
        return (
            f"free: {body['holder']}'s grant (epoch {body['epoch']}) expired at "
            f"{body['expires_at']}; the next acquire takes it over"
        )
    return f"free (epoch {body['epoch']}); ttl {body['ttl_seconds']:g}s"


@lease_app.command("status")
def status(as_json: JsonFlag = False) -> None:
    """Show the lease's holder, epoch and expiry (never its token)."""
    body = ApiClient.from_environment().get("/v1/lease")
    if as_json:
        print_json(body)
    else:
        typer.echo(f"{body['key']}: {_describe(body)}")


@lease_app.command("release")
def release(
    force: Annotated[
        bool, typer.Option("--force", help="Required: end whoever holds the lease.")
    ] = False,
    reason: Annotated[
        str | None, typer.Option(help="Why (recorded in the lease_force_released event).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """End the current grant and bump the epoch (operators; recorded with the reason)."""
    if not force:
        fail(
            EXIT_BAD_INPUT,
            "only the holder releases its own grant (the worker does it); an operator ends "
            "someone else's with `integrator lease release --force --reason R`",
        )
    if not reason or not reason.strip():
        fail(EXIT_BAD_INPUT, "--reason is required with --force: it is recorded with the event")
    body = ApiClient.from_environment().post("/v1/lease/force-release", {"reason": reason})
    if as_json:
        print_json(body)
        return
    previous = body.get("previous_holder") or "nobody"
    typer.echo(
        f"lease force-released: {previous} (epoch {body['previous_epoch']}) is fenced out; "
        f"epoch is now {body['epoch']}"
    )
