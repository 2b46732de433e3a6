"""The nurse's journey in a real browser (Debian's chromium, headless) against the appliance served over
HTTP: from the ward worklist to a patient's observations, a set of vital signs with a high NEWS2, and the
escalation at the top of the worklist; then the dose due on the MAR and the shift handover."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import EncounterIn, MedicationIn, PatientIn, VitalSignsIn
from appliance.substrate import record
from appliance.substrate.principal import Principal
from tests.conftest import facility_today
from tests.e2e.conftest import Journey, Watch
from tests.e2e.test_journeys import TABLET, new_page, sign_in

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ward_patient(db, clinic, person_factory) -> dict:
    """A man admitted to the general ward this morning with a chest infection, on antibiotics, his pulse
    and temperature taken on arrival."""
    author = person_factory("clinician", clinic.slug)
    doctor = Principal(account_id=author.account_id, kind="staff", display_name="Test clinician", tenant=clinic.slug,
                       role="clinician")
    with db.tenant(clinic.slug) as conn:
        patient = service.register_patient(conn, doctor, PatientIn.model_validate({
            "family_name": "Mwangi", "given_names": "Daniel Kiprop", "birth_date": "1958-07-03", "sex": "male",
            "identifiers": [{"system": "national_id", "value": "31077415"}]}))
        encounter = service.open_encounter(conn, doctor, patient["id"], EncounterIn(
            encounter_class="inpatient", status="in_progress", ward_code="GEN",
            reason="Community-acquired pneumonia"))
        # at admission only his pulse and temperature were taken: an incomplete set, "NEWS2 1+"
        service.record_vitals(conn, doctor, patient["id"], VitalSignsIn(heart_rate_bpm=96, temperature_c=37.9,
                                                                         encounter_id=encounter["id"]))
        service.request_medication(conn, doctor, patient["id"], MedicationIn(
            drug="Amoxicillin", dose=500, dose_unit="mg", route="oral", frequency="every 8 hours", duration_days=5,
            encounter_id=encounter["id"]))
    return {"id": patient["id"]}


def test_nurse_records_a_high_news2_and_the_worklist_escalates(browser, live_server, clinic, person_factory,
                                                                ward_patient):
    journey, watch = Journey("nurse-news2-escalation"), Watch()
    nurse = person_factory("nurse", clinic.slug, ward="GEN")
    context, page = new_page(browser, watch)
    page.set_viewport_size(TABLET)  # a ward tablet
    sign_in(page, live_server, nurse)

    # the ward worklist: Mr Mwangi is there, not yet escalated
    page.goto(f"{live_server}/t/{clinic.slug}/patients")
    page.get_by_role("link", name="Ward worklist").click()
    page.wait_for_url(re.compile(r"/ward$"))
    row = page.locator(f"tr[data-patient='{ward_patient['id']}']")
    assert "MWANGI, Daniel Kiprop" in row.inner_text()
    assert page.locator("#escalations-title").count() == 0
    journey.shot(page, "worklist-before")

    # his observations: a set of vital signs with a high NEWS2
    row.get_by_role("link", name="MWANGI, Daniel Kiprop", exact=True).click()
    page.wait_for_url(re.compile(rf"/patients/{ward_patient['id']}/observations$"))
    journey.shot(page, "observations-form")
    form = page.locator("form.vitals-form")  # the charts beside it are labelled by the same names
    form.get_by_label("Respiration rate").fill("26")
    form.get_by_label("SpO₂", exact=True).fill("92")
    form.get_by_label("Air or oxygen").select_option("true")
    form.get_by_label("Oxygen flow").fill("4")
    form.get_by_label("Systolic BP").fill("104")
    form.get_by_label("Diastolic BP").fill("62")
    form.get_by_label("Pulse").fill("118")
    form.get_by_label("Consciousness (ACVPU)").select_option("A")
    form.get_by_label("Temperature").fill("38.7")
    page.get_by_role("button", name="Save observations").click()
    page.wait_for_url(re.compile(r"/observations\?done=vitals$"))
    # RR 26 (3) + SpO2 92 (2) + oxygen (2) + systolic 104 (1) + pulse 118 (2) + temperature 38.7 (1) = 11
    assert "NEWS2 11 · High" in page.locator("#news2-latest").inner_text()
    # what the badge's number and colour mean, in words: the band and the parameter that scored 3
    explained = page.locator(".news2-explained").inner_text()
    assert "high clinical risk (total 7 or more)" in explained and "Resp. rate 3 (a red score)" in explained
    assert "Emergency response" in page.locator(".response").inner_text()
    assert page.locator("svg.plot").count() >= 2
    journey.shot(page, "news2-high")
    # on a phone the page fits the screen: the chart's hidden "(an incomplete set...)" labels sat where the
    # scrolled table would end, and the page could be dragged 200 px sideways
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.set_viewport_size(TABLET)

    # back on the worklist, the escalation is at the top, with the response it calls for and a task
    page.get_by_role("link", name="Ward worklist").click()
    page.wait_for_url(re.compile(r"/ward$"))
    escalations = page.locator("section[aria-labelledby=escalations-title]")
    assert "1 patient needs escalation" in escalations.inner_text()
    assert "MWANGI, Daniel Kiprop" in escalations.inner_text()
    assert "Emergency response" in escalations.inner_text()
    first_row = page.locator("table.worklist tbody tr").first
    assert first_row.get_attribute("data-patient") == str(ward_patient["id"])
    assert "NEWS2 11 · High" in first_row.inner_text()
    assert "NEWS2 11 — Emergency response" in first_row.locator("li.task-escalation").inner_text()
    journey.shot(page, "worklist-escalated")

    # the escalation done from the worklist, saying who was told; then the MAR and the handover
    first_row.get_by_label("Who was told, what was done").fill("Medical registrar informed 10:05; reviewing")
    first_row.get_by_role("button", name=re.compile("Done: NEWS2 11")).click()
    page.wait_for_url(re.compile(r"/ward\?ward_code=GEN&done=task$"))
    assert "Task done." in page.locator(".notice").inner_text()
    assert page.locator("li.task-escalation").count() == 0
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{ward_patient['id']}/mar")
    assert "Amoxicillin 500 mg oral" in page.locator("article.mar-line").first.inner_text()
    journey.shot(page, "mar")
    # on a phone the MAR fits the screen: the page was wider than it, each dose's Record button off its edge.
    # Tomorrow's page, which has the course's three doses to record whatever the hour: prescribed after 22:00,
    # today's page has none left (the doses fall at 06:00, 14:00 and 22:00), and CI runs at any hour.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{ward_patient['id']}/mar"
              f"?day={(facility_today() + dt.timedelta(days=1)).isoformat()}")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    record = page.locator("table.doses").first.get_by_role("button", name="Record").first.bounding_box()
    assert record["x"] + record["width"] <= 390, record
    journey.shot(page, "mar-phone")
    page.set_viewport_size(TABLET)
    page.get_by_role("link", name="Shift handover").click()
    page.wait_for_url(re.compile(r"/ward/handover$"))
    assert "MWANGI, Daniel Kiprop" in page.locator("article.handover-patient").first.inner_text()
    # a note with a pasted link to a result: it breaks at the card's edge, the page no wider than the tablet
    reference = "https://lis.lakeshore.local/results?accession=" + "A1B2C3D4E5" * 12
    page.get_by_label("Your handover note").fill(f"Mr Mwangi escalated to the medical registrar; on 4 L oxygen. "
                                                 f"Sputum sent: {reference}")
    page.get_by_role("button", name="Record the handover").click()
    page.wait_for_url(re.compile(r"done=handover$"))
    assert "Handover recorded." in page.locator(".notice").inner_text()
    assert reference in page.locator("li.handover-kept").first.inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= TABLET["width"]
    journey.shot(page, "handover")
    context.close()
    watch.assert_clean()


def test_a_ward_doctor_reconciles_the_medicines_a_patient_came_in_on(browser, live_server, db, clinic,
                                                                     person_factory):
    """Admitted last night, on amlodipine from a clinic visit in August: not on the ward's MAR until the
    doctor continues it from the page the MAR links to."""
    author = person_factory("clinician", clinic.slug)
    doctor = Principal(account_id=author.account_id, kind="staff", display_name="Test clinician", tenant=clinic.slug,
                       role="clinician")
    now = dt.datetime.now(dt.UTC)
    with db.tenant(clinic.slug) as conn:
        patient = service.register_patient(conn, doctor, PatientIn.model_validate({
            "family_name": "Atieno", "given_names": "Rose", "birth_date": "1961-03-09", "sex": "female"}))
        visit = service.open_encounter(conn, doctor, patient["id"], EncounterIn(encounter_class="outpatient"))
        record.append(conn, doctor, "medication_request", patient_id=patient["id"], encounter_id=visit["id"],
                      occurred_at=now - dt.timedelta(days=100), detail={
                          "drug": "Amlodipine", "dose": Decimal(5), "dose_unit": "mg", "route": "oral",
                          "frequency": "once daily", "duration_days": None, "status": "active", "instructions": None,
                          "allergy_override_reason": None, "order_set": None})
        service.open_encounter(conn, doctor, patient["id"], EncounterIn(
            encounter_class="inpatient", status="in_progress", ward_code="GEN", reason="Stroke"))
    journey, watch = Journey("doctor-medicines-reconciliation"), Watch()
    context, page = new_page(browser, watch)
    page.set_viewport_size(TABLET)
    sign_in(page, live_server, author)
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{patient['id']}/mar")
    came_in = page.locator("#came-in-on").inner_text()
    assert "Medicines to reconcile (1)" in came_in and "To reconcile: came in on Amlodipine 5 mg oral" in came_in
    assert page.locator("article.mar-line").count() == 0
    page.get_by_role("link", name="Reconcile on admission").click()
    page.wait_for_url(re.compile(r"/reconciliation$"))
    journey.shot(page, "to-reconcile")
    page.get_by_label("Decision on Amlodipine").select_option("hold")
    page.get_by_role("button", name="Record decisions").click()
    assert "Say why Amlodipine is held." in page.locator(".field-error").first.inner_text()  # kept, beside it
    page.get_by_label("Decision on Amlodipine").select_option("continue")
    page.get_by_role("button", name="Record decisions").click()
    page.wait_for_url(re.compile(r"/reconciliation\?done=reconciled$"))
    assert "Medicines to reconcile (0)" in page.locator("#reconcile-title").inner_text()
    assert "continued" in page.locator("#reconciled").inner_text()
    journey.shot(page, "reconciled")
    page.get_by_role("link", name="Medications given").click()
    assert "Amlodipine 5 mg oral" in page.locator("article.mar-line").first.inner_text()
    assert page.locator("#came-in-on").count() == 0
    # A doctor tied to no ward picks the ward on her phone: the picker's Show sat past the screen's edge, the page
    # dragged sideways; it wraps under the ward's name now.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server}/t/{clinic.slug}/ward?ward_code=MAT")
    show = page.locator("form.inline-form").get_by_role("button", name="Show").bounding_box()
    assert show is not None and show["x"] + show["width"] <= 390, show
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()
    watch.assert_clean(provoked={422})


def test_a_nurse_screens_a_child_on_the_ward_for_acute_malnutrition(browser, live_server, db, clinic, person_factory):
    """A girl of 20 months on the general ward: the nurse's observation form takes her MUAC and the grade of
    the oedema found (++), and the growth line on her chart reads them as severe acute malnutrition."""
    author = person_factory("clinician", clinic.slug)
    doctor = Principal(account_id=author.account_id, kind="staff", display_name="Test clinician", tenant=clinic.slug,
                       role="clinician")
    with db.tenant(clinic.slug) as conn:
        girl = service.register_patient(conn, doctor, PatientIn.model_validate({
            "family_name": "Nyambura", "given_names": "Faith", "sex": "female",
            "birth_date": (dt.date.today() - dt.timedelta(days=610)).isoformat()}))
        service.open_encounter(conn, doctor, girl["id"], EncounterIn(
            encounter_class="inpatient", status="in_progress", ward_code="GEN", reason="Diarrhoea and vomiting"))
    journey, watch = Journey("nurse-child-muac"), Watch()
    nurse = person_factory("nurse", clinic.slug, ward="GEN")
    context, page = new_page(browser, watch)
    page.set_viewport_size(TABLET)
    sign_in(page, live_server, nurse)
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{girl['id']}/observations")
    form = page.locator("form.vitals-form")
    form.get_by_label("Pulse").fill("138")
    form.get_by_label("MUAC").fill("30")  # the tape read in cm by mistake
    form.get_by_label("Bilateral pitting oedema").select_option("2")
    page.get_by_role("button", name="Save observations").click()
    assert "at least 50" in page.locator("#muac_mm-error").inner_text()  # beside the field, the rest kept
    assert form.get_by_label("Pulse").input_value() == "138"
    assert form.get_by_label("Bilateral pitting oedema").input_value() == "2"
    form.get_by_label("MUAC").fill("112")
    page.get_by_role("button", name="Save observations").click()
    page.wait_for_url(re.compile(r"/observations\?done=vitals$"))
    charted = page.locator("table.obs-chart tbody tr").first.inner_text()
    assert "112 mm" in charted and "bilateral ++" in charted
    journey.shot(page, "muac-recorded")
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{girl['id']}/chart")
    assert "MUAC 112 mm, bilateral oedema ++: severe acute malnutrition" in page.locator("#growth-line").inner_text()
    context.close()
    watch.assert_clean(provoked={422})
