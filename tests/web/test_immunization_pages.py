"""Immunizations in the tenant portal: the chart's Immunizations tab (the schedule card, the form a nurse records a
dose with, the doses with their corrections), a dose too early said not to count, a refused form beside its field
with nothing written, the facility's children due or overdue, and the refusals — another facility's session, a
guessed id, a registrar."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import EncounterIn, PatientIn
from appliance.substrate.principal import Principal
from tests.web.test_portal import post_form, withdrawn_on_tab


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Immunization Clinic")


@pytest.fixture(scope="module")
def elsewhere(tenant_factory):
    return tenant_factory(name="Elsewhere Immunization Clinic")


@pytest.fixture(scope="module")
def baby(db, facility, person_factory) -> dict:
    """A boy of seven weeks, at the clinic today: every birth and six-week dose owed."""
    author = person_factory("clinician", facility.slug)
    principal = Principal(account_id=author.account_id, kind="staff", display_name="Dr Immunize",
                          tenant=facility.slug, role="clinician")
    born = dt.date.today() - dt.timedelta(days=49)
    with db.tenant(facility.slug) as conn:
        found = service.register_patient(conn, principal, PatientIn.model_validate(
            {"family_name": "Kiprono", "given_names": "Baraka", "birth_date": born, "sex": "male",
             "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}], "phone": "+254711000333",
             "next_of_kin": [{"name": "Chebet Kiprono", "relationship": "mother", "phone": "+254711000333"}]}))
        service.open_encounter(conn, principal, found["id"], EncounterIn(encounter_class="outpatient"))
    return {"id": found["id"], "born": born, "path": f"/t/{facility.slug}/patients/{found['id']}/immunizations"}


def _doses(db, facility, patient_id) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM entry WHERE patient_id = :p AND kind = 'immunization'"),
                            {"p": patient_id}).scalar()


def test_the_tab_shows_the_schedule_and_a_dose_too_early_is_recorded_but_said_not_to_count(signed_in, db, facility,
                                                                                             baby):
    clinician = signed_in("clinician", facility.slug)
    chart = clinician.get(f"/t/{facility.slug}/patients/{baby['id']}/chart")
    assert f'href="{baby["path"]}"' in chart.text, "the chart links its Immunizations tab"
    page = clinician.get(baby["path"])
    assert page.status_code == 200, page.text
    assert 'id="dose-BCG-1"' in page.text and "Overdue" in page.text and 'name="_csrf_token"' in page.text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) and " onclick=" not in page.text
    at_four_weeks = (baby["born"] + dt.timedelta(days=28)).isoformat()
    sent = post_form(clinician, baby["path"], baby["path"], {
        "vaccine": "PENTA", "dose_number": "1", "given_on": at_four_weeks, "status": "completed",
        "source": "historical", "lot_number": "", "note": ""})
    assert sent.status_code == 303 and sent.headers["location"].endswith("?done=dose-too-early"), sent.text
    after = clinician.get(sent.headers["location"])
    assert "does not count" in after.text and "too early: does not count (given at 4 weeks of age" in after.text
    refused = post_form(clinician, baby["path"], baby["path"], {
        "vaccine": "OPV", "dose_number": "1", "given_on": dt.date.today().isoformat(), "status": "not_done",
        "source": "administered"})
    assert refused.status_code == 422, refused.text
    assert 'id="not_done_reason-error"' in refused.text and "A dose not given needs its reason" in refused.text
    assert _doses(db, facility, baby["id"]) == 1
    # The card said it was at four weeks; it was at six: the correction counts it, the first version kept.
    with db.tenant(facility.slug) as conn:
        dose_id = conn.execute(sa.text("SELECT id FROM entry WHERE patient_id = :p AND kind = 'immunization'"),
                               {"p": baby["id"]}).scalar()
    form = clinician.get(f"{baby['path']}/{dose_id}/correct")
    assert form.status_code == 200 and "Save the correction" in form.text and at_four_weeks in form.text
    corrected = post_form(clinician, f"{baby['path']}/{dose_id}/correct", f"{baby['path']}/{dose_id}", {
        "vaccine": "PENTA", "dose_number": "1", "given_on": (baby["born"] + dt.timedelta(days=42)).isoformat(),
        "status": "completed", "source": "historical", "reason": "misread the card"})
    assert corrected.status_code == 303 and corrected.headers["location"].endswith("?done=dose-corrected")
    assert "corrected" in clinician.get(baby["path"]).text
    # The timeline shows the dose at its corrected day.
    timeline = clinician.get(f"/t/{facility.slug}/patients/{baby['id']}/timeline", params={"kind": "immunization"})
    assert timeline.status_code == 200 and "Vaccine PENTA, dose 1" in timeline.text
    # Withdrawn, the dose leaves the doses and is listed under them.
    corrected_id = re.search(r'id="given-([0-9a-f-]{36})"', clinician.get(baby["path"]).text).group(1)
    withdrawn_on_tab(clinician, baby["path"], corrected_id, "another child's card",
                     what="Pentavalent (DTP-HepB-Hib) dose 1")


def test_the_children_due_list_names_the_child_and_a_registrar_sees_neither_page(signed_in, facility, baby):
    nurse = signed_in("nurse", facility.slug)
    listed = nurse.get(f"/t/{facility.slug}/immunizations/due", params={"state": "overdue"})
    assert listed.status_code == 200, listed.text
    assert f'id="child-{baby["id"]}"' in listed.text and "KIPRONO" in listed.text
    # Whom to call, on the row: the registration's phone, and the mother (her number, the same, not said twice).
    row = listed.text.split(f'id="child-{baby["id"]}"')[1].split("</tr>")[0]
    assert '<p class="small trace">+254711000333 · Chebet Kiprono (mother)</p>' in row
    assert nurse.get(f"/t/{facility.slug}/immunizations/due", params={"state": "late"}).status_code == 400
    registrar = signed_in("registrar", facility.slug)
    for path in (baby["path"], f"/t/{facility.slug}/immunizations/due"):
        answer = registrar.get(path)
        assert answer.status_code == 403 and "Kiprono" not in answer.text, path


def test_another_facilitys_session_and_a_guessed_id_are_refused(signed_in, facility, elsewhere, baby):
    intruder = signed_in("clinician", elsewhere.slug)
    for path in (baby["path"], f"/t/{facility.slug}/immunizations/due"):
        answer = intruder.get(path)
        assert answer.status_code == 403 and "Kiprono" not in answer.text, path
    assert intruder.get(f"/t/{elsewhere.slug}/patients/{baby['id']}/immunizations").status_code == 404
    clinician = signed_in("clinician", facility.slug)
    guessed = f"/t/{facility.slug}/patients/{uuid.uuid4()}/immunizations"
    assert clinician.get(guessed).status_code == 404
    assert clinician.get(f"{baby['path']}/{uuid.uuid4()}/correct").status_code == 404
    for action in (f"{baby['path']}/{uuid.uuid4()}/entered-in-error", f"{baby['path']}/{uuid.uuid4()}"):
        refused = post_form(clinician, baby["path"], action, {"reason": "a guess at it", "vaccine": "BCG",
                                                              "status": "completed", "source": "administered"})
        assert refused.status_code == 404, (action, refused.text)
