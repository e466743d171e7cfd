"""A cutover committed while a shadow prediction is being recorded (found by the fault test on
PostgreSQL): the prediction read the mode as shadow, cutover then requeued the predictions it
could see, and the late prediction left its candidate `predicted` in cutover for good. The
outcome now reads the mode under a share lock: one waits for the other."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrator import cutover, processing
from integrator.outcomes import Outcome, Report
from integrator.settings import Settings
from tests.api_world import ApiWorld as World
from tests.support import TokenMaker


@pytest.fixture
def world(settings: Settings, tmp_path: Path, tokens: TokenMaker) -> Iterator[World]:
    with World.serving(settings, tmp_path, tokens) as world:
        yield world


def test_a_prediction_racing_a_cutover_never_leaves_its_candidate_predicted(
    world: World,
) -> None:
    for path, body in (("/v1/cutover", {"reason": "first", "force": True}),
                       ("/v1/rollback", {"reason": "back to shadow"})):  # fmt: skip
        assert world.client.post(path, json=body, headers=world.operator).status_code == 200
    world.ready("late")
    holder = world.holder()
    handed = holder.next().json()
    state = world.client.app.state  # type: ignore[attr-defined]
    settings, repo, sessions = state.settings, state.repo, state.sessions
    cut: list[float] = []

    def cut_over() -> None:
        with sessions() as session, session.begin():
            cutover.cutover(session, settings, repo, by="ops", reason="go", force=True)
        cut.append(time.monotonic())

    with sessions() as session, session.begin():
        processing.report(
            session, settings, repo, epoch=holder.epoch, token=holder.token,
            candidate_id=handed["id"], outcome=Report(Outcome.would_integrate, attempt="a1"),
            by="bot",
        )  # fmt: skip
        operator = threading.Thread(target=cut_over)
        operator.start()
        time.sleep(1.0)  # the cutover commits now, unless it waits for this prediction
        committed = time.monotonic()
    operator.join(timeout=30)

    assert cut, "the cutover did not finish"
    status = world.client.get(f"/v1/candidates/{handed['id']}", headers=world.operator).json()
    assert status["status"] == "queued", (status["status"], cut[0] - committed)
