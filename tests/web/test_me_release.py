"""Release rules on the patient portal: a reviewed HIV test is never shown (given in person, with
counselling) and the portal does not even name it; an imaging report shows three days after review; a
blood count at once; nothing before review. The rules file is refused when it is wrong, naming why."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import ResultIn
from appliance.layers.patient.release import ReleasePolicyError, load_release_rules, release
from appliance.substrate import identity
from appliance.substrate.principal import Principal
from tests.layers.clinical.conftest import CLINICAL_CONFIG, new_patient
from tests.web.test_me import _patient_client

RULES_FILE = Path(__file__).resolve().parents[2] / "policies" / "release.toml"
HIV = {"loinc": "68961-2", "name": "HIV rapid test", "specimen": "blood", "choices": ["non-reactive", "reactive"],
       "abnormal": ["reactive"]}
XRAY_REPORT = "Right lower lobe consolidation"


@pytest.fixture(scope="module")
def patient_with_results(db, tenant_factory, policy):
    facility = tenant_factory(name="Release Rules Clinic",
                              **{**CLINICAL_CONFIG, "catalogue": [*CLINICAL_CONFIG["catalogue"], HIV]})
    clinician = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Release", tenant=facility.slug,
                          role="clinician")
    with db.tenant(facility.slug) as conn:
        chart = new_patient(conn, clinician)
        signed = [service.record_result(conn, clinician, chart["id"], ResultIn(code=code, value=value))
                  for code, value in (("68961-2", "reactive"), ("36643-5", XRAY_REPORT), ("718-7", "13.1"))]
        for result in signed:
            service.sign_result(conn, clinician, chart["id"], result["id"], None)
        service.record_result(conn, clinician, chart["id"], ResultIn(code="2345-7", value="5.2"))  # not reviewed
    with db.control() as conn:
        subject = identity.match_or_create_subject(conn, family_name="Otieno", given_names="Achieng Mary",
                                                   national_id=f"REL-{uuid.uuid4().hex[:8]}").subject_id
        identity.note_facility(conn, subject, facility.slug)
        email = f"achieng-{uuid.uuid4().hex[:6]}@example.org"
        identity.create_account(conn, policy, kind="patient", email=email, display_name="Achieng Otieno",
                                role="patient", subject_id=subject)
    with db.tenant(facility.slug) as conn:
        conn.exec_driver_sql("UPDATE patient SET subject_id = %s WHERE id = %s", (subject, chart["id"]))
    return facility, email


def test_the_portal_shows_what_the_rules_release_and_no_more(db, app, patient_with_results):
    facility, email = patient_with_results
    page = _patient_client(db, app, email).get("/me")
    assert page.status_code == 200
    record = page.text.split(f'data-facility="{facility.slug}"')[1]
    results = record.split('class="list results"')[1].split("</table>")[0]
    assert "Haemoglobin" in results and "13.1" in results  # a blood count: at once
    assert "HIV" not in page.text and "reactive" not in page.text  # not even named
    assert "1 result from Release Rules Clinic is given to you in person" in record
    assert XRAY_REPORT not in page.text  # an imaging report: three days after review
    later = record.split('class="rows later"')[1].split("</ul>")[0]
    assert "Chest X-ray, 2 views" in later and "shows here from" in later
    assert "UTC" not in later  # in the facility's time, as the patient reads a clock there
    assert "Glucose" not in results  # not reviewed: not released by any rule


def test_release_times_follow_the_rules():
    rules = load_release_rules(RULES_FILE)
    reviewed = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)
    results = [{"code": "36643-5", "signed_at": reviewed}, {"code": "68961-2", "signed_at": reviewed},
               {"code": "20507-0", "signed_at": reviewed}, {"code": "718-7", "signed_at": None}]
    before = release(results, rules, reviewed + dt.timedelta(hours=71))
    assert (before.shown, before.in_person) == ([], 2)
    assert before.later == [(results[0], reviewed + dt.timedelta(hours=72))]
    after = release(results, rules, reviewed + dt.timedelta(hours=72))
    assert after.shown == [results[0]] and after.later == [] and after.in_person == 2


@pytest.mark.parametrize(("text", "named"), [
    ('[[rule]]\nid = "REL-001"\ndescription = "x"\nrelease = "in_person"\nloinc = ["1-1"]',
     "a [default] table"),
    ('[default]\nrelease = "sometimes"', "release 'sometimes' is not one of after_review, in_person"),
    ('[default]\nrelease = "after_review"\nhours_after_review = -3', "is not a whole number of hours"),
    ('[default]\nrelease = "after_review"\n[[rule]]\nid = "R1"\ndescription = "x"\nrelease = "in_person"\n'
     'loinc = ["68961-2"]', "id 'R1' is not of the form REL-001"),
    ('[default]\nrelease = "after_review"\n[[rule]]\nid = "REL-001"\ndescription = "HIV"\nrelease = "in_person"\n'
     'loinc = ["68961-3"]', "'68961-3' is not a LOINC code"),
    ('[default]\nrelease = "after_review"\n[[rule]]\nid = "REL-001"\ndescription = " "\nrelease = "in_person"\n'
     'loinc = ["68961-2"]', "a rule says why"),
    ('[default]\nrelease = "after_review"\n[[rule]]\nid = "REL-001"\ndescription = "HIV"\nrelease = "in_person"\n'
     'hours_after_review = 4\nloinc = ["68961-2"]', "takes no hours_after_review"),
])
def test_a_wrong_rules_file_is_refused_naming_the_problem(tmp_path, text, named):
    path = tmp_path / "release.toml"
    path.write_text(text)
    with pytest.raises(ReleasePolicyError, match=named.replace("[", r"\[").replace("(", r"\(")):
        load_release_rules(path)
