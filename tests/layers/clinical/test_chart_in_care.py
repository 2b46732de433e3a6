"""The chart read of a clinician caring for the patient, decided, read and audited as one statement
(`chart.chart_summary_in_care`): it must record the same event the ordinary path records, refuse the
same way, give out nothing it could not audit, and step aside whenever it cannot seal the event
ahead."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import chart, service
from appliance.layers.clinical.access import BreakGlassRequired
from appliance.layers.clinical.errors import NotFound
from appliance.layers.clinical.schemas import EncounterIn
from appliance.substrate import audit, record
from appliance.substrate.db import tenant_schema
from appliance.substrate.principal import Principal
from tests.layers.clinical.conftest import new_patient


@pytest.fixture(scope="module")
def patients(db, facility, clinician):
    """One patient with an encounter (in the clinician's care), one with none."""
    with db.tenant(facility.slug) as conn:
        cared = new_patient(conn, clinician, family_name="Kiprono")
        service.open_encounter(conn, clinician, cared["id"], EncounterIn(encounter_class="outpatient"))
        stranger = new_patient(conn, clinician, family_name="Nyambura")
    return {"cared": cared["id"], "stranger": stranger["id"]}


def _events_since(db, slug: str, seq: int) -> list[dict]:
    return [e for e in audit.read_events(db, slug, first_seq=seq + 1)]


def _last_seq(db, slug: str) -> int:
    with db.control() as conn:
        return conn.execute(sa.text(f'SELECT coalesce(max(seq), 0) FROM "{tenant_schema(slug)}".audit_event')).scalar()


def test_the_read_is_one_statement_and_records_what_the_ordinary_path_records(db, facility, clinician, patients):
    with db.tenant(facility.slug) as conn:  # the ordinary path, which also takes this process's block
        ordinary = chart.open_chart_summary_json(conn, clinician, patients["cared"])
    before = _last_seq(db, facility.slug)
    document = chart.chart_summary_in_care(db, facility.slug, clinician, patients["cared"])
    assert document is not None, "with a block and a key in memory the read must not need the ordinary path"
    assert json.loads(document) == json.loads(ordinary)
    assert json.loads(document)["patient"]["family_name"] == "Kiprono"

    (event,) = _events_since(db, facility.slug, before)
    (previous,) = [e for e in _events_since(db, facility.slug, before - 1) if e["seq"] == before]
    assert event["type"] == previous["type"] == "record.chart.read"
    assert event["patient_ref"] == previous["patient_ref"] is not None
    body, earlier = event["event"], previous["event"]
    assert body["action"] == "R"
    assert body["agent"] == earlier["agent"]
    assert body["entity"] == earlier["entity"]
    assert body["entity"][0]["what"]["reference"] == f"Patient/{patients['cared']}"
    assert "purposeOfUse" not in body


def test_refusals_record_nothing_and_say_why(db, facility, clinician, patients, other_facility):
    chart.chart_summary_in_care(db, facility.slug, clinician, patients["cared"])  # blocks and key in memory
    before = _last_seq(db, facility.slug)
    with pytest.raises(BreakGlassRequired):
        chart.chart_summary_in_care(db, facility.slug, clinician, patients["stranger"])
    with pytest.raises(NotFound):
        chart.chart_summary_in_care(db, facility.slug, clinician, uuid.uuid4())  # a guessed id
    # Another facility's patient id, asked for at this facility, is simply not a patient here.
    with db.tenant(other_facility.slug) as conn:
        theirs = new_patient(conn, clinician, family_name="Elsewhere")["id"]
    with pytest.raises(NotFound):
        chart.chart_summary_in_care(db, facility.slug, clinician, theirs)
    assert _events_since(db, facility.slug, before) == []


def test_a_machine_client_reads_without_a_care_relationship(db, facility, patients):
    machine = Principal(account_id=uuid.uuid4(), kind="machine", display_name="Lab analyser", tenant=facility.slug,
                        role="api_token", permissions=frozenset({"clinical.chart.read"}))
    with db.tenant(facility.slug) as conn:
        chart.open_chart_summary_json(conn, machine, patients["stranger"])
    before = _last_seq(db, facility.slug)
    assert chart.chart_summary_in_care(db, facility.slug, machine, patients["stranger"]) is not None
    assert [e["type"] for e in _events_since(db, facility.slug, before)] == ["record.chart.read"]


def test_an_event_sealed_under_a_key_rotated_meanwhile_is_not_recorded_and_nothing_is_read(
        db, facility, clinician, patients):
    chart.chart_summary_in_care(db, facility.slug, clinician, patients["cared"])
    before = _last_seq(db, facility.slug)
    rotated = audit.rotate_key(db, facility.slug)  # this process's block still names the old key
    assert chart.chart_summary_in_care(db, facility.slug, clinician, patients["cared"]) is None
    assert _events_since(db, facility.slug, before) == []
    # The ordinary path then records it under the new key, and the next one-statement read does too.
    with db.tenant(facility.slug) as conn:
        chart.open_chart_summary_json(conn, clinician, patients["cared"])
    assert chart.chart_summary_in_care(db, facility.slug, clinician, patients["cared"]) is not None
    events = _events_since(db, facility.slug, before)
    assert [e["key"] for e in events] == [rotated.key_id, rotated.key_id]


def test_a_read_that_cannot_be_audited_fails_and_gives_out_nothing(db, facility, clinician, patients):
    chart.chart_summary_in_care(db, facility.slug, clinician, patients["cared"])
    before = _last_seq(db, facility.slug)
    schema = f'"{tenant_schema(facility.slug)}"'
    with db.control() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {schema}.audit_event ADD CONSTRAINT audit_broken CHECK (false) NOT VALID")
    try:
        with pytest.raises(audit.AuditError):
            chart.chart_summary_in_care(db, facility.slug, clinician, patients["cared"])
    finally:
        with db.control() as conn:
            conn.exec_driver_sql(f"ALTER TABLE {schema}.audit_event DROP CONSTRAINT audit_broken")
    assert _events_since(db, facility.slug, before) == []
    assert chart.chart_summary_in_care(db, facility.slug, clinician, patients["cared"]) is not None


def test_it_steps_aside_for_an_access_hook_which_needs_the_transaction(db, facility, clinician, patients):
    seen = []

    def hook(conn, principal, action, patient_id, entity_kind, ids):
        seen.append((action, patient_id, entity_kind))

    record.register_access_hook(hook)
    try:
        assert chart.chart_summary_in_care(db, facility.slug, clinician, patients["cared"]) is None
    finally:
        record.unregister_access_hook(hook)
    assert seen == []


def test_a_first_read_in_a_fresh_process_state_takes_the_ordinary_path(db, facility, clinician, patients):
    audit.forget_tenant_blocks(facility.slug)
    assert chart.chart_summary_in_care(db, facility.slug, clinician, patients["cared"]) is None
    with db.tenant(facility.slug) as conn:
        chart.open_chart_summary_json(conn, clinician, patients["cared"])
    assert chart.chart_summary_in_care(db, facility.slug, clinician, patients["cared"]) is not None


def test_a_used_up_block_is_refilled_without_leaving_the_one_statement_read(db, facility, clinician, patients):
    assert chart.chart_summary_in_care(db, facility.slug, clinician, patients["cared"]) is not None
    block = audit._blocks[facility.slug]
    block.seqs.clear()  # as if other readers had used this process's numbers up
    before = _last_seq(db, facility.slug)

    document = chart.chart_summary_in_care(db, facility.slug, clinician, patients["cared"])

    assert document is not None, "a used-up block must be refilled, not sent down the ordinary path"
    (event,) = _events_since(db, facility.slug, before)
    assert event["type"] == "record.chart.read"
    assert event["seq"] > before
    assert audit._blocks[facility.slug] is not block
    assert audit.verify(db, facility.slug).ok
