"""The fluid balance chart: the fluid day in the facility's zone from the tenant file's hour, KDIGO's oliguria
worked by hand (and not guessed without a weight), the escalation task it raises, the ward worklist's marker,
refusals that write nothing, corrections and lines entered in error, and every route tried with another
facility's credentials, guessed ids and a role without the permission."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from appliance.layers.nursing import fluid
from appliance.substrate import audit
from tests.layers.nursing.conftest import HIGH, NURSING_CONFIG, TZ, admit
from tests.layers.nursing.test_pages import post_form
from tests.layers.nursing.test_routes import API, _call, _json, admitted
from tests.web.test_auth import csrf_token

NAIROBI = TZ
SIX = dt.time(6, 0)


@pytest.fixture(scope="module")
def facility(tenant_factory):
    """The nursing facility with its fluid day starting at 06:00, as its tenant file says."""
    return tenant_factory(name="Fluid Test Facility", nursing={"fluid_day_starts": "06:00"}, **NURSING_CONFIG)


def _at(moment: dt.datetime) -> str:
    return moment.isoformat()


# -- the fluid day -----------------------------------------------------------------------------------


def test_the_fluid_day_turns_at_the_facility_hour_in_its_zone():
    # 06:59 in Nairobi (03:59 UTC) on the 27th is still the 26th's chart when the day starts at 07:00.
    seven = dt.time(7)
    assert fluid.fluid_day(dt.datetime(2026, 11, 27, 3, 59, tzinfo=dt.UTC), NAIROBI, seven) == dt.date(2026, 11, 26)
    assert fluid.fluid_day(dt.datetime(2026, 11, 27, 4, 0, tzinfo=dt.UTC), NAIROBI, seven) == dt.date(2026, 11, 27)
    # 23:30 UTC on the 26th is 02:30 on the 27th in Nairobi: the 26th's chart, whatever the UTC date says.
    assert fluid.fluid_day(dt.datetime(2026, 11, 26, 23, 30, tzinfo=dt.UTC), NAIROBI, SIX) == dt.date(2026, 11, 26)
    start, end = fluid.day_bounds(dt.date(2026, 11, 27), NAIROBI, SIX)
    assert (start, end) == (dt.datetime(2026, 11, 27, 3, tzinfo=dt.UTC), dt.datetime(2026, 11, 28, 3, tzinfo=dt.UTC))


def test_the_tenant_file_sets_the_hour_and_refuses_one_off_the_hour(db, facility):
    from appliance.substrate.tenant_config import NursingConfig

    with db.tenant(facility.slug) as conn:
        assert fluid.day_starts(conn) == SIX
    with pytest.raises(ValueError, match="on the hour"):
        NursingConfig.model_validate({"fluid_day_starts": "06:30"})
    assert NursingConfig().fluid_day_starts == dt.time(7)


def test_lines_fall_on_either_side_of_the_day_boundary_and_the_balance_carries(db, facility, nurse):
    now = dt.datetime.now(dt.UTC)
    today = fluid.fluid_day(now, NAIROBI, SIX)
    start, _ = fluid.day_bounds(today, NAIROBI, SIX)
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, nurse, family="Mwangi")
        pid = patient["id"]
        for direction, route, ml, at in (("intake", "iv", 1000, start - dt.timedelta(hours=3)),
                                         ("output", "urine", 400, start - dt.timedelta(minutes=1)),
                                         ("intake", "oral", 200, start),
                                         ("output", "urine", 350, start)):
            fluid.record_line(conn, nurse, pid, direction=direction, route=route, volume_ml=ml, occurred_at=at,
                              note=None, now=now)
        chart = fluid.chart(conn, nurse, pid, now=now, tz=NAIROBI)
    assert chart["day_starts"] == SIX and chart["today"] == today
    this, before = chart["days"][0], chart["days"][1]
    assert (this["day"], this["intake_ml"], this["output_ml"], this["balance_ml"]) == (today, 200, 350, -150)
    assert (before["intake_ml"], before["output_ml"], before["balance_ml"]) == (1000, 400, 600)
    # Carried across the days shown: +600 yesterday, then -150 today.
    assert (before["cumulative_ml"], this["cumulative_ml"]) == (600, 450)
    assert [line["running_ml"] for line in before["entries"]] == [1000, 600]
    assert this["intake_by_route"] == {"oral": 200} and before["output_by_route"] == {"urine": 400}


# -- oliguria, worked by hand ------------------------------------------------------------------------

T0 = dt.datetime(2026, 11, 27, 6, 0, tzinfo=dt.UTC)


def _hours(*pairs: tuple[int, int]) -> list[tuple[dt.datetime, int]]:
    return [(T0 + dt.timedelta(hours=h), ml) for h, ml in pairs]


def test_oliguria_is_below_half_a_millilitre_per_kilo_per_hour_over_six_hours():
    # 70 kg: 0.5 × 70 × 6 = 210 ml is the least that is not oliguria. The bag emptied at 06:00 starts the chart;
    # 60 + 60 + 60 = 180 ml to 12:00 is 180 / 70 / 6 = 0.428… ml/kg/h.
    urine = _hours((0, 50), (2, 60), (4, 60), (6, 60))
    rate = fluid.urine_rate(urine, T0 + dt.timedelta(hours=6), Decimal("70"))
    assert (rate.judged, rate.oliguric, rate.urine_ml, rate.rate_ml_kg_h) == (True, True, 180, Decimal("0.43"))
    assert "oliguria" in rate.sentence
    # 210 ml is 0.50 ml/kg/h exactly: not below.
    enough = fluid.urine_rate(_hours((0, 50), (3, 100), (6, 110)), T0 + dt.timedelta(hours=6), Decimal("70"))
    assert (enough.judged, enough.oliguric, enough.urine_ml, enough.rate_ml_kg_h) == (True, False, 210, Decimal("0.50"))
    # The 06:00 measurement is the urine before the window: it does not count in it.
    assert fluid.urine_rate(_hours((0, 900), (6, 100)), T0 + dt.timedelta(hours=6), Decimal("70")).oliguric


def test_oliguria_is_not_guessed_without_a_weight_or_six_hours_charted():
    urine = _hours((0, 50), (6, 20))
    no_weight = fluid.urine_rate(urine, T0 + dt.timedelta(hours=6), None)
    assert (no_weight.judged, no_weight.oliguric, no_weight.rate_ml_kg_h) == (False, False, None)
    assert "cannot be judged" in no_weight.sentence and "weight" in no_weight.sentence
    short = fluid.urine_rate(_hours((1, 50), (6, 20)), T0 + dt.timedelta(hours=6), Decimal("70"))
    assert (short.judged, short.oliguric) == (False, False) and "cannot be judged yet" in short.sentence
    assert fluid.urine_rate([], None, Decimal("70")).sentence == "no urine output charted"


# -- over HTTP ---------------------------------------------------------------------------------------


def _fluid_rows(db, facility, patient_id: str) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM fluid JOIN entry ON entry.id = fluid.entry_id "
                                    "WHERE entry.patient_id = :patient"), {"patient": patient_id}).scalar()


def test_an_oliguric_patient_gets_the_flag_the_task_and_the_worklist_marker(db, nurse_api, clinician_api, facility):
    patient = admitted(clinician_api, facility, family="Otieno")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    weighed = nurse_api.post(f"{patient['url']}/vitals", json={"weight_kg": "60.0",
                                                              "encounter_id": patient["encounter_id"]})
    assert weighed.status_code == 201, weighed.text
    # 60 kg: below 180 ml in 6 hours is oliguria; 40 + 40 + 40 = 120 ml is 0.33 ml/kg/h.
    for hours_ago, ml in ((7, 100), (5, 40), (3, 40), (1, 40)):
        line = nurse_api.post(f"{patient['url']}/fluids", json={
            "direction": "output", "route": "urine", "volume_ml": ml,
            "occurred_at": _at(now - dt.timedelta(hours=hours_ago))})
        assert line.status_code == 201, line.text
    intake = nurse_api.post(f"{patient['url']}/fluids", json={"direction": "intake", "route": "iv", "volume_ml": 500,
                                                             "note": "Normal saline"})
    assert intake.status_code == 201 and intake.json()["note"] == "Normal saline"
    chart = nurse_api.get(f"{patient['url']}/fluids").json()
    urine = chart["urine"]
    assert (urine["judged"], urine["oliguric"], urine["urine_ml"], urine["rate_ml_kg_h"]) == (True, True, 120, "0.33")
    tasks = nurse_api.get(f"{patient['url']}/tasks?open_only=true").json()
    [escalation] = [t for t in tasks if t["code"] == "escalation"]
    assert escalation["title"].startswith("Oliguria: urine 0.33 ml/kg/h over 6 h")
    assert "inform the doctor" in escalation["title"]
    # A high NEWS2 raises its own escalation and leaves the oliguria one standing.
    nurse_api.post(f"{patient['url']}/vitals", json=_json(HIGH) | {"encounter_id": patient["encounter_id"]})
    titles = [t["title"] for t in nurse_api.get(f"{patient['url']}/tasks?open_only=true").json()
              if t["code"] == "escalation"]
    assert any(t.startswith("Oliguria") for t in titles) and any(t.startswith("NEWS2") for t in titles)
    # Another oliguric line does not raise a second task.
    nurse_api.post(f"{patient['url']}/fluids", json={"direction": "output", "route": "urine", "volume_ml": 10})
    titles = [t["title"] for t in nurse_api.get(f"{patient['url']}/tasks?open_only=true").json()]
    assert sum(t.startswith("Oliguria") for t in titles) == 1
    listed = nurse_api.get(f"{API.format(tenant=facility.slug)}/nursing/wards/GEN/worklist").json()
    [row] = [p for p in listed["patients"] if p["patient_id"] == patient["id"]]
    assert row["fluid"]["urine"]["oliguric"] is True and row["oliguric"] is True and listed["oliguric"] >= 1
    assert row["fluid"]["intake_ml"] >= 500
    events = {e.event_type for e in audit.patient_access_log(db, facility.slug, uuid.UUID(patient["id"]))}
    assert {"record.fluid.read", "record.fluid.create"} <= events


def test_without_a_weight_the_rate_cannot_be_judged_and_no_task_is_raised(nurse_api, clinician_api, facility):
    patient = admitted(clinician_api, facility, family="Njeri")
    now = dt.datetime.now(dt.UTC)
    for hours_ago, ml in ((7, 20), (1, 20)):
        nurse_api.post(f"{patient['url']}/fluids", json={"direction": "output", "route": "urine", "volume_ml": ml,
                                                        "occurred_at": _at(now - dt.timedelta(hours=hours_ago))})
    urine = nurse_api.get(f"{patient['url']}/fluids").json()["urine"]
    assert (urine["judged"], urine["oliguric"]) == (False, False) and "cannot be judged" in urine["sentence"]
    assert not [t for t in nurse_api.get(f"{patient['url']}/tasks").json() if t["code"] == "escalation"]


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"direction": "output", "route": "urine", "volume_ml": 0}, "volume_ml", "above 0"),
    ({"direction": "output", "route": "urine", "volume_ml": 6000}, "volume_ml", "more than one line"),
    ({"direction": "intake", "route": "urine", "volume_ml": 100}, "route", "urine is an output route"),
    ({"direction": "intake", "route": "tea", "volume_ml": 100}, "route", "choose the route"),
    ({"direction": "intake", "route": "oral", "volume_ml": 100, "occurred_at": "2030-01-01T08:00:00+03:00"},
     "occurred_at", "still to come"),
    ({"direction": "intake", "route": "oral", "volume_ml": 100, "occurred_at": "2026-01-01T08:00:00"},
     "occurred_at", "UTC offset"),
])
def test_a_line_the_chart_cannot_hold_is_refused_in_words_and_nothing_is_written(
        db, nurse_api, clinician_api, facility, body, field, words):
    patient = admitted(clinician_api, facility, family="Onyango")
    refused = nurse_api.post(f"{patient['url']}/fluids", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == field and words in refused.json()["detail"]
    assert _fluid_rows(db, facility, patient["id"]) == 0


def test_a_line_is_corrected_and_entered_in_error(nurse_api, clinician_api, facility):
    patient = admitted(clinician_api, facility, family="Achieng")
    line = nurse_api.post(f"{patient['url']}/fluids", json={"direction": "intake", "route": "oral",
                                                           "volume_ml": 2000}).json()
    corrected = nurse_api.put(f"{patient['url']}/fluids/{line['id']}", json={
        "direction": "intake", "route": "oral", "volume_ml": 200, "occurred_at": line["occurred_at"],
        "reason": "a cup, not a jug"})
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["root_id"] == line["id"]
    assert nurse_api.get(f"{patient['url']}/fluids").json()["days"][0]["intake_ml"] == 200
    # The version corrected is not current any more.
    stale = nurse_api.put(f"{patient['url']}/fluids/{line['id']}", json={
        "direction": "intake", "route": "oral", "volume_ml": 250, "reason": "again"})
    assert stale.status_code == 409
    withdrawn = nurse_api.post(f"{patient['url']}/fluids/{corrected.json()['id']}/entered-in-error",
                               json={"reason": "wrong patient"})
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "entered_in_error"
    assert nurse_api.get(f"{patient['url']}/fluids").json()["days"][0]["intake_ml"] == 0
    # A clinician on the ward round charts too.
    assert clinician_api.post(f"{patient['url']}/fluids", json={"direction": "output", "route": "drain",
                                                               "volume_ml": 80}).status_code == 201


LINE = {"direction": "intake", "route": "oral", "volume_ml": 100}
ROUTES = [("get", "/fluids", None), ("post", "/fluids", LINE)]
LINE_ROUTES = [("put", "/fluids/{id}", LINE | {"reason": "wrong volume"}),
               ("post", "/fluids/{id}/entered-in-error", {"reason": "wrong patient"})]


def test_another_facility_guessed_ids_and_other_roles_are_refused(db, token_client, nurse_api, clinician_api, facility,
                                                                   other_facility):
    patient = admitted(clinician_api, facility, family="Kiprop")
    line = nurse_api.post(f"{patient['url']}/fluids", json=LINE).json()
    outsider = token_client(other_facility.slug, role="nurse")
    registrar = token_client(facility.slug, role="registrar")
    for method, path, body in ROUTES:
        assert _call(outsider, method, patient["url"] + path, body).status_code == 403, path
        theirs = f"{API.format(tenant=other_facility.slug)}/patients/{patient['id']}{path}"
        assert _call(outsider, method, theirs, body).status_code == 404, path
        guessed = f"{API.format(tenant=facility.slug)}/patients/{uuid.uuid4()}{path}"
        assert _call(nurse_api, method, guessed, body).status_code == 404, path
        assert _call(registrar, method, patient["url"] + path, body).status_code == 403, path
    other = admitted(clinician_api, facility, family="Chebet")
    for method, path, body in LINE_ROUTES:
        assert _call(outsider, method, patient["url"] + path.format(id=line["id"]), body).status_code == 403, path
        assert _call(nurse_api, method, patient["url"] + path.format(id=uuid.uuid4()), body).status_code == 404, path
        # This patient's line through another patient's address is not found there.
        assert _call(nurse_api, method, other["url"] + path.format(id=line["id"]), body).status_code == 404, path
        assert _call(registrar, method, patient["url"] + path.format(id=line["id"]), body).status_code == 403, path
    assert _fluid_rows(db, facility, patient["id"]) == 1
    assert nurse_api.get(f"{patient['url']}/fluids").json()["days"][0]["intake_ml"] == 100


# -- the pages ---------------------------------------------------------------------------------------


def test_the_fluid_tab_charts_from_the_bedside_and_the_ward_shows_the_balance(db, signed_in, facility, other_facility,
                                                                            clinician):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Wafula", given="Ann")
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    page = f"/t/{facility.slug}/patients/{patient['id']}/fluids"
    saved = post_form(nurse, page, page, {"line": "intake:iv", "volume_ml": "1000", "note": "Ringer's lactate"})
    assert saved.status_code == 303 and saved.headers["location"].endswith("/fluids?done=fluid")
    post_form(nurse, page, page, {"line": "output:urine", "volume_ml": "300"})
    shown = nurse.get(page).text
    assert 'id="fluid-in">1000 ml' in shown and 'id="fluid-out">300 ml' in shown and "+700 ml" in shown
    assert "Ringer's lactate" in shown.replace("&#39;", "'") and "<script" not in shown.split("</header>")[-1]
    assert "less than 6 hours of urine output charted" in shown
    refused = post_form(nurse, page, page, {"line": "intake:oral", "volume_ml": "9000"})
    assert refused.status_code == 422 and "more than one line of the chart holds" in refused.text
    no_volume = post_form(nurse, page, page, {"line": "output:urine", "volume_ml": ""})
    assert no_volume.status_code == 422 and "whole millilitres" in no_volume.text
    worklist = nurse.get(f"/t/{facility.slug}/ward").text
    row = worklist.split(f'data-patient="{patient["id"]}"')[1].split("</tr>")[0]
    assert "+700 ml today" in row
    # Another facility's nurse, at our address and at theirs, and a guessed id: refused, nothing written.
    intruder = signed_in("nurse", other_facility.slug, ward="GEN")
    token = csrf_token(intruder.get(f"/t/{other_facility.slug}/ward").text)
    for tenant in (facility.slug, other_facility.slug):
        taken = intruder.post(f"/t/{tenant}/patients/{patient['id']}/fluids", follow_redirects=False,
                              data={"line": "intake:oral", "volume_ml": "100", "_csrf_token": token})
        assert taken.status_code in (403, 404) and "Wafula" not in taken.text
        assert intruder.get(f"/t/{tenant}/patients/{patient['id']}/fluids").status_code in (403, 404)
    guessed = post_form(nurse, page, f"/t/{facility.slug}/patients/{uuid.uuid4()}/fluids",
                        {"line": "intake:oral", "volume_ml": "100"})
    assert guessed.status_code == 404
    assert _fluid_rows(db, facility, str(patient["id"])) == 2
