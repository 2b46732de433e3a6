"""Helpers for the audit trail's tests: a tenant with a known log, and tampering as a DBA would do it.

Tampering is real: SQL run as the schema owner (the appliance's login role) with the append-only
triggers switched off for the statement's transaction, which is exactly what an administrator with
the database password can do. Nothing is mocked.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from appliance.substrate import audit
from appliance.substrate.db import Database, tenant_schema
from appliance.substrate.principal import Principal

AUDIT_TABLES = ("audit_event", "audit_position", "audit_checkpoint", "audit_key")


def clinician(tenant: str, name: str = "Dr Amina Otieno", role: str = "clinician") -> Principal:
    return Principal(account_id=uuid.uuid4(), kind="staff", display_name=name, tenant=tenant, role=role,
                     permissions=frozenset({"clinical.chart.read"}))


@dataclass
class AuditedTenant:
    slug: str
    patients: list[str]

    @property
    def schema(self) -> str:
        return f'"{tenant_schema(self.slug)}"'


def fill(db: Database, slug: str, batches: tuple[int, ...] = (8, 8, 8), *, patients: list[str] | None = None,
         principal: Principal | None = None) -> list[str]:
    """Append events in batches, one checkpoint after each; returns the patients referenced."""
    patients = patients or [str(uuid.uuid4()) for _ in range(3)]
    who = principal or clinician(slug)
    n = 0
    for batch in batches:
        for _ in range(batch):
            with db.tenant(slug) as conn:
                audit.append(conn, tenant=slug, principal=who, event_type="chart.read", action="R",
                             patient_id=patients[n % len(patients)], detail={"n": n})
            n += 1
        assert audit.checkpoint(db, slug) is not None
    return patients


def tamper(db: Database, schema: str, *statements: str, tables: tuple[str, ...] = AUDIT_TABLES) -> None:
    """Run statements as the owner with the append-only triggers off, then put the triggers back."""
    with db.control() as conn:
        for table in tables:
            conn.exec_driver_sql(f"ALTER TABLE {schema}.{table} DISABLE TRIGGER USER")
        for statement in statements:
            conn.execute(sa.text(statement))  # text(): a % in the SQL is an operator, not a placeholder
        for table in tables:
            conn.exec_driver_sql(f"ALTER TABLE {schema}.{table} ENABLE TRIGGER USER")


def flip(column: str, offset: int = 3) -> str:
    """SQL that flips one bit of one byte of a bytea column."""
    return f"set_byte({column}, {offset}, get_byte({column}, {offset}) # 1)"


def position_of(db: Database, schema: str, seq: int) -> int:
    with db.control() as conn:
        return conn.execute(sa.text(f"SELECT position FROM {schema}.audit_position WHERE seq = :s"),
                            {"s": seq}).scalar_one()
