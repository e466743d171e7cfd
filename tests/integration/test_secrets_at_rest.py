"""A full run in cutover leaves no secret it used at rest: not in any event's payload (as the
API lists them), not in any row of any table (every table the database holds, found by
reflection), not in the hooks' state directory, nor in the service's debug log or what the
pushers saw.

The secrets: every API token of the run, the lease tokens and push nonces the service handed
the worker, a nonce replayed by a person, and the password of a person pushing over HTTP (git
http-backend hands the hooks the `Authorization` header in ``HTTP_AUTHORIZATION``). Hashes of
them are fine; the clear values are not.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import MetaData, select

from integrator.db import make_engine
from integrator.settings import Settings
from tests.gitrepos import GIT_ENV, git
from tests.integration.hooks.conftest import SERVER_PATH
from tests.integration.test_logs_secrets import RecordingProxy, api_tokens_of, debug_world
from tests.support import REPO_ROOT, TokenMaker
from tests.worker_support import WorkerWorld


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[WorkerWorld]:
    """The guarded world of the log test: a debug-level service, the hooks installed."""
    with debug_world(settings, tmp_path, tokens) as made:
        yield made


def push_over_http(
    world: WorkerWorld, password: str, *refspecs: str, options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """A person's push as git http-backend runs receive-pack: the web server's variables,
    the Basic credentials among them, are what the hooks see."""
    basic = base64.b64encode(f"alice:{password}".encode()).decode()
    server = {
        "PATH": SERVER_PATH,
        "REMOTE_USER": "alice",
        "INTEGRATOR_PUSHER": "alice",
        "HTTP_AUTHORIZATION": f"Basic {basic}",
        "GIT_HTTP_EXPORT_ALL": "1",
    }
    assigned = " ".join(f"{k}={shlex.quote(v)}" for k, v in server.items())
    flags = [arg for option in options for arg in ("-o", option)]
    return subprocess.run(
        [
            "git",
            "push",
            *flags,
            f"--receive-pack=env -i {assigned} git-receive-pack",
            str(world.canonical.bare),
            *refspecs,
        ],
        cwd=world.canonical.work,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def every_event(world: WorkerWorld, token: str) -> list[dict[str, Any]]:
    """Every event as the API lists it, page by page."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(
            world.url("/v1/events"),
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        cursor = body.get("next_cursor")
        if not cursor:
            return items


def as_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def every_row(world: WorkerWorld) -> dict[str, list[str]]:
    """Each table's rows, every column written out (JSON columns as JSON)."""
    engine = make_engine(world.settings)
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        rows: dict[str, list[str]] = {}
        with engine.connect() as connection:
            for table in metadata.sorted_tables:
                found = connection.execute(select(table)).all()
                rows[table.name] = [
                    json.dumps(list(row), default=as_text, ensure_ascii=False) for row in found
                ]
        return rows
    finally:
        engine.dispose()


def test_no_event_row_or_hook_state_of_a_full_run_holds_a_secret_it_used(
    world: WorkerWorld,
    tokens: TokenMaker,
    tmp_path: Path,
) -> None:
    first = world.ready("first")
    second = world.ready("second")
    world.cutover()
    proxy = RecordingProxy(world.service.url)
    try:
        done = subprocess.run(
            world.worker_args("--once"),
            env={**world.worker_env(), "INTEGRATOR_URL": proxy.url},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        proxy.close()
    assert done.returncode == 0, done.stderr
    assert world.candidate(first)["status"] == world.candidate(second)["status"] == "integrated"
    nonces = [s for s in proxy.secrets if s]
    assert len(nonces) >= 3  # a lease token and a nonce per landing

    # a person over HTTP: a branch (allowed), then main with a nonce seen in a log (refused)
    password = "pw-" + secrets.token_hex(16)
    sha = world.canonical.branch("feat/by-alice")
    branch = push_over_http(world, password, f"{sha}:refs/heads/feat/by-hand")
    git("fetch", "-q", "origin", cwd=world.canonical.work)
    git("checkout", "-q", "-B", "main", "origin/main", cwd=world.canonical.work)
    world.canonical.commit("by-hand.txt", "x\n", "straight to main")
    replayed = push_over_http(
        world, password, "main", options=tuple(f"integrator-push={n}" for n in nonces[:1])
    )
    assert branch.returncode == 0, branch.stderr
    assert replayed.returncode != 0, replayed.stderr
    rejected = [e for e in every_event(world, tokens("reader")) if e["type"] == "push_rejected"]
    # the replayed nonce reached the service (a push without one is `not_registered`)
    assert [e["fields"]["reason_code"] for e in rejected] == ["registration_mismatch"], rejected

    reader = tokens("reader")
    basic = base64.b64encode(f"alice:{password}".encode()).decode()
    secrets_used = [*api_tokens_of(world, reader), *nonces, password, basic]

    events = json.dumps(every_event(world, reader), ensure_ascii=False)
    rows = every_row(world)
    assert {"events", "registrations", "api_tokens"} <= set(rows), sorted(rows)
    assert sum(len(r) for r in rows.values()) > 20
    # what was searched holds the run: the HTTP push and the replay, recorded
    assert any("refs/heads/feat/by-hand" in line for line in rows["events"])
    assert any("push_rejected" in line and "alice" in line for line in rows["events"])
    hashed = [hashlib.sha256(n.encode()).hexdigest() for n in nonces]
    assert any(h in line for h in hashed for line in rows["registrations"])  # hashes: fine
    state = world.canonical.bare / "integrator" / "state"
    kept = {p: p.read_text(errors="replace") for p in state.rglob("*") if p.is_file()}
    kept[tmp_path / "service.log"] = (tmp_path / "service.log").read_text(errors="replace")
    kept[tmp_path / "pushes.out"] = branch.stderr + replayed.stderr + done.stderr
    for secret in secrets_used:
        assert len(secret) >= 16
        assert secret not in events, "an event shows a secret"
        for table, lines in rows.items():
            assert not any(secret in line for line in lines), f"a row of {table} holds a secret"
        for path, content in kept.items():
            assert secret not in content, f"{path.name} holds a secret"
