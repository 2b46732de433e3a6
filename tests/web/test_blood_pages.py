"""The blood bank and the chart's Blood tab in the portal (appliance/web/blood.py, appliance/web/transfusion.py) over
in-process HTTP: the lab technician receives a unit (an expired one refused beside its field), the clinician
requests blood from the chart, the bank refuses an incompatible unit beside the unit number and reserves and issues
a compatible one, and the nurse's bedside form refuses a unit not issued to this patient beside the number, starts
the right one (its second checker chosen from the ward's staff) and stops it for a reaction; the clinician cancels a
request from the chart and its reserved unit goes back to stock; a request every unit of which is issued stays on the
bank's list while one is not yet started, whose Returned unused puts it back in stock (none for the unit hung). Forms
carry CSRF, pages no inline script. Another facility's session and guessed patient ids on these routes are in
tests/web/test_portal.py."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import blood, service
from appliance.layers.clinical.blood_schemas import BloodRequestIn, BloodUnitIn
from appliance.layers.clinical.schemas import EncounterIn, PatientIn, ResultIn
from appliance.layers.nursing import transfusion
from appliance.layers.nursing.schemas import TransfusionEndIn, TransfusionStartIn
from appliance.substrate.tenancy import facility_timezone
from tests.conftest import facility_today
from tests.layers.clinical.test_blood import GROUPING
from tests.web.test_death_pages import no_inline_script
from tests.web.test_portal import post_form, principal_of

VITALS = {"temperature_c": "36.7", "heart_rate_bpm": "80", "systolic_mmhg": "120", "respiratory_rate": "16"}


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Blood Pages Hospital", catalogue=[GROUPING], wards=[
        {"code": "GEN", "name": "General ward", "kind": "inpatient", "beds": 3},
        {"code": "ICU", "name": "Intensive care unit", "kind": "icu", "beds": 2}])


def test_the_blood_bank_and_the_bedside_from_receipt_to_a_reaction(signed_in, db, facility, person_factory):
    doctor_person = person_factory("clinician", facility.slug)
    principal = principal_of(doctor_person, facility.slug)
    today = facility_today()
    data = PatientIn.model_validate({"family_name": "Wairimu", "given_names": "Joy", "birth_date": "1991-05-06",
                                     "sex": "female",
                                     "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]})
    with db.tenant(facility.slug) as conn:
        patient = service.register_patient(conn, principal, data)["id"]
        service.open_encounter(conn, principal, patient, EncounterIn(encounter_class="inpatient",
                                                                      status="in_progress", ward_code="GEN"))
        service.record_result(conn, principal, patient, ResultIn(code="882-1", value="B+"))
    lab, nurse = signed_in("lab_technician", facility.slug), signed_in("nurse", facility.slug, ward="GEN")
    checker = person_factory("nurse", facility.slug, ward="GEN")  # the bedside check's second person
    elsewhere = person_factory("nurse", facility.slug, ward="ICU")  # of another ward: not offered
    doctor = signed_in("clinician", facility.slug)
    bank, tab = f"/t/{facility.slug}/blood", f"/t/{facility.slug}/patients/{patient}/transfusions"

    page = lab.get(bank)
    assert page.status_code == 200 and 'name="_csrf_token"' in page.text and 'id="stock-grid"' in page.text
    no_inline_script(page.text)
    unit = {"unit_number": "PG-100", "component": "red_cells", "abo": "B", "rhd": "positive", "volume_ml": "280",
            "collected_on": str(today - dt.timedelta(days=2)), "expires_on": str(today - dt.timedelta(days=1))}
    expired = post_form(lab, bank, f"{bank}/units", unit)
    assert expired.status_code == 422 and 'id="expires_on-error"' in expired.text and 'value="PG-100"' in expired.text
    for number, abo in (("PG-100", "B"), ("PG-A", "A")):
        done = post_form(lab, bank, f"{bank}/units", {**unit, "unit_number": number, "abo": abo,
                                                      "expires_on": str(today + dt.timedelta(days=2))})
        assert done.status_code == 303, done.text
    assert 'class="badge flag-high">expiring' in lab.get(bank).text

    requested = post_form(doctor, tab, f"{tab}/requests", {"component": "red_cells", "units": "1",
                                                           "indication": "Hb 5.9 g/dl", "urgency": "urgent"})
    assert requested.status_code == 303, requested.text
    with db.tenant(facility.slug) as conn:
        request_id = conn.execute(sa.text("SELECT root_id FROM entry WHERE kind = 'blood_request'")).scalar()
    listed = lab.get(bank).text
    assert "WAIRIMU" in listed and 'id="group-' in listed and "B RhD positive" in listed
    wrong = post_form(lab, bank, f"{bank}/requests/{request_id}/reservations", {"unit_number": "PG-A"})
    assert wrong.status_code == 422 and "may not receive group A red cells" in wrong.text
    assert 'id="unit_number-error"' in wrong.text
    assert post_form(lab, bank, f"{bank}/requests/{request_id}/reservations",
                     {"unit_number": "PG-100"}).status_code == 303
    unit_id = re.search(r'action="/t/[^"]+/blood/units/([0-9a-f-]+)/issue"', lab.get(bank).text).group(1)
    assert post_form(lab, bank, f"{bank}/units/{unit_id}/issue", {}).status_code == 303

    bedside = nurse.get(tab)
    assert bedside.status_code == 200 and "B RhD positive" in bedside.text and 'id="units-waiting"' in bedside.text
    no_inline_script(bedside.text)
    offered = re.findall(r'<option value="([0-9a-f-]{36})"', bedside.text.split('id="start-checked_by"')[1]
                         .split("</select>")[0])
    # The ward's colleagues and the facility's clinicians, who may check; not the nurse herself, not another ward's
    # nurse, not the lab.
    assert str(checker.account_id) in offered and str(doctor.person.account_id) in offered
    assert not {str(p.account_id) for p in (nurse.person, elsewhere, lab.person)} & set(offered)
    start = {"unit_number": "PG-A", "checked_by_account_id": str(checker.account_id), **VITALS}
    refused = post_form(nurse, tab, tab, start)
    assert refused.status_code == 422 and 'id="unit_number-error"' in refused.text
    assert "was not issued to this patient" in refused.text
    assert f'value="{checker.account_id}" selected' in refused.text
    unchecked = post_form(nurse, tab, tab, {**start, "checked_by_account_id": ""})
    assert unchecked.status_code == 422 and 'id="checked_by_account_id-error"' in unchecked.text
    started = post_form(nurse, tab, tab, {**start, "unit_number": "PG-100"})
    assert started.status_code == 303, started.text
    page = nurse.get(started.headers["location"]).text
    transfusion = re.search(r'id="transfusion-([0-9a-f-]+)"', page).group(1)
    ended = {"reaction": "febrile", "reaction_note": "Temperature 38.6, rigors", "volume_ml": "90", **VITALS,
             "temperature_c": "38.6"}
    typed_before = (dt.datetime.now(facility_timezone(db, facility.slug)) - dt.timedelta(minutes=30)).strftime("%H:%M")
    too_early = post_form(nurse, tab, f"{tab}/{transfusion}/end", {**ended, "at": typed_before})
    assert too_early.status_code == 422 and 'id="at-error"' in too_early.text  # beside the time typed
    assert f'href="#end-{transfusion}-at"' in too_early.text  # the summary's link leads to the box
    assert "before the transfusion started" in too_early.text and "UTC" not in too_early.text
    overfull = post_form(nurse, tab, f"{tab}/{transfusion}/end", {**ended, "volume_ml": "900"})
    assert overfull.status_code == 422 and 'id="volume_ml-error"' in overfull.text
    assert "held 280 ml" in overfull.text and "Temperature 38.6, rigors" in overfull.text  # what was typed is kept
    unmeasured = post_form(nurse, tab, f"{tab}/{transfusion}/end", {**ended, "temperature_c": ""})
    assert unmeasured.status_code == 422 and f'href="#end-{transfusion}-temperature_c"' in unmeasured.text
    assert f'id="end-{transfusion}-temperature_c"' in unmeasured.text
    stopped = post_form(nurse, tab, f"{tab}/{transfusion}/end", ended)
    assert stopped.status_code == 303 and stopped.headers["location"].endswith("done=transfusion-stopped")
    shown = doctor.get(stopped.headers["location"]).text
    assert "Febrile (non-haemolytic) reaction" in shown and "escalation task is raised" in shown
    timeline = doctor.get(f"/t/{facility.slug}/patients/{patient}/timeline").text
    assert "Transfusion of unit PG100: stopped" in timeline
    # The blood bank learns of the stop from its own page, not only from the ward's escalation task.
    reactions = lab.get(bank).text.split('id="reactions-title"')[1].split("</section>")[0]
    assert "Wairimu" in reactions and "PG100" in reactions and "stopped" in reactions and "after 90 ml" in reactions


def test_the_clinician_cancels_a_request_from_the_chart_and_its_unit_goes_back(signed_in, db, facility,
                                                                                person_factory):
    principal = principal_of(person_factory("clinician", facility.slug), facility.slug)
    today = facility_today()
    with db.tenant(facility.slug) as conn:
        patient = service.register_patient(conn, principal, PatientIn.model_validate({
            "family_name": "Kiptoo", "given_names": "Ann", "birth_date": "1988-02-03", "sex": "female",
            "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}))["id"]
        service.open_encounter(conn, principal, patient, EncounterIn(encounter_class="outpatient",
                                                                      status="in_progress"))
        service.record_result(conn, principal, patient, ResultIn(code="882-1", value="O+"))
        blood.receive_unit(conn, principal, BloodUnitIn(
            unit_number="PGC-1", component="red_cells", abo="O", rhd="positive", volume_ml=280,
            collected_on=today - dt.timedelta(days=2), expires_on=today + dt.timedelta(days=20)), today=today)
        request = blood.request_blood(conn, principal, patient, BloodRequestIn(
            component="red_cells", units=1, indication="Pre-op, Hb 8.1 g/dl", urgency="routine"))["id"]
        unit_id = blood.reserve(conn, principal, request, "PGC1", None, today=today)["units_given"][0]["id"]
    doctor = signed_in("clinician", facility.slug)
    tab = f"/t/{facility.slug}/patients/{patient}/transfusions"
    page = doctor.get(tab).text
    assert f'id="cancel-{request}"' in page and 'name="_csrf_token"' in page
    no_inline_script(page)
    unexplained = post_form(doctor, tab, f"{tab}/requests/{request}/cancel", {"reason": ""})
    assert unexplained.status_code == 422 and 'id="reason-error"' in unexplained.text
    done = post_form(doctor, tab, f"{tab}/requests/{request}/cancel", {"reason": "Operation postponed"})
    assert done.status_code == 303 and done.headers["location"].endswith("done=blood-request-cancelled")
    shown = doctor.get(done.headers["location"]).text
    assert "status-cancelled" in shown and "Operation postponed" in shown and f'id="cancel-{request}"' not in shown
    with db.tenant(facility.slug) as conn:
        assert blood.unit(conn, principal, unit_id, today=today)["status"] == "available"
    again = post_form(doctor, tab, f"{tab}/requests/{request}/cancel", {"reason": "Operation postponed"})
    assert again.status_code == 409 and "cancelled already" in again.text


def test_a_unit_of_a_fully_issued_request_is_returned_unused_from_the_bank(signed_in, db, facility, person_factory,
                                                                            policy):
    today = facility_today()
    principal = principal_of(person_factory("clinician", facility.slug), facility.slug)
    nurse = principal_of(person_factory("nurse", facility.slug, ward="GEN"), facility.slug)
    checker = person_factory("nurse", facility.slug, ward="GEN")
    with db.tenant(facility.slug) as conn:
        patient = service.register_patient(conn, principal, PatientIn.model_validate({
            "family_name": "Otieno", "given_names": "Ruth", "birth_date": "1979-09-12", "sex": "female",
            "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}))["id"]
        service.open_encounter(conn, principal, patient, EncounterIn(encounter_class="inpatient",
                                                                      status="in_progress", ward_code="GEN"))
        service.record_result(conn, principal, patient, ResultIn(code="882-1", value="O+"))
        request = blood.request_blood(conn, principal, patient, BloodRequestIn(
            component="red_cells", units=2, indication="Hb 6.2 g/dl", urgency="urgent"))["id"]
        for number in ("PGR-1", "PGR-2"):
            unit = blood.receive_unit(conn, principal, BloodUnitIn(
                unit_number=number, component="red_cells", abo="O", rhd="positive", volume_ml=280,
                collected_on=today - dt.timedelta(days=2), expires_on=today + dt.timedelta(days=20)), today=today)
            blood.reserve(conn, principal, request, unit["unit_number"], None, today=today)
            blood.issue(conn, principal, unit["id"], today=today)
        issued = {u["unit_number"]: u["id"] for u in blood.one_request(conn, principal, request, today=today)
                  ["units_given"]}
    returned, hung = issued["PGR1"], issued["PGR2"]
    staff = transfusion.colleagues(db, policy, facility.slug)
    with db.tenant(facility.slug) as conn:  # the ward hangs one of the two; the other comes back to the bank
        transfusion.start(conn, nurse, patient, TransfusionStartIn.model_validate({
            "unit_number": "PGR2", "checked_by_account_id": checker.account_id, "vitals": VITALS}),
            now=dt.datetime.now(dt.UTC), zone=facility_timezone(db, facility.slug), staff=staff)
    lab, bank = signed_in("lab_technician", facility.slug), f"/t/{facility.slug}/blood"

    page = lab.get(bank).text
    listed = page.split(f'id="request-{request}"')[1].split("</article>")[0]
    assert "all issued" in listed and f'id="reserve-{request}"' not in listed
    form = listed.split(f'id="release-{returned}"')[1].split("</form>")[0]
    assert 'name="_csrf_token"' in form and f'action="/t/{facility.slug}/blood/units/{returned}/release"' in listed
    assert f'id="release-{hung}"' not in listed  # transfused: nothing to return
    no_inline_script(page)
    unexplained = post_form(lab, bank, f"{bank}/units/{returned}/release", {"reason": ""})
    assert unexplained.status_code == 422 and 'id="reason-error"' in unexplained.text
    done = post_form(lab, bank, f"{bank}/units/{returned}/release", {"reason": "Returned unused, never spiked"})
    assert done.status_code == 303 and done.headers["location"].endswith("done=unit-released"), done.text
    stock = lab.get(done.headers["location"]).text
    assert f'id="unit-{returned}"' in stock and "Unit released back to stock." in stock
    with db.tenant(facility.slug) as conn:
        assert blood.unit(conn, principal, returned, today=today)["status"] == "available"
    # The same refusals as the API's: the unit hung is not released, a guessed unit is none of this bank's.
    given = post_form(lab, bank, f"{bank}/units/{hung}/release", {"reason": "Returned unused"})
    assert given.status_code == 409 and "Unit PGR2 is transfused: only a reserved unit" in given.text
    guessed = post_form(lab, bank, f"{bank}/units/{uuid.uuid4()}/release", {"reason": "Returned unused"})
    assert guessed.status_code == 404


def test_a_reaction_after_the_unit_finished_is_recorded_from_the_chart_and_listed_at_the_bank(
        signed_in, db, facility, person_factory, policy):
    today, zone = facility_today(), facility_timezone(db, facility.slug)
    principal = principal_of(person_factory("clinician", facility.slug), facility.slug)
    nurse = principal_of(person_factory("nurse", facility.slug, ward="GEN"), facility.slug)
    checker = person_factory("nurse", facility.slug, ward="GEN")
    with db.tenant(facility.slug) as conn:
        patient = service.register_patient(conn, principal, PatientIn.model_validate({
            "family_name": "Kamau", "given_names": "Peter", "birth_date": "1960-02-03", "sex": "male",
            "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}))["id"]
        service.open_encounter(conn, principal, patient, EncounterIn(encounter_class="inpatient",
                                                                      status="in_progress", ward_code="GEN"))
        service.record_result(conn, principal, patient, ResultIn(code="882-1", value="O+"))
        request = blood.request_blood(conn, principal, patient, BloodRequestIn(
            component="red_cells", units=1, indication="Hb 6.8 g/dl", urgency="routine"))["id"]
        unit = blood.receive_unit(conn, principal, BloodUnitIn(
            unit_number="PGL-1", component="red_cells", abo="O", rhd="positive", volume_ml=280,
            collected_on=today - dt.timedelta(days=2), expires_on=today + dt.timedelta(days=20)), today=today)
        blood.reserve(conn, principal, request, unit["unit_number"], None, today=today)
        blood.issue(conn, principal, unit["id"], today=today)
    staff, now = transfusion.colleagues(db, policy, facility.slug), dt.datetime.now(dt.UTC)
    with db.tenant(facility.slug) as conn:  # hung three hours ago, finished an hour ago without a sign
        given = transfusion.start(conn, nurse, patient, TransfusionStartIn.model_validate({
            "unit_number": "PGL1", "checked_by_account_id": checker.account_id, "vitals": VITALS,
            "started_at": now - dt.timedelta(hours=3)}), now=now, zone=zone, staff=staff)["id"]
        transfusion.end(conn, nurse, patient, given, TransfusionEndIn.model_validate({
            "volume_ml": 280, "reaction": "none", "vitals": VITALS, "ended_at": now - dt.timedelta(hours=1)}),
            now=now, zone=zone)
    doctor, lab = signed_in("clinician", facility.slug), signed_in("lab_technician", facility.slug)
    tab, bank = f"/t/{facility.slug}/patients/{patient}/transfusions", f"/t/{facility.slug}/blood"

    chart = doctor.get(tab).text
    form = chart.split(f'id="reaction-{given}"')[1].split("</form>")[0]
    assert 'name="_csrf_token"' in form and 'type="datetime-local"' in form and 'value="none"' not in form
    no_inline_script(chart)
    local = f"{(now - dt.timedelta(minutes=30)).astimezone(zone):%Y-%m-%dT%H:%M}"
    reaction = {"reaction": "febrile", "onset_at": local, "severity": "non_severe",
                "reaction_note": "Temperature 38.7 and rigors: paracetamol, cultures taken"}
    with db.tenant(facility.slug) as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM entry")).scalar()
    later = f"{(now + dt.timedelta(hours=3)).astimezone(zone):%Y-%m-%dT%H:%M}"
    refused = post_form(doctor, tab, f"{tab}/{given}/reactions", {**reaction, "onset_at": later})
    assert refused.status_code == 422 and 'id="onset_at-error"' in refused.text and "still to come" in refused.text
    assert "cultures taken" in refused.text  # what was typed is kept
    unreadable = post_form(doctor, tab, f"{tab}/{given}/reactions", {**reaction, "onset_at": "yesterday"})
    assert unreadable.status_code == 422 and 'id="onset_at-error"' in unreadable.text
    guessed = post_form(doctor, tab, f"{tab}/{uuid.uuid4()}/reactions", reaction)
    assert guessed.status_code == 404  # a guessed transfusion is none of this chart's
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM entry")).scalar() == before
    done = post_form(doctor, tab, f"{tab}/{given}/reactions", reaction)
    assert done.status_code == 303 and done.headers["location"].endswith("done=transfusion-reaction"), done.text
    shown = doctor.get(done.headers["location"]).text
    assert "after the unit was given (non-severe)" in shown and "blood bank sees it" in shown
    assert f'id="reaction-{given}"' not in shown  # one reaction per transfusion: the form is gone
    listed = lab.get(bank).text.split('id="reactions-title"')[1].split("</section>")[0]
    assert "Kamau" in listed and "PGL1" in listed and "Febrile (non-haemolytic) reaction" in listed
    assert "after the unit was given" in listed and "cultures taken" in listed
