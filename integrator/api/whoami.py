"""GET /v1/whoami: the caller's token name and role."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from integrator.api.deps import Reader
from integrator.api.strict_body import StrictJSONRoute

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["auth"])


class WhoAmI(BaseModel):
    name: str
    role: str


@router.get("/whoami")
def whoami(caller: Reader) -> WhoAmI:
    return WhoAmI(name=caller.name, role=caller.role.value)
