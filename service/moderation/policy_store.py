"""Policies in the database: named, versioned (a change adds a version, none is overwritten),
assigned to API key names (``*``: the default, the open gateway's too). Every change is audited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.moderation.audit import iso_utc, record
from service.moderation.policy import PolicyRules
from service.store.schema import Policy, PolicyAssignment, PolicyVersion, utcnow

DEFAULT_KEY = "*"


class PolicyNotFound(LookupError):
    pass


@dataclass(frozen=True)
class StoredPolicy:
    name: str
    version: int
    rules: PolicyRules
    created_at: datetime | None = None
    created_by: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "rules": self.rules.model_dump(mode="json"),
            "created_at": iso_utc(self.created_at),
            "created_by": self.created_by,
        }


# No policy assigned and no default: allow everything, say so (policy "none", version 0).
NO_POLICY = StoredPolicy("none", 0, PolicyRules())


def _stored(policy: Policy, version: PolicyVersion) -> StoredPolicy:
    return StoredPolicy(
        policy.name, version.version, PolicyRules.model_validate(version.rules), version.created_at, version.created_by
    )


def _policy_row(session: Session, name: str) -> Policy:
    row = session.scalar(select(Policy).where(Policy.name == name))
    if row is None:
        raise PolicyNotFound(f"no policy named {name!r}")
    return row


def get_policy(session: Session, name: str, version: int | None = None) -> StoredPolicy:
    policy = _policy_row(session, name)
    wanted = policy.current_version if version is None else version
    row = session.scalar(
        select(PolicyVersion).where(PolicyVersion.policy_id == policy.id, PolicyVersion.version == wanted)
    )
    if row is None:
        raise PolicyNotFound(f"policy {name!r} has no version {wanted}")
    return _stored(policy, row)


def versions(session: Session, name: str) -> list[StoredPolicy]:
    policy = _policy_row(session, name)
    rows = session.scalars(
        select(PolicyVersion).where(PolicyVersion.policy_id == policy.id).order_by(PolicyVersion.version)
    )
    return [_stored(policy, row) for row in rows]


def put_policy(session: Session, name: str, rules: PolicyRules, actor: str) -> StoredPolicy:
    """Create the policy, or add a version to it (unchanged rules: no new version)."""
    policy = session.scalar(select(Policy).where(Policy.name == name))
    before = None
    if policy is None:
        policy = Policy(name=name, current_version=1)
        session.add(policy)
        session.flush()
    else:
        current = get_policy(session, name)
        if current.rules == rules:
            return current
        before = current.as_dict()
        policy.current_version += 1
        policy.updated_at = utcnow()
    row = PolicyVersion(
        policy_id=policy.id, version=policy.current_version, rules=rules.model_dump(mode="json"), created_by=actor
    )
    session.add(row)
    session.flush()
    stored = _stored(policy, row)
    record(session, actor, "policy.put", "policy", name, before, stored.as_dict())
    return stored


def list_policies(session: Session) -> list[dict[str, Any]]:
    assigned: dict[int, list[str]] = {}
    for row in session.scalars(select(PolicyAssignment).order_by(PolicyAssignment.key_name)):
        assigned.setdefault(row.policy_id, []).append(row.key_name)
    return [
        {"name": p.name, "current_version": p.current_version, "assigned_to": assigned.get(p.id, [])}
        for p in session.scalars(select(Policy).order_by(Policy.name))
    ]


def assignments(session: Session) -> dict[str, str]:
    """API key name -> policy name."""
    rows = session.execute(
        select(PolicyAssignment.key_name, Policy.name).join(Policy, Policy.id == PolicyAssignment.policy_id)
    )
    return {str(row[0]): str(row[1]) for row in rows}


def assign(session: Session, key_name: str, policy_name: str, actor: str) -> None:
    policy = _policy_row(session, policy_name)
    row = session.get(PolicyAssignment, key_name)
    before = assignments(session).get(key_name)
    if row is None:
        session.add(PolicyAssignment(key_name=key_name, policy_id=policy.id))
    else:
        row.policy_id, row.updated_at = policy.id, utcnow()
    record(
        session,
        actor,
        "policy.assign",
        "assignment",
        key_name,
        None if before is None else {"policy": before},
        {"policy": policy_name},
    )


def unassign(session: Session, key_name: str, actor: str) -> bool:
    row = session.get(PolicyAssignment, key_name)
    if row is None:
        return False
    before = assignments(session).get(key_name)
    session.delete(row)
    record(session, actor, "policy.unassign", "assignment", key_name, {"policy": before}, None)
    return True


def current_policies(session: Session) -> tuple[dict[str, StoredPolicy], dict[str, str]]:
    """Every policy's current version by name, and the assignments: what the gateway's cache holds."""
    rows = session.execute(
        select(Policy, PolicyVersion).join(
            PolicyVersion, (PolicyVersion.policy_id == Policy.id) & (PolicyVersion.version == Policy.current_version)
        )
    )
    return {policy.name: _stored(policy, version) for policy, version in rows}, assignments(session)
