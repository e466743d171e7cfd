"""`integrator worker`: run the integrator bot.

The bot's loop is imported when the command runs, not when the CLI starts.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from integrator.cli.client import EXIT_BAD_INPUT, fail
from integrator.worker.workspace import MergeMethod


def worker(
    repo: Annotated[
        str | None,
        typer.Option(
            help="The canonical repository to clone (path or URL); default INTEGRATOR_REPO."
        ),
    ] = None,
    workspace: Annotated[
        Path, typer.Option(help="Where the worker keeps its own clone (reused on restart).")
    ] = Path("./var/worker"),
    check: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME=CMD",
            help="A named check, NAME=CMD (repeatable; run in this order after the file's): a "
            "shell command run in the merged tree, which passes only by exiting 0 in time. NAME "
            "is lowercase letters, digits, '_', '.', '-' right before the first '='; any other "
            "text is one command named 'check' (FOO=1 make stays a command).",
        ),
    ] = None,
    checks_file: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help='A TOML file of named checks: [checks.NAME] command = "...", optional '
            "timeout_seconds and result (a file the check must write).",
        ),
    ] = None,
    check_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds before a check's process group is killed (checks without their own).",
            min=0.001,
        ),
    ] = 3600.0,
    check_retries: Annotated[
        int,
        typer.Option(
            help="Reruns of a failed check on the same commit; a later pass integrates the "
            "candidate and records it as flaky.",
            min=0,
            max=20,
        ),
    ] = 0,
    merge_method: Annotated[
        MergeMethod, typer.Option(help="A merge commit, or one squashed commit.")
    ] = MergeMethod.merge,
    once: Annotated[
        bool, typer.Option("--once", help="Drain what is queued, release the lease, exit.")
    ] = False,
    holder: Annotated[
        str | None, typer.Option(help="The lease holder id (default host:pid).")
    ] = None,
    poll_interval: Annotated[
        float,
        typer.Option(
            help="Longest wait of one ask of an empty queue, at most 5 s (the service answers "
            "as soon as a candidate is queued).",
            min=0.01,
        ),
    ] = 5.0,
    window: Annotated[
        int,
        typer.Option(
            help="Candidates tested at once as a speculative chain (main + c1, then + c2, …); "
            "each still lands alone, in queue order, as the commit its checks ran on. 1: one "
            "at a time.",
            min=1,
            max=32,
        ),
    ] = 1,
    jobs: Annotated[
        int | None,
        typer.Option(
            help="Checks running at once, each in its own worktree (default: --window).",
            min=1,
            max=32,
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "info",
) -> None:
    """Take the lease and work the queue: merge, check, record; in cutover, land on main.

    Each candidate is merged in a private clone and its named checks run in order, each from
    a clean tree with its own timeout; exit 77 (skipped), a kill, a timeout or a declared
    result not written is a failure. In shadow the outcome is a
    prediction and main is never pushed; in cutover the tested commit is pushed to main as
    a registered update.
    """
    from integrator.logs import configure_worker_logging
    from integrator.settings import get_settings
    from integrator.worker.check_config import CheckConfigError, configured_checks
    from integrator.worker.loop import Worker, WorkerExit, WorkerOptions, default_holder

    try:
        checks = configured_checks(check or [], checks_file)
    except CheckConfigError as exc:
        fail(EXIT_BAD_INPUT, str(exc))
    settings = get_settings()
    source = repo or settings.repo
    if not source:
        fail(EXIT_BAD_INPUT, "--repo is required (or set INTEGRATOR_REPO)")
    configure_worker_logging(log_level, settings.log_format)
    options = WorkerOptions(
        repo=source,
        workspace=workspace,
        checks=checks,
        check_timeout=check_timeout,
        check_retries=check_retries,
        merge_method=merge_method,
        once=once,
        holder=holder or default_holder(),
        poll_interval=poll_interval,
        window=window,
        jobs=jobs,
    )
    try:
        bot = Worker(settings, options)

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            bot.on_signal(signum)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        code = bot.run()
    except WorkerExit as exc:
        fail(exc.code, exc.message)
    raise typer.Exit(code)
