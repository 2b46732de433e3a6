"""Notifiable-disease surveillance (policies/surveillance.toml, appliance/national/surveillance.py): the alert
thresholds worked by hand, the policy refused with the disease and field named, cases read inside a facility
and leaving it de-identified, and the weekly report as a DHIS2 dataValueSet."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import uuid
import zoneinfo
from pathlib import Path

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import ConditionIn
from appliance.national import indicators
from appliance.national import surveillance as idsr
from appliance.substrate import audit
from appliance.substrate.principal import Principal
from appliance.substrate.record import NewEntry, append_many
from tests.layers.clinical.conftest import born_years_ago, new_patient

POLICIES = Path(__file__).resolve().parents[2] / "policies"
ZONE = "Africa/Nairobi"


@pytest.fixture(scope="module")
def diseases():
    return idsr.load_diseases(POLICIES / "surveillance.toml")


@pytest.fixture(scope="module")
def definitions():
    return indicators.load_definitions(POLICIES / "indicators.toml")


def _case(facility: str, disease: str, day: dt.date) -> idsr.Case:
    return idsr.Case(facility, disease, idsr.Week.containing(day), day, "X00", "F", "15-49Y")


def test_alert_thresholds_worked_by_hand(diseases):
    """Week 10 of 2026 runs Monday 2 to Sunday 8 March. Meningitis alerts at 2 cases in a facility's week:
    Alpha's 1 in week 9 is none; its 3 in week 10 (Monday, Wednesday, Friday) alert since Wednesday, the 2nd;
    Beta's 1 in week 10 is none (weeks are a facility's own, never summed across facilities). Cholera alerts at
    1 case, since its day. Malaria is weekly with no threshold: 40 cases are reported, never alerted on.
    Newest first: cholera (Thursday) before meningitis (Wednesday)."""
    facilities = {slug: idsr.Facility(slug, slug.title(), "D", "R", slug) for slug in ("alpha", "beta")}
    monday = dt.date(2026, 3, 2)
    assert idsr.Week.containing(monday) == idsr.Week(2026, 10) and monday.isoweekday() == 1
    cases = [_case("alpha", "meningitis", monday - dt.timedelta(days=3)),
             *(_case("alpha", "meningitis", monday + dt.timedelta(days=n)) for n in (4, 0, 2)),
             _case("beta", "meningitis", monday + dt.timedelta(days=1)),
             _case("beta", "cholera", monday + dt.timedelta(days=3)),
             *(_case("alpha", "malaria", monday) for _ in range(40))]
    alerts = idsr.alerts_of(cases, diseases, facilities)
    assert [(a.facility.slug, a.disease.id, a.week.value, len(a.cases), a.since) for a in alerts] == [
        ("beta", "cholera", "2026-W10", 1, dt.date(2026, 3, 5)),
        ("alpha", "meningitis", "2026-W10", 3, dt.date(2026, 3, 4))]
    assert all(a.open for a in alerts)
    # Acknowledged at 3 cases it is closed; a 4th case that week opens it again.
    alerts[1].acknowledged = {"cases": 3}
    assert not alerts[1].open
    alerts[1].cases.append(_case("alpha", "meningitis", monday + dt.timedelta(days=5)))
    assert alerts[1].open
    assert idsr.weekly_counts(cases)[("malaria", idsr.Week(2026, 10))] == 40


def test_the_categories_of_the_ranges_worked_by_hand(diseases):
    """The statement drops other diagnoses by their category before joining them: every letter-and-two-digits in a
    range, across a letter too (Y98-Z01 is Y98, Y99, Z00, Z01); the policy's twenty, from A00 to G00."""
    across = idsr.Disease("x", "X", "X", "immediate", (("Y98", "Z01"), ("B50", "B52")))
    assert idsr.categories_of([across]) == ["B50", "B51", "B52", "Y98", "Y99", "Z00", "Z01"]
    found = idsr.categories_of(diseases)
    assert len(found) == 20 and found[0] == "A00" and found[-1] == "G00" and "B54" in found and "B55" not in found


def test_weeks_are_iso_weeks_across_the_new_year():
    """31 December 2026 is a Thursday: the week is 2026's 53rd; 1 January 2027 is in it too."""
    assert idsr.Week.containing(dt.date(2027, 1, 1)) == idsr.Week(2026, 53)
    assert [w.value for w in idsr.weeks_ending(idsr.Week(2027, 1), 3)] == ["2026-W52", "2026-W53", "2027-W01"]
    assert idsr.Week(2027, 1).dhis2 == "2027W1"
    start, end = idsr.Week(2026, 53).bounds(ZONE)
    assert start.isoformat() == "2026-12-28T00:00:00+03:00" and end - start == dt.timedelta(days=7)
    with pytest.raises(idsr.SurveillanceError, match="2025 has no week 53"):
        idsr.Week.parse("2025-W53")
    with pytest.raises(idsr.SurveillanceError, match="write it as YYYY-Www"):
        idsr.Week.parse("last week")


@pytest.mark.parametrize(("old", "new", "refusal"), [
    ('reporting = "immediate"\nicd10 = ["A00"]', 'reporting = "sometimes"\nicd10 = ["A00"]',
     "disease 'cholera': reporting must be \"immediate\" or \"weekly\", not 'sometimes'"),
    ('icd10 = ["A00"]', 'icd10 = ["A00"]\nalert_cases = 3',
     "disease 'cholera': alert_cases is for weekly diseases"),
    ('icd10 = ["B05"]', 'icd10 = ["B5"]', "disease 'measles': icd10 'B5' is not an ICD-10 category range"),
    ("alert_cases = 2", "alert_cases = 0", "disease 'meningitis': alert_cases must be a whole number of cases"),
    ('id = "rabies"', 'id = "plague"', "disease 'plague': id 'plague' is already another disease's"),
    ('dhis2 = "IDSR_RABIES"', 'dhis2 = "IDSR_RABIES"\nthreshold = 4', "disease 'rabies': threshold is not a field"),
])
def test_a_broken_policy_is_refused_naming_the_disease_and_field(db, settings, tmp_path, old, new, refusal):
    """The ministry edits the file; a broken edit stops the appliance's start with the sentence."""
    from appliance.web.app import create_app

    policies = tmp_path / "policies"
    shutil.copytree(settings.policies_dir, policies)
    text = (policies / "surveillance.toml").read_text(encoding="utf-8")
    assert old in text
    (policies / "surveillance.toml").write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(idsr.SurveillanceError, match=refusal.replace("(", r"\(")):
        create_app(db, dataclasses.replace(settings, policies_dir=policies))


@pytest.fixture(scope="module")
def outbreak(db, tenant_factory):
    """A Nairobi facility: this week a woman with cholera (confirmed) and a boy of 3 with meningitis diagnosed
    twice (one case), a girl with a differential of measles (no case); two weeks ago a man with meningitis."""
    facility = tenant_factory(name="Lakeside Health Centre", timezone=ZONE, dhis2_org_unit="KE-LAKE-HC")
    clinician = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Lake", tenant=facility.slug,
                          role="clinician")
    zone = zoneinfo.ZoneInfo(ZONE)
    this_week = idsr.Week.containing(dt.datetime.now(zone).date())
    earlier = this_week.previous(2).bounds(ZONE)[0] + dt.timedelta(hours=9)
    with db.tenant(facility.slug) as conn:
        woman = new_patient(conn, clinician, family_name="Adhiambo", given_names="Rose", sex="female",
                            birth_date=born_years_ago(30))
        boy = new_patient(conn, clinician, family_name="Kibet", given_names="Tom", sex="male",
                          birth_date=born_years_ago(3))
        girl = new_patient(conn, clinician, family_name="Wanjiru", sex="female", birth_date=born_years_ago(6))
        man = new_patient(conn, clinician, family_name="Onyango", given_names="Paul", sex="male",
                          birth_date=born_years_ago(52))
        service.add_condition(conn, clinician, woman["id"], ConditionIn(code="A00.1"))
        service.add_condition(conn, clinician, boy["id"], ConditionIn(code="A39.0", verification="provisional"))
        service.add_condition(conn, clinician, boy["id"], ConditionIn(code="G00.9"))
        service.add_condition(conn, clinician, girl["id"], ConditionIn(code="B05.9", verification="differential"))
        append_many(conn, clinician, [NewEntry("condition", man["id"], occurred_at=earlier, detail={
            "code": "A39.0", "display": "Meningococcal meningitis", "clinical_status": "active",
            "verification": "confirmed", "onset_date": earlier.date(), "resolved_date": None, "note": None})])
    return facility, this_week, [woman, boy, girl, man]


def test_cases_leave_the_facility_de_identified_and_the_read_is_audited(db, outbreak, diseases, definitions):
    facility, this_week, people = outbreak
    weeks = idsr.weeks_ending(this_week, 3)
    cases = idsr.cases_at(db, facility.slug, ZONE, weeks, diseases, definitions)
    assert {dataclasses.fields(idsr.Case)[n].name for n in range(len(dataclasses.fields(idsr.Case)))} == {
        "facility", "disease", "week", "diagnosed_on", "code", "sex", "age_band"}
    assert sorted((c.disease, c.week, c.code, c.sex, c.age_band) for c in cases) == sorted([
        ("cholera", this_week, "A00.1", "F", "15-49Y"),
        ("meningitis", this_week, "A39.0", "M", "1-4Y"),  # his first diagnosis of the week; the second is him again
        ("meningitis", weeks[0], "A39.0", "M", "50PLUSY")])
    today = dt.datetime.now(zoneinfo.ZoneInfo(ZONE)).date()
    assert {c.diagnosed_on for c in cases if c.week == this_week} == {today}
    # Nothing that names or finds a person: no name, MRN or id of any of them in what leaves.
    leaving = repr([idsr.case_json(c) for c in cases])
    for person in people:
        for value in (person["id"], person["mrn"], person["family_name"], person["given_names"]):
            assert str(value) not in leaving
    read = [e for e in audit.read_events(db, facility.slug) if e["type"] == "national.surveillance.read"]
    assert read and read[-1]["patient_ref"] is None and read[-1]["event"]["detail"]["cases"] == 3

    found = idsr.Report(weeks, diseases, {facility.slug: idsr.Facility(facility.slug, facility.name, "", "",
                                                                       "KE-LAKE-HC")}, cases, [])
    alerts = idsr.alerts_of(cases, diseases, found.facilities)
    # This week: cholera (1 case, immediate) alerts; meningitis has 1 case (the boy once), under its 2.
    assert [(a.disease.id, len(a.cases)) for a in alerts] == [("cholera", 1)]


def test_the_weekly_report_is_a_dhis2_data_value_set(db, outbreak, diseases, definitions):
    facility, this_week, _ = outbreak
    weeks = idsr.weeks_ending(this_week, 3)
    cases = idsr.cases_at(db, facility.slug, ZONE, weeks, diseases, definitions)
    found = idsr.Report(weeks, diseases, {facility.slug: idsr.Facility(facility.slug, facility.name, "", "",
                                                                       "KE-LAKE-HC")}, cases, [])
    document = idsr.to_dhis2(found, this_week, definitions)
    assert document["period"] == this_week.dhis2 and "W" in document["period"]
    values = {(v["dataElement"], v["categoryOptionCombo"]): v["value"] for v in document["dataValues"]}
    assert all(v["orgUnit"] == "KE-LAKE-HC" and v["period"] == this_week.dhis2 for v in document["dataValues"])
    assert values[("IDSR_CHOLERA", "F_15-49Y")] == "1" and values[("IDSR_MENINGITIS", "M_1-4Y")] == "1"
    assert values[("IDSR_MENINGITIS", "M_50PLUSY")] == "0"  # his case was two weeks ago: not this week's
    assert values[("IDSR_MEASLES", "F_5-14Y")] == "0"  # a differential diagnosis is no case; zero is reported
    assert len(values) == len(diseases) * len(definitions.cells)


def test_a_week_before_the_month_a_facility_records_from_is_not_sent_to_dhis2(db, outbreak, diseases, definitions):
    """IDSR's zeros are for a week a facility recorded and saw no case; one in which it was not recording here yet
    (its cases then were reported by the system it used) goes as nothing, or the zeros would overwrite them."""
    facility, this_week, _ = outbreak
    weeks = idsr.weeks_ending(this_week, 3)
    cases = idsr.cases_at(db, facility.slug, ZONE, weeks, diseases, definitions)
    ends_in = indicators.Period.containing(this_week.monday + dt.timedelta(days=6))

    def sent(recording_since: indicators.Period) -> list[dict]:
        found = idsr.Report(weeks, diseases, {facility.slug: idsr.Facility(
            facility.slug, facility.name, "", "", "KE-LAKE-HC", recording_since)}, cases, [])
        return idsr.to_dhis2(found, this_week, definitions)["dataValues"]

    assert len(sent(ends_in)) == len(diseases) * len(definitions.cells)  # recorded: its cases and its zeros go
    assert sent(indicators.Period(ends_in.year + 1, 1)) == []
    # A week it recorded any day of goes, with the cases it has: 29 June to 5 July 2026 for a facility recording
    # from July; 25 to 31 May not for one recording from June.
    def records(since: tuple[int, int], week: str) -> bool:
        return idsr.Facility("x", "X", "", "", "X", indicators.Period(*since)).records_in(idsr.Week.parse(week))

    assert records((2026, 6), "2026-W23") and not records((2026, 6), "2026-W22")
    assert records((2026, 7), "2026-W27") and not records((2026, 8), "2026-W27")  # 29 June to 5 July: July's


def test_the_demo_health_centre_shows_a_meningitis_alert(db, tenant_factory, diseases, definitions):
    """The demo's cluster (appliance/layers/clinical/outbreak_demo.py) over a small demo population: three children
    with meningococcal meningitis in one week, over meningitis's 2 a week, so the Alerts page has one; written once."""
    from appliance.layers.clinical.demo import generate_demo_population
    from appliance.layers.clinical.outbreak_demo import generate_outbreak_demo
    from tests.layers.clinical.conftest import CLINICAL_CONFIG

    facility = tenant_factory(**{**CLINICAL_CONFIG, "timezone": ZONE})
    now = dt.datetime.now(dt.UTC)
    generate_demo_population(db, facility.slug, seed=5, patients=40, as_of=now)
    assert generate_outbreak_demo(db, facility.slug, seed=5, as_of=now) == 3
    assert generate_outbreak_demo(db, facility.slug, seed=5, as_of=now) == 0  # `healthos up --demo` runs it each start
    week = idsr.Week.containing(dt.datetime.now(zoneinfo.ZoneInfo(ZONE)).date())
    found = idsr.report(db, diseases, definitions, idsr.weeks_ending(week, 3))
    [alert] = [a for a in found.alerts if a.facility.slug == facility.slug]
    assert (alert.disease.id, len(alert.cases), alert.open) == ("meningitis", 3, True)
    assert {c.code for c in alert.cases} == {"A39.0"} and all(c.age_band in ("1-4Y", "5-14Y") for c in alert.cases)
