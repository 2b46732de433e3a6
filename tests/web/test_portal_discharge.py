"""The discharge summary in the portals over in-process HTTP: opened from the inpatient stay on the chart,
pre-filled from the stay's record, refused with the form kept, signed, printed, corrected by its author,
and read by the patient on their own portal (and nothing of anyone else's)."""

from __future__ import annotations

import re
import uuid

import pytest

from appliance.layers.clinical import discharge, service
from appliance.layers.clinical.schemas import AllergyIn, ConditionIn, MedicationIn, PatientIn, ResultIn
from appliance.layers.operations import adt
from appliance.substrate import audit
from tests.layers.clinical.conftest import CLINICAL_CONFIG
from tests.web.test_auth import csrf_token
from tests.web.test_me import _patient_client
from tests.web.test_me_release import HIV
from tests.web.test_portal import post_form, principal_of

WARDS = [{"code": "GEN", "name": "General ward", "kind": "inpatient", "beds": 3}]


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Lakeside Discharge Hospital", wards=WARDS)


@pytest.fixture(scope="module")
def author(person_factory, facility):
    return person_factory("clinician", facility.slug)


def _admit(db, facility, principal, person: tuple[str, str, str, str], reason: str) -> tuple[uuid.UUID, dict]:
    """A patient registered (family name, given names, birth date, sex) with a one-identity subject, admitted to
    the general ward: their id and the stay."""
    family_name, given_names, birth_date, sex = person
    data = PatientIn.model_validate({"family_name": family_name, "given_names": given_names, "birth_date": birth_date,
                                     "sex": sex, "identifiers": [{"system": "national_id",
                                                                  "value": "NID-" + uuid.uuid4().hex[:8]}]})
    linked = service.with_subject(db, data, tenant=facility.slug)
    with db.tenant(facility.slug) as conn:
        pid = service.register_patient(conn, principal, linked)["id"]
        return pid, adt.admit(conn, principal, pid, ward_code="GEN", reason=reason)


@pytest.fixture(scope="module")
def inpatient(db, facility, author) -> dict:
    """Amina, admitted to a bed on the general ward with pneumonia, on amoxicillin, allergic to sulfa drugs."""
    principal = principal_of(author, facility.slug)
    pid, stay = _admit(db, facility, principal, ("Hassan", "Amina", "1979-05-02", "female"), "Fever and cough")
    with db.tenant(facility.slug) as conn:
        service.add_condition(conn, principal, pid, ConditionIn(code="J18.9", encounter_id=stay["encounter_id"]))
        service.add_allergy(conn, principal, pid, AllergyIn(substance="Sulfonamides", reaction="rash"))
        service.request_medication(conn, principal, pid, MedicationIn(
            drug="Amoxicillin", dose=500, dose_unit="mg", route="oral", frequency="every 8 hours", duration_days=5,
            encounter_id=stay["encounter_id"]))
    return {"id": pid, "stay": stay["encounter_id"], "base": f"/t/{facility.slug}/patients/{pid}"}


def _client_of(app, db, person):
    from litestar.testing import TestClient

    from appliance.substrate import identity

    with db.control() as conn:
        token = identity.start_session(conn, person.account_id, mfa_passed=True)
    client = TestClient(app=app, raise_server_exceptions=False)
    client.cookies.set("healthos_session", token)
    return client


WRITTEN = {"hospital_course": "Treated with oral amoxicillin; afebrile from day 2, eating well.",
           "condition": "improved", "instructions": "Finish the amoxicillin. Come back if the fever returns.",
           "follow_up": "Medical outpatient clinic", "follow_up_date": "2026-12-11"}


def test_a_clinician_opens_it_from_the_stay_fixes_a_refusal_signs_and_prints(app, db, facility, author, inpatient):
    doctor = _client_of(app, db, author)
    base = inpatient["base"]
    chart = doctor.get(f"{base}/chart")
    assert chart.status_code == 200
    write = f"{base}/discharge-summaries/new?encounter_id={inpatient['stay']}"
    assert write.replace("&", "&amp;") in chart.text or write in chart.text
    form = doctor.get(write)
    assert form.status_code == 200, form.text
    assert "General ward" in form.text and "Fever and cough" in form.text
    assert "Pneumonia, unspecified (J18.9)" in form.text
    assert "Amoxicillin 500 mg oral, every 8 hours, for 5 days" in form.text and "Sulfonamides: rash" in form.text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", form.text) and not re.search(r"\son[a-z]+=", form.text)

    prefilled = {"diagnoses": "Pneumonia, unspecified (J18.9)", "medications": "Amoxicillin 500 mg",
                 "allergies": "Sulfonamides: rash", "encounter_id": str(inpatient["stay"])}
    refused = post_form(doctor, write, f"{base}/discharge-summaries",
                        {**prefilled, **WRITTEN, "hospital_course": "  ", "condition": "", "follow_up": ""})
    assert refused.status_code == 422
    assert "Hospital course is required by the Discharge summary template" in refused.text
    assert "Condition at discharge is required" in refused.text
    # A label with brackets of its own is named as the others are, not by the template's key.
    assert "Follow-up (when and where) is required" in refused.text and "follow_up&#39;" not in refused.text
    assert "Finish the amoxicillin. Come back if the fever returns." in refused.text  # what was typed is kept
    with db.tenant(facility.slug) as conn:
        assert service.list_notes(conn, principal_of(author, facility.slug), inpatient["id"]) == []

    signed = post_form(doctor, write, f"{base}/discharge-summaries", {**prefilled, **WRITTEN})
    assert signed.status_code == 303, signed.text
    location = signed.headers["location"]
    assert re.search(r"/discharge-summaries/[0-9a-f-]{36}\?done=discharge-signed$", location)
    page = doctor.get(location)
    assert page.status_code == 200
    html = page.text
    assert "Discharge summary signed" in html and 'href="/static/discharge.css"' in html
    assert "Treated with oral amoxicillin" in html and "Improved" in html and "11 Dec 2026" in html
    assert "Signed by" in html and "Lakeside Discharge Hospital" in html and "General ward" in html
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html) and not re.search(r"\s(?:on[a-z]+|style)=", html)
    css = doctor.get("/static/discharge.css").text
    assert "@media print" in css and ".banner" in css.split("@media print")[1]

    summary_id = re.search(r"/discharge-summaries/([0-9a-f-]{36})", location).group(1)
    chart = doctor.get(f"{base}/chart").text
    assert f"{base}/discharge-summaries/{summary_id}" in chart and "signed" in chart
    assert doctor.get(write, follow_redirects=False).headers["location"].endswith(summary_id)  # not written twice
    notes = doctor.get(f"{base}/notes").text
    assert "Hospital course" in notes and f"/discharge-summaries/{summary_id}" in notes
    assert f"/notes/{summary_id}/correct" not in notes  # corrected on its own page, by its own template


def test_the_author_corrects_it_with_a_reason_and_no_one_else_does(app, db, signed_in, facility, author, inpatient):
    doctor = _client_of(app, db, author)
    base = inpatient["base"]
    with db.tenant(facility.slug) as conn:
        (summary,) = discharge.list_summaries(conn, principal_of(author, facility.slug), inpatient["id"])
    page = f"{base}/discharge-summaries/{summary['id']}/correct"
    values = {key: str(value) for key, value in summary["fields"].items()}
    unreasoned = post_form(doctor, page, page, {**values, "follow_up": "Chest clinic"})
    assert unreasoned.status_code == 422 and "Say why the summary is corrected" in unreasoned.text
    assert "Chest clinic" in unreasoned.text

    corrected = post_form(doctor, page, page, {**values, "follow_up": "Chest clinic", "reason": "clinic changed"})
    assert corrected.status_code == 303, corrected.text
    shown = doctor.get(corrected.headers["location"]).text
    assert "Chest clinic" in shown and "Corrected by" in shown and "clinic changed" in shown
    assert "/history" in shown  # the earlier version stays in its history

    colleague = signed_in("clinician", facility.slug)
    current = re.search(r"/discharge-summaries/([0-9a-f-]{36})/correct", shown).group(1)
    # Told before typing a correction: the form opened to anyone and refused only what they had written.
    opened = colleague.get(f"{base}/discharge-summaries/{current}/correct")
    assert opened.status_code == 409 and "corrected only by the clinician who signed it" in opened.text
    assert "Chest clinic" in opened.text and f'/discharge-summaries/{current}/correct"' not in opened.text  # no form
    refused = post_form(colleague, f"{base}/chart", f"{base}/discharge-summaries/{current}/correct",
                        {**values, "reason": "my view"})
    assert refused.status_code == 409 and "corrected only by the clinician who signed it" in refused.text


def test_the_patient_reads_and_prints_their_own_and_nothing_else(app, db, signed_in, facility, author, inpatient):
    desk = signed_in("registrar", facility.slug)
    email = f"amina-{uuid.uuid4().hex[:6]}@example.org"
    page = desk.get(inpatient["base"])
    invited = desk.post(f"{inpatient['base']}/portal-invite",
                        data={"email": email, "_csrf_token": csrf_token(page.text)})
    assert invited.status_code == 200, invited.text
    amina = _patient_client(db, app, email)
    record = amina.get("/me")
    assert record.status_code == 200
    link = re.search(rf'href="(/me/discharge-summaries/{facility.slug}/([0-9a-f-]{{36}}))"', record.text)
    assert link and "General ward" in record.text
    def patients_reads() -> int:
        return sum(1 for e in audit.patient_access_log(db, facility.slug, inpatient["id"])
                   if e.event_type == "record.discharge_summary.read" and e.who.get("kind") == "patient")

    before = patients_reads()
    opened = amina.get(link.group(1))
    assert opened.status_code == 200
    assert "HASSAN" in opened.text and "Treated with oral amoxicillin" in opened.text and "data-print" in opened.text
    assert patients_reads() == before + 1  # the patient's read is audited at the facility

    assert amina.get(f"/me/discharge-summaries/{facility.slug}/{uuid.uuid4()}").status_code == 404
    assert amina.get(f"/me/discharge-summaries/not_a_facility/{link.group(2)}").status_code == 404
    assert signed_in("clinician", facility.slug).get(link.group(1)).status_code == 403  # staff have no /me
    download = amina.get("/me/record.json").json()
    (theirs,) = [f for f in download["facilities"] if f["facility"] == facility.name]
    assert theirs["discharge_summaries"][0]["Hospital course"].startswith("Treated with oral amoxicillin")


def test_one_signed_on_the_wrong_patient_is_marked_entered_in_error(app, db, facility, author, inpatient):
    doctor = _client_of(app, db, author)
    base = inpatient["base"]
    with db.tenant(facility.slug) as conn:
        (summary,) = discharge.list_summaries(conn, principal_of(author, facility.slug), inpatient["id"])
    page = f"{base}/discharge-summaries/{summary['id']}"
    action = f"{page}/entered-in-error"
    unreasoned = post_form(doctor, page, action, {"reason": ""})
    assert unreasoned.status_code == 422 and "Say why the summary is entered in error" in unreasoned.text
    # The chart's one 'entered in error' form (ui.entered_in_error), opened on its refusal.
    assert "<details open>\n  <summary>Signed on the wrong patient or stay? Mark entered in error" in unreasoned.text
    assert 'id="discharge-withdraw-reason"' in unreasoned.text
    withdrawn = post_form(doctor, page, action, {"reason": "signed on the wrong patient"})
    assert withdrawn.status_code == 303 and withdrawn.headers["location"].endswith("/chart?done=discharge-withdrawn")
    assert doctor.get(page).status_code == 404
    chart = doctor.get(withdrawn.headers["location"]).text
    assert "marked entered in error" in chart and "Write discharge summary" in chart
    history = doctor.get(f"{base}/entries/{summary['id']}/history")
    assert history.status_code == 200 and "signed on the wrong patient" in history.text
    notes = doctor.get(f"{base}/notes").text  # listed with the notes withdrawn: who, when, why
    assert "signed on the wrong patient" in notes.split(f'id="withdrawn-{summary["id"]}"')[1].split("</li>")[0]


@pytest.fixture(scope="module")
def testing_facility(tenant_factory):
    """A hospital whose laboratory catalogue has an HIV test (REL-001 keeps its result to be given in person)."""
    return tenant_factory(name="Hillside Testing Hospital", wards=WARDS,
                          **{**CLINICAL_CONFIG, "catalogue": [*CLINICAL_CONFIG["catalogue"], HIV]})


def _admitted_with_an_hiv_test(db, signed_in, facility, author) -> dict:
    """Baraka, admitted with pneumonia, his reactive HIV test and a glucose taken and reviewed in the stay, and
    invited to the portal; no clinician has given him the HIV result yet."""
    principal = principal_of(author, facility.slug)
    pid, stay = _admit(db, facility, principal, ("Mwangi", "Baraka", "1984-02-11", "male"), "Cough for three weeks")
    with db.tenant(facility.slug) as conn:
        tested = [service.record_result(conn, principal, pid, ResultIn(code=code, value=value,
                                                                      encounter_id=stay["encounter_id"]))
                  for code, value in (("68961-2", "reactive"), ("2345-7", "5.2"))]
        for taken in tested:
            service.sign_result(conn, principal, pid, taken["id"], None)
    base = f"/t/{facility.slug}/patients/{pid}"
    desk = signed_in("registrar", facility.slug)
    email = f"baraka-{uuid.uuid4().hex[:6]}@example.org"
    invited = desk.post(f"{base}/portal-invite", data={"email": email, "_csrf_token": csrf_token(desk.get(base).text)})
    assert invited.status_code == 200, invited.text
    return {"id": pid, "stay": stay["encounter_id"], "base": base, "email": email, "hiv": tested[0]["id"]}


def test_a_result_given_in_person_is_left_out_and_the_portal_holds_the_summary_until_it_is_given(
        app, db, signed_in, person_factory, testing_facility, facility):
    author = person_factory("clinician", testing_facility.slug)
    baraka = _admitted_with_an_hiv_test(db, signed_in, testing_facility, author)
    doctor, base = _client_of(app, db, author), baraka["base"]
    write = f"{base}/discharge-summaries/new?encounter_id={baraka['stay']}"
    form = doctor.get(write)
    assert form.status_code == 200, form.text
    prefilled = form.text.split('name="results"')[1].split("</textarea>")[0]
    assert "Glucose 5.2" in prefilled and "HIV" not in prefilled and "reactive" not in prefilled
    told = form.text.split('id="held-back"')[1].split("</div>")[0]
    assert "Left out of Key results:</strong> HIV rapid test, taken" in told and "(REL-001)" in told
    assert "given to the patient in person" in told and "Do not type it into this summary" in told
    assert f'href="{base}/results"' in told

    # Typed back all the same, in the course: the portal must not be where he learns it.
    course = "Pneumonia treated with amoxicillin. HIV rapid test reactive; referred to the CCC."
    signed = post_form(doctor, write, f"{base}/discharge-summaries", {
        **WRITTEN, "hospital_course": course, "diagnoses": "Pneumonia", "medications": "Amoxicillin",
        "allergies": "No known allergies.", "results": "Glucose 5.2 mmol/L", "encounter_id": str(baraka["stay"])})
    assert signed.status_code == 303, signed.text
    summary_id = re.search(r"/discharge-summaries/([0-9a-f-]{36})", signed.headers["location"]).group(1)
    mine = f"/me/discharge-summaries/{testing_facility.slug}/{summary_id}"
    signed_page = doctor.get(signed.headers["location"]).text
    assert "unless said below, their portal" in signed_page
    assert "Not on the patient's portal yet" in signed_page.split('id="discharge-held"')[1].split("</p>")[0]

    def patients_reads() -> int:  # of this summary, by Baraka
        return sum(1 for e in audit.read_events(db, testing_facility.slug, event_type="record.discharge_summary.read")
                   if summary_id in str(e["event"]["entity"]) and "patient" in str(e["event"]["agent"]))

    me = _patient_client(db, app, baraka["email"])
    held = me.get("/me")
    assert held.status_code == 200
    assert "HIV" not in held.text and "reactive" not in held.text and "CCC" not in held.text
    assert mine not in held.text and "will be given to you at your next visit" in held.text
    opened = me.get(mine)  # a link kept, or typed: the same hold, nothing of what it says
    assert opened.status_code == 200 and 'id="discharge-held"' in opened.text
    assert "HIV" not in opened.text and "Pneumonia treated" not in opened.text and "data-print" not in opened.text
    (part,) = [f for f in me.get("/me/record.json").json()["facilities"] if f["facility"] == testing_facility.name]
    (kept,) = part["discharge_summaries"]
    assert "Hospital course" not in kept and kept["held"].startswith("Your discharge summary will be given")
    assert patients_reads() == 0  # not shown, so not read; what held it is noted as read, naming the summary
    holds = [e for e in audit.read_events(db, testing_facility.slug)
             if e["type"] == "record.result.read" and summary_id in str(e)]
    assert holds

    # Another patient, a guessed id and a facility not his are refused; staff of another facility too.
    neighbour = _admitted_with_an_hiv_test(db, signed_in, testing_facility, author)  # another patient, same ward
    assert _patient_client(db, app, neighbour["email"]).get(mine).status_code == 404
    assert me.get(f"/me/discharge-summaries/{testing_facility.slug}/{uuid.uuid4()}").status_code == 404
    assert me.get(f"/me/discharge-summaries/{facility.slug}/{summary_id}").status_code == 404
    elsewhere = signed_in("clinician", facility.slug)
    assert elsewhere.get(f"{base}/discharge-summaries/{summary_id}").status_code in (403, 404)

    # Given in person, and recorded on the Results page: the summary is his to read.
    given = post_form(doctor, f"{base}/results", f"{base}/results/{baraka['hiv']}/disclose",
                      {"note": "Post-test counselling; referred to the CCC"})
    assert given.status_code == 303, given.text
    assert 'id="discharge-held"' not in doctor.get(write).text  # the stay's summary opens, now on the portal
    shown = me.get("/me").text
    assert mine in shown and "will be given to you at your next visit" not in shown
    read = me.get(mine)
    assert read.status_code == 200 and "HIV rapid test reactive" in read.text and 'id="discharge-held"' not in read.text
    assert patients_reads() == 2  # the record page listing it, then its own page
