"""The service in process on a real canonical repository, driven as its users drive it: the
reporter's events, the operator's controls, and integrator-role lease holders."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from integrator.api.app import create_app
from integrator.db import make_sessionmaker
from integrator.modes import Mode, change
from integrator.settings import Settings
from tests.builders import branch_pushed, finalize_ready, review_approved
from tests.gitrepos import Canonical
from tests.support import TokenMaker

MAIN = "refs/heads/main"


def post_ready(
    client: TestClient, reporter: dict[str, str], canonical: Canonical, slug: str
) -> str:
    """A branch `feat/<slug>` with one commit, reported pushed, approved and finalized (a
    queued candidate): its sha."""
    sha = canonical.branch(f"feat/{slug}")
    for envelope in (review_approved(slug), branch_pushed(f"feat/{slug}", sha),
                     finalize_ready(slug, f"feat/{slug}", sha)):  # fmt: skip
        response = client.post("/v1/events", json=envelope, headers=reporter)
        assert response.status_code == 201, response.text
    return sha


class Holder:
    """An integrator-role client holding (or having held) one lease grant."""

    def __init__(self, client: TestClient, token: str, name: str) -> None:
        self.client = client
        self.auth = {"Authorization": f"Bearer {token}"}
        grant = client.post("/v1/lease/acquire", json={"holder": name}, headers=self.auth)
        assert grant.status_code == 200, grant.text
        self.epoch, self.token = grant.json()["epoch"], grant.json()["token"]

    def grant(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "token": self.token}

    def next(self) -> Any:
        return self.client.post("/v1/queue/next", json=self.grant(), headers=self.auth)

    def outcome(self, candidate_id: int, outcome: str, **extra: Any) -> Any:
        body = {**self.grant(), "outcome": outcome, **extra}
        return self.client.post(
            f"/v1/candidates/{candidate_id}/outcome", json=body, headers=self.auth
        )

    def register(
        self,
        candidate: int,
        old: str,
        new: str,
        attempt: str,
        ref: str = MAIN,
        checks: dict[str, dict[str, Any]] | None = None,
    ) -> Any:
        body = {**self.grant(), "candidate_id": candidate, "ref": ref, "old": old, "new": new,
                "attempt": attempt, "checks": checks or {}}  # fmt: skip
        return self.client.post("/v1/registrations", json=body, headers=self.auth)

    def fail(self, registration: int, reason: str = "push refused") -> Any:
        body = {**self.grant(), "reason": reason}
        return self.client.post(
            f"/v1/registrations/{registration}/fail", json=body, headers=self.auth
        )

    def integrated(self, candidate: int, registration: int, new: str, attempt: str) -> Any:
        return self.outcome(
            candidate, "integrated", main_sha=new, attempt=attempt, registration_id=registration
        )


class ApiWorld:
    """A test client of the service, the canonical repository it serves, and its tokens."""

    def __init__(self, client: TestClient, tokens: TokenMaker, canonical: Canonical) -> None:
        self.client = client
        self.canonical = canonical
        self.reporter = tokens.bearer("reporter")
        self.operator = tokens.bearer("operator")
        self.integrator_token = tokens("integrator")

    @classmethod
    @contextmanager
    def serving(
        cls, settings: Settings, root: Path, tokens: TokenMaker, **overrides: Any
    ) -> Iterator[Self]:
        """The service in process, serving a canonical repository made under `root`."""
        canonical = Canonical(root)
        configured = settings.model_copy(update={"repo": str(canonical.bare), **overrides})
        with TestClient(create_app(configured)) as client:
            yield cls(client, tokens, canonical)

    def ready(self, slug: str) -> str:
        return post_ready(self.client, self.reporter, self.canonical, slug)

    def holder(self, name: str = "bot-1") -> Holder:
        return Holder(self.client, self.integrator_token, name)

    def force_release(self, reason: str = "test takeover") -> None:
        response = self.client.post(
            "/v1/lease/force-release", json={"reason": reason}, headers=self.operator
        )
        assert response.status_code == 200, response.text

    def set_mode_cutover(self, engine: Engine) -> None:
        """Cutover straight in the database (these services have no shadow history to show)."""
        with make_sessionmaker(engine)() as session, session.begin():
            change(session, Mode.cutover, by="test", reason="test", repository="canonical")
