"""The hooks' endpoints: POST /v1/push-checks, /v1/push-reports, /v1/push-checks/spool."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StringConstraints

from integrator import guard, scoring
from integrator.api.deps import Caller, SessionDep, SettingsDep, require
from integrator.api.events import Repo
from integrator.api.schemas import ONE_LINE, PRINTABLE, Name
from integrator.api.strict_body import StrictJSONRoute
from integrator.events import MAX_INTEGER
from integrator.gitops import SHA_PATTERN
from integrator.policy import Update
from integrator.tokens import Role

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["guard"])

Hook = Annotated[Caller, Depends(require(Role.hook))]

ObjectName = Annotated[str, Field(pattern=SHA_PATTERN)]
#: Any ref git may send: the branch column's limit applies to what is recorded as a branch.
RefName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=1024),
    ONE_LINE,
    PRINTABLE,
]
Short = Annotated[str, StringConstraints(min_length=1, max_length=32), ONE_LINE, PRINTABLE]
#: The name of a host's environment variable (GL_ID, GITEA_PUSHER_ID, GITHUB_VIA).
VariableName = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")]
#: What the host says about the pusher beyond the name: recorded, never authority.
#: The schema says names other than the pattern's are refused (`patternProperties` alone
#: would admit any other key with any value).
IdentityDetail = Annotated[
    dict[VariableName, Name],
    Field(max_length=8, json_schema_extra={"additionalProperties": False}),
]
HookInstance = Annotated[
    str,
    StringConstraints(min_length=1, max_length=500),
    ONE_LINE,
    PRINTABLE,
]


class UpdateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ref: RefName
    resolved_ref: RefName
    old: ObjectName
    new: ObjectName
    fast_forward: bool | None = None
    first_parent: bool | None = None

    def facts(self) -> Update:
        return Update(
            self.ref, self.resolved_ref, self.old, self.new, self.fast_forward, self.first_parent
        )


class PushIn(BaseModel):
    """What a hook knows about one push; identity is attribution, never authority."""

    model_config = ConfigDict(extra="ignore")

    repository: Name
    hook_instance: HookInstance
    hook_version: Short | None = None
    pusher: Name | None = None
    identity_source: Short = "none"
    identity_detail: IdentityDetail = Field(default_factory=dict)
    registration_nonce: Name | None = None
    updates: list[UpdateIn] = Field(max_length=10_000)
    #: Updates of unprotected refs the hook counted but did not send (a huge push sends its
    #: protected updates and a sample of the rest; the policy decides on protected refs).
    updates_left_out: Annotated[int, Field(ge=0, le=MAX_INTEGER)] = 0
    #: How long this hook instance's previous push check took, as the hook timed it.
    previous_round_trip_ms: StrictFloat | None = None

    def request(self) -> guard.PushRequest:
        return guard.PushRequest(
            repository=self.repository,
            hook_instance=self.hook_instance,
            hook_version=self.hook_version,
            pusher=self.pusher,
            identity_source=self.identity_source,
            identity_detail=dict(self.identity_detail),
            registration_nonce=self.registration_nonce,
            updates=tuple(u.facts() for u in self.updates),
            updates_left_out=self.updates_left_out,
        )


class UpdateVerdictOut(BaseModel):
    ref: str
    resolved_ref: str
    allow: bool
    would_reject: bool
    reason_code: str


class PushVerdictOut(BaseModel):
    mode: str
    mode_version: int
    protected_refs: list[str]
    allow: bool
    reason_code: str
    messages: list[str]
    updates: list[UpdateVerdictOut]


@router.post("/push-checks", response_model=PushVerdictOut)
def push_check(
    body: PushIn, request: Request, session: SessionDep, settings: SettingsDep, _hook: Hook
) -> Response:
    """One verdict per update and one for the push."""
    with session.begin():
        answer = guard.check_push(session, settings, body.request())
    request.app.state.metrics.observe_hook_round_trip(body.previous_round_trip_ms)
    verdict = answer.verdict
    out = PushVerdictOut(
        mode=answer.mode.mode.value,
        mode_version=answer.mode.version,
        protected_refs=list(answer.protected_refs),
        allow=verdict.allow,
        reason_code=verdict.reason.value,
        messages=answer.messages,
        updates=[
            UpdateVerdictOut(
                ref=v.update.ref,
                resolved_ref=v.update.resolved_ref,
                allow=v.allow,
                would_reject=v.would_reject,
                reason_code=v.reason.value,
            )
            for v in verdict.updates
        ],
    )
    # Built from typed values and serialized once: FastAPI's own pass over a returned model
    # dumps it, validates it again and dumps it a second time, on every push.
    return Response(out.model_dump_json(), media_type="application/json")


class SkippedOut(BaseModel):
    """An update that was not recorded, and why (the field and the rule it broke)."""

    ref: str
    field: str
    rule: str
    message: str


class PushReported(BaseModel):
    """Each update is validated on its own: the valid ones are recorded (or were already,
    `duplicates`); one our rules refuse (say `refs/heads/-x`, which git accepts) does not
    fail the report but comes back in `skipped`, present only when not empty. The answer
    is 200 either way: retrying a skipped update cannot succeed."""

    recorded: int
    duplicates: int
    skipped: list[SkippedOut] | None = None


@router.post("/push-reports", response_model_exclude_none=True)
def push_report(
    body: PushIn, session: SessionDep, settings: SettingsDep, repo: Repo, caller: Hook
) -> PushReported:
    """post-receive: branch_pushed for every branch that moved (retries are duplicates);
    when a protected ref moved, score the shadow predictions that landed with it.
    Updates our rules refuse are skipped, each with its reason; the rest are kept."""
    repo.refresh()
    request = body.request()
    with session.begin():
        reported = guard.report_pushes(
            session, repo, request, protected_refs=settings.protected_refs, actor=caller.name
        )
    if any(u.resolved_ref in settings.protected_refs for u in request.updates):
        scoring.score_predictions(session, settings, repo, by=caller.name)
    skipped = [SkippedOut(**asdict(s)) for s in reported.skipped]
    return PushReported(
        recorded=reported.recorded, duplicates=reported.duplicates, skipped=skipped or None
    )


class SpooledIn(PushIn):
    """A verdict the hook gave alone; of its extra keys only `decided_at` is stored as sent."""

    decided_at: Name | None = None


class SpoolIn(BaseModel):
    items: list[dict[str, Any]] = Field(max_length=10_000)


class SpoolRefused(BaseModel):
    """One spooled item the service cannot take, by its place in the upload, and why."""

    index: int
    spool_id: str | None
    message: str


class SpoolAccepted(BaseModel):
    """`refused` lists the invalid items, so that the hook keeps them aside for an operator
    instead of losing them (retrying cannot succeed)."""

    accepted: int
    duplicates: int
    invalid: int
    refused: list[SpoolRefused] = Field(default_factory=list)


@router.post("/push-checks/spool")
def upload_spool(
    body: SpoolIn, session: SessionDep, settings: SettingsDep, _hook: Hook
) -> SpoolAccepted:
    """Verdicts the hook gave while the service was away, and break-glass uses."""
    accepted = duplicates = 0
    refused: list[SpoolRefused] = []
    with session.begin():
        for index, item in enumerate(body.items):
            try:
                request = SpooledIn.model_validate(item).request()
            except ValueError as exc:
                spool_id = item.get("spool_id")
                refused.append(
                    SpoolRefused(
                        index=index,
                        spool_id=spool_id[:200] if isinstance(spool_id, str) else None,
                        message=str(exc)[:2000],
                    )
                )
                continue
            if guard.record_spooled(session, settings, item, request):
                accepted += 1
            else:
                duplicates += 1
    return SpoolAccepted(
        accepted=accepted, duplicates=duplicates, invalid=len(refused), refused=refused
    )
