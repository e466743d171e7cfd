"""GitHub's push webhook: what post-receive reports elsewhere, where no post-receive can run.

GitHub Enterprise Server runs an administrator's pre-receive hook but no post-receive, so the
branches that moved (``branch_pushed``) and the landings on a protected ref come from its push
webhook instead. The delivery is trusted only with a valid ``X-Hub-Signature-256`` (HMAC-SHA256
of the body under the shared secret, compared in constant time). Each delivery is recorded once,
keyed by ``X-GitHub-Delivery``: a redelivery is answered as a duplicate and changes nothing. The
delivery id is not signed, so a replayed body under a new id must change nothing either: the
updates it carries are keyed by their content (``<repository>:<ref>:<old>:<new>``), as the
hook's reports are, by the very functions those reports go through.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from integrator import events, guard, scoring
from integrator.admission import CanonicalRepo
from integrator.errors import Detail, InvalidInput, Unauthenticated
from integrator.policy import Update
from integrator.settings import Settings

#: The event that remembers a delivery (its natural key: ``github:<delivery id>``).
RECEIVED = "github_push_received"
ACTOR = "github-webhook"
IDENTITY_SOURCE = "ghes"
_OID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_DELIVERY = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")


@dataclass(frozen=True)
class GithubPush:
    """The part of a push event we use."""

    delivery: str
    full_name: str
    ref: str
    before: str
    after: str
    pusher: str | None


@dataclass(frozen=True)
class Received:
    duplicate: bool
    ignored: str | None = None
    recorded: int = 0
    duplicates: int = 0


def verify(secret: str | None, body: bytes, header: str | None) -> None:
    """Unauthenticated unless ``header`` is ``sha256=<hex>`` of ``body`` under ``secret``."""
    if not secret:
        raise Unauthenticated(
            "GitHub webhooks are not accepted: INTEGRATOR_GITHUB_WEBHOOK_SECRET is not set"
        )
    if not header or not header.startswith("sha256="):
        raise Unauthenticated("missing X-Hub-Signature-256 (sha256=…): set the webhook's secret")
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(
        expected.encode("ascii"), header[7:].strip().encode("ascii", "replace")
    ):
        raise Unauthenticated("X-Hub-Signature-256 does not match the body under the secret")


def parse(delivery: str | None, payload: Any) -> GithubPush:
    """The push event's fields; InvalidInput naming each one that is missing or malformed."""
    problems: list[Detail] = []
    if not delivery or not _DELIVERY.fullmatch(delivery):
        problems.append(Detail("X-GitHub-Delivery", "required", "a delivery id is required"))
    body = payload if isinstance(payload, dict) else {}
    repository = body.get("repository")
    full_name = repository.get("full_name") if isinstance(repository, dict) else None
    if not isinstance(full_name, str) or not full_name:
        problems.append(Detail("repository.full_name", "required", "the repository's name"))
    ref = body.get("ref")
    if not isinstance(ref, str) or not ref.startswith("refs/") or not ref.isprintable():
        problems.append(Detail("ref", "format", "a full ref name such as refs/heads/main"))
    for field in ("before", "after"):
        if not isinstance(body.get(field), str) or not _OID.fullmatch(body[field]):
            problems.append(Detail(field, "format", "an object name (40 or 64 hex digits)"))
    if problems:
        raise InvalidInput("not a GitHub push event", details=problems)
    pusher = body.get("pusher")
    name = pusher.get("name") if isinstance(pusher, dict) else None
    name = name if isinstance(name, str) and name else None
    return GithubPush(str(delivery), str(full_name), str(ref), body["before"], body["after"], name)


def serves(settings: Settings, full_name: str) -> bool:
    """Whether the push is about the repository this service integrates (``owner/name``, or
    ``name`` when the service knows it by its short name)."""
    return settings.repository_name in (full_name, full_name.rpartition("/")[2])


def receive(
    session: Session, settings: Settings, repo: CanonicalRepo, push: GithubPush
) -> Received:
    """Record the push once per delivery: ``branch_pushed`` for a branch, a landing when a
    protected ref moved, then score what landed. ``session`` must not be in a transaction."""
    key = f"github:{push.delivery}"
    if not serves(settings, push.full_name):
        return Received(False, ignored=f"{push.full_name} is not {settings.repository_name}")
    if events.find(session, RECEIVED, key) is not None:
        session.rollback()
        return Received(True)
    update = Update(push.ref, push.ref, push.before, push.after, None, None)
    request = guard.PushRequest(
        repository=settings.repository_name,
        hook_instance=f"github-webhook:{push.full_name}",
        hook_version=None,
        pusher=push.pusher,
        identity_source=IDENTITY_SOURCE,
        registration_nonce=None,
        updates=(update,),
    )
    session.rollback()  # the look-up above opened a transaction: the writes get their own
    repo.refresh()
    try:
        with session.begin():
            reported = guard.report_pushes(
                session, repo, request, protected_refs=settings.protected_refs, actor=ACTOR
            )
            events.record_system_event(
                session,
                type=RECEIVED,
                repository=settings.repository_name,
                fields={
                    "delivery": push.delivery,
                    "ref": push.ref,
                    "before": push.before,
                    "after": push.after,
                    "pusher": push.pusher,
                    "recorded": reported.recorded,
                },
                natural_key=key,
                actor=ACTOR,
            )
    except IntegrityError:
        # the same delivery recorded by a concurrent request (the same push under another id,
        # or reported by the hook, is a duplicate of report_pushes, not an error)
        return Received(True)
    if push.ref in settings.protected_refs:
        scoring.score_predictions(session, settings, repo, by=ACTOR)
    return Received(False, recorded=reported.recorded, duplicates=reported.duplicates)
