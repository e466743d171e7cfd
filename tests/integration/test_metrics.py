"""/metrics: the database's values, the same on every replica; the alert rules checked by
promtool, each firing on its condition, and every metric they use present on a live service."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import sessionmaker

from integrator import lease
from integrator.api.app import create_app
from integrator.db import make_engine, read_session
from integrator.liveness import Code
from integrator.metrics import SETTLED, DatabaseCollector, VerdictTally
from integrator.settings import Settings, get_settings
from tests.builders import branch_pushed, finalize_ready, push_check, review_approved
from tests.gitrepos import Canonical
from tests.support import REPO_ROOT, ServiceProcess, TokenMaker

RULES = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
RULES_TEST = REPO_ROOT / "deploy" / "prometheus" / "alerts.test.yml"
#: Series Prometheus makes itself, not the service.
SYNTHETIC = {"up"}
PER_PROCESS = ("integrator_http_", "integrator_hook_round_trip_")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples_of(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


# ---- values read from the database --------------------------------------------------------


class Replica:
    def __init__(self, client: TestClient, tokens: TokenMaker) -> None:
        self.client = client
        self.reader = {"Authorization": f"Bearer {tokens('reader')}"}

    def scrape(self) -> Samples:
        response = self.client.get("/metrics", headers=self.reader)
        assert response.status_code == 200, response.text
        return samples_of(response.text)


@pytest.fixture
def replicas(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[list[Any]]:
    canonical = Canonical(tmp_path)
    configured = settings.model_copy(
        update={"repo": str(canonical.bare), "conditions_interval_seconds": 0}
    )
    with (
        TestClient(create_app(configured)) as first,
        TestClient(create_app(configured)) as second,
    ):
        yield [canonical, Replica(first, tokens), Replica(second, tokens)]


def test_database_values_are_the_same_on_every_replica(
    replicas: list[Any], tokens: TokenMaker
) -> None:
    """Depth by state, the lease, outcomes, push verdicts by mode, decision and reason, and
    every condition, read from the database: two replicas report them identically."""
    canonical, first, second = replicas
    reporter = {"Authorization": f"Bearer {tokens('reporter')}"}
    integrator = {"Authorization": f"Bearer {tokens('integrator')}"}
    hook = {"Authorization": f"Bearer {tokens('hook')}"}
    client: TestClient = first.client
    sha = canonical.branch("feat/unreviewed")
    for envelope in (
        branch_pushed("feat/unreviewed", sha),
        finalize_ready("unreviewed", "feat/unreviewed", sha),
    ):
        assert client.post("/v1/events", json=envelope, headers=reporter).status_code == 201
    for slug in ("first", "second"):
        sha = canonical.branch(f"feat/{slug}")
        for envelope in (
            review_approved(slug),
            branch_pushed(f"feat/{slug}", sha),
            finalize_ready(slug, f"feat/{slug}", sha),
        ):
            assert client.post("/v1/events", json=envelope, headers=reporter).status_code == 201
    grant = client.post("/v1/lease/acquire", json={"holder": "bot"}, headers=integrator).json()
    fence = {"epoch": grant["epoch"], "token": grant["token"]}
    handed = client.post("/v1/queue/next", json=fence, headers=integrator).json()
    outcome = {**fence, "outcome": "would_integrate", "attempt": "a1"}
    answer = client.post(f"/v1/candidates/{handed['id']}/outcome", json=outcome, headers=integrator)
    assert answer.status_code == 200, answer.text
    assert (
        client.post(
            "/v1/push-checks", json=push_check("refs/heads/topic", "0" * 40, "b" * 40), headers=hook
        ).status_code
        == 200
    )

    seen = first.scrape()
    assert value(seen, "integrator_database_up") == 1
    assert value(seen, "integrator_mode", mode="shadow") == 1
    assert value(seen, "integrator_mode", mode="cutover") == 0
    depth = {
        s: value(seen, "integrator_queue_candidates", state=s)
        for s in ("waiting", "queued", "in_progress", "predicted", "blocked")
    }
    assert depth == {"waiting": 1, "queued": 1, "in_progress": 0, "predicted": 1, "blocked": 0}
    assert value(seen, "integrator_lease_epoch") == grant["epoch"]
    assert value(seen, "integrator_lease_held") == 1
    assert 0 < value(seen, "integrator_lease_expires_in_seconds") <= 120
    assert value(seen, "integrator_lease_takeovers_total") == 0
    assert value(seen, "integrator_outcomes_total", kind="would_integrate") == 1
    assert value(seen, "integrator_outcomes_total", kind="integrated") == 0
    assert value(seen, "integrator_time_in_queue_sampled") == 0
    assert value(seen, "integrator_checks_flaky_total") == 0
    assert value(seen, "integrator_flake_rate_passes") == 1  # the would_integrate
    assert value(seen, "integrator_flake_rate") == value(seen, "integrator_flake_rate_flaky") == 0
    verdict = {"mode": "shadow", "decision": "allowed", "reason": "unprotected"}
    assert value(seen, "integrator_push_verdicts_total", **verdict) == 1
    for code in Code:
        assert value(seen, "integrator_condition_active", condition=code.value) == 0

    def from_database(samples: Samples) -> Samples:
        return {k: v for k, v in samples.items() if not k[0].startswith(PER_PROCESS)}

    again = from_database(second.scrape())
    again.pop(("integrator_lease_expires_in_seconds", ()))  # read a moment later
    mine = from_database(seen)
    mine.pop(("integrator_lease_expires_in_seconds", ()))
    assert again == mine


def test_a_scrape_that_cannot_read_the_database_says_so(tmp_path: Path) -> None:
    """No database: `integrator_database_up 0` and nothing read from it, not an error."""
    settings = get_settings(database_url="postgresql://nobody@127.0.0.1:9/none")
    engine = make_engine(settings)
    try:
        collector = DatabaseCollector(lambda: sessionmaker(engine), settings)
        names = [(m.name, [s.value for s in m.samples]) for m in collector.collect()]
    finally:
        engine.dispose()
    assert names == [("integrator_database_up", [0.0])]


# ---- the alert rules ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    reason = "promtool (Debian package prometheus) is missing: run `make system-packages` as root"
    if os.environ.get("CI") == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def condition_rules() -> dict[str, dict[str, Any]]:
    """Each condition's rule, by the condition its expression selects."""
    found = {}
    for rule in rules():
        match = re.search(r'integrator_condition_active\{condition="(\w+)"\}', rule["expr"])
        if match:
            found[match.group(1)] = rule
    return found


#: PromQL's own words, never a series name.
KEYWORDS = {"and", "or", "unless", "bool", "offset"}


def metric_names(expr: str) -> set[str]:
    """The series an expression selects: its identifiers once label matchers, `by (…)`
    groupings, function calls and PromQL's keywords are set aside."""
    bare = re.sub(r"\b(by|without)\s*\([^)]*\)", " ", re.sub(r"\{[^}]*\}", " ", expr))
    return set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", bare)) - KEYWORDS


def test_promtool_accepts_the_rules_and_their_unit_tests(promtool: str) -> None:
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", RULES_TEST.name],
        cwd=RULES_TEST.parent,
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_condition_has_a_rule() -> None:
    assert sorted(condition_rules()) == sorted(c.value for c in Code)


def alert_test(series: dict[str, float], expect: dict[str, bool], tmp_path: Path) -> Path:
    """A promtool rules test: `series` (name{labels} → value) from two replicas for 5 min;
    each condition in `expect` alerts once (with its rule's labels and text) or not at all."""
    input_series = [
        {
            "series": f'{name[:-1]}, instance="{replica}", job="integrator"}}',
            "values": f"{v:g}x5",
        }
        for name, v in series.items()
        for replica in ("a:8000", "b:8000")
    ]
    by_condition = condition_rules()
    checks = []
    for condition, fires in expect.items():
        rule = by_condition[condition]
        alerts = [
            {
                "exp_labels": {**rule.get("labels", {}), "condition": condition},
                "exp_annotations": rule["annotations"],
            }
        ]
        checks.append(
            {"eval_time": "3m", "alertname": rule["alert"], "exp_alerts": alerts if fires else []}
        )
    document = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": input_series, "alert_rule_test": checks}],
    }
    path = tmp_path / "conditions.test.yml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize("code", [c.value for c in Code])
def test_each_condition_rule_fires_once_on_its_condition_alone(
    code: str, promtool: str, tmp_path: Path
) -> None:
    series = {
        f'integrator_condition_active{{condition="{c.value}"}}': float(c.value == code)
        for c in Code
    }
    test = alert_test(series, {c.value: c.value == code for c in Code}, tmp_path)
    tested = subprocess.run([promtool, "test", "rules", str(test)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.fixture
def live(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[ServiceProcess]:
    """A real service whose queued work raises `no_holder` at once (no worker)."""
    canonical = Canonical(tmp_path)
    configured = settings.model_copy(
        update={"repo": str(canonical.bare), "no_holder_after_seconds": 0.001}
    )
    service = ServiceProcess(configured, tmp_path / "service.log")
    service.start()
    reporter = {"Authorization": f"Bearer {tokens('reporter')}"}
    sha = canonical.branch("feat/waits")
    for envelope in (
        review_approved("waits"),
        branch_pushed("feat/waits", sha),
        finalize_ready("waits", "feat/waits", sha),
    ):
        answer = httpx.post(f"{service.url}/v1/events", json=envelope, headers=reporter)
        assert answer.status_code == 201, answer.text
    yield service
    service.stop()


def test_the_rules_use_only_metrics_a_live_service_serves_and_no_holder_alerts(
    live: ServiceProcess, tokens: TokenMaker, promtool: str, tmp_path: Path
) -> None:
    """Every metric an alert rule reads is on a live /metrics; the conditions as scraped
    there, fed to the rules, raise IntegratorNoHolder and nothing else."""
    reader = {"Authorization": f"Bearer {tokens('reader')}"}
    response = httpx.get(f"{live.url}/metrics", headers=reader, timeout=30)
    assert response.status_code == 200, response.text
    served = {f.name for f in text_string_to_metric_families(response.text)}
    served |= {s.name for f in text_string_to_metric_families(response.text) for s in f.samples}
    used = {name for rule in rules() for name in metric_names(rule["expr"])}
    assert used >= {"integrator_condition_active", "integrator_database_up"}
    assert used - SYNTHETIC <= served

    samples = samples_of(response.text)
    conditions = {
        f'integrator_condition_active{{condition="{dict(labels)["condition"]}"}}': v
        for (name, labels), v in samples.items()
        if name == "integrator_condition_active"
    }
    assert len(conditions) == len(Code)
    test = alert_test(conditions, {c.value: c is Code.no_holder for c in Code}, tmp_path)
    tested = subprocess.run([promtool, "test", "rules", str(test)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_push_verdicts_are_folded_once_settled_and_never_counted_twice(
    replicas: list[Any], tokens: TokenMaker
) -> None:
    """Verdicts younger than SETTLED are counted at each read; older ones are folded into the
    running total once; a verdict recorded after the fold is added to it."""
    _, first, _ = replicas
    client: TestClient = first.client
    hook = {"Authorization": f"Bearer {tokens('hook')}"}
    sessions = client.app.state.sessions  # type: ignore[attr-defined]
    settings = client.app.state.settings  # type: ignore[attr-defined]
    tally = VerdictTally()
    key = ("shadow", "allowed", "unprotected")

    def read(later: timedelta = timedelta(0)) -> int:
        with read_session(sessions) as session:
            now = lease.datetime_of_ms(lease.status(session, settings).now_ms)
            return tally.read(session, settings, now + later)[key]

    for _ in range(2):
        assert (
            client.post(
                "/v1/push-checks",
                json=push_check("refs/heads/topic", "0" * 40, "b" * 40),
                headers=hook,
            ).status_code
            == 200
        )
    assert read() == read() == 2  # young: counted afresh each time
    assert read(SETTLED * 2) == 2  # settled: folded
    assert read() == read(SETTLED * 2) == 2  # not counted again
    assert (
        client.post(
            "/v1/push-checks", json=push_check("refs/heads/topic", "0" * 40, "b" * 40), headers=hook
        ).status_code
        == 200
    )
    assert read() == 3
