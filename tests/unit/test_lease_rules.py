"""Pure parts of the lease: exact time conversions, timing validation, secrets kept out of repr."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from integrator.lease import Grant, datetime_of_ms, iso_of_ms
from integrator.settings import get_settings
from integrator.worker.lease_client import LeaseClientError, LeaseKeeper, ms_of


@pytest.mark.parametrize("ms", [0, 1, 999, 1_795_546_743_599, 1_700_000_000_123, 2**41 + 7])
def test_ms_times_convert_to_iso_and_back_exactly(ms: int) -> None:
    """Lease times are integer ms; no float rounding may move them by one at the edges."""
    iso = iso_of_ms(ms)
    assert iso is not None and iso.endswith("+00:00")
    assert ms_of(iso) == ms
    assert ms_of(datetime_of_ms(ms).isoformat().replace("+00:00", "Z")) == ms


def test_the_stress_and_test_timings_pass_the_startup_validation() -> None:
    """TTL 2 s, renew 0.5 s, deadline 1 s, margin 0.5 s is a valid (short) configuration."""
    settings = get_settings(
        lease_ttl_seconds=2,
        lease_renew_interval_seconds=0.5,
        lease_renew_deadline_seconds=1.0,
        authorize_margin_seconds=0.5,
    )
    assert settings.lease_ttl_seconds == 2


@pytest.mark.parametrize(
    ("ttl", "interval", "deadline", "margin", "complaint"),
    [
        (2.0, 0.5, 0.6, 0.5, "1.2 x"),  # deadline must exceed 1.2 x interval
        (2.0, 0.5, 1.6, 0.5, "AUTHORIZE_MARGIN"),  # ttl - deadline must leave the margin
    ],
)
def test_lease_timings_that_cannot_fence_are_refused_at_start(
    ttl: float, interval: float, deadline: float, margin: float, complaint: str
) -> None:
    """A renew deadline too close to the interval, or eating the margin, is a start-up error."""
    with pytest.raises(ValidationError, match=complaint):
        get_settings(
            lease_ttl_seconds=ttl,
            lease_renew_interval_seconds=interval,
            lease_renew_deadline_seconds=deadline,
            authorize_margin_seconds=margin,
        )


def test_a_grant_never_shows_its_token_in_repr() -> None:
    """Grants end up in logs and tracebacks; the token must not."""
    grant = Grant("k", "bot", 3, "s3cr3t-token", 1, 2, 1.0, None, 2)
    assert "s3cr3t-token" not in repr(grant) and "epoch=3" in repr(grant)


def test_a_keeper_needs_a_deadline_beyond_its_renew_interval() -> None:
    """A deadline at or under the interval would self-fence between two healthy renewals."""
    with httpx.Client() as http:
        with pytest.raises(ValueError, match="deadline"):
            LeaseKeeper(http, "bot", renew_interval=1.0, renew_deadline=1.0)
        idle = LeaseKeeper(http, "bot", renew_interval=1.0, renew_deadline=2.0)
        assert not idle.fenced_ok() and idle.epoch is None
        with pytest.raises(LeaseClientError):
            idle.grant_body()
