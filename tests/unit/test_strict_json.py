"""Bodies are read strictly: a name given twice in one object is refused, wherever it is."""

from __future__ import annotations

import json
import pkgutil
from importlib import import_module

import pytest
from fastapi import APIRouter

import integrator.api
from integrator.api.strict_body import StrictJSONRoute
from integrator.strict_json import loads


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ('{"a": 1, "a": 1}', "a"),
        ('{"checks": {"unit": {"status": "passed"}, "unit": {"status": "failed"}}}', "unit"),
        ('[{"ref": "x"}, {"ref": "y", "new": 1, "ref": "z"}]', "ref"),
    ],
)
def test_a_name_given_twice_in_one_object_is_a_decode_error_naming_it(text: str, name: str) -> None:
    with pytest.raises(json.JSONDecodeError) as refused:
        loads(text.encode())
    assert refused.value.msg == f"the name {name!r} appears twice in one object"


def test_the_same_name_in_different_objects_is_fine_and_order_is_kept() -> None:
    text = (
        b'{"unit": {"status": "passed"}, "lint": {"status": "passed"}, "x": [{"a": 1}, {"a": 2}]}'
    )
    assert loads(text) == json.loads(text)
    assert list(loads(text)) == ["unit", "lint", "x"]


def test_malformed_json_is_still_the_parsers_own_error() -> None:
    with pytest.raises(json.JSONDecodeError, match="Expecting value"):
        loads(b'{"a": }')


def test_every_router_of_the_service_reads_its_body_strictly() -> None:
    """A router added without the strict route class would collapse repeated names again."""
    routers = {
        module.name: getattr(import_module(f"integrator.api.{module.name}"), "router", None)
        for module in pkgutil.iter_modules(integrator.api.__path__)
    }
    routers = {name: router for name, router in routers.items() if isinstance(router, APIRouter)}
    assert len(routers) >= 19
    assert [n for n, r in routers.items() if r.route_class is not StrictJSONRoute] == []
