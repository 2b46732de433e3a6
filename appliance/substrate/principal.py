"""Who is asking: the principal every request, CLI command and job acts as.

A principal is resolved once per request (from a session cookie or an API token) and carries the
permissions its role holds in the tenant it is working in, so one guard can decide every route and
every layer can name the author of what it writes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

AccountKind = Literal["staff", "patient", "ministry_analyst", "regulator", "operator", "machine"]


@dataclass(frozen=True)
class Principal:
    account_id: uuid.UUID
    kind: AccountKind
    display_name: str
    # The one-identity subject behind the account (patients and staff); None for machine clients.
    subject_id: uuid.UUID | None = None
    # The facility the principal is working in right now, and its role there (None at appliance level).
    tenant: str | None = None
    role: str | None = None
    # The ward a ward-scoped membership is limited to (policies/access.toml `ward_scoped`), if any.
    ward: str | None = None
    # Whether the role's care relationships are limited to the principal's ward.
    ward_scoped: bool = False
    # How many days after an encounter ends it still makes a care relationship (policies/access.toml
    # `care_relationship`); None: every encounter does, however long ago.
    care_days: int | None = None
    permissions: frozenset[str] = field(default_factory=frozenset)
    session_id: uuid.UUID | None = None
    token_id: uuid.UUID | None = None

    def care_wanting(self) -> str:
        """What a care relationship would have taken, said to this person when refused one (both layers
        that keep the rule say the same): ' (no visit of theirs here is open or ended in the last 90 days)'."""
        where = " on your ward" if self.ward_scoped and self.ward else ""
        if self.care_days is None:
            return f" (they have had no visit here{where})"
        return f" (no visit of theirs here{where} is open or ended in the last {self.care_days} days)"

    @property
    def is_patient(self) -> bool:
        """A person on the portal reading their own record: their subject, no facility's role. What refuses them
        speaks in plain words and names facilities (a permission's name is for hospital IT, who keep it)."""
        return self.kind == "patient" and self.subject_id is not None and self.tenant is None

    def can(self, permission: str) -> bool:
        from appliance.substrate.policy import grants

        return grants(self.permissions, permission)

    @property
    def audit_agent(self) -> dict:
        """How the audit trail names this principal (no patient data)."""
        return {
            "account": str(self.account_id),
            "kind": self.kind,
            "role": self.role,
            "tenant": self.tenant,
            "via": "token" if self.token_id else "session",
        }
