"""POST /v1/webhooks/github: GitHub's push events, verified by HMAC instead of a token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel

from integrator import github_push, strict_json
from integrator.api.deps import SessionDep, SettingsDep
from integrator.api.events import Repo
from integrator.api.strict_body import StrictJSONRoute
from integrator.errors import InvalidInput

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["webhooks"])


class GithubReceived(BaseModel):
    """`duplicate`: this delivery was recorded before and changed nothing now; `ignored`: why an
    event was taken but not used (another event type, another repository)."""

    event: str
    duplicate: bool = False
    ignored: str | None = None
    recorded: int = 0
    duplicates: int = 0


@router.post("/webhooks/github", responses={401: {"description": "Missing or bad signature"}})
async def github_webhook(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    repo: Repo,
    x_hub_signature_256: Annotated[str | None, Header()] = None,
    x_github_event: Annotated[str | None, Header()] = None,
    x_github_delivery: Annotated[str | None, Header()] = None,
) -> GithubReceived:
    """A push event: `branch_pushed` for a branch, a landing for a protected ref; once per
    delivery. No token: the body must carry the signature of the configured secret."""
    body = await request.body()
    github_push.verify(settings.github_webhook_secret, body, x_hub_signature_256)
    event = x_github_event or ""
    if event != "push":
        return GithubReceived(event=event, ignored="not a push event" if event != "ping" else None)
    try:
        payload = strict_json.loads(body)
    except ValueError as exc:
        raise InvalidInput(f"the body is not JSON: {exc}") from None
    push = github_push.parse(x_github_delivery, payload)
    received = await _receive(session, settings, repo, push)
    return GithubReceived(
        event=event,
        duplicate=received.duplicate,
        ignored=received.ignored,
        recorded=received.recorded,
        duplicates=received.duplicates,
    )


async def _receive(
    session: SessionDep, settings: SettingsDep, repo: Repo, push: github_push.GithubPush
) -> github_push.Received:
    from starlette.concurrency import run_in_threadpool  # the database and git block

    return await run_in_threadpool(github_push.receive, session, settings, repo, push)
