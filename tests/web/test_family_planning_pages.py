"""Family planning in the tenant portal: the chart's "Family planning" tab (where she stands, the form a nurse
records a visit with, the visits), an injection recorded and its next day shown, a refused form beside its field
with nothing written, a correction, the facility's clients due, and the refusals — another facility's session, a
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
    return tenant_factory(name="Family Planning Clinic")


@pytest.fixture(scope="module")
def elsewhere(tenant_factory):
    return tenant_factory(name="Elsewhere Family Planning Clinic")


@pytest.fixture(scope="module")
def woman(db, facility, person_factory) -> dict:
    author = person_factory("clinician", facility.slug)
    principal = Principal(account_id=author.account_id, kind="staff", display_name="Dr Plan",
                          tenant=facility.slug, role="clinician")
    with db.tenant(facility.slug) as conn:
        found = service.register_patient(conn, principal, PatientIn.model_validate(
            {"family_name": "Akinyi", "given_names": "Mercy", "birth_date": dt.date(1997, 7, 7), "sex": "female",
             "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}))
        service.open_encounter(conn, principal, found["id"], EncounterIn(encounter_class="outpatient"))
    return {"id": found["id"], "path": f"/t/{facility.slug}/patients/{found['id']}/family-planning"}


def _visits(db, facility, patient_id) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM entry WHERE patient_id = :p AND kind = 'family_planning'"),
                            {"p": patient_id}).scalar()


def test_the_tab_records_an_injection_shows_when_the_next_is_due_and_refuses_beside_the_field(signed_in, db,
                                                                                             facility, woman):
    nurse = signed_in("nurse", facility.slug)
    clinician = signed_in("clinician", facility.slug)
    chart = clinician.get(f"/t/{facility.slug}/patients/{woman['id']}/chart")
    assert f'href="{woman["path"]}"' in chart.text, "the chart links its Family planning tab"
    page = clinician.get(woman["path"])
    assert page.status_code == 200, page.text
    assert 'id="no-visits"' in page.text and 'name="_csrf_token"' in page.text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) and " onclick=" not in page.text
    refused = post_form(clinician, woman["path"], woman["path"], {
        "method": "COC", "service": "provided", "quantity": "40", "client_type": "new_acceptor",
        "given_on": dt.date.today().isoformat()})
    assert refused.status_code == 422, refused.text
    assert 'id="quantity-error"' in refused.text and "more than one visit gives" in refused.text
    assert _visits(db, facility, woman["id"]) == 0
    fifteen_weeks_ago = dt.date.today() - dt.timedelta(weeks=15)
    sent = post_form(clinician, woman["path"], woman["path"], {
        "method": "DMPA_IM", "service": "provided", "quantity": "1", "client_type": "new_acceptor",
        "counselled": "yes", "given_on": fifteen_weeks_ago.isoformat(), "note": ""})
    assert sent.status_code == 303 and sent.headers["location"].endswith("?done=fp-recorded"), sent.text
    after = clinician.get(sent.headers["location"])
    assert "Injectable DMPA-IM" in after.text and "Overdue" in after.text and "counselled" in after.text
    with db.tenant(facility.slug) as conn:
        visit_id = conn.execute(sa.text("SELECT id FROM entry WHERE patient_id = :p AND kind = 'family_planning'"),
                                {"p": woman["id"]}).scalar()
    # The nurse traces her from the list of clients due, overdue since her injection ran out.
    listed = nurse.get(f"/t/{facility.slug}/family-planning/due", params={"state": "overdue"})
    assert listed.status_code == 200 and f'id="client-{woman["id"]}"' in listed.text and "AKINYI" in listed.text
    assert nurse.get(f"/t/{facility.slug}/family-planning/due", params={"state": "late"}).status_code == 400
    form = clinician.get(f"{woman['path']}/{visit_id}/correct")
    assert form.status_code == 200 and "Save the correction" in form.text
    corrected = post_form(clinician, f"{woman['path']}/{visit_id}/correct", f"{woman['path']}/{visit_id}", {
        "method": "DMPA_SC", "service": "provided", "quantity": "1", "client_type": "new_acceptor",
        "given_on": fifteen_weeks_ago.isoformat(), "reason": "it was Sayana Press"})
    assert corrected.status_code == 303 and corrected.headers["location"].endswith("?done=fp-corrected")
    assert "Sayana Press" in clinician.get(woman["path"]).text
    # The timeline shows the visit at its day.
    timeline = clinician.get(f"/t/{facility.slug}/patients/{woman['id']}/timeline", params={"kind": "family_planning"})
    assert timeline.status_code == 200 and "Family planning: DMPA_SC × 1" in timeline.text
    # Withdrawn, the visit leaves the visits and is listed under them.
    corrected_id = re.search(r'id="visit-([0-9a-f-]{36})"', clinician.get(woman["path"]).text).group(1)
    withdrawn_on_tab(clinician, woman["path"], corrected_id, "recorded on the wrong client",
                     what="Injectable DMPA-SC (Sayana Press, 104 mg)")


def test_a_registrar_another_facilitys_session_and_guessed_ids_are_refused(signed_in, facility, elsewhere, woman):
    registrar = signed_in("registrar", facility.slug)
    intruder = signed_in("clinician", elsewhere.slug)
    for who in (registrar, intruder):
        for path in (woman["path"], f"/t/{facility.slug}/family-planning/due"):
            answer = who.get(path)
            assert answer.status_code == 403 and "Akinyi" not in answer.text and "AKINYI" not in answer.text, path
    assert intruder.get(f"/t/{elsewhere.slug}/patients/{woman['id']}/family-planning").status_code == 404
    clinician = signed_in("clinician", facility.slug)
    assert clinician.get(f"/t/{facility.slug}/patients/{uuid.uuid4()}/family-planning").status_code == 404
    assert clinician.get(f"{woman['path']}/{uuid.uuid4()}/correct").status_code == 404
    for action in (f"{woman['path']}/{uuid.uuid4()}/entered-in-error", f"{woman['path']}/{uuid.uuid4()}"):
        refused = post_form(clinician, woman["path"], action, {
            "reason": "a guess at it", "method": "COC", "service": "provided", "quantity": "1",
            "client_type": "continuing"})
        assert refused.status_code == 404, (action, refused.text)
