"""Reference ranges by age and sex (tenant_config `ranges`) over real HTTP, the bench and the HL7 feed: a child's,
a man's and a woman's haemoglobin judged by their bands, the band's range stored with the result and shown on the
bench's and the chart's entry forms, and the test's own range for a patient no band holds."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
import zoneinfo

import pytest
import sqlalchemy as sa

from appliance.interop.hl7v2 import feed
from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import EncounterIn, ResultIn, ServiceRequestIn
from appliance.substrate import tenancy
from appliance.substrate.principal import Principal
from tests.interop.hl7v2.conftest import FEED_PERMISSIONS, adt, issue_token, oru
from tests.layers.clinical.conftest import born_years_ago, new_patient
from tests.layers.clinical.test_lab import LAB, lab  # noqa: F401 (the bench's client, a fixture of this module)

FBC, HB = "58410-2", "718-7"
# The demo facilities' bands (tenants/*.toml, after WHO 2011), over an adult woman's range as the test's own.
HAEMOGLOBIN = {"loinc": HB, "name": "Haemoglobin", "unit": "g/dL", "low": 12.0, "high": 16.0, "critical_low": 7.0,
               "ranges": [{"from_age": "6M", "to_age": "5Y", "low": 11.0},
                          {"from_age": "5Y", "to_age": "12Y", "low": 11.5},
                          {"from_age": "12Y", "to_age": "15Y", "low": 12.0},
                          {"sex": "female", "from_age": "15Y", "low": 12.0},
                          {"sex": "male", "from_age": "15Y", "low": 13.0}]}
CATALOGUE = [{"loinc": FBC, "name": "Full blood count", "specimen": "blood", "components": [
    HAEMOGLOBIN, {"loinc": "6690-2", "name": "White cell count", "unit": "10*3/uL", "low": 4.0, "high": 11.0}]}]


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Banded Ranges Hospital", catalogue=CATALOGUE)


@pytest.fixture(scope="module")
def patients(db, facility, clinician) -> dict:
    """A girl of 3, a woman and a man of 40, an infant of 2 months (before the first band) and an adult of
    unknown sex (no band of `any` sex holds an adult): each with an FBC ordered in an open visit."""
    people = {"girl": ("female", born_years_ago(3)), "woman": ("female", born_years_ago(40)),
              "man": ("male", born_years_ago(40)), "infant": ("male", dt.date.today() - dt.timedelta(days=60)),
              "unknown": ("unknown", born_years_ago(40))}
    found = {}
    with db.tenant(facility.slug) as conn:
        for who, (sex, born) in people.items():
            patient = new_patient(conn, clinician, family_name="Wanjiru", given_names=who.title(), sex=sex,
                                  birth_date=born)
            visit = service.open_encounter(conn, clinician, patient["id"], EncounterIn(encounter_class="outpatient"))
            order = service.order_test(conn, clinician, patient["id"], ServiceRequestIn(code=FBC,
                                                                                       encounter_id=visit["id"]))
            found[who] = {"id": patient["id"], "order": order["id"]}
    return found


@pytest.mark.parametrize(("who", "value", "low", "flag", "band"), [
    ("girl", "11.2", "11.0", "N", "6 months to 5 years"),  # low against a woman's 12.0; normal for a child of 3
    ("woman", "12.5", "12.0", "N", "female, 15 years and over"),
    ("man", "12.5", "13.0", "L", "male, 15 years and over"),  # normal for a woman; low for a man
    ("infant", "11.5", "12.0", "L", None),   # before the first band: the test's own range
    ("unknown", "12.5", "12.0", "N", None),  # no band of their sex: the test's own range
])
def test_a_result_through_the_api_is_judged_by_the_patients_band(token_client, facility, patients, who, value, low,
                                                                flag, band):
    api = token_client(facility.slug, role="clinician")
    patient = patients[who]
    recorded = api.post(f"/api/t/{facility.slug}/patients/{patient['id']}/results",
                        json={"code": HB, "value": value})
    assert recorded.status_code == 201, recorded.text
    body = recorded.json()
    assert (body["reference_low"], body["reference_high"], body["flag"]) == (low, "16.0", flag)
    assert body["reference_band"] == band  # which band the flag was judged by
    # The critical limit is the test's own where the band names none: a child's 6.5 heads every review list.
    critical = api.post(f"/api/t/{facility.slug}/patients/{patient['id']}/results", json={"code": HB, "value": 6.5})
    assert critical.json()["flag"] == "LL"


def test_the_bench_shows_and_judges_by_the_childs_band(lab, signed_in, db, facility, clinician,  # noqa: F811
                                                        patients):
    base = LAB.format(tenant=facility.slug)
    girl = patients["girl"]
    with db.tenant(facility.slug) as conn:  # a second blood count, the first one is the API test's
        order = service.order_test(conn, clinician, girl["id"], ServiceRequestIn(code=FBC))["id"]
    shown = lab.get(f"{base}/orders/{order}").json()
    haemoglobin = next(a for a in shown["analytes"] if a["code"] == HB)
    assert (haemoglobin["low"], haemoglobin["high"], haemoglobin["band"]) == (11.0, 16.0, "6 months to 5 years")
    assert lab.post(f"{base}/orders/{order}/receipt", json={}).status_code < 300
    # The entry form of the one order whose specimen is in: the range the child's result will be judged by.
    page = signed_in("lab_technician", facility.slug).get(f"/t/{facility.slug}/lab",
                                                          params={"state": "specimen_received"})
    assert page.status_code == 200 and "Reference 11–16" in page.text and "Reference 12–16" not in page.text
    assert "for 6 months to 5 years" in page.text
    entered = lab.post(f"{base}/orders/{order}/results", json={"results": [{"code": HB, "value": 11.3}]})
    assert entered.status_code == 200, entered.text
    result = next(r for r in entered.json()["results"] if r["code"] == HB)
    assert (result["reference_low"], result["flag"], result["reference_band"]) == ("11.0", "N", "6 months to 5 years")
    resulted = signed_in("lab_technician", facility.slug).get(f"/t/{facility.slug}/lab", params={"state": "resulted"})
    assert '<span class="muted small reference-band">for 6 months to 5 years</span>' in resulted.text
    # A correction is judged by the same band.
    corrected = lab.post(f"{base}/results/{result['id']}/correction",
                         json={"value": 10.8, "reason": "read from the wrong analyser line"})
    now = next(r for r in corrected.json()["results"] if r["code"] == HB)
    assert (now["reference_low"], now["flag"], now["reference_band"]) == ("11.0", "L", "6 months to 5 years")


def test_the_charts_orders_page_shows_the_mans_band(signed_in, facility, patients):
    man = patients["man"]
    page = signed_in("clinician", facility.slug).get(f"/t/{facility.slug}/patients/{man['id']}/orders")
    assert page.status_code == 200, page.text[:2000]
    assert "Reference 13–16" in page.text and "Reference 12–16" not in page.text
    assert "for male, 15 years and over" in page.text


def test_a_childs_band_is_chosen_on_the_facilitys_calendar(db, tenant_factory):
    """Around midnight the facility's day is not UTC's: a girl who turns 5 on one of the two days and not on the
    other is judged on the facility's, when her result is recorded and when it is corrected. The facility is put
    where the two days differ now (UTC-12 before noon UTC, UTC+14 after), so the test means the same whenever
    it runs. The calendar is the facility's own (the registry's zone), whatever its fee schedule's billing setting
    says or whether it has one: a facility that bills in UTC, or does not bill, still judges a child by her age
    there."""
    now = dt.datetime.now(dt.UTC)
    zone = "Etc/GMT+12" if now.hour < 12 else "Pacific/Kiritimati"
    far = tenant_factory(name="Far Zone Hospital", catalogue=CATALOGUE, timezone=zone)
    local = now.astimezone(zoneinfo.ZoneInfo(zone)).date()
    fifth = max(local, now.date())
    born = fifth.replace(year=fifth.year - 5, day=28 if (fifth.month, fifth.day) == (2, 29) else fifth.day)
    # 5 (WHO's 11.5 from 5 years) on the later of the two days, 4 (11.0) on the other.
    expected = "11.5" if local > now.date() else "11.0"
    clinician = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Far", tenant=far.slug,
                          role="clinician")
    judged = []
    for billing in ("as the tenant file", "UTC", "absent"):
        with db.tenant(far.slug) as conn:
            if billing == "UTC":
                conn.execute(sa.text("UPDATE billing_setting SET timezone = 'UTC'"))
            elif billing == "absent":
                conn.execute(sa.text("DELETE FROM billing_setting"))
            girl = new_patient(conn, clinician, family_name="Akinyi", sex="female", birth_date=born)
            recorded = service.record_result(conn, clinician, girl["id"], ResultIn(code=HB, value="11.2"))
            corrected = service.correct_result(conn, clinician, girl["id"], recorded["id"],
                                               ResultIn(code=HB, value="11.3"), "mistyped")
        judged.append((billing, str(recorded["reference_low"]), str(corrected["reference_low"])))
    assert judged == [(billing, expected, expected) for billing in ("as the tenant file", "UTC", "absent")]


def test_a_result_is_judged_at_the_age_it_was_observed_not_the_age_it_arrived_at(db, facility, clinician):
    """A girl turned five at midnight, in the facility's calendar: her haemoglobin observed an hour before, sent
    after a backlog, is judged by the under-fives' band (11.0), one observed at noon that day by the
    five-to-twelves' (11.5)."""
    zone = tenancy.facility_timezone(db, facility.slug)
    birthday = dt.datetime.now(zone).date() - dt.timedelta(days=10)
    if (birthday.month, birthday.day) == (2, 29):  # no such day five years before
        birthday -= dt.timedelta(days=1)
    midnight = dt.datetime.combine(birthday, dt.time(), zone)
    with db.tenant(facility.slug) as conn:
        girl = new_patient(conn, clinician, family_name="Atieno", sex="female",
                           birth_date=birthday.replace(year=birthday.year - 5))
        before, after = (service.record_result(conn, clinician, girl["id"], ResultIn(code=HB, value="11.2",
                                                                                       occurred_at=at))
                         for at in (midnight - dt.timedelta(hours=1), midnight + dt.timedelta(hours=12)))
    assert (str(before["reference_low"]), before["flag"]) == ("11.0", "N")
    assert (str(after["reference_low"]), after["flag"]) == ("11.5", "L")


def test_an_hl7_result_without_a_range_is_judged_by_the_band(db, policy, facility):
    token = issue_token(db, policy, facility.slug, FEED_PERMISSIONS)
    identifier = "MRN" + secrets.token_hex(4)
    registered = feed.handle(db, facility.slug, token, adt(facility.slug, "A04", identifier, sex="M",
                                                              birth="19800501"))
    assert registered.code == "AA", registered.text
    resulted = feed.handle(db, facility.slug, token, oru(facility.slug, identifier, [
        f"OBX|1|NM|{HB}^Haemoglobin^LN||12.6|g/dL|||||F",            # no range, no flag: ours applies
        "OBX|2|NM|6690-2^White cell count^LN||7.1|10*3/uL|3.5-10.5|N|||F"]))  # the sender's range stands
    assert resulted.code == "AA", resulted.text
    with db.tenant(facility.slug) as conn:
        rows = conn.execute(sa.text(
            "SELECT r.code, r.reference_low, r.flag FROM result r JOIN entry e ON e.id = r.entry_id "
            "JOIN patient_identifier i ON i.patient_id = e.patient_id WHERE i.value = :v ORDER BY r.code"),
            {"v": identifier}).all()
    assert [(code, str(low), flag) for code, low, flag in rows] == [("6690-2", "3.5", "N"), (HB, "13.0", "L")]

