"""schemathesis over the published OpenAPI, against a real `integrator serve`, with each role's
token and with none: no 5xx, every error in the declared shape (a 422 names the field and the
rule), and schemathesis's default checks passing — documented status codes and media types,
schema-valid requests taken, schema-violating ones refused.

The default run is bounded (a fixed seed, a few examples per operation); `-m stress` runs a
bigger one with a fresh seed. To reproduce a failure by hand, start a service and run the
command the failure message prints (`st run URL/openapi.json -H "Authorization: Bearer T" ...`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integrator.settings import Settings
from tests.gitrepos import Canonical
from tests.support import ServiceProcess, TokenMaker

ROLES = ("reader", "reporter", "hook", "integrator", "operator")
ST = Path(sys.executable).with_name("st")

#: The holder's fenced writes, whose check reports make the coverage phase's biggest cases
#: (every length of a `passed` check's attempts): some 8,000 per run, each refused 403 before
#: its body is read when the token is not the integrator's.
HOLDERS_BODIES = ("POST /v1/registrations", "POST /v1/candidates/{candidate_id}/outcome")


class Served:
    def __init__(self, service: ServiceProcess, tokens: dict[str, str], workdir: Path) -> None:
        self.service = service
        self.tokens = tokens
        self.workdir = workdir

    def schemathesis(
        self,
        role: str | None,
        *,
        examples: int,
        phases: str,
        seed: str | None,
        no_coverage: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """One `st run` with this role's token (none: no header); its JSON report. The
        operations in `no_coverage` skip the coverage phase (they keep the others)."""
        report = self.workdir / f"{role or 'none'}.json"
        config = self.workdir / f"{role or 'none'}.toml"
        config.write_text(
            "".join(
                f'[[operations]]\ninclude-name = "{name}"\nphases.coverage.enabled = false\n'
                for name in no_coverage
            )
        )
        command = [
            str(ST), "--config-file", str(config), "run", f"{self.service.url}/openapi.json",
            "--no-color",
            "--max-examples", str(examples), "--phases", phases, "--workers", "1",
            "--generation-database", "none", "--request-timeout", "30",
            "--report", "json", "--report-json-path", str(report),
        ]  # fmt: skip
        if seed is not None:
            command += ["--seed", seed]
        if role is not None:
            command += ["--header", f"Authorization: Bearer {self.tokens[role]}"]
        result = subprocess.run(
            command, cwd=self.workdir, capture_output=True, text=True, timeout=900, check=False
        )
        (self.workdir / f"{role or 'none'}.txt").write_text(result.stdout + result.stderr)
        assert report.exists(), result.stdout[-3000:] + result.stderr[-3000:]
        found: dict[str, Any] = json.loads(report.read_text())
        found["output"] = result.stdout
        return found


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[Served]:
    canonical = Canonical(tmp_path)
    configured = settings.model_copy(update={"repo": str(canonical.bare)})
    tokens = TokenMaker(configured)
    service = ServiceProcess(configured, tmp_path / "service.log")
    service.start()
    workdir = tmp_path / "schemathesis"
    workdir.mkdir()
    try:
        yield Served(service, {role: tokens(role) for role in ROLES}, workdir)
    finally:
        service.stop()


def problems_of(report: dict[str, Any], role: str | None) -> list[str]:
    """Every failure and error of a run, as one line each: the document is the truth, so
    nothing is excused."""
    problems = [f"{role}: error {e}" for e in report["errors"]]
    for failure in report["failures"]:
        for operation in failure["operations"]:
            problems.append(f"{role}: {failure['code']} {failure['title']}: {operation}")
    return problems


def check_all_roles(
    served: Served, *, examples: int, seed: str | None, bounded: bool = False
) -> None:
    """Each role's run; `bounded`: the operator's skips the coverage phase of the holder's
    fenced writes (the integrator's run covers them, and the operator is refused them)."""
    problems: list[str] = []
    counts: dict[str, int] = {}
    outputs: list[str] = []
    for role in (None, *ROLES):
        # Only the writing roles get the coverage phase (every boundary of every parameter):
        # the other roles are refused most writes before their bodies are read.
        phases = "coverage,fuzzing,stateful" if role in ("operator", "integrator") else "fuzzing"
        spared = HOLDERS_BODIES if bounded and role == "operator" else ()
        report = served.schemathesis(
            role, examples=examples, phases=phases, seed=seed, no_coverage=spared
        )
        counts[role or "none"] = report["test_cases"]["generated"]
        found = problems_of(report, role)
        if found:
            outputs.append(f"--- {role}:\n{report['output'][-6000:]}")
        problems += found
        server_errors = [f for f in report["failures"] if f["code"] == "ST100"]
        assert not server_errors, report["output"][-5000:]
    print(f"schemathesis: test cases per credential {counts}")
    assert problems == [], "\n".join([*problems, *outputs])


@pytest.mark.timeout(900)
def test_every_role_gets_declared_answers_and_no_server_error(served: Served) -> None:
    """A bounded run: a fixed seed, 8 examples per operation."""
    check_all_roles(served, examples=8, seed="20261126", bounded=True)


@pytest.mark.stress
@pytest.mark.timeout(3600)
def test_a_bigger_schemathesis_run_finds_nothing(served: Served) -> None:
    """50 examples per operation, every phase for the writing roles, seed 7 (another with
    SCHEMATHESIS_SEED)."""
    check_all_roles(served, examples=50, seed=os.environ.get("SCHEMATHESIS_SEED", "7"))
