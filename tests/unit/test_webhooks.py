"""Webhook deliveries: the signed body, the retry waits, what a failure records."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from integrator import __version__
from integrator.settings import get_settings
from integrator.webhooks import (
    Claimed,
    describe_failure,
    retry_delay_seconds,
    signature,
)

CLAIMED = Claimed(
    id=7,
    delivery_id="0b6f2a3c-0000-4000-8000-000000000001",
    repository="app",
    kind="integrated",
    payload={"candidate_id": 3, "slug": "fix-login", "note": "café"},
    created_at=datetime(2026, 11, 26, 13, 20, 1, 123456, tzinfo=UTC),
    attempt=2,
)


def test_the_signature_is_the_hex_hmac_sha256_of_the_exact_body_bytes() -> None:
    """What a receiver computes with the documented five lines matches the header."""
    body = CLAIMED.body()
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature("s3cret", body) == expected
    assert CLAIMED.headers(body, "s3cret")["X-Integrator-Signature-256"] == expected
    assert signature("s3cret", body + b" ") != expected


def test_the_body_names_the_delivery_event_repository_time_attempt_and_data() -> None:
    document = json.loads(CLAIMED.body())
    assert document == {
        "id": CLAIMED.delivery_id,
        "event": "integrated",
        "repository": "app",
        "created_at": "2026-11-26T13:20:01.123456Z",
        "attempt": 2,
        "data": {"candidate_id": 3, "slug": "fix-login", "note": "café"},
    }


def test_headers_name_the_event_and_the_delivery_and_omit_the_signature_without_a_secret() -> None:
    body = CLAIMED.body()
    headers = CLAIMED.headers(body, None)
    assert headers == {
        "Content-Type": "application/json",
        "User-Agent": f"integrator-webhook/{__version__}",
        "X-Integrator-Event": "integrated",
        "X-Integrator-Delivery": CLAIMED.delivery_id,
    }
    assert "X-Integrator-Signature-256" in CLAIMED.headers(body, "k")


def test_retry_waits_double_from_the_base_up_to_the_cap_with_a_quarter_of_jitter() -> None:
    assert [retry_delay_seconds(n, 1.0, 3600.0, rand=0.5) for n in range(1, 6)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
    ]
    assert retry_delay_seconds(3, 1.0, 3600.0, rand=0.0) == 3.0
    assert retry_delay_seconds(3, 1.0, 3600.0, rand=1.0) == 5.0
    assert retry_delay_seconds(13, 1.0, 3600.0, rand=0.5) == 3600.0
    assert retry_delay_seconds(10_000, 1.0, 3600.0) == 3600.0  # no overflow however many


def test_a_failure_records_the_status_or_the_error_never_the_secret_or_the_url() -> None:
    assert describe_failure(500, None) == "HTTP 500"
    url = "https://user:pw@hooks.example/x"
    error = ConnectionError(f"cannot reach {url} with key k3y")
    text = describe_failure(None, error, "k3y", url)
    assert text == "ConnectionError: cannot reach … with key …"
    assert len(describe_failure(None, ValueError("x" * 1000))) == 300


@pytest.mark.parametrize(
    "url", ["ftp://hooks.example/x", "hooks.example/x", "http://", "http://[::1"]
)
def test_a_webhook_url_that_is_not_http_is_refused_at_start(url: str) -> None:
    with pytest.raises(ValidationError, match="http\\(s\\) URL") as raised:
        get_settings(webhook_url=url)
    assert url not in str(raised.value).split("input_value")[0]  # credentials stay out


def test_an_http_or_https_webhook_url_is_accepted_and_empty_means_none() -> None:
    assert get_settings(webhook_url="https://hooks.example/x").webhook_url
    assert get_settings(webhook_url="http://127.0.0.1:9/x").webhook_url
    assert get_settings(webhook_url="").webhook_url is None
