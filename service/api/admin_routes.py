"""The admin API (staff key with role ``admin``): policies (named, versioned), their assignment to
API keys (``*``: the default), and the audit log. A change reaches this process's next answer at
once and the other processes' within MEMOTION_POLICY_REFRESH_S."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from service.api.decisions import served_heads
from service.api.staff_deps import AdminDep, Route, current_moderator, in_session, staff_router
from service.core.errors import ApiError
from service.moderation import audit, policy_store
from service.moderation.policy import NAME_PATTERN, PolicyRules, check_rules

KEY_PATTERN = r"^(\*|[A-Za-z0-9._:-]{1,64})$"
PolicyName = Annotated[str, Path(pattern=NAME_PATTERN, description="The policy's name.")]
KeyName = Annotated[str, Path(pattern=KEY_PATTERN, description="An API key's name, or * for the default.")]


class StoredPolicyBody(BaseModel):
    name: str
    version: int
    rules: PolicyRules
    created_at: str | None = None
    created_by: str = ""


class PolicySummary(BaseModel):
    name: str
    current_version: int
    assigned_to: list[str]


class AssignBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: str = Field(pattern=NAME_PATTERN, description="The policy's name.")


class AuditEntryBody(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    entity: str
    entity_id: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


async def list_policies(request: Request, staff: AdminDep) -> list[PolicySummary]:
    rows = await in_session(request, policy_store.list_policies)
    return [PolicySummary.model_validate(r) for r in rows]


async def get_policy(
    request: Request,
    staff: AdminDep,
    name: PolicyName,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Default: the current version.")] = None,
) -> StoredPolicyBody:
    stored = await in_session(request, lambda s: policy_store.get_policy(s, name, version))
    return StoredPolicyBody.model_validate(stored.as_dict())


async def policy_versions(request: Request, staff: AdminDep, name: PolicyName) -> list[StoredPolicyBody]:
    rows = await in_session(request, lambda s: policy_store.versions(s, name))
    return [StoredPolicyBody.model_validate(r.as_dict()) for r in rows]


async def put_policy(request: Request, staff: AdminDep, name: PolicyName, rules: PolicyRules) -> StoredPolicyBody:
    """Create the policy or add a version (the same rules again: no new version)."""
    classifier = request.app.state.classifier
    if classifier is None:
        raise ApiError(503, "not_ready", "the models are not loaded yet; the rules are checked against them")
    try:
        check_rules(rules, served_heads(classifier))
    except ValueError as err:
        raise ApiError(422, "invalid_policy", str(err)) from err
    stored = await in_session(request, lambda s: policy_store.put_policy(s, name, rules, staff.name))
    current_moderator(request).policies.invalidate()
    return StoredPolicyBody.model_validate(stored.as_dict())


async def list_assignments(request: Request, staff: AdminDep) -> dict[str, str]:
    return await in_session(request, policy_store.assignments)


async def put_assignment(request: Request, staff: AdminDep, key_name: KeyName, body: AssignBody) -> dict[str, str]:
    await in_session(request, lambda s: policy_store.assign(s, key_name, body.policy, staff.name))
    current_moderator(request).policies.invalidate()
    return {"key": key_name, "policy": body.policy}


async def delete_assignment(request: Request, staff: AdminDep, key_name: KeyName) -> dict[str, str]:
    if not await in_session(request, lambda s: policy_store.unassign(s, key_name, staff.name)):
        raise ApiError(404, "not_found", f"no policy is assigned to {key_name!r}")
    current_moderator(request).policies.invalidate()
    return {"key": key_name, "policy": ""}


async def audit_log(
    request: Request,
    staff: AdminDep,
    entity: Annotated[str | None, Query(max_length=32, description="policy, assignment, review_item")] = None,
    entity_id: Annotated[str | None, Query(max_length=64)] = None,
    after: Annotated[int, Query(ge=0, le=2**62, description="Entries after this id (paging).")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AuditEntryBody]:
    rows = await in_session(
        request, lambda s: audit.entries(s, entity=entity, entity_id=entity_id, after_id=after, limit=limit)
    )
    return [AuditEntryBody.model_validate(r) for r in rows]


def admin_router() -> APIRouter:
    routes: list[Route] = [
        ("GET", "/policies", list_policies, "List policies", ()),
        ("GET", "/policies/{name}", get_policy, "A policy's rules", (404,)),
        ("PUT", "/policies/{name}", put_policy, "Create a policy or add a version", (409,)),
        ("GET", "/policies/{name}/versions", policy_versions, "Every version of a policy", (404,)),
        ("GET", "/assignments", list_assignments, "API key -> policy", ()),
        ("PUT", "/assignments/{key_name}", put_assignment, "Assign a policy to an API key (* : the default)", (404,)),
        ("DELETE", "/assignments/{key_name}", delete_assignment, "Remove an API key's assignment", (404,)),
        ("GET", "/audit", audit_log, "The audit log", ()),
    ]
    return staff_router("/v1/admin", "admin", routes)
