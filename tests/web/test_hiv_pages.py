"""HIV care in the tenant portal: the chart's HIV care tab (enrolment by form with the facility's ART number, a missing
stage refused beside its field, ART started, a visit recorded by a nurse, a viral load refused beside its field with
nothing written, then an unsuppressed one flagged), the facility's ART register with the person to trace, and the
refusals: a nurse kept off the register, a registrar off the tab, a guessed enrolment (another facility's session is
in tests/web/test_portal.py's every-route lists)."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import EncounterIn, PatientIn
from appliance.substrate.principal import Principal
from tests.web.test_portal import post_form


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="ART Clinic")


@pytest.fixture(scope="module")
def patient(db, facility, person_factory) -> dict:
    author = person_factory("clinician", facility.slug)
    principal = Principal(account_id=author.account_id, kind="staff", display_name="Dr Cascade",
                          tenant=facility.slug, role="clinician")
    with db.tenant(facility.slug) as conn:
        found = service.register_patient(conn, principal, PatientIn.model_validate(
            {"family_name": "Mbewe", "given_names": "Grace", "birth_date": dt.date(1988, 6, 6), "sex": "female",
             "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}))
        service.open_encounter(conn, principal, found["id"], EncounterIn(encounter_class="outpatient"))
    return {"id": found["id"], "path": f"/t/{facility.slug}/patients/{found['id']}/hiv"}


def _hiv_entries(db, facility) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM entry WHERE kind LIKE 'hiv\\_%'")).scalar()


def test_enrolment_art_a_visit_and_viral_loads_on_the_tab_and_the_register(signed_in, db, facility, patient):
    clinician = signed_in("clinician", facility.slug)
    path = patient["path"]
    chart = clinician.get(f"/t/{facility.slug}/patients/{patient['id']}/chart")
    assert f'href="{path}"' in chart.text, "the chart links its HIV care tab"
    empty = clinician.get(path)
    assert empty.status_code == 200 and 'id="enrol-form"' in empty.text and 'name="_csrf_token"' in empty.text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", empty.text) and " onclick=" not in empty.text
    today = dt.date.today()
    day = lambda n: (today - dt.timedelta(days=n)).isoformat()  # noqa: E731 -- days ago read best as day(70)
    enrolment = {"enrolled_on": day(70), "diagnosed_on": day(75), "tb_screening": "no_signs", "cd4_baseline": "210"}
    refused = post_form(clinician, path, path, {**enrolment, "who_stage": ""})
    assert refused.status_code == 422 and 'id="who_stage-error"' in refused.text, refused.text
    sent = post_form(clinician, path, path, {**enrolment, "who_stage": "3"})
    assert sent.status_code == 303 and sent.headers["location"].endswith("?done=hiv-enrolled"), sent.text
    card = clinician.get(sent.headers["location"])
    assert 'id="art-number">ART-00001<' in card.text and "Enrolled, ART not started" in card.text
    root = re.search(rf'action="{path}/([0-9a-f-]{{36}})/regimens"', card.text).group(1)
    started = post_form(clinician, path, f"{path}/{root}/regimens",
                        {"change": "initiation", "started_on": day(70), "regimen": "TDF+3TC+DTG"})
    assert started.status_code == 303, started.text
    nurse = signed_in("nurse", facility.slug)
    visit = post_form(nurse, path, f"{path}/{root}/visits", {"visit_on": day(70), "arv_days": "30",
                                                             "adherence": "good", "next_appointment_on": day(40)})
    assert visit.status_code == 303 and visit.headers["location"].endswith("?done=hiv-visit"), visit.text
    before = _hiv_entries(db, facility)
    bad = post_form(clinician, path, f"{path}/{root}/viral-loads", {"sampled_on": day(1), "copies_per_ml": "lots"})
    assert bad.status_code == 422 and 'id="copies_per_ml-error"' in bad.text, bad.text
    assert _hiv_entries(db, facility) == before
    loaded = post_form(clinician, path, f"{path}/{root}/viral-loads", {"sampled_on": day(1), "copies_per_ml": "4500"})
    assert loaded.status_code == 303, loaded.text
    card = clinician.get(path).text
    # 30 days from 70 days ago ran out 40 days ago: interrupted since 11 days ago; 4500 copies is unsuppressed.
    assert 'id="hiv-unsuppressed"' in card and "Interruption in treatment" in card and "TDF+3TC+DTG" in card
    register = clinician.get(f"/t/{facility.slug}/hiv/register")
    assert register.status_code == 200 and 'id="trace-ART-00001"' in register.text and "MBEWE" in register.text
    assert nurse.get(f"/t/{facility.slug}/hiv/register").status_code == 403
    assert signed_in("registrar", facility.slug).get(path).status_code == 403
    guessed = post_form(clinician, path, f"{path}/{uuid.uuid4()}/visits",
                        {"visit_on": day(1), "arv_days": "30", "next_appointment_on": day(-29)})
    assert guessed.status_code == 404 and _hiv_entries(db, facility) == before + 1
