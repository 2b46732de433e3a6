"""The FHIR facade's Procedure over HTTP (appliance/interop/fhir/resources.py `procedure`): an operation completed
through the WHO checklist with its operation note, one booked, one cancelled and one entered in error, each a valid
R4B Procedure in its case's state; read by id, searched by patient, date, status and code, in $everything and the
CapabilityStatement; every read on the patient's access log (the note's too); and another facility's token, a
guessed id, another facility's case, a token without the permission and a clinician outside the patient's care
refused."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from appliance.layers.clinical import service, surgery
from appliance.layers.clinical.schemas import EncounterIn, PatientIn
from appliance.layers.clinical.surgery_schemas import OperationNoteIn, PhaseIn, SurgeryIn
from appliance.substrate import audit
from tests.interop.fhir.conftest import answer, base, refusal
from tests.layers.clinical.conftest import CLINICAL_CONFIG

THEATRES = {"theatres": [{"code": "TH1", "name": "Theatre 1"}],
            "procedures": [{"code": "APPX", "name": "Appendicectomy"}]}


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="FHIR Theatre Facility", **CLINICAL_CONFIG, **THEATRES)


@pytest.fixture(scope="module")
def other_facility(tenant_factory):
    return tenant_factory(name="Other FHIR Theatre", **CLINICAL_CONFIG, **THEATRES)


def _patient(db, tenant: str, writer, family: str, *, seen: bool = True) -> uuid.UUID:
    with db.tenant(tenant) as conn:
        person = service.register_patient(conn, writer, PatientIn(
            family_name=family, given_names="Amina", birth_date=dt.date(1990, 5, 1), sex="female"))
        if seen:
            service.open_encounter(conn, writer, person["id"], EncounterIn(encounter_class="inpatient",
                                                                           status="in_progress", ward_code="GEN"))
    return person["id"]


def _book(conn, writer, patient: uuid.UUID, planned_at: dt.datetime, **fields) -> uuid.UUID:
    booking = {"procedure": "Appendicectomy", "procedure_code": "APPX", "theatre": "TH1", "surgeon": "Dr Mwangi",
               "anaesthetist": "Dr Atieno", "urgency": "urgent", "anaesthesia": "general",
               "planned_at": planned_at, **fields}
    return surgery.book(conn, writer, patient, SurgeryIn.model_validate(booking))["root_id"]


def _operated(conn, writer, case: uuid.UUID) -> None:
    """Through the whole checklist, with the operation note, to completed."""
    def phase(key: str) -> None:
        [found] = [p for p in surgery.CHECKLIST if p.key == key]
        surgery.record_phase(conn, writer, case, key, PhaseIn(confirmed=[k for k, _ in found.items]))

    phase("sign_in")
    surgery.move(conn, writer, case, "in_theatre")
    phase("time_out")
    surgery.write_note(conn, writer, case, OperationNoteIn(
        procedure_performed="Open appendicectomy", findings="Inflamed, non-perforated appendix", blood_loss_ml=50,
        complications="Wound edge bleeding, controlled", specimens="Appendix to histology",
        post_op_instructions="Oral fluids at 6 h"))
    phase("sign_out")
    surgery.move(conn, writer, case, "completed")


@pytest.fixture(scope="module")
def operated(db, facility, writer) -> dict:
    patient = _patient(db, facility.slug, writer, "Wekesa")
    now = dt.datetime.now(dt.UTC)
    # Each booked in its own transaction, so each has its own time recorded and a search's order is theirs.
    with db.tenant(facility.slug) as conn:
        done = _book(conn, writer, patient, now - dt.timedelta(days=3))
        _operated(conn, writer, done)
    with db.tenant(facility.slug) as conn:
        booked = _book(conn, writer, patient, now + dt.timedelta(days=2), procedure="Inguinal hernia repair",
                       procedure_code=None, anaesthetist=None, urgency="elective", anaesthesia="spinal")
    with db.tenant(facility.slug) as conn:
        cancelled = _book(conn, writer, patient, now + dt.timedelta(days=1))
        surgery.move(conn, writer, cancelled, "cancelled", reason="patient ate breakfast")
    with db.tenant(facility.slug) as conn:
        withdrawn = _book(conn, writer, patient, now + dt.timedelta(days=1))
        surgery.retract(conn, writer, withdrawn, "booked on the wrong patient")
    return {"patient": patient, "done": done, "booked": booked, "cancelled": cancelled, "withdrawn": withdrawn,
            "day": (now + dt.timedelta(days=2)).date().isoformat()}


def test_a_completed_operation_is_a_procedure_with_its_note(api, facility, operated, writer):
    done = answer(api.get(f"{base(facility.slug)}/Procedure/{operated['done']}"))
    assert done["status"] == "completed" and "statusReason" not in done
    assert done["code"] == {"coding": [{"system": "urn:healthos:procedure", "code": "APPX"}], "text": "Appendicectomy"}
    assert done["category"]["coding"][0] == {"system": "http://snomed.info/sct", "code": "387713003",
                                             "display": "Surgical procedure"}
    assert done["subject"] == {"reference": f"Patient/{operated['patient']}"}
    period = done["performedPeriod"]
    assert dt.datetime.fromisoformat(period["start"]) <= dt.datetime.fromisoformat(period["end"])
    assert done["performer"] == [{"function": {"text": "Surgeon"}, "actor": {"display": "Dr Mwangi"}},
                                 {"function": {"text": "Anaesthetist"}, "actor": {"display": "Dr Atieno"}}]
    assert done["recorder"]["identifier"]["value"] == str(writer.account_id)
    [note] = done["note"]
    assert "Findings: Inflamed, non-perforated appendix" in note["text"]
    assert "Estimated blood loss: 50 ml" in note["text"] and "Specimens: Appendix to histology" in note["text"]
    assert done["complication"] == [{"text": "Wound edge bleeding, controlled"}]
    assert done["followUp"] == [{"text": "Oral fluids at 6 h"}]


def test_a_booked_a_cancelled_and_a_withdrawn_case_say_where_they_stand(api, facility, operated):
    url = base(facility.slug)
    booked = answer(api.get(f"{url}/Procedure/{operated['booked']}"))
    assert booked["status"] == "preparation" and "performedPeriod" not in booked and "note" not in booked
    assert booked["code"] == {"text": "Inguinal hernia repair"}
    assert booked["performer"] == [{"function": {"text": "Surgeon"}, "actor": {"display": "Dr Mwangi"}}]
    cancelled = answer(api.get(f"{url}/Procedure/{operated['cancelled']}"))
    assert cancelled["status"] == "not-done" and cancelled["statusReason"] == {"text": "patient ate breakfast"}
    withdrawn = answer(api.get(f"{url}/Procedure/{operated['withdrawn']}"))
    assert withdrawn["status"] == "entered-in-error" and withdrawn["code"]["text"] == "Appendicectomy"


def test_search_by_patient_date_status_and_code(api, facility, operated):
    url, patient = base(facility.slug), str(operated["patient"])

    def ids(**params) -> list[str]:
        bundle = answer(api.get(f"{url}/Procedure", params={"patient": patient, **params}))
        assert bundle["total"] == len(bundle["entry"])
        return [e["resource"]["id"] for e in bundle["entry"]]

    # Newest recorded first; the case entered in error is no longer in force.
    assert ids() == [str(operated[k]) for k in ("cancelled", "booked", "done")]
    assert ids(status="completed") == [str(operated["done"])]
    assert ids(status="preparation,not-done") == [str(operated[k]) for k in ("cancelled", "booked")]
    assert ids(code="urn:healthos:procedure|APPX") == [str(operated[k]) for k in ("cancelled", "done")]
    assert ids(code="http://snomed.info/sct|APPX") == []
    assert ids(date=f"ge{operated['day']}") == [str(operated["booked"])]
    assert refusal(api.get(f"{url}/Procedure", params={"patient": patient, "date": "next week"}), 400)
    assert refusal(api.get(f"{url}/Procedure", params={"patient": patient, "performer": "Dr Mwangi"}), 400)
    assert refusal(api.get(f"{url}/Procedure"), 400)["issue"][0]["expression"] == ["patient"]


def test_everything_and_the_capability_statement(api, facility, operated):
    url = base(facility.slug)
    everything = answer(api.get(f"{url}/Patient/{operated['patient']}/$everything"))
    assert {e["resource"]["id"] for e in everything["entry"] if e["resource"]["resourceType"] == "Procedure"} == {
        str(operated[k]) for k in ("done", "booked", "cancelled")}
    [done] = [e["resource"] for e in everything["entry"] if e["resource"]["id"] == str(operated["done"])]
    assert done["followUp"] == [{"text": "Oral fluids at 6 h"}]
    statement = answer(api.get(f"{url}/metadata"))
    [served] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Procedure"]
    assert [i["code"] for i in served["interaction"]] == ["read", "search-type"]
    assert {p["name"] for p in served["searchParam"]} == {"patient", "date", "status", "code", "_count"}


def test_every_read_is_on_the_patients_access_log(api, db, facility, operated):
    before = len(audit.patient_access_log(db, facility.slug, operated["patient"]))
    answer(api.get(f"{base(facility.slug)}/Procedure/{operated['done']}"))
    answer(api.get(f"{base(facility.slug)}/Procedure", params={"patient": str(operated["patient"])}))
    events = audit.patient_access_log(db, facility.slug, operated["patient"])[before:]
    assert [(e.event_type, e.action) for e in events] == [("record.surgery.read", "R"),
                                                          ("record.operation_note.read", "R")] * 2


def test_the_attackers_side(token_client, signed_in, db, facility, other_facility, writer, api, operated):
    url = base(facility.slug)
    case, patient = operated["done"], operated["patient"]
    intruder = token_client(other_facility.slug, role="clinician")
    for path in (f"/Procedure/{case}", f"/Procedure?patient={patient}"):
        assert refusal(intruder.get(url + path), 403)["issue"][0]["code"] == "forbidden"
    # Another facility's case, and a guessed id, read the same: not found here.
    theirs_patient = _patient(db, other_facility.slug, writer, "Elsewhere")
    with db.tenant(other_facility.slug) as conn:
        theirs = _book(conn, writer, theirs_patient, dt.datetime.now(dt.UTC))
    guess = uuid.uuid4()
    known = refusal(api.get(f"{url}/Procedure/{theirs}"), 404)["issue"][0]["diagnostics"]
    guessed = refusal(api.get(f"{url}/Procedure/{guess}"), 404)["issue"][0]["diagnostics"]
    assert known.replace(str(theirs), "ID") == guessed.replace(str(guess), "ID")
    assert refusal(api.get(f"{url}/Procedure", params={"patient": str(theirs_patient)}), 404)
    # A case's id is no Condition, nor is the patient's id a Procedure.
    assert refusal(api.get(f"{url}/Condition/{case}"), 404)
    assert refusal(api.get(f"{url}/Procedure/{patient}"), 404)
    # A token that may read the chart but not operations.
    reader = token_client(facility.slug, permissions=["clinical.patient.read", "clinical.chart.read"])
    assert "clinical.surgery.read" in refusal(reader.get(f"{url}/Procedure/{case}"), 403)["issue"][0]["diagnostics"]
    # A clinician with no care relationship with the patient: break-the-glass, by id and by search.
    unseen = _patient(db, facility.slug, writer, "Unseen", seen=False)
    with db.tenant(facility.slug) as conn:
        unseen_case = _book(conn, writer, unseen, dt.datetime.now(dt.UTC))
    clinician = signed_in("clinician", facility.slug)
    for path in (f"/Procedure/{unseen_case}", f"/Procedure?patient={unseen}"):
        assert "break-the-glass" in refusal(clinician.get(url + path), 403)["issue"][0]["diagnostics"], path
    # The facade reads operations only: none is written through it.
    assert refusal(api.post(f"{url}/Procedure", json={"resourceType": "Procedure"}), 405)
