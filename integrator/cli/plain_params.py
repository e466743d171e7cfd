"""Plain parameters without pydantic: typer converts each parameter it processes through a
pydantic TypeAdapter built on first use, its own `--help` included. Importing pydantic and
building those schemas costs every command about half of `import httpx` at start.

A value the command line already gives in its final type — a text for `str`, a flag for
`bool`, a default `int` or `float`, texts for `list[str]` — is that value: it is kept as is;
an `int` without bounds typed as plain decimal digits is read as such. Anything else (other
numbers, bounds, a path, a choice, a parser, every bad value) goes through typer's own
conversion, unchanged, errors included. `install()` replaces typer's factory of these
converters (`typer.core.build_runtime_param`); tests/integration/test_cli_startup.py fails when
a typer release moves it and pydantic comes back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import typer.core
from typer._coercion import RuntimeParam, TypeDescriptor

_DECIMAL = re.compile(r"-?[0-9]{1,18}")
#: Annotations whose values may already be final; each value is still checked.
_PLAIN = (str, bool, int, float)


@dataclass(frozen=True)
class PlainRuntimeParam(RuntimeParam):
    """Keeps a value of the annotated type; hands any other to typer's conversion."""

    descriptor: TypeDescriptor | None = None

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        if self.annotation == list[str]:
            if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
                return list(value)
        elif type(value) is self.annotation:  # not isinstance: True is no int
            return value
        elif self.annotation is int and isinstance(value, str) and _DECIMAL.fullmatch(value):
            info = self.parameter_info
            if info.min is None and info.max is None:
                return int(value)
        assert self.descriptor is not None
        return _typer_runtime_param(self.descriptor)._coerce_value(value, param, ctx)


def _typer_runtime_param(descriptor: TypeDescriptor) -> RuntimeParam:
    build: Any = _TYPER_BUILD
    runtime: RuntimeParam = build(descriptor)
    return runtime


def runtime_param(descriptor: TypeDescriptor) -> RuntimeParam:
    """Ours for plain annotations without a parser or a file; typer's for the rest."""
    annotation = descriptor.annotation
    plain = annotation in _PLAIN or annotation == list[str]
    if plain and descriptor.file_annotation is None and descriptor.parameter_info.parser is None:
        return PlainRuntimeParam(
            parameter_info=descriptor.parameter_info, annotation=annotation, descriptor=descriptor
        )
    return _typer_runtime_param(descriptor)


_TYPER_BUILD = getattr(typer.core, "build_runtime_param", None)


def install() -> None:
    """Make typer build plain parameters' converters here (once; a no-op if typer changed)."""
    if _TYPER_BUILD is not None and _TYPER_BUILD is not runtime_param:
        typer.core.build_runtime_param = runtime_param  # type: ignore[attr-defined]
