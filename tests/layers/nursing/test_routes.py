"""The nursing API over real HTTP: NEWS2 from vitals recorded through the clinical route, the MAR,
tasks, care plans, the ward worklist and handover — and, from the attacker's side, every route refused
with another facility's credentials, a guessed id, another ward, or a role without the permission."""

from __future__ import annotations

import datetime as dt
import uuid

from appliance.layers.nursing.service import NOT_DEFERRED
from appliance.substrate import audit
from tests.layers.nursing.conftest import HIGH, NORMAL

API = "/api/t/{tenant}"


def _json(values: dict) -> dict:
    return {k: (str(v) if not isinstance(v, (int, bool, str)) else v) for k, v in values.items()}


def admitted(clinician_api, facility, *, ward: str = "GEN", family: str = "Wambui", born: str = "1961-02-14") -> dict:
    base = API.format(tenant=facility.slug)
    patient = clinician_api.post(f"{base}/patients", json={
        "family_name": family, "given_names": "Grace", "birth_date": born, "sex": "female",
        "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}).json()
    encounter = clinician_api.post(f"{base}/patients/{patient['id']}/encounters", json={
        "encounter_class": "inpatient", "status": "in_progress", "ward_code": ward, "reason": "Sepsis"}).json()
    return {"id": patient["id"], "encounter_id": encounter["id"], "url": f"{base}/patients/{patient['id']}"}


def test_vitals_recorded_through_the_clinical_route_are_scored(nurse_api, clinician_api, facility):
    patient = admitted(clinician_api, facility)
    recorded = nurse_api.post(f"{patient['url']}/vitals", json=_json(HIGH) | {"encounter_id": patient["encounter_id"]})
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["consciousness"] == "A" and recorded.json()["supplemental_oxygen"] is True
    [score] = nurse_api.get(f"{patient['url']}/news2").json()
    assert (score["total"], score["risk"], score["escalation"], score["vital_signs_id"]) == (
        9, "high", True, recorded.json()["id"])
    assert score["response"].startswith("Emergency response")
    bad = nurse_api.post(f"{patient['url']}/vitals", json={"consciousness": "Z"})
    assert bad.status_code == 422
    flow_on_air = nurse_api.post(f"{patient['url']}/vitals", json={"oxygen_l_min": "2", "supplemental_oxygen": False})
    assert flow_on_air.status_code == 422 and "oxygen" in flow_on_air.text


def test_a_childs_vitals_on_spo2_scale_2_are_refused_naming_the_field(db, nurse_api, clinician_api, facility):
    """Scale 2 is NEWS2's hypercapnic target for adults; a child's set said to be on it was stored and charted."""
    import sqlalchemy as sa

    born = dt.date.today() - dt.timedelta(days=3 * 365)
    patient = admitted(clinician_api, facility, family="Njeri", born=born.isoformat())
    child_set = {"heart_rate_bpm": 120, "respiratory_rate": 28, "spo2_percent": 90,
                 "encounter_id": patient["encounter_id"]}
    refused = nurse_api.post(f"{patient['url']}/vitals", json=child_set | {"spo2_scale": 2})
    assert refused.status_code == 422 and refused.json()["field"] == "spo2_scale", refused.text
    assert "scale 2 is not used under 16 years of age" in refused.json()["detail"]
    with db.tenant(facility.slug) as conn:  # nothing of the refused set was written
        assert conn.execute(sa.text("SELECT count(*) FROM entry WHERE patient_id = :id AND kind = 'vital_signs'"),
                            {"id": patient["id"]}).scalar() == 0
    assert nurse_api.post(f"{patient['url']}/vitals", json=child_set).status_code == 201


def test_a_childs_muac_and_oedema_are_sent_and_read_over_the_api_and_refused_of_an_adult(
        db, nurse_api, clinician_api, facility):
    """An integrator charting a child's observations sends MUAC and the graded oedema with the set and reads
    them back, with the set's PEWS, from the nursing API; of an adult the record refuses them, as the ward's
    form does, naming the field and writing nothing; both are described in the OpenAPI document."""
    import sqlalchemy as sa

    born = dt.date.today() - dt.timedelta(days=2 * 365)
    child = admitted(clinician_api, facility, family="Atieno", born=born.isoformat())
    recorded = nurse_api.post(f"{child['url']}/vitals", json={
        "heart_rate_bpm": 128, "respiratory_rate": 30, "muac_mm": 112, "oedema": True, "oedema_grade": 2,
        "encounter_id": child["encounter_id"]})
    assert recorded.status_code == 201, recorded.text
    listed = nurse_api.get(f"{child['url']}/observations")
    assert listed.status_code == 200, listed.text
    [charted] = listed.json()
    assert (charted["id"], charted["muac_mm"], charted["oedema"], charted["oedema_grade"]) == (
        recorded.json()["id"], 112, True, 2)
    assert charted["news2"] is None and charted["pews"]["vital_signs_id"] == charted["id"]
    assert charted["pews"]["age_band"] == "1-4y"
    events = {e.event_type for e in audit.patient_access_log(db, facility.slug, uuid.UUID(child["id"]))}
    assert "record.vital_signs.read" in events

    adult = admitted(clinician_api, facility, family="Otieno")
    for sent, field in [({"muac_mm": 240}, "muac_mm"), ({"oedema": True, "oedema_grade": 1}, "oedema")]:
        refused = nurse_api.post(f"{adult['url']}/vitals", json={"heart_rate_bpm": 80, **sent})
        assert refused.status_code == 422 and refused.json()["field"] == field, refused.text
        assert "recorded to screen a child under 16 for acute malnutrition" in refused.json()["detail"]
    with db.tenant(facility.slug) as conn:  # neither refused set was written, nor its pulse
        assert conn.execute(sa.text("SELECT count(*) FROM entry WHERE patient_id = :id AND kind = 'vital_signs'"),
                            {"id": adult["id"]}).scalar() == 0
    assert nurse_api.get(f"{adult['url']}/observations").json() == []

    schema = nurse_api.get("/schema/openapi.json").json()
    read = schema["paths"]["/api/t/{tenant}/patients/{patient_id}/observations"]["get"]
    assert read["operationId"] == "NursingListObservations"
    shapes = schema["components"]["schemas"]
    described = {name: shapes["ObservationSetOut"]["properties"][name].get("description", "")
                 for name in ("muac_mm", "oedema", "oedema_grade")}
    assert "mid-upper-arm circumference" in described["muac_mm"] and "(++)" in described["oedema_grade"]
    sent_as = next(shape for name, shape in shapes.items() if name.startswith("VitalSignsIn"))
    assert "under 16" in sent_as["properties"]["muac_mm"]["description"]


def test_a_pregnant_womans_vitals_get_a_meows_over_http(db, nurse_api, clinician_api, facility):
    patient = admitted(clinician_api, facility, ward="MAT", family="Nekesa")
    pregnant = clinician_api.post(f"{patient['url']}/problems", json={"code": "O14.1"})
    assert pregnant.status_code == 201, pregnant.text
    recorded = nurse_api.post(f"{patient['url']}/vitals", json=_json(NORMAL) | {
        "systolic_mmhg": 158, "diastolic_mmhg": 104, "encounter_id": patient["encounter_id"]})
    assert recorded.status_code == 201, recorded.text
    assert nurse_api.get(f"{patient['url']}/news2").json() == []
    [score] = nurse_api.get(f"{patient['url']}/meows").json()
    assert score["vital_signs_id"] == recorded.json()["id"]
    assert score["triggers"] == {"systolic": "yellow", "diastolic": "red"}
    assert (score["risk"], score["escalation"], score["summary"]) == ("triggered", True, "1 red, 1 yellow")
    assert score["response"].startswith("Urgent obstetric review: one red or two yellow triggers; the obstetric")
    assert score["missing"] == [] and score["complete"]
    worklist = clinician_api.get(f"{API.format(tenant=facility.slug)}/nursing/wards/MAT/worklist")
    assert worklist.status_code == 200, worklist.text
    mine = next(p for p in worklist.json()["patients"] if p["patient_id"] == patient["id"])
    assert mine["news2"] is None and mine["meows"]["risk"] == "triggered"
    assert mine["news2_exclusion"]["maternity"] and mine["news2_exclusion"]["label"] == "pregnancy"
    assert [t["title"] for t in mine["tasks"] if t["code"] == "escalation"] == [
        "MEOWS 1 red, 1 yellow — Urgent obstetric review"]
    events = {e.event_type for e in audit.patient_access_log(db, facility.slug, uuid.UUID(patient["id"]))}
    assert {"record.meows.read", "record.meows.create"} <= events


def test_a_childs_vitals_get_a_pews_over_http(db, nurse_api, clinician_api, facility):
    born = dt.date.today() - dt.timedelta(days=5 * 30)  # five months: the 3–12 months band
    patient = admitted(clinician_api, facility, family="Kiprono", born=born.isoformat())
    recorded = nurse_api.post(f"{patient['url']}/vitals", json={
        "heart_rate_bpm": 172, "respiratory_rate": 82, "spo2_percent": 90, "supplemental_oxygen": True,
        "oxygen_l_min": "1", "temperature_c": "38.6", "encounter_id": patient["encounter_id"]})
    assert recorded.status_code == 201, recorded.text
    assert nurse_api.get(f"{patient['url']}/news2").json() == []
    [score] = nurse_api.get(f"{patient['url']}/pews").json()
    assert (score["vital_signs_id"], score["age_band"], score["age_label"]) == (
        recorded.json()["id"], "3-12m", "3–12 months")
    assert score["scores"] == {"pulse": 2, "respiration": 4, "spo2": 2, "oxygen_therapy": 2}
    assert (score["total"], score["risk"], score["escalation"]) == (10, "triggered", True)
    assert score["missing"] == ["systolic"] and score["not_recorded"] == ["capillary_refill", "respiratory_effort"]
    assert score["response"].startswith("Urgent paediatric review: PEWS 8 or more")
    worklist = nurse_api.get(f"{API.format(tenant=facility.slug)}/nursing/wards/GEN/worklist")
    assert worklist.status_code == 200, worklist.text
    mine = next(p for p in worklist.json()["patients"] if p["patient_id"] == patient["id"])
    assert mine["news2"] is None and mine["pews"]["total"] == 10
    assert mine["news2_exclusion"]["paediatric"] and mine["news2_exclusion"]["age_band"] == "3-12m"
    assert [t["title"] for t in mine["tasks"] if t["code"] == "escalation"] == [
        "PEWS 10 — Urgent paediatric review"]
    handover = nurse_api.get(f"{API.format(tenant=facility.slug)}/nursing/wards/GEN/handover").json()
    kept = next(p for p in handover["patients"] if p["patient_id"] == patient["id"])
    assert (kept["pews"]["latest"], kept["pews"]["latest_risk"], kept["pews"]["age_band"]) == (
        10, "triggered", "3–12 months")
    events = {e.event_type for e in audit.patient_access_log(db, facility.slug, uuid.UUID(patient["id"]))}
    assert {"record.pews.read", "record.pews.create"} <= events


def test_the_mar_over_http(nurse_api, clinician_api, facility):
    patient = admitted(clinician_api, facility)
    rx = clinician_api.post(f"{patient['url']}/medications", json={
        "drug": "Ceftriaxone", "dose": 1, "dose_unit": "g", "route": "IV", "frequency": "once daily",
        "duration_days": 5, "encounter_id": patient["encounter_id"]}).json()
    prn = clinician_api.post(f"{patient['url']}/medications", json={
        "drug": "Paracetamol", "dose": 1, "dose_unit": "g", "route": "oral", "frequency": "every 6 hours as needed",
    }).json()
    mar = nurse_api.get(f"{patient['url']}/mar", params={"until": (dt.datetime.now(dt.UTC)
                                                                   + dt.timedelta(days=2)).isoformat()})
    assert mar.status_code == 200, mar.text
    lines = {line["drug"]: line for line in mar.json()["lines"]}
    assert lines["Ceftriaxone"]["regimen"] == "daily" and len(lines["Ceftriaxone"]["doses"]) >= 1
    assert lines["Paracetamol"]["scheduled"] is False
    slot = lines["Ceftriaxone"]["doses"][0]["scheduled_for"]
    held = nurse_api.post(f"{patient['url']}/mar", json={"medication_request_id": rx["id"], "scheduled_for": slot,
                                                         "outcome": "held", "reason": "awaiting IV access"})
    assert held.status_code == 201, held.text
    assert held.json()["outcome"] == "held" and held.json()["reason"] == "awaiting IV access"
    again = nurse_api.post(f"{patient['url']}/mar", json={"medication_request_id": rx["id"], "scheduled_for": slot,
                                                          "outcome": "held", "reason": "twice"})
    assert again.status_code == 409
    no_reason = nurse_api.post(f"{patient['url']}/mar", json={"medication_request_id": rx["id"],
                                                              "scheduled_for": slot, "outcome": "refused"})
    assert no_reason.status_code == 422 and "say why" in no_reason.json()["detail"]
    given = nurse_api.post(f"{patient['url']}/mar", json={"medication_request_id": prn["id"], "outcome": "given"})
    assert given.status_code == 201 and given.json()["dose"] == "1"
    withdrawn = nurse_api.post(f"{patient['url']}/mar/{held.json()['id']}/entered-in-error",
                               json={"reason": "recorded on the wrong patient"})
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "entered_in_error"
    naive = nurse_api.get(f"{patient['url']}/mar", params={"since": "2026-11-20T00:00:00"})
    assert naive.status_code == 422 and naive.json()["field"] == "since"


def test_tasks_over_http(nurse_api, clinician_api, facility):
    patient = admitted(clinician_api, facility)
    order = clinician_api.post(f"{patient['url']}/orders", json={"code": "58410-2", "priority": "stat"})
    assert order.status_code == 201
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).isoformat()
    added = nurse_api.post(f"{patient['url']}/tasks", json={"title": "Pressure area care", "due_at": due})
    assert added.status_code == 201 and added.json()["code"] == "other"
    tasks = nurse_api.get(f"{patient['url']}/tasks", params={"open_only": True}).json()
    assert {t["title"] for t in tasks} == {"Collect specimen: Full blood count (stat)", "Pressure area care",
                                           "Admission assessment", "Observations due (first set on admission)"}
    specimen = next(t for t in tasks if t["code"] == "collect_specimen")
    url = f"{patient['url']}/tasks/{specimen['id']}/status"
    assert nurse_api.post(url, json={"status": "cancelled"}).status_code == 422  # why?
    done = nurse_api.post(url, json={"status": "done", "note": "sample sent to the lab 10:05"})
    assert done.status_code == 200 and done.json()["status"] == "done"
    assert nurse_api.post(url, json={"status": "done"}).status_code == 409  # not the current version any more
    still_open = nurse_api.get(f"{patient['url']}/tasks", params={"open_only": True}).json()
    assert "collect_specimen" not in {t["code"] for t in still_open} and len(still_open) == 3


def test_a_task_is_deferred_with_why_over_http(nurse_api, clinician_api, facility):
    """A specimen that cannot be taken now (the patient is in theatre) waits, with why, still open; the
    tasks that follow a score cannot wait."""
    patient = admitted(clinician_api, facility, family="Kiptoo")
    assert clinician_api.post(f"{patient['url']}/orders", json={"code": "58410-2"}).status_code == 201
    assert nurse_api.post(f"{patient['url']}/vitals", json=_json(HIGH) | {
        "encounter_id": patient["encounter_id"]}).status_code == 201
    tasks = {t["code"]: t for t in nurse_api.get(f"{patient['url']}/tasks", params={"open_only": True}).json()}
    specimen = tasks["collect_specimen"]
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=5)).replace(microsecond=0)  # it was due in 4
    url = f"{patient['url']}/tasks/{specimen['id']}/defer"
    deferred = nurse_api.post(url, json={"until": later.isoformat(), "note": "in theatre until 11:00"})
    assert deferred.status_code == 200, deferred.text
    moved = deferred.json()
    assert (moved["status"], moved["note"], moved["root_id"]) == ("open", "in theatre until 11:00", specimen["root_id"])
    assert dt.datetime.fromisoformat(moved["due_at"]) == later and not moved["overdue"]
    again = f"{patient['url']}/tasks/{moved['id']}/defer"
    for until, said in [(later.replace(tzinfo=None), "UTC offset"), (later + dt.timedelta(days=2), "24 hours"),
                        (later - dt.timedelta(hours=6), "still to come"),
                        (later - dt.timedelta(hours=1), "already: defer it to a later time")]:
        refused = nurse_api.post(again, json={"until": until.isoformat(), "note": "later"})
        assert refused.status_code == 422 and refused.json()["field"] == "until", refused.text
        assert said in refused.json()["detail"], refused.text
    assert nurse_api.post(again, json={"until": later.isoformat()}).status_code in (400, 422)  # no reason
    for code in ("observations", "escalation"):
        refused = nurse_api.post(f"{patient['url']}/tasks/{tasks[code]['id']}/defer",
                                 json={"until": later.isoformat(), "note": "busy"})
        assert (refused.status_code, refused.json()["detail"]) == (409, NOT_DEFERRED[code]), refused.text
    assert nurse_api.post(url, json={"until": later.isoformat(), "note": "x" * 5}).status_code == 409  # superseded


def test_care_plans_over_http(nurse_api, clinician_api, facility):
    patient = admitted(clinician_api, facility)
    plan = nurse_api.post(f"{patient['url']}/care-plans", json={
        "problem": "Risk of pressure ulcer (Waterlow 18)", "goal": "Skin intact at discharge",
        "interventions": ["Reposition two-hourly", "Pressure-relieving mattress", "  Daily skin check  "]})
    assert plan.status_code == 201, plan.text
    assert plan.json()["interventions"][2] == "Daily skin check"
    url = f"{patient['url']}/care-plans/{plan.json()['id']}"
    body = plan.json() | {"status": "achieved"}
    body = {k: body[k] for k in ("problem", "goal", "interventions", "status")}
    assert nurse_api.put(url, json=body).status_code == 422  # achieved needs the evaluation
    evaluated = nurse_api.put(url, json=body | {"evaluation": "Skin intact on day 6", "reason": "evaluated"})
    assert evaluated.status_code == 200 and evaluated.json()["status"] == "achieved"
    assert evaluated.json()["root_id"] == plan.json()["id"]
    stale = nurse_api.put(url, json=body | {"evaluation": "again"})
    assert stale.status_code == 409
    [current] = nurse_api.get(f"{patient['url']}/care-plans").json()
    assert current["evaluation"] == "Skin intact on day 6"
    empty = nurse_api.post(f"{patient['url']}/care-plans", json={"problem": "Pain", "goal": "Comfortable",
                                                                 "interventions": []})
    assert empty.status_code == 422


def test_the_ward_worklist_puts_escalations_first(signed_in, nurse_api, clinician_api, facility):
    calm = admitted(clinician_api, facility, family="Achola")
    sick = admitted(clinician_api, facility, family="Barasa")
    elsewhere = admitted(clinician_api, facility, ward="MAT", family="Chebet")
    for patient, values in ((calm, NORMAL), (sick, HIGH), (elsewhere, HIGH)):
        assert nurse_api.post(f"{patient['url']}/vitals", json=_json(values)
                              | {"encounter_id": patient["encounter_id"]}).status_code == 201
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    worklist = nurse.get(f"{API.format(tenant=facility.slug)}/nursing/wards/GEN/worklist")
    assert worklist.status_code == 200, worklist.text
    listed = worklist.json()["patients"]
    ids = [p["patient_id"] for p in listed]
    assert sick["id"] in ids and calm["id"] in ids and elsewhere["id"] not in ids
    assert listed[0]["news2"]["risk"] == "high"  # escalations first
    top = next(p for p in listed if p["patient_id"] == sick["id"])
    assert top["news2"]["total"] == 9 and any(t["code"] == "escalation" for t in top["tasks"])
    assert worklist.json()["escalations"] >= 1
    # Her own ward only; and the list read is in each listed patient's access log.
    assert nurse.get(f"{API.format(tenant=facility.slug)}/nursing/wards/MAT/worklist").status_code == 403
    assert nurse.get(f"{API.format(tenant=facility.slug)}/nursing/wards/NOPE/worklist").status_code == 403
    clinician = signed_in("clinician", facility.slug)
    assert clinician.get(f"{API.format(tenant=facility.slug)}/nursing/wards/MAT/worklist").status_code == 200
    assert clinician.get(f"{API.format(tenant=facility.slug)}/nursing/wards/NOPE/worklist").status_code == 404


def test_handover_is_built_and_kept(db, signed_in, nurse_api, clinician_api, facility):
    patient = admitted(clinician_api, facility, family="Dida")
    nurse_api.post(f"{patient['url']}/vitals", json=_json(HIGH) | {"encounter_id": patient["encounter_id"]})
    nurse_api.post(f"{patient['url']}/care-plans", json={"problem": "Sepsis", "goal": "Afebrile in 48 h",
                                                         "interventions": ["IV antibiotics on time"]})
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    url = f"{API.format(tenant=facility.slug)}/nursing/wards/GEN/handover"
    summary = nurse.get(url)
    assert summary.status_code == 200, summary.text
    mine = next(p for p in summary.json()["patients"] if p["patient_id"] == patient["id"])
    assert mine["news2"]["latest"] == 9 and mine["news2"]["sets_in_shift"] == 1
    assert mine["care_plans"][0]["goal"] == "Afebrile in 48 h"
    assert any(t["title"].startswith("NEWS2 9") for t in mine["open_tasks"])
    kept = nurse_api.post(url, json={"note": "Bed 3 escalated to the registrar at 14:10"})
    assert kept.status_code == 201 and kept.json()["id"]
    start = summary.json()["shift_start"]
    bad = nurse.get(url, params={"shift_start": start, "shift_end": start})
    assert bad.status_code == 422
    events = {e.event_type for e in audit.patient_access_log(db, facility.slug, uuid.UUID(patient["id"]))}
    assert {"record.handover.read", "record.news2.create"} <= events


# -- from the attacker's side ------------------------------------------------------------------------

PATIENT_ROUTES = [
    ("get", "/news2", None), ("get", "/meows", None), ("get", "/mar", None), ("get", "/tasks", None),
    ("get", "/care-plans", None),
    ("post", "/mar", {"medication_request_id": str(uuid.uuid4()), "outcome": "given"}),
    ("post", "/tasks", {"title": "Turn patient", "due_at": "2030-01-01T08:00:00+00:00"}),
    ("post", "/care-plans", {"problem": "Pain", "goal": "Comfortable", "interventions": ["Analgesia"]}),
    ("get", "/pews", None), ("get", "/observations", None),
]
ENTRY_ROUTES = [
    ("post", "/mar/{id}/entered-in-error", {"reason": "mistake"}),
    ("post", "/tasks/{id}/status", {"status": "done"}),
    ("post", "/tasks/{id}/defer", {"until": "2030-01-01T08:00:00+00:00", "note": "in theatre"}),
    ("put", "/care-plans/{id}", {"problem": "Pain", "goal": "Comfortable", "interventions": ["Analgesia"]}),
]
WARD_ROUTES = [("get", "/worklist", None), ("get", "/handover", None), ("post", "/handover", {})]


def _call(client, method: str, url: str, body: dict | None):
    return getattr(client, method)(url, **({"json": body} if body is not None else {}))


def test_another_facility_is_refused_every_route(token_client, clinician_api, facility, other_facility):
    patient = admitted(clinician_api, facility, family="Ekal")
    outsider = token_client(other_facility.slug, role="nurse")
    for method, path, body in PATIENT_ROUTES:
        # Their credentials at our URL: refused by the guard.
        assert _call(outsider, method, patient["url"] + path, body).status_code == 403, path
        # Our patient's id at their own facility: no such patient in their schema.
        theirs = f"{API.format(tenant=other_facility.slug)}/patients/{patient['id']}{path}"
        assert _call(outsider, method, theirs, body).status_code == 404, path
    for method, path, body in ENTRY_ROUTES:
        assert _call(outsider, method, patient["url"] + path.format(id=uuid.uuid4()), body).status_code == 403
    for method, path, body in WARD_ROUTES:
        url = f"{API.format(tenant=facility.slug)}/nursing/wards/GEN{path}"
        assert _call(outsider, method, url, body).status_code == 403, path


def test_guessed_ids_find_nothing(nurse_api, clinician_api, facility):
    patient = admitted(clinician_api, facility, family="Fundi")
    guessed = f"{API.format(tenant=facility.slug)}/patients/{uuid.uuid4()}"
    for method, path, body in PATIENT_ROUTES:
        assert _call(nurse_api, method, guessed + path, body).status_code == 404, path
    for method, path, body in ENTRY_ROUTES:
        refused = _call(nurse_api, method, patient["url"] + path.format(id=uuid.uuid4()), body)
        assert refused.status_code in (404, 422), (path, refused.text)
        assert refused.status_code == 404 or refused.json().get("field") != "patient_id"
    # Another patient's entry through this patient's URL is not found either.
    other = admitted(clinician_api, facility, family="Gitau")
    plan = nurse_api.post(f"{other['url']}/care-plans", json={"problem": "Falls risk", "goal": "No falls",
                                                              "interventions": ["Bed rails"]}).json()
    moved = nurse_api.put(f"{patient['url']}/care-plans/{plan['id']}", json={
        "problem": "Falls risk", "goal": "No falls", "interventions": ["Bed rails"]})
    assert moved.status_code == 404


def test_a_nurse_on_another_ward_needs_to_break_the_glass(signed_in, clinician_api, facility):
    patient = admitted(clinician_api, facility, ward="MAT", family="Haji")
    gen_nurse = signed_in("nurse", facility.slug, ward="GEN")
    refused = gen_nurse.get(f"{patient['url']}/news2")
    assert refused.status_code == 403 and refused.json()["break_glass_required"] is True
    opened = gen_nurse.get(f"{patient['url']}/news2", headers={"x-break-glass-reason": "covering maternity tonight"})
    assert opened.status_code == 200


def test_each_route_declares_its_permission(token_client, clinician_api, facility):
    patient = admitted(clinician_api, facility, family="Ilado")
    registrar = token_client(facility.slug, role="registrar")
    for method, path, body in PATIENT_ROUTES:
        assert _call(registrar, method, patient["url"] + path, body).status_code == 403, path
    for method, path, body in WARD_ROUTES:
        url = f"{API.format(tenant=facility.slug)}/nursing/wards/GEN{path}"
        assert _call(registrar, method, url, body).status_code == 403, path
    # Clinicians read the nursing record but do not chart on it.
    assert clinician_api.get(f"{patient['url']}/mar").status_code == 200
    assert clinician_api.post(f"{patient['url']}/care-plans", json=PATIENT_ROUTES[6][2]).status_code == 403
