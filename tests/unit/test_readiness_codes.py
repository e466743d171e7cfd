"""The readiness conditions' codes: what a waiting candidate's `unmet` says in events, the
API and `integrator status`, in the order the conditions are numbered."""

from __future__ import annotations

from integrator.readiness import Condition


def test_the_six_conditions_have_stable_codes_in_their_order() -> None:
    assert [c.value for c in Condition] == [
        "review_approved",
        "finalize_ready",
        "branch_pushed",
        "on_branch",
        "not_superseded",
        "not_on_main",
    ]
