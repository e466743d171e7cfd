"""Settings: one object, validated at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from integrator.settings import get_settings


def test_defaults_match_the_design() -> None:
    """A fresh install uses the design's lease timing and protects only main."""
    settings = get_settings()
    assert settings.lease_ttl_seconds == 120
    assert settings.lease_renew_interval_seconds == 30
    assert settings.lease_renew_deadline_seconds == 60
    assert settings.authorize_margin_seconds == 15
    assert settings.registration_ttl_seconds == 300
    assert settings.protected_refs == ["refs/heads/main"]
    assert settings.identities == ["integrator-bot"]
    assert settings.database_url == "sqlite:///./integrator.db"


def test_comma_separated_lists_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """INTEGRATOR_IDENTITIES and INTEGRATOR_PROTECTED_REFS are comma-separated."""
    monkeypatch.setenv("INTEGRATOR_IDENTITIES", "bot-a, bot-b")
    monkeypatch.setenv("INTEGRATOR_PROTECTED_REFS", "refs/heads/main,refs/heads/release")
    settings = get_settings()
    assert settings.identities == ["bot-a", "bot-b"]
    assert settings.protected_refs == ["refs/heads/main", "refs/heads/release"]


def test_renew_deadline_must_exceed_one_point_two_renew_intervals() -> None:
    """A deadline too close to the interval leaves no room for one late renewal."""
    with pytest.raises(ValidationError, match=r"1\.2 x"):
        get_settings(lease_renew_interval_seconds=10, lease_renew_deadline_seconds=12)


def test_ttl_minus_renew_deadline_must_cover_the_authorize_margin() -> None:
    """A holder past its renew deadline must still have the margin left on its lease."""
    with pytest.raises(ValidationError, match="AUTHORIZE_MARGIN"):
        get_settings(lease_ttl_seconds=70, lease_renew_deadline_seconds=60)


def test_fractional_seconds_allow_short_test_leases() -> None:
    """Tests run with a TTL of a few seconds."""
    settings = get_settings(
        lease_ttl_seconds=3,
        lease_renew_interval_seconds=0.5,
        lease_renew_deadline_seconds=1,
        authorize_margin_seconds=0.5,
    )
    assert settings.lease_ttl_seconds == 3


def test_protected_refs_must_be_full_ref_names() -> None:
    """`main` alone is ambiguous; the policy matches full ref names."""
    with pytest.raises(ValidationError, match="full ref name"):
        get_settings(protected_refs=["main"])


@pytest.mark.parametrize(
    ("repo", "expected"),
    [
        ("/srv/git/widgets.git", "widgets"),
        ("https://git.example/acme/app.git/", "app"),
        (None, "default"),
    ],
)
def test_repository_name_defaults_to_the_basename_of_the_repo(
    repo: str | None, expected: str
) -> None:
    """INTEGRATOR_REPOSITORY defaults to the basename of INTEGRATOR_REPO without .git."""
    settings = get_settings(repo=repo)
    assert settings.repository_name == expected
    assert settings.lease_key == f"integration/{expected}/main"


@pytest.mark.parametrize("refs", ["", " , ", "refs/heads/a..b"])
def test_protected_refs_need_at_least_one_valid_full_ref_name(
    refs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty list would protect nothing; a malformed ref would never match."""
    monkeypatch.setenv("INTEGRATOR_PROTECTED_REFS", refs)
    with pytest.raises(ValidationError, match="full ref name"):
        get_settings()


@pytest.mark.parametrize(
    "url", ["mysql://root@localhost/db", "postgresql+psycopg2://u@h/d", "nonsense"]
)
def test_only_sqlite_and_postgresql_urls_are_accepted(url: str) -> None:
    """The supported schemes are named instead of a driver's import error."""
    with pytest.raises(ValidationError, match="sqlite:///PATH or postgresql://"):
        get_settings(database_url=url)


@pytest.mark.parametrize("url", ["http://[::1", "ftp://host", "localhost:8000", "http://h:99999"])
def test_the_service_url_must_be_an_http_url(url: str) -> None:
    """A malformed INTEGRATOR_URL is a configuration error, not a traceback later."""
    with pytest.raises(ValidationError, match="url"):
        get_settings(url=url)
