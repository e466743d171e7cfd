"""Plain parameters skip typer's pydantic conversion and end up exactly as typer makes them."""

from __future__ import annotations

import json
from typing import Annotated

import pytest
import typer
import typer.core
from typer.testing import CliRunner

from integrator.cli import plain_params

TYPER_BUILD = plain_params._TYPER_BUILD


def probe_app() -> typer.Typer:
    """One command with one option of each shape the CLI uses."""
    app = typer.Typer(add_completion=False)

    @app.command()
    def show(
        name: Annotated[str, typer.Option()] = "n",
        flag: Annotated[bool, typer.Option("--flag")] = False,
        count: Annotated[int, typer.Option()] = 100,
        port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
        wait: Annotated[float, typer.Option()] = 2.5,
        tags: Annotated[list[str] | None, typer.Option("--tag")] = None,
        maybe: Annotated[str | None, typer.Option()] = None,
    ) -> None:
        values = [name, flag, count, port, wait, tags, maybe]
        typer.echo(json.dumps([[type(v).__name__, v] for v in values]))

    return app


ARGS = [
    [],
    ["--name", "x y", "--flag", "--count", "7", "--tag", "a", "--tag", "b", "--maybe", "m"],
    ["--count", "-3", "--port", "22", "--wait", "1"],
    ["--count", "007"],
    ["--count", "1_000"],
    ["--count", "x"],
    ["--count", "1.5"],
    ["--count", "99999999999999999999999"],
    ["--port", "70000"],
    ["--wait", "soon"],
    ["--name", ""],
]


def run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(probe_app(), args)
    return result.exit_code, result.output


@pytest.mark.parametrize("args", ARGS, ids=lambda a: " ".join(a) or "defaults")
def test_values_and_errors_match_typers_own_conversion(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(typer.core, "build_runtime_param", TYPER_BUILD)
    typers = run(args)
    plain_params.install()
    assert typer.core.build_runtime_param is plain_params.runtime_param
    assert run(args) == typers
