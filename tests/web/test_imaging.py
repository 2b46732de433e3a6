"""The imaging bench's page over real HTTP (appliance/web/imaging.py): a radiographer lands on the worklist, sees
the study's indication and no way into the chart, records the study performed; a clinician's report refused
beside its field (what was typed kept, nothing written), then signed with an unexpected finding, and corrected;
another facility's radiographer and guessed ids are refused on the page and every form."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import imaging, service
from appliance.layers.clinical.schemas import EncounterIn, ImagingReportIn, ServiceRequestIn
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_timezone
from tests.layers.clinical.conftest import CLINICAL_CONFIG, new_patient
from tests.layers.clinical.test_imaging import night_xray
from tests.web.test_auth import csrf_token
from tests.web.test_operations import post_form

XRAY = "36643-5"


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Imaging Pages Facility", **CLINICAL_CONFIG)


@pytest.fixture(scope="module")
def other_facility(tenant_factory):
    return tenant_factory(name="Another Imaging Department", **CLINICAL_CONFIG)


def ordered_xray(conn, doctor: Principal, *, family_name: str, given_names: str, why: str,
                 visit: str = "outpatient", priority: str = "routine") -> uuid.UUID:
    """A chest X-ray ordered at a visit of a new patient's, seen here."""
    patient = new_patient(conn, doctor, family_name=family_name, given_names=given_names)
    encounter = service.open_encounter(conn, doctor, patient["id"], EncounterIn(encounter_class=visit))
    return service.order_test(conn, doctor, patient["id"], ServiceRequestIn(
        code=XRAY, priority=priority, clinical_info=why, encounter_id=encounter["id"]))["id"]


@pytest.fixture(scope="module")
def chest_xray(db, facility) -> uuid.UUID:
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Orders", tenant=facility.slug,
                       role="clinician")
    with db.tenant(facility.slug) as conn:
        return ordered_xray(conn, doctor, family_name="Wanjiru", given_names="Faith",
                            why="fever and crackles at the left base")


def _reports(db, facility, order) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM result WHERE service_request_id = :o"), {"o": order}).scalar()


def test_a_radiographer_records_a_study_performed_and_a_clinician_reports_and_corrects_it(signed_in, db, facility,
                                                                                          chest_xray):
    radiographer = signed_in("radiographer", facility.slug)
    base = f"/t/{facility.slug}"
    assert radiographer.get(base, follow_redirects=False).headers["location"] == f"{base}/imaging"
    listed = radiographer.get(f"{base}/imaging")
    assert listed.status_code == 200 and "WANJIRU, Faith" in listed.text
    assert "fever and crackles at the left base" in listed.text
    assert f'href="/t/{facility.slug}/patients' not in listed.text  # no way into a chart from the bench
    wordy = post_form(radiographer, f"{base}/imaging", f"{base}/imaging/orders/{chest_xray}/performed",
                      {"note": "x" * 501, "state": "awaiting_study"})
    assert wordy.status_code == 422 and 'id="note-error"' in wordy.text, wordy.text
    done = post_form(radiographer, f"{base}/imaging", f"{base}/imaging/orders/{chest_xray}/performed",
                     {"note": "PA view only: patient unable to stand for the lateral", "state": "awaiting_study"})
    assert done.status_code == 303  # back to the tab it was sent from, the next patient's
    assert done.headers["location"] == f"{base}/imaging?done=study-performed&state=awaiting_study"
    page = radiographer.get(f"{base}/imaging?state=performed")
    assert "PA view only" in page.text and f'id="report-{chest_xray}"' not in page.text  # the radiographer reports not

    radiologist = signed_in("clinician", facility.slug)
    page = radiologist.get(f"{base}/imaging?state=performed")
    assert f'id="report-{chest_xray}"' in page.text
    unsaid = radiologist.post(f"{base}/imaging/orders/{chest_xray}/report", data={
        "_csrf_token": csrf_token(page.text), "findings": "Left lower zone consolidation.", "impression": "",
        "finding": "unexpected"}, follow_redirects=False)
    assert unsaid.status_code == 422 and 'id="impression-error"' in unsaid.text, unsaid.text
    assert "Left lower zone consolidation." in unsaid.text  # what was typed is kept
    assert _reports(db, facility, chest_xray) == 0
    signed = radiologist.post(f"{base}/imaging/orders/{chest_xray}/report", data={
        "_csrf_token": csrf_token(page.text), "findings": "Left lower zone consolidation.",
        "impression": "Left lower lobe pneumonia.", "finding": "unexpected"}, follow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"] == f"{base}/imaging?done=study-reported"
    reported = radiologist.get(signed.headers["location"]).text
    assert "Report signed" in reported and "Left lower lobe pneumonia." in reported
    assert "unexpected finding</span>" in reported and "critical finding</span>" not in reported
    with db.tenant(facility.slug) as conn:
        report = conn.execute(sa.text("SELECT entry_id FROM result WHERE service_request_id = :o"),
                              {"o": chest_xray}).scalar_one()
    unsaid = post_form(radiologist, f"{base}/imaging", f"{base}/imaging/results/{report}/correction",
                       {"findings": "Left lower zone consolidation.", "impression": "Left lower lobe pneumonia.",
                        "reason": ""})
    assert unsaid.status_code == 422 and 'id="reason-error"' in unsaid.text  # beside the field, in words
    assert "Give at least 3 characters" in unsaid.text
    corrected = post_form(radiologist, f"{base}/imaging", f"{base}/imaging/results/{report}/correction",
                          {"findings": "Left lower zone consolidation; small effusion.",
                           "impression": "Left lower lobe pneumonia with a parapneumonic effusion.",
                           "reason": "the effusion was missed on first reading"})
    assert corrected.status_code == 303 and corrected.headers["location"] == f"{base}/imaging?done=report-corrected"
    with db.tenant(facility.slug) as conn:
        patient, now = conn.execute(sa.text("SELECT e.patient_id, e.id FROM entry e WHERE e.supersedes = :r"),
                                    {"r": report}).one()
    results = radiologist.get(f"{base}/patients/{patient}/results")
    row = results.text.split(f'id="result-{now}"')[1].split("</tr>")[0]
    assert "parapneumonic effusion" in row and 'class="badge">corrected' in row  # the chart shows the report
    stale = post_form(radiologist, f"{base}/imaging", f"{base}/imaging/results/{report}/correction",
                      {"findings": "again", "impression": "again", "reason": "once more"})
    assert stale.status_code == 409 and "corrected since" in stale.text


def test_the_radiographer_gives_the_time_a_night_study_was_performed_and_can_undo_it(signed_in, db, facility):
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Night", tenant=facility.slug,
                       role="clinician")
    order, ordered_at = night_xray(db, facility, doctor, hours_ago=10, family_name="Langat")
    radiographer = signed_in("radiographer", facility.slug)
    base, tz = f"/t/{facility.slug}", facility_timezone(db, facility.slug)
    local = ordered_at.astimezone(tz)
    for typed, words in (("25:10", "as the clock read it"), (f"{local - dt.timedelta(hours=1):%H:%M}", "before")):
        refused = post_form(radiographer, f"{base}/imaging", f"{base}/imaging/orders/{order}/performed",
                            {"performed_time": typed, "note": "AP only"})
        assert refused.status_code == 422 and 'id="performed_time-error"' in refused.text, refused.text
        assert words in refused.text and 'value="AP only"' in refused.text  # what was typed is kept
    at = (local + dt.timedelta(minutes=30)).replace(second=0, microsecond=0)
    done = post_form(radiographer, f"{base}/imaging", f"{base}/imaging/orders/{order}/performed",
                     {"performed_time": f"{at:%H:%M}"})  # no day: the last time the clock read it, last night
    assert done.status_code == 303, done.text
    with db.tenant(facility.slug) as conn:
        performed = conn.execute(sa.text("SELECT e.occurred_at FROM entry e JOIN specimen_receipt r ON r.entry_id "
                                         "= e.id WHERE r.service_request_id = :o"), {"o": order}).scalar_one()
    assert performed == at
    listed = radiographer.get(f"{base}/imaging?state=performed").text
    assert f'id="unperform-{order}"' in listed
    unsaid = post_form(radiographer, f"{base}/imaging", f"{base}/imaging/orders/{order}/performed/entered-in-error",
                       {"reason": "", "state": "performed"})
    assert unsaid.status_code == 422 and 'id="reason-error"' in unsaid.text, unsaid.text
    undone = post_form(radiographer, f"{base}/imaging", f"{base}/imaging/orders/{order}/performed/entered-in-error",
                       {"reason": "recorded on the wrong patient", "state": "performed"})
    assert undone.headers["location"] == f"{base}/imaging?done=performed-withdrawn&state=performed", undone.text
    assert "entered in error" in radiographer.get(undone.headers["location"]).text
    back = radiographer.get(f"{base}/imaging?state=awaiting_study").text
    assert f'id="performed-{order}-form"' in back  # to perform again


def test_a_report_reviewed_already_stays_under_signed_off_where_it_is_corrected(signed_in, db, facility):
    """A report the clinician had reviewed left the worklist at once, though it stays a week for corrections: it is
    listed under 'Signed off' (not among the open orders), its correction saying it goes back for review."""
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Review", tenant=facility.slug,
                       role="clinician")
    order, _ = night_xray(db, facility, doctor, hours_ago=3, family_name="Rotich")
    with db.tenant(facility.slug) as conn:
        patient = conn.execute(sa.text("SELECT patient_id FROM entry WHERE id = :o"), {"o": order}).scalar_one()
        imaging.record_performed(conn, doctor, order, note=None, today=dt.date.today())
        [report] = imaging.report(conn, doctor, order, ImagingReportIn(
            findings="Clear lungs.", impression="No consolidation."), today=dt.date.today())["reports"]
        service.sign_result(conn, doctor, patient, report["id"], None)
    radiologist = signed_in("clinician", facility.slug)
    base = f"/t/{facility.slug}"
    assert f'id="imaging-{order}"' not in radiologist.get(f"{base}/imaging").text
    card = radiologist.get(f"{base}/imaging?state=signed_off").text.split(f'id="imaging-{order}"')[1]
    card = card.split("</section>")[0]
    assert "Reviewed by the clinician" in card and f'id="correct-{report["id"]}"' in card
    assert "goes back to the clinician&#39;s review" in card or "goes back to the clinician's review" in card
    corrected = post_form(radiologist, f"{base}/imaging?state=signed_off",
                          f"{base}/imaging/results/{report['id']}/correction",
                          {"findings": "Small right apical pneumothorax.", "impression": "Right pneumothorax.",
                           "finding": "critical", "reason": "the apex was missed on first reading",
                           "state": "signed_off"})
    # Corrected to a critical finding: a call, as a lab value corrected to a critical one is.
    assert corrected.headers["location"] == f"{base}/imaging?done=report-corrected-critical&state=signed_off", \
        corrected.text
    assert "telephone the clinician who ordered it" in radiologist.get(corrected.headers["location"]).text
    back = radiologist.get(f"{base}/imaging?state=reported").text.split(f'id="imaging-{order}"')[1]
    assert "Right pneumothorax." in back.split("</section>")[0] and "Awaiting sign-off" in back.split("</section>")[0]


def test_a_critical_finding_asks_for_a_call_and_reaches_every_clinicians_review_list(signed_in, db, facility,
                                                                                      other_facility):
    """A tension pneumothorax signed as 'critical or unexpected' read 'Report signed; it waits for the ordering
    clinician's review': nothing asked the radiologist to telephone, and only the orderer's list held it. Reported
    critical, the notice asks for the call, and the report heads another clinician's Results to review, counted
    critical, where an unexpected finding is not listed; another facility's clinician sees neither."""
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Emergency", tenant=facility.slug,
                       role="clinician")
    with db.tenant(facility.slug) as conn:
        order = ordered_xray(conn, doctor, family_name="Langat", given_names="Peter", visit="emergency",
                             priority="stat", why="stab wound left chest: ?pneumothorax")
        imaging.record_performed(conn, doctor, order, note=None, today=dt.date.today())
    radiologist = signed_in("clinician", facility.slug)
    base = f"/t/{facility.slug}"
    signed = post_form(radiologist, f"{base}/imaging?state=performed", f"{base}/imaging/orders/{order}/report",
                       {"findings": "Large left pneumothorax, mediastinum shifted to the right.",
                        "impression": "Left tension pneumothorax.", "finding": "critical"})
    assert signed.headers["location"] == f"{base}/imaging?done=study-reported-critical", signed.text
    told = radiologist.get(signed.headers["location"]).text
    assert "telephone the clinician who ordered it, or the ward, now" in told and "critical finding</span>" in told
    review = radiologist.get(f"{base}/today").text.split('id="review-title"')[1]
    assert " critical</span>" in review.split("</h2>")[0] and "Left tension pneumothorax." in review
    intruder = signed_in("clinician", other_facility.slug)
    assert "Left tension pneumothorax." not in intruder.get(f"/t/{other_facility.slug}/today").text
    assert intruder.get(f"{base}/today").status_code == 403


def test_another_facilitys_radiographer_and_guessed_ids_are_refused(signed_in, facility, other_facility, chest_xray):
    intruder = signed_in("radiographer", other_facility.slug)
    own = intruder.get(f"/t/{other_facility.slug}/imaging")
    assert own.status_code == 200 and "Wanjiru" not in own.text.title()
    base = f"/t/{facility.slug}"
    assert intruder.get(f"{base}/imaging").status_code == 403
    assert intruder.get(f"{base}/imaging?state=signed_off").status_code == 403
    theirs = intruder.get(f"/t/{other_facility.slug}/imaging?state=signed_off")  # Rotich's is signed off here
    assert theirs.status_code == 200 and "Rotich" not in theirs.text.title()
    token = csrf_token(own.text)
    for action in (f"/imaging/orders/{chest_xray}/performed", f"/imaging/orders/{chest_xray}/report",
                   f"/imaging/orders/{chest_xray}/performed/entered-in-error",
                   f"/imaging/results/{uuid.uuid4()}/correction"):
        refused = intruder.post(base + action, data={"_csrf_token": token, "findings": "x", "impression": "y",
                                                     "reason": "not my facility"}, follow_redirects=False)
        assert refused.status_code == 403, action
    guessed = intruder.post(f"/t/{other_facility.slug}/imaging/orders/{chest_xray}/performed",
                            data={"_csrf_token": token}, follow_redirects=False)
    assert guessed.status_code == 404 and "No open imaging order" in guessed.text
