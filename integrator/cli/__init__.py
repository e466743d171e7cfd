"""`integrator …`: operators', developers' and scripts' command line.

Commands go through the HTTP API except `serve`, `db`, `tokens`, `hooks` and `worker`.
Only those import the server side (SQLAlchemy, Alembic, FastAPI, uvicorn), inside their
own bodies: a call that speaks HTTP starts at the speed of a small HTTP client.
Every failure is one readable line and an exit code.
"""

from __future__ import annotations

import copy
import sys
from typing import TYPE_CHECKING, Annotated, TypeGuard

import typer
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.exceptions import TyperException
from typer.main import get_command_name

from integrator.cli import plain_params
from integrator.cli.audit import audit
from integrator.cli.blocked import blocked_app, resume
from integrator.cli.client import (
    EXIT_BAD_INPUT,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    ApiClient,
    exit_code_for_error,
    print_json,
)
from integrator.cli.events import events_app, submit
from integrator.cli.hooks import hooks_app
from integrator.cli.lease import lease_app
from integrator.cli.local import db_app, serve, tokens_app
from integrator.cli.modes import cutover, evidence, mode_app, rollback
from integrator.cli.queue import queue_app
from integrator.cli.status import status
from integrator.cli.worker import worker
from integrator.errors import IntegratorError

if TYPE_CHECKING:
    from pydantic import ValidationError
    from sqlalchemy.exc import DBAPIError

app = typer.Typer(
    name="integrator",
    help="Hand canonical main to a single integrator bot, safely.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: rendering it with rich costs a fifth of a start
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"integrator {version('integrator')}")
        raise typer.Exit(0)


@app.callback()
def _options(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    pass


# The commands. Each module imports what its commands need when they run.
app.command()(serve)
app.add_typer(db_app, name="db")
app.add_typer(tokens_app, name="tokens")
app.add_typer(lease_app, name="lease")
app.add_typer(events_app, name="events")
app.add_typer(queue_app, name="queue")
app.add_typer(blocked_app, name="blocked")
app.command()(resume)
app.command()(submit)
app.add_typer(mode_app, name="mode")
app.add_typer(hooks_app, name="hooks")
app.command()(cutover)
app.command()(rollback)
app.command()(evidence)
app.command()(worker)
app.command()(status)
app.command()(audit)


@app.command()
def whoami(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show the name and role of INTEGRATOR_TOKEN."""
    body = ApiClient.from_environment().get("/v1/whoami")
    if as_json:
        print_json(body)
    else:
        typer.echo(f"{body['name']} ({body['role']})")


def app_for(args: list[str]) -> typer.Typer:
    """The app with only the command `args` names, when it names one.

    Typer converts every registered function (signature, annotations) before it parses: for
    all of them that is a sixth of a start. Top-level help and unknown names get the whole app.
    """
    name = next((arg for arg in args if not arg.startswith("-")), None)
    commands = [
        c
        for c in app.registered_commands
        if (c.name or get_command_name(getattr(c.callback, "__name__", ""))) == name
    ]
    groups = [g for g in app.registered_groups if g.name == name]
    if not commands and not groups:
        return app
    only = copy.copy(app)
    only.registered_commands, only.registered_groups = commands, groups
    return only


# Errors of libraries that only some commands load: recognised without importing them first.


def _invalid_settings(error: Exception) -> TypeGuard[ValidationError]:
    """pydantic's validation error: only a command that built `Settings` can raise it."""
    if "pydantic_core" not in sys.modules:
        return False
    from pydantic import ValidationError

    return isinstance(error, ValidationError)


def _settings_message(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "settings"
    name = f"INTEGRATOR_{field.upper()}" if first["loc"] else "settings"
    return f"invalid configuration: {name}: {first['msg'].removeprefix('Value error, ')}"


def _database_unavailable(error: Exception) -> TypeGuard[DBAPIError]:
    """SQLAlchemy's "cannot connect" errors; only a command that loaded it can raise them."""
    if "sqlalchemy" not in sys.modules:
        return False
    from sqlalchemy.exc import InterfaceError, OperationalError

    return isinstance(error, OperationalError | InterfaceError)


def _database_message(error: DBAPIError) -> str:
    """Which database, without its password, and the driver's first line."""
    from sqlalchemy.engine import make_url

    from integrator.settings import get_settings

    url = make_url(get_settings().database_url).render_as_string(hide_password=True)
    reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
    hint = "is it running, and is INTEGRATOR_DATABASE_URL right?"
    return f"cannot use the database at {url}: {reason} ({hint})"


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and turn every failure into one line and an exit code."""
    plain_params.install()
    try:
        args = sys.argv[1:] if argv is None else argv
        result = app_for(args)(args=args, standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("integrator: aborted", err=True)
        return EXIT_REFUSED
    except NoArgsIsHelpError as exc:
        typer.echo(exc.format_message(), err=True)  # the group's help
        return EXIT_BAD_INPUT
    except UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "integrator"
        typer.echo(f"integrator: {exc.format_message()} (see `{command} --help`)", err=True)
        return EXIT_BAD_INPUT
    except TyperException as exc:
        typer.echo(f"integrator: {exc.format_message()}", err=True)
        return exc.exit_code
    except IntegratorError as exc:
        typer.echo(f"integrator: {exc.message}", err=True)
        return exit_code_for_error(exc)
    except OSError as exc:
        typer.echo(f"integrator: {exc}", err=True)
        return EXIT_UNAVAILABLE
    except Exception as exc:
        if _invalid_settings(exc):
            typer.echo(f"integrator: {_settings_message(exc)}", err=True)
            return EXIT_BAD_INPUT
        if _database_unavailable(exc):
            typer.echo(f"integrator: {_database_message(exc)}", err=True)
            return EXIT_UNAVAILABLE
        raise
    return result if isinstance(result, int) else 0


def run() -> None:
    sys.exit(main())
