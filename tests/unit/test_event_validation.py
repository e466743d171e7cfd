"""Canonical events: exact types, required fields, field types."""

from __future__ import annotations

from typing import Any

import pytest

from integrator.errors import InvalidInput
from integrator.events import EVENT_TYPES, natural_key, string_fields, validate_fields
from integrator.refnames import BRANCH_MAX_LENGTH, SLUG_MAX_LENGTH
from tests.builders import branch_pushed, finalize_ready, review_approved

SHA = "0123456789abcdef0123456789abcdef01234567"

VALID: dict[str, dict[str, Any]] = {
    "review_approved": review_approved()["fields"],
    "finalize_ready": finalize_ready("feat-1", "feat/one", SHA)["fields"],
    "branch_pushed": branch_pushed("feat/one", SHA)["fields"],
    "integration_blocked": {
        "slug": "feat-1",
        "branch": "feat/one",
        "sha": SHA,
        "conflict_evidence": [{"kind": "conflict", "path": "a.txt"}],
        "diagnostics": ["a.txt conflicts with main"],
        "next_action": "rebase feat/one on main, then run `integrator resume feat-1`",
        "blocked_at": "2026-11-24T12:00:00Z",
        "attempt": "b2f7",
    },
    "integration_completed": {
        "slug": "feat-1",
        "branch": "feat/one",
        "sha": SHA,
        "main_sha": "f" * 40,
        "completed_at": "2026-11-24T12:00:00Z",
    },
}


def rejected_fields(type_name: str, fields: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidInput) as caught:
        validate_fields(type_name, fields)
    return {d.field: d.rule for d in caught.value.details}


@pytest.mark.parametrize("type_name", sorted(EVENT_TYPES))
def test_every_type_accepts_its_valid_fields(type_name: str) -> None:
    """The builders' events are valid as they stand."""
    assert validate_fields(type_name, VALID[type_name])


@pytest.mark.parametrize(
    ("type_name", "field"),
    [(t, f) for t in sorted(EVENT_TYPES) for f in sorted(VALID[t])],
)
def test_each_required_field_missing_is_named(type_name: str, field: str) -> None:
    """Dropping any required field is refused, naming that field and the rule `missing`."""
    fields = {k: v for k, v in VALID[type_name].items() if k != field}
    assert rejected_fields(type_name, fields) == {f"fields.{field}": "missing"}


def test_every_bad_field_is_reported_at_once() -> None:
    """Bad sha, timestamp, branch, int and an unknown field come back together."""
    fields = {
        **VALID["finalize_ready"],
        "sha": "xyz",
        "ready_at": "yesterday",
        "branch": "bad..name",
        "colour": "blue",
    }
    problems = rejected_fields("finalize_ready", fields)
    assert problems == {
        "fields.sha": "value_error",
        "fields.ready_at": "value_error",
        "fields.branch": "value_error",
        "fields.colour": "extra_forbidden",
    }


@pytest.mark.parametrize("sha", ["abc", "g" * 40, "a" * 41, "a" * 63, ""])
def test_sha_must_be_40_or_64_hex(sha: str) -> None:
    """Object names are SHA-1 (40) or SHA-256 (64) hex."""
    fields = {**VALID["branch_pushed"], "sha": sha}
    assert "fields.sha" in rejected_fields("branch_pushed", fields)


def test_sha256_names_and_upper_case_are_accepted_and_normalised() -> None:
    """A 64-hex name is valid; hex is stored lower case."""
    clean = validate_fields("branch_pushed", {**VALID["branch_pushed"], "sha": "AB" * 32})
    assert clean["sha"] == "ab" * 32


@pytest.mark.parametrize("stamp", ["2026-11-24T12:00:00", "2026-11-24", "noon", "1732449600"])
def test_timestamps_without_offset_are_refused(stamp: str) -> None:
    """A time without an offset is ambiguous."""
    fields = {**VALID["review_approved"], "approved_at": stamp}
    assert "fields.approved_at" in rejected_fields("review_approved", fields)


def test_timestamps_are_normalised_to_utc() -> None:
    """Offsets are kept as instants: stored in UTC."""
    clean = validate_fields(
        "review_approved", {**VALID["review_approved"], "approved_at": "2026-11-24T14:00:00+02:00"}
    )
    assert clean["approved_at"] == "2026-11-24T12:00:00+00:00"


@pytest.mark.parametrize("value", [0, -1, "1", 1.5, True])
def test_review_round_is_an_integer_of_at_least_one(value: Any) -> None:
    """review_round is an int ≥ 1; strings and floats are not silently coerced."""
    fields = {**VALID["review_approved"], "review_round": value}
    assert "fields.review_round" in rejected_fields("review_approved", fields)


def test_text_fields_refuse_numbers() -> None:
    """A slug is text: the JSON number 1234 is not a slug (the CLI sends "1234")."""
    fields = {**VALID["review_approved"], "slug": 1234}
    assert rejected_fields("review_approved", fields) == {"fields.slug": "string_type"}


def test_unknown_type_is_refused_naming_the_type_field() -> None:
    """Only the canonical types exist."""
    with pytest.raises(InvalidInput) as caught:
        validate_fields("review_rejected", {})
    assert caught.value.details[0].field == "type"


def test_blocked_events_need_non_empty_evidence_and_diagnostics() -> None:
    """integration_blocked without evidence or diagnostics explains nothing."""
    fields = {**VALID["integration_blocked"], "conflict_evidence": [], "diagnostics": []}
    problems = rejected_fields("integration_blocked", fields)
    assert set(problems) == {"fields.conflict_evidence", "fields.diagnostics"}


def test_natural_keys_follow_the_design_table() -> None:
    """finalize_ready is keyed by (slug, branch, sha); branch_pushed by the caller's key."""
    fin = validate_fields("finalize_ready", VALID["finalize_ready"])
    assert natural_key("finalize_ready", fin, "ignored") == f'["feat-1","feat/one","{SHA}"]'
    pushed = validate_fields("branch_pushed", VALID["branch_pushed"])
    assert natural_key("branch_pushed", pushed, "push-7:refs/heads/feat/one") == (
        "key:push-7:refs/heads/feat/one"
    )
    assert natural_key("branch_pushed", pushed, None).startswith("content:")


def test_string_fields_tell_the_cli_what_stays_text() -> None:
    """slug and ids are text; review_round is converted as JSON."""
    assert "slug" in string_fields("review_approved")
    assert "review_round" not in string_fields("review_approved")


def test_field_limits_are_the_columns_lengths() -> None:
    """What validation lets through, the database can hold: the limits are the columns'."""
    from integrator import events
    from integrator.models import Candidate, Event

    def length(column: Any) -> int:
        return int(column.property.columns[0].type.length)

    assert events.NAME_MAX_LENGTH == length(Event.repository) == length(Event.actor)
    assert SLUG_MAX_LENGTH == length(Event.slug) == length(Candidate.slug)
    assert BRANCH_MAX_LENGTH == length(Event.branch) == length(Candidate.branch)
    assert length(Event.natural_key) == events.NATURAL_KEY_MAX_LENGTH


def test_a_natural_key_longer_than_its_column_is_stored_as_its_hash() -> None:
    """Long identities in escaped JSON still give one stable key of bounded length."""
    fields = validate_fields(
        "review_approved", {**VALID["review_approved"], "reviewer_session_id": "é" * 200}
    )
    key = natural_key("review_approved", fields, None)
    assert key.startswith("sha256:") and len(key) == 7 + 64
    assert key == natural_key("review_approved", dict(fields), None)


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("slug", "a/b", "slug"),
        ("slug", "s" * 201, "string_too_long"),
        ("reviewer_session_id", "r\nforged", "printable"),
        ("reviewer_session_id", "r" * 201, "string_too_long"),
        ("review_round", 2**63, "less_than_equal"),
        ("approved_at", "0001-01-01T00:30:00+01:00", "value_error"),
    ],
)
def test_values_the_database_cannot_hold_are_refused_by_rule(
    field: str, value: Any, rule: str
) -> None:
    """Lengths, the slug rule, one-line identities, BIGINT and UTC range are field rules."""
    fields = {**VALID["review_approved"], field: value}
    assert rejected_fields("review_approved", fields) == {f"fields.{field}": rule}


def test_a_whole_number_written_with_a_point_is_an_integer_as_json_schema_says() -> None:
    """The published schema says `integer`, which JSON Schema reads as any number without a
    fraction: `2.0` is the round 2 (schemathesis sent `486.0` and got a 422)."""
    clean = validate_fields("review_approved", {**VALID["review_approved"], "review_round": 2.0})
    assert clean["review_round"] == 2 and isinstance(clean["review_round"], int)
