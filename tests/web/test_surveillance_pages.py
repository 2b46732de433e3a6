"""The ministry's Alerts page (/national/alerts), its JSON (/api/national/alerts), acknowledging an alert with a
note (audited; a refusal keeps nothing), an alert nobody acknowledged staying open from earlier weeks up to a
year back, and the weekly DHIS2 export — for the ministry analyst only: a facility's clinician, a regulator and a
facility's API token are refused."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
import zoneinfo

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import ConditionIn
from appliance.national import surveillance as idsr
from appliance.substrate import audit
from appliance.substrate.audit import control_audit_event
from appliance.substrate.principal import Principal
from appliance.substrate.record import NewEntry, append_many
from tests.layers.clinical.conftest import born_years_ago, new_patient

ZONE = "Africa/Nairobi"


def _events(db, event_type: str) -> int:
    with db.control() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(control_audit_event)
                            .where(control_audit_event.c.event_type == event_type)).scalar()


def _acknowledgements(db, slug: str) -> list:
    table = idsr.surveillance_acknowledgement
    with db.control() as conn:
        return conn.execute(sa.select(table).where(table.c.tenant == slug)).all()


def _csrf(html: str) -> str:
    return re.search(r'name="_csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture(scope="module")
def measles(db, tenant_factory):
    """A Nairobi facility where a child of 2 was diagnosed with measles today."""
    facility = tenant_factory(name="Riverbank Dispensary", district="Westdistrict", timezone=ZONE)
    clinician = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr R", tenant=facility.slug,
                          role="clinician")
    with db.tenant(facility.slug) as conn:
        child = new_patient(conn, clinician, family_name="Mutua", given_names="Baraka", sex="male",
                            birth_date=born_years_ago(2))
        service.add_condition(conn, clinician, child["id"], ConditionIn(code="B05.9"))
    week = idsr.Week.containing(dt.datetime.now(zoneinfo.ZoneInfo(ZONE)).date())
    return facility, clinician, child, week


def test_the_analyst_sees_the_alert_the_day_it_is_diagnosed(db, signed_in, measles):
    facility, _, child, week = measles
    analyst = signed_in("ministry_analyst", kind="ministry_analyst")
    assert 'href="/national/alerts"' in analyst.get("/").text
    before = _events(db, "national.surveillance.view")
    page = analyst.get("/national/alerts")
    assert page.status_code == 200 and _events(db, "national.surveillance.view") == before + 1
    key = f"{facility.slug}/measles/{week.value}"
    row = page.text.split('id="open-alerts"')[1].split(f'data-alert="{key}"')[1].split("</tr>")[0]
    today = dt.datetime.now(zoneinfo.ZoneInfo(ZONE)).date().isoformat()
    assert "Riverbank Dispensary" in row and "Measles" in row and f"<td>{today}</td>" in row
    assert f"{today} · B05.9 · male · age 1-4Y" in row
    for value in (child["family_name"], child["given_names"], child["mrn"], str(child["id"])):
        assert value not in page.text
    one = analyst.get(f"/national/alerts?facility={facility.slug}").text
    weekly = one.split('id="weekly"')[1].split("</table>")[0]
    assert weekly.split('data-disease="measles"')[1].split("</tr>")[0].endswith("<td>1</td>")

    api = analyst.get(f"/api/national/alerts?facility={facility.slug}")
    assert api.status_code == 200
    body = api.json()
    [alert] = [a for a in body["alerts"] if a["facility"] == facility.slug]
    assert alert["disease"] == "measles" and alert["open"] and alert["since"] == today and alert["threshold"] == 1
    assert alert["cases"] == [{"facility": facility.slug, "disease": "measles", "week": week.value,
                               "diagnosed_on": today, "icd10": "B05.9", "sex": "M", "age_band": "1-4Y"}]
    assert next(r for r in body["weekly"] if r["disease"] == "measles")["cases"][week.value] == 1
    for value in (child["family_name"], child["mrn"], str(child["id"])):
        assert value not in api.text


def test_an_alert_is_acknowledged_with_a_note_audited_and_opens_again_with_a_new_case(db, signed_in, measles):
    facility, clinician, _, week = measles
    analyst = signed_in("ministry_analyst", kind="ministry_analyst")
    token = _csrf(analyst.get("/national/alerts").text)
    form = {"facility": facility.slug, "disease": "measles", "week": week.value, "_csrf_token": token}
    before = _events(db, "national.alert.acknowledge")
    empty = analyst.post("/national/alerts/acknowledge", data={**form, "note": "   "})
    assert empty.status_code == 422 and "write a note saying what was done" in empty.text.lower()
    guessed = analyst.post("/national/alerts/acknowledge", data={**form, "disease": "cholera", "note": "seen"})
    assert guessed.status_code == 404 and "there is no alert" in guessed.text.lower()
    elsewhere = analyst.post("/national/alerts/acknowledge", data={**form, "facility": "t_nowhere", "note": "seen"})
    assert elsewhere.status_code == 404
    assert not analyst.post("/national/alerts/acknowledge", data={**form, "week": "2026-W99", "note": "x"}).is_success
    assert _acknowledgements(db, facility.slug) == [] and _events(db, "national.alert.acknowledge") == before

    done = analyst.post("/national/alerts/acknowledge", data={**form, "note": "DSO informed; samples sent"},
                        follow_redirects=False)
    assert done.status_code in (302, 303) and done.headers["location"] == "/national/alerts"
    [kept] = _acknowledgements(db, facility.slug)
    assert (kept.disease, kept.week, kept.cases, kept.note) == ("measles", week.value, 1, "DSO informed; samples sent")
    assert kept.acknowledged_by == analyst.person.account_id
    assert _events(db, "national.alert.acknowledge") == before + 1
    page = analyst.get("/national/alerts").text
    key = f"{facility.slug}/measles/{week.value}"
    open_alerts = page.split('id="open-alerts"')[1].split("</table>")[0] if 'id="open-alerts"' in page else ""
    assert f'data-alert="{key}"' not in open_alerts
    assert "DSO informed; samples sent" in page.split('id="acknowledged-alerts"')[1].split(f'data-alert="{key}"')[1]
    again = analyst.post("/national/alerts/acknowledge", data={**form, "note": "twice"})
    assert again.status_code == 409 and _events(db, "national.alert.acknowledge") == before + 1

    with db.tenant(facility.slug) as conn:  # a sibling falls ill the same week
        sibling = new_patient(conn, clinician, family_name="Mutua", sex="female", birth_date=born_years_ago(4))
        service.add_condition(conn, clinician, sibling["id"], ConditionIn(code="B05.9"))
    reopened = analyst.get("/national/alerts").text.split('id="open-alerts"')[1].split(f'data-alert="{key}"')[1]
    assert "Acknowledged at 1 case; 1 more since." in reopened.split("</tr>")[0]


def test_the_week_goes_out_as_a_dhis2_data_value_set_audited(db, signed_in, measles):
    facility, _, _, week = measles
    analyst = signed_in("ministry_analyst", kind="ministry_analyst")
    before = _events(db, "national.surveillance.export")
    sent = analyst.get(f"/national/alerts/export?week={week.value}&format=dhis2")
    assert sent.status_code == 200 and f"healthos-idsr-{week.value}.json" in sent.headers["content-disposition"]
    document = json.loads(sent.text)
    assert document["period"] == week.dhis2 and document["idScheme"] == "CODE"  # codes, not DHIS2's UIDs
    mine = {v["categoryOptionCombo"]: v["value"] for v in document["dataValues"]
            if v["orgUnit"] == facility.slug and v["dataElement"] == "IDSR_MEASLES"}
    assert int(mine["M_1-4Y"]) >= 1 and mine["F_15-49Y"] == "0"
    assert _events(db, "national.surveillance.export") == before + 1
    assert analyst.get("/national/alerts/export?format=csv").status_code == 422
    future = week.previous(-3).value
    late = analyst.get(f"/national/alerts/export?week={future}&format=dhis2")
    assert late.status_code == 422 and "has not begun" in late.text
    assert analyst.get("/api/national/alerts?last=soon").status_code == 422
    assert analyst.get("/api/national/alerts?facility=t_nowhere").status_code == 404


def test_an_impossible_or_malformed_week_is_refused_not_replaced_by_this_one(signed_in, measles):
    """`?week=2026-W99` was dropped as an unknown parameter and the current week shown as the one asked for."""
    analyst = signed_in("ministry_analyst", kind="ministry_analyst")
    for url in ("/national/alerts", "/api/national/alerts"):
        for name in ("week", "last"):
            impossible = analyst.get(f"{url}?{name}=2026-W99")
            assert impossible.status_code == 422 and "2026 has no week 99" in impossible.text
            malformed = analyst.get(f"{url}?{name}=soon")
            assert malformed.status_code == 422 and "write it as YYYY-Www" in malformed.text
        both = analyst.get(f"{url}?week=2026-W10&last=2026-W11")
        assert both.status_code == 422 and "name different weeks" in both.text
    chosen = measles[3]
    shown = analyst.get(f"/api/national/alerts?week={chosen.value}")
    assert shown.status_code == 200 and shown.json()["weeks"][-1] == chosen.value


def test_a_facility_clinician_a_regulator_and_a_facility_token_are_refused(db, signed_in, token_client, measles):
    facility = measles[0]
    week = measles[3]
    for client in (signed_in("clinician", facility.slug), signed_in("regulator", kind="regulator"),
                   token_client(facility.slug, role="clinician")):
        assert client.get("/national/alerts").status_code == 403
        assert client.get("/api/national/alerts").status_code == 403
        assert client.get(f"/national/alerts/export?week={week.value}&format=dhis2").status_code == 403
        # With the form's CSRF token of a page the person may open, so the refusal is the permission's.
        landing = client.get("/")
        token = re.search(r'name="_csrf_token" value="([^"]+)"', landing.text)
        posted = client.post("/national/alerts/acknowledge", data={
            "facility": facility.slug, "disease": "measles", "week": week.value, "note": "mine",
            "_csrf_token": token.group(1) if token else ""})
        assert posted.status_code == 403
    assert all(row.note != "mine" for row in _acknowledgements(db, facility.slug))


@pytest.fixture(scope="module")
def forgotten(db, measles):
    """At the measles facility, nobody acknowledged anything: cholera diagnosed ten weeks ago and sixty weeks ago
    (beyond the year the page looks back), and malaria ten weeks ago (reported by week, never an alert)."""
    facility, clinician, _, _ = measles
    current = idsr.Week.containing(dt.datetime.now(zoneinfo.ZoneInfo(ZONE)).date())
    weeks = {"recent": current.previous(10), "beyond": current.previous(60)}
    with db.tenant(facility.slug) as conn:
        person = new_patient(conn, clinician, family_name="Achieng", sex="female", birth_date=born_years_ago(24))
        append_many(conn, clinician, [
            NewEntry("condition", person["id"], occurred_at=week.bounds(ZONE)[0] + dt.timedelta(hours=10), detail={
                "code": code, "display": code, "clinical_status": "active", "verification": "confirmed",
                "onset_date": week.monday, "resolved_date": None, "note": None})
            for week, code in ((weeks["recent"], "A00.9"), (weeks["beyond"], "A00.9"), (weeks["recent"], "B54"))])
    return facility, current, weeks


def test_an_alert_nobody_acknowledged_stays_open_from_earlier_weeks_back_a_year(db, signed_in, forgotten):
    facility, current, weeks = forgotten
    since = idsr.open_since(current)
    recent, beyond = (f"{facility.slug}/cholera/{weeks[name].value}" for name in ("recent", "beyond"))
    analyst = signed_in("ministry_analyst", kind="ministry_analyst")
    began = dt.datetime.now(dt.UTC)
    page = analyst.get("/national/alerts").text
    earlier = page.split('id="open-earlier-alerts"')[1].split("</table>")[0]
    assert f'data-alert="{recent}"' in earlier and f'data-alert="{beyond}"' not in page
    assert "A00.9 · female · age 15-49Y" in earlier.split(f'data-alert="{recent}"')[1].split("</tr>")[0]
    assert f'data-alert="{recent}"' not in page.split('id="open-alerts"')[-1].split("</table>")[0]
    assert f"back to {since.label}" in page.split('id="looks-back-to"')[1].split("</p>")[0]
    body = analyst.get(f"/api/national/alerts?facility={facility.slug}").json()
    assert body["looks_back_to"] == since.value
    [old] = [a for a in body["open_from_earlier"] if a["facility"] == facility.slug]
    assert (old["disease"], old["week"], old["open"], len(old["cases"])) == ("cholera", weeks["recent"].value, True, 1)
    assert all(a["disease"] != "cholera" for a in body["alerts"] if a["facility"] == facility.slug)
    # Both reads say in the appliance's log how far back they looked; the facility's log says the ministry read
    # the weeks' cases and one more: the cholera beyond the year and the malaria (never an alert) were not read.
    views = audit.read_events(db, None, event_type="national.surveillance.view", since=began)
    assert [e["event"]["detail"]["open_alerts_since"] for e in views[-2:]] == [since.value] * 2
    read = audit.read_events(db, facility.slug, event_type="national.surveillance.read", since=began)[-1]
    shown = sum(n for row in body["weekly"] for n in row["cases"].values())
    assert read["event"]["detail"]["cases"] == shown + 1 and read["event"]["detail"]["open_alerts_since"] == since.value

    form = {"facility": facility.slug, "disease": "cholera", "note": "Called the DSO: case followed up in August",
            "last": current.value, "_csrf_token": _csrf(page)}
    refused = signed_in("clinician", facility.slug)
    landing = re.search(r'name="_csrf_token" value="([^"]+)"', refused.get("/").text)
    assert refused.post("/national/alerts/acknowledge", data={
        **form, "week": weeks["recent"].value, "_csrf_token": landing.group(1) if landing else ""}).status_code == 403
    too_old = analyst.post("/national/alerts/acknowledge", data={**form, "week": weeks["beyond"].value})
    assert too_old.status_code == 404 and f"looks for alerts back to {since.label}" in too_old.text
    assert [row for row in _acknowledgements(db, facility.slug) if row.disease == "cholera"] == []
    done = analyst.post("/national/alerts/acknowledge", data={**form, "week": weeks["recent"].value},
                        follow_redirects=False)
    assert done.status_code in (302, 303) and done.headers["location"] == f"/national/alerts?last={current.value}"
    [kept] = [row for row in _acknowledgements(db, facility.slug) if row.disease == "cholera"]
    assert (kept.week, kept.cases) == (weeks["recent"].value, 1)
    again = analyst.post("/national/alerts/acknowledge", data={**form, "week": weeks["recent"].value})
    assert again.status_code == 409
    assert f'data-alert="{recent}"' not in analyst.get("/national/alerts").text
    assert all(a["facility"] != facility.slug for a in analyst.get("/api/national/alerts").json()["open_from_earlier"])
