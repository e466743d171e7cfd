"""GET /v1/tokens: operators list tokens (names and roles, never secrets).

Creating tokens stays a local command (`integrator tokens create`) so that the
first operator token can exist before any token does.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from integrator import tokens
from integrator.api.deps import Operator, ReadSessionDep
from integrator.api.strict_body import StrictJSONRoute
from integrator.tokens import Role

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["auth"])


class TokenOut(BaseModel):
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None


class TokenList(BaseModel):
    items: list[TokenOut]
    next_cursor: str | None = None


@router.get("/tokens")
def list_tokens(session: ReadSessionDep, _caller: Operator, role: Role | None = None) -> TokenList:
    rows = tokens.list_tokens(session)
    items = [
        TokenOut(name=t.name, role=Role(t.role), created_at=t.created_at, revoked_at=t.revoked_at)
        for t in rows
        if role is None or t.role == role
    ]
    return TokenList(items=items)
