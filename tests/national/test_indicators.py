"""National indicators: what a facility's records count to, by sex and age band, in its own month; the
disclosure rule that withholds small counts and the cell that would reveal one; the exports."""

from __future__ import annotations

import datetime as dt
import json
import uuid
import zoneinfo
from pathlib import Path

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import ConditionIn, EncounterIn
from appliance.national import indicators as national
from appliance.substrate import audit
from appliance.substrate.principal import Principal
from appliance.substrate.record import NewEntry, append_many
from tests.layers.clinical.conftest import born_years_ago, new_patient

DEFINITIONS_FILE = Path(__file__).resolve().parents[2] / "policies" / "indicators.toml"


@pytest.fixture(scope="module")
def definitions() -> national.Definitions:
    return national.load_definitions(DEFINITIONS_FILE)


def test_a_facility_counts_its_month_by_sex_and_age_band(db, tenant_factory, definitions):
    facility = tenant_factory(name="Counting Facility")
    clinician = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Count", tenant=facility.slug,
                          role="clinician")
    with db.tenant(facility.slug) as conn:
        women = [new_patient(conn, clinician, birth_date=born_years_ago(30), sex="female") for _ in range(6)]
        boy = new_patient(conn, clinician, birth_date=born_years_ago(3), sex="male")
        baby = new_patient(conn, clinician, birth_date=dt.date.today() - dt.timedelta(days=100), sex="other")
        elder = new_patient(conn, clinician, birth_date=born_years_ago(70), sex="male")
        opened = [service.open_encounter(conn, clinician, w["id"], EncounterIn(encounter_class="outpatient"))
                  for w in women]
        service.open_encounter(conn, clinician, boy["id"], EncounterIn(encounter_class="outpatient"))
        # Booked but never arrived: not an attendance.
        service.open_encounter(conn, clinician, elder["id"], EncounterIn(encounter_class="outpatient",
                                                                         status="planned"))
        diagnose = lambda patient, code, **kw: service.add_condition(  # noqa: E731
            conn, clinician, patient["id"], ConditionIn(code=code, **kw))
        diagnose(boy, "B54")
        diagnose(boy, "B50.9")  # the same child twice in the month: one case
        diagnose(baby, "B51.9", verification="provisional")
        diagnose(elder, "B54", verification="differential")  # considered, not diagnosed
        mistaken = diagnose(elder, "B50.0")
        service.retract_entry(conn, clinician, elder["id"], mistaken["id"], "wrong patient")
        diagnose(elder, "I10")
        diagnose(women[0], "J18.9")
    zone = zoneinfo.ZoneInfo(facility.timezone)
    period = national.Period.containing(opened[0]["started_at"].astimezone(zone).date())

    counts = national.count_facility(db, facility.slug, facility.timezone, period, definitions)

    assert counts["opd_attendance"] == {("F", "15-49Y"): 6, ("M", "1-4Y"): 1}
    assert counts["malaria_cases"] == {("M", "1-4Y"): 1, ("U", "LT1Y"): 1}
    assert counts["hypertension_cases"] == {("M", "50PLUSY"): 1}
    assert counts["pneumonia_cases"] == {("F", "15-49Y"): 1}
    assert counts["emergency_attendance"] == {} and counts["deliveries"] == {}
    assert national.count_facility(db, facility.slug, facility.timezone, period.previous(), definitions)[
        "opd_attendance"] == {}
    counted = [e for e in audit.read_events(db, facility.slug) if e["type"] == "national.count"]
    assert counted and counted[-1]["event"]["detail"]["period"] == period.previous().value
    assert counted[-1]["patient_ref"] is None  # a count names no one


def test_a_diagnosis_corrected_later_counts_in_the_month_it_was_made(db, tenant_factory, definitions):
    """Malaria recorded as provisional last month and confirmed today: one case last month, none this month
    (the correction is a new version of the record, written now, not a new case)."""
    facility = tenant_factory(name="Correcting Facility")
    clinician = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Late", tenant=facility.slug,
                          role="clinician")
    zone = zoneinfo.ZoneInfo(facility.timezone)
    this_month = national.Period.containing(dt.datetime.now(zone).date())
    last_month = this_month.previous()
    start, _ = last_month.bounds(facility.timezone)
    made = start + dt.timedelta(days=14, hours=9)
    with db.tenant(facility.slug) as conn:
        child = new_patient(conn, clinician, birth_date=born_years_ago(3), sex="female")
        [case] = append_many(conn, clinician, [NewEntry("condition", child["id"], occurred_at=made, detail={
            "code": "B54", "display": "Unspecified malaria", "clinical_status": "active",
            "verification": "provisional", "onset_date": made.date(), "resolved_date": None, "note": None})])
        service.amend_condition(conn, clinician, child["id"], case.id, ConditionIn(
            code="B54", verification="confirmed", onset_date=made.date()), "smear positive")

    assert national.count_facility(db, facility.slug, facility.timezone, last_month, definitions)[
        "malaria_cases"] == {("F", "1-4Y"): 1}
    assert national.count_facility(db, facility.slug, facility.timezone, this_month, definitions)[
        "malaria_cases"] == {}


def test_small_counts_and_the_cell_that_would_reveal_one_are_withheld():
    cells = [("F", "a"), ("F", "b"), ("M", "a"), ("M", "b")]
    published = national.withhold({("F", "a"): 2, ("F", "b"): 10, ("M", "a"): 7}, cells, threshold=5)
    # 2 is small; alone it would be 19 - 10 - 7, so the next smallest (7) goes too; zero stays.
    assert published.total == 19
    assert published.cells == {("F", "a"): None, ("F", "b"): 10, ("M", "a"): None, ("M", "b"): 0}
    # Two small cells that add up to less than the threshold could still be worked out (1 + 1 = 2).
    published = national.withhold({("F", "a"): 1, ("F", "b"): 1, ("M", "a"): 30}, cells, threshold=5)
    assert published.cells == {("F", "a"): None, ("F", "b"): None, ("M", "a"): None, ("M", "b"): 0}
    assert published.total == 32
    # A small facility total is itself withheld.
    published = national.withhold({("M", "b"): 3}, cells, threshold=5)
    assert published.total is None and published.cells[("M", "b")] is None and published.withheld == 1
    # Nothing small: everything is published, zeros included.
    published = national.withhold({("F", "a"): 5, ("M", "b"): 8}, cells, threshold=5)
    assert published.total == 13 and published.withheld == 0


def test_every_withheld_cell_stays_unknowable_from_what_is_published(definitions):
    import random

    rng = random.Random(7)
    cells = definitions.cells
    for _ in range(500):
        counts = {cell: rng.choice([0, 0, 1, 2, 3, 4, 5, 8, 20]) for cell in cells}
        published = national.withhold(counts, cells, definitions.threshold)
        hidden = [cell for cell, value in published.cells.items() if value is None]
        assert all(published.cells[c] == counts[c] for c in cells if c not in hidden)
        assert all(counts[c] >= definitions.threshold or c in hidden for c in cells if counts[c] > 0)
        if hidden:  # never exactly one withheld cell, and never a withheld sum that is itself small
            assert len(hidden) >= 2 or published.total is None
            assert sum(counts[c] for c in hidden) >= definitions.threshold or published.total is None


def test_a_published_figure_read_under_a_raised_threshold_hides_what_it_must_and_keeps_the_rest(definitions):
    """`withhold_published`, on figures published at 5 and read at 8: no count under 8 shows, never one
    withheld cell beside a total, withheld ones never add up to under 8, and what shows is what was sent."""
    import random

    rng = random.Random(11)
    cells = definitions.cells
    for _ in range(300):
        counts = {cell: rng.choice([0, 0, 0, 1, 3, 5, 6, 7, 9, 20]) for cell in cells}
        sent = national.withhold(counts, cells, 5)
        read = national.withhold_published(sent, 8)
        hidden = [cell for cell, value in read.cells.items() if value is None]
        assert all(read.cells[c] == counts[c] for c in cells if c not in hidden)
        assert all(counts[c] >= 8 for c in cells if c not in hidden and counts[c] > 0)
        assert all(read.cells[c] is None for c in cells if sent.cells[c] is None)  # withheld stays withheld
        if read.total is not None and hidden:
            assert len(hidden) >= 2 and sum(counts[c] for c in hidden) >= 8
        assert read.total in (None, sum(counts.values()))
        newly = sum(sent.cells[c] is not None for c in hidden) + (read.total is None and sent.total is not None)
        assert read.withheld_by_raised_threshold == newly
        assert national.withhold_published(sent, 5) == sent  # at the threshold it was published with: as sent


def test_exports_carry_only_what_was_published(definitions):
    facility = national.Facility("north_hc", "North HC", "health_centre", "North", "Coast")
    for indicator in definitions.indicators:
        facility.figures[indicator.id] = national.withhold({}, definitions.cells, definitions.threshold)
    facility.figures["malaria_cases"] = national.withhold({("F", "15-49Y"): 9, ("M", "1-4Y"): 2},
                                                          definitions.cells, definitions.threshold)
    period = national.Period(2026, 10)
    data = national.to_dhis2([facility], period, definitions)
    malaria = [v for v in data["dataValues"] if v["dataElement"] == "HOS_MALARIA_CASES"]
    assert data["period"] == "202610" and all(v["orgUnit"] == "north_hc" for v in malaria)
    assert {v["categoryOptionCombo"] for v in malaria} == {c for c in (f"{s}_{b}" for s, b in definitions.cells)
                                                           if c not in {"F_15-49Y", "M_1-4Y"}}
    assert all(v["value"] == "0" for v in malaria)  # the two real counts went with the withheld pair
    json.dumps(data)
    rows = [line.split(",") for line in national.to_csv([facility], period, definitions).splitlines()]
    assert rows[0] == national.CSV_COLUMNS
    malaria_rows = {(r[7], r[8]): (r[9], r[10]) for r in rows[1:] if r[1] == "malaria_cases"}
    assert malaria_rows[("all", "all")] == ("11", "no")
    assert malaria_rows[("F", "15-49Y")] == ("", "yes") and malaria_rows[("M", "1-4Y")] == ("", "yes")


@pytest.mark.parametrize(("change", "named"), [
    (('source = "encounters"\nencounter_class = "outpatient"', 'source = "visits"'), "source 'visits'"),
    (('icd10 = ["B50-B54"]', 'icd10 = ["B54-B50"]'), "'B54-B50' is not an ICD-10 category range"),
    (("to_years = 5\n", "to_years = 6\n"), "without gaps"),
    (("threshold = 5", "threshold = 1"), "at least 2"),
    (('finding = "severe"', 'finding = "wasted"'), "finding must be one of screened, severe, moderate"),
    (('name = "Outpatient', 'nam = "Outpatient'), "indicators.toml: indicator 'opd_attendance': name is missing"),
    (("to_years = 5\n", 'to_years = "5"\n'), "age band '1-4Y': from_years and to_years are whole numbers"),
    (("threshold = 5", 'threshold = "5"'), "threshold must be a whole number, the smallest count shown"),
])
def test_an_unusable_definitions_file_is_refused_naming_the_problem(tmp_path, change, named):
    text = DEFINITIONS_FILE.read_text()
    assert change[0] in text
    path = tmp_path / "indicators.toml"
    path.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(national.IndicatorError, match=named.replace("(", r"\(")):
        national.load_definitions(path)


def test_a_month_is_written_yyyy_mm():
    assert national.Period.parse("2026-01").previous() == national.Period(2025, 12)
    assert national.Period.parse("2026-02").bounds("Africa/Nairobi")[1].isoformat() == "2026-03-01T00:00:00+03:00"
    for wrong in ("2026-13", "26-01", "January", ""):
        with pytest.raises(national.IndicatorError, match="YYYY-MM"):
            national.Period.parse(wrong)


def test_the_ministry_opens_a_month_once_any_facility_has_begun_it(db, tenant_factory):
    """Facilities count months on their own clocks: from 21:00 UTC on a month's last day a Nairobi
    facility is in the next month, and the ministry's default and refusals follow the facility furthest
    ahead rather than UTC."""
    kiritimati = zoneinfo.ZoneInfo("Pacific/Kiritimati")  # UTC+14, as far ahead as any clock
    tenant_factory(timezone="Pacific/Kiritimati")
    before = dt.datetime.now(kiritimati).date()
    today = national.today(db)
    assert today in {before, dt.datetime.now(kiritimati).date()}
    assert national.month_asked(None, today) == national.Period.containing(today).previous()
    furthest = national.begun_anywhere(dt.datetime.now(dt.UTC))
    assert furthest == national.Period.containing(dt.datetime.now(kiritimati).date()) or before.day == 1
    assert national.month_asked(f"{furthest.year:04d}-{furthest.month:02d}", dt.date(2000, 1, 1)) == furthest
    after = dt.date(furthest.year, furthest.month, 28) + dt.timedelta(days=7)
    with pytest.raises(national.IndicatorError, match="has not begun"):
        national.month_asked(f"{after.year:04d}-{after.month:02d}", today)


def test_a_facility_records_from_the_month_it_was_created_on_its_own_calendar_else_its_files_date():
    from appliance.substrate.tenancy import recording_since

    late_evening = dt.datetime(2026, 5, 31, 22, tzinfo=dt.UTC)  # already 1 June in Nairobi
    assert recording_since(late_evening, None, "Africa/Nairobi") == dt.date(2026, 6, 1)
    assert recording_since(late_evening, None, "UTC") == dt.date(2026, 5, 1)
    assert recording_since(late_evening, "2026-03-15", "Africa/Nairobi") == dt.date(2026, 3, 1)  # migrated in
    assert recording_since(late_evening, "2026-09-01", "Africa/Nairobi") == dt.date(2026, 9, 1)  # live later
    assert not national.records_in(national.Period(2026, 5), national.Period(2026, 4))
    assert national.records_in(national.Period(2026, 5), national.Period(2026, 5))
    assert national.records_in(None, national.Period(1999, 1))  # not known: as every package before it said


def test_a_facility_recording_from_june_has_no_may_neither_in_sums_nor_in_the_exports(db, tenant_factory, definitions):
    """Before, its May went to DHIS2 as a zero for every sex and age band and would overwrite the figures the
    system it recorded in then had sent; May now has no value of it at all, and no sum counts it."""
    mid_year = tenant_factory(name="Mid-year Clinic", recording_since="2026-06-10", dhis2_org_unit="KE-MID-YEAR")
    may, june = national.Period(2026, 5), national.Period(2026, 6)
    counted_before = len([e for e in audit.read_events(db, mid_year.slug) if e["type"] == "national.count"])

    in_may = national.gather(db, may, definitions)
    [listed] = [f for f in in_may if f.slug == mid_year.slug]
    assert not listed.recording and listed.recording_since == june and listed.figures == {}
    assert len([e for e in audit.read_events(db, mid_year.slug) if e["type"] == "national.count"]) == counted_before
    may_values = national.to_dhis2(in_may, may, definitions)["dataValues"]
    assert may_values and not [v for v in may_values if v["orgUnit"] == "KE-MID-YEAR"]
    assert mid_year.slug not in national.to_csv(in_may, may, definitions)
    opd = national.total(in_may, "opd_attendance")
    assert opd.not_recording == 1 and opd.recording == len(in_may) - 1 and opd.not_reported == 0
    alone = [national.total([listed], "opd_attendance"),
             *national.breakdown([listed], "opd_attendance", definitions).values(),
             *national.by_sex([listed], "opd_attendance").values()]
    assert all(s == national.Sum(not_recording=1) and s.recording == 0 for s in alone)  # the page's dash

    in_june = national.gather(db, june, definitions)
    assert next(f for f in in_june if f.slug == mid_year.slug).recording
    june_values = [v for v in national.to_dhis2(in_june, june, definitions)["dataValues"]
                   if v["orgUnit"] == "KE-MID-YEAR"]
    assert len(june_values) == len(definitions.indicators) * len(definitions.cells)
