"""`integrator hooks install|check|uninstall`: the git server's side (works on the files).

The token reaches `install` through `--token-file` (or `-` for stdin): argv is
visible to every user of the machine, so `--token` is accepted with a warning.
Each command imports the installer when it runs, not when the CLI starts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from integrator.cli.client import EXIT_BAD_INPUT, EXIT_REFUSED, fail, print_json

hooks_app = typer.Typer(help="Install and check the server-side hooks.", no_args_is_help=True)

RepoArg = Annotated[Path, typer.Argument(metavar="REPO.git", help="The bare repository.")]


def _read_token(token_file: str | None, token: str | None) -> str:
    if token_file and token:
        fail(EXIT_BAD_INPUT, "give --token-file or --token, not both")
    if token:
        typer.echo(
            "integrator: warning: --token is visible to every user of this machine "
            "(ps, shell history); prefer --token-file FILE or --token-file -",
            err=True,
        )
        return token.strip()
    if not token_file:
        fail(EXIT_BAD_INPUT, "the hook token is required: --token-file FILE (or - for stdin)")
    try:
        text = sys.stdin.read() if token_file == "-" else Path(token_file).read_text()
    except OSError as exc:
        fail(EXIT_BAD_INPUT, f"--token-file {token_file}: {exc.strerror or exc}")
    value = text.strip()
    if not value:
        fail(EXIT_BAD_INPUT, f"--token-file {token_file}: empty")
    return value


@hooks_app.command("install")
def install(
    repo: RepoArg,
    url: Annotated[
        str | None, typer.Option(help="The service URL (default INTEGRATOR_URL).")
    ] = None,
    token_file: Annotated[
        str | None, typer.Option(help="File holding the hook-role token, or - for stdin.")
    ] = None,
    token: Annotated[str | None, typer.Option(help="The token itself (visible in ps).")] = None,
    repository: Annotated[
        str | None, typer.Option(help="Repository name (default: directory name).")
    ] = None,
    python: Annotated[str, typer.Option(help="Absolute interpreter the hooks run with.")] = (
        "/usr/bin/python3"
    ),
    layout: Annotated[str, typer.Option(help="plain, gitea, gitolite, gitlab or ghes.")] = "plain",
    identity_source: Annotated[
        str,
        typer.Option(
            help="auto (a host layout's own variable, else the first present), gitlab, gitea, "
            "gitolite, ghes, http or plain."
        ),
    ] = "auto",
    deadline: Annotated[float, typer.Option(help="Seconds the hook may take per push.")] = 2.5,
    fail_open: Annotated[
        bool, typer.Option(help="In cutover, allow protected pushes when the service is down.")
    ] = False,
    chain_existing: Annotated[
        bool,
        typer.Option(
            help="Keep a hook that is not ours and run it before ours (without this, install "
            "refuses to replace it)."
        ),
    ] = False,
    output: Annotated[
        Path, typer.Option(help="gitlab: where to write the custom_hooks tarball.")
    ] = Path("integrator-custom-hooks.tar"),
    storage: Annotated[str, typer.Option(help="gitlab: the Gitaly storage name.")] = "default",
    gitaly_config: Annotated[
        str, typer.Option(help="gitlab: the Gitaly configuration file on the nodes.")
    ] = "/var/opt/gitlab/gitaly/config.toml",
    gitaly_node: Annotated[
        list[str] | None,
        typer.Option(help="gitlab: a Gitaly node to print the commands for (repeatable)."),
    ] = None,
    node_dir: Annotated[
        str, typer.Option(help="gitlab: the token and state directory on each node.")
    ] = "/var/opt/gitlab/integrator",
    shared: Annotated[
        bool,
        typer.Option(help="gitlab: serve any repository (its name from GL_PROJECT_PATH)."),
    ] = False,
    fallback_mode: Annotated[
        str,
        typer.Option(help="ghes: the mode decided from when no mode was cached (shadow, cutover)."),
    ] = "shadow",
) -> None:
    """Install the pre-receive and post-receive hooks into a bare repository.

    With --layout gitlab, REPO.git is the repository's relative path on the Gitaly storage: the
    hooks go into a tarball, with the commands that set it on each Gitaly node. With --layout
    ghes, it is a directory to write the hooks repository's script and the pre-receive
    environment's build context into."""
    from integrator import hookinstall, hosting
    from integrator.settings import get_settings

    settings = get_settings()
    if layout == "gitlab":
        _install_gitlab(
            str(repo),
            url=url or settings.url,
            repository=repository,
            output=output,
            python=python,
            identity_source=identity_source,
            deadline=deadline,
            fail_open=fail_open,
            protected_refs=settings.protected_refs,
            shared=shared,
            storage=storage,
            gitaly_config=gitaly_config,
            nodes=gitaly_node or [],
            node_dir=node_dir,
            token_source=token_file if token_file and token_file != "-" else "hook.token",
        )
        return
    if layout == "ghes":
        from integrator.hostlayouts import ghes

        made = ghes.install(
            repo,
            url=url or settings.url,
            deadline=deadline,
            fail_open=fail_open,
            fallback_mode=fallback_mode,
            protected_refs=settings.protected_refs,
            python=python,
        )
        typer.echo(f"wrote {made.hook}: commit it to the hooks repository")
        typer.echo(
            f"wrote {made.environment}: copy the hook token to "
            f"{made.environment / 'integrator' / 'token'}, build the environment from its "
            "Dockerfile and upload it (see docs/hosting.md, GitHub Enterprise Server)"
        )
        return
    result = hookinstall.install(
        repo,
        url=url or settings.url,
        token=_read_token(token_file, token),
        repository=repository,
        python=python,
        layout=layout,
        identity_source=identity_source,
        deadline=deadline,
        fail_open=fail_open,
        chain_existing=chain_existing,
        protected_refs=settings.protected_refs,
    )
    for hook in result.hooks:
        typer.echo(f"installed {hook}")
    for moved, original in result.chained:
        typer.echo(f"kept {original} as {moved}, run before ours")
    typer.echo(f"configuration {result.config_path} (repository {result.repository})")
    if layout == "gitolite":
        for line in hosting.gitolite_advice(result.git_dir, result.repository):
            typer.echo(f"gitolite: push options are advertised by this repository's config; {line}")


def _install_gitlab(relative_path: str, **options: Any) -> None:
    from integrator.hostlayouts import gitlab

    made = gitlab.install(relative_path, **options)
    contents = f"custom_hooks/: both hooks, their bodies, {gitlab.CONFIG_NAME}; no token"
    typer.echo(f"wrote {made.tarball} ({contents})")
    for node, commands in made.commands:
        typer.echo(f"on {node}:" if node else "on each Gitaly node:")
        for command in commands:
            typer.echo(f"  {command}")


@hooks_app.command("check")
def check(
    repo: RepoArg, as_json: Annotated[bool, typer.Option("--json", help="JSON.")] = False
) -> None:
    """Installed, executable, interpreter runnable, configured, service reachable, token valid."""
    from integrator import hookinstall

    items = hookinstall.check(repo)
    if as_json:
        rows = [{"name": i.name, "ok": i.ok, "detail": i.detail} for i in items]
        print_json({"ok": all(i.ok for i in items), "items": rows})
    else:
        for item in items:
            typer.echo(f"[{'ok' if item.ok else 'FAIL'}] {item.name}: {item.detail}")
    if not all(i.ok for i in items):
        raise typer.Exit(EXIT_REFUSED)


@hooks_app.command("uninstall")
def uninstall(
    repo: RepoArg,
    discard_spool: Annotated[
        bool, typer.Option(help="Also drop verdicts not yet uploaded (loses evidence).")
    ] = False,
) -> None:
    """Remove our hooks and restore what install replaced."""
    from integrator import hookinstall

    hookinstall.uninstall(repo, discard_spool=discard_spool)
    typer.echo(f"uninstalled from {repo}")
