"""The nursing pages of the portal over real HTTP with a nurse's session: recording observations
shows the NEWS2 and its escalation on the ward worklist, the MAR records a dose's outcome, care plans are
written and evaluated, the handover is built and kept — and the pages refuse other wards, other
facilities and guessed ids as the API does."""

from __future__ import annotations

import datetime as dt
import re
import uuid
import zoneinfo
from decimal import Decimal

import pytest

from appliance.layers.clinical import imaging
from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.schemas import ImagingReportIn, ResultIn, ServiceRequestIn
from appliance.layers.nursing import service
from appliance.national import indicators as national
from appliance.substrate import audit, record
from appliance.web.nursing import lateness
from tests.layers.nursing.conftest import HIGH, TZ, admit, vitals
from tests.national.test_indicators import DEFINITIONS_FILE
from tests.web.test_auth import csrf_token


def post_form(client, page_path: str, action: str, data: dict):
    page = client.get(page_path)
    assert page.status_code == 200, page.text
    return client.post(action, data={**data, "_csrf_token": csrf_token(page.text)}, follow_redirects=False)


@pytest.fixture(scope="module")
def ward_patients(db, facility, clinician):
    with db.tenant(facility.slug) as conn:
        sick = admit(conn, clinician, family="Odhiambo", given="Joseph")
        calm = admit(conn, clinician, family="Akinyi", given="Mary")
        maternity = admit(conn, clinician, ward="MAT", family="Nduta", given="Faith")
        record.append(conn, clinician, "medication_request", patient_id=sick["id"],
                      occurred_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1), encounter_id=sick["encounter_id"],
                      detail={"drug": "Amoxicillin", "dose": Decimal(500), "dose_unit": "mg", "route": "oral",
                              "frequency": "every 6 hours", "duration_days": 5, "status": "active",
                              "instructions": None, "allergy_override_reason": None, "order_set": None})
    return {"sick": sick, "calm": calm, "maternity": maternity}


def test_a_high_news2_recorded_on_the_page_escalates_on_the_worklist(signed_in, facility, ward_patients):
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    sick = ward_patients["sick"]
    page = f"/t/{facility.slug}/patients/{sick['id']}/observations"
    saved = post_form(nurse, page, page, {
        "respiratory_rate": "27", "spo2_percent": "91", "spo2_scale": "1", "supplemental_oxygen": "true",
        "oxygen_l_min": "4", "systolic_mmhg": "95", "diastolic_mmhg": "60", "heart_rate_bpm": "124",
        "consciousness": "A", "temperature_c": "38.6", "encounter_id": str(sick["encounter_id"])})
    assert saved.status_code == 303 and saved.headers["location"].endswith("/observations?done=vitals")
    shown = nurse.get(saved.headers["location"])
    assert "NEWS2 13 · High" in shown.text and "Emergency response" in shown.text
    # When the next set is due, in facility time (it is the NEWS2's, not the vital-signs row's).
    assert re.search(r"Next observations due <strong>\d\d \w{3} \d{4} \d\d:\d\d</strong>", shown.text)
    assert shown.text.count('<svg class="plot"') >= 2
    worklist = nurse.get(f"/t/{facility.slug}/ward")
    assert worklist.status_code == 200
    escalations = worklist.text.split('id="escalations-title"')[1].split("</section>")[0]
    assert "ODHIAMBO, Joseph" in escalations and "Emergency response" in escalations
    assert "AKINYI, Mary" in worklist.text and "NDUTA" not in worklist.text
    assert "late</span>" in worklist.text  # the six-hourly doses since yesterday, none recorded
    # The late badge opens the MAR on the day of the earliest late dose (yesterday's, after midnight).
    mar = f"/t/{facility.slug}/patients/{sick['id']}/mar"
    yesterday = (dt.datetime.now(TZ).date() - dt.timedelta(days=1)).isoformat()
    earliest = (_late_doses(nurse.get(f"{mar}?day={yesterday}").text) + _late_doses(nurse.get(mar).text))[0]
    day = dt.datetime.fromisoformat(earliest).astimezone(TZ).date().isoformat()
    assert f'href="{mar}?day={day}"><span class="badge flag-critical">' in worklist.text
    # An observations task is done by recording the set: the worklist offers that, not a "Done" tick.
    observe = worklist.text.split('class="task task-observations')[1].split("</li>")[0]
    assert ">Record</a>" in observe and "/done" not in observe


def test_a_critical_result_not_yet_reviewed_is_on_its_wards_worklist_until_a_doctor_signs_it(db, signed_in, facility,
                                                                                            clinician):
    """A haemoglobin of 4.1 of a patient on the ward waited on the doctors' lists alone: the ward's worklist, where
    its early warning scores and oliguria are called, said nothing, and the nurse at the bedside was not told. It
    is now called there, the patient linked to the result, until a doctor signs it off; another ward's is not, and
    the list's read is on the patient's access log."""
    with db.tenant(facility.slug) as conn:
        here = admit(conn, clinician, family="Wambui", given="Grace")
        there = admit(conn, clinician, ward="MAT", family="Cherono", given="Ivy")
        low = clinical.record_result(conn, clinician, here["id"], ResultIn(code="718-7", value=Decimal("4.1"),
                                                                           flag="LL"))
        clinical.record_result(conn, clinician, there["id"], ResultIn(code="718-7", value=Decimal("3.9"), flag="LL"))
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    alert = nurse.get(f"/t/{facility.slug}/ward").text.split('id="critical-results-alert"')[1].split("</section>")[0]
    assert "WAMBUI, Grace" in alert and "Haemoglobin 4.1 g/dL: tell the doctor" in alert and "Critical low" in alert
    assert f'/patients/{here["id"]}/results#result-{low["id"]}"' in alert and "CHERONO" not in alert
    assert f'id="result-{low["id"]}"' in nurse.get(f"/t/{facility.slug}/patients/{here['id']}/results").text
    assert any(e.event_type == "record.result.read" and e.detail.get("list") == "ward critical"
               for e in audit.patient_access_log(db, facility.slug, here["id"]))
    with db.tenant(facility.slug) as conn:
        clinical.sign_result(conn, clinician, here["id"], low["id"], "transfusing")
    assert "WAMBUI, Grace" not in nurse.get(f"/t/{facility.slug}/ward").text.split("Worklist")[0]


def test_a_result_corrected_to_a_critical_value_is_called_on_its_wards_worklist_as_a_new_one_is(db, signed_in,
                                                                                                facility, clinician):
    """A haemoglobin of 11.4 signed off, then corrected to 4.1 (the laboratory had typed another patient's): the
    ward's nurses are told of it as of a critical result just reported, linked to the corrected version, until a
    doctor signs that version off."""
    with db.tenant(facility.slug) as conn:
        here = admit(conn, clinician, family="Chelimo", given="Rose")
        usual = clinical.record_result(conn, clinician, here["id"], ResultIn(code="718-7", value=Decimal("11.4")))
        clinical.sign_result(conn, clinician, here["id"], usual["id"], None)
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    assert "CHELIMO, Rose" not in nurse.get(f"/t/{facility.slug}/ward").text.split("Worklist")[0]
    with db.tenant(facility.slug) as conn:
        low = clinical.correct_result(conn, clinician, here["id"], usual["id"],
                                      ResultIn(code="718-7", value=Decimal("4.1"), flag="LL"),
                                      "another patient's value had been typed")
    alert = nurse.get(f"/t/{facility.slug}/ward").text.split('id="critical-results-alert"')[1].split("</section>")[0]
    assert "CHELIMO, Rose" in alert and "Haemoglobin 4.1 g/dL: tell the doctor" in alert
    assert f'/patients/{here["id"]}/results#result-{low["id"]}"' in alert
    with db.tenant(facility.slug) as conn:
        clinical.sign_result(conn, clinician, here["id"], low["id"], "transfusing")
    assert "CHELIMO, Rose" not in nurse.get(f"/t/{facility.slug}/ward").text.split("Worklist")[0]


def test_an_imaging_reports_critical_finding_is_called_on_its_wards_worklist_as_a_critical_lab_value_is(
        db, signed_in, facility, other_facility, clinician):
    """A chest X-ray reported as a tension pneumothorax waited on the ordering doctor's list: the ward's nurses,
    told of a haemoglobin of 4.1, were not told of it. A critical finding is now called on its ward's worklist
    until a doctor signs it off; an unexpected one that is not urgent is not, nor is it shown to another
    facility's nurse."""
    today = dt.datetime.now(TZ).date()
    with db.tenant(facility.slug) as conn:
        here = admit(conn, clinician, family="Kiplagat", given="Daniel")
        reports = {}
        for name, report in (("tension", ImagingReportIn(findings="Large right pneumothorax, mediastinal shift.",
                                                         impression="Right tension pneumothorax.", critical=True)),
                             ("cyst", ImagingReportIn(findings="Clear lungs. A 2 cm cyst at the upper pole of the "
                                                               "right kidney.", impression="Incidental renal cyst.",
                                                      unexpected=True))):
            order = clinical.order_test(conn, clinician, here["id"], ServiceRequestIn(
                code="36643-5", encounter_id=here["encounter_id"]))["id"]
            imaging.record_performed(conn, clinician, order, note=None, today=today)
            [reports[name]] = imaging.report(conn, clinician, order, report, today=today)["reports"]
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    alert = nurse.get(f"/t/{facility.slug}/ward").text.split('id="critical-results-alert"')[1].split("</section>")[0]
    assert "KIPLAGAT, Daniel" in alert and "Right tension pneumothorax.: tell the doctor" in alert
    assert f'/patients/{here["id"]}/results#result-{reports["tension"]["id"]}"' in alert
    assert "renal cyst" not in alert
    outsider = signed_in("nurse", other_facility.slug, ward="GEN")
    assert "KIPLAGAT" not in outsider.get(f"/t/{other_facility.slug}/ward").text
    with db.tenant(facility.slug) as conn:
        clinical.sign_result(conn, clinician, here["id"], reports["tension"]["id"], "chest drain inserted")
    assert "KIPLAGAT, Daniel" not in nurse.get(f"/t/{facility.slug}/ward").text.split("Worklist")[0]


def test_the_observations_page_says_when_the_next_set_is_overdue(db, signed_in, facility, clinician):
    """A NEWS2 of 9 two hours ago asked for a set every 15 minutes; the page said 'Next observations due
    <time>' with the time long past, as if it were still to come."""
    from appliance.layers.clinical.schemas import VitalSignsIn

    taken = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Opiyo", given="Samuel")
        record.append(conn, clinician, "vital_signs", patient_id=patient["id"], encounter_id=patient["encounter_id"],
                      occurred_at=taken, detail=VitalSignsIn.model_validate(HIGH).model_dump(exclude={"encounter_id"}))
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    page = nurse.get(f"/t/{facility.slug}/patients/{patient['id']}/observations")
    assert page.status_code == 200 and "NEWS2 9 · High" in page.text
    due = (taken + dt.timedelta(minutes=15)).astimezone(TZ)
    overdue = page.text.split('id="observations-overdue">')[1].split("</p>")[0]
    assert f"the next set was due {due:%d %b %Y %H:%M}, 1 h 4" in overdue and "Record a set now." in overdue
    assert "Next observations due" not in page.text


def test_a_task_is_deferred_from_the_worklist_with_why(db, signed_in, facility, other_facility, clinician):
    """The worklist offered 'Done' and nothing else: a specimen that could not be taken (the patient in
    theatre) stayed 'overdue' all morning, or was ticked done untaken. It can now wait, with why."""
    from appliance.layers.nursing import service

    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Chelimo", given="Ann")
        task = service.new_task(conn, clinician, patient["id"], code="collect_specimen", ward_code="GEN",
                                title="Collect specimen: Full blood count", encounter_id=patient["encounter_id"],
                                due_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20))
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    worklist = f"/t/{facility.slug}/ward"
    action = f"/t/{facility.slug}/patients/{patient['id']}/tasks/{task.id}/defer"
    row = nurse.get(worklist).text.split(f'data-patient="{patient["id"]}"')[1].split("</tr>")[0]
    assert f'action="{action}"' in row and '<option value="120">2 hours</option>' in row

    refused = post_form(nurse, worklist, action, {"ward": "GEN", "minutes": "120", "note": ""})
    assert refused.status_code == 422
    mine = refused.text.split(f'data-patient="{patient["id"]}"')[1].split("</tr>")[0]
    assert f'id="task-problem-{task.id}">Say why the task waits.</p>' in mine
    assert '<details class="defer" open>' in mine and '<option value="120" selected>' in mine

    before = dt.datetime.now(dt.UTC)
    deferred = post_form(nurse, worklist, action, {"ward": "GEN", "minutes": "120", "note": "in theatre"})
    assert deferred.status_code == 303 and deferred.headers["location"].endswith("/ward?ward_code=GEN&done=deferred")
    shown = nurse.get(deferred.headers["location"]).text
    assert "Task deferred." in shown
    mine = shown.split(f'data-patient="{patient["id"]}"')[1].split("</tr>")[0]
    due = (before + dt.timedelta(minutes=120)).astimezone(TZ)
    specimen = mine.split("task-collect_specimen")[1].split("</li>")[0]  # beside the admission's own tasks
    assert re.search(rf"due {due:%d %b %Y} \d\d:\d\d — in theatre</span>", specimen) and "overdue" not in specimen
    with db.tenant(facility.slug) as conn:
        [now_due] = [t["due_at"] for t in service.tasks_of(conn, [patient["id"]], open_only=True,
                                                            codes=["collect_specimen"])]
    assert dt.timedelta(minutes=119) < now_due - before < dt.timedelta(minutes=121)
    handover = nurse.get(f"/t/{facility.slug}/ward/handover").text.split("CHELIMO, Ann")[1].split("</dl>")[0]
    assert re.search(r"Collect specimen: Full blood count · due [^<]* — in theatre</li>", handover)

    # Taken meanwhile by another nurse: a deferral from the page she still had open is refused, and says
    # why above the list (the task is no longer on it), not nowhere.
    stale = nurse.get(worklist).text
    with db.tenant(facility.slug) as conn:
        [current] = service.tasks_of(conn, [patient["id"]], open_only=True, codes=["collect_specimen"])
        service.set_task_status(conn, clinician, patient["id"], current["id"], "done", "taken at 10:05",
                                now=dt.datetime.now(dt.UTC))
    late = nurse.post(f"/t/{facility.slug}/patients/{patient['id']}/tasks/{current['id']}/defer", data={
        "ward": "GEN", "minutes": "60", "note": "in theatre", "_csrf_token": csrf_token(stale)},
        follow_redirects=False)
    assert late.status_code == 409 and '<p class="field-error" role="alert" id="task-problem">This task has ' \
        'changed since you loaded it; reload the list.</p>' in late.text

    # Another facility's nurse, and a guessed task id, are refused.
    intruder = signed_in("nurse", other_facility.slug, ward="GEN")
    assert post_form(intruder, f"/t/{other_facility.slug}/ward", action,
                     {"minutes": "60", "note": "x" * 5}).status_code == 403
    guessed = f"/t/{facility.slug}/patients/{patient['id']}/tasks/{uuid.uuid4()}/defer"
    assert post_form(nurse, worklist, guessed, {"minutes": "60", "note": "in theatre"}).status_code == 404


def test_an_escalation_is_done_saying_who_was_told(db, signed_in, facility, clinician):
    """'NEWS2 9 — Emergency response' was ticked 'Done' from the worklist with nothing more: the record
    kept that the alert went away, not who was told or what was done."""
    from appliance.layers.nursing import service

    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Langat", given="Paul")
        vitals(conn, clinician, patient, HIGH)
        [escalation] = [t for t in service.tasks_of(conn, [patient["id"]], open_only=True)
                        if t["code"] == "escalation"]
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    worklist = f"/t/{facility.slug}/ward"
    action = f"/t/{facility.slug}/patients/{patient['id']}/tasks/{escalation['id']}/done"
    refused = post_form(nurse, worklist, action, {"ward": "GEN", "note": " "})
    assert refused.status_code == 422
    mine = refused.text.split(f'data-patient="{patient["id"]}"')[1].split("</tr>")[0]
    assert f'id="task-problem-{escalation["id"]}">Say who was told and what was done.</p>' in mine
    done = post_form(nurse, worklist, action, {"ward": "GEN", "note": "Dr Ouma (registrar) told 10:05, reviewing"})
    assert done.status_code == 303 and done.headers["location"].endswith("done=task")
    with db.tenant(facility.slug) as conn:
        [closed] = [t for t in service.tasks_of(conn, [patient["id"]]) if t["code"] == "escalation"]
    assert (closed["status"], closed["note"]) == ("done", "Dr Ouma (registrar) told 10:05, reviewing")


def test_observations_in_pregnancy_are_scored_by_meows(db, signed_in, facility, clinician):
    from appliance.layers.clinical import service as clinical
    from appliance.layers.clinical.schemas import ConditionIn

    with db.tenant(facility.slug) as conn:
        mother = admit(conn, clinician, family="Wambui", given="Esther")
        clinical.add_condition(conn, clinician, mother["id"], ConditionIn(code="O13"))
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    page = f"/t/{facility.slug}/patients/{mother['id']}/observations"
    saved = post_form(nurse, page, page, {
        "respiratory_rate": "27", "spo2_percent": "91", "spo2_scale": "1", "supplemental_oxygen": "false",
        "systolic_mmhg": "165", "diastolic_mmhg": "110", "heart_rate_bpm": "124", "consciousness": "A",
        "temperature_c": "37.0", "encounter_id": str(mother["encounter_id"])})
    assert saved.status_code == 303
    shown = nurse.get(saved.headers["location"])
    assert "NEWS2 is not used in pregnancy or the puerperium (O13" in shown.text and "NEWS2 13" not in shown.text
    # RR 27 yellow; SpO2 91, systolic 165, diastolic 110 and pulse 124 red.
    latest = shown.text.split('id="meows-latest"')[1].split("</section>")[0]
    assert "MEOWS · 4 red, 1 yellow" in latest and "Urgent obstetric review" in latest
    assert "Systolic BP red" in latest and "Diastolic BP red" in latest and "Resp. rate yellow" in latest
    assert ">Vital signs since " in shown.text and "NEWS2 over time" not in shown.text
    chart = shown.text.split('class="list compact obs-chart"')[1]
    assert 'class="p m-red">165/110' in chart and 'class="p m-yellow">27' in chart

    worklist = nurse.get(f"/t/{facility.slug}/ward")
    escalations = worklist.text.split('id="escalations-title"')[1].split("</section>")[0]
    assert "WAMBUI, Esther" in escalations and "MEOWS · 4 red, 1 yellow" in escalations
    row = worklist.text.split(f'data-patient="{mother["id"]}"')[1].split("</tr>")[0]
    assert "MEOWS · 4 red, 1 yellow" in row and "MEOWS 4 red, 1 yellow — Urgent obstetric review" in row
    handover = nurse.get(f"/t/{facility.slug}/ward/handover")
    mine = handover.text.split("WAMBUI, Esther")[1].split("</dl>")[0]
    assert "<dt>MEOWS</dt>" in mine and "latest set: 4 red, 1 yellow (" in mine and "1 triggered" in mine


def test_observations_of_a_child_are_scored_by_pews(db, signed_in, facility, clinician):
    import sqlalchemy as sa

    with db.tenant(facility.slug) as conn:
        child = admit(conn, clinician, family="Kariuki", given="Tumaini",
                      born=dt.date.today() - dt.timedelta(days=8 * 365))
        # Registered as "0 years" today, the birth date estimated: newborn or eleven months, PEWS cannot tell.
        infant = admit(conn, clinician, family="Kariuki", given="Baby", born=dt.date.today())
        conn.execute(sa.text("UPDATE patient SET birth_date_estimated = true WHERE id = :id"), {"id": infant["id"]})
        vitals(conn, clinician, infant, {"heart_rate_bpm": 150, "respiratory_rate": 50})
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    page = f"/t/{facility.slug}/patients/{child['id']}/observations"
    saved = post_form(nurse, page, page, {
        "respiratory_rate": "42", "spo2_percent": "91", "spo2_scale": "1", "supplemental_oxygen": "true",
        "oxygen_l_min": "4", "systolic_mmhg": "95", "heart_rate_bpm": "132", "consciousness": "A",
        "temperature_c": "38.6", "encounter_id": str(child["encounter_id"])})
    assert saved.status_code == 303
    shown = nurse.get(saved.headers["location"])
    assert "the paediatric early warning score (PEWS, age band 4–12 years) is charted instead" in shown.text
    # RR 42 is 2, SpO2 91 is 1, oxygen at 4 L/min is 4, systolic 95 is 0, pulse 132 is 2: 9.
    latest = shown.text.split('id="pews-latest"')[1].split("</section>")[0]
    assert "PEWS 9 · 8 or more" in latest and "Urgent paediatric review" in latest
    assert "Points from Oxygen therapy 4, Pulse 2, Resp. rate 2, SpO₂ 1." in latest
    assert "capillary refill and respiratory effort are not recorded" in latest
    assert "NEWS2" not in latest and "NEWS2 over time" not in shown.text
    chart = shown.text.split('class="list compact obs-chart"')[1]
    assert 'class="p2">42' in chart and 'class="p3">O₂' in chart and 'class="p2">132' in chart

    worklist = nurse.get(f"/t/{facility.slug}/ward")
    escalations = worklist.text.split('id="escalations-title"')[1].split("</section>")[0]
    assert "KARIUKI, Tumaini" in escalations and "PEWS 9 · 8 or more" in escalations
    row = worklist.text.split(f'data-patient="{child["id"]}"')[1].split("</tr>")[0]
    assert "PEWS 9 — Urgent paediatric review" in row
    unscored = worklist.text.split(f'data-patient="{infant["id"]}"')[1].split("</tr>")[0]
    assert "not scored: under 16, birth date estimated" in unscored
    handover = nurse.get(f"/t/{facility.slug}/ward/handover")
    mine = handover.text.split("KARIUKI, Tumaini")[1].split("</dl>")[0]
    assert "<dt>PEWS</dt>" in mine and "now 9 (8 or more; age band 4–12 years)" in mine and "1 triggered" in mine

    timeline = nurse.get(f"/t/{facility.slug}/patients/{child['id']}/timeline", params={"layer": "nursing"})
    assert "PEWS 9 (4–12 years)" in timeline.text

    # Her pulse alone, taken while she was weighed, scores 2 on its one item: the worklist must not read her as a
    # child below 8, but as a score of at least 2 from an incomplete set.
    with db.tenant(facility.slug) as conn:
        vitals(conn, clinician, child, {"heart_rate_bpm": 132})
    worklist = nurse.get(f"/t/{facility.slug}/ward").text
    row = worklist.split(f'data-patient="{child["id"]}"')[1].split("</tr>")[0]
    assert "PEWS 2+" in row and "incomplete set" in row and "below 8" not in row
    assert "“+” marks a NEWS2 or PEWS from an incomplete set" in worklist

    infant_page = nurse.get(f"/t/{facility.slug}/patients/{infant['id']}/observations").text
    said = infant_page.split('id="news2-exclusion"')[1].split("</p>")[0]
    assert "PEWS cannot be scored: the birth date is an estimate" in said and "Record the birth date" in said


def test_the_trend_charts_follow_the_stay_not_last_years_clinic(db, signed_in, facility, clinician):
    """A clinic's set from three months ago put three months on the NEWS2 axis and squeezed the ward's
    sets into a line at its right edge. On a ward the charts start 48 hours before the stay; the
    observation chart still lists the old set."""
    from appliance.layers.clinical.schemas import VitalSignsIn
    from tests.layers.nursing.conftest import NORMAL

    clinic_day = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Mwende", given="Lucy")
        record.append(conn, clinician, "vital_signs", patient_id=patient["id"], occurred_at=clinic_day,
                      detail=VitalSignsIn.model_validate(NORMAL).model_dump(exclude={"encounter_id"}))
        vitals(conn, clinician, patient, HIGH)
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    shown = nurse.get(f"/t/{facility.slug}/patients/{patient['id']}/observations").text
    trend = shown.split('id="trend-title"')[1].split("</section>")[0]
    table = shown.split('id="table-title"')[1].split("</section>")[0]
    old = f"{clinic_day.astimezone(TZ):%d %b %Y %H:%M}"
    assert old in table and old not in trend
    assert "NEWS2 9" in trend and trend.startswith(">NEWS2 and vital signs since ")


def test_the_form_does_not_assume_air_and_alert(db, signed_in, facility, clinician):
    """The form came with 'Air' and 'A — alert' chosen: a pulse and a temperature saved from it were stored
    as 'air, A', as if both had been looked at, and the NEWS2 counted them as recorded."""
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Wairimu", given="Joy")
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    page = f"/t/{facility.slug}/patients/{patient['id']}/observations"
    form = nurse.get(page).text.split('class="form vitals-form"')[1].split("</form>")[0]
    for name in ("supplemental_oxygen", "consciousness"):
        options = form.split(f'name="{name}"')[1].split("</select>")[0]
        assert options.lstrip(">\n ").startswith('<option value="">— not') and " selected" not in options
    saved = post_form(nurse, page, page, {"spo2_scale": "1", "supplemental_oxygen": "", "consciousness": "",
                                          "heart_rate_bpm": "96", "temperature_c": "37.9",
                                          "encounter_id": str(patient["encounter_id"])})
    assert saved.status_code == 303
    shown = nurse.get(page).text
    missing = shown.split('id="news2-latest"')[1].split("not recorded")[0].split("incomplete set (")[-1]
    assert "Air or oxygen" in missing and "Consciousness" in missing
    row = shown.split('class="list compact obs-chart"')[1].split("</tr>")[1]
    assert ">air<" not in row and ">A<" not in row


def test_a_childs_form_asks_neither_the_spo2_scale_nor_acvpu(db, signed_in, facility, clinician):
    """PEWS uses neither NEWS2's SpO2 scale 2 nor ACVPU, and the form offered both for a 3-year-old."""
    with db.tenant(facility.slug) as conn:
        child = admit(conn, clinician, family="Wanjiru", given="Amani", born=dt.date.today() - dt.timedelta(days=1100))
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    page = f"/t/{facility.slug}/patients/{child['id']}/observations"
    form = nurse.get(page).text.split('class="form vitals-form"')[1].split("</form>")[0]
    assert 'name="spo2_scale"' not in form and 'name="consciousness"' not in form
    assert "Not asked under 16: the SpO₂ scale and consciousness (ACVPU)" in form
    # A form opened before (or typed by hand) that still says scale 2 is refused with why, nothing saved.
    stale = post_form(nurse, page, page, {"spo2_scale": "2", "spo2_percent": "91", "heart_rate_bpm": "120",
                                          "encounter_id": str(child["encounter_id"])})
    assert stale.status_code == 422 and "SpO₂ scale 2 is not used under 16 years of age" in stale.text
    with db.tenant(facility.slug) as conn:
        assert service.observations(conn, clinician, child["id"]) == []


def _screened_this_month(db, facility) -> dict[str, int]:
    """The facility's national counts of children screened and with severe acute malnutrition this month."""
    definitions = national.load_definitions(DEFINITIONS_FILE)
    period = national.Period.containing(dt.datetime.now(zoneinfo.ZoneInfo(facility.timezone)).date())
    counts = national.count_facility(db, facility.slug, facility.timezone, period, definitions)
    return {what: sum(counts[what].values()) for what in ("nutrition_screened", "sam_cases")}


def test_a_childs_observations_take_muac_and_oedema_for_the_growth_chart_and_the_ministry(
        db, signed_in, token_client, facility, clinician):
    """The ward's form for a child of 20 months takes MUAC and oedema on the same vital signs the clinic's
    arrival form writes: the growth API reads them and the national indicators count the child screened."""
    with db.tenant(facility.slug) as conn:
        child = admit(conn, clinician, family="Chebet", given="Imani", born=dt.date.today() - dt.timedelta(days=610))
    before = _screened_this_month(db, facility)
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    page = f"/t/{facility.slug}/patients/{child['id']}/observations"
    form = nurse.get(page).text.split('class="form vitals-form"')[1].split("</form>")[0]
    assert 'name="muac_mm"' in form and 'name="oedema"' in form and "under 115 mm severe" in form
    too_small = post_form(nurse, page, page, {"muac_mm": "30", "oedema": "false", "heart_rate_bpm": "130"})
    assert too_small.status_code == 422 and "at least 50" in too_small.text.split('id="muac_mm-error"')[1][:200]
    # "true" (present, which the form offered before it took the grade) is not a choice now: not read as one.
    not_a_finding = post_form(nurse, page, page, {"muac_mm": "112", "oedema": "true"})
    assert not_a_finding.status_code == 422
    assert "Choose one of the listed options" in not_a_finding.text.split('id="oedema-error"')[1][:200]
    with db.tenant(facility.slug) as conn:
        assert service.observations(conn, clinician, child["id"]) == []  # neither refusal wrote anything
    saved = post_form(nurse, page, page, {"muac_mm": "112", "oedema": "false", "heart_rate_bpm": "130",
                                          "encounter_id": str(child["encounter_id"])})
    assert saved.status_code == 303, saved.text
    row = nurse.get(page).text.split('class="list compact obs-chart"')[1].split("</tr>")[1]
    assert "112 mm" in row and ">none<" in row
    doctor = token_client(facility.slug, role="clinician")
    grown = doctor.get(f"/api/t/{facility.slug}/patients/{child['id']}/growth")
    assert grown.status_code == 200, grown.text
    latest = grown.json()["latest"]
    assert (latest["muac_mm"], latest["oedema"], latest["acute_malnutrition"]) == (112, False, "severe")
    after = _screened_this_month(db, facility)
    assert {what: after[what] - before[what] for what in after} == {"nutrition_screened": 1, "sam_cases": 1}


def test_a_childs_graded_oedema_is_charted_with_its_grade_and_counted_severe_by_the_ministry(
        db, signed_in, token_client, facility, clinician):
    """Oedema ++ alone (no MUAC) on the ward's form: kept with its grade, shown on the observation chart and
    by the growth API as severe, and counted by the national indicators as any oedema present is."""
    with db.tenant(facility.slug) as conn:
        child = admit(conn, clinician, family="Wafula", given="Neema", born=dt.date.today() - dt.timedelta(days=500))
    before = _screened_this_month(db, facility)
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    page = f"/t/{facility.slug}/patients/{child['id']}/observations"
    form = nurse.get(page).text.split('class="form vitals-form"')[1].split("</form>")[0]
    assert '<option value="3">+++ generalised, including the face</option>' in form
    saved = post_form(nurse, page, page, {"oedema": "2", "heart_rate_bpm": "128",
                                          "encounter_id": str(child["encounter_id"])})
    assert saved.status_code == 303, saved.text
    row = nurse.get(page).text.split('class="list compact obs-chart"')[1].split("</tr>")[1]
    assert ">bilateral ++<" in row
    latest = token_client(facility.slug, role="clinician").get(
        f"/api/t/{facility.slug}/patients/{child['id']}/growth").json()["latest"]
    assert (latest["oedema"], latest["oedema_grade"], latest["acute_malnutrition"]) == (True, 2, "severe")
    after = _screened_this_month(db, facility)
    assert {what: after[what] - before[what] for what in after} == {"nutrition_screened": 1, "sam_cases": 1}


def test_a_sick_child_is_weighed_on_the_wards_form_and_the_growth_chart_reads_the_weight(
        db, signed_in, token_client, facility, clinician):
    """A girl of 20 months admitted with diarrhoea is weighed on the ward each morning (her feeds and fluids go by
    the kilogram): the ward's form takes the weight, alone if that is all that was taken; it is a row of the
    observation chart and the growth API reads it against the WHO standards."""
    with db.tenant(facility.slug) as conn:
        child = admit(conn, clinician, family="Njeri", given="Wambui", born=dt.date.today() - dt.timedelta(days=610))
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    page = f"/t/{facility.slug}/patients/{child['id']}/observations"
    form = nurse.get(page).text.split('class="form vitals-form"')[1].split("</form>")[0]
    assert 'name="weight_kg"' in form
    refused = post_form(nurse, page, page, {"weight_kg": "890", "heart_rate_bpm": "132"})  # grams typed as kg
    assert refused.status_code == 422 and "400" in refused.text.split('id="weight_kg-error"')[1][:200]
    assert 'value="132"' in refused.text.split('class="form vitals-form"')[1].split("</form>")[0]  # the rest kept
    saved = post_form(nurse, page, page, {"weight_kg": "8.9", "encounter_id": str(child["encounter_id"])})
    assert saved.status_code == 303, saved.text
    chart = nurse.get(page).text.split('class="list compact obs-chart"')[1]
    assert '<th scope="col">Weight</th>' in chart and "8.900 kg" in chart.split("</tr>")[1]  # a child to the gram
    latest = token_client(facility.slug, role="clinician").get(
        f"/api/t/{facility.slug}/patients/{child['id']}/growth").json()["latest"]
    assert latest["weight_kg"] == "8.900" and latest["weight_for_age"]["band"] == "underweight"


def test_an_adults_form_takes_no_muac_and_refuses_one_sent(db, signed_in, facility, clinician, ward_patients):
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    calm = ward_patients["calm"]
    page = f"/t/{facility.slug}/patients/{calm['id']}/observations"
    assert 'name="muac_mm"' not in nurse.get(page).text
    with db.tenant(facility.slug) as conn:
        recorded = len(service.observations(conn, clinician, calm["id"]))
    forged = post_form(nurse, page, page, {"muac_mm": "240", "heart_rate_bpm": "80", "spo2_scale": "1"})
    assert forged.status_code == 422, forged.text
    assert "screen a child under 16 for acute malnutrition; this patient was 16 or older" in forged.text
    with db.tenant(facility.slug) as conn:
        assert len(service.observations(conn, clinician, calm["id"])) == recorded  # the pulse was not kept either


def test_another_facility_and_a_guessed_id_cannot_record_a_childs_muac(db, signed_in, facility, other_facility,
                                                                       clinician):
    with db.tenant(facility.slug) as conn:
        child = admit(conn, clinician, family="Auma", given="Zawadi", born=dt.date.today() - dt.timedelta(days=400))
    intruder = signed_in("nurse", other_facility.slug, ward="GEN")
    token = csrf_token(intruder.get(f"/t/{other_facility.slug}/ward").text)
    for tenant, patient_id in ((facility.slug, child["id"]), (other_facility.slug, child["id"])):
        taken = intruder.post(f"/t/{tenant}/patients/{patient_id}/observations", follow_redirects=False,
                              data={"muac_mm": "110", "oedema": "3", "_csrf_token": token})
        assert taken.status_code in (403, 404) and "Auma" not in taken.text
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    page = f"/t/{facility.slug}/patients/{child['id']}/observations"
    guessed = post_form(nurse, page, f"/t/{facility.slug}/patients/{uuid.uuid4()}/observations",
                        {"muac_mm": "110", "oedema": "3"})
    assert guessed.status_code == 404
    with db.tenant(facility.slug) as conn:
        assert service.observations(conn, clinician, child["id"]) == []


def test_bad_observations_come_back_with_the_message(signed_in, facility, ward_patients):
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    page = f"/t/{facility.slug}/patients/{ward_patients['calm']['id']}/observations"
    refused = post_form(nurse, page, page, {"respiratory_rate": "900", "spo2_scale": "1"})
    assert refused.status_code == 422 and "at most 90" in refused.text
    empty = post_form(nurse, page, page, {"spo2_scale": "1"})
    assert empty.status_code == 422 and "at least one vital sign" in empty.text


def test_the_mar_page_records_a_dose(signed_in, facility, ward_patients):
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    sick = ward_patients["sick"]
    page = f"/t/{facility.slug}/patients/{sick['id']}/mar"
    shown = nurse.get(page)
    assert shown.status_code == 200 and "Amoxicillin 500 mg oral" in shown.text
    slot = shown.text.split('name="scheduled_for" value="')[1].split('"')[0]
    rx = shown.text.split('name="medication_request_id" value="')[1].split('"')[0]
    no_reason = post_form(nurse, page, page, {"medication_request_id": rx, "scheduled_for": slot, "outcome": "held"})
    assert no_reason.status_code == 422 and "Say why the dose was held" in no_reason.text
    held = post_form(nurse, page, page, {"medication_request_id": rx, "scheduled_for": slot, "outcome": "held",
                                         "reason": "vomiting"})
    assert held.status_code == 303
    after = nurse.get(held.headers["location"])
    assert "Dose recorded on the MAR." in after.text and "vomiting" in after.text
    twice = post_form(nurse, page, page, {"medication_request_id": rx, "scheduled_for": slot, "outcome": "given"})
    assert twice.status_code == 422 and "already recorded as held" in twice.text


def _prescribe(conn, clinician, patient: dict, drug: str, frequency: str, *, override: str | None = None,
               hours_ago: float = 24):
    return record.append(conn, clinician, "medication_request", patient_id=patient["id"],
                         occurred_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours_ago),
                         encounter_id=patient["encounter_id"],
                         detail={"drug": drug, "dose": Decimal(500), "dose_unit": "mg", "route": "oral",
                                 "frequency": frequency, "duration_days": 5, "status": "active", "instructions": None,
                                 "allergy_override_reason": override, "order_set": None})


def test_the_mar_warns_beside_a_drug_the_patient_is_allergic_to(db, signed_in, facility, clinician):
    """The drug–allergy check runs at prescribing: an allergy recorded after the amoxicillin was prescribed
    left the nurse on the round with the banner's 'Penicillin' and nothing beside the amoxicillin row."""
    from appliance.layers.clinical import service as clinical
    from appliance.layers.clinical.schemas import AllergyIn

    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Wekesa", given="John")
        before = _prescribe(conn, clinician, patient, "Amoxicillin", "every 8 hours")
        overridden = _prescribe(conn, clinician, patient, "Cloxacillin", "every 6 hours",
                                override="Desensitised in 2024; allergist's letter on file")
        _prescribe(conn, clinician, patient, "Paracetamol", "every 6 hours")
        clinical.add_allergy(conn, clinician, patient["id"], AllergyIn(substance="Penicillin", criticality="high"))
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    page = nurse.get(f"/t/{facility.slug}/patients/{patient['id']}/mar")
    assert page.status_code == 200

    def line(drug: str) -> str:
        return page.text.split(f"{drug} 500 mg oral")[1].split('<table class="list compact doses">')[0]

    warned = line("Amoxicillin")
    assert f'id="allergy-{before.root_id}"' in warned and "Amoxicillin and Penicillin are both penicillins" in warned
    assert "Check with the prescriber before giving it" in warned
    kept = line("Cloxacillin")
    assert "Cloxacillin and Penicillin are both penicillins" in kept
    assert "Prescribed despite the allergy: “Desensitised in 2024; allergist&#39;s letter on file”" in kept
    assert f'id="allergy-{overridden.root_id}"' in kept
    assert "Allergy:" not in line("Paracetamol")


def test_the_mar_says_when_late_doses_are_on_another_days_page(db, signed_in, facility, clinician):
    """At 06:00 the MAR opens on today, and last night's 20:00 dose, late with nothing recorded, is on
    yesterday's page: the worklist said '1 late' and the MAR the nurse opened from the chart showed every
    dose 'due'. Each day's page now says how many late doses of the last day are elsewhere, and opens the
    first one's day."""
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Kiprono", given="Luke")
        _prescribe(conn, clinician, patient, "Ceftriaxone", "every 6 hours", hours_ago=25)
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    mar = f"/t/{facility.slug}/patients/{patient['id']}/mar"
    today = dt.datetime.now(TZ).date()

    def elsewhere(text: str) -> int:
        note = text.split('id="late-elsewhere">')[1].split("</p>")[0] if 'id="late-elsewhere"' in text else ""
        return int(note.split("<strong>")[1].split(" dose")[0]) if note else 0

    worklist = nurse.get(f"/t/{facility.slug}/ward").text
    row = worklist.split(f'data-patient="{patient["id"]}"')[1].split("</tr>")[0]
    on_worklist = int(row.split('<span class="badge flag-critical">')[-1].split(" late")[0])
    assert on_worklist >= 3
    tomorrow = nurse.get(f"{mar}?day={(today + dt.timedelta(days=1)).isoformat()}").text
    assert elsewhere(tomorrow) == on_worklist
    first = tomorrow.split('id="late-elsewhere">')[1].split("</p>")[0]
    first_day = first.split(f'href="{mar}?day=')[1].split('"')[0]
    assert first_day in {today.isoformat(), (today - dt.timedelta(days=1)).isoformat()}
    assert "nothing recorded" in first and "late</strong> on another day's page" in first
    shown_today = nurse.get(mar).text
    assert len(_late_doses(shown_today)) + elsewhere(shown_today) == on_worklist


def test_an_as_needed_line_says_when_it_was_last_given_and_how_often_today(db, signed_in, facility, clinician):
    """'Paracetamol PRN, max 4 g in 24 h': the MAR listed only the shown day's doses, so at 01:00 the
    doses given last evening were on another page and the nurse giving one more saw none."""
    from appliance.layers.nursing import service
    from appliance.layers.nursing.schemas import AdministrationIn

    now = dt.datetime.now(dt.UTC)
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Nyambura", given="Grace")
        rx = _prescribe(conn, clinician, patient, "Paracetamol", "as needed", hours_ago=30)
        for hours in (26, 20, 3):
            service.record_administration(conn, clinician, patient["id"], AdministrationIn.model_validate(
                {"medication_request_id": rx.id, "outcome": "given", "reason": "pain",
                 "administered_at": now - dt.timedelta(hours=hours)}), now=now, tz=TZ)
        never = _prescribe(conn, clinician, patient, "Ibuprofen", "as needed", hours_ago=2)
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    mar = f"/t/{facility.slug}/patients/{patient['id']}/mar"
    last = (now - dt.timedelta(hours=3)).astimezone(TZ)
    for day in ("", f"?day={(dt.datetime.now(TZ).date() + dt.timedelta(days=1)).isoformat()}"):
        page = nurse.get(mar + day).text
        said = page.split(f'id="last-given-{rx.root_id}">')[1].split("</p>")[0]
        assert f"Last given <strong>{last:%d %b %Y %H:%M}</strong> (3 h" in said
        assert "<strong>2</strong> doses in the last 24 hours" in said
        assert page.split(f'id="last-given-{never.root_id}">')[1].startswith("Not given yet.")


def _late_doses(page_text: str) -> list[str]:
    """The scheduled_for of each late dose row on a MAR page."""
    rows = page_text.split('<tr class="dose-late">')[1:]
    return [row.split('name="scheduled_for" value="')[1].split('"')[0] for row in rows]


def test_a_dose_charted_later_keeps_the_time_it_was_given(signed_in, facility, ward_patients):
    """A nurse charts at the end of the round: the time typed is when the dose went in, so a dose given
    on time is not called late; a refusal keeps the row's choices and says what is wrong beside it."""
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    sick = ward_patients["sick"]
    page = f"/t/{facility.slug}/patients/{sick['id']}/mar"
    today = nurse.get(page).text
    yesterday_day = (dt.datetime.now(TZ).date() - dt.timedelta(days=1)).isoformat()
    yesterday = nurse.get(f"{page}?day={yesterday_day}").text
    first_today = today.split('name="scheduled_for" value="')[1].split('"')[0]  # another test holds it
    slot = next(s for s in _late_doses(yesterday) + _late_doses(today) if s != first_today)
    due = dt.datetime.fromisoformat(slot).astimezone(TZ)
    rx = today.split('name="medication_request_id" value="')[1].split('"')[0]
    day = due.date().isoformat()
    shown_day = f"{page}?day={day}"

    refused = post_form(nurse, shown_day, page, {"medication_request_id": rx, "scheduled_for": slot,
                                                 "outcome": "refused", "reason": "", "day": day})
    assert refused.status_code == 422
    row = refused.text.split(f'value="{slot}"')[0].rsplit("<tr", 1)[1]
    assert "Say why the dose was refused." in row and 'id="mar-problem"' not in refused.text
    kept = refused.text.split(f'value="{slot}"')[1].split("</tr>")[0]
    assert '<option value="refused" selected>' in kept and 'value="None"' not in kept
    bad_time = post_form(nurse, shown_day, page, {"medication_request_id": rx, "scheduled_for": slot,
                                                  "outcome": "given", "given_at": "25:70", "day": day})
    assert bad_time.status_code == 422 and "Give the time the dose was given as HH:MM." in bad_time.text
    assert 'value="25:70"' in bad_time.text

    given = due + dt.timedelta(minutes=5)
    saved = post_form(nurse, shown_day, page, {"medication_request_id": rx, "scheduled_for": slot,
                                               "outcome": "given", "given_at": f"{given:%H:%M}", "day": day})
    assert saved.status_code == 303, saved.text
    after = nurse.get(saved.headers["location"]).text
    assert f'given {given:%d %b %Y %H:%M} <span class="muted">' in after  # on time: no "min late"


def test_care_plans_and_handover_pages(signed_in, facility, ward_patients):
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    calm = ward_patients["calm"]
    page = f"/t/{facility.slug}/patients/{calm['id']}/care-plans"
    assert post_form(nurse, page, page, {"problem": "", "goal": "x", "interventions": ""}).status_code == 422
    saved = post_form(nurse, page, page, {"problem": "Impaired mobility", "goal": "Walks to the bathroom unaided",
                                          "interventions": "Physiotherapy daily\nWalking frame at bedside"})
    assert saved.status_code == 303
    shown = nurse.get(page)
    assert "Walking frame at bedside" in shown.text
    plan_id = shown.text.split("/care-plans/")[1].split("/evaluate")[0]
    evaluated = post_form(nurse, page, f"{page}/{plan_id}/evaluate",
                          {"evaluation": "Walking with the frame", "status": "achieved"})
    assert evaluated.status_code == 303
    assert "Walking with the frame" in nurse.get(page).text
    handover = nurse.get(f"/t/{facility.slug}/ward/handover")
    assert handover.status_code == 200 and "AKINYI, Mary" in handover.text and "ODHIAMBO" in handover.text
    kept = post_form(nurse, f"/t/{facility.slug}/ward/handover", f"/t/{facility.slug}/ward/handover",
                     {"ward": "GEN", "note": "Quiet night apart from bed 1"})
    assert kept.status_code == 303
    assert "Quiet night apart from bed 1" in nurse.get(kept.headers["location"]).text


def test_a_refused_evaluation_comes_back_beside_its_plan(db, signed_in, facility, clinician):
    """An evaluation over 2,000 characters, or of a plan changed meanwhile, was an error page ('Something
    went wrong', 400) and the evaluation typed was lost."""
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Nekesa", given="Irene")
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    page = f"/t/{facility.slug}/patients/{patient['id']}/care-plans"
    assert post_form(nurse, page, page, {"problem": "Acute pain", "goal": "Pain score under 4",
                                         "interventions": "Analgesia as prescribed"}).status_code == 303
    plan_id = nurse.get(page).text.split("/care-plans/")[1].split("/evaluate")[0]
    long = "Pain 6/10 at rest, 8/10 on moving; " * 60 + "review analgesia with the team."
    refused = post_form(nurse, page, f"{page}/{plan_id}/evaluate", {"evaluation": long, "status": "achieved"})
    assert refused.status_code == 422
    form = refused.text.split(f'id="evaluation-{plan_id}"')[0].rsplit("<form", 1)[1]
    assert "at most 2000 characters" in form
    kept = refused.text.split(f'id="evaluation-{plan_id}"')[1]
    assert "review analgesia with the team.</textarea>" in kept.split("</form>")[0]
    assert '<option value="achieved" selected>' in kept.split("</form>")[0]
    stale = post_form(nurse, page, f"{page}/{uuid.uuid4()}/evaluate", {"evaluation": "better", "status": "active"})
    assert stale.status_code == 409
    assert 'id="evaluation-problem">This care plan has changed since you loaded it; reload the page.' in stale.text


def test_the_incoming_shift_reads_what_was_handed_over(db, signed_in, facility, clinician):
    """The handover page kept only the outgoing nurse's note of a recorded handover ('13 patients'): the
    summary 'kept with your note' could not be read by the shift it was handed to. Each recorded handover
    now opens onto its patients as they were handed over, whatever has happened since."""
    from tests.layers.nursing.conftest import NORMAL

    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Atieno", given="Rose")
        vitals(conn, clinician, patient, NORMAL)
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    page = f"/t/{facility.slug}/ward/handover"
    kept = post_form(nurse, page, page, {"ward": "GEN", "note": "Mrs Atieno settled"})
    assert kept.status_code == 303
    with db.tenant(facility.slug) as conn:
        vitals(conn, clinician, patient, HIGH)  # after the handover: the live summary changes, the kept one not
    shown = nurse.get(page).text
    handed = shown.split('id="recent-title"')[1].split("</section>")[0]
    assert "Mrs Atieno settled" in handed and "The summary handed over:" in handed
    card = handed.split("ATIENO, Rose")[1].split("</article>")[0]
    assert "<dt>NEWS2</dt><dd>now 0 (low)" in card
    live = shown.split("</section>", 1)[1].split("ATIENO, Rose")[1].split("</article>")[0]
    assert "<dt>NEWS2</dt><dd>now 9 (high)" in live


def test_an_infant_s_age_is_in_months_on_the_ward_pages_as_on_the_chart(db, signed_in, facility, clinician):
    """The worklist and the handover said "0 y" of an 8-month-old whose chart banner says "8 mo"."""
    today = dt.datetime.now(TZ).date()
    year, month = divmod(today.year * 12 + today.month - 1 - 8, 12)
    with db.tenant(facility.slug) as conn:
        infant = admit(conn, clinician, family="Chebet", given="Baby", born=dt.date(year, month + 1, 1))
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    row = nurse.get(f"/t/{facility.slug}/ward").text.split(f'data-patient="{infant["id"]}"')[1].split("</tr>")[0]
    assert "8 mo · male" in row
    page = f"/t/{facility.slug}/ward/handover"
    assert post_form(nurse, page, page, {"ward": "GEN", "note": "Baby Chebet feeding well"}).status_code == 303
    shown = nurse.get(page).text
    kept, live = (part.split("CHEBET, Baby")[1].split("</h")[0]
                  for part in shown.split('id="recent-title"')[1].split("</section>", 1))
    assert "8 mo · male" in live and "8 mo · male" in kept


def test_the_handover_flags_a_dose_given_against_an_allergy(db, signed_in, facility, clinician):
    """Amoxicillin given at 22:30 to a woman whose penicillin allergy was recorded after it was prescribed:
    the handover listed 'Allergies: Penicillin' and the dose a few lines apart, nothing joining them. And a
    single set read '1 set this shift, one set'."""
    from appliance.layers.clinical import service as clinical
    from appliance.layers.clinical.schemas import AllergyIn
    from appliance.layers.nursing import service
    from appliance.layers.nursing.schemas import AdministrationIn
    from tests.layers.nursing.conftest import NORMAL

    now = dt.datetime.now(dt.UTC)
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Jeptoo", given="Mercy")
        vitals(conn, clinician, patient, NORMAL)
        for drug in ("Amoxicillin", "Paracetamol"):
            rx = _prescribe(conn, clinician, patient, drug, "as needed", hours_ago=3)
            service.record_administration(conn, clinician, patient["id"], AdministrationIn.model_validate(
                {"medication_request_id": rx.id, "outcome": "given", "administered_at": now}), now=now, tz=TZ)
        clinical.add_allergy(conn, clinician, patient["id"], AllergyIn(substance="Penicillin", criticality="high"))
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    mine = nurse.get(f"/t/{facility.slug}/ward/handover").text.split("JEPTOO, Mercy")[1].split("</dl>")[0]
    [amoxicillin] = [line for line in mine.split("<li")[1:] if "Amoxicillin 500 mg oral given" in line]
    [paracetamol] = [line for line in mine.split("<li")[1:] if "Paracetamol 500 mg oral given" in line]
    assert '<span class="badge flag-critical" data-kind="class">⚠ same class as the allergy to Penicillin</span>' \
        in amoxicillin
    assert "allergy" not in paracetamol
    assert "1 set this shift</dd>" in mine


def test_a_handover_note_too_long_comes_back_whole(signed_in, facility, ward_patients):
    """A note past 4,000 characters was cut there without a word, and its end was lost."""
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    page = f"/t/{facility.slug}/ward/handover"
    long = "Bed 2: pain controlled. " * 170 + "Bed 6: family to be called at 08:00."
    refused = post_form(nurse, page, page, {"ward": "GEN", "note": long})
    assert refused.status_code == 422
    assert "at most 4000 characters" in refused.text
    assert "Bed 6: family to be called at 08:00.</textarea>" in refused.text


def test_the_handover_page_shows_a_dose_given_this_shift_for_a_slot_before_it(db, signed_in, facility, clinician):
    from appliance.layers.nursing import service, ward
    from appliance.layers.nursing.schemas import AdministrationIn

    now = dt.datetime.now(dt.UTC)
    shift_start, _ = ward.current_shift(now, TZ)
    slot = shift_start - dt.timedelta(hours=11)  # twice daily runs 08:00 and 20:00; shifts start at 07:00 and 19:00
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Chebet", given="Ruth")
        rx = record.append(conn, clinician, "medication_request", patient_id=patient["id"],
                           occurred_at=slot - dt.timedelta(hours=1), encounter_id=patient["encounter_id"],
                           detail={"drug": "Metronidazole", "dose": Decimal(400), "dose_unit": "mg", "route": "oral",
                                   "frequency": "twice daily", "duration_days": 5, "status": "active",
                                   "instructions": None, "allergy_override_reason": None, "order_set": None})
        given = service.record_administration(conn, clinician, patient["id"], AdministrationIn.model_validate(
            {"medication_request_id": rx.id, "scheduled_for": slot, "outcome": "given", "administered_at": now}),
            now=now, tz=TZ)
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    handover = nurse.get(f"/t/{facility.slug}/ward/handover")
    assert handover.status_code == 200
    mine = handover.text.split("CHEBET, Ruth")[1].split("</dl>")[0]
    assert mine.count("Metronidazole 400 mg oral given") == 1
    assert (f"given {now.astimezone(TZ):%d %b %Y %H:%M} for the dose due {slot.astimezone(TZ):%d %b %Y %H:%M} "
            f'<span class="badge override">{lateness(given["minutes_late"])}</span>') in mine


def test_someone_not_tied_to_a_ward_starts_on_the_busiest_general_ward(signed_in, facility, ward_patients):
    clinician = signed_in("clinician", facility.slug)
    worklist = clinician.get(f"/t/{facility.slug}/ward")
    assert worklist.status_code == 200
    assert "<h1>General ward" in worklist.text and "ODHIAMBO, Joseph" in worklist.text
    # The selector says where the patients are before anyone picks a ward.
    assert ">Casualty · 0 patients</option>" in worklist.text
    assert re.search(r">Maternity ward · \d+ patients?</option>", worklist.text)
    assert clinician.get(f"/t/{facility.slug}/ward?ward_code=CAS").text.count("No patients on this ward now.") == 1


def test_the_pages_refuse_what_the_api_refuses(signed_in, facility, other_facility, ward_patients):
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    maternity = ward_patients["maternity"]
    for path in ("observations", "mar", "care-plans"):
        other_ward = nurse.get(f"/t/{facility.slug}/patients/{maternity['id']}/{path}")
        assert other_ward.status_code == 403 and "reason" in other_ward.text
        assert nurse.get(f"/t/{facility.slug}/patients/{uuid.uuid4()}/{path}").status_code == 404
    assert nurse.get(f"/t/{facility.slug}/ward?ward_code=MAT").status_code == 403
    intruder = signed_in("nurse", other_facility.slug, ward="GEN")
    for path in ("/ward", "/ward/handover", f"/patients/{ward_patients['sick']['id']}/observations"):
        assert intruder.get(f"/t/{facility.slug}{path}").status_code == 403
    registrar = signed_in("registrar", facility.slug)
    assert registrar.get(f"/t/{facility.slug}/ward").status_code == 403
    # A guessed task id through a real patient's URL.
    page = f"/t/{facility.slug}/patients/{ward_patients['calm']['id']}/care-plans"
    guessed = post_form(nurse, page, f"/t/{facility.slug}/patients/{ward_patients['calm']['id']}/tasks/"
                        f"{uuid.uuid4()}/done", {})
    assert guessed.status_code == 404


def test_the_timeline_shows_the_nursing_entries(signed_in, facility, ward_patients):
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    timeline = nurse.get(f"/t/{facility.slug}/patients/{ward_patients['sick']['id']}/timeline",
                         params={"layer": "nursing"})
    assert timeline.status_code == 200
    assert "NEWS2 13 (high)" in timeline.text and "Amoxicillin held" in timeline.text


def test_every_page_read_is_in_the_patients_access_log(db, signed_in, facility, ward_patients):
    from appliance.substrate import audit

    nurse = signed_in("nurse", facility.slug, ward="GEN")
    sick = ward_patients["sick"]
    before = len(audit.patient_access_log(db, facility.slug, sick["id"]))
    for path in ("observations", "mar", "care-plans"):
        assert nurse.get(f"/t/{facility.slug}/patients/{sick['id']}/{path}").status_code == 200
    assert nurse.get(f"/t/{facility.slug}/ward").status_code == 200
    events = [e for e in audit.patient_access_log(db, facility.slug, sick["id"])][before:]
    kinds = {e.event_type for e in events if e.who["account"] == str(nurse.person.account_id)}
    assert {"record.vital_signs.read", "record.news2.read", "record.medication_request.read",
            "record.medication_administration.read", "record.care_plan.read", "record.worklist.read"} <= kinds


def test_the_chart_summary_shows_the_early_warning_score_that_applies(db, signed_in, facility, clinician):
    from appliance.layers.clinical import service as clinical
    from appliance.layers.clinical.schemas import ConditionIn
    from appliance.substrate import audit

    unwell = {"respiratory_rate": 27, "spo2_percent": 91, "spo2_scale": 1, "supplemental_oxygen": True,
              "oxygen_l_min": 4, "systolic_mmhg": 165, "diastolic_mmhg": 110, "heart_rate_bpm": 124,
              "consciousness": "A", "temperature_c": 38.6}
    with db.tenant(facility.slug) as conn:
        adult = admit(conn, clinician, family="Mutua", given="Daniel")
        mother = admit(conn, clinician, ward="MAT", family="Chebet", given="Ruth")
        clinical.add_condition(conn, clinician, mother["id"], ConditionIn(code="O14.1"))
        child = admit(conn, clinician, family="Mwangi", given="Brian",
                      born=dt.date.today() - dt.timedelta(days=8 * 365))
        for who in (adult, mother, child):
            vitals(conn, clinician, who, unwell)
    doctor = signed_in("clinician", facility.slug)

    def warning(patient: dict) -> str:
        page = doctor.get(f"/t/{facility.slug}/patients/{patient['id']}/chart")
        assert page.status_code == 200
        return page.text.split('id="chart-warning"')[1].split("</div>")[0]

    shown = warning(adult)
    assert "badge news2 risk-high" in shown and "Emergency response" in shown and "next observations due" in shown
    shown = warning(mother)
    assert "MEOWS · " in shown and "Urgent obstetric review" in shown and "badge news2" not in shown
    shown = warning(child)
    # At eight: RR 27 is 0, SpO2 91 is 1, oxygen at 4 L/min 4, systolic 165 is 2, pulse 124 is 1.
    assert "badge pews risk-triggered" in shown and "PEWS 8 · 8 or more" in shown and "badge news2" not in shown
    assert "PEWS total 8 in the 4–12 years age band" in shown and "Urgent paediatric review" in shown
    reads = {e.event_type for e in audit.patient_access_log(db, facility.slug, adult["id"])
             if e.who["account"] == str(doctor.person.account_id)}
    assert "record.news2.read" in reads


def test_the_chart_says_what_a_news2_is_and_a_finished_visit_has_nothing_overdue(signed_in, db, facility, clinician):
    """'NEWS2 3+ · Low–medium' alone told a nurse nothing; the chart now says the total, that the set was
    incomplete, the band and the parameter that put it there. And a clinic visit five hours ago, finished,
    showed its next observations 'overdue' for good: an outpatient visit schedules none."""
    from appliance.layers.clinical import service as clinical
    from appliance.layers.clinical.schemas import VitalSignsIn

    with db.tenant(facility.slug) as conn:
        visit = admit(conn, clinician, ward=None, encounter_class="outpatient", family="Njeri", given="Alice")
        taken = VitalSignsIn(respiratory_rate=8, spo2_percent=97)  # 3 for the rate alone, 0 for SpO2
        record.append(conn, clinician, "vital_signs", patient_id=visit["id"], encounter_id=visit["encounter_id"],
                      occurred_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=5),
                      detail=taken.model_dump(exclude={"encounter_id"}))
        clinical.transition_encounter(conn, clinician, visit["id"], visit["encounter_id"], "finished")
    page = signed_in("clinician", facility.slug).get(f"/t/{facility.slug}/patients/{visit['id']}/chart")
    shown = page.text.split('id="chart-warning"')[1].split("</div>")[0]
    assert "NEWS2 3+" in shown and "(an incomplete set: at least 3)" in shown
    assert ("NEWS2 total 3 from an incomplete set (Air or oxygen, Systolic BP, Pulse, Consciousness, Temperature "
            "not recorded), so at least 3: low–medium clinical risk (3 in a single parameter).") in shown
    assert "Points from Resp. rate 3 (a red score)." in shown and "Urgent ward-based response" in shown
    assert "no repeat observations scheduled" in shown and "overdue" not in shown


@pytest.mark.parametrize(("minutes", "said"), [(45, "45 min late"), (60, "1 h late"), (1049, "17 h 29 min late")])
def test_lateness_is_said_in_hours_and_minutes(minutes, said):
    assert lateness(minutes) == said


def test_a_set_on_the_wrong_patient_is_withdrawn_from_the_observations_page_with_its_escalation(
        db, signed_in, facility, other_facility, clinician):
    """The API could mark a set entered in error, the page could not: a set charted on the wrong patient kept
    driving that patient's NEWS2 and its emergency response on the ward's worklist."""
    from appliance.layers.nursing import service
    from tests.layers.nursing.conftest import NORMAL

    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Kiprono", given="Daniel")
        vitals(conn, clinician, patient, NORMAL)
    with db.tenant(facility.slug) as conn:  # a transaction each: a set's time is its transaction's
        wrong = vitals(conn, clinician, patient, HIGH)
    page = f"/t/{facility.slug}/patients/{patient['id']}/observations"
    action = f"/t/{facility.slug}/patients/{patient['id']}/entries/{wrong['id']}/entered-in-error"
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    assert "entered-in-error" not in nurse.get(page).text, "the API's permission to withdraw is a clinician's"
    assert post_form(nurse, page, action, {"reason": "wrong patient"}).status_code == 403
    intruder = signed_in("clinician", other_facility.slug)
    assert intruder.post(action, data={"reason": "wrong patient"}).status_code in (403, 404)
    doctor = signed_in("clinician", facility.slug)
    guessed = post_form(doctor, page, action.replace(str(wrong["id"]), str(uuid.uuid4())), {"reason": "a guess"})
    assert guessed.status_code == 404

    assert "KIPRONO" in escalations_on_the_worklist(nurse, facility)
    refused = post_form(doctor, page, action, {"reason": ""})
    assert refused.status_code == 422
    form = refused.text.split(f'id="retract-{wrong["id"]}"')[1].split("</form>")[0]
    assert 'id="reason-error"' in form
    assert "NEWS2 9" in refused.text.split('id="news2-title"')[1].split("</section>")[0], "nothing written"
    done = post_form(doctor, page, action, {"reason": "charted on the wrong patient"})
    assert done.status_code == 303 and done.headers["location"].endswith("/observations?done=retracted")
    shown = doctor.get(done.headers["location"]).text
    assert "NEWS2 0" in shown.split('id="news2-title"')[1].split("</section>")[0]
    table = shown.split('id="table-title"')[1].split("</section>")[0]
    live, withdrawn = table.split('class="withdrawn"')
    # The cell, not the text: an entry id in a form's address may hold "118" by chance (the check failed so once).
    assert not re.search(r">\s*118\s*<", live) and "NEWS2 9" not in live
    item = withdrawn.split(f'<li id="withdrawn-{wrong["id"]}">')[1].split("</li>")[0]
    assert "<s>Set of " in item and "HR 118" in item and "charted on the wrong patient" in item
    assert "KIPRONO" not in escalations_on_the_worklist(nurse, facility)
    with db.tenant(facility.slug) as conn:
        [cancelled] = service.tasks_of(conn, [patient["id"]], codes=["escalation"])
    assert cancelled["status"] == "cancelled" and cancelled["note"].endswith("charted on the wrong patient")


def escalations_on_the_worklist(nurse, facility) -> str:
    worklist = nurse.get(f"/t/{facility.slug}/ward").text
    return worklist.split('id="escalations-title"')[1].split("</section>")[0] \
        if 'id="escalations-title"' in worklist else ""


def _charted_13_hours_ago(db, facility, account_id, patient) -> uuid.UUID:
    """A set of vital signs charted by `account_id` 13 hours ago (the bulk path's replay of a past record), past
    the 12 hours in which its author may withdraw it herself."""
    from appliance.layers.clinical.schemas import VitalSignsIn
    from appliance.substrate.principal import Principal

    author = Principal(account_id=account_id, kind="staff", display_name="Night nurse", tenant=facility.slug,
                       role="nurse")
    then = dt.datetime.now(dt.UTC) - dt.timedelta(hours=13)
    with db.tenant(facility.slug) as conn:
        [old] = record.append_many(conn, author, [record.NewEntry(
            "vital_signs", patient["id"], encounter_id=patient["encounter_id"], occurred_at=then, recorded_at=then,
            detail=VitalSignsIn.model_validate(HIGH).model_dump(exclude={"encounter_id"}))])
    return old.id


def _versions(db, facility, clinician, patient, entry_id) -> int:
    from appliance.layers.clinical import service as clinical

    with db.tenant(facility.slug) as conn:
        return len(clinical.entry_history(conn, clinician, patient["id"], entry_id))


def test_the_nurse_who_charted_a_set_withdraws_it_from_the_page_within_the_shift_and_no_one_else_does(
        db, signed_in, facility, other_facility, clinician):
    """A set charted on the wrong patient at night kept its NEWS2 escalation on that patient until a doctor came:
    only a clinician could withdraw it. The nurse who charted it now may, within 12 hours (ACC-035); another
    nurse of the ward, a nurse of another facility, a guessed id and the author after the 12 hours are refused."""
    from appliance.substrate import audit
    from tests.layers.nursing.conftest import NORMAL

    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Chebet", given="Ruth")
        vitals(conn, clinician, patient, NORMAL)
    author, colleague = signed_in("nurse", facility.slug, ward="GEN"), signed_in("nurse", facility.slug, ward="GEN")
    page = f"/t/{facility.slug}/patients/{patient['id']}/observations"
    saved = post_form(author, page, page, {key: str(value).lower() if isinstance(value, bool) else str(value)
                                           for key, value in HIGH.items()}
                      | {"spo2_scale": "1", "encounter_id": str(patient["encounter_id"])})
    assert saved.status_code == 303, saved.text
    with db.tenant(facility.slug) as conn:
        [wrong] = [r["id"] for r in service.observations(conn, clinician, patient["id"]) if r["heart_rate_bpm"] == 118]
    old = _charted_13_hours_ago(db, facility, author.person.account_id, patient)
    own = f"/t/{facility.slug}/patients/{patient['id']}/vitals/{wrong}/entered-in-error"
    assert "CHEBET" in escalations_on_the_worklist(author, facility)

    # Another nurse of the ward: no form on the set, the page says who can; posted anyway, 403 saying so.
    seen = colleague.get(page).text
    assert f'action="{own}"' not in seen and 'id="who-withdraws"' in seen
    refused = post_form(colleague, page, own, {"reason": "wrong patient"})
    assert refused.status_code == 403 and "Only the nurse who charted this set" in refused.text
    generic = own.replace("/vitals/", "/entries/")
    assert post_form(colleague, page, generic, {"reason": "wrong patient"}).status_code == 403
    # A nurse of another facility, and a guessed id.
    stranger = signed_in("nurse", other_facility.slug, ward="GEN")
    assert stranger.post(own, data={"reason": "wrong patient"}).status_code in (403, 404)
    guessed = post_form(author, page, own.replace(str(wrong), str(uuid.uuid4())), {"reason": "a guess"})
    assert guessed.status_code == 404
    # The author's own set charted 13 hours ago: no form, and refused with who can.
    mine = author.get(page).text
    assert f'/vitals/{old}/entered-in-error' not in mine and f'action="{own}"' in mine
    late = post_form(author, page, own.replace(str(wrong), str(old)), {"reason": "wrong patient"})
    assert late.status_code == 403 and "more than 12 hours ago" in late.text and "clinician" in late.text
    assert _versions(db, facility, clinician, patient, wrong) == 1 and _versions(db, facility, clinician,
                                                                                 patient, old) == 1

    done = post_form(author, page, own, {"reason": "charted on the wrong patient"})
    assert done.status_code == 303 and done.headers["location"].endswith("/observations?done=retracted")
    table = author.get(done.headers["location"]).text.split('id="table-title"')[1].split("</section>")[0]
    assert "charted on the wrong patient" in table.split('class="withdrawn"')[1]
    assert "CHEBET" not in escalations_on_the_worklist(author, facility)
    with db.tenant(facility.slug) as conn:
        [cancelled] = service.tasks_of(conn, [patient["id"]], codes=["escalation"])
    assert cancelled["status"] == "cancelled" and cancelled["note"].endswith("charted on the wrong patient")
    log = audit.patient_access_log(db, facility.slug, patient["id"])
    assert any(e.event_type == "record.vital_signs.retract" and e.who["account"] == str(author.person.account_id)
               for e in log)


def test_the_api_lets_the_author_of_a_set_withdraw_it_within_the_shift_and_a_clinician_at_any_time(
        db, token_client, facility, other_facility, clinician):
    """POST .../vitals/<id>/entered-in-error asks the same rule as the page (the substrate's `retraction`): another
    nurse's client, another facility's, a guessed id and the author's own set after 12 hours are refused with nothing
    written; the author within them withdraws it, its escalation with it; a clinician withdraws the old one."""
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Wekesa", given="Tom")
    author, colleague = token_client(facility.slug, role="nurse"), token_client(facility.slug, role="nurse")
    base = f"/api/t/{facility.slug}/patients/{patient['id']}/vitals"
    body = {key: str(value) if isinstance(value, Decimal) else value for key, value in HIGH.items()}
    charted = author.post(base, json=body | {"encounter_id": str(patient["encounter_id"])})
    assert charted.status_code == 201, charted.text
    wrong = charted.json()["id"]
    old = _charted_13_hours_ago(db, facility, uuid.UUID(charted.json()["author_id"]), patient)
    reason = {"reason": "charted on the wrong patient"}

    refused = colleague.post(f"{base}/{wrong}/entered-in-error", json=reason)
    assert refused.status_code == 403 and "only the nurse who charted this set" in refused.json()["detail"]
    assert token_client(other_facility.slug, role="nurse").post(
        f"/api/t/{other_facility.slug}/patients/{patient['id']}/vitals/{wrong}/entered-in-error",
        json=reason).status_code in (403, 404)
    assert author.post(f"{base}/{uuid.uuid4()}/entered-in-error", json=reason).status_code == 404
    late = author.post(f"{base}/{old}/entered-in-error", json=reason)
    assert late.status_code == 403 and "more than 12 hours ago" in late.json()["detail"]
    assert _versions(db, facility, clinician, patient, wrong) == 1 and _versions(db, facility, clinician,
                                                                                 patient, old) == 1

    done = author.post(f"{base}/{wrong}/entered-in-error", json=reason)
    assert done.status_code == 200 and done.json()["entry_status"] == "entered_in_error", done.text
    with db.tenant(facility.slug) as conn:
        escalations = service.tasks_of(conn, [patient["id"]], codes=["escalation"])
    # Its escalation goes with it; the set before it, still in force (a NEWS2 of 9 too), escalates again.
    assert sorted((t["status"], t["source_id"] == service.derived_id("news2", old)) for t in escalations) == [
        ("cancelled", False), ("open", True)]
    by_doctor = token_client(facility.slug, role="clinician").post(f"{base}/{old}/entered-in-error", json=reason)
    assert by_doctor.status_code == 200, by_doctor.text
    with db.tenant(facility.slug) as conn:
        escalations = service.tasks_of(conn, [patient["id"]], codes=["escalation"])
    assert [t["status"] for t in escalations] == ["cancelled"] * len(escalations) and escalations


# -- a dose on the MAR and a fluid balance line, withdrawn as a set of vital signs is (ACC-035) ---------------------


def _prescribed(db, facility, clinician, patient) -> uuid.UUID:
    """An as-needed paracetamol for the patient: its doses are recorded whenever given."""
    from appliance.layers.clinical import service as clinical
    from appliance.layers.clinical.schemas import MedicationIn

    with db.tenant(facility.slug) as conn:
        return clinical.request_medication(conn, clinician, patient["id"], MedicationIn(
            drug="Paracetamol", dose=Decimal(1), dose_unit="g", route="oral", frequency="as needed",
            encounter_id=patient["encounter_id"])).placed[0]["root_id"]


def _dose_and_line(db, facility, patient, prescription_id, author_id, *,
                   hours_ago: float = 0) -> tuple[uuid.UUID, uuid.UUID]:
    """A dose of the prescription given and an oral intake line, both charted by `author_id` `hours_ago` hours ago
    (the bulk path's replay of a past record)."""
    from appliance.substrate.principal import Principal

    author = Principal(account_id=author_id, kind="staff", display_name="Nurse", tenant=facility.slug, role="nurse")
    then = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours_ago)
    with db.tenant(facility.slug) as conn:
        dose, line = record.append_many(conn, author, [
            record.NewEntry("medication_administration", patient["id"], encounter_id=patient["encounter_id"],
                            occurred_at=then, recorded_at=then, detail={
                                "medication_request_id": prescription_id, "scheduled_for": None, "outcome": "given",
                                "reason": "pain", "administered_at": then, "drug": "Paracetamol",
                                "dose": Decimal(1), "dose_unit": "g", "route": "oral", "minutes_late": None}),
            record.NewEntry("fluid", patient["id"], encounter_id=patient["encounter_id"], occurred_at=then,
                            recorded_at=then, detail={"direction": "intake", "route": "oral", "volume_ml": 250,
                                                      "note": None})])
    return dose.id, line.id


def _current(db, facility, patient) -> tuple[set, set]:
    """The ids of the patient's doses and fluid lines still in force."""
    from appliance.layers.nursing import fluid

    now = dt.datetime.now(dt.UTC)
    with db.tenant(facility.slug) as conn:
        doses = {d["id"] for d in service.doses_given_between(conn, [patient["id"]], now - dt.timedelta(days=1), now)}
        lines = {line["id"] for line in fluid.lines_of(conn, [patient["id"]], now - dt.timedelta(days=1))}
    return doses, lines


def test_the_nurse_who_charted_a_dose_or_a_fluid_line_withdraws_it_from_the_page_and_no_one_else_does(
        db, signed_in, facility, other_facility, clinician):
    """Any nurse of the ward could withdraw any dose or fluid line, at any time, where a set of vital signs is the
    author's within 12 hours or a clinician's (ACC-035): the MAR and the fluid chart now offer the form to the nurse
    who charted the row, within the hours, and refuse another nurse, the author after them, another facility and a
    guessed id; a clinician withdraws any."""
    from appliance.substrate import audit

    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Wanjiru", given="Esther")
    author, colleague = signed_in("nurse", facility.slug, ward="GEN"), signed_in("nurse", facility.slug, ward="GEN")
    prescription = _prescribed(db, facility, clinician, patient)
    dose, line = _dose_and_line(db, facility, patient, prescription, author.person.account_id)
    old_dose, old_line = _dose_and_line(db, facility, patient, prescription, author.person.account_id, hours_ago=13)
    chart = f"/t/{facility.slug}/patients/{patient['id']}"
    old_day = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=13)).astimezone(TZ).date().isoformat()
    for kind, row, old, page in (("mar", dose, old_dose, f"{chart}/mar"), ("fluids", line, old_line,
                                                                          f"{chart}/fluids")):
        own = f"{chart}/{kind}/{row}/entered-in-error"
        # Another nurse of the ward: no form on the row, the page says who can; posted anyway, 403 saying so.
        seen = colleague.get(page).text
        assert f'action="{own}"' not in seen and 'id="who-withdraws"' in seen, kind
        refused = post_form(colleague, page, own, {"reason": "wrong patient", "day": ""})
        assert refused.status_code == 403 and "Only the nurse who charted this" in refused.text, kind
        # A nurse of another facility, and a guessed id.
        stranger = signed_in("nurse", other_facility.slug, ward="GEN")
        assert stranger.post(own, data={"reason": "wrong patient"}).status_code in (403, 404)
        assert post_form(author, page, own.replace(str(row), str(uuid.uuid4())),
                         {"reason": "a guess"}).status_code == 404
        # Her own row charted 13 hours ago: no form where it is listed, and refused with who can.
        assert f"/{kind}/{old}/entered-in-error" not in author.get(f"{page}?day={old_day}").text
        assert f'action="{own}"' in author.get(page).text
        late = post_form(author, page, own.replace(str(row), str(old)), {"reason": "wrong patient"})
        assert late.status_code == 403 and "more than 12 hours ago" in late.text, kind
        # No reason: the form again, saying so, nothing written.
        assert post_form(author, page, own, {"reason": ""}).status_code == 422
    assert _current(db, facility, patient) == ({dose, old_dose}, {line, old_line})

    for kind, page in (("mar", f"{chart}/mar"), ("fluids", f"{chart}/fluids")):
        row = dose if kind == "mar" else line
        done = post_form(author, page, f"{chart}/{kind}/{row}/entered-in-error", {"reason": "charted on the wrong "
                                                                                   "patient"})
        assert done.status_code == 303 and done.headers["location"].endswith("done=retracted"), kind
    # A clinician withdraws the author's old ones, the form offered on every row of the page.
    doctor = signed_in("clinician", facility.slug)
    assert f'action="{chart}/mar/{old_dose}/entered-in-error"' in doctor.get(f"{chart}/mar?day={old_day}").text
    for kind, old in (("mar", old_dose), ("fluids", old_line)):
        by_doctor = post_form(doctor, f"{chart}/{kind}", f"{chart}/{kind}/{old}/entered-in-error",
                              {"reason": "charted on the wrong patient"})
        assert by_doctor.status_code == 303, kind
    assert _current(db, facility, patient) == (set(), set())
    log = audit.patient_access_log(db, facility.slug, patient["id"])
    assert {e.event_type for e in log if e.who["account"] == str(author.person.account_id)} >= {
        "record.medication_administration.retract", "record.fluid.retract"}


def test_the_api_lets_the_author_of_a_dose_or_a_fluid_line_withdraw_it_within_the_shift_and_a_clinician_at_any_time(
        db, token_client, facility, other_facility, clinician):
    """POST .../mar|fluids/<id>/entered-in-error ask the same rule as the pages: another nurse's client, another
    facility's, a guessed id and the author's own row after 12 hours are refused with nothing written; the author
    within them withdraws it; a clinician withdraws the old one."""
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Mutua", given="James")
    author, colleague = token_client(facility.slug, role="nurse"), token_client(facility.slug, role="nurse")
    doctor, stranger = token_client(facility.slug, role="clinician"), token_client(other_facility.slug, role="nurse")
    prescription = _prescribed(db, facility, clinician, patient)
    api = f"/api/t/{facility.slug}/patients/{patient['id']}"
    given = author.post(f"{api}/mar", json={"medication_request_id": str(prescription), "outcome": "given"})
    charted = author.post(f"{api}/fluids", json={"direction": "intake", "route": "oral", "volume_ml": 250})
    assert given.status_code == 201 and charted.status_code == 201, (given.text, charted.text)
    dose, line = uuid.UUID(given.json()["id"]), uuid.UUID(charted.json()["id"])
    old_dose, old_line = _dose_and_line(db, facility, patient, prescription, uuid.UUID(given.json()["author_id"]),
                                        hours_ago=13)
    reason = {"reason": "charted on the wrong patient"}
    for kind, row, old, noun in (("mar", dose, old_dose, "dose"), ("fluids", line, old_line, "fluid balance line")):
        base = f"/api/t/{facility.slug}/patients/{patient['id']}/{kind}"
        refused = colleague.post(f"{base}/{row}/entered-in-error", json=reason)
        assert refused.status_code == 403, refused.text
        assert f"only the nurse who charted this {noun}" in refused.json()["detail"]
        theirs = f"/api/t/{other_facility.slug}/patients/{patient['id']}/{kind}/{row}/entered-in-error"
        assert stranger.post(theirs, json=reason).status_code in (403, 404)
        assert stranger.post(f"{base}/{row}/entered-in-error", json=reason).status_code == 403
        assert author.post(f"{base}/{uuid.uuid4()}/entered-in-error", json=reason).status_code == 404
        late = author.post(f"{base}/{old}/entered-in-error", json=reason)
        assert late.status_code == 403 and "more than 12 hours ago" in late.json()["detail"], kind
        assert _current(db, facility, patient) == ({dose, old_dose}, {line, old_line})
    for kind, row, old in (("mar", dose, old_dose), ("fluids", line, old_line)):
        base = f"/api/t/{facility.slug}/patients/{patient['id']}/{kind}"
        done = author.post(f"{base}/{row}/entered-in-error", json=reason)
        assert done.status_code == 200 and done.json()["status"] == "entered_in_error", done.text
        assert doctor.post(f"{base}/{old}/entered-in-error", json=reason).status_code == 200, kind
    assert _current(db, facility, patient) == (set(), set())


def test_a_withdrawn_dose_and_fluid_line_are_listed_struck_through_and_leave_the_totals(
        db, signed_in, facility, clinician):
    """A dose or a fluid line withdrawn from its page simply vanished from the MAR and the fluid chart: each is now
    listed under them, struck through, with who withdrew it, when and why; the live rows and the day's totals no
    longer hold it. A guessed id posted with no reason is the 404 page (it was a 422 page with nothing to show the
    refusal beside), and a real row with no reason the 422 with the refusal at its field."""
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Chepkoech", given="Lydia")
    author = signed_in("nurse", facility.slug, ward="GEN")
    prescription = _prescribed(db, facility, clinician, patient)
    dose, line = _dose_and_line(db, facility, patient, prescription, author.person.account_id)
    kept_dose, kept_line = _dose_and_line(db, facility, patient, prescription, author.person.account_id)
    chart = f"/t/{facility.slug}/patients/{patient['id']}"
    assert '<dd id="fluid-in">500 ml</dd>' in author.get(f"{chart}/fluids").text
    for kind, row in (("mar", dose), ("fluids", line)):
        page, own = f"{chart}/{kind}", f"{chart}/{kind}/{row}/entered-in-error"
        guessed = post_form(author, page, own.replace(str(row), str(uuid.uuid4())), {"reason": ""})
        assert guessed.status_code == 404 and "on this patient&#39;s record" in guessed.text, kind
        empty = post_form(author, page, own, {"reason": ""})
        assert empty.status_code == 422, kind
        assert 'class="field-error" id="reason-error"' in empty.text.split(f'id="retract-{row}"')[1].split("</form>")[0]
        done = post_form(author, page, own, {"reason": "charted on the wrong patient"})
        assert done.status_code == 303, kind
    assert _current(db, facility, patient) == ({kept_dose}, {kept_line})

    mar = author.get(f"{chart}/mar").text
    live, listed = mar.split('id="withdrawn-doses"')
    assert f"/mar/{dose}/entered-in-error" not in live and f"/mar/{kept_dose}/entered-in-error" in live
    item = listed.split(f'<li id="withdrawn-{dose}">')[1].split("</li>")[0]
    assert "<s>Paracetamol 1 g oral given " in item and "charted on the wrong patient" in item
    assert "by Test nurse" in item
    fluids = author.get(f"{chart}/fluids").text
    assert '<dd id="fluid-in">250 ml</dd>' in fluids, "the withdrawn line is out of the day's totals"
    live, listed = fluids.split('id="withdrawn-fluid-balance-lines"')
    assert f"/fluids/{line}/entered-in-error" not in live and f"/fluids/{kept_line}/entered-in-error" in live
    item = listed.split(f'<li id="withdrawn-{line}">')[1].split("</li>")[0]
    assert "<s>Intake 250 ml, Oral, charted " in item and "charted on the wrong patient" in item
    assert "by Test nurse" in item
