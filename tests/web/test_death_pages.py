"""Death certification in the portal (appliance/web/death.py) over in-process HTTP: "Record death" from the
chart, the WHO form refusing what is wrong next to its field with what was typed kept, the printable
certificate (no script of its own, a print stylesheet), "Deceased <date>" on the banner here and at another
facility holding the person's chart, correction and entered in error with a reason, and the deaths still to
certify. Other facilities' sessions and guessed ids on these routes are in tests/web/test_portal.py."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import EncounterIn, PatientIn
from appliance.layers.operations import adt
from tests.conftest import facility_today
from tests.web.test_portal import post_form, principal_of


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Lakeside Referral Hospital")


@pytest.fixture(scope="module")
def elsewhere(tenant_factory):
    return tenant_factory(name="Hilltop Dispensary")


@pytest.fixture(scope="module")
def author(person_factory, facility):
    return person_factory("clinician", facility.slug)


def seen_at(db, tenant: str, author, national_id: str, **overrides) -> uuid.UUID:
    """A patient registered at `tenant` (linked to the person of the national ID) and in a visit there today."""
    principal = principal_of(author, tenant)
    data = PatientIn.model_validate({"family_name": "Okello", "given_names": "James", "birth_date": "1950-02-11",
                                     "sex": "male", "identifiers": [{"system": "national_id", "value": national_id}],
                                     **overrides})
    linked = service.with_subject(db, data, tenant=tenant)
    with db.tenant(tenant) as conn:
        patient_id = service.register_patient(conn, principal, linked)["id"]
        service.open_encounter(conn, principal, patient_id, EncounterIn(encounter_class="outpatient",
                                                                         status="in_progress", reason="Cough"))
    return patient_id


def no_inline_script(html: str) -> None:
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert not re.search(r"\son[a-z]+=", html)


def test_record_death_from_the_chart_to_the_printable_certificate(signed_in, db, facility, elsewhere, author,
                                                                  person_factory):
    national_id = uuid.uuid4().hex[:10]
    patient_id = seen_at(db, facility.slug, author, national_id)
    there = seen_at(db, elsewhere.slug, person_factory("clinician", elsewhere.slug), national_id)
    clinician = signed_in("clinician", facility.slug)
    chart = f"/t/{facility.slug}/patients/{patient_id}"
    assert 'id="record-death"' in clinician.get(f"{chart}/chart").text
    form = clinician.get(f"{chart}/death/new")
    assert form.status_code == 200 and 'name="_csrf_token"' in form.text and "Part 1" in form.text
    no_inline_script(form.text)

    yesterday = dt.date.today() - dt.timedelta(days=1)
    typed = {"died_on": yesterday.isoformat(), "died_time": "00:05", "place": "this_facility",
             "a_code": "I21.9", "a_interval": "3 hours", "c_code": "I10", "manner": "disease"}
    gap = post_form(clinician, f"{chart}/death/new", f"{chart}/death", typed)
    assert gap.status_code == 422 and "Leave no line empty" in gap.text and 'value="I10"' in gap.text
    wrong = post_form(clinician, f"{chart}/death/new", f"{chart}/death", {**typed, "c_code": None, "b_code": "X99.99"})
    assert wrong.status_code == 422 and "X99.99" in wrong.text and 'id="b_code-error"' in wrong.text

    done = post_form(clinician, f"{chart}/death/new", f"{chart}/death", {**typed, "c_code": None, "b_code": "I10"})
    assert done.status_code == 303, done.text
    certificate = clinician.get(done.headers["location"])
    assert certificate.status_code == 200
    text = certificate.text
    assert "Medical certificate of cause of death" in text and "Underlying cause as certified" in text
    assert "I10" in text and "/static/death.css" in text
    no_inline_script(text)
    today = f"{yesterday:%d %b %Y}"
    assert f"Deceased {today}" in text
    # Every page headed by the patient's name says so, here and at the other facility holding their chart.
    assert f"Deceased {today}" in clinician.get(f"{chart}/chart").text
    assert f"Deceased {today}" in clinician.get(f"{chart}/problems").text
    assert 'id="record-death"' not in clinician.get(f"{chart}/chart").text
    other = signed_in("clinician", elsewhere.slug)
    theirs = other.get(f"/t/{elsewhere.slug}/patients/{there}/chart").text
    assert f"Deceased {today}" in theirs and "certified at Lakeside Referral Hospital" in theirs

    unexplained = post_form(clinician, f"{chart}/death/correction", f"{chart}/death/correction",
                            {**typed, "c_code": None, "b_code": "I10", "died_time": "00:01"})
    assert unexplained.status_code == 422 and "Say why" in unexplained.text
    corrected = post_form(clinician, f"{chart}/death/correction", f"{chart}/death/correction",
                          {**typed, "c_code": None, "b_code": "I10", "died_time": "00:01",
                           "reason": "time read from the monitor"})
    assert corrected.status_code == 303 and "death-corrected" in corrected.headers["location"]
    assert "00:01" in clinician.get(f"{chart}/death").text

    retracted = post_form(clinician, f"{chart}/death", f"{chart}/death/entered-in-error",
                          {"reason": "certified on the wrong patient"})
    assert retracted.status_code == 303
    after = clinician.get(f"{chart}/death").text
    assert "No death is recorded" in after and "Deceased" not in after
    # What it closed is not reopened, and the page says what it was: the visit it ended, to see to again.
    closed = after.split('id="death-withdrawn"')[1].split("</section>")[0]
    assert "certified on the wrong patient" in closed and "It cancelled no appointment." in closed
    assert " by Test clinician (certified on the wrong patient)" in " ".join(closed.split())  # who withdrew it
    assert "outpatient: Cough" in closed and "ended (was in progress)" in closed
    no_inline_script(after)
    assert "Deceased" not in other.get(f"/t/{elsewhere.slug}/patients/{there}/chart").text


def test_the_banner_of_a_deceased_patient_gives_their_age_at_death(signed_in, db, facility, author):
    """A man certified dead yesterday whose birthday is today read a year older on every page of his chart, and went
    on ageing there: the banner counted his age to today. It counts it to the day he died, and says so."""
    today = facility_today()
    born = today.replace(year=today.year - 60, day=28 if (today.month, today.day) == (2, 29) else today.day)
    patient_id = seen_at(db, facility.slug, author, uuid.uuid4().hex[:10], birth_date=born.isoformat())
    clinician = signed_in("clinician", facility.slug)
    chart = f"/t/{facility.slug}/patients/{patient_id}"
    assert "(60 y)" in clinician.get(f"{chart}/chart").text
    died = today - dt.timedelta(days=1)
    done = post_form(clinician, f"{chart}/death/new", f"{chart}/death", {
        "died_on": died.isoformat(), "died_time": "10:00", "place": "this_facility", "a_code": "I21.9",
        "a_interval": "3 hours", "manner": "disease"})
    assert done.status_code == 303, done.text
    page = clinician.get(f"{chart}/chart").text
    assert "(59 y at death)" in page and "(60 y)" not in page
    # The records desk's search says so too: who is deceased, since when, and their age then.
    with db.tenant(facility.slug) as conn:
        mrn = conn.execute(sa.text("SELECT mrn FROM patient WHERE id = :id"), {"id": patient_id}).scalar()
    found = clinician.get(f"/t/{facility.slug}/patients", params={"q": mrn}).text
    row = found.split(f'/patients/{patient_id}')[1].split("</tr>")[0]
    assert "(59 y at death)" in row and f"deceased {died:%d %b %Y}" in row, row


def test_deaths_to_certify_and_roles_without_the_permission(signed_in, db, facility, author):
    patient_id = seen_at(db, facility.slug, author, uuid.uuid4().hex[:10], family_name="Awino", sex="female")
    manager = principal_of(author, facility.slug)
    with db.tenant(facility.slug) as conn:
        adt.admit(conn, manager, patient_id, ward_code="GEN")
        adt.discharge(conn, manager, patient_id, disposition="died")
    clinician = signed_in("clinician", facility.slug)
    listed = clinician.get(f"/t/{facility.slug}/deaths/to-certify")
    assert listed.status_code == 200 and "AWINO" in listed.text
    assert f"/patients/{patient_id}/death/new" in listed.text
    assert f'href="/t/{facility.slug}/deaths/to-certify"' in listed.text  # in the clinician's navigation
    nurse = signed_in("nurse", facility.slug)
    assert nurse.get(f"/t/{facility.slug}/deaths/to-certify").status_code == 403
    assert nurse.get(f"/t/{facility.slug}/patients/{patient_id}/death/new").status_code == 403


def test_a_chart_its_national_id_would_join_to_another_person_is_not_certified_until_corrected(
        signed_in, db, facility, elsewhere, author, person_factory):
    """A chart registered without a subject is linked to its person before a death is marked against them, on its
    national ID. When that ID's holder elsewhere was born on another day or is of another sex, the chart stays
    unlinked and the form says why: the holder is not made deceased at every facility on a mistyped number."""
    national_id = uuid.uuid4().hex[:10]
    there = seen_at(db, elsewhere.slug, person_factory("clinician", elsewhere.slug), national_id)  # a man, 1950
    principal = principal_of(author, facility.slug)
    with db.tenant(facility.slug) as conn:  # no subject: as a chart of before subjects were matched
        patient_id = service.register_patient(conn, principal, PatientIn.model_validate({
            "family_name": "Okello", "given_names": "Mary", "birth_date": "1952-05-01", "sex": "female",
            "identifiers": [{"system": "national_id", "value": national_id}]}))["id"]
        service.open_encounter(conn, principal, patient_id, EncounterIn(encounter_class="outpatient",
                                                                         status="in_progress", reason="Cough"))
    clinician = signed_in("clinician", facility.slug)
    chart = f"/t/{facility.slug}/patients/{patient_id}"
    refused = post_form(clinician, f"{chart}/death/new", f"{chart}/death", {
        "died_on": dt.date.today().isoformat(), "died_time": "00:05", "place": "this_facility",
        "a_code": "I21.9", "a_interval": "3 hours", "manner": "disease"})
    assert refused.status_code == 422, refused.text
    assert "another birth date and sex" in refused.text and "left unlinked from that person" in refused.text
    assert "1950" not in refused.text and "James" not in refused.text
    assert "No death is recorded" in clinician.get(f"{chart}/death").text
    other = signed_in("clinician", elsewhere.slug)
    assert "Deceased" not in other.get(f"/t/{elsewhere.slug}/patients/{there}/chart").text


def test_a_death_on_a_chart_linked_over_a_confirmed_differing_national_id_stays_on_that_chart(
        signed_in, db, facility, elsewhere, author, person_factory):
    """The desk confirmed a national ID whose holder elsewhere is a man born in 1950 for Mary, born 1952 (c0016
    records it). Her death, certified on the page, is said to stay on her chart, and the holder's chart at the other
    facility shows no death."""
    national_id = uuid.uuid4().hex[:10]
    there = seen_at(db, elsewhere.slug, person_factory("clinician", elsewhere.slug), national_id)  # a man, 1950
    principal = principal_of(author, facility.slug)
    linked = service.link_registration(db, principal, PatientIn.model_validate({
        "family_name": "Okello", "given_names": "Mary", "birth_date": "1952-05-01", "sex": "female",
        "identifiers": [{"system": "national_id", "value": national_id}], "national_id_confirmed": True}),
        tenant=facility.slug)
    with db.tenant(facility.slug) as conn:
        patient_id = service.register_patient(conn, principal, linked)["id"]
        service.open_encounter(conn, principal, patient_id, EncounterIn(encounter_class="outpatient",
                                                                         status="in_progress", reason="Cough"))
    assert patient_id == linked.chart_id  # the record names the chart registered
    clinician = signed_in("clinician", facility.slug)
    chart = f"/t/{facility.slug}/patients/{patient_id}"
    done = post_form(clinician, f"{chart}/death/new", f"{chart}/death", {
        "died_on": dt.date.today().isoformat(), "died_time": "00:05", "place": "this_facility",
        "a_code": "I21.9", "a_interval": "3 hours", "manner": "disease"})
    assert done.status_code == 303 and done.headers["location"].endswith("done=death-certified-kept"), done.text
    page = clinician.get(done.headers["location"]).text
    assert 'id="kept-to-this-chart"' in page and "the death stays on this chart" in page
    assert "recorded deceased at every facility" not in page
    other = signed_in("clinician", elsewhere.slug)
    assert "Deceased" not in other.get(f"/t/{elsewhere.slug}/patients/{there}/chart").text
