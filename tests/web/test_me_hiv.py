"""A person's HIV care on their own record (/me and the record they download), over real HTTP: their ART number,
regimen, next appointment, the day their pills run out and their next viral load's day, never a viral load's value;
the read noted on their record as their own; the release rules (`[hiv_care]`) can keep it off the portal; and a person
not enrolled has nothing of it, on the page or in their access log."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest

from appliance.layers.clinical import hiv
from appliance.layers.clinical.hiv_schemas import HivEnrolmentIn, HivRegimenIn, HivViralLoadIn, HivVisitIn
from appliance.layers.patient.release import ReleasePolicyError, load_release_rules
from appliance.substrate import audit
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_timezone
from tests.layers.clinical.conftest import new_patient
from tests.web.test_me import _patient_client
from tests.web.test_me_family_planning import _account


@pytest.fixture(scope="module")
def clinic(tenant_factory):
    return tenant_factory(name="ART Clinic Portal")


@pytest.fixture(scope="module")
def person(db, policy, settings, clinic) -> dict:
    """Tiwonge Banda: on TLD for 300 days, 90 days of pills 20 days ago, a viral load of 7,654 copies/mL."""
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Phiri", tenant=clinic.slug,
                       role="clinician")
    programme = hiv.load_programme(settings.policies_dir / "hiv.toml")
    today = dt.datetime.now(facility_timezone(db, clinic.slug)).date()
    ago = lambda n: today - dt.timedelta(days=n)  # noqa: E731 -- days ago read best as ago(300)
    with db.tenant(clinic.slug) as conn:
        chart = new_patient(conn, doctor, family_name="Banda", given_names="Tiwonge", sex="male",
                            birth_date=dt.date(1990, 2, 2))["id"]
        care = hiv.enrol(conn, doctor, chart, HivEnrolmentIn(enrolled_on=ago(300), diagnosed_on=ago(310), who_stage=1,
                                                             tb_screening="no_signs"), programme=programme, today=today)
        for act, data in ((hiv.change_regimen, HivRegimenIn(change="initiation", started_on=ago(300),
                                                             regimen="TDF+3TC+DTG")),
                          (hiv.record_visit, HivVisitIn(visit_on=ago(20), arv_days=90, next_appointment_on=ago(-70))),
                          (hiv.record_viral_load, HivViralLoadIn(sampled_on=ago(20), copies_per_ml=7654))):
            act(conn, doctor, chart, care["root_id"], data, programme=programme, today=today)
    return {"email": _account(db, policy, clinic, chart, "Banda"), "chart": chart, "next": ago(-70),
            "vl_due": hiv.months_after(ago(20), 3)}


def test_a_person_reads_their_art_and_next_days_never_a_viral_load_value(db, app, clinic, person):
    reader = _patient_client(db, app, person["email"])
    page = reader.get("/me")
    assert page.status_code == 200, page.text
    section = page.text.split("<h2>HIV care</h2>")[1].split("</ul>")[0]
    assert "ART-00001" in section and "Tenofovir, lamivudine, dolutegravir" in section and "is" in section
    assert "7654" not in page.text and "7,654" not in page.text  # a viral load is given in person, never here
    reads = [e for e in audit.patient_access_log(db, clinic.slug, person["chart"])
             if e.event_type == "record.hiv_care.read"]
    assert reads and reads[-1].who["kind"] == "patient"
    [facility] = reader.get("/me/record.json").json()["facilities"]
    assert (facility["hiv_care"]["art_number"], facility["hiv_care"]["next_appointment"],
            facility["hiv_care"]["viral_load_due"]) == ("ART-00001", person["next"].isoformat(),
                                                        person["vl_due"].isoformat())
    assert "7654" not in str(facility)


def test_the_release_rules_can_keep_hiv_care_off_the_portal(db, app, policy, clinic, person, tmp_path):
    kept = app.state.release_rules
    app.state.release_rules = dataclasses.replace(kept, hiv_care="not_shown")
    try:
        reader = _patient_client(db, app, person["email"])
        assert "HIV care" not in reader.get("/me").text and "ART-0" not in reader.get("/me").text
        assert reader.get("/me/record.json").json()["facilities"][0]["hiv_care"] is None
    finally:
        app.state.release_rules = kept
    assert kept.hiv_care_shown  # the shipped rules show it
    wrong = tmp_path / "release.toml"
    wrong.write_text('[hiv_care]\nrelease = "in_person"\n\n[default]\nrelease = "after_review"\n')
    with pytest.raises(ReleasePolicyError, match=r"\[hiv_care\]: release is one of at_once, not_shown"):
        load_release_rules(wrong)
    with db.tenant(clinic.slug) as conn:
        chart = new_patient(conn, Principal(account_id=uuid.uuid4(), kind="staff", display_name="Registrar",
                                            tenant=clinic.slug, role="registrar"),
                            family_name="Mvula", given_names="Jane")["id"]
    theirs = _patient_client(db, app, _account(db, policy, clinic, chart, "Mvula")).get("/me")
    assert theirs.status_code == 200 and "HIV care" not in theirs.text and "Banda" not in theirs.text
    assert not [e for e in audit.patient_access_log(db, clinic.slug, chart) if "hiv" in e.event_type]
