"""The CLI's HTTP commands read INTEGRATOR_URL and INTEGRATOR_TOKEN without building `Settings`,
and must read them exactly as `Settings` does."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from integrator.cli.client import DEFAULT_URL, connection_from_environment
from integrator.settings import Settings, get_settings

URLS = [
    "http://127.0.0.1:8000",
    "https://integrator.example.test/base/",
    "http://[::1]:8000",
    "HTTP://host",
    "http://[::1",
    "http://host:port",
    "http://host:99999",
    "ftp://example.test",
    "127.0.0.1:8000",
    "http://",
    "http:///path",
    "",
    " http://host",
]


def test_the_default_url_is_the_settings_default() -> None:
    assert Settings.model_fields["url"].default == DEFAULT_URL


@pytest.mark.parametrize("url", URLS)
def test_each_url_reads_as_settings_reads_it(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same URL and token as `Settings`, or the same refusal (its ValidationError)."""
    monkeypatch.setenv("INTEGRATOR_URL", url)
    monkeypatch.setenv("INTEGRATOR_TOKEN", "itg_a_b")
    try:
        settings = get_settings()
    except ValidationError:
        with pytest.raises(ValidationError, match="url"):
            connection_from_environment()
        return
    assert connection_from_environment() == (settings.url, "itg_a_b")


def test_unset_variables_give_the_default_url_and_no_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("INTEGRATOR_URL", raising=False)
    monkeypatch.delenv("INTEGRATOR_TOKEN", raising=False)
    assert connection_from_environment() == (DEFAULT_URL, None)


def test_another_spelling_is_read_as_settings_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment names are case-insensitive for `Settings`: so they are here."""
    monkeypatch.delenv("INTEGRATOR_URL", raising=False)
    monkeypatch.delenv("INTEGRATOR_TOKEN", raising=False)
    monkeypatch.setenv("integrator_url", "http://elsewhere.test:9000")
    monkeypatch.setenv("Integrator_Token", "itg_c_d")
    settings = get_settings()
    assert connection_from_environment() == (settings.url, settings.token)
    assert settings.url == "http://elsewhere.test:9000"
