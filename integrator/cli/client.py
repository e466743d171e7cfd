"""The CLI's HTTP client and its one mapping from answers to exit codes.

0 ok; 1 refused (401, 403, 404, 409, a refused transition); 2 bad input (usage,
422); 3 service unreachable or 5xx.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx
import typer

from integrator.errors import IntegratorError

EXIT_OK, EXIT_REFUSED, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3

#: The 401 of a call made without a token says which variable to set, and how to get one.
MISSING_TOKEN = (
    "no token: set INTEGRATOR_TOKEN to a token whose role may do this "
    "(an operator creates one with `integrator tokens create --role ROLE --name NAME`)"
)


def fail(code: int, message: str) -> NoReturn:
    """Print one readable line to stderr and exit with `code`."""
    typer.echo(f"integrator: {message}", err=True)
    raise typer.Exit(code)


def exit_code_for_status(status: int) -> int:
    if status in (400, 422):
        return EXIT_BAD_INPUT
    if status >= 500:
        return EXIT_UNAVAILABLE
    return EXIT_REFUSED


def exit_code_for_error(error: IntegratorError) -> int:
    """Local domain errors map like their HTTP twins would."""
    from integrator.api.errors import status_for  # the one status table

    return exit_code_for_status(status_for(error))


#: The service URL when INTEGRATOR_URL is unset: `Settings.url`'s default (a test holds them equal).
DEFAULT_URL = "http://127.0.0.1:8000"
_CONNECTION_VARIABLES = ("INTEGRATOR_URL", "INTEGRATOR_TOKEN")


def _plain_http_url(value: str) -> bool:
    """An http(s) URL with a host and a readable port: what `Settings` accepts for `url`."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def connection_from_environment() -> tuple[str, str | None]:
    """The service URL and the caller's token, as `Settings` reads them, without building it.

    Building `Settings` imports and runs pydantic: more start-up time than the HTTP client
    itself. Anything unusual (a URL that is not plainly http(s), a variable spelled in
    another case) goes through `Settings`, whose validation says what is wrong."""
    spelled = {name for name in os.environ if name.upper() in _CONNECTION_VARIABLES}
    url = os.environ.get("INTEGRATOR_URL", DEFAULT_URL)
    if spelled <= set(_CONNECTION_VARIABLES) and _plain_http_url(url):
        return url, os.environ.get("INTEGRATOR_TOKEN")
    from integrator.settings import get_settings

    settings = get_settings()
    return settings.url, settings.token


def describe_error(response: httpx.Response) -> str:
    """One line: the error code, the message, and each bad field with its rule."""
    try:
        body = response.json()
    except ValueError:
        return (
            f"HTTP {response.status_code}: {response.text.strip()[:200] or response.reason_phrase}"
        )
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}"
    line = f"{body.get('message', '')} ({body.get('code', response.status_code)})"
    details = body.get("details") or []
    if details:
        parts = [f"{d.get('field')}: {d.get('message')} [{d.get('rule')}]" for d in details]
        line += " - " + "; ".join(parts)
    return line


def _tls_for(url: str) -> ssl.SSLContext | bool:
    """Verified TLS for https. A plain-http service, without a proxy, never does TLS: a context
    that trusts no one (it would refuse any TLS) saves loading the CA bundle at each start."""
    proxied = any(name.lower().endswith("_proxy") for name in os.environ)
    if urlsplit(url).scheme == "https" or proxied:
        return True
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class ApiClient:
    """Talks to the service with the caller's token; failures exit with the contract's codes."""

    def __init__(self, url: str, token: str | None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._has_token = bool(token)
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout, verify=_tls_for(url)
        )
        self.url = url

    @classmethod
    def from_environment(cls) -> ApiClient:
        """INTEGRATOR_URL and INTEGRATOR_TOKEN: what a command that only speaks HTTP needs."""
        return cls(*connection_from_environment())

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        ok: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send; answers outside 2xx (and outside `ok`) end the command with their exit code."""
        try:
            response = self._http.request(method, path, json=json_body, params=params)
        except httpx.TransportError as exc:
            fail(EXIT_UNAVAILABLE, f"service unreachable at {self.url}: {type(exc).__name__}")
        if response.is_success or response.status_code in ok:
            return response
        if response.status_code == 401 and not self._has_token:
            fail(EXIT_REFUSED, MISSING_TOKEN)
        fail(exit_code_for_status(response.status_code), describe_error(response))

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean).json()

    def post(self, path: str, body: Any = None) -> Any:
        response = self.request("POST", path, json_body=body if body is not None else {})
        return response.json() if response.content else None


def print_json(body: Any) -> None:
    """`--json`: the API's body, unchanged."""
    sys.stdout.write(json.dumps(body, indent=2, sort_keys=False) + "\n")
