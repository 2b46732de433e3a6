"""The MAR of an admitted patient after medicines reconciliation: a prescription the patient came in on
(an earlier clinic's, or one naming no visit written before the stay) has no doses due or late until a
doctor continues it, and is listed apart; continued, its doses start then; held, it stays off; stopped, it
is gone. The worklist and the handover count late doses by the same rule; an outpatient's MAR is as before."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from appliance.layers.clinical import reconciliation
from appliance.layers.clinical.schemas import ReconciliationIn
from appliance.layers.nursing import service, ward
from appliance.layers.nursing.errors import Conflict
from appliance.layers.nursing.schemas import AdministrationIn
from appliance.layers.operations import adt, ed
from appliance.substrate import record
from tests.layers.nursing.conftest import TZ, admit
from tests.layers.nursing.test_pages import post_form

GEN = {"code": "GEN", "name": "General ward"}


def _prescribe(conn, principal, patient_id, drug: str, frequency: str, *, at: dt.datetime,
               encounter_id: uuid.UUID | None) -> record.Entry:
    return record.append(conn, principal, "medication_request", patient_id=patient_id, occurred_at=at,
                         encounter_id=encounter_id, detail={
                             "drug": drug, "dose": Decimal(5), "dose_unit": "mg", "route": "oral",
                             "frequency": frequency, "duration_days": None, "status": "active", "instructions": None,
                             "allergy_override_reason": None, "order_set": None})


def _visit(conn, principal, patient_id, encounter_class: str, began: dt.datetime, ward: str | None) -> uuid.UUID:
    """An encounter that began at `began` (the clinical route opens one now)."""
    encounter_id = uuid.uuid4()
    record.append(conn, principal, "encounter", patient_id=patient_id, encounter_id=encounter_id, occurred_at=began,
                  detail={"id": encounter_id, "patient_id": patient_id, "encounter_class": encounter_class,
                          "status": "in_progress", "reason": "Pneumonia", "ward_code": ward, "planned_for": None,
                          "started_at": began})
    return encounter_id


@pytest.fixture(scope="module")
def came_in(db, facility, clinician) -> dict:
    """Admitted two days ago, on amlodipine from an August clinic visit and metformin written a month ago
    naming no visit; in the stay, ceftriaxone on the admission and paracetamol naming no visit."""
    now = dt.datetime.now(dt.UTC)
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, ward=None, encounter_class="outpatient", family="Barasa")
        pid = patient["id"]
        clinic = patient["encounter_id"]
        amlodipine = _prescribe(conn, clinician, pid, "Amlodipine", "once daily", at=now - dt.timedelta(days=100),
                                encounter_id=clinic)
        metformin = _prescribe(conn, clinician, pid, "Metformin", "twice daily", at=now - dt.timedelta(days=30),
                               encounter_id=None)
        stay = _visit(conn, clinician, pid, "inpatient", now - dt.timedelta(days=2), "GEN")
        _prescribe(conn, clinician, pid, "Ceftriaxone", "once daily", at=now - dt.timedelta(days=2) + dt.timedelta(
            minutes=30), encounter_id=stay)
        _prescribe(conn, clinician, pid, "Paracetamol", "every 6 hours", at=now - dt.timedelta(days=1),
                   encounter_id=None)
    return {"id": pid, "stay": stay, "amlodipine": amlodipine, "metformin": metformin}


def _mar(conn, nurse, patient_id, now):
    return service.mar(conn, nurse, patient_id, window_start=now - dt.timedelta(hours=24),
                       window_end=now + dt.timedelta(hours=12), now=now, tz=TZ)


def test_what_the_patient_came_in_on_waits_off_the_mar_until_a_doctor_continues_it(db, facility, clinician, nurse,
                                                                                   came_in):
    pid = came_in["id"]
    with db.tenant(facility.slug) as conn:
        now = dt.datetime.now(dt.UTC)
        chart = _mar(conn, nurse, pid, now)
        listed = next(p for p in ward.worklist(conn, nurse, GEN, now=now, tz=TZ)["patients"] if p["patient_id"] == pid)
        handover = ward.handover_summary(conn, nurse, GEN, now=now, tz=TZ, shift_start=now - dt.timedelta(hours=12),
                                         shift_end=now)
        with pytest.raises(Conflict) as refused:
            service.record_administration(conn, nurse, pid, AdministrationIn(
                medication_request_id=came_in["amlodipine"].id, outcome="given"), now=now, tz=TZ)
    assert {line["drug"] for line in chart["lines"]} == {"Ceftriaxone", "Paracetamol"}
    assert [(p["drug"], p["came_in_on"]) for p in chart["came_in_on"]] == [("Amlodipine", "to_reconcile"),
                                                                           ("Metformin", "to_reconcile")]
    assert chart["to_reconcile"] == 2
    late_in_stay = sum(1 for line in chart["lines"] for d in line["doses"] if d["state"] == "late")
    assert chart["late"] == late_in_stay > 0  # the stay's own doses are late as before
    assert listed["to_reconcile"] == 2 and listed["doses_late"] == late_in_stay + chart["late_elsewhere"]
    mine = next(p for p in handover["patients"] if p["patient_id"] == pid)
    assert {d["drug"].split()[0] for d in mine["doses"]} <= {"Ceftriaxone", "Paracetamol"}
    assert refused.value.extra["field"] == "medication_request_id" and "until a doctor continues it" in \
        refused.value.detail

    with db.tenant(facility.slug) as conn:
        continued_from = conn.exec_driver_sql("SELECT now()").scalar_one()
        done = reconciliation.reconcile(conn, clinician, pid, ReconciliationIn.model_validate({"decisions": [
            {"medication_request_id": str(came_in["amlodipine"].id), "decision": "continue"},
            {"medication_request_id": str(came_in["metformin"].id), "decision": "hold",
             "reason": "nil by mouth; restart when eating"}]}))
    [continued, held] = done["decided"]
    assert continued["continued_as"] is not None and held["continued_as"] is None and done["to_reconcile"] == 0
    later = now + dt.timedelta(days=1, hours=1)
    with db.tenant(facility.slug) as conn:
        chart = service.mar(conn, nurse, pid, window_start=now - dt.timedelta(hours=24), window_end=later,
                            now=later, tz=TZ)
    [amlodipine] = [line for line in chart["lines"] if line["drug"] == "Amlodipine"]
    assert amlodipine["medication_request_id"] == continued["continued_as"]
    assert amlodipine["started_at"] == continued_from  # its doses start when it was continued, not in August
    assert amlodipine["doses"] and all(d["scheduled_for"] >= continued_from for d in amlodipine["doses"])
    assert [(p["drug"], p["came_in_on"]) for p in chart["came_in_on"]] == [("Metformin", "hold")]
    assert chart["to_reconcile"] == 0

    with db.tenant(facility.slug) as conn:  # the held one decided again: stopped
        reconciliation.reconcile(conn, clinician, pid, ReconciliationIn.model_validate({"decisions": [
            {"medication_request_id": str(came_in["metformin"].id), "decision": "stop", "reason": "eGFR 25"}]}))
        chart = _mar(conn, nurse, pid, now)
        [metformin] = [p for p in service.prescriptions_of(conn, [pid]) if p["drug"] == "Metformin"]
    assert chart["came_in_on"] == [] and "Metformin" not in {line["drug"] for line in chart["lines"]}
    assert metformin["status"] == "stopped" and metformin["came_in_on"] == "stop"


def test_an_outpatients_mar_is_as_it_was(db, facility, clinician, nurse):
    now = dt.datetime.now(dt.UTC)
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, ward=None, encounter_class="outpatient", family="Odhiambo")
        _prescribe(conn, clinician, patient["id"], "Amlodipine", "once daily", at=now - dt.timedelta(days=100),
                   encounter_id=patient["encounter_id"])
        chart = _mar(conn, nurse, patient["id"], now)
    assert [line["drug"] for line in chart["lines"]] == ["Amlodipine"] and chart["came_in_on"] == []


def test_a_ward_doctor_reconciles_on_the_page(db, signed_in, facility, other_facility, clinician):
    now = dt.datetime.now(dt.UTC)
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, ward=None, encounter_class="outpatient", family="Mutua")
        pid = patient["id"]
        amlodipine = _prescribe(conn, clinician, pid, "Amlodipine", "once daily", at=now - dt.timedelta(days=100),
                                encounter_id=patient["encounter_id"])
        metformin = _prescribe(conn, clinician, pid, "Metformin", "twice daily", at=now - dt.timedelta(days=50),
                               encounter_id=patient["encounter_id"])
        _visit(conn, clinician, pid, "inpatient", now - dt.timedelta(hours=20), "GEN")
    page = f"/t/{facility.slug}/patients/{pid}/reconciliation"
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    mar = nurse.get(f"/t/{facility.slug}/patients/{pid}/mar")
    assert mar.status_code == 200 and "Medicines to reconcile (2)" in mar.text
    assert "To reconcile: came in on <strong>Amlodipine 5 mg oral</strong>" in mar.text
    assert "late</span>" not in mar.text
    assert "2 to reconcile" in nurse.get(f"/t/{facility.slug}/ward").text
    read = nurse.get(page)
    assert read.status_code == 200 and "Medicines to reconcile (2)" in read.text and "Record decisions" not in read.text
    assert post_form(nurse, page, page, {f"decision-{amlodipine.id}": "continue"}).status_code == 403

    doctor = signed_in("clinician", facility.slug)
    unsaid = post_form(doctor, page, page, {f"decision-{amlodipine.id}": "continue",
                                            f"decision-{metformin.id}": "hold"})
    assert unsaid.status_code == 422 and f'id="reason-{metformin.id}-error">Say why Metformin is held.' in unsaid.text
    assert '<option value="continue" selected>' in unsaid.text and "Medicines to reconcile (2)" in unsaid.text
    nothing = post_form(doctor, page, page, {})
    assert nothing.status_code == 422 and "Choose continue, hold or stop for at least one medicine." in nothing.text
    saved = post_form(doctor, page, page, {f"decision-{amlodipine.id}": "continue",
                                           f"decision-{metformin.id}": "stop", f"reason-{metformin.id}": "eGFR 25"})
    assert saved.status_code == 303 and saved.headers["location"].endswith("/reconciliation?done=reconciled")
    shown = doctor.get(saved.headers["location"]).text
    assert "Medicines to reconcile (0)" in shown and "<strong>continued</strong>" in shown
    assert "<strong>stopped</strong>" in shown and "eGFR 25" in shown
    assert 'id="rx-' in nurse.get(f"/t/{facility.slug}/patients/{pid}/mar").text  # the continuation's line

    intruder = signed_in("clinician", other_facility.slug)
    assert intruder.get(page).status_code == 403
    assert post_form(intruder, f"/t/{other_facility.slug}/ward", page,
                     {f"decision-{amlodipine.id}": "continue"}).status_code == 403
    guessed = f"/t/{facility.slug}/patients/{uuid.uuid4()}/reconciliation"
    assert doctor.get(guessed).status_code == 404
    assert post_form(doctor, page, guessed, {f"decision-{amlodipine.id}": "continue"}).status_code == 404


def test_what_the_emergency_department_prescribed_is_of_the_stay(db, facility, clinician, nurse):
    """Admitted from the ED: the antibiotic started there is the stay's, due on the ward without reconciling."""
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, ward=None, encounter_class="outpatient", family="Kariuki")
        now = conn.exec_driver_sql("SELECT now()").scalar_one()
        visit = ed.arrive(conn, clinician, patient["id"], at=now - dt.timedelta(hours=5))
        _prescribe(conn, clinician, patient["id"], "Ceftriaxone", "once daily", at=now - dt.timedelta(hours=4),
                   encounter_id=visit["id"])
        adt.admit(conn, clinician, patient["id"], ward_code="GEN", ed_encounter_id=visit["id"])
        chart = _mar(conn, nurse, patient["id"], now)
    assert [line["drug"] for line in chart["lines"]] == ["Ceftriaxone"] and chart["came_in_on"] == []
