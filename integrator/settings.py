"""One `Settings` object, read from `INTEGRATOR_*` variables.

Built by `get_settings()` so that tests and the CLI can point at any database;
importing this module reads nothing.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from integrator.check_contract import name_problem
from integrator.refnames import branch_name_problem

DEFAULT_DATABASE_URL = "sqlite:///./integrator.db"
#: The database URL schemes this build can open (psycopg 3 is the PostgreSQL driver).
DATABASE_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql", "postgres", "postgresql+psycopg")
_DATABASE_HINT = "use sqlite:///PATH or postgresql://USER@HOST[:PORT]/DATABASE"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything the service, the CLI and the worker can be configured with."""

    model_config = SettingsConfigDict(env_prefix="INTEGRATOR_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    repo: str | None = None
    repository: str | None = None
    url: str = "http://127.0.0.1:8000"
    token: str | None = Field(default=None, repr=False)
    identities: Annotated[list[str], NoDecode] = ["integrator-bot"]
    protected_refs: Annotated[list[str], NoDecode] = ["refs/heads/main"]
    #: Named checks every green outcome must list as passed (comma-separated; unset: none).
    required_checks: Annotated[list[str] | None, NoDecode] = None
    mirror_dir: str = "./var/mirrors"

    lease_ttl_seconds: float = Field(default=120.0, gt=0)
    lease_renew_interval_seconds: float = Field(default=30.0, gt=0)
    lease_renew_deadline_seconds: float = Field(default=60.0, gt=0)
    authorize_margin_seconds: float = Field(default=15.0, ge=0)
    registration_ttl_seconds: float = Field(default=300.0, gt=0)
    #: Test-only shift of the SQL clock, in ms; 0 in production.
    sql_clock_offset_ms: int = 0
    #: Test-only: the worker stops itself (SIGSTOP) just before each push of main.
    test_pause_before_push: bool = False

    cutover_min_outcomes: int = Field(default=20, ge=0)
    cutover_min_shadow_seconds: float = Field(default=86400.0, ge=0)
    stall_after_seconds: float = Field(default=1800.0, gt=0)
    #: How often each service process reads canonical main itself (0: only when told).
    main_watch_interval_seconds: float = Field(default=60.0, ge=0)
    hook_silent_after_seconds: float = Field(default=86400.0, gt=0)
    #: Liveness: work queued and no live lease holder for this long raises `no_holder`.
    no_holder_after_seconds: float = Field(default=300.0, gt=0)
    #: Liveness: a candidate in progress longer than this raises `check_overdue`; set it to
    #: the worker's --check-timeout plus the few minutes a fetch, merge and push take.
    check_timeout_seconds: float = Field(default=3900.0, gt=0)
    #: Liveness: in cutover this long and a hook still saw another mode raises `cutover_pending`.
    cutover_pending_after_seconds: float = Field(default=600.0, ge=0)
    #: How often each service process evaluates the liveness conditions (0: only on request).
    conditions_interval_seconds: float = Field(default=15.0, ge=0)
    #: Where blocked / followup_resolved / integrated are posted (none: no webhook).
    webhook_url: str | None = None
    #: The HMAC-SHA256 key of the deliveries' signature header.
    webhook_secret: str | None = Field(default=None, repr=False)
    #: How long one delivery may take (connect, send, first byte of the answer).
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Tries of one delivery before it is marked failed.
    webhook_max_attempts: int = Field(default=16, ge=1)
    #: How often each service process looks for due deliveries.
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    #: The wait after a first failed try; it doubles at each failure, up to the maximum.
    webhook_retry_base_seconds: float = Field(default=1.0, gt=0)
    webhook_retry_max_seconds: float = Field(default=3600.0, gt=0)
    #: The secret of GitHub's push webhook (POST /v1/webhooks/github); unset: refused.
    github_webhook_secret: str | None = Field(default=None, repr=False)
    #: The service's and the worker's log lines: `text` for people, `json` (one object a line).
    log_format: Literal["text", "json"] = "text"

    @model_validator(mode="before")
    @classmethod
    def _parse_lists(cls, data: object) -> object:
        if isinstance(data, dict):
            for key in ("identities", "protected_refs", "required_checks"):
                if key in data:
                    data[key] = _split_csv(data[key])
        return data

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        # The scheme as SQLAlchemy reads it (`dialect[+driver]://…`), without importing it:
        # the worker reads these settings too and never touches a database.
        scheme, separator, _ = value.partition("://")
        if not separator or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+]*", scheme):
            raise ValueError(f"not a database URL: {_DATABASE_HINT}")
        if scheme not in DATABASE_SCHEMES:
            raise ValueError(f"{scheme!r} databases are not supported: {_DATABASE_HINT}")
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        hint = "give the service's http(s) URL, e.g. http://127.0.0.1:8000"
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - parsing the port is the check
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a URL ({exc}): {hint}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL: {hint}")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_http_url(cls, value: str | None) -> str | None:
        hint = "give the receiver's http(s) URL, e.g. https://hooks.example.com/integrator"
        if not value:
            return None  # an empty variable means no webhook
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - parsing the port is the check
        except ValueError as exc:
            raise ValueError(f"not a URL ({exc}): {hint}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {hint}")
        return value

    @field_validator("required_checks")
    @classmethod
    def _check_names(cls, names: list[str] | None) -> list[str] | None:
        if not names:
            return None
        for name in names:
            problem = name_problem(name)
            if problem:
                raise ValueError(problem)
        if len(set(names)) != len(names):
            raise ValueError("each check is named once")
        return names

    @field_validator("protected_refs")
    @classmethod
    def _full_ref_names(cls, refs: list[str]) -> list[str]:
        if not refs:
            raise ValueError("give at least one full ref name, e.g. refs/heads/main")
        for ref in refs:
            if not ref.startswith("refs/") or branch_name_problem(ref):
                raise ValueError(f"{ref!r} is not a full ref name (e.g. refs/heads/main)")
        return refs

    @model_validator(mode="after")
    def _check_lease_timing(self) -> Settings:
        interval = self.lease_renew_interval_seconds
        deadline = self.lease_renew_deadline_seconds
        ttl = self.lease_ttl_seconds
        if deadline <= 1.2 * interval:
            raise ValueError(
                f"INTEGRATOR_LEASE_RENEW_DEADLINE_SECONDS ({deadline:g}) must exceed "
                f"1.2 x INTEGRATOR_LEASE_RENEW_INTERVAL_SECONDS ({interval:g})"
            )
        if ttl - deadline < self.authorize_margin_seconds:
            raise ValueError(
                f"INTEGRATOR_LEASE_TTL_SECONDS ({ttl:g}) minus the renew deadline ({deadline:g}) "
                f"must be at least INTEGRATOR_AUTHORIZE_MARGIN_SECONDS "
                f"({self.authorize_margin_seconds:g})"
            )
        return self

    def as_environment(self) -> dict[str, str]:
        """The `INTEGRATOR_*` variables that give another process these same settings."""
        variables = {}
        for name, value in self.model_dump().items():
            if value is not None:
                text = ",".join(value) if isinstance(value, list) else str(value)
                variables[f"INTEGRATOR_{name.upper()}"] = text
        return variables

    @property
    def repository_name(self) -> str:
        """The canonical repository's name: explicit, else the basename of `repo`."""
        if self.repository:
            return self.repository
        if self.repo:
            base = PurePosixPath(self.repo.rstrip("/")).name
            return base.removesuffix(".git") or "main"
        return "default"

    @property
    def required_check_names(self) -> list[str]:
        """The checks every green outcome must list as passed (none when unset)."""
        return list(self.required_checks or [])

    @property
    def lease_key(self) -> str:
        return f"integration/{self.repository_name}/main"


def get_settings(**overrides: object) -> Settings:
    """Read the environment now (not at import), with explicit overrides winning."""
    return Settings(**overrides)  # type: ignore[arg-type]
