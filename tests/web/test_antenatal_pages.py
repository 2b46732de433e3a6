"""Antenatal care in the portal (appliance/web/antenatal.py) over in-process HTTP: a midwife (a nurse) records a
contact from the woman's Antenatal tab, a refusal comes back beside its field with what was typed kept and nothing
written, the card then shows the due date, the flags and the schedule, the ANC clinic list names her, and a man's
tab offers no form; and a woman's own record (/me) shows her due date and next visit. Other facilities' sessions and
guessed ids on these routes are in tests/web/test_portal.py."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import uuid
import zoneinfo

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import antenatal, service
from appliance.layers.clinical.antenatal_schemas import AntenatalIn
from appliance.layers.clinical.schemas import EncounterIn, PatientIn
from appliance.substrate import audit, identity
from appliance.substrate.principal import Principal
from tests.layers.clinical.conftest import new_patient
from tests.web.test_death_pages import no_inline_script
from tests.web.test_me import _patient_client
from tests.web.test_portal import post_form, principal_of, withdrawn_listed


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Hilltop Antenatal Clinic")


def registered(db, tenant: str, author, **overrides) -> uuid.UUID:
    """A patient registered at `tenant` and on its ward (a nurse's care relationship is her ward's)."""
    data = PatientIn.model_validate({"family_name": "Moraa", "given_names": "Joy", "birth_date": "1998-02-11",
                                     "sex": "female", **overrides,
                                     "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]})
    linked = service.with_subject(db, data, tenant=tenant)
    principal = principal_of(author, tenant)
    with db.tenant(tenant) as conn:
        patient_id = service.register_patient(conn, principal, linked)["id"]
        service.open_encounter(conn, principal, patient_id, EncounterIn(encounter_class="inpatient",
                                                                         status="in_progress", ward_code="GEN"))
    return patient_id


def contacts(db, tenant: str) -> int:
    with db.tenant(tenant) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM antenatal")).scalar()


def test_a_midwife_records_a_contact_and_the_card_and_clinic_show_it(signed_in, person_factory, db, facility):
    author = person_factory("clinician", facility.slug)
    woman = registered(db, facility.slug, author)
    man = registered(db, facility.slug, author, sex="male", given_names="Tom")
    midwife = signed_in("nurse", facility.slug)
    tab = f"/t/{facility.slug}/patients/{woman}/antenatal"
    page = midwife.get(tab)
    assert page.status_code == 200 and 'name="_csrf_token"' in page.text and 'id="no-pregnancy"' in page.text
    assert f'href="/t/{facility.slug}/antenatal/clinic"' in page.text  # the navigation's ANC clinic
    no_inline_script(page.text)

    day = dt.date.today() - dt.timedelta(days=2)
    typed = {"seen_on": day.isoformat(), "systolic_mmhg": "152", "diastolic_mmhg": "96", "urine_protein": "2+",
             "haemoglobin_g_dl": "10.2", "syphilis_test": "negative", "f.danger_signs": ["severe_headache"]}
    refused = post_form(midwife, tab, tab, typed)
    assert refused.status_code == 422 and 'id="lmp-error"' in refused.text and "first contact" in refused.text
    assert 'value="152"' in refused.text and 'id="sign-severe_headache" checked' in refused.text
    assert contacts(db, facility.slug) == 0

    lmp = day - dt.timedelta(weeks=30)
    done = post_form(midwife, tab, tab, {**typed, "lmp": lmp.isoformat()})
    assert done.status_code == 303, done.text
    card = midwife.get(done.headers["location"])
    assert card.status_code == 200 and "raised a flag" in card.text
    assert 'id="flag-pre_eclampsia"' in card.text and 'id="flag-severe_features"' in card.text
    assert 'id="flag-anaemia"' in card.text and 'id="anc-schedule"' in card.text
    assert (lmp + dt.timedelta(days=280)).strftime("%Y") in card.text.split('id="edd"')[1][:80]
    clinic = midwife.get(f"/t/{facility.slug}/antenatal/clinic")
    assert clinic.status_code == 200 and f'id="woman-{woman}"' in clinic.text and "Pre-eclampsia" in clinic.text
    no_inline_script(clinic.text)

    # Corrected from the form (the pressure retaken at rest), then withdrawn: a reason is asked for first.
    with db.tenant(facility.slug) as conn:
        contact = conn.execute(sa.text("SELECT entry_id FROM antenatal")).scalar()
    form = midwife.get(f"{tab}/{contact}/correct")
    assert form.status_code == 200 and 'value="152"' in form.text and 'id="sign-severe_headache" checked' in form.text
    fixed = post_form(midwife, f"{tab}/{contact}/correct", f"{tab}/{contact}", {
        **typed, "lmp": lmp.isoformat(), "systolic_mmhg": "124", "diastolic_mmhg": "78", "f.danger_signs": [],
        "reason": "retaken after rest"})
    assert fixed.status_code == 303 and fixed.headers["location"].endswith("done=anc-corrected"), fixed.text
    card = midwife.get(fixed.headers["location"]).text
    assert 'id="flag-pre_eclampsia"' not in card and 'id="flag-anaemia"' in card
    with db.tenant(facility.slug) as conn:
        current = conn.execute(sa.text("SELECT id FROM entry WHERE kind = 'antenatal' AND NOT EXISTS "
                                       "(SELECT 1 FROM entry s WHERE s.supersedes = entry.id)")).scalar()
    withdraw = f"{tab}/{current}/entered-in-error"
    unsaid = post_form(midwife, tab, withdraw, {"reason": ""})
    assert unsaid.status_code == 422 and f'id="withdraw-{current}"' in unsaid.text
    gone = post_form(midwife, tab, withdraw, {"reason": "recorded on the wrong woman"})
    card = midwife.get(gone.headers["location"]).text
    assert gone.status_code == 303 and 'id="no-pregnancy"' in card
    # Still on the card, under the contacts: what it was, who withdrew it, when and why, and its history.
    withdrawn_listed(card, current, what="Contact at 30+0 weeks", by="Test nurse", why="recorded on the wrong woman")

    mans = midwife.get(f"/t/{facility.slug}/patients/{man}/antenatal")
    assert mans.status_code == 200 and 'id="anc-form"' not in mans.text


def test_the_antenatal_tab_is_left_off_where_it_cannot_apply_and_its_address_says_why(signed_in, person_factory, db,
                                                                                      facility):
    """A man's record and a girl of six: no Antenatal tab on the chart; the tab's address opened anyway says in a
    sentence why (the layer's own refusal), with no form. A woman's chart keeps the tab."""
    author = person_factory("clinician", facility.slug)
    six_years_ago = dt.date.today().replace(day=1) - dt.timedelta(days=6 * 366)
    woman = registered(db, facility.slug, author, given_names="Amani")
    man = registered(db, facility.slug, author, sex="male", given_names="Otieno")
    girl = registered(db, facility.slug, author, given_names="Neema", birth_date=six_years_ago.isoformat())
    midwife = signed_in("nurse", facility.slug)
    for patient, sentence in ((man, "This record is a man's: antenatal care is recorded on the woman's record."),
                              (girl, "This patient was 6 years old on")):
        chart = midwife.get(f"/t/{facility.slug}/patients/{patient}/chart")
        assert chart.status_code == 200 and f"/patients/{patient}/antenatal" not in chart.text
        opened = midwife.get(f"/t/{facility.slug}/patients/{patient}/antenatal")
        assert opened.status_code == 200 and 'id="anc-form"' not in opened.text
        said = html.unescape(opened.text.split('id="no-antenatal-care">')[1].split("</p>")[0])
        assert sentence in said and "Nothing to record here" in said
    chart = midwife.get(f"/t/{facility.slug}/patients/{woman}/chart").text
    assert f'href="/t/{facility.slug}/patients/{woman}/antenatal"' in chart


def _patient(db, policy, tenant: str, family: str) -> dict:
    midwife = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Midwife", tenant=tenant, role="nurse")
    with db.tenant(tenant) as conn:
        chart = new_patient(conn, midwife, family_name=family, given_names="Faith",
                            birth_date=dt.date(1996, 5, 1))["id"]
    with db.control() as conn:
        subject = identity.match_or_create_subject(conn, family_name=family, given_names="Faith",
                                                   national_id=f"ANC-{uuid.uuid4().hex[:8]}").subject_id
        email = f"faith-{uuid.uuid4().hex[:6]}@example.org"
        identity.create_account(conn, policy, kind="patient", email=email, display_name=f"Faith {family}",
                                role="patient", subject_id=subject)
        identity.note_facility(conn, subject, tenant)
    with db.tenant(tenant) as conn:
        conn.exec_driver_sql("UPDATE patient SET subject_id = %s WHERE id = %s", (subject, chart))
    return {"email": email, "chart": chart, "midwife": midwife}


def test_she_reads_her_due_date_and_next_visit_never_a_result(db, app, policy, facility):
    """Her own record (/me, and the file she downloads): the due date, the weeks today and her next visit, never a
    test's result; the read noted as her own; the release rules (`[antenatal]`) can keep it off; another patient of
    the same facility reads none of it."""
    clinic = facility
    zone = zoneinfo.ZoneInfo(clinic.timezone)
    today = dt.datetime.now(zone).date()
    her = _patient(db, policy, clinic.slug, "Nyambura")
    seen_on, lmp = today - dt.timedelta(days=3), today - dt.timedelta(weeks=24, days=3)
    with db.tenant(clinic.slug) as conn:
        antenatal.record_contact(conn, her["midwife"], her["chart"], AntenatalIn(
            seen_on=seen_on, lmp=lmp, syphilis_test="positive", hiv_test="positive",
            next_visit_on=today + dt.timedelta(days=11)), today=today, tz=zone)
    client = _patient_client(db, app, her["email"])
    page = client.get("/me")
    assert page.status_code == 200, page.text
    line = page.text.split(f'id="pregnancy-{clinic.slug}"')[1].split("</p>")[0]
    assert "24 weeks and 3 days pregnant today" in line  # in her words, not the clinicians' "24+3 weeks"
    assert "next antenatal visit" in line
    assert "yphilis" not in page.text and "HIV" not in page.text
    reads = [e for e in audit.patient_access_log(db, clinic.slug, her["chart"])
             if e.event_type == "record.antenatal.read"]
    assert reads and reads[-1].who["kind"] == "patient"
    [facility] = client.get("/me/record.json").json()["facilities"]
    assert facility["pregnancy"] == {"due_date": (lmp + dt.timedelta(days=280)).isoformat(),
                                     "weeks": "24+3",
                                     "next_contact": (today + dt.timedelta(days=11)).isoformat()}

    kept = app.state.release_rules
    app.state.release_rules = dataclasses.replace(kept, antenatal="not_shown")
    try:
        assert "Your pregnancy" not in client.get("/me").text
        assert client.get("/me/record.json").json()["facilities"][0]["pregnancy"] is None
    finally:
        app.state.release_rules = kept
    assert kept.antenatal_shown  # the shipped rules show it

    other = _patient(db, policy, clinic.slug, "Otieno")
    theirs = _patient_client(db, app, other["email"]).get("/me")
    assert theirs.status_code == 200 and "Your pregnancy" not in theirs.text and "Nyambura" not in theirs.text
    assert not [e for e in audit.patient_access_log(db, clinic.slug, other["chart"])
                if e.event_type == "record.antenatal.read"]
