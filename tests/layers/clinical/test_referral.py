"""Referrals over HTTP, in the record and in the exchange: a patient referred from one facility to another on one
identity (the letter carries only what the clinician chose, copied at sending), accepted there onto a chart
registered from the letter and linked to the same person, declined with a reason the sender reads, completed with
feedback, withdrawn before an answer; the refusals (unknown facility, this facility, an item not on the chart, an
act on a withdrawn or answered one), every read and act audited where it was done; and isolation: another
facility's credentials, a guessed id, a third facility, and the exchange's functions called from SQL by a facility
role for a referral that is not its own."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
import pytest
import sqlalchemy as sa

from appliance.substrate import audit
from appliance.substrate.db import Database
from tests.layers.clinical.conftest import CLINICAL_CONFIG

BASE = "/api/t/{tenant}"
GUESS = str(uuid.uuid4())
SESSIONS = [{"weekdays": ["mon", "wed"], "start": "08:00", "end": "12:00"}]
CLINICS = [{"code": "MOPC", "name": "Medical outpatient clinic", "sessions": SESSIONS, "takes_referrals": True},
           {"code": "DENT", "name": "Dental clinic", "sessions": SESSIONS}]


@pytest.fixture(scope="module")
def hillview(tenant_factory):
    return tenant_factory(name="Hillview Health Centre", facility_type="health_centre", **CLINICAL_CONFIG)


@pytest.fixture(scope="module")
def lakeshore(tenant_factory):
    return tenant_factory(name="Lakeshore District Hospital", clinics=CLINICS, **CLINICAL_CONFIG)


@pytest.fixture(scope="module")
def riverside(tenant_factory):
    return tenant_factory(name="Riverside Referral Hospital", facility_type="referral_hospital",
                          clinics=[{**c, "takes_referrals": False} for c in CLINICS], **CLINICAL_CONFIG)


def api_of(token_client, tenant, role: str = "clinician"):
    return token_client(tenant.slug, role=role)


def register(api, tenant: str, **overrides) -> str:
    body = {"family_name": "Wanjiru", "given_names": "Esther", "birth_date": "1979-08-14", "sex": "female",
            "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}
    body.update(overrides)
    made = api.post(f"{BASE.format(tenant=tenant)}/patients", json=body)
    assert made.status_code == 201, made.text
    return made.json()["id"]


def chart_items(api, tenant: str, patient_id: str) -> dict:
    """An active problem, an allergy and a prescription on the chart; their ids."""
    base = f"{BASE.format(tenant=tenant)}/patients/{patient_id}"
    problem = api.post(f"{base}/problems", json={"code": "I10", "clinical_status": "active"})
    other = api.post(f"{base}/problems", json={"code": "E11.9", "clinical_status": "active"})
    allergy = api.post(f"{base}/allergies", json={"substance": "Penicillin", "reaction": "rash"})
    for made in (problem, other, allergy):
        assert made.status_code == 201, made.text
    return {"problem": problem.json()["id"], "other_problem": other.json()["id"], "allergy": allergy.json()["id"]}


def letter(to: str, **overrides) -> dict:
    body = {"to_tenant": to, "urgency": "urgent", "reason": "Blood pressure uncontrolled on two drugs",
            "summary": "BP 182/110 on amlodipine and hydrochlorothiazide; headaches for two weeks."}
    body.update(overrides)
    return body


def refer(api, tenant: str, patient_id: str, body: dict):
    return api.post(f"{BASE.format(tenant=tenant)}/patients/{patient_id}/referrals", json=body)


def counts(db: Database, tenant: str) -> tuple[int, int]:
    with db.tenant(tenant) as conn:
        entries = conn.execute(sa.text("SELECT count(*) FROM entry")).scalar()
    with db.control() as conn:
        exchanged = conn.execute(sa.text("SELECT count(*) FROM control.referral WHERE from_tenant = :t"),
                                 {"t": tenant}).scalar()
    return entries, exchanged


def test_a_referral_is_refused_with_a_sentence_and_nothing_written(token_client, hillview, lakeshore, db):
    api = api_of(token_client, hillview)
    patient_id = register(api, hillview.slug)
    items = chart_items(api, hillview.slug, patient_id)
    before = counts(db, hillview.slug)
    refusals = [
        (letter("nowhere_at_all"), "to_tenant", "no facility"),
        (letter(hillview.slug), "to_tenant", "another facility"),
        (letter(lakeshore.slug, clinic="DENTAL"), "clinic", "no clinic"),
        (letter(lakeshore.slug, clinic="DENT"), "clinic", "Dental clinic (DENT) does not take referrals"),
        (letter(lakeshore.slug, problem_ids=[GUESS]), "problem_ids", "not"),
        (letter(lakeshore.slug, allergy_ids=[items["problem"]]), "allergy_ids", "not"),
        (letter(lakeshore.slug, urgency="whenever"), None, "urgency"),
        (letter(lakeshore.slug, reason=""), None, "reason"),
    ]
    for body, field, words in refusals:
        refused = refer(api, hillview.slug, patient_id, body)
        assert refused.status_code == 422, (body, refused.text)
        assert words in refused.json()["detail"], refused.json()
        if field:
            assert refused.json()["field"] == field
    assert counts(db, hillview.slug) == before


def test_referred_accepted_onto_a_new_chart_and_answered_with_feedback(token_client, hillview, lakeshore, db):
    sender = api_of(token_client, hillview)
    receiver = api_of(token_client, lakeshore)
    desk = api_of(token_client, lakeshore, "registrar")
    patient_id = register(sender, hillview.slug)
    items = chart_items(sender, hillview.slug, patient_id)
    sent = refer(sender, hillview.slug, patient_id,
                 letter(lakeshore.slug, clinic="MOPC", problem_ids=[items["problem"]], allergy_ids=[items["allergy"]]))
    assert sent.status_code == 201, sent.text
    body = sent.json()
    assert (body["side"], body["status"], body["patient_id"]) == ("sent", "sent", patient_id)
    # The letter: what was chosen, copied, and who the person is; not the problem left unticked.
    assert [p["code"] for p in body["letter"]["items"]["problems"]] == ["I10"]
    assert body["letter"]["items"]["allergies"][0]["substance"] == "Penicillin"
    assert body["letter"]["items"]["medications"] == []
    assert body["letter"]["patient"]["family_name"] == "Wanjiru"
    referral_id = body["id"]

    received = desk.get(f"{BASE.format(tenant=lakeshore.slug)}/referrals/received").json()
    mine = next(r for r in received if r["id"] == referral_id)
    assert mine["patient_id"] is None and mine["from_facility"] == "Hillview Health Centre"
    assert "E11.9" not in str(mine["letter"])
    # The front desk accepts: the person is registered here from the letter, on the same one identity.
    accepted = desk.post(f"{BASE.format(tenant=lakeshore.slug)}/referrals/{referral_id}/accept")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["registered"] is True and accepted.json()["status"] == "accepted"
    chart_there = accepted.json()["patient_id"]
    with db.tenant(hillview.slug) as conn:
        subject_here = conn.execute(sa.text("SELECT subject_id FROM patient WHERE id = :p"), {"p": patient_id}).scalar()
    with db.tenant(lakeshore.slug) as conn:
        there = conn.execute(sa.text("SELECT subject_id, family_name FROM patient WHERE id = :p"),
                             {"p": chart_there}).one()
    assert there == (subject_here, "Wanjiru")
    # Accepted once: a second answer is refused.
    again = receiver.post(f"{BASE.format(tenant=lakeshore.slug)}/referrals/{referral_id}/decline",
                          json={"reason": "changed our mind"})
    assert again.status_code == 409 and "already answered" in again.json()["detail"]
    assert desk.post(f"{BASE.format(tenant=lakeshore.slug)}/referrals/{referral_id}/feedback",
                     json={"findings": "seen"}).status_code == 403  # feedback is a clinician's

    done = receiver.post(f"{BASE.format(tenant=lakeshore.slug)}/referrals/{referral_id}/feedback",
                         json={"findings": "Hypertensive retinopathy grade 2", "treatment": "Added losartan 50 mg",
                               "advice": "Recheck BP in 2 weeks; creatinine in 1 month"})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed"
    read_back = sender.get(f"{BASE.format(tenant=hillview.slug)}/patients/{patient_id}/referrals").json()
    assert read_back[0]["feedback"]["advice"] == "Recheck BP in 2 weeks; creatinine in 1 month"
    assert read_back[0]["status"] == "completed"
    # The letter is on the answering facility's own chart too, as a note its clinicians read with the record.
    notes = receiver.get(f"{BASE.format(tenant=lakeshore.slug)}/patients/{chart_there}/notes").json()
    assert notes[0]["title"] == "Referral feedback to Hillview Health Centre"
    assert "Advice: Recheck BP in 2 weeks" in notes[0]["text"] and "Added losartan 50 mg" in notes[0]["text"]

    # Audited where each was done: the send and the reads at Hillview, the acts and reads at Lakeshore on its own
    # chart once it holds one.
    assert receiver.get(f"{BASE.format(tenant=lakeshore.slug)}/referrals/{referral_id}").json()["patient_id"] == \
        chart_there
    here = {e.event_type for e in audit.patient_access_log(db, hillview.slug, uuid.UUID(patient_id))}
    assert {"record.referral.create", "record.referral.read"} <= here
    there_events = {e.event_type for e in audit.patient_access_log(db, lakeshore.slug, uuid.UUID(chart_there))}
    assert {"record.referral.update", "record.referral.read"} <= there_events


def test_accepted_onto_the_chart_already_held_declined_and_withdrawn(token_client, hillview, lakeshore, db):
    sender = api_of(token_client, hillview)
    receiver = api_of(token_client, lakeshore)
    national_id = uuid.uuid4().hex[:10]
    patient_id = register(sender, hillview.slug, identifiers=[{"system": "national_id", "value": national_id}])
    held = register(receiver, lakeshore.slug, identifiers=[{"system": "national_id", "value": national_id}])
    first = refer(sender, hillview.slug, patient_id, letter(lakeshore.slug, urgency="emergency")).json()
    accepted = receiver.post(f"{BASE.format(tenant=lakeshore.slug)}/referrals/{first['id']}/accept").json()
    assert (accepted["registered"], accepted["patient_id"]) == (False, held)

    second = refer(sender, hillview.slug, patient_id, letter(lakeshore.slug, urgency="routine")).json()
    refused = receiver.post(f"{BASE.format(tenant=lakeshore.slug)}/referrals/{second['id']}/decline", json={})
    assert refused.status_code == 422
    declined = receiver.post(f"{BASE.format(tenant=lakeshore.slug)}/referrals/{second['id']}/decline",
                             json={"reason": "Routine hypertension: manage at the health centre"})
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    seen = sender.get(f"{BASE.format(tenant=hillview.slug)}/referrals/{second['id']}").json()
    assert seen["declined_reason"] == "Routine hypertension: manage at the health centre"
    assert sender.post(f"{BASE.format(tenant=hillview.slug)}/referrals/{second['id']}/withdraw",
                       json={"reason": "too late"}).status_code == 409

    third = refer(sender, hillview.slug, patient_id, letter(lakeshore.slug)).json()
    withdrawn = sender.post(f"{BASE.format(tenant=hillview.slug)}/referrals/{third['id']}/withdraw",
                            json={"reason": "Patient chose to travel to Nairobi"})
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    before = counts(db, lakeshore.slug)
    too_late = receiver.post(f"{BASE.format(tenant=lakeshore.slug)}/referrals/{third['id']}/accept")
    assert too_late.status_code == 409 and "withdrawn" in too_late.json()["detail"]
    assert counts(db, lakeshore.slug) == before

    # Received: open ones first, the emergency before the routine; answered ones after.
    listed = receiver.get(f"{BASE.format(tenant=lakeshore.slug)}/referrals/received").json()
    order = [r["id"] for r in listed if r["id"] in {first["id"], second["id"], third["id"]}]
    assert order[0] == first["id"]


def test_other_facilities_and_guessed_ids_are_refused_on_every_route(token_client, hillview, lakeshore, riverside):
    sender = api_of(token_client, hillview)
    patient_id = register(sender, hillview.slug)
    referral_id = refer(sender, hillview.slug, patient_id, letter(lakeshore.slug)).json()["id"]
    ours = BASE.format(tenant=hillview.slug)
    # Another facility's credentials on this facility's routes: refused before anything is read.
    outsider = api_of(token_client, riverside)
    assert outsider.post(f"{ours}/patients/{patient_id}/referrals", json=letter(lakeshore.slug)).status_code == 403
    assert outsider.get(f"{ours}/patients/{patient_id}/referrals").status_code == 403
    for path in ("/referrals/sent", "/referrals/received", "/referrals/destinations", f"/referrals/{referral_id}"):
        assert outsider.get(ours + path).status_code == 403, path
    for act in ("withdraw", "accept", "decline", "feedback"):
        assert outsider.post(f"{ours}/referrals/{referral_id}/{act}", json={}).status_code == 403, act
    # A third facility on its own routes: the referral between two others is not there.
    theirs = BASE.format(tenant=riverside.slug)
    assert outsider.get(f"{theirs}/referrals/{referral_id}").status_code == 404
    assert referral_id not in str(outsider.get(f"{theirs}/referrals/received").json())
    assert outsider.post(f"{theirs}/referrals/{referral_id}/accept").status_code == 404
    assert outsider.post(f"{theirs}/referrals/{referral_id}/decline", json={"reason": "not ours"}).status_code == 404
    assert outsider.post(f"{theirs}/referrals/{referral_id}/withdraw", json={"reason": "not ours"}).status_code == 404
    assert outsider.post(f"{theirs}/referrals/{referral_id}/feedback",
                         json={"findings": "not ours"}).status_code == 404
    assert outsider.post(f"{theirs}/patients/{patient_id}/referrals", json=letter(lakeshore.slug)).status_code == 404
    # Guessed ids at the facility itself; and the receiver answering for the sender, the sender for the receiver.
    assert sender.get(f"{ours}/referrals/{GUESS}").status_code == 404
    assert sender.post(f"{ours}/referrals/{GUESS}/withdraw", json={"reason": "a guess"}).status_code == 404
    assert sender.post(f"{ours}/patients/{GUESS}/referrals", json=letter(lakeshore.slug)).status_code == 404
    assert sender.post(f"{ours}/referrals/{referral_id}/accept").status_code == 404  # not addressed to it
    receiver = api_of(token_client, lakeshore)
    assert receiver.post(f"{BASE.format(tenant=lakeshore.slug)}/referrals/{referral_id}/withdraw",
                         json={"reason": "not ours to withdraw"}).status_code == 404
    nurse = token_client(hillview.slug, role="nurse")
    assert nurse.post(f"{ours}/patients/{patient_id}/referrals", json=letter(lakeshore.slug)).status_code == 403


def test_the_exchange_refuses_a_facility_role_at_the_sql_level(token_client, hillview, lakeshore, riverside, db):
    sender = api_of(token_client, hillview)
    patient_id = register(sender, hillview.slug)
    referral_id = refer(sender, hillview.slug, patient_id, letter(lakeshore.slug)).json()["id"]
    # The table itself is closed to every facility role.
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), db.tenant(riverside.slug) as conn:
        conn.execute(sa.text("SELECT * FROM control.referral"))
    # A third facility calling the functions with this referral's id reads nothing and acts on nothing: the
    # functions name the caller's facility from its role, whatever it sends.
    with db.tenant(riverside.slug) as conn:
        for side in ("sent", "received"):
            assert conn.execute(sa.text("SELECT * FROM control.referrals_of(:s, :id, NULL)"),
                                {"s": side, "id": referral_id}).all() == []
    for act in ("accept", "decline", "complete", "withdraw"):
        with pytest.raises(sa.exc.DBAPIError) as refused, db.tenant(riverside.slug) as conn:
            conn.execute(sa.text("SELECT control.act_on_referral(:id, :act, :by, 'x', :p, '{}'::jsonb)"),
                         {"id": referral_id, "act": act, "by": uuid.uuid4(), "p": uuid.uuid4()})
        assert isinstance(refused.value.orig, psycopg.Error) and refused.value.orig.sqlstate == "HR404", act
    # Its own side is still readable to the referring facility, unchanged.
    with db.tenant(hillview.slug) as conn:
        assert conn.execute(sa.text("SELECT status FROM control.referrals_of('sent', :id, NULL)"),
                            {"id": referral_id}).scalar() == "sent"
    # And the entry at the referring facility is append-only.
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), db.tenant(hillview.slug) as conn:
        conn.execute(sa.text("UPDATE referral SET urgency = 'routine'"))


def test_a_person_recorded_deceased_is_not_referred(token_client, hillview, lakeshore, db):
    from tests.layers.clinical.test_death import certificate

    api = api_of(token_client, hillview)
    patient_id = register(api, hillview.slug)
    certified = api.post(f"{BASE.format(tenant=hillview.slug)}/patients/{patient_id}/death", json=certificate())
    assert certified.status_code == 201, certified.text
    before = counts(db, hillview.slug)
    refused = refer(api, hillview.slug, patient_id, letter(lakeshore.slug))
    assert refused.status_code == 422 and "recorded deceased" in refused.json()["detail"]
    assert counts(db, hillview.slug) == before


def test_a_facility_refers_only_a_person_it_holds_a_chart_of(token_client, hillview, lakeshore, riverside, db):
    # Called from SQL by a facility role with another facility's patient's subject: refused with nothing sent,
    # so a forged letter cannot reach a hospital's chart of that person, nor its feedback come back, and a
    # subject id that is nobody is refused the same way.
    sender = api_of(token_client, hillview)
    patient_id = register(sender, hillview.slug)
    with db.tenant(hillview.slug) as conn:
        subject = conn.execute(sa.text("SELECT subject_id FROM patient WHERE id = :p"), {"p": patient_id}).scalar()
    refusals = []
    for forged in (subject, uuid.uuid4()):
        with pytest.raises(sa.exc.DBAPIError) as refused, db.tenant(riverside.slug) as conn:
            conn.execute(sa.text("SELECT control.send_referral(:id, :s, :p, :e, :by, :to, NULL, 'urgent', 'x', "
                                 "'{}'::jsonb)"), {"id": uuid.uuid4(), "s": forged, "p": uuid.uuid4(),
                                                   "e": uuid.uuid4(), "by": uuid.uuid4(), "to": lakeshore.slug})
        refusals.append((refused.value.orig.sqlstate, refused.value.orig.diag.message_primary))
    assert refusals[0] == refusals[1] and refusals[0][0] == "42501", refusals
    with db.control() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM control.referral WHERE from_tenant = :t"),
                            {"t": riverside.slug}).scalar() == 0


def test_a_facility_is_offered_at_the_clinics_it_takes_referrals_at_or_all_when_it_marks_none(
        token_client, hillview, lakeshore, riverside):
    api = api_of(token_client, hillview)
    offered = {d["tenant"]: [c["code"] for c in d["clinics"]]
               for d in api.get(f"{BASE.format(tenant=hillview.slug)}/referrals/destinations").json()}
    assert offered[lakeshore.slug] == ["MOPC"]  # DENT is not marked takes_referrals
    assert offered[riverside.slug] == ["MOPC", "DENT"]  # none marked: every clinic, as before the flag
    patient_id = register(api, hillview.slug)
    assert refer(api, hillview.slug, patient_id, letter(riverside.slug, clinic="DENT")).status_code == 201


def _free_slots(desk, tenant: str, clinic: str) -> list[str]:
    """The clinic's free slots next Monday (a session day of CLINICS, always in the future)."""
    today = dt.date.today()
    monday = today + dt.timedelta(days=7 - today.weekday())
    slots = desk.get(f"{BASE.format(tenant=tenant)}/clinics/{clinic}/slots", params={"date": monday.isoformat()})
    assert slots.status_code == 200, slots.text
    return [s["id"] for s in slots.json() if s["free"]]


def test_accepting_books_the_visit_in_a_slot_of_the_referrals_clinic_or_nothing(token_client, hillview, lakeshore,
                                                                                 riverside, db):
    sender = api_of(token_client, hillview)
    desk = api_of(token_client, lakeshore, "registrar")
    referral_id = refer(sender, hillview.slug, register(sender, hillview.slug),
                        letter(lakeshore.slug, clinic="MOPC")).json()["id"]
    accept = f"{BASE.format(tenant=lakeshore.slug)}/referrals/{referral_id}/accept"
    mopc, dent = _free_slots(desk, lakeshore.slug, "MOPC"), _free_slots(desk, lakeshore.slug, "DENT")
    someone = register(desk, lakeshore.slug)
    taken = desk.post(f"{BASE.format(tenant=lakeshore.slug)}/appointments",
                      json={"patient_id": someone, "slot_id": mopc[0]})
    assert taken.status_code == 201, taken.text
    before = counts(db, lakeshore.slug)
    refusals = [
        (desk, {"slot_id": mopc[0]}, 409, "already booked"),  # taken: nothing accepted
        (desk, {"slot_id": dent[0]}, 422, "choose one of clinic MOPC"),  # another clinic's
        (desk, {"slot_id": GUESS}, 422, "no slot"),  # a guessed slot
        (desk, {"slot_id": "not-a-slot"}, 422, "valid UUID"),
        (api_of(token_client, lakeshore), {"slot_id": mopc[1]}, 403, "operations.appointment.create"),  # no booking
        (api_of(token_client, riverside, "registrar"), {"slot_id": mopc[1]}, 403, ""),  # another facility
    ]
    for client, body, status, words in refusals:
        refused = client.post(accept, json=body)
        assert refused.status_code == status, (body, refused.text)
        assert words in refused.text
    assert counts(db, lakeshore.slug) == before
    assert desk.get(f"{BASE.format(tenant=lakeshore.slug)}/referrals/{referral_id}").json()["status"] == "sent"
    elsewhere = api_of(token_client, riverside, "registrar")
    assert elsewhere.post(f"{BASE.format(tenant=riverside.slug)}/referrals/{referral_id}/accept",
                          json={"slot_id": mopc[1]}).status_code == 404

    accepted = desk.post(accept, json={"slot_id": mopc[1]})
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert (body["status"], body["registered"]) == ("accepted", True)
    assert body["appointment"]["clinic_code"] == "MOPC"
    assert body["appointment"]["reason"].startswith(f"Referral from Hillview Health Centre ({referral_id}): Blood")
    with db.tenant(lakeshore.slug) as conn:
        booked = conn.execute(sa.text("SELECT patient_id, slot_id, status FROM appointment WHERE id = :a"),
                              {"a": body["appointment"]["id"]}).one()
    assert (str(booked.patient_id), str(booked.slot_id), booked.status) == (body["patient_id"], mopc[1], "booked")
    assert desk.post(accept, json={"slot_id": mopc[2]}).status_code == 409  # accepted already: not booked twice
