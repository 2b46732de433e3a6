"""The patient's vaccination card (appliance/web/me_immunizations.py) over real HTTP: a baby vaccinated at two
facilities under one identity has one card, the doses of both judged together (the second pentavalent dose given
at the health centre after the first at the hospital, so the third is overdue, not the second); a dose entered in
error never shows; a dose not given shows with its reason; each facility notes the read; the release rules can
keep vaccinations off the portal; and staff, a facility's API token, a stranger and another patient reach no
child's card."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
import zoneinfo

import pytest
from litestar.testing import TestClient

from appliance.layers.clinical import death, immunization
from appliance.layers.clinical.immunization_schedule import Span, load_schedule
from appliance.layers.clinical.schemas import DeathIn, ImmunizationIn
from appliance.layers.patient.release import ReleasePolicyError, load_release_rules
from appliance.substrate import audit, identity
from appliance.substrate.principal import Principal
from tests.layers.clinical.conftest import new_patient
from tests.web.test_me import _patient_client, _portal_of

UTC = zoneinfo.ZoneInfo("UTC")  # the test facilities' zone
BORN_DAYS_AGO = 105  # fifteen weeks: the 6-, 10- and 14-week doses are all owed by now


@pytest.fixture(scope="module")
def two_facilities(tenant_factory):
    return tenant_factory(name="Mama Lucy Hospital"), tenant_factory(name="Kayole Health Centre")


def _nurse(tenant: str) -> Principal:
    return Principal(account_id=uuid.uuid4(), kind="staff", display_name="Nurse Wairimu", tenant=tenant, role="nurse")


def _dose(conn, nurse, settings, patient_id, days_ago: int, **fields) -> dict:
    today = dt.date.today()
    data = ImmunizationIn.model_validate({"given_on": today - dt.timedelta(days=days_ago), **fields})
    return immunization.record_dose(conn, nurse, patient_id, data, today=today, tz=UTC,
                                    schedule=load_schedule(settings.policies_dir / "immunization.toml"))["immunization"]


@pytest.fixture(scope="module")
def baby(db, policy, settings, two_facilities) -> dict:
    """Baraka, registered at both facilities as one person, with a portal account."""
    hospital, centre = two_facilities
    born = dt.date.today() - dt.timedelta(days=BORN_DAYS_AGO)
    charts = {}
    for facility in (hospital, centre):
        with db.tenant(facility.slug) as conn:
            charts[facility.slug] = new_patient(conn, _nurse(facility.slug), family_name="Mwangi",
                                                given_names="Baraka", sex="male", birth_date=born)["id"]
    with db.control() as conn:
        subject = identity.match_or_create_subject(conn, family_name="Mwangi", given_names="Baraka",
                                                   national_id=f"IMM-{uuid.uuid4().hex[:8]}").subject_id
        email = f"baraka-{uuid.uuid4().hex[:6]}@example.org"
        identity.create_account(conn, policy, kind="patient", email=email, display_name="Baraka Mwangi",
                                role="patient", subject_id=subject)
        for facility in (hospital, centre):
            identity.note_facility(conn, subject, facility.slug)
    for facility in (hospital, centre):
        with db.tenant(facility.slug) as conn:
            conn.exec_driver_sql("UPDATE patient SET subject_id = %s WHERE id = %s", (subject, charts[facility.slug]))
    with db.tenant(hospital.slug) as conn:
        nurse = _nurse(hospital.slug)
        _dose(conn, nurse, settings, charts[hospital.slug], BORN_DAYS_AGO, vaccine="BCG", dose_number=1)
        _dose(conn, nurse, settings, charts[hospital.slug], BORN_DAYS_AGO - 42, vaccine="PENTA", dose_number=1,
              lot_number="PV-1")
        wrong = _dose(conn, nurse, settings, charts[hospital.slug], BORN_DAYS_AGO - 42, vaccine="MCV", dose_number=1)
        immunization.withdraw_dose(conn, nurse, charts[hospital.slug], wrong["id"], "recorded on the wrong child")
    with db.tenant(centre.slug) as conn:
        nurse = _nurse(centre.slug)
        _dose(conn, nurse, settings, charts[centre.slug], BORN_DAYS_AGO - 70, vaccine="PENTA", dose_number=2)
        _dose(conn, nurse, settings, charts[centre.slug], BORN_DAYS_AGO - 70, vaccine="OPV", dose_number=1,
              status="not_done", not_done_reason="refused")
    return {"email": email, "charts": charts, "born": born}


def test_one_card_across_both_facilities(db, app, two_facilities, baby):
    hospital, centre = two_facilities
    parent = _patient_client(db, app, baby["email"])
    answer = parent.get("/api/me/immunizations")
    assert answer.status_code == 200, answer.text
    card = answer.json()
    assert (card["shown"], card["born"], card["traced"], card["note"]) == (True, baby["born"].isoformat(), True, None)
    doses = [(d["vaccine"], d["dose_number"], d["facility"], d["given"]) for d in card["doses"]]
    # Newest first (of one day, the last recorded first); no MCV: it was entered in error.
    assert doses == [("OPV", 1, centre.name, False), ("PENTA", 2, centre.name, True),
                     ("PENTA", 1, hospital.name, True), ("BCG", 1, hospital.name, True)]
    assert card["doses"][0]["not_given_because"] == "the caregiver refused"
    assert all(d["counts"] for d in card["doses"] if d["given"])
    due = {(s["vaccine"], s["dose_number"]): s for s in card["due"]}
    # The health centre's dose 2 counts after the hospital's dose 1: dose 3 is what is owed, not dose 2.
    assert ("PENTA", 2) not in due and due[("PENTA", 3)]["state"] == "overdue"
    assert due[("OPV", 1)]["state"] == "overdue" and due[("OPV", 1)]["not_done_reason"] == "refused"
    assert ("MCV", 1) in {(s["vaccine"], s["dose_number"]) for s in card["coming"]}
    # Each facility noted the read, as the patient's own.
    for facility in (hospital, centre):
        reads = [e for e in audit.patient_access_log(db, facility.slug, baby["charts"][facility.slug])
                 if e.event_type == "record.immunization.read"]
        assert reads and reads[-1].who["kind"] == "patient"


def test_the_downloaded_record_carries_the_card(db, app, two_facilities, baby):
    """The record a parent downloads to take to a school or another clinic holds the card's doses of every
    facility, and what is owed, as the card shows them."""
    hospital, centre = two_facilities
    document = _patient_client(db, app, baby["email"]).get("/me/record.json").json()
    card = document["vaccinations"]
    assert [(d["vaccine"], d["dose_number"], d["facility"]) for d in card["doses"]] == [
        ("OPV", 1, centre.name), ("PENTA", 2, centre.name), ("PENTA", 1, hospital.name), ("BCG", 1, hospital.name)]
    assert ("PENTA", 3) in {(s["vaccine"], s["dose_number"]) for s in card["due"]}


def test_the_card_page(db, app, two_facilities, baby):
    hospital, centre = two_facilities
    page = _patient_client(db, app, baby["email"]).get("/me/immunizations")
    assert page.status_code == 200 and 'aria-current="page">Vaccinations' in page.text
    due = page.text.split('class="rows due"')[1].split("</ul>")[0]
    assert "Pentavalent (DTP-HepB-Hib), dose 3" in due and "overdue since" in due
    assert "Pentavalent (DTP-HepB-Hib), dose 2" not in due
    doses = page.text.split('class="list doses"')[1].split("</table>")[0]
    assert hospital.name in doses and centre.name in doses and "not given: the caregiver refused" in doses
    assert 'data-vaccine="MCV"' not in doses
    assert "<script" not in page.text.split("<main")[1]  # CSP: no inline script


def test_a_dose_in_its_window_says_by_when_not_only_since_when(db, app, policy, settings, two_facilities):
    """Amani, 13 months, had her first measles dose late, at ten months: the second may be given from the day after
    it, and the programme gives it at 15 months. Her card said "due since" the first day it may be given, as if she
    were late; it says the day it is due by, and from when it may be given."""
    hospital, _ = two_facilities
    born = dt.date.today() - dt.timedelta(days=400)
    with db.tenant(hospital.slug) as conn:
        chart = new_patient(conn, _nurse(hospital.slug), family_name="Akinyi", given_names="Amani", sex="female",
                            birth_date=born)["id"]
        _dose(conn, _nurse(hospital.slug), settings, chart, 100, vaccine="MCV", dose_number=1)
    page = _portal_of(db, app, policy, hospital.slug, chart, "Akinyi", "Amani").get("/me/immunizations").text
    mcv2 = page.split('data-vaccine="MCV" data-dose="2"')[1].split("</li>")[0]
    fifteen_months = Span.parse("15m").after(born)
    first_day = dt.date.today() - dt.timedelta(days=99)
    assert f"due by {fifteen_months:%d %b %Y}" in mcv2 and f"may be given from {first_day:%d %b %Y}" in mcv2
    assert "since" not in mcv2


def test_the_release_rules_can_keep_vaccinations_off_the_portal(db, app, baby, tmp_path):
    kept = app.state.release_rules
    app.state.release_rules = dataclasses.replace(kept, immunizations="not_shown")
    try:
        parent = _patient_client(db, app, baby["email"])
        card = parent.get("/api/me/immunizations").json()
        assert (card["shown"], card["doses"], card["due"]) == (False, [], [])
        page = parent.get("/me/immunizations").text
        assert "Vaccinations are not shown on this portal" in page and "Pentavalent" not in page
    finally:
        app.state.release_rules = kept
    assert kept.immunizations_shown  # the shipped rules show them
    wrong = tmp_path / "release.toml"
    wrong.write_text('[immunization]\nrelease = "after_review"\n\n[default]\nrelease = "after_review"\n')
    with pytest.raises(ReleasePolicyError, match=r"\[immunization\]: release is one of at_once, not_shown"):
        load_release_rules(wrong)


def _signing_in(db, app, policy, tenant: str, family_name: str, given_names: str, born: dt.date):
    """A person with one chart, at `tenant`, signed in to the portal: (their client, the chart)."""
    with db.tenant(tenant) as conn:
        chart = new_patient(conn, _nurse(tenant), family_name=family_name, given_names=given_names, sex="female",
                            birth_date=born)["id"]
    return _portal_of(db, app, policy, tenant, chart, family_name, given_names), chart


def test_a_grown_patient_is_told_of_no_childhood_dose(db, app, policy, two_facilities):
    """Past the schedule's tracing age the card lists the doses recorded and says nothing is owed, nor what is no
    longer given: a woman of forty with no dose recorded here read 'No longer given at this age: BCG, Pentavalent
    ...', as if she had missed them (most were given as a baby, elsewhere)."""
    hospital, _ = two_facilities
    grown, _ = _signing_in(db, app, policy, hospital.slug, "Achieng", "Grace",
                           dt.date.today() - dt.timedelta(days=40 * 365))
    card = grown.get("/api/me/immunizations").json()
    assert (card["traced"], card["doses"], card["due"], card["coming"], card["no_longer_given"]) == (
        False, [], [], [], [])
    page = grown.get("/me/immunizations").text
    assert "no longer says what is due" in page and "No longer given" not in page and "BCG" not in page


def test_a_child_who_died_is_owed_no_dose(db, app, policy, settings, two_facilities):
    """A parent whose baby died is never told a dose is late: the card keeps the doses given, and says nothing due."""
    hospital, _ = two_facilities
    nurse = _nurse(hospital.slug)
    parent, chart = _signing_in(db, app, policy, hospital.slug, "Kamau", "Neema",
                                dt.date.today() - dt.timedelta(days=BORN_DAYS_AGO))
    with db.tenant(hospital.slug) as conn:
        _dose(conn, nurse, settings, chart, BORN_DAYS_AGO, vaccine="BCG", dose_number=1)
    assert parent.get("/api/me/immunizations").json()["due"]  # alive: owed the 6-week doses
    clinician = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Mwangi", tenant=hospital.slug,
                          role="clinician")
    with db.tenant(hospital.slug) as conn:
        death.certify(conn, clinician, chart, DeathIn.model_validate({
            "died_at": dt.datetime.now(dt.UTC) - dt.timedelta(days=2), "place": "this_facility",
            "part1": [{"code": "A09"}], "manner": "disease"}))
    card = parent.get("/api/me/immunizations").json()
    assert (card["traced"], card["due"], card["coming"], card["no_longer_given"]) == (False, [], [], [])
    assert [d["vaccine"] for d in card["doses"]] == ["BCG"]
    page = parent.get("/me/immunizations").text
    assert "Due now" not in page and "overdue" not in page and "BCG" in page


def test_no_one_else_reaches_the_card(db, app, policy, signed_in, token_client, two_facilities, baby):
    hospital, _ = two_facilities
    # A nurse of the facility that vaccinated him: staff are not patients.
    nurse = signed_in("nurse", hospital.slug)
    assert nurse.get("/api/me/immunizations").status_code == 403
    assert nurse.get("/me/immunizations").status_code == 403
    # A facility's API token: the patient's API takes no token.
    assert token_client(hospital.slug, role="clinician").get("/api/me/immunizations").status_code in (401, 403)
    # No one signed in.
    anonymous = TestClient(app=app, raise_server_exceptions=False)
    assert anonymous.get("/api/me/immunizations").status_code == 401
    assert anonymous.get("/me/immunizations", follow_redirects=False).status_code in (302, 303, 401)
    # Another patient, of no facility: an empty card, nothing of Baraka's.
    with db.control() as conn:
        stranger = identity.match_or_create_subject(conn, family_name="Otieno", given_names="Jane",
                                                    national_id=f"IMM-{uuid.uuid4().hex[:8]}").subject_id
        email = f"jane-{uuid.uuid4().hex[:6]}@example.org"
        identity.create_account(conn, policy, kind="patient", email=email, display_name="Jane Otieno",
                                role="patient", subject_id=stranger)
    theirs = _patient_client(db, app, email).get("/api/me/immunizations")
    assert theirs.status_code == 200 and theirs.json()["doses"] == [] and "Baraka" not in theirs.text
    assert "No facility on this appliance holds a record" in theirs.json()["note"]


def test_a_dose_from_an_expired_lot_reads_as_not_counting_and_still_owed(db, app, settings, two_facilities, baby):
    """Last in the module: it adds a dose to Baraka's card. The rotavirus dose the health centre gave from a lot
    that expired the day before is on the card, saying it does not count and why; the dose is still owed."""
    _, centre = two_facilities
    with db.tenant(centre.slug) as conn:
        _dose(conn, _nurse(centre.slug), settings, baby["charts"][centre.slug], 0, vaccine="ROTA", dose_number=1,
              expiry_date=dt.date.today() - dt.timedelta(days=1))
    card = _patient_client(db, app, baby["email"]).get("/api/me/immunizations").json()
    rota = next(d for d in card["doses"] if d["vaccine"] == "ROTA")
    assert rota["counts"] is False and rota["why_not"].startswith("from an expired lot: does not count")
    assert ("ROTA", 1) in {(s["vaccine"], s["dose_number"]) for s in card["due"]}
