"""`python -m integrator` is the CLI."""

from integrator.cli import run

run()
