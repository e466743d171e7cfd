"""The domain's exception tree. Each docstring is the default message.

Domain errors carry a stable `code` but no HTTP status: `integrator.api.errors`
maps them to responses, the CLI to exit codes, the hook to `remote:` lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Detail:
    """One diagnostic: which field broke which rule."""

    field: str
    rule: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "rule": self.rule, "message": self.message}


class IntegratorError(Exception):
    """Integrator failed."""

    code = "error"
    #: When the caller should try again (seconds, a `Retry-After`), for a passing failure.
    retry_after: int | None = None

    def __init__(
        self,
        message: str | None = None,
        *,
        details: list[Detail] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details or []
        self.extra = extra or {}
        super().__init__(self.message)


class DatabaseMissing(IntegratorError):
    """The database does not exist."""

    code = "database_missing"


class InvalidInput(IntegratorError):
    """The input is invalid."""

    code = "invalid_input"


class NotFound(IntegratorError):
    """Not found."""

    code = "not_found"


class Conflict(IntegratorError):
    """The request conflicts with the current state."""

    code = "conflict"


class Unauthenticated(IntegratorError):
    """A valid token is required (Authorization: Bearer <token>)."""

    code = "unauthenticated"


class Forbidden(IntegratorError):
    """This token's role may not do that."""

    code = "forbidden"


class LeaseHeld(Conflict):
    """The lease is held by another holder."""

    code = "lease_held"


class LeaseLost(Conflict):
    """This lease is no longer yours (epoch, token or expiry)."""

    code = "lease_lost"


class IdempotencyCollision(Conflict):
    """The same key was already used for different content."""

    code = "idempotency_collision"


class TransitionRefused(Conflict):
    """That transition is not allowed from the current state."""

    code = "transition_refused"


class EvidenceIncomplete(Conflict):
    """The go/no-go evidence for cutover is incomplete."""

    code = "evidence_incomplete"


class NotInCutover(Conflict):
    """Registrations are created only in cutover: the integrator moves main only then."""

    code = "not_in_cutover"


class NotOnMain(TransitionRefused):
    """The service does not find the candidate's content on main."""

    code = "content_not_on_main"


class DatabaseUnavailable(IntegratorError):
    """The database cannot be reached now (restarting, down, or busy); nothing was recorded:
    try again."""

    code = "database_unavailable"
    retry_after = 2


class RepositoryUnreadable(IntegratorError):
    """The canonical repository cannot be read now; nothing was recorded: try again."""

    code = "repository_unreadable"
    retry_after = 5
