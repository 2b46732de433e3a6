"""Issue 5, acceptance 3: a chart read whose audit event cannot be written is an error, and shows no
data. The audit insert is made to fail for real — a constraint no row satisfies, added by the schema
owner to the facility's audit table — and the chart is read over HTTP, as a clinician would."""

from __future__ import annotations

import sqlalchemy as sa

from appliance.substrate.db import tenant_schema
from tests.layers.clinical.test_routes import BASE, register


def test_a_chart_read_that_cannot_be_audited_returns_an_error_and_no_data(api, db, facility):
    patient = register(api, facility.slug, family_name="Chebet", given_names="Faith")
    chart = f"{BASE.format(tenant=facility.slug)}/patients/{patient['id']}/chart"
    assert api.get(chart).status_code == 200
    schema = f'"{tenant_schema(facility.slug)}"'
    with db.control() as conn:
        before = conn.execute(sa.text(f"SELECT count(*) FROM {schema}.audit_event")).scalar()
        conn.exec_driver_sql(f"ALTER TABLE {schema}.audit_event ADD CONSTRAINT audit_broken CHECK (false) NOT VALID")
    try:
        refused = api.get(chart)
    finally:
        with db.control() as conn:
            conn.exec_driver_sql(f"ALTER TABLE {schema}.audit_event DROP CONSTRAINT audit_broken")
    assert refused.status_code == 500
    assert "Chebet" not in refused.text and patient["mrn"] not in refused.text and patient["id"] not in refused.text
    with db.control() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {schema}.audit_event")).scalar() == before
    assert api.get(chart).status_code == 200  # audited again, readable again
