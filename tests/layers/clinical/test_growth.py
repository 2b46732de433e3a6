"""A child's growth against the WHO Child Growth Standards (clinical/growth.py): z-scores checked against the
tables rcpchgrowth ships, the WHO bands and the WHO/UNICEF acute malnutrition cut-offs at their boundaries,
MUAC and oedema recorded with vital signs, a corrected birth date correcting the z-scores, and the API:
audited, refused for adults with the reason, refused to another facility's token and to a guessed id."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from decimal import Decimal

import pytest
import sqlalchemy as sa
from rcpchgrowth import who
from rcpchgrowth.global_functions import measurement_for_z

from appliance.layers.clinical import growth, service
from appliance.layers.clinical.schemas import EncounterIn, PatientIn, VitalSignsIn
from appliance.substrate import audit, record
from tests.layers.clinical.conftest import born_years_ago, new_patient
from tests.layers.clinical.test_chart_in_care import _last_seq
from tests.layers.clinical.test_routes import BASE

ONE_YEAR_DAYS = 365


def _who_row(table: dict, measure: str, sex: str, age_days: int) -> dict:
    """The LMS row of the library's own WHO table for a child `age_days` old (its tables are daily)."""
    [row] = [r for r in table["measurement"][measure][sex]
             if round(r["decimal_age"], 6) == round(age_days / growth.DAYS_A_YEAR, 6)]
    return row


def _at_z(row: dict, z: float) -> float:
    return measurement_for_z(z, row["L"], row["M"], row["S"])


def test_z_scores_are_those_of_the_who_tables():
    boy = _who_row(who.WHO_INFANTS_DATA, "weight", "male", ONE_YEAR_DAYS)
    assert growth.z_score("weight", "male", ONE_YEAR_DAYS, boy["M"]) == pytest.approx(0, abs=1e-6)
    assert growth.z_score("weight", "male", ONE_YEAR_DAYS, _at_z(boy, -2)) == pytest.approx(-2, abs=1e-6)
    # Beyond -3 SD WHO's restricted method applies: the -3 SD value itself is still -3.
    assert growth.z_score("weight", "male", ONE_YEAR_DAYS, _at_z(boy, -3)) == pytest.approx(-3, abs=1e-6)
    girl = _who_row(who.WHO_CHILD_DATA, "height", "female", 3 * ONE_YEAR_DAYS)  # standing height, 2-5 years
    assert growth.z_score("height", "female", 3 * ONE_YEAR_DAYS, _at_z(girl, 2)) == pytest.approx(2, abs=1e-6)
    assert growth.centile(0.0) == pytest.approx(50)
    # WHO has no weight-for-age after 10 years, and nothing before birth.
    assert growth.z_score("weight", "male", 11 * ONE_YEAR_DAYS, 30.0) is None
    assert growth.z_score("weight", "male", -1, 3.0) is None


@pytest.mark.parametrize(("muac", "oedema", "baz", "expected"), [
    (114, None, None, "severe"), (115, None, None, "moderate"), (124, None, None, "moderate"),
    (125, None, None, "none"), (125, True, None, "severe"), (None, True, None, "severe"),
    (130, False, -3.01, "severe"), (130, False, -3.0, "moderate"), (130, None, -2.01, "moderate"),
    (130, None, -2.0, "none"), (None, False, None, None),
])
def test_acute_malnutrition_cut_offs(muac, oedema, baz, expected):
    status, criteria = growth.acute_malnutrition(24, muac, baz, oedema)
    assert status == expected, criteria
    if muac == 114:
        assert criteria == ["MUAC 114 mm < 115 mm"]


def test_acute_malnutrition_is_said_for_6_to_59_months_only_and_bands_have_who_words():
    assert growth.acute_malnutrition(5, 100, None, True)[0] is None
    assert growth.acute_malnutrition(6, 100, None, None)[0] == "severe"
    assert growth.acute_malnutrition(59, 100, None, None)[0] == "severe"
    assert growth.acute_malnutrition(60, 100, None, None) == (None, ["acute malnutrition cut-offs apply from 6 to "
                                                                    "59 months"])
    assert [growth.band("height_for_age", z, 24) for z in (-3.01, -3.0, -2.01, -2.0)] == [
        "severely stunted", "stunted", "stunted", "normal"]
    assert [growth.band("weight_for_age", z, 24) for z in (-3.5, -2.4, 1.0)] == [
        "severely underweight", "underweight", "normal"]
    assert [growth.band("bmi_for_age", z, 24) for z in (-3.2, -2.2, 1.5, 2.5, 3.5)] == [
        "severely wasted", "wasted", "possible risk of overweight", "overweight", "obese"]
    assert [growth.band("bmi_for_age", z, 72) for z in (-3.2, -2.2, 1.5, 2.5)] == [
        "severe thinness", "thinness", "overweight", "obesity"]


def _measured(conn, principal, patient_id, at: dt.datetime, **values) -> record.Entry:
    """A set of vital signs measured at `at`, written as the clinical service writes them."""
    detail = VitalSignsIn(**values).model_dump(exclude={"encounter_id"})
    return record.append(conn, principal, "vital_signs", patient_id=patient_id, occurred_at=at, detail=detail)


@pytest.fixture(scope="module")
def child(db, facility, clinician) -> dict:
    """A boy born 400 days ago, seen at the clinic: at one year old he weighed the WHO median; today, at 13
    months, he is underweight and wasted, his MUAC 112 mm, no oedema."""
    born = dt.date.today() - dt.timedelta(days=400)
    at_one = dt.datetime.combine(born + dt.timedelta(days=ONE_YEAR_DAYS), dt.time(12), tzinfo=dt.UTC)
    median = _who_row(who.WHO_INFANTS_DATA, "weight", "male", ONE_YEAR_DAYS)["M"]
    with db.tenant(facility.slug) as conn:
        patient = new_patient(conn, clinician, family_name="Kiprop", given_names="Brian", sex="male", birth_date=born)
        pid = patient["id"]
        service.open_encounter(conn, clinician, pid, EncounterIn(encounter_class="outpatient"))
        first = _measured(conn, clinician, pid, at_one, weight_kg=Decimal(str(round(median, 1))),
                          height_cm=Decimal("75.7"))
        service.record_vitals(conn, clinician, pid, VitalSignsIn(weight_kg=Decimal("7.6"), height_cm=Decimal("74.0"),
                                                                 muac_mm=112, oedema=False, heart_rate_bpm=120))
    return {"id": pid, "born": born, "first": first.id, "base": f"{BASE.format(tenant=facility.slug)}/patients/{pid}"}


def test_a_childs_growth_is_read_from_the_vital_signs_and_audited(db, facility, clinician, child):
    before = _last_seq(db, facility.slug)
    with db.tenant(facility.slug) as conn:
        found = growth.growth(conn, clinician, child["id"])
    at_one, latest = found["points"]
    assert at_one["entry_id"] == child["first"] and at_one["age_days"] == ONE_YEAR_DAYS
    assert at_one["weight_for_age"]["z"] == pytest.approx(0, abs=0.05)  # the median (9.646 kg), recorded as 9.6
    assert at_one["acute_malnutrition"] == "none" and at_one["muac_mm"] is None
    assert latest["muac_mm"] == 112 and latest["oedema"] is False and latest["acute_malnutrition"] == "severe"
    assert latest["weight_for_age"]["band"] == "underweight" and latest["bmi_for_age"]["band"] == "wasted"
    assert found["latest"] == latest and found["wasting_index"] == "BMI-for-age"
    assert found["summary"] == ("WAZ -2.4 (underweight), HAZ -1.3 (normal), BAZ -2.4 (wasted), MUAC 112 mm: "
                                "severe acute malnutrition")
    events = audit.read_events(db, facility.slug, first_seq=before + 1)
    assert [e["type"] for e in events] == ["record.vital_signs.read"]


def test_the_api_answers_with_points_bands_and_status(api, child):
    answer = api.get(f"{child['base']}/growth")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["sex"] == "male" and len(body["points"]) == 2
    assert body["latest"]["acute_malnutrition"] == "severe"
    assert body["latest"]["criteria"] == ["MUAC 112 mm < 115 mm"]
    assert set(body["latest"]["height_for_age"]) == {"value", "z", "centile", "band"}


def test_muac_and_oedema_are_recorded_with_vital_signs_and_checked(api, child):
    recorded = api.post(f"{child['base']}/vitals", json={"muac_mm": 119, "oedema": True})
    assert recorded.status_code == 201, recorded.text
    assert (recorded.json()["muac_mm"], recorded.json()["oedema"]) == (119, True)
    refused = api.post(f"{child['base']}/vitals", json={"muac_mm": 11, "weight_kg": "8.0"})
    assert refused.status_code == 422 and refused.json()["detail"].startswith("invalid muac_mm"), refused.text
    assert api.get(f"{child['base']}/chart").json()["vitals"]["muac_mm"] == 119


@pytest.mark.parametrize(("grade", "criterion"), [
    (None, "bilateral pitting oedema"), (1, "bilateral pitting oedema +"), (2, "bilateral pitting oedema ++"),
    (3, "bilateral pitting oedema +++ (severe oedema: WHO treats the child as an inpatient)"),
])
def test_oedema_of_any_grade_is_severe_and_its_criterion_names_the_grade(grade, criterion):
    assert growth.acute_malnutrition(24, 130, -1.0, True, grade) == ("severe", [criterion])


def _vital_sign_sets(db, slug: str) -> int:
    with db.tenant(slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM vital_signs")).scalar()


def test_the_grade_of_oedema_is_recorded_and_a_grade_without_oedema_present_is_refused(
        api, db, facility, other_facility, token_client, child):
    """The API keeps the grade with the finding and the growth read and chart show it; a grade with oedema
    absent or not examined, a grade of true or 4, and another facility's write are refused, writing nothing."""
    recorded = api.post(f"{child['base']}/vitals", json={"muac_mm": 131, "oedema": True, "oedema_grade": 2})
    assert recorded.status_code == 201, recorded.text
    assert (recorded.json()["oedema"], recorded.json()["oedema_grade"]) == (True, 2)
    assert api.get(f"{child['base']}/chart").json()["vitals"]["oedema_grade"] == 2
    latest = api.get(f"{child['base']}/growth").json()["latest"]
    assert (latest["oedema_grade"], latest["acute_malnutrition"]) == (2, "severe")
    assert latest["criteria"] == ["bilateral pitting oedema ++"]
    before = _vital_sign_sets(db, facility.slug)
    for sent, said in [({"oedema": False, "oedema_grade": 3}, "here oedema is recorded as absent"),
                       ({"muac_mm": 120, "oedema_grade": 1}, "here oedema is recorded as not examined"),
                       ({"oedema": True, "oedema_grade": True}, "not true or false"),
                       ({"oedema": True, "oedema_grade": 4}, "1, 2 or 3")]:
        refused = api.post(f"{child['base']}/vitals", json=sent)
        assert refused.status_code == 422 and "oedema_grade" in refused.json()["detail"], refused.text
        assert said in refused.json()["detail"], refused.text
        assert "Value error" not in refused.json()["detail"]  # the validator's words, not pydantic's prefix
    intruder = token_client(other_facility.slug, role="clinician")
    planted = intruder.post(f"{child['base']}/vitals", json={"oedema": True, "oedema_grade": 3})
    assert planted.status_code == 403, planted.text
    guessed = api.post(f"{BASE.format(tenant=facility.slug)}/patients/{uuid.uuid4()}/vitals",
                       json={"oedema": True, "oedema_grade": 3})
    assert guessed.status_code == 404, guessed.text
    assert _vital_sign_sets(db, facility.slug) == before


def test_an_adult_and_a_child_of_unrecorded_sex_are_refused_with_the_reason(api, db, facility, clinician):
    with db.tenant(facility.slug) as conn:
        adult = new_patient(conn, clinician, birth_date=born_years_ago(19, days=1))
        unknown = new_patient(conn, clinician, sex="unknown", birth_date=born_years_ago(2))
        for patient in (adult, unknown):
            service.open_encounter(conn, clinician, patient["id"], EncounterIn(encounter_class="outpatient"))
    base = f"{BASE.format(tenant=facility.slug)}/patients"
    refused = api.get(f"{base}/{adult['id']}/growth")
    assert refused.status_code == 422 and refused.json()["field"] == "birth_date"
    assert "cover children to 19 years; this patient is 19 years old" in refused.json()["detail"]
    refused = api.get(f"{base}/{unknown['id']}/growth")
    assert refused.status_code == 422 and "recorded as unknown" in refused.json()["detail"]


def test_another_facilitys_token_and_a_guessed_id_are_refused(api, token_client, other_facility, facility, child):
    intruder = token_client(other_facility.slug, role="clinician")
    answer = intruder.get(f"{child['base']}/growth")
    assert answer.status_code == 403 and "Kiprop" not in answer.text and "muac" not in answer.text
    guessed = api.get(f"{BASE.format(tenant=facility.slug)}/patients/{uuid.uuid4()}/growth")
    assert guessed.status_code == 404, guessed.text
    own = token_client(other_facility.slug, role="clinician")  # the id means nothing at the other facility
    assert own.get(f"{BASE.format(tenant=other_facility.slug)}/patients/{child['id']}/growth").status_code == 404


def test_a_childs_age_at_a_measurement_is_counted_on_the_facilitys_calendar(db, facility, clinician):
    """A girl born on 15 January is six months old on 15 July: measured at 01:00 that day in Nairobi (UTC+3),
    22:00 on the 14th in UTC, when she was five months old and the acute malnutrition cut-offs did not apply."""
    nairobi = zoneinfo.ZoneInfo(facility.timezone)
    assert nairobi.utcoffset(dt.datetime(2025, 7, 15)) == dt.timedelta(hours=3)
    measured = dt.datetime(2025, 7, 15, 1, 0, tzinfo=nairobi)
    with db.tenant(facility.slug) as conn:
        girl = new_patient(conn, clinician, family_name="Wanjiru", sex="female", birth_date=dt.date(2025, 1, 15))
        _measured(conn, clinician, girl["id"], measured, muac_mm=110)
        [point] = growth.growth(conn, clinician, girl["id"], tz=nairobi)["points"]
        [in_utc] = growth.growth(conn, clinician, girl["id"])["points"]  # a caller that knows no zone
    assert (point["age_months"], point["age_days"]) == (6, 181)
    assert point["acute_malnutrition"] == "severe" and point["criteria"] == ["MUAC 110 mm < 115 mm"]
    assert (in_utc["age_months"], in_utc["acute_malnutrition"]) == (5, None)


def test_a_corrected_birth_date_corrects_the_z_scores(db, facility, clinician, child):
    # Last in the module: the child is two months older from here on.
    with db.tenant(facility.slug) as conn:
        before = growth.growth(conn, clinician, child["id"])["points"][0]["weight_for_age"]["z"]
        registered = service.get_patient(conn, clinician, child["id"])
        fields = {k: registered[k] for k in ("family_name", "given_names", "sex", "identifiers")}
        earlier = PatientIn.model_validate({**fields, "birth_date": child["born"] - dt.timedelta(days=60)})
        service.update_patient(conn, clinician, child["id"], earlier,
                               reason="Birth certificate seen: born two months earlier", db=db)
        after = growth.growth(conn, clinician, child["id"])["points"][0]
    assert after["age_days"] == ONE_YEAR_DAYS + 60
    # The same weight two months older: lighter for age, by what the WHO table says for that age.
    assert after["weight_for_age"]["z"] == pytest.approx(
        growth.z_score("weight", "male", ONE_YEAR_DAYS + 60, after["weight_for_age"]["value"]), abs=0.005)
    assert after["weight_for_age"]["z"] < before - 0.3


def test_a_baby_born_preterm_here_is_read_at_its_corrected_age(api, db, facility, clinician):
    """A baby of 30 weeks weighing 1450 g, well grown for its gestation, read 'severely underweight' (WAZ -4.8) against
    babies born at 40 weeks: until two years old it is read at its age less the 10 weeks it was born short of term,
    and before term the WHO standards have no reading for it."""
    mother = api.post(f"{BASE.format(tenant=facility.slug)}/patients", json={
        "family_name": "Kamau", "given_names": "Nyambura", "birth_date": "1993-06-21", "sex": "female",
        "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]})
    assert mother.status_code == 201, mother.text
    born_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=84)
    born = api.post(f"{BASE.format(tenant=facility.slug)}/patients/{mother.json()['id']}/deliveries", json={
        "born_at": born_at.isoformat(), "gestation_weeks": 30, "gestation_days": 0, "mode": "spontaneous_vaginal",
        "babies": [{"outcome": "live_birth", "sex": "male", "weight_g": 1450, "apgar_1": 6, "apgar_5": 8,
                    "resuscitation": "stimulation"}], "blood_loss_ml": 300, "uterotonic": "oxytocin"})
    assert born.status_code == 201, born.text
    baby = uuid.UUID(born.json()["babies"][0]["patient_id"])
    with db.tenant(facility.slug) as conn:
        service.record_vitals(conn, clinician, baby, VitalSignsIn(weight_kg=Decimal("2.9")))
    answer = api.get(f"{BASE.format(tenant=facility.slug)}/patients/{baby}/growth")
    assert answer.status_code == 200, answer.text
    at_birth, today = answer.json()["points"]
    assert at_birth["corrected_age_days"] == -70 and at_birth["weight_for_age"]["z"] is None
    assert today["age_days"] == 84 and today["corrected_age_days"] == 14
    assert today["weight_for_age"]["z"] == pytest.approx(growth.z_score("weight", "male", 14, 2.9), abs=0.01)
    preterm = answer.json()["preterm"]
    birthday = dt.date.fromisoformat(answer.json()["birth_date"])
    assert (preterm["gestation_weeks"], preterm["gestation_days"]) == (30, 0)
    assert dt.date.fromisoformat(preterm["term_on"]) == birthday + dt.timedelta(days=70)
    # Its gestation is read from its mother's delivery: that read is on her access log.
    before = _last_seq(db, facility.slug)
    with db.tenant(facility.slug) as conn:
        found = growth.growth(conn, clinician, baby)
    assert growth.summary_line(found["points"][0]) == ("Born preterm: the WHO standards read a baby from term, at "
                                                       "its corrected age")
    events = audit.read_events(db, facility.slug, first_seq=before + 1, event_type="record.delivery.read")
    assert any(f"Patient/{mother.json()['id']}" in str(e["event"]) for e in events), events
