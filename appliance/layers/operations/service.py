"""Operations services: keeping wards and beds in line with the tenant file, and reading them."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from appliance.layers.operations.models import bed, ward
from appliance.substrate.tenancy import register_config_applier
from appliance.substrate.tenant_config import TenantConfig


@register_config_applier
def sync_wards_and_beds(conn: Connection, config: TenantConfig) -> None:
    """Upsert the file's wards and beds; ones no longer listed are deactivated, never deleted,
    because admissions and history point at them."""
    ward_codes = [w.code for w in config.wards]
    for ward_config in config.wards:
        conn.execute(
            postgresql.insert(ward)
            .values(code=ward_config.code, name=ward_config.name, kind=ward_config.kind, active=True)
            .on_conflict_do_update(
                index_elements=[ward.c.code],
                set_={"name": ward_config.name, "kind": ward_config.kind, "active": True},
            )
        )
        codes = ward_config.bed_codes()
        if codes:
            statement = postgresql.insert(bed).values(
                [{"code": code, "ward_code": ward_config.code, "active": True} for code in codes]
            )
            conn.execute(statement.on_conflict_do_update(
                index_elements=[bed.c.code],
                set_={"ward_code": statement.excluded.ward_code, "active": True},
            ))
        conn.execute(
            sa.update(bed)
            .where(bed.c.ward_code == ward_config.code, bed.c.code.not_in(codes or [""]), bed.c.active)
            .values(active=False)
        )
    conn.execute(sa.update(ward).where(ward.c.code.not_in(ward_codes or [""]), ward.c.active).values(active=False))
    conn.execute(sa.update(bed).where(bed.c.ward_code.not_in(ward_codes or [""]), bed.c.active).values(active=False))


def ward_census(conn: Connection) -> list[dict]:
    """Each active ward with its bed counts by state."""
    rows = conn.execute(
        sa.select(
            ward.c.code,
            ward.c.name,
            ward.c.kind,
            sa.func.count(bed.c.code).label("beds"),
            sa.func.count(bed.c.code).filter(bed.c.state == "available").label("available"),
            sa.func.count(bed.c.code).filter(bed.c.state == "occupied").label("occupied"),
        )
        .select_from(ward.outerjoin(bed, sa.and_(bed.c.ward_code == ward.c.code, bed.c.active)))
        .where(ward.c.active)
        .group_by(ward.c.code)
        .order_by(ward.c.code)
    ).mappings()
    return [dict(row) for row in rows]
