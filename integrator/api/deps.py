"""Dependencies injected into routers: settings, sessions, the authenticated caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from integrator.db import READ_ONLY
from integrator.errors import Forbidden
from integrator.settings import Settings
from integrator.tokens import Role, authenticate, role_allows

_bearer = HTTPBearer(auto_error=False, description="A role token: `integrator tokens create`")

#: Each guard `require` made, with the roles it lets act (empty: any role may read). The
#: published OpenAPI declares 401 and 403 from this (`integrator.api.openapi`).
GUARDS: dict[Callable[..., Any], frozenset[Role]] = {}


async def get_settings(request: Request) -> Settings:
    """Async on purpose: a pure read of app state needs no trip through the thread pool."""
    settings: Settings = request.app.state.settings
    return settings


def _sessions(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.sessions
    return factory


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session for a writing endpoint; the router opens `session.begin()`.

    Async on purpose: creating the session touches no connection, and by the time it
    closes the router's `with session.begin()` has given its connection back, so
    neither end blocks the event loop and the request saves a thread-pool hop.
    """
    with _sessions(request)() as session:
        yield session


def get_read_session(request: Request) -> Iterator[Session]:
    """A session that only reads: on SQLite it does not take the write lock."""
    with _sessions(request)() as session:
        session.connection(execution_options={READ_ONLY: True})
        yield session


@dataclass(frozen=True)
class Caller:
    """Who is calling: the token's name and role."""

    name: str
    role: Role


def require(*roles: Role) -> Callable[..., Caller]:
    """A dependency that authenticates the caller and checks its role (none = any role)."""
    allowed = frozenset(roles)

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Caller:
        with _sessions(request)() as session:
            session.connection(execution_options={READ_ONLY: True})
            row = authenticate(session, credentials.credentials if credentials else None)
        if not role_allows(row.role, allowed):
            needed = " or ".join(sorted(r.value for r in allowed))
            raise Forbidden(f"token {row.name!r} has role {row.role}; this needs {needed}")
        return Caller(name=row.name, role=Role(row.role))

    GUARDS[dependency] = allowed
    return dependency


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
Reader = Annotated[Caller, Depends(require())]
Operator = Annotated[Caller, Depends(require(Role.operator))]
