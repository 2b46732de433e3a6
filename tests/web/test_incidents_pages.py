"""The incident pages (appliance/web/incidents.py): the report form from every facility page's navigation, its
refusals beside the field with nothing written, My reports, the quality manager's list with immediate review on top
and the navigation's badge, and the review's forms. Another facility's session on every page and form is in
tests/web/test_portal.py's lists."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.schemas import EncounterIn, PatientIn
from appliance.substrate.principal import Principal
from tests.web.test_auth import csrf_token


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Safety Hospital", wards=[
        {"code": "GEN", "name": "General ward", "kind": "inpatient", "beds": 3},
        {"code": "ED", "name": "Emergency department", "kind": "emergency", "beds": 2}])


@pytest.fixture(scope="module")
def mrns(db, facility):
    desk = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Desk", tenant=facility.slug,
                     role="registrar")
    made = {}
    with db.tenant(facility.slug) as conn:
        for name, seen in (("Kamau", True), ("Stranger", False)):
            patient = clinical.register_patient(conn, desk, PatientIn.model_validate(
                {"family_name": name, "given_names": "Test", "birth_date": dt.date(1970, 1, 1), "sex": "male"}))
            if seen:
                clinical.open_encounter(conn, desk, patient["id"], EncounterIn(encounter_class="outpatient"))
            made[name] = patient["mrn"]
    return made


def reports(db, facility) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM incident")).scalar_one()


def test_report_from_the_navigation_then_review_and_close(db, facility, mrns, signed_in):
    base = f"/t/{facility.slug}"
    clinician = signed_in("clinician", facility.slug)
    assert f'href="{base}/incidents/new"' in clinician.get(f"{base}/today").text  # in every page's navigation
    form = clinician.get(f"{base}/incidents/new")
    assert form.status_code == 200 and 'name="_csrf_token"' in form.text
    assert not re.search(r"<script(?![^>]*\bsrc=)", form.text) and not re.search(r"\son[a-z]+=", form.text)
    when = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=3))).strftime("%Y-%m-%dT%H:%M")
    body = {"_csrf_token": csrf_token(form.text), "occurred_at": when, "ward_code": "GEN", "incident_type": "fall",
            "description": "Slipped on a wet floor going to the toilet.", "outcome": "severe",
            "immediate_action": "Doctor called; hip X-ray."}
    for bad, field, sentence in (({"patient_mrn": mrns["Stranger"]}, "patient_mrn", "in your care"),
                                 ({"patient_mrn": "NOPE-1"}, "patient_mrn", "in your care"),
                                 ({"outcome": ""}, "outcome", "choose one"),
                                 ({"occurred_at": "yesterday-ish"}, "occurred_at", "the day and time")):
        refused = clinician.post(f"{base}/incidents/new", data={**body, **bad}, follow_redirects=False)
        assert refused.status_code == 422, bad
        beside = re.search(rf'id="{field}-error">([^<]+)<', refused.text)
        assert beside and sentence in beside.group(1).lower(), (bad, refused.text[:300])
    assert reports(db, facility) == 0
    sent = clinician.post(f"{base}/incidents/new", data={**body, "patient_mrn": mrns["Kamau"]},
                          follow_redirects=False)
    assert sent.status_code == 303 and sent.headers["location"].startswith(f"{base}/incidents/mine")
    mine = clinician.get(sent.headers["location"])
    assert "Slipped" not in mine.text and "Fall" in mine.text and "open" in mine.text
    incident_id = re.search(rf'href="{base}/incidents/([0-9a-f-]{{36}})"', mine.text).group(1)

    manager = signed_in("quality_manager", facility.slug)
    assert manager.get(base, follow_redirects=False).headers["location"] == f"{base}/incidents"
    listed = manager.get(f"{base}/incidents")
    assert "Immediate review" in listed.text and 'id="badge-incident-review"' in listed.text
    page = manager.get(f"{base}/incidents/{incident_id}")
    assert "Kamau" in page.text and "Slipped on a wet floor" in page.text
    token = csrf_token(page.text)
    review = f"{base}/incidents/{incident_id}/review"
    too_soon = manager.post(review, data={"_csrf_token": token, "kind": "closed", "note": "Done."},
                            follow_redirects=False)
    assert too_soon.status_code == 409 and "confirm the severity" in too_soon.text.lower()
    for event in ({"kind": "contributing_factors", "f.factors": ["environment", "patient"]},
                  {"kind": "severity_confirmed", "harm": "severe"},
                  {"kind": "closed", "note": "Wet-floor signs and non-slip mats in the ward toilets."}):
        done = manager.post(review, data={"_csrf_token": token, **event}, follow_redirects=False)
        assert done.status_code == 303, (event, done.text[:300])
    assert 'id="badge-incident-review"' not in manager.get(f"{base}/incidents").text
    month = manager.get(f"{base}/command-center")
    assert month.status_code == 200 and re.search(r'id="incidents-fall">.*?<td>1</td>', month.text)
    # The reporter reads what was learned; a colleague reads nothing of it, nor the list.
    assert "non-slip mats" in clinician.get(f"{base}/incidents/{incident_id}").text
    colleague = signed_in("nurse", facility.slug)
    assert colleague.get(f"{base}/incidents/{incident_id}").status_code == 404
    assert colleague.get(f"{base}/incidents").status_code == 403
    assert manager.get(f"{base}/incidents/{uuid.uuid4()}").status_code == 404
