"""Which outcomes the service takes in which mode: real ones in cutover, predictions outside
it, and an `integrated` naming its registration (a landing authorized in cutover) in any."""

from __future__ import annotations

import pytest

from integrator.errors import TransitionRefused
from integrator.modes import Mode
from integrator.outcomes import Outcome, check_mode


@pytest.mark.parametrize("mode", [Mode.shadow, Mode.off])
def test_outside_cutover_a_real_outcome_is_refused_unless_it_reports_a_registered_landing(
    mode: Mode,
) -> None:
    check_mode(Outcome.integrated, mode, registered=True)
    check_mode(Outcome.would_integrate, mode)
    for outcome, registered in ((Outcome.integrated, False), (Outcome.blocked, True)):
        with pytest.raises(TransitionRefused, match="does not move main"):
            check_mode(outcome, mode, registered=registered)


def test_in_cutover_predictions_are_refused() -> None:
    check_mode(Outcome.integrated, Mode.cutover, registered=True)
    check_mode(Outcome.blocked, Mode.cutover)
    with pytest.raises(TransitionRefused, match="report integrated or blocked"):
        check_mode(Outcome.would_block, Mode.cutover)
