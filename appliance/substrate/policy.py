"""Access policy as data: `policies/access.toml` read into role → permission patterns.

Rules have stable ids (ACC-NNN) so an audit event or a refusal can cite the rule that decided.
A permission pattern ending in `*` grants a family (`clinical.*`).
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from appliance.substrate.problems import validator_message

PERMISSION_PATTERN = r"^[a-z_]+(\.[a-z_]+){0,2}(\.\*)?$|^[a-z_]+\.\*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoleSpec(_Strict):
    scope: str = Field(pattern="^(tenant|appliance)$")
    mfa: bool
    description: str
    # A ward-scoped role sees the charts of patients with an encounter in its member's ward (when the
    # membership names one); other roles see patients with an encounter anywhere in the facility.
    ward_scoped: bool = False


class Rule(_Strict):
    id: str = Field(pattern=r"^ACC-\d{3}$")
    description: str
    roles: list[str]
    permissions: list[str]


class CareRelationship(_Strict):
    # How long after an encounter at the facility ends (finished) the patient is still in the care of its staff,
    # for a chart opened without break-the-glass; an open encounter (planned, arrived, in progress) always is.
    # Unset: every encounter the patient ever had makes one, for as long as the record lasts.
    days_after_encounter: int | None = Field(default=None, ge=1, le=3650)


class PolicyFile(_Strict):
    roles: dict[str, RoleSpec]
    rule: list[Rule]
    care_relationship: CareRelationship = CareRelationship()


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class AccessPolicy:
    roles: dict[str, RoleSpec]
    rules: tuple[Rule, ...]
    care_days: int | None = None  # `CareRelationship.days_after_encounter`

    def permissions_of(self, role: str) -> frozenset[str]:
        return frozenset(p for rule in self.rules if role in rule.roles for p in rule.permissions)

    def is_tenant_role(self, role: str) -> bool:
        return role in self.roles and self.roles[role].scope == "tenant"

    def is_ward_scoped(self, role: str | None) -> bool:
        return role in self.roles and self.roles[role].ward_scoped

    def requires_mfa(self, role: str) -> bool:
        return self.roles[role].mfa

    def rule_granting(self, role: str, permission: str) -> str | None:
        for rule in self.rules:
            if role in rule.roles and any(permission_matches(p, permission) for p in rule.permissions):
                return rule.id
        return None


def permission_matches(pattern: str, permission: str) -> bool:
    if pattern.endswith(".*"):
        return permission.startswith(pattern[:-1])
    return pattern == permission


def grants(patterns: frozenset[str], permission: str) -> bool:
    return permission in patterns or any(permission_matches(p, permission) for p in patterns if p.endswith("*"))


@functools.cache
def load_policy(path: Path) -> AccessPolicy:
    try:
        parsed = PolicyFile.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{path}: {exc}") from exc
    except ValidationError as exc:
        # Each fault on one line, by its place in the file ("rule.3.roles"), not pydantic's report of several lines
        # with links, which `healthos check` would print as one file's line.
        raise PolicyError(f"{path}: " + "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(file)'}: {validator_message(e['msg'])}" for e in exc.errors()
        )) from exc
    ids = [rule.id for rule in parsed.rule]
    if len(set(ids)) != len(ids):
        raise PolicyError(f"{path}: rule ids must be unique")
    for rule in parsed.rule:
        unknown = set(rule.roles) - set(parsed.roles)
        if unknown:
            raise PolicyError(f"{path}: rule {rule.id} names unknown roles {sorted(unknown)}")
    return AccessPolicy(roles=parsed.roles, rules=tuple(parsed.rule),
                        care_days=parsed.care_relationship.days_after_encounter)
