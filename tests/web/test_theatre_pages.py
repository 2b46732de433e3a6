"""The operating theatre in the portal (appliance/web/theatre.py) over in-process HTTP: "Book surgery" from the
chart (refusals beside their field, what was typed kept, nothing written), the case's page with the checklist's
phases as forms (a nurse's), its moves (the gate's sentence when a phase is missing) and the operation note, and
the day's theatre list by theatre with each case's progress. Another facility's session and guessed ids on these
routes are in tests/web/test_portal.py; a guessed case id here."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service, surgery
from appliance.layers.clinical.schemas import AllergyIn, EncounterIn, PatientIn
from appliance.layers.clinical.surgery_schemas import OperationNoteIn, PhaseIn, SurgeryIn
from appliance.substrate import audit
from appliance.substrate.tenancy import facility_timezone
from tests.web.test_death_pages import no_inline_script
from tests.web.test_portal import post_form, principal_of

THEATRES = {"theatres": [{"code": "MAIN", "name": "Main theatre"}, {"code": "MAT", "name": "Maternity theatre"}],
            "procedures": [{"code": "APPX", "name": "Appendicectomy"}]}


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Theatre Pages Hospital", **THEATRES)


@pytest.fixture(scope="module")
def author(person_factory, facility):
    return person_factory("clinician", facility.slug)


def admitted(db, tenant: str, author) -> uuid.UUID:
    principal = principal_of(author, tenant)
    data = PatientIn.model_validate({"family_name": "Njoroge", "given_names": "Peter", "birth_date": "1980-02-03",
                                     "sex": "male",
                                     "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]})
    with db.tenant(tenant) as conn:
        patient_id = service.register_patient(conn, principal, data)["id"]
        service.open_encounter(conn, principal, patient_id, EncounterIn(encounter_class="inpatient",
                                                                         status="in_progress", ward_code="GEN"))
    return patient_id


def cases(db, tenant: str) -> int:
    with db.tenant(tenant) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM entry WHERE kind = 'surgery'")).scalar()


def test_book_from_the_chart_work_the_checklist_and_sign_the_note(signed_in, db, facility, author):
    patient = admitted(db, facility.slug, author)
    surgeon = signed_in("clinician", facility.slug)
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    chart = f"/t/{facility.slug}/patients/{patient}"
    assert 'id="book-surgery"' in surgeon.get(f"{chart}/chart").text
    form = surgeon.get(f"{chart}/surgery/new")
    assert form.status_code == 200 and 'name="_csrf_token"' in form.text and "Main theatre" in form.text
    no_inline_script(form.text)

    typed = {"procedure": "Appendicectomy", "procedure_code": "APPX", "planned_on": "2026-11-25",
             "planned_time": "", "theatre": "MAIN", "surgeon": "Dr Kariuki", "urgency": "urgent",
             "anaesthesia": "general"}
    before = cases(db, facility.slug)
    untimed = post_form(surgeon, f"{chart}/surgery/new", f"{chart}/surgery", typed)
    assert untimed.status_code == 422 and 'id="planned_on-error"' in untimed.text
    assert 'value="Dr Kariuki"' in untimed.text  # what was typed is kept
    nameless = post_form(surgeon, f"{chart}/surgery/new", f"{chart}/surgery",
                         {**typed, "planned_time": "09:30", "surgeon": ""})
    assert nameless.status_code == 422 and 'id="surgeon-error"' in nameless.text
    assert cases(db, facility.slug) == before
    booked = post_form(surgeon, f"{chart}/surgery/new", f"{chart}/surgery", {**typed, "planned_time": "09:30"})
    assert booked.status_code == 303, booked.text
    case_url = booked.headers["location"].split("?")[0]
    page = surgeon.get(booked.headers["location"])
    assert page.status_code == 200 and "Operation booked" in page.text and "Sign In" in page.text
    no_inline_script(page.text)

    early = post_form(surgeon, case_url, f"{case_url}/status", {"to": "in_theatre"})
    assert early.status_code == 422 and "Sign In has not been recorded" in early.text
    keys = {p.key: [k for k, _ in p.items] for p in surgery.CHECKLIST}
    nurse_page = nurse.get(case_url)
    assert nurse_page.status_code == 200 and 'id="phase-sign_in-form"' in nurse_page.text
    assert 'id="into-theatre"' not in nurse_page.text  # a nurse records the checklist, not the case's moves
    half = post_form(nurse, case_url, f"{case_url}/checklist/sign_in", {f"c_{keys['sign_in'][0]}": "yes"})
    assert half.status_code == 422 and "not confirmed" in half.text and 'checked' in half.text
    signed = post_form(nurse, case_url, f"{case_url}/checklist/sign_in",
                       {f"c_{k}": "yes" for k in keys["sign_in"]})
    assert signed.status_code == 303, signed.text
    assert post_form(surgeon, case_url, f"{case_url}/status", {"to": "in_theatre"}).status_code == 303
    note = {"procedure_performed": "Open appendicectomy", "findings": "Perforated appendix, local pus",
            "blood_loss_ml": "80", "post_op_instructions": "IV antibiotics 48 h"}
    unsigned = post_form(surgeon, case_url, f"{case_url}/note", {**note, "findings": ""})
    assert unsigned.status_code == 422 and 'id="findings-error"' in unsigned.text
    written = post_form(surgeon, case_url, f"{case_url}/note", note)
    assert written.status_code == 303
    shown = surgeon.get(case_url)
    assert "Perforated appendix" in shown.text and 'id="note-signed"' in shown.text

    timeline = surgeon.get(f"{chart}/timeline?kind=surgery").text
    assert "Operation: Appendicectomy (in theatre)" in timeline
    assert "Main theatre, Dr Kariuki; checklist 1/3" in timeline
    listed = nurse.get(f"/t/{facility.slug}/theatre", params={"day": "2026-11-25"})
    assert listed.status_code == 200 and "Appendicectomy" in listed.text and "Checklist 1/3" in listed.text
    assert "09:30" in listed.text
    assert 'id="count-MAIN">1<' in listed.text
    no_inline_script(listed.text)
    assert surgeon.get(f"/t/{facility.slug}/theatre", params={"day": "25/11"}).status_code == 400

    moved = {"procedure": "Appendicectomy", "procedure_code": "APPX", "planned_on": "2026-11-25",
             "planned_time": "07:45", "theatre": "MAT", "surgeon": "Dr Kariuki", "urgency": "urgent",
             "anaesthesia": "general"}
    loaded = surgeon.get(case_url).text
    moved["version_id"] = re.search(r'id="correct-booking-form".*?name="version_id" value="([^"]+)"', loaded,
                                    re.S).group(1)
    unexplained = post_form(surgeon, case_url, f"{case_url}/correction", moved)
    assert unexplained.status_code == 422 and 'id="reason-error"' in unexplained.text
    assert 'value="07:45"' in unexplained.text  # what was typed is kept
    corrected = post_form(surgeon, case_url, f"{case_url}/correction", {**moved, "reason": "main theatre flooded"})
    assert corrected.status_code == 303, corrected.text
    day = surgeon.get(f"/t/{facility.slug}/theatre", params={"day": "2026-11-25"}).text
    assert "07:45" in day and day.index("Maternity theatre") < day.index("Appendicectomy")
    withdrawn = post_form(surgeon, case_url, f"{case_url}/entered-in-error", {"reason": "booked on the wrong patient"})
    assert withdrawn.status_code == 303 and withdrawn.headers["location"].endswith("done=case-withdrawn")
    assert "Appendicectomy" not in surgeon.get(f"/t/{facility.slug}/theatre", params={"day": "2026-11-25"}).text
    assert surgeon.get(case_url).status_code == 404
    assert surgeon.get(f"/t/{facility.slug}/theatre/cases/{uuid.uuid4()}").status_code == 404


def test_todays_list_flags_a_case_of_an_earlier_day_nobody_closed(signed_in, db, facility, author):
    patient, principal = admitted(db, facility.slug, author), principal_of(author, facility.slug)
    booking = {"procedure": "Hernia repair", "theatre": "MAIN", "surgeon": "Dr Kariuki", "urgency": "elective",
               "anaesthesia": "spinal", "planned_at": dt.datetime.now(dt.UTC) - dt.timedelta(hours=50)}
    with db.tenant(facility.slug) as conn:
        forgotten = surgery.book(conn, principal, patient, SurgeryIn.model_validate(booking))
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    today = nurse.get(f"/t/{facility.slug}/theatre")
    assert today.status_code == 200 and f'id="unclosed-{forgotten["root_id"]}"' in today.text
    assert "Not closed since" in today.text and "Hernia repair" in today.text
    no_inline_script(today.text)
    own_day = forgotten["planned_at"].astimezone(facility_timezone(db, facility.slug))
    earlier = nurse.get(f"/t/{facility.slug}/theatre", params={"day": own_day.date().isoformat()}).text
    assert "Hernia repair" in earlier and "unclosed-" not in earlier


def test_the_ward_reads_the_operation_and_its_post_operative_instructions_on_the_chart(signed_in, db, facility,
                                                                                       author):
    """Back on the ward, the nurse opens the chart, not the theatre list: the operation is there, linking to its
    case, with the note's post-operative instructions, the read audited; a chart with no operation shows no card
    and notes no read of one."""
    patient, principal = admitted(db, facility.slug, author), principal_of(author, facility.slug)
    untouched = admitted(db, facility.slug, author)
    booking = {"procedure": "Laparotomy", "theatre": "MAIN", "surgeon": "Dr Kariuki", "urgency": "emergency",
               "anaesthesia": "general", "planned_at": dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)}
    with db.tenant(facility.slug) as conn:
        case = surgery.book(conn, principal, patient, SurgeryIn.model_validate(booking))["root_id"]
        surgery.record_phase(conn, principal, case, "sign_in",
                             PhaseIn(confirmed=[k for k, _ in surgery.PHASES["sign_in"].items]))
        surgery.move(conn, principal, case, "in_theatre")
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    chart = nurse.get(f"/t/{facility.slug}/patients/{patient}/chart")
    assert chart.status_code == 200 and f'href="/t/{facility.slug}/theatre/cases/{case}"' in chart.text
    assert "No operation note signed yet" in chart.text
    with db.tenant(facility.slug) as conn:
        surgery.write_note(conn, principal, case, OperationNoteIn(
            procedure_performed="Laparotomy, small bowel resection", findings="Strangulated loop", blood_loss_ml=200,
            post_op_instructions="Nil by mouth 24 h; NG tube on free drainage; hourly urine output"))
    chart = nurse.get(f"/t/{facility.slug}/patients/{patient}/chart")
    assert "After the operation: Nil by mouth 24 h; NG tube on free drainage" in chart.text
    no_inline_script(chart.text)
    read = {e.event_type for e in audit.patient_access_log(db, facility.slug, patient)}
    assert {"record.surgery.read", "record.operation_note.read"} <= read
    other = nurse.get(f"/t/{facility.slug}/patients/{untouched}/chart")
    assert other.status_code == 200 and 'id="operations"' not in other.text
    assert "record.surgery.read" not in {e.event_type for e in audit.patient_access_log(db, facility.slug, untouched)}


def test_the_sign_in_has_the_records_allergies_beside_it(signed_in, db, facility, author):
    """The Sign In asks whether the patient has a known allergy: the case's page gives the record's answer (the read
    audited), where the theatre nurse had only the patient's word; a patient with none says so."""
    patient, principal = admitted(db, facility.slug, author), principal_of(author, facility.slug)
    other = admitted(db, facility.slug, author)
    booking = {"procedure": "Hernia repair", "theatre": "MAIN", "surgeon": "Dr Kariuki", "urgency": "elective",
               "anaesthesia": "spinal", "planned_at": dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)}
    with db.tenant(facility.slug) as conn:
        service.add_allergy(conn, principal, patient, AllergyIn(substance="Penicillin", reaction="Anaphylaxis",
                                                                criticality="high"))
        case = surgery.book(conn, principal, patient, SurgeryIn.model_validate(booking))["root_id"]
        clear = surgery.book(conn, principal, other, SurgeryIn.model_validate(booking))["root_id"]
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    page = nurse.get(f"/t/{facility.slug}/theatre/cases/{case}")
    assert page.status_code == 200, page.text
    allergies = re.search(r'id="case-allergies">(.*?)</dd>', page.text, re.S).group(1)
    assert "Penicillin" in allergies and "Anaphylaxis" in allergies and "high criticality" in allergies
    assert "record.allergy.read" in {e.event_type for e in audit.patient_access_log(db, facility.slug, patient)}
    assert "None recorded" in nurse.get(f"/t/{facility.slug}/theatre/cases/{clear}").text


def test_a_theatres_count_is_of_the_cases_it_still_runs(signed_in, db, facility, author):
    """A theatre whose one case was cancelled reads 0 to run, '1 cancelled' beside it, not 1."""
    patient, principal = admitted(db, facility.slug, author), principal_of(author, facility.slug)
    booking = {"procedure": "Incision and drainage", "theatre": "MAT", "surgeon": "Dr Kariuki", "urgency": "elective",
               "anaesthesia": "local", "planned_at": "2026-12-02T14:00:00+03:00"}
    with db.tenant(facility.slug) as conn:
        case = surgery.book(conn, principal, patient, SurgeryIn.model_validate(booking))["root_id"]
        surgery.move(conn, principal, case, "cancelled", reason="patient had eaten")
    listed = signed_in("nurse", facility.slug, ward="GEN").get(f"/t/{facility.slug}/theatre",
                                                                params={"day": "2026-12-02"}).text
    assert 'id="count-MAT">0<' in listed and "1 cancelled" in listed and "Incision and drainage" in listed
