"""Commands that work on the database directly: serve, db, tokens.

Each imports the database layer (SQLAlchemy, Alembic) and the server inside its own
body: the other commands only speak HTTP and must start without them.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from integrator.cli.client import EXIT_BAD_INPUT, fail, print_json

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from integrator.settings import Settings

db_app = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)
tokens_app = typer.Typer(
    help="Role tokens, written directly to the database.", no_args_is_help=True
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the JSON body.")]


def _settings() -> Settings:
    """Every setting, validated: these commands use the database and the server's options."""
    from integrator.settings import get_settings

    return get_settings()


@contextmanager
def local_session(settings: Settings) -> Iterator[Session]:
    """A transaction on the configured database; a missing or unmigrated one is refused."""
    from integrator import migrate
    from integrator.db import make_engine, make_sessionmaker
    from integrator.errors import DatabaseMissing

    engine = make_engine(settings)
    try:
        if migrate.current_revision(engine) is None:
            raise DatabaseMissing(
                "the database has no schema yet: run `integrator db upgrade` first"
            )
        with make_sessionmaker(engine)() as session, session.begin():
            yield session
    finally:
        engine.dispose()


def listen(host: str, port: int) -> socket.socket:
    """The service's socket, bound here so that a taken port is one line with a way out.

    Created with the protocol named (IPPROTO_TCP, not 0): asyncio turns TCP_NODELAY on for
    accepted connections only then. Without it Nagle's algorithm holds each response body
    behind its headers until the client's delayed ACK (~40 ms per request on a kept-alive
    connection: the worker's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno != errno.EADDRINUSE:
            fail(EXIT_BAD_INPUT, f"cannot listen on {host} port {port}: {exc.strerror or exc}")
        other = _free_port(host, family, port)
        fail(
            EXIT_BAD_INPUT,
            f"port {port} is in use: run `integrator serve --port {other}` "
            f"or `make run PORT={other}`",
        )
    sock.set_inheritable(True)
    return sock


def _free_port(host: str, family: socket.AddressFamily, taken: int) -> int:
    """The next port after `taken` that is free now (else any free one)."""
    for candidate in [*range(taken + 1, min(taken + 20, 65535)), 0]:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, candidate))
            except OSError:
                continue
            port: int = probe.getsockname()[1]
            return port
    return taken + 1


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8000,
    log_level: Annotated[
        str, typer.Option(help="Log level: critical, error, warning, info, debug.")
    ] = "info",
) -> None:
    """Serve the API (and, at first start on SQLite, create the database)."""
    import uvicorn

    from integrator import migrate
    from integrator.api.app import create_app
    from integrator.db import check_reachable, normalise_url, sqlite_path
    from integrator.logs import service_log_config

    settings = _settings()
    path = sqlite_path(normalise_url(settings.database_url))
    if path is not None and not path.exists():
        typer.echo(f"integrator: creating {path.resolve()}", err=True)
        migrate.upgrade(settings)
    else:
        check_reachable(settings)  # one line and exit 3 now, not a traceback at startup
    sock = listen(host, port)
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        log_config=service_log_config(log_level, settings.log_format),
    )
    uvicorn.Server(config).run(sockets=[sock])


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration up to head (creates a missing SQLite file)."""
    from integrator import migrate
    from integrator.db import make_engine

    settings = _settings()
    migrate.upgrade(settings)
    engine = make_engine(settings)
    try:
        typer.echo(f"database at revision {migrate.current_revision(engine)}")
    finally:
        engine.dispose()


@tokens_app.command("create")
def tokens_create(
    role: Annotated[str, typer.Option(help="reader, reporter, hook, integrator or operator.")],
    name: Annotated[str, typer.Option(help="A unique name for the token.")],
    as_json: JsonFlag = False,
) -> None:
    """Create a token and print it once; only its hash is stored."""
    from integrator import tokens

    with local_session(_settings()) as session:
        _, token = tokens.create_token(session, name=name, role=role)
    if as_json:
        print_json({"token": token})
    else:
        typer.echo(token)


@tokens_app.command("list")
def tokens_list(as_json: JsonFlag = False) -> None:
    """List tokens (never their secrets)."""
    from integrator import tokens

    with local_session(_settings()) as session:
        items = [
            {
                "name": t.name,
                "role": t.role,
                "created_at": t.created_at.isoformat(),
                "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
            }
            for t in tokens.list_tokens(session)
        ]
    if as_json:
        print_json({"items": items, "next_cursor": None})
        return
    typer.echo("NAME\tROLE\tSTATE")
    if not items:
        typer.echo("no tokens yet: `integrator tokens create --role ROLE --name NAME` makes one")
    for item in items:
        state = f"revoked {item['revoked_at']}" if item["revoked_at"] else "active"
        typer.echo(f"{item['name']}\t{item['role']}\t{state}")


@tokens_app.command("revoke")
def tokens_revoke(name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Revoke a token at once."""
    from integrator import tokens

    with local_session(_settings()) as session:
        tokens.revoke_token(session, name)
    typer.echo(f"revoked {name}")
