"""Diet orders, nil by mouth before theatre and the kitchen's list: the fasting times worked by hand around midnight in
the facility's zone, a new order followed from its start and a correction replacing, the list's allergy, nil-by-mouth
and no-order rows, refusals that write nothing, the ward board's diet, and every route tried with another facility's
credentials, guessed ids and a role without the permission."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.nursing import diet
from appliance.substrate import audit
from tests.layers.nursing.conftest import NURSING_CONFIG, TZ
from tests.layers.nursing.test_routes import API, _call, admitted

UTC = dt.UTC


@pytest.fixture(scope="module")
def facility(tenant_factory):
    """The nursing facility with a theatre and its meals at the tenant file's hours (breakfast 07:00)."""
    return tenant_factory(name="Diet Test Facility", theatres=[{"code": "TH1", "name": "Theatre 1"}],
                          nursing={"breakfast": "07:00", "lunch": "12:30", "supper": "18:00"}, **NURSING_CONFIG)


def _local(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=TZ)


# -- nil by mouth, worked by hand --------------------------------------------------------------------


def test_fasting_for_an_operation_just_after_midnight_starts_the_evening_before_in_the_facilitys_zone():
    # Nairobi is UTC+3. An operation planned at 01:00 on the 28th (22:00 UTC on the 27th): food stops at 19:00 on
    # the 27th, clear fluids at 23:00 on the 27th, both local.
    planned = _local(28, 1)
    assert planned.astimezone(UTC) == dt.datetime(2026, 11, 27, 22, tzinfo=UTC)
    assert diet.fasting_state(planned, _local(27, 18)) is None  # supper at 18:00 is 7 hours before: served
    assert diet.fasting_state(planned, _local(27, 18, 59)) is None
    assert diet.fasting_state(planned, _local(27, 19)) == "clear_fluids_only"
    assert diet.fasting_state(planned, _local(27, 22, 59)) == "clear_fluids_only"
    assert diet.fasting_state(planned, _local(27, 23)) == "nil_by_mouth"
    assert diet.fasting_state(planned, _local(28, 0, 30)) == "nil_by_mouth"
    # A case left scheduled is fasted for until 12 hours past its planned start, then no longer.
    assert diet.fasting_state(planned, _local(28, 12, 59)) == "nil_by_mouth"
    assert diet.fasting_state(planned, _local(28, 13)) is None
    # Breakfast at 07:00 local on the 28th is 01:00 UTC... on the 28th too: the meal's moment is the local date's.
    assert diet.meal_moment(dt.date(2026, 11, 28), dt.time(7), TZ) == dt.datetime(2026, 11, 28, 4, tzinfo=UTC)
    # An 08:00 operation: breakfast at 07:00 is 1 hour before (nothing by mouth); one at 13:00: 6 hours before,
    # so clear fluids only and no tray; one at 13:01: breakfast is 6 h 1 min before, served.
    breakfast = diet.meal_moment(dt.date(2026, 11, 28), dt.time(7), TZ)
    assert diet.fasting_state(_local(28, 8), breakfast) == "nil_by_mouth"
    assert diet.fasting_state(_local(28, 13), breakfast) == "clear_fluids_only"
    assert diet.fasting_state(_local(28, 13, 1), breakfast) is None


def test_a_named_meal_without_a_day_is_its_next_serving_so_supper_asked_after_supper_is_tomorrows(db, facility):
    # Found by CI at 18:00 Nairobi time: the kitchen's supper list, asked for after supper, listed tonight's (already
    # eaten, before the order written a minute ago started) instead of tomorrow's the kitchen was preparing.
    with db.tenant(facility.slug) as conn:
        assert diet.next_meal(conn, _local(27, 17, 59), TZ, "supper") == ("supper", dt.date(2026, 11, 27))
        assert diet.next_meal(conn, _local(27, 18), TZ, "supper") == ("supper", dt.date(2026, 11, 28))
        assert diet.next_meal(conn, _local(27, 23, 59), TZ, "breakfast") == ("breakfast", dt.date(2026, 11, 28))
        assert diet.next_meal(conn, _local(27, 6, 59), TZ, "breakfast") == ("breakfast", dt.date(2026, 11, 27))
        # Unnamed: the next meal of all, today's or tomorrow's breakfast.
        assert diet.next_meal(conn, _local(27, 12, 30), TZ) == ("supper", dt.date(2026, 11, 27))
        assert diet.next_meal(conn, _local(27, 18, 1), TZ) == ("breakfast", dt.date(2026, 11, 28))
        with pytest.raises(diet.Invalid, match="choose the meal"):
            diet.next_meal(conn, _local(27, 12), TZ, "elevenses")


def _version(diet_code: str, starts: dt.datetime, ends: dt.datetime | None = None, corrects: bool = False) -> dict:
    return {"diet": diet_code, "starts_at": starts, "ends_at": ends, "corrects": corrects, "also": [],
            "iddsi_level": None}


def test_a_new_order_is_followed_from_its_start_and_a_correction_replaces_the_one_before():
    normal = _version("normal", _local(27, 8))
    npo_from_midnight = _version("npo", _local(28, 0))
    chain = [normal, npo_from_midnight]
    assert diet.in_force(chain, _local(27, 18))["diet"] == "normal"  # tonight's supper as it was
    assert diet.in_force(chain, _local(28, 7))["diet"] == "npo"
    # A correction starting later replaces the order it corrects outright: nothing ordered before its start.
    corrected = [normal, _version("soft", _local(28, 0), corrects=True)]
    assert diet.in_force(corrected, _local(27, 18)) is None
    assert diet.in_force(corrected, _local(28, 7))["diet"] == "soft"
    # An order that has ended leaves no diet.
    assert diet.in_force([_version("renal", _local(27, 8), _local(27, 12))], _local(27, 18)) is None


# -- over HTTP ---------------------------------------------------------------------------------------


def _diet_rows(db, facility, patient_id: str) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM entry WHERE kind = 'diet_order' AND patient_id = :p"),
                            {"p": patient_id}).scalar()


def test_an_order_is_placed_followed_corrected_and_entered_in_error(db, nurse_api, clinician_api, facility):
    patient = admitted(clinician_api, facility, family="Barasa")
    first = clinician_api.post(f"{patient['url']}/diet", json={"diet": "diabetic", "also": ["halal"],
                                                               "iddsi_level": 6, "note": "no sugar in tea"})
    assert first.status_code == 201, first.text
    assert first.json()["label"] == "Diabetic, halal; IDDSI 6 Soft and bite-sized"
    tomorrow = (dt.datetime.now(UTC) + dt.timedelta(days=1)).replace(microsecond=0)
    later = nurse_api.post(f"{patient['url']}/diet", json={"diet": "npo", "starts_at": tomorrow.isoformat()})
    assert later.status_code == 201 and later.json()["root_id"] == first.json()["id"], later.text
    shown = nurse_api.get(f"{patient['url']}/diet").json()
    assert shown["current"]["diet"] == "diabetic" and shown["upcoming"]["diet"] == "npo"
    assert [v["diet"] for v in shown["history"]] == ["npo", "diabetic"]
    # The version a correction names must be the current one.
    stale = nurse_api.put(f"{patient['url']}/diet/{first.json()['id']}", json={"diet": "renal", "reason": "again"})
    assert stale.status_code == 409, stale.text
    corrected = nurse_api.put(f"{patient['url']}/diet/{later.json()['id']}", json={
        "diet": "clear_liquid", "reason": "clear fluids, not nil by mouth: the theatre list changed"})
    assert corrected.status_code == 200 and corrected.json()["corrects"] is True, corrected.text
    assert nurse_api.get(f"{patient['url']}/diet").json()["current"]["diet"] == "clear_liquid"
    withdrawn = nurse_api.post(f"{patient['url']}/diet/{corrected.json()['id']}/entered-in-error",
                               json={"reason": "wrong patient"})
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "entered_in_error"
    after = nurse_api.get(f"{patient['url']}/diet").json()
    assert (after["current"], after["label"], len(after["history"])) == (None, "No diet ordered", 4)
    events = {e.event_type for e in audit.patient_access_log(db, facility.slug, uuid.UUID(patient["id"]))}
    assert {"record.diet_order.read", "record.diet_order.create"} <= events


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"diet": "chocolate"}, "diet", "not a diet the kitchen knows"),
    ({"diet": "npo", "also": ["halal"]}, "also", "nothing is combined"),
    ({"diet": "npo", "iddsi_level": 4}, "iddsi_level", "no IDDSI texture"),
    ({"diet": "soft", "iddsi_level": 9}, "iddsi_level", "0 (thin) to 7"),
    ({"diet": "renal", "starts_at": "2026-12-01T08:00:00+03:00", "ends_at": "2026-11-30T08:00:00+03:00"},
     "ends_at", "ends"),
    ({"diet": "renal", "starts_at": "2026-12-01T08:00:00"}, "starts_at", "UTC offset"),
])
def test_an_order_the_kitchen_cannot_follow_is_refused_in_words_and_nothing_is_written(
        db, nurse_api, clinician_api, facility, body, field, words):
    patient = admitted(clinician_api, facility, family="Odhiambo")
    if "starts_at" in body and "+" in body["starts_at"]:  # within the 14 days an order may start ahead
        start = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(days=1)
        body = body | {"starts_at": start.isoformat(), "ends_at": (start - dt.timedelta(hours=1)).isoformat()}
    refused = nurse_api.post(f"{patient['url']}/diet", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == field and words in refused.json()["detail"]
    assert _diet_rows(db, facility, patient["id"]) == 0


def test_an_outpatient_has_no_diet_order(db, nurse_api, clinician_api, facility):
    base = API.format(tenant=facility.slug)
    patient = clinician_api.post(f"{base}/patients", json={
        "family_name": "Mutua", "given_names": "Jane", "birth_date": "1980-01-01", "sex": "female",
        "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}).json()
    clinician_api.post(f"{base}/patients/{patient['id']}/encounters", json={
        "encounter_class": "outpatient", "status": "in_progress", "reason": "Review"})
    refused = clinician_api.post(f"{base}/patients/{patient['id']}/diet", json={"diet": "normal"})
    assert refused.status_code == 422 and "not admitted" in refused.json()["detail"], refused.text
    assert _diet_rows(db, facility, patient["id"]) == 0


def test_the_kitchen_list_flags_food_allergies_fasting_and_patients_without_an_order(
        db, nurse_api, clinician_api, facility):
    now = dt.datetime.now(UTC)
    tomorrow = (now.astimezone(TZ) + dt.timedelta(days=1)).date()
    diabetic = admitted(clinician_api, facility, ward="MAT", family="Akinyi")
    clinician_api.post(f"{diabetic['url']}/diet", json={"diet": "diabetic", "iddsi_level": 5})
    for allergy in ({"substance": "Peanut", "category": "food", "criticality": "high"},
                    {"substance": "Penicillin", "category": "medication", "criticality": "high"}):
        made = clinician_api.post(f"{diabetic['url']}/allergies", json=allergy)
        assert made.status_code == 201, made.text
    unordered = admitted(clinician_api, facility, ward="MAT", family="Cherono")
    theatre = admitted(clinician_api, facility, ward="MAT", family="Wekesa")
    clinician_api.post(f"{theatre['url']}/diet", json={"diet": "normal"})
    # Planned at 10:00 tomorrow: breakfast at 07:00 is 3 hours before, so no tray (clear fluids until 08:00).
    booked = clinician_api.post(f"{theatre['url']}/surgery", json={
        "procedure": "Open reduction of fractured femur", "planned_at": dt.datetime.combine(
            tomorrow, dt.time(10), tzinfo=TZ).isoformat(), "theatre": "TH1", "surgeon": "Dr Ouma",
        "urgency": "elective", "anaesthesia": "spinal", "encounter_id": theatre["encounter_id"]})
    assert booked.status_code == 201, booked.text
    url = f"{API.format(tenant=facility.slug)}/kitchen?meal=breakfast&date={tomorrow.isoformat()}&ward=MAT"
    answer = clinician_api.get(url)
    assert answer.status_code == 200, answer.text
    [ward] = answer.json()["wards"]
    rows = {r["patient_id"]: r for r in ward["patients"]}
    assert answer.json()["served_at"] == dt.datetime.combine(tomorrow, dt.time(7), tzinfo=TZ).astimezone(
        UTC).isoformat().replace("+00:00", "Z")
    assert (rows[diabetic["id"]]["label"], rows[diabetic["id"]]["texture"], rows[diabetic["id"]]["food_allergies"],
            rows[diabetic["id"]]["nil_by_mouth"]) == ("Diabetic; IDDSI 5 Minced and moist", "5 Minced and moist",
                                                      ["Peanut"], False)
    assert (rows[unordered["id"]]["ordered"], rows[unordered["id"]]["label"]) == (False, "No diet ordered")
    fasting = rows[theatre["id"]]
    assert fasting["nil_by_mouth"] is True and fasting["fasting"]["state"] == "clear_fluids_only"
    assert (ward["no_order"], ward["nil_by_mouth"]) == (1, 1)
    # Lunch is after the operation: the kitchen sends the normal tray (the case is still scheduled, so lunch at
    # 12:30 is within 12 hours of 10:00 — still fasting until the theatre closes the case).
    lunch = clinician_api.get(url.replace("breakfast", "lunch")).json()["wards"][0]
    assert {r["patient_id"]: r for r in lunch["patients"]}[theatre["id"]]["nil_by_mouth"] is True
    # Cancelling the operation ends the suggestion at once.
    cancelled = clinician_api.post(f"{API.format(tenant=facility.slug)}/surgery/{booked.json()['root_id']}/status",
                                   json={"to": "cancelled", "reason": "Patient not fit: chest infection"})
    assert cancelled.status_code == 200, cancelled.text
    again = clinician_api.get(url).json()["wards"][0]
    row = {r["patient_id"]: r for r in again["patients"]}[theatre["id"]]
    assert (row["nil_by_mouth"], row["label"]) == (False, "Normal")
    events = {e.event_type for e in audit.patient_access_log(db, facility.slug, uuid.UUID(unordered["id"]))}
    assert "record.kitchen_list.read" in events
    # The ward board shows each patient's diet.
    board = clinician_api.get(f"{API.format(tenant=facility.slug)}/nursing/wards/MAT/worklist").json()
    shown = {p["patient_id"]: p["diet"] for p in board["patients"]}
    assert shown[diabetic["id"]]["label"] == "Diabetic; IDDSI 5 Minced and moist"
    assert shown[unordered["id"]]["label"] == "No diet ordered"


ORDER = {"diet": "soft"}
ROUTES = [("get", "/diet", None), ("post", "/diet", ORDER)]
ORDER_ROUTES = [("put", "/diet/{id}", ORDER | {"reason": "wrong diet"}),
                ("post", "/diet/{id}/entered-in-error", {"reason": "wrong patient"})]


def test_another_facility_guessed_ids_and_other_roles_are_refused(db, token_client, nurse_api, clinician_api,
                                                                   facility, other_facility):
    patient = admitted(clinician_api, facility, family="Kiptoo")
    order = nurse_api.post(f"{patient['url']}/diet", json=ORDER).json()
    outsider = token_client(other_facility.slug, role="nurse")
    registrar = token_client(facility.slug, role="registrar")
    for method, path, body in ROUTES:
        assert _call(outsider, method, patient["url"] + path, body).status_code == 403, path
        theirs = f"{API.format(tenant=other_facility.slug)}/patients/{patient['id']}{path}"
        assert _call(outsider, method, theirs, body).status_code == 404, path
        guessed = f"{API.format(tenant=facility.slug)}/patients/{uuid.uuid4()}{path}"
        assert _call(nurse_api, method, guessed, body).status_code == 404, path
        assert _call(registrar, method, patient["url"] + path, body).status_code == 403, path
    other = admitted(clinician_api, facility, family="Jepchirchir")
    for method, path, body in ORDER_ROUTES:
        assert _call(outsider, method, patient["url"] + path.format(id=order["id"]), body).status_code == 403, path
        assert _call(nurse_api, method, patient["url"] + path.format(id=uuid.uuid4()), body).status_code == 404, path
        assert _call(nurse_api, method, other["url"] + path.format(id=order["id"]), body).status_code == 404, path
        assert _call(registrar, method, patient["url"] + path.format(id=order["id"]), body).status_code == 403, path
    kitchen = f"{API.format(tenant=facility.slug)}/kitchen?meal=lunch"
    assert outsider.get(kitchen).status_code == 403 and registrar.get(kitchen).status_code == 403
    # The kitchen (ACC-033) reads the list, with this patient on it, and nothing of the chart nor any order.
    cook = token_client(facility.slug, role="kitchen")
    assert cook.get(kitchen).status_code == 200 and patient["id"] in cook.get(kitchen).text
    for method, path, body in ROUTES + [(m, p.format(id=order["id"]), b) for m, p, b in ORDER_ROUTES]:
        assert _call(cook, method, patient["url"] + path, body).status_code == 403, path
    assert cook.get(patient["url"]).status_code == 403
    theirs = outsider.get(f"{API.format(tenant=other_facility.slug)}/kitchen?meal=lunch")
    assert theirs.status_code == 200 and patient["id"] not in theirs.text
    assert clinician_api.get(kitchen.replace("lunch", "elevenses")).status_code == 422
    assert clinician_api.get(kitchen + "&ward=NOPE").status_code == 404
    assert _diet_rows(db, facility, patient["id"]) == 1


# -- the pages ---------------------------------------------------------------------------------------


def test_the_diet_tab_orders_and_withdraws_and_the_kitchen_prints_the_list(db, signed_in, facility, other_facility,
                                                                          clinician):
    from tests.layers.nursing.conftest import admit
    from tests.layers.nursing.test_pages import post_form
    from tests.web.test_auth import csrf_token

    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Nyambura", given="Ruth")
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    page = f"/t/{facility.slug}/patients/{patient['id']}/diet"
    refused = post_form(nurse, page, page, {"diet": "renal", "f.also": ["npo"]})
    assert refused.status_code == 422 and "order it as the diet itself" in refused.text
    saved = post_form(nurse, page, page, {"diet": "renal", "f.also": ["low_salt", "halal"], "iddsi_level": "6",
                                          "note": "500 ml fluid a day"})
    assert saved.status_code == 303 and saved.headers["location"].endswith("/diet?done=diet")
    shown = nurse.get(page).text
    assert "Renal, low salt, halal; IDDSI 6 Soft and bite-sized" in shown
    assert "<script" not in shown.split("</header>")[-1] and " onclick=" not in shown
    kitchen = nurse.get(f"/t/{facility.slug}/kitchen?meal=supper").text
    row = kitchen.split(f'data-patient="{patient["id"]}"')[1].split("</tr>")[0]
    assert "Renal, low salt, halal" in row and "500 ml fluid a day" in row and "@media print" not in kitchen
    assert "<script" not in kitchen.split("</header>")[-1]
    # The kitchen's supervisor lands on the list and prints it; the chart is not theirs.
    cook = signed_in("kitchen", facility.slug)
    assert cook.get(f"/t/{facility.slug}", follow_redirects=False).headers["location"].endswith("/kitchen")
    assert str(patient["id"]) in cook.get(f"/t/{facility.slug}/kitchen?meal=supper").text
    assert cook.get(page).status_code == 403
    board = nurse.get(f"/t/{facility.slug}/ward").text
    assert "Renal, low salt, halal" in board.split(f'data-patient="{patient["id"]}"')[1].split("</tr>")[0]
    with db.tenant(facility.slug) as conn:
        order_id = conn.execute(sa.text("SELECT id FROM entry WHERE kind = 'diet_order' AND patient_id = :p"),
                                {"p": patient["id"]}).scalar()
    # A guessed id is not found whatever reason was typed: it was a 422 with the refusal by no form of it.
    for reason in ("", "wrong patient"):
        guessed = post_form(nurse, page, f"{page}/{uuid.uuid4()}/entered-in-error", {"reason": reason})
        assert guessed.status_code == 404 and "No diet order" in guessed.text
    no_reason = post_form(nurse, page, f"{page}/{order_id}/entered-in-error", {"reason": ""})
    assert no_reason.status_code == 422 and "Say why" in no_reason.text
    withdrawn = post_form(nurse, page, f"{page}/{order_id}/entered-in-error", {"reason": "wrong patient"})
    assert withdrawn.status_code == 303
    assert "No diet ordered" in nurse.get(page).text
    # Another facility's nurse, at our address and at theirs: refused, nothing written.
    intruder = signed_in("nurse", other_facility.slug, ward="GEN")
    token = csrf_token(intruder.get(f"/t/{other_facility.slug}/ward").text)
    for tenant in (facility.slug, other_facility.slug):
        taken = intruder.post(f"/t/{tenant}/patients/{patient['id']}/diet", follow_redirects=False,
                              data={"diet": "normal", "_csrf_token": token})
        assert taken.status_code in (403, 404) and "Nyambura" not in taken.text
        assert intruder.get(f"/t/{tenant}/patients/{patient['id']}/diet").status_code in (403, 404)
    assert "Nyambura" not in intruder.get(f"/t/{other_facility.slug}/kitchen").text
    assert intruder.get(f"/t/{facility.slug}/kitchen").status_code == 403
    assert _diet_rows(db, facility, str(patient["id"])) == 2


def test_the_diet_tab_corrects_the_latest_order_with_why_and_another_facility_cannot(db, signed_in, facility,
                                                                                    other_facility, clinician):
    import re

    from tests.layers.nursing.conftest import admit
    from tests.layers.nursing.test_pages import post_form
    from tests.web.test_auth import csrf_token

    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Wafula", given="Grace")
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    page = f"/t/{facility.slug}/patients/{patient['id']}/diet"
    assert post_form(nurse, page, page, {"diet": "renal", "note": "500 ml fluid a day"}).status_code == 303
    with db.tenant(facility.slug) as conn:
        order_id = conn.execute(sa.text("SELECT id FROM entry WHERE kind = 'diet_order' AND patient_id = :p"),
                                {"p": patient["id"]}).scalar()
    # The correction form opens with the order as it stands.
    shown = nurse.get(page).text
    form = shown.split('id="diet-correct-form"')[1].split("</form>")[0]
    assert '<option value="renal" selected>' in form and 'value="500 ml fluid a day"' in form
    starts = re.search(r'id="correct-starts_at" name="starts_at" type="datetime-local" value="([^"]+)"', form).group(1)
    correction = {"diet": "diabetic", "f.also": ["halal"], "starts_at": starts, "note": "500 ml fluid a day"}
    # Refused in words, beside the form, and nothing written: no reason, then a combination the kitchen cannot follow.
    unsaid = post_form(nurse, page, f"{page}/{order_id}", correction | {"reason": ""})
    assert unsaid.status_code == 422 and "Say why the order is corrected" in unsaid.text
    assert 'id="diet-correct" open' in unsaid.text
    nonsense = post_form(nurse, page, f"{page}/{order_id}", correction | {"diet": "npo", "reason": "wrong diet"})
    assert nonsense.status_code == 422 and "Nil by mouth is all the patient takes" in nonsense.text
    # Another facility's nurse, at our address and at theirs: refused, nothing written.
    intruder = signed_in("nurse", other_facility.slug, ward="GEN")
    token = csrf_token(intruder.get(f"/t/{other_facility.slug}/ward").text)
    for tenant in (facility.slug, other_facility.slug):
        taken = intruder.post(f"/t/{tenant}/patients/{patient['id']}/diet/{order_id}", follow_redirects=False,
                              data=correction | {"reason": "wrong diet", "_csrf_token": token})
        assert taken.status_code in (403, 404) and "Wafula" not in taken.text
    guessed = post_form(nurse, page, f"{page}/{uuid.uuid4()}", correction | {"reason": "wrong diet"})
    assert guessed.status_code == 404
    assert _diet_rows(db, facility, str(patient["id"])) == 1
    corrected = post_form(nurse, page, f"{page}/{order_id}", correction | {"reason": "renal ordered by mistake"})
    assert corrected.status_code == 303 and corrected.headers["location"].endswith("/diet?done=diet-corrected")
    after = nurse.get(corrected.headers["location"]).text
    assert "Diabetic, halal" in after.split('id="diet-label"')[1].split("</p>")[0]
    history = after.split('id="diet-history"')[1].split("</table>")[0]
    assert "Renal" in history and "renal ordered by mistake" in history
    # The version it replaced is no longer the one to correct: refused in words, not a 500.
    stale = post_form(nurse, page, f"{page}/{order_id}", correction | {"reason": "again"})
    assert stale.status_code == 422 and 'id="diet-correct" open' in stale.text
    assert _diet_rows(db, facility, str(patient["id"])) == 2
