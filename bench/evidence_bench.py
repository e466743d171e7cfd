"""What the cutover evidence costs on a long history: `GET /v1/evidence` (what `integrator
evidence` and the dashboard every 30 s ask for) with 100,000 events and 10,000 candidates stored
— the history `bench status` seeds.

Per backend: a throw-away database filled in bulk, a real `integrator serve` (background
evaluation off); `--before=REV` starts a second one on the same database with `integrator/` as
it was at git revision REV (extracted to a scratch directory, first on PYTHONPATH). One client
over kept-alive connections; the requests of each round interleaved: the baseline
`GET /v1/whoami` (a token check and one indexed read), the evidence, and the evidence before.

    .venv/bin/python -m bench evidence [--samples=N] [--before=REV] [--events=N] [--candidates=N]
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from bench.cli_bench import extract_package
from bench.cli_bench import option as text_option
from bench.common import BACKENDS, make_token, service, summary_ms, temp_database
from bench.status_bench import CANDIDATES, EVENTS, option, seeded, timed_get
from integrator.settings import Settings

SAMPLES = 20
BASELINE = "/v1/whoami"
EVIDENCE = "/v1/evidence"

Row = tuple[str, str, int, float, float]


@contextmanager
def service_of(settings: Settings, package: Path | None) -> Iterator[str]:
    """`integrator serve`, with `integrator/` from `package` when given."""
    if package is None:
        with service(settings) as base:
            yield base
        return
    # The service's environment copies ours; `python -m` puts its working directory first.
    saved, here = os.environ.get("PYTHONPATH"), Path.cwd()
    os.environ["PYTHONPATH"] = str(package)
    os.chdir(package)
    try:
        with service(settings) as base:
            os.chdir(here)
            yield base
    finally:
        os.chdir(here)
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def run_backend(backend: str, argv: list[str], before: Path | None) -> list[Row]:
    samples = option(argv, "samples", SAMPLES)
    with temp_database(backend) as url, ExitStack() as stack:
        settings = seeded(backend, url, argv)
        headers = {"Authorization": f"Bearer {make_token(settings, 'reader')}"}
        clients = {"now": stack.enter_context(service_of(settings, None))}
        if before is not None:
            clients["before"] = stack.enter_context(service_of(settings, before))
        http = {
            name: stack.enter_context(httpx.Client(base_url=base, headers=headers, timeout=120))
            for name, base in clients.items()
        }
        cases = {f"baseline: GET {BASELINE}": (http["now"], BASELINE)}
        cases[f"GET {EVIDENCE}"] = (http["now"], EVIDENCE)
        if "before" in http:
            cases[f"GET {EVIDENCE}, before"] = (http["before"], EVIDENCE)
        for client, path in cases.values():
            timed_get(client, path, 2)  # warm each process and the page cache
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(samples):
            for name, (client, path) in cases.items():
                times[name] += timed_get(client, path, 1)
    return [(backend, name, len(t), *summary_ms(t)) for name, t in times.items()]


def main(argv: list[str]) -> None:
    events, candidates = option(argv, "events", EVENTS), option(argv, "candidates", CANDIDATES)
    revision = text_option(argv, "before")
    print(f"{events} events and {candidates} candidates stored; one client")
    with tempfile.TemporaryDirectory() as folder:
        before = None
        if revision:
            before = Path(folder) / "before"
            extract_package(revision, before)
            print(f"before: integrator/ at {revision}")
        results = [row for backend in BACKENDS for row in run_backend(backend, argv, before)]
    print("\n| backend | request | samples | p50 ms | p99 ms | p50 ÷ baseline p50 |")
    print("|---|---|---|---|---|---|")
    floor = {backend: p50 for backend, name, _, p50, _ in results if name.startswith("baseline")}
    for backend, name, count, p50, p99 in results:
        ratio = p50 / floor[backend]
        print(f"| {backend} | {name} | {count} | {p50:.1f} | {p99:.1f} | {ratio:.1f} |")
