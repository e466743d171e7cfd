"""Role tokens.

A token reads `itg_<key_id>_<secret>`. The row is found by `key_id`, then the
SHA-256 of the whole token is compared in constant time; the secret itself is
never stored. Tokens are random 256-bit values, so a fast hash is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from integrator.errors import Conflict, Detail, InvalidInput, NotFound, Unauthenticated
from integrator.events import name_problem
from integrator.models import ApiToken, utcnow

TOKEN_PREFIX = "itg"


class Role(StrEnum):
    """What a token may do; every role may also read."""

    #: GET everything, /metrics included.
    reader = "reader"
    #: Report review/finalize/branch events, submit, resume.
    reporter = "reporter"
    #: The git server's hooks: push checks, push reports, spool uploads.
    hook = "hook"
    #: The integrator bot: lease, dequeue, outcomes, registrations.
    integrator = "integrator"
    #: Modes, cutover, rollback, force-release, close, tokens.
    operator = "operator"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_role(raw: str) -> Role:
    try:
        return Role(raw)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise InvalidInput(
            f"unknown role {raw!r}: use one of {allowed}",
            details=[Detail("role", "enum", f"must be one of {allowed}")],
        ) from None


def create_token(session: Session, *, name: str, role: str) -> tuple[ApiToken, str]:
    """Store a new token's hash and return the plain token, which is shown once."""
    parsed = parse_role(role)
    name = name.strip()
    problem = name_problem(name)
    if problem:
        raise InvalidInput(f"token name {problem}", details=[Detail("name", "name", problem)])
    if session.scalar(select(ApiToken).where(ApiToken.name == name)) is not None:
        raise Conflict(f"a token named {name!r} already exists")
    key_id = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    row = ApiToken(name=name, role=parsed.value, key_id=key_id, token_hash=hash_token(token))
    session.add(row)
    session.flush()
    return row, token


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(session: Session, name: str) -> ApiToken:
    row = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if row is None:
        raise NotFound(f"no token named {name!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def authenticate(session: Session, presented: str | None) -> ApiToken:
    """The live token row for a presented token, or Unauthenticated."""
    if not presented:
        raise Unauthenticated()
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise Unauthenticated("the token is not valid")
    row = session.scalar(select(ApiToken).where(ApiToken.key_id == parts[1]))
    expected = row.token_hash if row is not None else "0" * 64
    matches = hmac.compare_digest(expected, hash_token(presented))
    if row is None or not matches:
        raise Unauthenticated("the token is not valid")
    if row.revoked_at is not None:
        raise Unauthenticated("the token has been revoked")
    return row


def role_allows(role: str, allowed: frozenset[Role]) -> bool:
    """Reading is open to every role; anything else needs one of `allowed`."""
    return not allowed or Role(role) in allowed
