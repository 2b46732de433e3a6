"""Messages over a real MLLP connection applied to the record: each type, its rows and audit events, its
ACK field by field; refusals that write nothing; resends applied once."""

from __future__ import annotations

import secrets

import sqlalchemy as sa

from appliance.interop.hl7v2.models import hl7_message
from appliance.substrate import audit
from tests.interop.hl7v2.conftest import adt, control_id, count, counts, orm, oru


def _mrn() -> str:
    return "R" + secrets.token_hex(4).upper()


def _patient(db, tenant: str, identifier: str) -> dict | None:
    with db.tenant(tenant) as conn:
        row = conn.execute(sa.text(
            "SELECT p.* FROM patient p JOIN patient_identifier i ON i.patient_id = p.id WHERE i.value = :v"),
            {"v": identifier}).mappings().first()
    return dict(row) if row else None


def test_a04_registers_the_patient_and_opens_the_visit(db, facility, feed):
    identifier = _mrn()
    control = control_id()
    [ack] = feed(adt(facility.slug, "A04", identifier, control=control, national_id="NI" + identifier))
    assert ack.code == "AA", ack.text
    assert ack.field("MSA", 2) == control
    assert ack.field("MSH", 3) == "HEALTHOS" and ack.field("MSH", 4) == facility.slug
    assert ack.field("MSH", 5) == "REGSYS" and ack.field("MSH", 6) == "HOSPITAL"
    assert ack.field("MSH", 9) == "ACK" and ack.field("MSH", 9, 2) == "A04"
    assert ack.field("ERR", 3) == ""
    patient = _patient(db, facility.slug, identifier)
    assert patient["family_name"] == "Otieno" and patient["given_names"] == "Grace Akinyi"
    assert str(patient["birth_date"]) == "1990-02-14" and patient["sex"] == "female"
    assert patient["subject_id"] is not None
    with db.tenant(facility.slug) as conn:
        systems = dict(conn.execute(sa.text("SELECT system, value FROM patient_identifier WHERE patient_id = :p"),
                                    {"p": patient["id"]}).all())
        visit = conn.execute(sa.text("SELECT encounter_class, status FROM encounter WHERE patient_id = :p"),
                             {"p": patient["id"]}).one()
    assert systems == {"regsys_mr": identifier, "national_id": "NI" + identifier}
    assert tuple(visit) == ("outpatient", "arrived")
