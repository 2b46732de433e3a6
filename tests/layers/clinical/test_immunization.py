"""Immunizations over real HTTP and the real record (appliance/layers/clinical/immunization.py): a dose recorded
and counted, a dose too early recorded but not counted (the dose stays due, and the answer says so), the
refusals (422 with a sentence, nothing written), a correction and an entry in error, the nurse recording and the
registrar refused, the facility's children due or overdue, every read and write on the patient's access log,
and another facility's credentials and guessed ids refused on every route."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from appliance.substrate import audit
from tests.conftest import facility_today
from tests.layers.clinical.conftest import new_patient

API = "/api/t/{tenant}"


@pytest.fixture(scope="module")
def today(facility) -> dt.date:
    return facility_today()  # the facility's (Nairobi): from 21:00 UTC a day ahead of the server's date


@pytest.fixture(scope="module")
def child(db, facility, clinician, today) -> dict:
    """A girl seven weeks and a day old (50 days): BCG, the birth dose and the six-week doses are owed."""
    with db.tenant(facility.slug) as conn:
        found = new_patient(conn, clinician, family_name="Wanjiru", given_names="Amani", sex="female",
                            birth_date=today - dt.timedelta(days=50), phone="+254722000111",
                            next_of_kin=[{"name": "Grace Wanjiru", "relationship": "mother",
                                          "phone": "+254733000222"}])
    return {"id": found["id"], "born": today - dt.timedelta(days=50)}


def _doses(db, facility, patient_id) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM entry WHERE patient_id = :p AND kind = 'immunization'"),
                            {"p": patient_id}).scalar()


def _slot(schedule: list[dict], vaccine: str, number: int) -> dict:
    return next(s for s in schedule if (s["vaccine"], s["dose_number"]) == (vaccine, number))


def test_a_dose_given_on_time_counts_and_the_write_and_the_read_are_on_the_access_log(api, db, facility, child):
    base = f"{API.format(tenant=facility.slug)}/patients/{child['id']}/immunizations"
    given = api.post(base, json={"vaccine": "PENTA", "dose_number": 1, "lot_number": "PV-2231",
                                 "expiry_date": "2027-06-30", "site": "left_thigh", "route": "intramuscular"})
    assert given.status_code == 201, given.text
    body = given.json()
    assert (body["counts"], body["detail"]) == (True, "Pentavalent (DTP-HepB-Hib), dose 1 given: it counts.")
    assert body["immunization"]["given_on"] == facility_today().isoformat()
    assert body["immunization"]["source"] == "administered" and body["immunization"]["lot_number"] == "PV-2231"
    assert [s["state"] for s in body["schedule"]] == ["given", "not_yet_due", "not_yet_due"]
    listed = api.get(base)
    assert listed.status_code == 200, listed.text
    penta1 = _slot(listed.json()["schedule"], "PENTA", 1)
    assert (penta1["state"], penta1["given_on"]) == ("given", facility_today().isoformat())
    assert _slot(listed.json()["schedule"], "BCG", 1)["state"] == "overdue"
    events = {e.event_type for e in audit.patient_access_log(db, facility.slug, child["id"])}
    assert {"record.immunization.create", "record.immunization.read"} <= events


def test_a_dose_too_early_is_recorded_but_does_not_count_and_stays_due(api, db, facility, child):
    base = f"{API.format(tenant=facility.slug)}/patients/{child['id']}/immunizations"
    at_three_weeks = (child["born"] + dt.timedelta(days=21)).isoformat()
    early = api.post(base, json={"vaccine": "PCV", "dose_number": 1, "given_on": at_three_weeks})
    assert early.status_code == 201, early.text
    body = early.json()
    assert body["counts"] is False
    assert body["detail"].startswith("Recorded, but too early: does not count (given at 3 weeks of age, younger "
                                     "than the minimum age of 6 weeks): Pneumococcal conjugate vaccine (PCV), dose 1 "
                                     "is still overdue from ")
    pcv1 = _slot(api.get(base).json()["schedule"], "PCV", 1)
    assert pcv1["state"] == "overdue" and pcv1["given_on"] is None
    assert [(a["given_on"], a["counts"]) for a in pcv1["attempts"]] == [(at_three_weeks, False)]


def test_a_dose_from_an_expired_lot_is_recorded_but_does_not_count_and_stays_owed(api, db, facility, clinician, today):
    with db.tenant(facility.slug) as conn:
        baby = new_patient(conn, clinician, family_name="Atieno", given_names="Zuri", sex="female",
                           birth_date=today - dt.timedelta(days=50))["id"]
    base = f"{API.format(tenant=facility.slug)}/patients/{baby}/immunizations"
    expired = (today - dt.timedelta(days=1)).isoformat()
    given = api.post(base, json={"vaccine": "ROTA", "dose_number": 1, "lot_number": "RV-0031", "expiry_date": expired})
    assert given.status_code == 201, given.text
    body = given.json()
    assert body["counts"] is False and body["immunization"]["expiry_date"] == expired
    assert body["detail"].startswith(f"Recorded, but from an expired lot: does not count (the lot expired on "
                                     f"{expired}, before the dose's day): Rotavirus vaccine, dose 1 is still overdue")
    rota1 = _slot(api.get(base).json()["schedule"], "ROTA", 1)
    assert rota1["state"] == "overdue" and rota1["given_on"] is None
    # Given again from a lot in date (its last day is a day it may be given), it counts; a "not given" recorded
    # of it after that says it was given, not that it is "still given".
    again = api.post(base, json={"vaccine": "ROTA", "dose_number": 1, "expiry_date": today.isoformat()})
    assert again.json()["counts"] is True
    declined = api.post(base, json={"vaccine": "ROTA", "dose_number": 1, "status": "not_done",
                                    "not_done_reason": "child_unwell"})
    assert declined.json()["detail"] == (f"Recorded as not given (the child was unwell); Rotavirus vaccine, dose 1 "
                                         f"was given on {today.isoformat()}.")


@pytest.mark.parametrize(("sent", "field", "said"), [
    ({"vaccine": "YELLOW"}, "vaccine", "'YELLOW' is not a vaccine of the immunization schedule; it has BCG, "),
    ({"vaccine": "ROTA", "dose_number": 3}, "dose_number",
     "Rotavirus vaccine has 2 doses in the schedule, so there is no dose 3"),
    ({"vaccine": "BCG", "given_on": "2999-01-01"}, "given_on", "is in the future"),
    ({"vaccine": "BCG", "given_on": "2001-01-01"}, "given_on", "is before the patient's birth"),
    ({"vaccine": "OPV", "dose_number": 1, "status": "not_done"}, None, "a dose not given needs its reason"),
    ({"vaccine": "OPV", "dose_number": 1, "not_done_reason": "refused"}, None,
     "not_done_reason is for a dose not given"),
])
def test_what_the_schedule_or_the_calendar_cannot_hold_is_refused_and_nothing_is_written(api, db, facility, child,
                                                                                         sent, field, said):
    before = _doses(db, facility, child["id"])
    refused = api.post(f"{API.format(tenant=facility.slug)}/patients/{child['id']}/immunizations", json=sent)
    assert refused.status_code == 422, refused.text
    assert said in refused.json()["detail"]
    if field:
        assert refused.json()["field"] == field
    assert _doses(db, facility, child["id"]) == before


def test_a_dose_not_given_keeps_its_reason_and_the_dose_stays_owed(api, facility, child):
    base = f"{API.format(tenant=facility.slug)}/patients/{child['id']}/immunizations"
    declined = api.post(base, json={"vaccine": "ROTA", "dose_number": 1, "status": "not_done",
                                    "not_done_reason": "out_of_stock", "note": "none since\u0000 Monday"})
    assert declined.status_code == 201, declined.text
    assert declined.json()["immunization"]["note"] == "none since Monday"  # a NUL no person typed: dropped
    assert declined.json()["counts"] is None
    assert declined.json()["detail"] == ("Recorded as not given (vaccine out of stock); Rotavirus vaccine, "
                                         "dose 1 is still overdue.")
    rota1 = _slot(api.get(base).json()["schedule"], "ROTA", 1)
    assert (rota1["state"], rota1["not_done_reason"]) == ("overdue", "out_of_stock")


def test_a_correction_supersedes_the_dose_and_entered_in_error_takes_it_off_the_schedule(api, token_client, facility,
                                                                                         child):
    base = f"{API.format(tenant=facility.slug)}/patients/{child['id']}/immunizations"
    from_card = (child["born"] + dt.timedelta(days=1)).isoformat()
    recorded = api.post(base, json={"vaccine": "BCG", "dose_number": 1, "source": "historical", "given_on": from_card})
    assert recorded.status_code == 201 and recorded.json()["counts"] is True, recorded.text
    first = recorded.json()["immunization"]["id"]
    corrected = api.put(f"{base}/{first}", json={"vaccine": "BCG", "dose_number": 1, "source": "historical",
                                                 "given_on": child["born"].isoformat(),
                                                 "reason": "the card says at birth"})
    assert corrected.status_code == 200, corrected.text
    version = corrected.json()["immunization"]
    assert (version["entry_status"], version["root_id"], version["given_on"]) == ("amended", first,
                                                                                  child["born"].isoformat())
    stale = api.put(f"{base}/{first}", json={"vaccine": "BCG", "dose_number": 1, "reason": "a second go at it"})
    assert stale.status_code == 409, stale.text
    history = api.get(f"{API.format(tenant=facility.slug)}/patients/{child['id']}/entries/{version['id']}/history")
    assert [v["entry_status"] for v in history.json()] == ["final", "amended"]
    # A nurse gives vaccines: she may withdraw the mistaken one (the general entered-in-error is the clinician's).
    nurse = token_client(facility.slug, role="nurse")
    withdrawn = nurse.post(f"{base}/{version['id']}/entered-in-error", json={"reason": "recorded on the twin"})
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["entry_status"] == "entered_in_error"
    listed = api.get(base).json()
    assert _slot(listed["schedule"], "BCG", 1)["state"] == "overdue"
    assert [w["id"] for w in listed["withdrawn"]] == [version["id"]]
    assert version["id"] not in {d["id"] for d in listed["doses"]}


def test_nurses_record_doses_and_registrars_see_none(token_client, facility, child):
    base = f"{API.format(tenant=facility.slug)}/patients/{child['id']}/immunizations"
    nurse = token_client(facility.slug, role="nurse")
    given = nurse.post(base, json={"vaccine": "OPV", "dose_number": 1, "route": "oral", "site": "mouth"})
    assert given.status_code == 201 and given.json()["counts"] is True, given.text
    registrar = token_client(facility.slug, role="registrar")
    for answer in (registrar.get(base), registrar.post(base, json={"vaccine": "OPV", "dose_number": 2}),
                   registrar.get(f"{API.format(tenant=facility.slug)}/immunizations/due")):
        assert answer.status_code == 403, answer.text
        assert "Wanjiru" not in answer.text


def test_the_children_due_list_names_each_child_owed_a_dose_and_audits_them(api, db, facility, child):
    listed = api.get(f"{API.format(tenant=facility.slug)}/immunizations/due")
    assert listed.status_code == 200, listed.text
    mine = next(c for c in listed.json()["children"] if c["patient_id"] == str(child["id"]))
    assert mine["age"] == "1 mo" and mine["family_name"] == "Wanjiru"
    # Whom to call: the registration's phone and next of kin (the list is the one a vaccinator traces from).
    assert (mine["phone"], mine["next_of_kin"]) == ("+254722000111", [{"name": "Grace Wanjiru",
                                                                       "relationship": "mother",
                                                                       "phone": "+254733000222"}])
    assert {(d["vaccine"], d["state"]) for d in mine["doses"]} >= {("HEPB_BD", "overdue"), ("PCV", "overdue")}
    assert mine["overdue_since"] == (child["born"] + dt.timedelta(days=1)).isoformat()  # the birth dose's
    overdue_only = api.get(f"{API.format(tenant=facility.slug)}/immunizations/due", params={"state": "overdue"})
    assert all(d["state"] == "overdue" for c in overdue_only.json()["children"] for d in c["doses"])
    assert api.get(f"{API.format(tenant=facility.slug)}/immunizations/due", params={"state": "late"}).status_code == 422
    events = {e.event_type for e in audit.patient_access_log(db, facility.slug, child["id"])}
    assert "record.immunization_due.read" in events


def test_another_facilitys_credentials_and_guessed_ids_are_refused_on_every_route(api, token_client, facility,
                                                                                   other_facility, child, db,
                                                                                   clinician):
    base = f"{API.format(tenant=facility.slug)}/patients/{child['id']}/immunizations"
    some_dose = api.get(base).json()["doses"][0]["id"]
    intruder = token_client(other_facility.slug, role="clinician")
    dose = {"vaccine": "PCV", "dose_number": 1}
    for method, path, body in [("get", base, None), ("post", base, dose),
                               ("put", f"{base}/{some_dose}", {**dose, "reason": "not mine to correct"}),
                               ("post", f"{base}/{some_dose}/entered-in-error", {"reason": "not mine to withdraw"}),
                               ("get", f"{API.format(tenant=facility.slug)}/immunizations/due", None)]:
        answer = getattr(intruder, method)(path, **({"json": body} if body is not None else {}))
        assert answer.status_code == 403, (path, answer.text)
        assert "Wanjiru" not in answer.text
    # Its own facility's address with this child's id: no such patient there.
    elsewhere = f"{API.format(tenant=other_facility.slug)}/patients/{child['id']}/immunizations"
    assert intruder.get(elsewhere).status_code == 404 and intruder.post(elsewhere, json=dose).status_code == 404
    guessed = uuid.uuid4()
    guessed_base = f"{API.format(tenant=facility.slug)}/patients/{guessed}/immunizations"
    for method, path, body in [("get", guessed_base, None), ("post", guessed_base, dose),
                               ("put", f"{base}/{guessed}", {**dose, "reason": "a guess at it"}),
                               ("post", f"{base}/{guessed}/entered-in-error", {"reason": "a guess at it"}),
                               ("put", f"{guessed_base}/{some_dose}", {**dose, "reason": "another child's dose"})]:
        answer = getattr(api, method)(path, **({"json": body} if body is not None else {}))
        assert answer.status_code == 404, (path, answer.text)
    # This child's dose through another child's address at the same facility: not that child's dose.
    with db.tenant(facility.slug) as conn:
        sibling = new_patient(conn, clinician, family_name="Wanjiru", given_names="Neema", sex="female",
                              birth_date=child["born"])["id"]
    other_base = f"{API.format(tenant=facility.slug)}/patients/{sibling}/immunizations"
    before = _doses(db, facility, child["id"])
    assert api.put(f"{other_base}/{some_dose}", json={**dose, "reason": "another child's dose"}).status_code == 404
    assert api.post(f"{other_base}/{some_dose}/entered-in-error", json={"reason": "another child's"}).status_code == 404
    assert _doses(db, facility, child["id"]) == before


def test_a_child_recorded_deceased_leaves_the_due_list_and_takes_no_dose_dated_after_death(api, facility, today):
    """A vaccinator tracing the list must not call a bereaved family; a dose read from the card, given before the
    death, may still be recorded."""
    base = API.format(tenant=facility.slug)
    registered = api.post(f"{base}/patients", json={
        "family_name": "Onyango", "given_names": "Tumaini", "sex": "male",
        "birth_date": (today - dt.timedelta(days=70)).isoformat(),
        "identifiers": [{"system": "birth_certificate", "value": uuid.uuid4().hex[:10]}]})
    assert registered.status_code == 201, registered.text
    child = registered.json()["id"]
    due = api.get(f"{base}/immunizations/due").json()["children"]
    assert child in {c["patient_id"] for c in due}
    certified = api.post(f"{base}/patients/{child}/death", json={
        "died_at": (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat(), "place": "this_facility",
        "part1": [{"code": "A09", "interval": "3 days"}], "manner": "disease"})
    assert certified.status_code == 201, certified.text
    assert child not in {c["patient_id"] for c in api.get(f"{base}/immunizations/due").json()["children"]}
    refused = api.post(f"{base}/patients/{child}/immunizations", json={"vaccine": "OPV", "dose_number": 1})
    assert refused.status_code == 422 and refused.json()["field"] == "given_on", refused.text
    assert "recorded deceased on" in refused.json()["detail"]
    from_card = api.post(f"{base}/patients/{child}/immunizations", json={
        "vaccine": "BCG", "dose_number": 1, "source": "historical",
        "given_on": (today - dt.timedelta(days=69)).isoformat()})
    assert from_card.status_code == 201, from_card.text
