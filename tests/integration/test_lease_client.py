"""`LeaseKeeper` against the real app: acquire with retries, renew, self-fence, release."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from integrator.api.app import create_app
from integrator.settings import Settings
from integrator.worker.lease_client import LeaseChange, LeaseClientError, LeaseKeeper
from tests.lease_support import short_lease
from tests.support import TokenMaker


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(settings: Settings, tokens: TokenMaker) -> Iterator[TestClient]:
    with TestClient(create_app(short_lease(settings))) as client:
        client.headers["Authorization"] = f"Bearer {tokens('integrator')}"
        yield client


def keeper(client: httpx.Client, holder: str, **options: object) -> LeaseKeeper:
    values: dict[str, object] = {"renew_interval": 60.0, "renew_deadline": 120.0, **options}
    return LeaseKeeper(client, holder, **values)  # type: ignore[arg-type]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll with a deadline (for the keeper's own background renewals, not for a lease)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached in time")


def test_keeper_acquires_renews_in_the_background_and_releases(client: TestClient) -> None:
    """After acquire the keeper renews every interval by itself; release ends the grant."""
    changes: list[LeaseChange] = []
    bot = keeper(client, "bot-a", renew_interval=0.05, renew_deadline=1.0, on_change=changes.append)
    assert bot.acquire(timeout=5)
    assert bot.epoch == 1 and bot.fenced_ok()
    wait_until(lambda: sum(c.kind == "renewed" for c in changes) >= 2)
    assert bot.release()
    assert (bot.epoch, bot.fenced_ok()) == (None, False)
    kinds = [c.kind for c in changes]
    assert kinds[0] == "acquired" and kinds[-1] == "released"
    assert set(kinds[1:-1]) == {"renewed"}
    assert changes[-1].at_ms is not None and changes[0].at_ms is not None
    assert changes[-1].at_ms >= changes[0].at_ms
    assert client.get("/v1/lease").json()["held"] is False


def test_keeper_retries_while_the_lease_is_busy_and_gives_up_at_its_timeout(
    client: TestClient,
) -> None:
    """A busy lease is retried with jitter until the caller's timeout; then it is won."""
    first = keeper(client, "bot-a")
    assert first.acquire(timeout=5)
    attempts: list[str] = []
    client.event_hooks["request"] = [lambda request: attempts.append(request.url.path)]
    second = keeper(client, "bot-b", retry_interval=0.02)
    assert not second.acquire(timeout=0.3)
    assert attempts.count("/v1/lease/acquire") >= 3
    assert second.epoch is None
    assert first.release()
    assert second.acquire(timeout=5) and second.epoch == 2
    second.release()


def test_keeper_drops_a_grant_the_service_refuses_and_reports_it_lost(
    client: TestClient, tokens: TokenMaker
) -> None:
    """A renewal answered 409 means the grant is gone: no epoch, no self-fence, no token."""
    changes: list[LeaseChange] = []
    bot = keeper(client, "bot-a", on_change=changes.append)
    assert bot.acquire(timeout=5)
    forced = client.post(
        "/v1/lease/force-release",
        json={"reason": "test"},
        headers={"Authorization": f"Bearer {tokens('operator')}"},
    )
    assert forced.status_code == 200
    assert not bot.renew_once()
    assert (bot.epoch, bot.fenced_ok()) == (None, False)
    assert changes[-1].kind == "lost" and changes[-1].epoch == 1
    with pytest.raises(LeaseClientError):
        bot.grant_body()
    assert not bot.release()


def test_self_fence_counts_from_when_the_renewal_was_sent_not_answered(
    client: TestClient,
) -> None:
    """Past the renew deadline since the last successful *send*, fenced_ok() is False."""
    clock = FakeClock()

    def slow_answer(response: httpx.Response) -> None:
        clock.now += 0.8  # every answer arrives 0.8 s after it was sent

    client.event_hooks["response"] = [slow_answer]
    bot = keeper(
        client, "bot-a", renew_interval=0.5, renew_deadline=1.0, clock=clock, background=False
    )
    assert bot.acquire(timeout=5)  # sent at 100.0, answered at 100.8
    assert bot.fenced_ok()
    clock.now = 100.99
    assert bot.fenced_ok()
    clock.now = 101.0
    assert not bot.fenced_ok()  # the deadline runs from the send, whatever the answer time
    assert bot.renew_once()  # sent at 101.0, answered at 101.8
    assert bot.fenced_ok()
    clock.now = 102.05
    assert not bot.fenced_ok()  # 0.25 s after the answer, but 1.05 s after the send
    assert bot.grant_body()["epoch"] == 1  # the server still honours it: that is its fence
    bot.release()


def test_the_token_never_reaches_repr_or_logs(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The keeper hands the token only to fenced requests (`grant_body`)."""
    caplog.set_level(logging.DEBUG)
    bot = keeper(client, "bot-a")
    assert bot.acquire(timeout=5)
    token = bot.grant_body()["token"]
    assert bot.renew_once()
    assert token not in repr(bot) and token not in repr(bot._grant)
    bot.release()
    assert token not in caplog.text
