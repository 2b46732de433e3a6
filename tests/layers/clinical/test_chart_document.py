"""The chart kept between changes (tenant migration t0009) is never staler than the record: after every
kind of write — through the services, through another layer's reaction, or by plain SQL on a table the
summary reads — the document served equals the summary computed afresh."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import chart, service
from appliance.layers.clinical.schemas import (
    AllergyIn,
    ConditionIn,
    EncounterIn,
    PatientIn,
    ServiceRequestIn,
    VitalSignsIn,
)
from tests.layers.clinical.conftest import new_patient


def _served_and_fresh(db, slug, principal, patient_id) -> tuple[dict, dict]:
    with db.tenant(slug) as conn:
        served = chart.chart_summary_json(conn, principal, patient_id)
        (fresh,) = conn.execute(sa.text("SELECT chart_summary(:p)"), {"p": patient_id}).one()
    return json.loads(served), json.loads(fresh)


def _kept_version(db, slug, patient_id) -> int | None:
    with db.tenant(slug) as conn:
        return conn.execute(sa.text("SELECT version FROM chart_document WHERE patient_id = :p"),
                            {"p": patient_id}).scalar()


def test_every_kind_of_write_is_seen_by_the_next_read(db, facility, clinician):
    with db.tenant(facility.slug) as conn:
        patient_id = uuid.UUID(str(new_patient(conn, clinician)["id"]))
        encounter_id = service.open_encounter(conn, clinician, patient_id,
                                              EncounterIn(encounter_class="outpatient"))["id"]

    def write(act) -> dict:
        served_before, _ = _served_and_fresh(db, facility.slug, clinician, patient_id)  # warm the kept copy
        kept_before = _kept_version(db, facility.slug, patient_id)
        with db.tenant(facility.slug) as conn:
            act(conn)
        served, fresh = _served_and_fresh(db, facility.slug, clinician, patient_id)
        assert served == fresh
        assert served != served_before, "the write should have changed the chart"
        assert _kept_version(db, facility.slug, patient_id) > kept_before
        return served

    served = write(lambda conn: service.add_allergy(conn, clinician, patient_id, AllergyIn(substance="Penicillin")))
    assert [a["substance"] for a in served["allergies"]] == ["Penicillin"]
    served = write(lambda conn: service.add_condition(conn, clinician, patient_id, ConditionIn(code="B50.9")))
    assert [c["code"] for c in served["problems"]] == ["B50.9"]
    served = write(lambda conn: service.record_vitals(conn, clinician, patient_id, VitalSignsIn(heart_rate_bpm=88)))
    assert served["vitals"]["heart_rate_bpm"] == 88
    served = write(lambda conn: service.order_test(conn, clinician, patient_id, ServiceRequestIn(code="2345-7")))
    assert [o["code"] for o in served["open_orders"]] == ["2345-7"]
    allergy_id = uuid.UUID(served["allergies"][0]["id"])
    served = write(lambda conn: service.retract_entry(conn, clinician, patient_id, allergy_id,
                                                      reason="recorded for the wrong patient"))
    assert served["allergies"] == []
    served = write(lambda conn: service.transition_encounter(conn, clinician, patient_id, encounter_id,
                                                             "in_progress"))
    assert served["encounters"][0]["status"] == "in_progress"
    served = write(lambda conn: service.update_patient(
        conn, clinician, patient_id, PatientIn.model_validate({
            "family_name": "Odhiambo", "given_names": "Achieng Mary", "birth_date": dt.date(1990, 4, 12),
            "sex": "female", "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}),
        reason="married name", db=db))
    assert served["patient"]["family_name"] == "Odhiambo"
    # Code paths yet to be written are covered too: the triggers watch the tables, not the services.
    served = write(lambda conn: conn.execute(sa.text("UPDATE encounter SET ward_code = 'GEN' WHERE id = :e"),
                                             {"e": encounter_id}))
    assert served["encounters"][0]["ward_code"] == "GEN"
    served = write(lambda conn: conn.execute(sa.text("DELETE FROM patient_identifier WHERE patient_id = :p"),
                                             {"p": patient_id}))
    assert served["patient"]["identifiers"] == []


def test_a_corrected_problem_or_allergy_keeps_the_time_it_began_on_the_chart(db, facility, clinician):
    """The chart summary dates and attributes a record as every list does (service.RECORD_OCCURRED_AT,
    RECORD_AUTHOR_ID): by its first version, not by the correction, which is written when it is made, by
    whoever corrects it (tenant migration t0015)."""
    with db.tenant(facility.slug) as conn:
        patient_id = uuid.UUID(str(new_patient(conn, clinician)["id"]))
        problem = service.add_condition(conn, clinician, patient_id, ConditionIn(code="B50.9"))
        allergy = service.add_allergy(conn, clinician, patient_id, AllergyIn(substance="Penicillin"))
    colleague = dataclasses.replace(clinician, account_id=uuid.uuid4(), display_name="Dr Colleague")
    with db.tenant(facility.slug) as conn:  # a later transaction: a later now() for the corrections
        corrected = service.amend_condition(conn, colleague, patient_id, problem["id"],
                                            ConditionIn(code="B54"), reason="not falciparum on the smear")
        service.amend_allergy(conn, colleague, patient_id, allergy["id"],
                              AllergyIn(substance="Penicillin", severity="severe"), reason="anaphylaxis in 2019")
        listed = service.list_conditions(conn, clinician, patient_id)
        version_time = conn.execute(sa.text("SELECT occurred_at FROM entry WHERE id = :id"),
                                    {"id": corrected["id"]}).scalar_one()

    served, fresh = _served_and_fresh(db, facility.slug, clinician, patient_id)
    assert served == fresh
    [shown] = served["problems"]
    assert shown["code"] == "B54" and shown["id"] == str(corrected["id"])
    assert dt.datetime.fromisoformat(shown["occurred_at"]) == problem["occurred_at"] == listed[0]["occurred_at"]
    assert problem["occurred_at"] < version_time
    # Who diagnosed it, and who corrected it: the correction's answer and the lists say the same.
    assert shown["record_author_id"] == str(clinician.account_id) and shown["author_id"] == str(colleague.account_id)
    assert corrected["record_author_id"] == clinician.account_id == listed[0]["record_author_id"]
    [allergic] = served["allergies"]
    assert allergic["severity"] == "severe"
    assert dt.datetime.fromisoformat(allergic["occurred_at"]) == allergy["occurred_at"]


def test_a_read_inside_a_write_that_rolls_back_leaves_no_kept_copy_of_it(db, facility, clinician):
    with db.tenant(facility.slug) as conn:
        patient_id = uuid.UUID(str(new_patient(conn, clinician)["id"]))
    before, _ = _served_and_fresh(db, facility.slug, clinician, patient_id)

    class Abandoned(Exception):
        pass

    try:
        with db.tenant(facility.slug) as conn:
            service.add_allergy(conn, clinician, patient_id, AllergyIn(substance="Latex", category="environment"))
            inside = json.loads(chart.chart_summary_json(conn, clinician, patient_id))
            assert [a["substance"] for a in inside["allergies"]] == ["Latex"]
            raise Abandoned
    except Abandoned:
        pass
    served, fresh = _served_and_fresh(db, facility.slug, clinician, patient_id)
    assert served == fresh == before


def test_one_patients_write_leaves_another_patients_kept_copy_in_use(db, facility, clinician):
    with db.tenant(facility.slug) as conn:
        first = uuid.UUID(str(new_patient(conn, clinician)["id"]))
        second = uuid.UUID(str(new_patient(conn, clinician)["id"]))
    _served_and_fresh(db, facility.slug, clinician, first)
    _served_and_fresh(db, facility.slug, clinician, second)
    kept = _kept_version(db, facility.slug, second)
    with db.tenant(facility.slug) as conn:
        service.add_allergy(conn, clinician, first, AllergyIn(substance="Sulfonamides"))
    _served_and_fresh(db, facility.slug, clinician, second)
    assert _kept_version(db, facility.slug, second) == kept


def test_an_unknown_patient_is_not_kept(db, facility, clinician):
    nobody = uuid.uuid4()
    with db.tenant(facility.slug) as conn:
        (document,) = conn.execute(sa.text("SELECT chart_document(:p)"), {"p": nobody}).one()
        assert json.loads(document)["patient"] is None
        assert conn.execute(sa.text("SELECT count(*) FROM chart_document WHERE patient_id = :p"),
                            {"p": nobody}).scalar() == 0


def test_another_tenants_role_cannot_read_or_call_this_tenants_kept_charts(db, facility, tenant_factory):
    other = tenant_factory()
    schema = f"t_{facility.slug}"
    for statement in (f"SELECT {schema}.chart_document(:id)", f"SELECT document FROM {schema}.chart_document",
                      f"UPDATE {schema}.chart_version SET version = version + 1"):
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), db.tenant(other.slug) as conn:
            conn.execute(sa.text(statement), {"id": uuid.uuid4()})
