"""The ministry's page and exports: national, district and facility figures of a month, small counts
withheld, viewing and exporting audited — for the ministry analyst only."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import EncounterIn, VitalSignsIn
from appliance.national import indicators as national
from appliance.substrate.audit import control_audit_event
from appliance.substrate.principal import Principal
from tests.layers.clinical.conftest import born_years_ago, new_patient


def _events(db, event_type: str) -> int:
    with db.control() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(control_audit_event)
                            .where(control_audit_event.c.event_type == event_type)).scalar()


@pytest.fixture(scope="module")
def counted(db, tenant_factory):
    """Two facilities of one district this month: one with 7 outpatient attendances (5 women, 2 boys),
    one with 3 (a count too small to publish).

    The facilities keep UTC, so the month of their attendances is UTC's whatever the hour the suite
    runs (the ministry's today is the latest of its facilities' dates: `national.today`)."""
    busy = tenant_factory(name="Busy Clinic", district="Northdistrict", dhis2_org_unit="KE-NTH-BUSY", timezone="UTC")
    quiet = tenant_factory(name="Quiet Clinic", district="Northdistrict", timezone="UTC")
    for facility, people in ((busy, [("female", 30)] * 5 + [("male", 3)] * 2), (quiet, [("female", 30)] * 3)):
        clinician = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr N", tenant=facility.slug,
                              role="clinician")
        with db.tenant(facility.slug) as conn:
            for sex, years in people:
                born = born_years_ago(years)
                patient = new_patient(conn, clinician, sex=sex, birth_date=born)
                opened = service.open_encounter(conn, clinician, patient["id"],
                                                EncounterIn(encounter_class="outpatient"))
    import zoneinfo

    month = national.Period.containing(opened["started_at"].astimezone(zoneinfo.ZoneInfo(busy.timezone)).date())
    return busy, quiet, month


def test_the_analyst_sees_the_month_with_small_counts_withheld(db, signed_in, counted):
    busy, quiet, month = counted
    analyst = signed_in("ministry_analyst", kind="ministry_analyst")
    assert 'href="/national"' in analyst.get("/").text
    before = _events(db, "national.indicators.read")
    page = analyst.get(f"/national?period={month.value}&indicator=opd_attendance")
    assert page.status_code == 200 and month.label in page.text
    this_month = national.Period.containing(national.today(db))
    assert ('id="to-date"' in page.text) == (month == this_month)  # a month not over says so
    assert _events(db, "national.indicators.read") == before + 1
    rows = page.text.split('id="facilities"')[1].split("</table>")[0]
    busy_row = rows.split(f'data-facility="{busy.slug}"')[1].split("</tr>")[0]
    quiet_row = rows.split(f'data-facility="{quiet.slug}"')[1].split("</tr>")[0]
    assert '<td class="total">7</td>' in busy_row
    # Busy's 2 boys are withheld, and so is the women's 5 that would reveal them: by sex, nothing shows.
    assert busy_row.count(">withheld<") == 2
    assert '<td class="total"><span class="muted"' in quiet_row  # 3 is under the threshold
    summary = page.text.split('id="summary"')[1].split("</table>")[0]
    assert "Northdistrict" in summary
    opd = summary.split('data-indicator="opd_attendance"')[1].split("</tr>")[0]
    assert "+1 withheld" in opd  # the district's sum says it could not include Quiet Clinic's figure


def test_the_month_goes_out_as_csv_or_dhis2_and_each_export_is_audited(db, signed_in, counted):
    busy, quiet, month = counted
    analyst = signed_in("ministry_analyst", kind="ministry_analyst")
    before = _events(db, "national.indicators.export")
    sheet = analyst.get(f"/national/export?period={month.value}&format=csv")
    assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/csv")
    assert f"healthos-national-{month.value}.csv" in sheet.headers["content-disposition"]
    totals = {(row[1], row[3]): (row[9], row[10]) for row in (line.split(",") for line in sheet.text.splitlines())
              if row[7] == "all"}
    assert totals[("opd_attendance", busy.slug)] == ("7", "no")
    assert totals[("opd_attendance", quiet.slug)] == ("", "yes")
    dhis2 = analyst.get(f"/national/export?period={month.value}&format=dhis2")
    values = json.loads(dhis2.text)["dataValues"]
    # Codes, not DHIS2's UIDs: without the file saying so, DHIS2 refused every value as naming nothing it knows.
    schemes = ("idScheme", "dataElementIdScheme", "orgUnitIdScheme", "categoryOptionComboIdScheme")
    assert all(json.loads(dhis2.text)[scheme] == "CODE" for scheme in schemes)
    # The facility as the ministry's DHIS2 knows it (its tenant file's org unit code), else by its slug.
    mine = [v for v in values if v["orgUnit"] == "KE-NTH-BUSY" and v["dataElement"] == "HOS_OPD_ATTENDANCE"]
    assert mine and all(v["value"] == "0" for v in mine)  # the 5 and the 2 were withheld, so left out
    assert not [v for v in values if v["orgUnit"] == "KE-NTH-BUSY" and v["categoryOptionCombo"] == "M_1-4Y"
                and v["dataElement"] == "HOS_OPD_ATTENDANCE"]
    assert any(v["orgUnit"] == quiet.slug for v in values) and not any(v["orgUnit"] == busy.slug for v in values)
    assert _events(db, "national.indicators.export") == before + 2
    # DHIS2 adds up the values it is sent, so a published total beside a withheld cell reads lower there
    # (Busy's 7 reads 0): the page says how many, counted here from the CSV.
    rows = list(csv.reader(io.StringIO(sheet.text)))[1:]
    withheld_beside = {(row[1], row[3]) for row in rows if row[7] != "all" and row[10] == "yes"}
    lower = sum(1 for row in rows if row[7] == "all" and row[10] == "no" and (row[1], row[3]) in withheld_beside)
    assert ("opd_attendance", busy.slug) in withheld_beside and lower >= 1
    page = analyst.get(f"/national?period={month.value}").text
    assert f'<strong id="lower-in-dhis2">{lower} facility total{"s" if lower != 1 else ""} of {month.label}' in page


def test_a_facility_opens_to_its_every_indicator(db, signed_in, counted):
    busy, quiet, month = counted
    analyst = signed_in("ministry_analyst", kind="ministry_analyst")
    listed = analyst.get(f"/national?period={month.value}&indicator=opd_attendance").text
    row = listed.split('id="facilities"')[1].split(f'data-facility="{busy.slug}"')[1].split("</tr>")[0]
    link = re.search(r'<a href="([^"]+)"', row).group(1).replace("&amp;", "&")
    assert f"facility={busy.slug}" in link
    before = _events(db, "national.indicators.read")
    page = analyst.get(link.split("#")[0])
    assert page.status_code == 200
    focus = page.text.split('id="facility-focus"')[1].split("</section>")[0]
    assert f"{busy.name}, every indicator" in focus and "Northdistrict" in focus
    rows = {indicator.id: focus.split(f'data-indicator="{indicator.id}"')[1].split("</tr>")[0]
            for indicator in national.load_definitions(
                Path(__file__).resolve().parents[2] / "policies" / "indicators.toml").indicators}
    # Its 7 attendances: the women's 5 and the boys' 2 withheld, as in the facility table; the rest none.
    assert '<td class="total">7</td>' in rows["opd_attendance"] and rows["opd_attendance"].count(">withheld<") == 2
    assert all('<td class="total">0</td>' in row for key, row in rows.items() if key != "opd_attendance")
    assert _events(db, "national.indicators.read") == before + 1
    quiet_page = analyst.get(f"/national?period={month.value}&facility={quiet.slug}").text
    quiet_focus = quiet_page.split('id="facility-focus"')[1].split("</section>")[0]
    assert '<td class="total"><span class="muted"' in quiet_focus.split('data-indicator="opd_attendance"')[1]
    unknown = analyst.get(f"/national?period={month.value}&facility=t_nowhere")
    assert unknown.status_code == 404 and "No facility &#39;t_nowhere&#39; is counted in" in unknown.text


@pytest.fixture(scope="module")
def screening(db, tenant_factory):
    """A third facility (in UTC, as the others) that screened seven children aged 2 this month: five girls
    with a MUAC of 110 mm (severe acute malnutrition) and two boys of 130 mm."""
    facility = tenant_factory(name="Nutrition Clinic", district="Northdistrict", timezone="UTC")
    clinician = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr M", tenant=facility.slug,
                          role="clinician")
    with db.tenant(facility.slug) as conn:
        for sex, muac in [("female", 110)] * 5 + [("male", 130)] * 2:
            child = new_patient(conn, clinician, sex=sex, birth_date=born_years_ago(2))
            measured = service.record_vitals(conn, clinician, child["id"], VitalSignsIn(muac_mm=muac, oedema=False))
    return facility, national.Period.containing(measured["occurred_at"].astimezone(dt.UTC).date())


def test_children_screened_for_acute_malnutrition_are_shown_and_exported_small_counts_withheld(signed_in,
                                                                                                screening):
    """Screened: 7, the boys' 2 withheld and the girls' 5 with them; severe: the girls' 5, shown;
    moderate: none, a zero."""
    facility, month = screening
    analyst = signed_in("ministry_analyst", kind="ministry_analyst")
    page = analyst.get(f"/national?period={month.value}&indicator=sam_cases").text
    assert "Severe acute malnutrition (MUAC or oedema), facility by facility" in page
    assert national.SCREENING_CRITERIA.replace("'", "&#39;") in page.split('id="screening-criteria"')[1]
    row = page.split('id="facilities"')[1].split(f'data-facility="{facility.slug}"')[1].split("</tr>")[0]
    assert '<td class="total">5</td>' in row and ">withheld<" not in row
    focus = analyst.get(f"/national?period={month.value}&facility={facility.slug}").text.split(
        'id="facility-focus"')[1].split("</section>")[0]
    screened = focus.split('data-indicator="nutrition_screened"')[1].split("</tr>")[0]
    assert '<td class="total">7</td>' in screened and screened.count(">withheld<") == 2
    assert '<td class="total">0</td>' in focus.split('data-indicator="mam_cases"')[1].split("</tr>")[0]
    values = analyst.get(f"/national/export?period={month.value}&format=dhis2").json()["dataValues"]
    mine = {(v["dataElement"], v["categoryOptionCombo"]): v["value"] for v in values
            if v["orgUnit"] == facility.slug}
    assert mine[("HOS_SAM_CASES", "F_1-4Y")] == "5"
    assert ("HOS_NUT_SCREENED", "F_1-4Y") not in mine and ("HOS_NUT_SCREENED", "M_1-4Y") not in mine
    assert mine[("HOS_NUT_SCREENED", "F_LT1Y")] == "0" and mine[("HOS_MAM_CASES", "M_1-4Y")] == "0"


def test_a_month_older_than_those_offered_stays_chosen(signed_in):
    page = signed_in("ministry_analyst", kind="ministry_analyst").get("/national?period=2019-03").text
    assert "National indicators <span class=\"muted\">· March 2019" in page
    chosen = re.findall(r'<option value="([^"]+)" selected>', page.split('id="period"')[1].split("</select>")[0])
    assert chosen == ["2019-03"]  # "Show" keeps the month the page shows


@pytest.mark.parametrize(("query", "named"), [
    ("period=2026-13", "is not a month; write it as YYYY-MM"),
    ("period=2999-01", "has not begun"),
    ("indicator=nope", "No indicator &#39;nope&#39;"),
])
def test_a_wrong_month_or_indicator_is_named(signed_in, query, named):
    refused = signed_in("ministry_analyst", kind="ministry_analyst").get(f"/national?{query}")
    assert refused.status_code == 422 and named in refused.text


def test_an_unknown_export_format_is_named(signed_in):
    refused = signed_in("ministry_analyst", kind="ministry_analyst").get("/national/export?format=xml")
    assert refused.status_code == 422 and "is not csv or dhis2" in refused.text


def test_only_the_ministry_reaches_the_national_figures(signed_in, token_client, tenant_a, app):
    from litestar.testing import TestClient

    for client in (signed_in("clinician", tenant_a.slug), signed_in("facility_admin", tenant_a.slug),
                   signed_in("operator", kind="operator"), signed_in("regulator", kind="regulator"),
                   token_client(tenant_a.slug, permissions=["national.indicator.read", "national.indicator.export"])):
        for path in ("/national", "/national/export?format=csv"):
            assert client.get(path).status_code == 403, (client, path)
    anonymous = TestClient(app=app, raise_server_exceptions=False).get("/national", follow_redirects=False)
    assert anonymous.status_code in (302, 303, 401)


def test_the_analyst_reaches_no_facility_record(signed_in, tenant_a):
    analyst = signed_in("ministry_analyst", kind="ministry_analyst")
    assert analyst.get(f"/t/{tenant_a.slug}/patients").status_code == 403
    assert analyst.get(f"/api/t/{tenant_a.slug}/patients?name=a").status_code in (401, 403)


def test_figures_another_appliance_reported_are_shown_and_exported_and_so_is_who_has_not(
        db, signed_in, counted, tmp_path):
    from appliance.national import federation
    from appliance.substrate import keys
    from tests.national.test_federation import _facility

    busy, _, month = counted
    definitions = national.load_definitions(Path(__file__).resolve().parents[2] / "policies" / "indicators.toml")
    reporting, silent = keys.Keyring(tmp_path / "lake"), keys.Keyring(tmp_path / "hills")
    federation.register_peer(db, "Lake Region Appliance", reporting.public_key_pem())
    federation.register_peer(db, "Hills District Appliance", silent.public_key_pem())
    kilifi = _facility(definitions, "KE-LAKE-010", "Kilifi Sub-County Hospital")
    kilifi.district = "Kilifi"  # the same region (Coast) as the other, another district
    package = federation.make_package([_facility(definitions, "KE-LAKE-009", "Kisumu County Referral"), kilifi],
                                      month, definitions, reporting)
    federation.receive_package(db, json.dumps(package).encode(), definitions)
    analyst = signed_in("ministry_analyst", kind="ministry_analyst")

    page = analyst.get(f"/national?period={month.value}&indicator=opd_attendance").text

    reports = page.split('id="reports"')[1].split("</table>")[0]
    assert "Lake Region Appliance" in reports and "Hills District Appliance" in reports
    assert "Hills District Appliance" in page.split('id="not-reported"')[1].split("</p>")[0]
    assert "Lake Region Appliance" not in page.split('id="not-reported"')[1].split("</p>")[0]
    row = page.split('data-facility="KE-LAKE-009"')[1].split("</tr>")[0]
    assert "Kisumu County Referral" in row and "Lake Region Appliance" in row and '<td class="total">52</td>' in row
    own = page.split(f'data-facility="{busy.slug}"')[1].split("</tr>")[0]
    assert "this appliance" in own
    # Each region's sum beside its districts': Coast is Mombasa's 52 and Kilifi's 52; Central is Northdistrict's.
    summary = page.split('id="summary"')[1].split("</table>")[0]
    columns = re.findall(r'<th scope="col"(?: class="region")?(?: data-(region|district)="([^"]+)")?', summary)[2:]
    assert columns.index(("region", "Coast")) + 1 == columns.index(("district", "Kilifi"))
    assert columns.index(("district", "Kilifi")) + 1 == columns.index(("district", "Mombasa"))
    opd = summary.split('data-indicator="opd_attendance"')[1].split("</tr>")[0]
    cells = dict(zip(columns, [cell.split("</td>")[0] for cell in opd.split("<td")[2:]], strict=True))
    assert cells[("region", "Coast")].endswith("<strong>104</strong>")
    assert cells[("district", "Kilifi")].endswith(">52") and cells[("district", "Mombasa")].endswith(">52")
    central = cells[("region", "Central Region")]
    assert "<strong>7 " in central and "+1 withheld" in central
    assert cells[("district", "Northdistrict")].startswith(">7 ")
    sheet = analyst.get(f"/national/export?period={month.value}&format=dhis2").json()
    lake = [v["value"] for v in sheet["dataValues"]
            if v["orgUnit"] == "KE-LAKE-009" and v["dataElement"] == "HOS_OPD_ATTENDANCE" and v["value"] != "0"]
    assert sorted(lake) == ["12", "40"]


def test_a_facility_whose_appliance_does_not_count_an_indicator_reads_not_reported(db, signed_in, tmp_path):
    """A hospital's appliance on the indicator list before the acute malnutrition indicators: its facility
    reads "not reported" for them — never 0, never withheld — on the page, the CSV and the DHIS2 file."""
    from appliance.national import federation
    from appliance.substrate import keys
    from tests.national.test_federation import ADDED, _facility, _previous

    month = national.Period(2002, 7)  # a month of its own: no other test's facility
    definitions = national.load_definitions(Path(__file__).resolve().parents[2] / "policies" / "indicators.toml")
    previous = _previous(definitions)
    older = keys.Keyring(tmp_path / "older")
    federation.register_peer(db, "Not Yet Upgraded Appliance", older.public_key_pem())
    federation.receive_package(db, json.dumps(federation.make_package(
        [_facility(previous, "KE-OLD-001", "Old Version Hospital")], month, previous, older)).encode(), definitions)
    analyst = signed_in("ministry_analyst", kind="ministry_analyst")

    page = analyst.get(f"/national?period={month.value}&indicator=sam_cases").text

    row = page.split('id="facilities"')[1].split('data-facility="KE-OLD-001"')[1].split("</tr>")[0]
    assert row.count(">not reported<") == 4 and ">withheld<" not in row and ">0<" not in row  # total, 3 sexes
    sam = page.split('id="summary"')[1].split('data-indicator="sam_cases"')[1].split("</tr>")[0]
    assert ">+1 not reported<" in sam and ">+1 withheld<" not in sam
    opd = page.split('id="summary"')[1].split('data-indicator="opd_attendance"')[1].split("</tr>")[0]
    assert "not reported" not in opd and '<td class="national">52' in opd
    assert "+1 not reported" in page.split('id="breakdown"')[1].split("</table>")[0]
    assert 'id="not-reported-note"' in page
    report = page.split('id="reports"')[1].split("Not Yet Upgraded Appliance")[1].split("</tr>")[0]
    names = [definitions.indicator(i).name for i in ADDED]
    assert "; ".join(names).replace("'", "&#39;") in report.split('class="not-counted"')[1]
    focus = analyst.get(f"/national?period={month.value}&facility=KE-OLD-001").text.split(
        'id="facility-focus"')[1].split("</section>")[0]
    assert all(focus.split(f'data-indicator="{i}"')[1].split("</tr>")[0].count(">not reported<") == 4 for i in ADDED)
    assert '<td class="total">52</td>' in focus.split('data-indicator="opd_attendance"')[1].split("</tr>")[0]

    rows = list(csv.reader(io.StringIO(analyst.get(f"/national/export?period={month.value}&format=csv").text)))
    header = rows[0]
    mine = [dict(zip(header, r, strict=True)) for r in rows[1:] if r[header.index("facility")] == "KE-OLD-001"]
    assert {(r["value"], r["withheld"], r["reported"]) for r in mine if r["indicator"] in ADDED} == {("", "", "no")}
    assert {r["reported"] for r in mine if r["indicator"] not in ADDED} == {"yes"}
    values = analyst.get(f"/national/export?period={month.value}&format=dhis2").json()["dataValues"]
    elements = {v["dataElement"] for v in values if v["orgUnit"] == "KE-OLD-001"}
    assert "HOS_OPD_ATTENDANCE" in elements and not elements & {"HOS_NUT_SCREENED", "HOS_SAM_CASES", "HOS_MAM_CASES"}


def test_a_month_held_from_before_the_bands_changed_and_the_threshold_rose_still_shows_its_facility(
        db, settings, person_factory, tmp_path):
    """A hospital's month received under the old definitions; the ministry then splits 15-49 and raises its
    threshold to 10. The facility stays on the page: its total and totals by sex, its bands still defined,
    the new bands reading "earlier age bands", the counts under 10 withheld; the reporting table, the CSV
    and the DHIS2 file say so."""
    import dataclasses
    import shutil

    from litestar.testing import TestClient

    from appliance.national import federation
    from appliance.substrate import identity, keys
    from appliance.web.app import create_app
    from tests.national.test_federation import (
        SPLIT_15_TO_49,
        THRESHOLD_RAISED,
        _facility,
        changed_definitions,
    )

    month = national.Period(2001, 4)  # a month of its own: no other test's facility
    before = national.load_definitions(settings.policies_dir / "indicators.toml")
    hospital = keys.Keyring(tmp_path / "bands")
    federation.register_peer(db, "Changed Bands Appliance", hospital.public_key_pem())
    federation.receive_package(db, json.dumps(federation.make_package([_facility(
        before, "KE-BND-001", "Banded Hospital",
        {("F", "15-49Y"): 40, ("F", "50PLUSY"): 20, ("M", "1-4Y"): 6, ("M", "5-14Y"): 12})],
        month, before, hospital)).encode(), before)
    policies = tmp_path / "policies"
    shutil.copytree(settings.policies_dir, policies)
    changed_definitions(policies, SPLIT_15_TO_49, THRESHOLD_RAISED)
    ministry = create_app(db, dataclasses.replace(settings, policies_dir=policies))
    person = person_factory("ministry_analyst", kind="ministry_analyst")
    with db.control() as conn:
        session = identity.start_session(conn, person.account_id, mfa_passed=True)
    analyst = TestClient(app=ministry, raise_server_exceptions=False)
    analyst.cookies.set("healthos_session", session)

    page = analyst.get(f"/national?period={month.value}&indicator=opd_attendance")

    assert page.status_code == 200
    row = page.text.split('id="facilities"')[1].split('data-facility="KE-BND-001"')[1].split("</tr>")[0]
    assert ">earlier age bands<" in row and '<td class="total">78</td>' in row
    # Women: 40 (15-49, an earlier band) + 20 (50+); men: the 6 is under 10, and the 12 goes with it.
    assert "<td>60</td>" in row and row.count(">withheld<") == 1
    assert "Banded Hospital" in page.text.split('id="earlier-bands-note"')[1].split("</p>")[0]
    women = page.text.split('id="breakdown"')[1].split('data-sex="F"')[1].split("</tr>")[0]
    assert ">+1 earlier age bands<" in women.split('data-band="15-24Y"')[1].split("</td>")[0]
    assert women.split('data-band="50PLUSY"')[1].split("</td>")[0].startswith(">20")
    assert women.split('data-band="all"')[1].split("</td>")[0] == ' class="total">60'
    report = page.text.split('id="reports"')[1].split("Changed Bands Appliance")[1].split("</tr>")[0]
    read_as = report.split('class="read-as"')[1]
    assert "under earlier age bands (LT1Y, 1-4Y, 5-14Y, 50PLUSY, 15-49Y)" in read_as
    assert f"{2 * len(before.indicators)} published counts now withheld under the threshold of 10" in read_as
    assert 'id="lower-in-dhis2"' in page.text

    rows = list(csv.DictReader(io.StringIO(analyst.get(f"/national/export?period={month.value}&format=csv").text)))
    mine = {(r["sex"], r["age_band"]): (r["value"], r["withheld"], r["earlier_age_bands"]) for r in rows
            if r["facility"] == "KE-BND-001" and r["indicator"] == "opd_attendance"}
    assert mine[("F", "15-49Y")] == ("40", "no", "yes") and mine[("F", "25-49Y")] == ("", "", "yes")
    assert mine[("M", "1-4Y")] == ("", "yes", "no") and mine[("all", "all")] == ("78", "no", "no")
    values = {v["categoryOptionCombo"]: v["value"] for v in analyst.get(
        f"/national/export?period={month.value}&format=dhis2").json()["dataValues"]
        if v["orgUnit"] == "KE-BND-001" and v["dataElement"] == "HOS_OPD_ATTENDANCE"}
    assert values["F_50PLUSY"] == "20" and not {"M_1-4Y", "M_5-14Y", "F_15-49Y", "F_15-24Y"} & set(values)


def test_a_facility_new_this_month_reads_not_recording_yet_before_it_and_is_left_out_of_both_exports(
        db, signed_in, tenant_factory, counted):
    """A facility moved onto the appliance this month kept last month's records in the system it left, which sent
    them to DHIS2: last month it reads 'not recording yet' (no zeros, in no sum) and neither export sends it, or
    DHIS2 would overwrite that system's figures with zeros; this month it counts as any facility."""
    busy, _, month = counted
    newcomer = tenant_factory(name="Newcomer Clinic", district="Newdistrict", dhis2_org_unit="KE-NEW-CLINIC",
                              timezone="UTC", recording_since=None)
    analyst = signed_in("ministry_analyst", kind="ministry_analyst")
    before = month.previous()

    page = analyst.get(f"/national?period={before.value}&indicator=opd_attendance").text
    row = page.split('id="facilities"')[1].split(f'data-facility="{newcomer.slug}"')[1].split("</tr>")[0]
    assert row.count(">not recording yet</td>") == 1 + len(national.SEXES) and 'class="total"' not in row
    assert f"records on its appliance from {month.label}" in row
    note = page.split('id="not-recording-note"')[1].split("</p>")[0]
    assert f"Newcomer Clinic (from {month.label})" in note
    summary = page.split('id="summary"')[1].split("</table>")[0]
    districts = re.findall(r'data-district="([^"]+)"', summary)
    opd = summary.split('data-indicator="opd_attendance"')[1].split("</tr>")[0]
    district_cells = re.findall(r"<td>(.*?)</td>", opd, re.S)
    assert 'class="muted not-recording"' in district_cells[districts.index("Newdistrict")]
    assert "not-recording" not in district_cells[districts.index("Northdistrict")]
    focus = analyst.get(f"/national?period={before.value}&facility={newcomer.slug}").text
    focus = focus.split('id="facility-focus"')[1].split("</section>")[0]
    assert 'class="total"' not in focus and focus.count(">not recording yet</td>") >= 1 + len(national.SEXES)

    dhis2 = json.loads(analyst.get(f"/national/export?period={before.value}&format=dhis2").text)["dataValues"]
    assert not [v for v in dhis2 if v["orgUnit"] == "KE-NEW-CLINIC"]
    assert [v for v in dhis2 if v["orgUnit"] == "KE-NTH-BUSY"]  # a facility recording then sends its zeros
    sheet = analyst.get(f"/national/export?period={before.value}&format=csv").text
    assert newcomer.slug not in sheet and busy.slug in sheet

    now = json.loads(analyst.get(f"/national/export?period={month.value}&format=dhis2").text)["dataValues"]
    assert [v for v in now if v["orgUnit"] == "KE-NEW-CLINIC"]
    this_month = analyst.get(f"/national?period={month.value}&indicator=opd_attendance").text
    row = this_month.split('id="facilities"')[1].split(f'data-facility="{newcomer.slug}"')[1].split("</tr>")[0]
    assert '<td class="total">0</td>' in row and "not recording yet" not in row
    assert 'id="not-recording-note"' not in this_month
