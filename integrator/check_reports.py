"""A named check's report, as an outcome or a registration carries it: its status and every
attempt, held to the check contract's rule (`check_contract.ATTEMPTS_RULES`).

The published schema is that rule too: one branch per status (the attempts it may have, what
its last one shows), so a report built from the schema is one the service takes. Requests
key the reports by check name (`ChecksByName`), so that "each check listed once" is the
shape itself; the events list them, each with its name, in the order they ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from integrator import check_contract
from integrator.check_contract import ATTEMPTS_RULES, MAX_CHECK_ATTEMPTS, AttemptsRule
from integrator.text_rules import STORABLE_PATTERN, WHOLE_NUMBER, declared, storable

OUTPUT_MAX_LENGTH = 16_000  # a check's output tail (the worker keeps 4,000 bytes)


class CheckAttempt(BaseModel):
    """One run of a check on the candidate's merged commit (more with `--check-retries`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Absent when the worker killed the check (timeout or stop); negative: the signal that
    #: killed it (as Python reports it).
    exit_code: Annotated[StrictInt, Field(ge=-255, le=255), WHOLE_NUMBER] | None = None
    timed_out: StrictBool
    seconds: float = Field(ge=0, le=10**7, allow_inf_nan=False)
    output_tail: Annotated[
        StrictStr,
        StringConstraints(max_length=OUTPUT_MAX_LENGTH),
        AfterValidator(storable),
        declared(pattern=STORABLE_PATTERN),
    ] = ""


CheckName = Annotated[
    StrictStr,
    StringConstraints(
        max_length=check_contract.NAME_MAX_LENGTH, pattern=check_contract.NAME_PATTERN
    ),
]


class CheckReport(BaseModel):
    """One check on the candidate's merged commit: its status and every attempt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: check_contract.CheckStatus
    attempts: list[CheckAttempt] = Field(default_factory=list, max_length=MAX_CHECK_ATTEMPTS)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        attempts = [a.model_dump() for a in self.attempts]
        problem = check_contract.consistency_problem(self.status, attempts)
        if problem:
            raise ValueError(problem)
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The model's object schema, split into one branch per rule of `ATTEMPTS_RULES`."""
        schema = handler.resolve_ref_schema(handler(core_schema))
        attempt = handler.resolve_ref_schema(schema["properties"]["attempts"]["items"])
        whole = dict(schema)
        schema.clear()
        schema.update(
            title=whole["title"],
            description=whole.get("description", ""),
            oneOf=list(_branches(whole, attempt)),
        )
        return schema


class NamedCheckReport(CheckReport):
    """A check's report as an event records it: with its name."""

    name: CheckName


def _branches(whole: dict[str, Any], attempt: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The report's object schema once per distinct rule, with the statuses that share it."""
    statuses: dict[AttemptsRule, list[str]] = {}
    for status, rule in ATTEMPTS_RULES.items():
        statuses.setdefault(rule, []).append(status.value)
    for rule, names in statuses.items():
        attempts = whole["properties"]["attempts"]
        properties = {
            **whole["properties"],
            "status": {"type": "string", "enum": names},
            "attempts": _attempts(rule, attempts, attempt),
        }
        required = [*whole.get("required", []), *(["attempts"] if rule.ran else [])]
        yield {**whole, "properties": properties, "required": required}


def _attempts(
    rule: AttemptsRule, attempts: dict[str, Any], attempt: dict[str, Any]
) -> dict[str, Any]:
    """The attempts a status allows: none; at least one; or at least one whose last shows
    `rule.last` (said by length, since JSON Schema has no word for an array's last item)."""
    if not rule.ran:
        return {"type": "array", "maxItems": 0}
    if not rule.last:
        return {**attempts, "minItems": 1}
    last = {
        **attempt,
        "properties": {
            **attempt["properties"],
            **{name: {"const": value} for name, value in rule.last},
        },
        "required": sorted({*attempt.get("required", []), *dict(rule.last)}),
    }
    every = attempts["items"]
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_CHECK_ATTEMPTS,
        "anyOf": [
            {"minItems": n, "maxItems": n, "prefixItems": [*([every] * (n - 1)), last]}
            for n in range(1, MAX_CHECK_ATTEMPTS + 1)
        ],
    }


def _listed_once(checks: list[NamedCheckReport]) -> list[NamedCheckReport]:
    names = [check.name for check in checks]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"each check is listed once; listed more than once: {twice}")
    return checks


#: Every configured check of one outcome, each listed once, as the events record them.
CheckReports = Annotated[
    list[NamedCheckReport],
    Field(max_length=check_contract.MAX_CHECKS),
    AfterValidator(_listed_once),
    declared(uniqueItems=True),
]


class _KeyedByCheckName:
    """Publishes a dict keyed by check name as JSON Schema says it exactly: every key a check
    name (`propertyNames`, the key type's own length and pattern), every value a report
    (`additionalProperties`). Pydantic's `patternProperties` alone would let any other key
    through the schema."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        ((pattern, report),) = schema.pop("patternProperties").items()
        schema["propertyNames"] = {**schema.get("propertyNames", {}), "pattern": pattern}
        schema["additionalProperties"] = report
        return schema


#: Every configured check of one outcome (or registration), by name, in the order they ran:
#: a name is a key, so no check is listed twice.
ChecksByName = Annotated[
    dict[CheckName, CheckReport],
    Field(max_length=check_contract.MAX_CHECKS),
    _KeyedByCheckName(),
]


def listed(checks: dict[str, CheckReport]) -> list[dict[str, Any]]:
    """The reports of a request as the service keeps them: a list, each with its name."""
    return [
        {"name": name, **report.model_dump(mode="json", exclude_none=True)}
        for name, report in checks.items()
    ]
