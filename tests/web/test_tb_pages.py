"""TB in the tenant portal: the chart's TB tab (registration by form with the register's number, the follow-up months
due, a follow-up recorded, cured refused for a clinically diagnosed case beside the field with nothing written, the
outcome recorded), a correction with its reason (refused without one), the facility's register page with its cohort
table, and the refusals: a registrar, a guessed year, a guessed treatment (another facility's session is in
tests/web/test_portal.py's every-route lists). And a person's TB treatment on their own record (/me and the record
they download): the register number, regimen, the phase and until when, the next sputum check's day, the outcome once
recorded; never a follow-up's findings nor the HIV status at the start; the read noted as their own; the release rules
(`[tb_care]`) can keep it off the portal; a person never registered has nothing of it, nor in their access log."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import death, service, tuberculosis
from appliance.layers.clinical.schemas import DeathIn, EncounterIn, PatientIn
from appliance.layers.clinical.tuberculosis import load_regimens
from appliance.layers.clinical.tuberculosis_schemas import TbFollowUpIn, TbRegistrationIn
from appliance.substrate import audit
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_timezone
from tests.layers.clinical.conftest import new_patient
from tests.web.test_me import _patient_client, kept_off_by_the_release_rules
from tests.web.test_me_family_planning import _account, a_registered_patients_page
from tests.web.test_portal import post_form, withdrawn_on_tab

regimens = load_regimens(Path(__file__).parents[2] / "policies" / "tuberculosis.toml")


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="TB Clinic")


@pytest.fixture(scope="module")
def patient(db, facility, person_factory) -> dict:
    author = person_factory("clinician", facility.slug)
    principal = Principal(account_id=author.account_id, kind="staff", display_name="Dr Chest",
                          tenant=facility.slug, role="clinician")
    with db.tenant(facility.slug) as conn:
        found = service.register_patient(conn, principal, PatientIn.model_validate(
            {"family_name": "Mwangi", "given_names": "Peter", "birth_date": dt.date(1985, 3, 3), "sex": "male",
             "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}))
        service.open_encounter(conn, principal, found["id"], EncounterIn(encounter_class="outpatient"))
    return {"id": found["id"], "path": f"/t/{facility.slug}/patients/{found['id']}/tb"}


def _tb_entries(db, facility) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM entry WHERE kind LIKE 'tb_%'")).scalar()


def test_a_case_is_registered_followed_and_its_outcome_refused_then_recorded_on_the_tab(signed_in, db, facility,
                                                                                        patient):
    clinician = signed_in("clinician", facility.slug)
    chart = clinician.get(f"/t/{facility.slug}/patients/{patient['id']}/chart")
    assert f'href="{patient["path"]}"' in chart.text, "the chart links its TB tab"
    empty = clinician.get(patient["path"])
    assert empty.status_code == 200 and 'id="register-form"' in empty.text and 'name="_csrf_token"' in empty.text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", empty.text) and " onclick=" not in empty.text
    started = dt.date.today() - dt.timedelta(days=200)
    refused = post_form(clinician, patient["path"], patient["path"], {
        "started_on": started.isoformat(), "site": "pulmonary", "bacteriology": "clinically_diagnosed",
        "history": "new", "regimen": "2HRZE/4HR", "hiv_status": "negative", "weight_kg": ""})
    assert refused.status_code == 422 and 'id="weight_kg-error"' in refused.text, refused.text
    sent = post_form(clinician, patient["path"], patient["path"], {
        "started_on": started.isoformat(), "site": "pulmonary", "bacteriology": "clinically_diagnosed",
        "history": "new", "regimen": "2HRZE/4HR", "hiv_status": "negative", "weight_kg": "48.5"})
    assert sent.status_code == 303 and sent.headers["location"].endswith("?done=tb-registered"), sent.text
    card = clinician.get(sent.headers["location"])
    number = f"{started.year}/0001"
    assert number in card.text and 'id="register-form"' not in card.text
    root = re.search(r'id="treatment-([0-9a-f-]{36})"', card.text).group(1)
    assert f'id="due-{root}-2"' in card.text and "Overdue" in card.text  # month 2 is past, nothing recorded
    followed = post_form(clinician, patient["path"], f"{patient['path']}/{root}/follow-ups", {
        "month": "2", "examined_on": (started + dt.timedelta(days=60)).isoformat(), "smear": "negative",
        "culture": "not_done", "xpert": "not_done", "weight_kg": "51"})
    assert followed.status_code == 303, followed.text
    before = _tb_entries(db, facility)
    cured = post_form(clinician, patient["path"], f"{patient['path']}/{root}/outcome",
                      {"outcome": "cured", "outcome_on": dt.date.today().isoformat()})
    assert cured.status_code == 422, cured.text
    assert f'id="outcome-{root}-outcome"' in cured.text and "Cured is only for a case bacteriologically confirmed" \
        in cured.text
    assert _tb_entries(db, facility) == before
    done = post_form(clinician, patient["path"], f"{patient['path']}/{root}/outcome",
                     {"outcome": "treatment_completed", "outcome_on": dt.date.today().isoformat()})
    assert done.status_code == 303 and done.headers["location"].endswith("?done=tb-outcome"), done.text
    assert "Treatment completed" in clinician.get(patient["path"]).text
    current = re.search(rf'href="{patient["path"]}/([0-9a-f-]{{36}})/correct"', clinician.get(patient["path"]).text)
    form_path = f"{patient['path']}/{current.group(1)}/correct"
    filled = clinician.get(form_path)
    assert filled.status_code == 200 and 'id="correct-form"' in filled.text and 'value="48.5"' in filled.text
    fields = {"started_on": started.isoformat(), "site": "pulmonary", "bacteriology": "clinically_diagnosed",
              "history": "new", "regimen": "2HRZE/4HR", "hiv_status": "negative", "weight_kg": "50.5",
              "outcome": "treatment_completed", "outcome_on": dt.date.today().isoformat()}
    before = _tb_entries(db, facility)
    no_reason = post_form(clinician, form_path, f"{patient['path']}/{current.group(1)}", {**fields, "reason": ""})
    assert no_reason.status_code == 422 and 'id="reason-error"' in no_reason.text, no_reason.text
    assert _tb_entries(db, facility) == before
    fixed = post_form(clinician, form_path, f"{patient['path']}/{current.group(1)}",
                      {**fields, "reason": "weight misread"})
    assert fixed.status_code == 303 and fixed.headers["location"].endswith("?done=tb-corrected"), fixed.text
    assert "50.5 kg" in clinician.get(patient["path"]).text and number in clinician.get(patient["path"]).text
    assert clinician.get(form_path).status_code == 404  # that version is replaced now

    register = clinician.get(f"/t/{facility.slug}/tb/register", params={"year": started.year})
    assert register.status_code == 200, register.text
    assert f'id="case-{number.replace("/", "-")}"' in register.text and "MWANGI" in register.text
    quarter = (started.month - 1) // 3 + 1
    row = re.search(rf'id="cohort-{quarter}-new_relapse_clinical">(.*?)</tr>', register.text, re.S).group(1)
    assert re.findall(r"<td>([^<]*)</td>", row)[:1] == ["1"] and "100.0 %" in row
    assert clinician.get(f"/t/{facility.slug}/tb/register", params={"year": "1999"}).status_code == 400
    guessed = post_form(clinician, patient["path"], f"{patient['path']}/{uuid.uuid4()}/outcome",
                        {"outcome": "died", "outcome_on": dt.date.today().isoformat()})
    assert guessed.status_code == 404
    # A follow-up withdrawn is listed under the card.
    follow_up = re.search(r'id="follow-up-([0-9a-f-]{36})"', clinician.get(patient["path"]).text).group(1)
    withdrawn_on_tab(clinician, patient["path"], follow_up, "another patient's sputum", what="Follow-up month 2")


def test_a_registrar_sees_neither_the_tab_nor_the_register(signed_in, facility, patient):
    registrar = signed_in("registrar", facility.slug)
    assert registrar.get(patient["path"]).status_code == 403
    assert registrar.get(f"/t/{facility.slug}/tb/register").status_code == 403


def test_the_register_names_hiv_status_only_to_art_register_readers_and_died_points_to_the_certificate(
        signed_in, db, facility, patient):
    """A second case, HIV-positive: the clinician's register says so, the nurse's says the status is withheld and
    shows it for no one, and withholds the cohort's HIV-positive count of 1 with the national page's words (the
    clinician's shows it). Its outcome died, with no certificate: the card says none is recorded and links to write
    one."""
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Chest", tenant=facility.slug,
                       role="clinician")
    started = dt.date.today() - dt.timedelta(days=30)
    with db.tenant(facility.slug) as conn:
        who = service.register_patient(conn, doctor, PatientIn.model_validate(
            {"family_name": "Achieng", "given_names": "Rose", "birth_date": dt.date(1990, 6, 6), "sex": "female",
             "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}))["id"]
        service.open_encounter(conn, doctor, who, EncounterIn(encounter_class="outpatient"))
        root = tuberculosis.register(conn, doctor, who, TbRegistrationIn.model_validate(
            {"started_on": started, "site": "pulmonary", "bacteriology": "bacteriologically_confirmed",
             "history": "new", "regimen": "2HRZE/4HR", "hiv_status": "positive", "weight_kg": "50"}),
            regimens=regimens, today=dt.date.today())["root_id"]
    register = f"/t/{facility.slug}/tb/register?year={started.year}"
    clinician, nurse = signed_in("clinician", facility.slug), signed_in("nurse", facility.slug)
    assert " · HIV-positive</td>" in clinician.get(register).text
    withheld = nurse.get(register)
    assert withheld.status_code == 200 and 'id="hiv-status-withheld"' in withheld.text
    assert " · HIV-positive" not in withheld.text and "ACHIENG" in withheld.text
    quarter = (started.month - 1) // 3 + 1
    hiv_row = re.compile(rf'id="cohort-{quarter}-hiv_positive">(.*?)</tr>', re.S)
    small = hiv_row.search(withheld.text).group(1)
    assert 'title="withheld: under 5, or would reveal one">withheld</span>' in small and "<td>1</td>" not in small
    assert "withhold a count from 1 to 4 in their HIV-positive row" in withheld.text
    assert re.findall(r"<td>([^<]*)</td>", hiv_row.search(clinician.get(register).text).group(1))[:1] == ["1"]
    path = f"/t/{facility.slug}/patients/{who}/tb"
    died = post_form(clinician, path, f"{path}/{root}/outcome", {"outcome": "died",
                                                                 "outcome_on": dt.date.today().isoformat()})
    assert died.status_code == 303, died.text
    card = clinician.get(path).text
    assert f'id="death-{root}"' in card and "No death certificate is recorded for this person" in card
    assert f'<a href="/t/{facility.slug}/patients/{who}/death/new" id="death-{root}-certify">' in card


def test_a_cohort_still_on_treatment_says_its_success_rate_is_so_far(signed_in, db, tenant_factory, person_factory):
    """A quarter whose one case is in its second month read 'Treatment success: 0.0 % (0 of 1 cured or treatment
    completed)', as if the clinic had failed it: the rate says how many have no outcome yet."""
    clinic = tenant_factory(name="TB Cohort Clinic")
    doctor = Principal(account_id=person_factory("clinician", clinic.slug).account_id, kind="staff",
                       display_name="Dr Chest", tenant=clinic.slug, role="clinician")
    started = dt.date.today() - dt.timedelta(days=40)
    with db.tenant(clinic.slug) as conn:
        who = service.register_patient(conn, doctor, PatientIn.model_validate(
            {"family_name": "Odhiambo", "given_names": "Brian", "birth_date": dt.date(1979, 9, 9), "sex": "male",
             "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}))["id"]
        tuberculosis.register(conn, doctor, who, TbRegistrationIn.model_validate(
            {"started_on": started, "site": "pulmonary", "bacteriology": "bacteriologically_confirmed",
             "history": "new", "regimen": "2HRZE/4HR", "hiv_status": "negative", "weight_kg": "58"}),
            regimens=regimens, today=dt.date.today())
    page = signed_in("clinician", clinic.slug).get(f"/t/{clinic.slug}/tb/register", params={"year": started.year})
    quarter = (started.month - 1) // 3 + 1
    said = re.search(rf'<strong id="success-{quarter}">(.*?)</p>', page.text, re.S).group(1)
    assert said == (f'0.0 %</strong> (0 of 1 cured or treatment completed)<span id="success-{quarter}-so-far">, so '
                    "far: 1 without an outcome yet, counted as not successful until theirs is assigned</span>."), said


def test_the_register_says_a_patient_on_treatment_is_certified_dead(signed_in, db, tenant_factory, person_factory):
    clinic = tenant_factory(name="TB Deaths Clinic")
    doctor = Principal(account_id=person_factory("clinician", clinic.slug).account_id, kind="staff",
                       display_name="Dr Chest", tenant=clinic.slug, role="clinician")
    started = dt.date.today() - dt.timedelta(days=100)
    linked = service.with_subject(db, PatientIn.model_validate(
        {"family_name": "Kiprono", "given_names": "Paul", "birth_date": dt.date(1960, 1, 1), "sex": "male",
         "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}), tenant=clinic.slug)
    with db.tenant(clinic.slug) as conn:
        who = service.register_patient(conn, doctor, linked)["id"]
        number = tuberculosis.register(conn, doctor, who, TbRegistrationIn.model_validate(
            {"started_on": started, "site": "pulmonary", "bacteriology": "bacteriologically_confirmed",
             "history": "new", "regimen": "2HRZE/4HR", "hiv_status": "negative", "weight_kg": "50"}),
            regimens=regimens, today=dt.date.today())["register_number"]
        death.certify(conn, doctor, who, DeathIn.model_validate({
            "died_at": dt.datetime.now(dt.UTC) - dt.timedelta(days=3), "place": "home", "manner": "disease",
            "part1": [{"code": "J96.0", "interval": "2 hours"}, {"code": "A15.0", "interval": "3 months"}]}))
    page = signed_in("clinician", clinic.slug).get(f"/t/{clinic.slug}/tb/register", params={"year": started.year})
    row = re.search(rf'id="case-{number.replace("/", "-")}">(.*?)</tr>', page.text, re.S).group(1)
    assert f'id="died-{number.replace("/", "-")}">Certified dead ' in row and "Record the outcome</a>" in row
    assert "overdue" not in row and 'id="died-without-outcome">1 whose patient is certified dead' in page.text


# -- their own record ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def person(db, policy, facility) -> dict:
    """Joseph Otieno: on 2HRZE/4HR for 70 days (in the continuation phase), HIV-positive at the start, his month 2
    smear positive."""
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Chest", tenant=facility.slug,
                       role="clinician")
    today = dt.datetime.now(facility_timezone(db, facility.slug)).date()
    started = today - dt.timedelta(days=70)
    with db.tenant(facility.slug) as conn:
        chart = new_patient(conn, doctor, family_name="Otieno", given_names="Joseph", sex="male",
                            birth_date=dt.date(1979, 4, 4))["id"]
        case = tuberculosis.register(conn, doctor, chart, TbRegistrationIn(
            started_on=started, site="pulmonary", bacteriology="bacteriologically_confirmed", history="new",
            regimen="2HRZE/4HR", hiv_status="positive", weight_kg=58), regimens=regimens, today=today)
        tuberculosis.record_follow_up(conn, doctor, chart, case["root_id"], TbFollowUpIn(
            month=2, examined_on=today - dt.timedelta(days=8), smear="positive"), regimens=regimens, today=today)
    return {"email": _account(db, policy, facility, chart, "Otieno"), "chart": chart,
            "number": case["register_number"], "started": started,
            "continuation_until": tuberculosis.months_after(started, 6),
            "sputum": tuberculosis.months_after(started, 5)}


def test_a_person_reads_their_tb_treatments_phase_and_next_sputum_check_never_a_finding(db, app, facility, person):
    reader = _patient_client(db, app, person["email"])
    page = reader.get("/me")
    assert page.status_code == 200, page.text
    section = page.text.split("<h2>TB treatment</h2>")[1].split("</ul>")[0]
    assert person["number"] in section and "2 months HRZE, then 4 months HR" in section
    assert f"Continuation phase until {person['continuation_until']:%d %b %Y}" in section
    assert f"Your next sputum check is due {person['sputum']:%d %b %Y}" in section
    # a smear's finding has no release rule, and the HIV status is the HIV care card's to show
    assert "positive" not in section.lower() and "HIV" not in section
    reads = [e for e in audit.patient_access_log(db, facility.slug, person["chart"])
             if e.event_type == "record.tb_treatment.read"]
    assert reads and reads[-1].who["kind"] == "patient"
    [facility] = reader.get("/me/record.json").json()["facilities"]
    assert facility["tb_care"] == {
        "register_number": person["number"], "regimen": "Drug-susceptible TB: 2 months HRZE, then 4 months HR",
        "started_on": person["started"].isoformat(), "ends_on": person["continuation_until"].isoformat(),
        "phase": "continuation", "phase_until": person["continuation_until"].isoformat(),
        "next_sputum_check": person["sputum"].isoformat(), "outcome": None, "outcome_on": None}


def test_the_release_rules_can_keep_tb_care_off_the_portal(db, app, policy, facility, person, tmp_path):
    kept_off_by_the_release_rules(db, app, person["email"], tmp_path, table="tb_care", setting="tb_care",
                                  heading="TB treatment")
    page, log = a_registered_patients_page(db, app, policy, facility, "Achieng", "Mary")
    assert "TB treatment" not in page and "Otieno" not in page
    assert not [e for e in log if "tb_" in e.event_type]


def test_the_phase_is_the_intensive_one_for_its_months_and_none_once_treatment_has_run():
    regimen = regimens.by_code["2HRZE/4HR"]
    started = dt.date(2026, 1, 10)
    assert tuberculosis.phase_on(started, regimen, dt.date(2026, 3, 9)) == ("intensive", dt.date(2026, 3, 10))
    assert tuberculosis.phase_on(started, regimen, dt.date(2026, 3, 10)) == ("continuation", dt.date(2026, 7, 10))
    assert tuberculosis.phase_on(started, regimen, dt.date(2026, 7, 10)) is None
    assert tuberculosis.phase_on(started, regimen.model_copy(update={"intensive_months": None}),
                                 dt.date(2026, 2, 1)) is None


def test_an_intensive_phase_as_long_as_the_treatment_fails_the_regimen_file(tmp_path):
    broken = tmp_path / "tuberculosis.toml"
    broken.write_text('[[regimen]]\ncode = "2HRZE/4HR"\nname = "Drug-susceptible TB"\nmonths = 6\n'
                      'follow_up_months = [2, 5, 6]\nintensive_months = 6\n')
    with pytest.raises(tuberculosis.RegimenError, match=r"regimen 2HRZE/4HR: intensive_months \(6\) must end before"):
        load_regimens(broken)
