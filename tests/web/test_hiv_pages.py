"""HIV care in the tenant portal: the chart's HIV care tab (enrolment by form with the facility's ART number, a missing
stage refused beside its field, ART started, a visit recorded by a nurse, a viral load refused beside its field with
nothing written, then an unsuppressed one flagged), the facility's ART register with the person to trace, and the
refusals: a nurse kept off the register, a registrar off the tab, a guessed enrolment (another facility's session is
in tests/web/test_portal.py's every-route lists). And a person's HIV care on their own record (/me and the record
they download): their ART number, regimen, next appointment, the day their pills run out and their next viral load's
day, never a viral load's value; the read noted as their own; the release rules (`[hiv_care]`) can keep it off the
portal; a person not enrolled has nothing of it, on the page or in their access log."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import antenatal, hiv, service
from appliance.layers.clinical.antenatal_schemas import AntenatalIn
from appliance.layers.clinical.hiv_schemas import HivEnrolmentIn, HivRegimenIn, HivViralLoadIn, HivVisitIn
from appliance.layers.clinical.schemas import EncounterIn, PatientIn
from appliance.substrate import audit
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_timezone
from tests.layers.clinical.conftest import new_patient
from tests.web.test_me import _patient_client, kept_off_by_the_release_rules
from tests.web.test_me_family_planning import _account, a_registered_patients_page
from tests.web.test_portal import post_form, withdrawn_on_tab


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
    loaded = post_form(clinician, path, f"{path}/{root}/viral-loads", {"sampled_on": day(1), "copies_per_ml": "4500",
                                                                       "indication": "targeted"})
    assert loaded.status_code == 303, loaded.text
    card = clinician.get(path).text
    assert 'id="viral-load-indication"' in card and "· <span id=" in card
    assert "Targeted (suspected treatment failure)</span>" in card  # the list's, beside the result
    # 30 days from 70 days ago ran out 40 days ago: interrupted since 11 days ago; 4500 copies is unsuppressed.
    assert 'id="hiv-unsuppressed"' in card and "Interruption in treatment" in card and "TDF+3TC+DTG" in card
    register = clinician.get(f"/t/{facility.slug}/hiv/register")
    assert register.status_code == 200 and 'id="trace-ART-00001"' in register.text and "MBEWE" in register.text
    assert nurse.get(f"/t/{facility.slug}/hiv/register").status_code == 403
    assert signed_in("registrar", facility.slug).get(path).status_code == 403
    guessed = post_form(clinician, path, f"{path}/{uuid.uuid4()}/visits",
                        {"visit_on": day(1), "arv_days": "30", "next_appointment_on": day(-29)})
    assert guessed.status_code == 404 and _hiv_entries(db, facility) == before + 1
    # A viral load withdrawn is listed under the card, saying which it was.
    load = re.search(r'id="viral-load-([0-9a-f-]{36})"', clinician.get(path).text).group(1)
    withdrawn_on_tab(clinician, path, load, "another person's sample",
                     what=f"Viral load of {(today - dt.timedelta(days=1)):%d %b %Y}: 4500 copies/mL")


def test_the_register_dates_the_regimen_a_person_is_on_from_its_own_first_day(signed_in, db, settings, facility):
    """After a substitution the register said 'TDF+3TC+EFV400 since ART started' on the day of the first regimen, as
    if the person had taken efavirenz all along: the regimen is dated from its own first day, ART's start beside it."""
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Phiri", tenant=facility.slug,
                       role="clinician")
    programme = hiv.load_programme(settings.policies_dir / "hiv.toml")
    today = dt.datetime.now(facility_timezone(db, facility.slug)).date()
    started, substituted = today - dt.timedelta(days=200), today - dt.timedelta(days=20)
    with db.tenant(facility.slug) as conn:
        chart = new_patient(conn, doctor, family_name="Chirwa", given_names="Mphatso", sex="female",
                            birth_date=dt.date(1992, 4, 4))["id"]
        care = hiv.enrol(conn, doctor, chart, HivEnrolmentIn(enrolled_on=started, diagnosed_on=started, who_stage=1,
                                                             tb_screening="no_signs"), programme=programme, today=today)
        for change, day, regimen in (("initiation", started, "TDF+3TC+DTG"),
                                     ("substitution", substituted, "TDF+3TC+EFV400")):
            hiv.change_regimen(conn, doctor, chart, care["root_id"], HivRegimenIn(
                change=change, started_on=day, regimen=regimen, reason=None if change == "initiation" else "insomnia"),
                programme=programme, today=today)
    page = signed_in("clinician", facility.slug).get(f"/t/{facility.slug}/hiv/register").text
    row = re.search(rf'id="art-{care["art_number"]}">(.*?)</tr>', page, re.S).group(1)
    assert (f'<span class="mono">TDF+3TC+EFV400</span><p class="muted small">since {substituted:%d %b %Y} · ART '
            f"started {started:%d %b %Y}</p>") in row, row


def test_the_hiv_card_says_a_woman_on_art_is_pregnant(signed_in, db, settings, facility):
    """A woman on ART booked at the antenatal clinic: her HIV card said nothing of it, and the ART clinician changing
    her regimen or timing her viral load had to think of opening another tab. The card gives the pregnancy as her
    antenatal card dates it, with the way there; a woman not pregnant has no such line."""
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Phiri", tenant=facility.slug,
                       role="clinician")
    programme = hiv.load_programme(settings.policies_dir / "hiv.toml")
    zone = facility_timezone(db, facility.slug)
    today = dt.datetime.now(zone).date()
    lmp = today - dt.timedelta(weeks=20, days=2)
    with db.tenant(facility.slug) as conn:
        pregnant, not_pregnant = (new_patient(conn, doctor, family_name=name, given_names="Thandiwe", sex="female",
                                              birth_date=dt.date(1995, 5, 5))["id"] for name in ("Mwale", "Zulu"))
        for chart in (pregnant, not_pregnant):
            service.open_encounter(conn, doctor, chart, EncounterIn(encounter_class="outpatient"))
            hiv.enrol(conn, doctor, chart, HivEnrolmentIn(enrolled_on=today - dt.timedelta(days=400),
                                                          diagnosed_on=today - dt.timedelta(days=400), who_stage=1,
                                                          tb_screening="no_signs"), programme=programme, today=today)
        antenatal.record_contact(conn, doctor, pregnant, AntenatalIn(
            seen_on=today - dt.timedelta(days=2), lmp=lmp, hiv_test="known_positive"), today=today, tz=zone)
    clinician = signed_in("clinician", facility.slug)
    card = clinician.get(f"/t/{facility.slug}/patients/{pregnant}/hiv").text
    line = re.search(r'<dd id="hiv-pregnancy">(.*?)</dd>', card).group(1)
    edd = lmp + dt.timedelta(days=280)
    assert line == (f'Pregnant, 20+2 weeks today · due {edd:%d %b %Y} · <a href="/t/{facility.slug}/patients/'
                    f'{pregnant}/antenatal">Antenatal card</a>'), line
    assert 'id="hiv-pregnancy"' not in clinician.get(f"/t/{facility.slug}/patients/{not_pregnant}/hiv").text


# -- their own record ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def person(db, policy, settings, facility) -> dict:
    """Tiwonge Banda: on TLD for 300 days, 90 days of pills 20 days ago, a viral load of 7,654 copies/mL."""
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Phiri", tenant=facility.slug,
                       role="clinician")
    programme = hiv.load_programme(settings.policies_dir / "hiv.toml")
    today = dt.datetime.now(facility_timezone(db, facility.slug)).date()
    ago = lambda n: today - dt.timedelta(days=n)  # noqa: E731 -- days ago read best as ago(300)
    with db.tenant(facility.slug) as conn:
        chart = new_patient(conn, doctor, family_name="Banda", given_names="Tiwonge", sex="male",
                            birth_date=dt.date(1990, 2, 2))["id"]
        care = hiv.enrol(conn, doctor, chart, HivEnrolmentIn(enrolled_on=ago(300), diagnosed_on=ago(310), who_stage=1,
                                                             tb_screening="no_signs"), programme=programme, today=today)
        for act, data in ((hiv.change_regimen, HivRegimenIn(change="initiation", started_on=ago(300),
                                                             regimen="TDF+3TC+DTG")),
                          (hiv.record_visit, HivVisitIn(visit_on=ago(20), arv_days=90, next_appointment_on=ago(-70))),
                          (hiv.record_viral_load, HivViralLoadIn(sampled_on=ago(20), copies_per_ml=7654))):
            act(conn, doctor, chart, care["root_id"], data, programme=programme, today=today)
    return {"email": _account(db, policy, facility, chart, "Banda"), "chart": chart, "number": care["art_number"],
            "next": ago(-70),
            "vl_due": hiv.months_after(ago(20), 3)}


def test_a_person_reads_their_art_and_next_days_never_a_viral_load_value(db, app, facility, person):
    reader = _patient_client(db, app, person["email"])
    page = reader.get("/me")
    assert page.status_code == 200, page.text
    section = page.text.split("<h2>HIV care</h2>")[1].split("</ul>")[0]
    assert person["number"] in section and "Tenofovir, lamivudine, dolutegravir" in section and "is" in section
    # the drugs they take, not where the guidelines place them ('preferred first line, adults and adolescents')
    assert "Tenofovir, lamivudine, dolutegravir (TLD), since" in section and "line" not in section
    assert "7654" not in page.text and "7,654" not in page.text  # a viral load is given in person, never here
    reads = [e for e in audit.patient_access_log(db, facility.slug, person["chart"])
             if e.event_type == "record.hiv_care.read"]
    assert reads and reads[-1].who["kind"] == "patient"
    [facility] = reader.get("/me/record.json").json()["facilities"]
    assert (facility["hiv_care"]["art_number"], facility["hiv_care"]["next_appointment"],
            facility["hiv_care"]["viral_load_due"]) == (person["number"], person["next"].isoformat(),
                                                        person["vl_due"].isoformat())
    assert "7654" not in str(facility)
    assert facility["hiv_care"]["regimen"] == "Tenofovir, lamivudine, dolutegravir (TLD)"


def test_the_release_rules_can_keep_hiv_care_off_the_portal(db, app, policy, facility, person, tmp_path):
    kept_off_by_the_release_rules(db, app, person["email"], tmp_path, table="hiv_care", setting="hiv_care",
                                  heading="HIV care")
    assert "ART-0" in _patient_client(db, app, person["email"]).get("/me").text  # shown again under the file's rules
    page, log = a_registered_patients_page(db, app, policy, facility, "Mvula", "Jane")
    assert "HIV care" not in page and "Banda" not in page
    assert not [e for e in log if "hiv" in e.event_type]
