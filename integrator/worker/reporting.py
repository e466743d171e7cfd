"""The worker's outcomes as the service records them: what `judge` decides, sent fenced.

Shared by the serial loop and the speculative chain, so that a candidate is concluded the same
way whichever tested it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx

from integrator.worker.service_client import (
    EXIT_BAD_INPUT,
    EXIT_REFUSED,
    LeaseLost,
    ServiceClient,
    WorkerExit,
    code_of,
    message_of,
    refused,
)
from integrator.worker.trial import (
    Decision,
    Handed,
    Trial,
    judge,
    landed_unconfirmed,
    not_on_main,
    requeue,
)

log = logging.getLogger(__name__)

#: The service's answer to an `already_integrated` it cannot confirm on main.
NOT_ON_MAIN = "content_not_on_main"
#: The service's answer to a green outcome without every required check passed.
CHECKS_INCOMPLETE = "checks_incomplete"
#: The service's answer to an outcome it does not take now (among others: one of the wrong
#: kind for a mode that changed while the candidate was tried).
TRANSITION_REFUSED = "transition_refused"


class Reporter:
    """Sends outcomes for the holder of the grant `grant()` names."""

    def __init__(
        self,
        service: ServiceClient,
        *,
        fenced_ok: Callable[[], bool],
        grant: Callable[[], dict[str, Any]],
    ) -> None:
        self.service = service
        #: The worker's self-fence.
        self.fenced_ok = fenced_ok
        self.grant = grant

    def conclude(self, handed: Handed, trial: Trial) -> None:
        """Report what `judge` decides for `trial`; stop when the decision says so."""
        decision = judge(handed, trial)
        response = self._send(handed, decision)
        if decision.outcome == "integrated" and code_of(response) == TRANSITION_REFUSED:
            log.warning("the service does not confirm the landing of %s: %s; reporting its "
                        "content on main", handed.describe(), message_of(response))  # fmt: skip
            decision = landed_unconfirmed(trial, message_of(response))
            response = self._send(handed, decision)
        if decision.outcome == "already_integrated" and code_of(response) == NOT_ON_MAIN:
            log.warning("the service does not find %s on main: %s", handed.describe(),
                        message_of(response))  # fmt: skip
            decision = not_on_main(handed, trial)
            response = self._send(handed, decision)
        if code_of(response) == CHECKS_INCOMPLETE:
            # Green without a required check: give the candidate back, then stop loudly.
            self.give_back(handed, f"the worker's outcome was refused: {message_of(response)}")
            raise WorkerExit(
                EXIT_BAD_INPUT,
                f"outcome for {handed.describe()} refused: {message_of(response)}; the "
                "candidate was returned to the queue: configure this worker with every "
                "required check",
            )
        if code_of(response) == TRANSITION_REFUSED and not trial.landed:
            # An operator cut over (or rolled back) while the candidate was tried: a prediction
            # (or a real outcome) is the wrong kind now. Nothing moved main: the candidate goes
            # back to the queue, to be tried in the new mode; a give-back refused too stops.
            log.warning("%s for %s refused: %s; giving it back", decision.outcome,
                        handed.describe(), message_of(response))  # fmt: skip
            self.give_back(handed, f"the service refused {decision.outcome}: "
                           f"{message_of(response)}")  # fmt: skip
        else:
            self._accepted(handed, decision, response)
        if decision.stop:
            raise WorkerExit(EXIT_REFUSED, decision.reason or "stopped")

    def give_back(self, handed: Handed, reason: str) -> None:
        """The candidate goes back to the queue (`requeue`) with `reason`."""
        decision = requeue(reason)
        self._accepted(handed, decision, self._send(handed, decision))

    def _send(self, handed: Handed, decision: Decision) -> httpx.Response:
        # The self-fence: the last irreversible step this worker takes on its own word.
        if not self.fenced_ok():
            raise LeaseLost(
                f"self-fence: no renewal confirmed within the renew deadline; not reporting "
                f"{decision.outcome} for {handed.describe()}"
            )
        body = {**self.grant(), **decision.body()}
        return self.service.post(f"/v1/candidates/{handed.id}/outcome", body)

    def _accepted(self, handed: Handed, decision: Decision, response: httpx.Response) -> None:
        if response.status_code != 200:
            refused(response, f"outcome for {handed.describe()}")
        log.info("%s: %s", handed.describe(), decision.outcome)
