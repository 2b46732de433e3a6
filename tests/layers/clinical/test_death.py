"""Death certification over HTTP and in the record: the WHO form's refusals, one certificate per person, the
person deceased at every facility (a visit, an admission, a booking refused elsewhere), entered in error
withdrawing it with its history kept, the reactions in the certificate's transaction, the deaths still to
certify, and other facilities' credentials and guessed ids refused on every route."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

import pytest
import sqlalchemy as sa

from appliance.layers.operations import adt, ed, scheduling
from appliance.substrate import audit, identity
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import drop_tenant
from tests.layers.clinical.conftest import CLINICAL_CONFIG
from tests.layers.operations.conftest import OPERATIONS_CONFIG

BASE = "/api/t/{tenant}"
GUESS = str(uuid.uuid4())
CONFIG = {**OPERATIONS_CONFIG, "catalogue": CLINICAL_CONFIG["catalogue"]}


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Kisumu District Hospital", **CONFIG)


@pytest.fixture(scope="module")
def other_facility(tenant_factory):
    return tenant_factory(name="Siaya Health Centre", **CONFIG)


@pytest.fixture(scope="module")
def bed_manager(facility) -> Principal:
    return Principal(account_id=uuid.uuid4(), kind="staff", display_name="Bed Manager", tenant=facility.slug,
                     role="bed_manager")


def register(api, tenant: str, national_id: str | None = None, **overrides) -> str:
    body = {"family_name": "Adhiambo", "given_names": "Grace", "birth_date": "1961-05-02", "sex": "female",
            "identifiers": [{"system": "national_id", "value": national_id or uuid.uuid4().hex[:10]}]}
    body.update(overrides)
    response = api.post(f"{BASE.format(tenant=tenant)}/patients", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def certificate(**overrides) -> dict:
    body = {"died_at": (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat(), "place": "this_facility",
            "part1": [{"code": "J96.0", "interval": "2 hours"}, {"code": "J18.9", "interval": "4 days"},
                      {"code": "B20", "interval": "6 years"}],
            "part2": [{"code": "E11.9"}], "manner": "disease", "pregnancy": "not_pregnant"}
    body.update(overrides)
    return body


def death_url(tenant: str, patient_id: str) -> str:
    return f"{BASE.format(tenant=tenant)}/patients/{patient_id}/death"


def counts(db: Database, tenant: str) -> tuple[int, int, int]:
    with db.tenant(tenant) as conn:
        return tuple(conn.execute(sa.text(
            "SELECT (SELECT count(*) FROM entry), (SELECT count(*) FROM encounter), (SELECT count(*) FROM appointment)"
        )).one())


def first_slot(db: Database, tenant: str) -> str:
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    with db.tenant(tenant) as conn:
        return str(scheduling.slots(conn, "MOPC", tomorrow)[0]["id"])


def test_the_form_is_refused_field_by_field_with_nothing_written(token_client, facility, db: Database):
    api = token_client(facility.slug, role="clinician")
    woman = register(api, facility.slug, birth_date="1994-03-01")
    man = register(api, facility.slug, sex="male", given_names="Peter")
    before = counts(db, facility.slug)
    refusals = [
        (woman, certificate(part1=[{"code": "J96.0"}, {"code": "Q99.99"}]), "part1.b.code", "Q99.99"),
        (woman, certificate(died_at=(dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()), "died_at",
         "future"),
        (woman, certificate(pregnancy=None), "pregnancy", "pregnant"),
        (man, certificate(), "pregnancy", "man"),
        (woman, certificate(place="other"), None, "place_other"),
        (woman, certificate(died_at="2026-03-01T04:30:00"), None, "UTC offset"),
        (woman, certificate(part1=[]), None, "part1"),
        (woman, certificate(manner="natural"), None, "manner"),
    ]
    for patient_id, body, field, words in refusals:
        refused = api.post(death_url(facility.slug, patient_id), json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert words in refused.json()["detail"], refused.json()
        if field:
            assert refused.json()["field"] == field
    assert counts(db, facility.slug) == before


def test_a_certificate_marks_the_person_deceased_at_every_facility(token_client, facility, other_facility,
                                                                   db: Database):
    api = token_client(facility.slug, role="clinician")
    elsewhere = token_client(other_facility.slug, role="clinician")
    front_desk = token_client(other_facility.slug, role="bed_manager")
    national_id = uuid.uuid4().hex[:10]
    here = register(api, facility.slug, national_id)
    there = register(elsewhere, other_facility.slug, national_id)
    certified = api.post(death_url(facility.slug, here), json=certificate(part1=[
        {"code": "J96.0", "interval": "2 hours"}, {"code": "J18.9", "interval": "4 days"}]))
    assert certified.status_code == 201, certified.text
    body = certified.json()
    # The underlying cause as certified: the lowest used line of Part 1, with its ICD-10 chapter.
    assert (body["underlying_code"], body["underlying_chapter"]) == ("J18.9", "X")
    assert [line["line"] for line in body["part1"]] == ["a", "b"]

    seen_there = elsewhere.get(death_url(other_facility.slug, there)).json()
    assert seen_there["deceased"] is True and seen_there["certificate"] is None
    assert seen_there["certified_at_facility"] == "Kisumu District Hospital"

    before = counts(db, other_facility.slug)
    day = dt.datetime.fromisoformat(body["died_at"]).astimezone(zoneinfo.ZoneInfo("Africa/Nairobi"))
    sentence = f"recorded deceased on {day.day} {day:%B %Y} at Kisumu District Hospital"
    tried = [
        elsewhere.post(f"{BASE.format(tenant=other_facility.slug)}/patients/{there}/encounters",
                       json={"encounter_class": "outpatient", "reason": "review"}),
        front_desk.post(f"{BASE.format(tenant=other_facility.slug)}/admissions",
                        json={"patient_id": there, "ward_code": "GEN"}),
        front_desk.post(f"{BASE.format(tenant=other_facility.slug)}/ed/arrivals", json={"patient_id": there}),
    ]
    booker = token_client(other_facility.slug, permissions=["operations.appointment.create"])
    tried.append(booker.post(f"{BASE.format(tenant=other_facility.slug)}/appointments",
                             json={"patient_id": there, "slot_id": first_slot(db, other_facility.slug)}))
    for refused in tried:
        assert refused.status_code == 422, refused.text
        assert sentence in refused.json()["detail"], refused.json()["detail"]
    assert counts(db, other_facility.slug) == before  # nothing of any of them written

    # A second certificate, here or there, is refused: the first is corrected instead.
    again = api.post(death_url(facility.slug, here), json=certificate())
    assert again.status_code == 409 and "correct" in again.json()["detail"]
    there_too = elsewhere.post(death_url(other_facility.slug, there), json=certificate())
    assert there_too.status_code == 409 and "Kisumu District Hospital" in there_too.json()["detail"]

    # A tenant transaction reads the mark only through its function; the table itself stays out of reach.
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), db.tenant(other_facility.slug) as conn:
        conn.execute(sa.text("SELECT * FROM control.subject_death"))


def test_corrected_then_entered_in_error_the_person_is_living_again(token_client, facility, other_facility,
                                                                     db: Database):
    api = token_client(facility.slug, role="clinician")
    elsewhere = token_client(other_facility.slug, role="clinician")
    national_id = uuid.uuid4().hex[:10]
    here, there = register(api, facility.slug, national_id), register(elsewhere, other_facility.slug, national_id)
    first = api.post(death_url(facility.slug, here), json=certificate()).json()
    earlier = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).replace(microsecond=0)
    corrected = api.put(death_url(facility.slug, here), json=certificate(
        died_at=earlier.isoformat(), reason="time of death misread from the ward sheet", version_id=first["id"]))
    assert corrected.status_code == 200, corrected.text
    assert dt.datetime.fromisoformat(corrected.json()["died_at"]) == earlier
    seen = elsewhere.get(death_url(other_facility.slug, there)).json()
    assert dt.datetime.fromisoformat(seen["died_at"]) == earlier
    stale = api.put(death_url(facility.slug, here), json=certificate(reason="again", version_id=first["id"]))
    assert stale.status_code == 409

    # The chart's generic withdrawal sends a death to its own route, which says what the certificate had closed.
    generic = api.post(f"{BASE.format(tenant=facility.slug)}/patients/{here}/entries/{corrected.json()['id']}"
                       "/entered-in-error", json={"reason": "certified on the wrong patient"})
    assert generic.status_code == 422 and "death/entered-in-error" in generic.json()["detail"]
    retracted = api.post(f"{death_url(facility.slug, here)}/entered-in-error",
                         json={"reason": "certified on the wrong patient"})
    assert retracted.status_code == 200, retracted.text
    # The withdrawal names the time of death of the version it withdrew (the corrected one), now and afterwards.
    assert dt.datetime.fromisoformat(retracted.json()["died_at"]) == earlier
    assert dt.datetime.fromisoformat(api.get(death_url(facility.slug, here)).json()["withdrawn"]["died_at"]) == earlier
    assert elsewhere.get(death_url(other_facility.slug, there)).json()["deceased"] is False
    assert elsewhere.post(f"{BASE.format(tenant=other_facility.slug)}/patients/{there}/encounters",
                          json={"encounter_class": "outpatient"}).status_code == 201
    history = api.get(f"{BASE.format(tenant=facility.slug)}/patients/{here}/entries/{first['id']}/history").json()
    assert [v["entry_status"] for v in history] == ["final", "amended", "entered_in_error"]
    with db.control() as conn:
        withdrawn = conn.execute(sa.text("SELECT withdrawn_at IS NOT NULL, withdrawn_reason FROM control.subject_death "
                                         "WHERE entry_id = :e"), {"e": first["root_id"]}).one()
    assert tuple(withdrawn) == (True, "certified on the wrong patient")
    # The right patient's death can now be certified.
    assert api.post(death_url(facility.slug, here), json=certificate()).status_code == 201


def subject_of(db: Database, tenant: str, patient_id: str) -> uuid.UUID:
    with db.tenant(tenant) as conn:
        return conn.execute(sa.text("SELECT subject_id FROM patient WHERE id = :p"), {"p": patient_id}).scalar_one()


def test_a_merge_either_way_makes_the_person_deceased_under_both_subjects(token_client, facility, other_facility,
                                                                            db: Database):
    """The mark is found through merges whichever side was certified: the look-up's quick answer for a person
    never merged must not skip a merged one."""
    api = token_client(facility.slug, role="clinician")
    elsewhere = token_client(other_facility.slug, role="clinician")
    here = register(api, facility.slug)
    there = register(elsewhere, other_facility.slug)  # another national id: two subjects until merged
    assert api.post(death_url(facility.slug, here), json=certificate()).status_code == 201
    certified, living = subject_of(db, facility.slug, here), subject_of(db, other_facility.slug, there)
    assert elsewhere.get(death_url(other_facility.slug, there)).json()["deceased"] is False
    for survivor, merged in [(certified, living), (living, certified)]:
        with db.control() as conn:
            merge = identity.merge_subjects(conn, survivor_id=survivor, merged_id=merged, reason="one person",
                                            by=None)
        assert elsewhere.get(death_url(other_facility.slug, there)).json()["deceased"] is True, survivor
        assert api.get(death_url(facility.slug, here)).json()["deceased"] is True
        refused = elsewhere.post(f"{BASE.format(tenant=other_facility.slug)}/patients/{there}/encounters",
                                 json={"encounter_class": "outpatient"})
        assert refused.status_code == 422 and "Kisumu District Hospital" in refused.json()["detail"]
        with db.control() as conn:
            identity.unmerge_subjects(conn, merge_id=merge, by=None)
        assert elsewhere.get(death_url(other_facility.slug, there)).json()["deceased"] is False


def test_the_certificate_closes_what_the_living_had_open_but_not_a_bed(token_client, facility, bed_manager,
                                                                        db: Database):
    api = token_client(facility.slug, role="clinician")
    outpatient, inpatient = register(api, facility.slug), register(api, facility.slug, given_names="Rose")
    visit = api.post(f"{BASE.format(tenant=facility.slug)}/patients/{outpatient}/encounters",
                     json={"encounter_class": "outpatient", "reason": "breathless"}).json()
    with db.tenant(facility.slug) as conn:
        booked = scheduling.book(conn, bed_manager, uuid.UUID(outpatient), uuid.UUID(first_slot(db, facility.slug)))
        in_ed = ed.arrive(conn, bed_manager, uuid.UUID(outpatient), complaint="collapse")
        stay = adt.admit(conn, bed_manager, uuid.UUID(inpatient), ward_code="GEN")
    for patient_id in (outpatient, inpatient):
        assert api.post(death_url(facility.slug, patient_id), json=certificate()).status_code == 201
    with db.tenant(facility.slug) as conn:
        appointment = conn.execute(sa.text("SELECT status FROM appointment WHERE id = :id"),
                                   {"id": booked["id"]}).scalar()
        why = conn.execute(sa.text("SELECT reason FROM appointment_change WHERE appointment_id = :id "
                                   "AND action = 'cancelled'"), {"id": booked["id"]}).scalar()
        statuses = dict(conn.execute(sa.text("SELECT id, status FROM encounter WHERE patient_id IN (:a, :b)"),
                                     {"a": outpatient, "b": inpatient}).all())
        departed = ed.visit_of(conn, in_ed["id"])
        still_admitted = adt.stay_of(conn, stay["id"])
    assert (appointment, why) == ("cancelled", "deceased")
    assert statuses[uuid.UUID(visit["id"])] == "finished" and statuses[in_ed["id"]] == "finished"
    assert departed["disposition"] == "died"
    # The admitted patient keeps the bed until the bed manager discharges them (disposition died).
    assert still_admitted["discharged_at"] is None and statuses[stay["encounter_id"]] == "in_progress"


def test_a_withdrawn_certificate_reopens_nothing_and_says_what_it_closed(token_client, signed_in, facility,
                                                                         other_facility, bed_manager, db: Database):
    """Written on the wrong patient and withdrawn: the appointment it cancelled stays cancelled and the visit it
    ended stays ended (a clerk decides), but the withdrawal's answer and the certificate's state list them by day and
    clinic, and the appointments desk's list finds the appointment, not one of a person still deceased."""
    api = token_client(facility.slug, role="clinician")
    wrong, dead = register(api, facility.slug, given_names="Wrongly"), register(api, facility.slug, given_names="Truly")
    visit = api.post(f"{BASE.format(tenant=facility.slug)}/patients/{wrong}/encounters",
                     json={"encounter_class": "outpatient", "reason": "cough"}).json()
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    with db.tenant(facility.slug) as conn:
        free = [s["id"] for s in scheduling.slots(conn, "MOPC", tomorrow, days=2) if s["free"]][-2:]
        booked = {patient_id: scheduling.book(conn, bed_manager, uuid.UUID(patient_id), slot)["id"]
                  for patient_id, slot in zip((wrong, dead), free, strict=True)}
    for patient_id in (wrong, dead):
        assert api.post(death_url(facility.slug, patient_id), json=certificate()).status_code == 201
    url = f"{death_url(facility.slug, wrong)}/entered-in-error"
    assert api.post(url, json={"reason": "no"}).status_code == 422  # a reason in words, at least 3 characters
    outsider = token_client(other_facility.slug, role="clinician")
    assert outsider.post(url, json={"reason": "not ours"}).status_code == 403
    assert api.post(f"{death_url(facility.slug, GUESS)}/entered-in-error",
                    json={"reason": "a guessed chart"}).status_code == 404
    withdrawn = api.post(url, json={"reason": "certified on the wrong patient"})
    assert withdrawn.status_code == 200, withdrawn.text
    closed = withdrawn.json()["closed"]
    assert [(a["id"], a["clinic_code"]) for a in closed["appointments"]] == [(str(booked[wrong]), "MOPC")]
    assert closed["appointments"][0]["clinic"]  # the clinic's name, for the clerk
    assert [(e["id"], e["encounter_class"], e["reason"], e["from_status"], e["to_status"])
            for e in closed["encounters"]] == [(visit["id"], "outpatient", "cough", "arrived", "finished")]
    assert api.get(death_url(facility.slug, wrong)).json()["withdrawn"]["closed"] == closed
    assert api.post(url, json={"reason": "again"}).status_code == 404  # none in force any more
    with db.tenant(facility.slug) as conn:
        still = conn.execute(sa.text("SELECT status FROM appointment WHERE id = :id"), {"id": booked[wrong]}).scalar()
        ended = conn.execute(sa.text("SELECT status FROM encounter WHERE id = :id"), {"id": visit["id"]}).scalar()
    assert (still, ended) == ("cancelled", "finished")  # nothing reopened behind the clerk's back
    desk_url = f"{BASE.format(tenant=facility.slug)}/appointments/cancelled-by-withdrawn-death"
    desk = token_client(facility.slug, role="registrar")
    listed = desk.get(desk_url)
    assert listed.status_code == 200, listed.text
    ids = [row["id"] for row in listed.json()]
    assert str(booked[wrong]) in ids and str(booked[dead]) not in ids
    assert token_client(other_facility.slug, role="registrar").get(desk_url).status_code == 403
    # The same list on the desk's page, linked from the clinic pages.
    desk_page = signed_in("registrar", facility.slug)
    assert 'id="to-rebook"' in desk_page.get(f"/t/{facility.slug}/clinics/MOPC").text
    rows = desk_page.get(f"/t/{facility.slug}/appointments/to-rebook").text.split('class="rows-on-phone to-rebook"')[1]
    assert f'data-appointment="{booked[wrong]}"' in rows and "Wrongly" in rows and "Truly" not in rows
    reads = [e for e in audit.patient_access_log(db, facility.slug, uuid.UUID(wrong))
             if e.event_type == "record.appointment.read"]
    assert reads


def test_deaths_to_certify_lists_a_died_disposition_until_certified(token_client, facility, other_facility,
                                                                    bed_manager, db: Database):
    api = token_client(facility.slug, role="clinician")
    patient_id = register(api, facility.slug, given_names="Esther")
    with db.tenant(facility.slug) as conn:
        adt.admit(conn, bed_manager, uuid.UUID(patient_id), ward_code="GEN")
        adt.discharge(conn, bed_manager, uuid.UUID(patient_id), disposition="died")
    url = f"{BASE.format(tenant=facility.slug)}/deaths/to-certify"
    listed = api.get(url)
    assert listed.status_code == 200, listed.text
    assert [(r["patient_id"], r["place"]) for r in listed.json() if r["patient_id"] == patient_id] == \
        [(patient_id, "ward GEN")]
    assert api.post(death_url(facility.slug, patient_id), json=certificate()).status_code == 201
    assert patient_id not in {r["patient_id"] for r in api.get(url).json()}
    # Not for another facility's credentials, nor for a role without the permission.
    assert token_client(other_facility.slug, role="clinician").get(url).status_code == 403
    assert token_client(facility.slug, role="billing_clerk").get(url).status_code == 403


def test_other_facilities_and_guessed_ids_are_refused_on_every_route(token_client, facility, other_facility):
    api = token_client(facility.slug, role="clinician")
    patient_id = register(api, facility.slug)
    outsider = token_client(other_facility.slug, role="clinician")
    ours = death_url(facility.slug, patient_id)
    correction = certificate(reason="a correction", version_id=GUESS)
    assert outsider.get(ours).status_code == 403
    assert outsider.post(ours, json=certificate()).status_code == 403
    assert outsider.put(ours, json=correction).status_code == 403
    theirs = death_url(other_facility.slug, patient_id)  # our patient's id at their facility: nobody
    assert outsider.get(theirs).status_code == 404
    assert outsider.post(theirs, json=certificate()).status_code == 404
    assert outsider.put(theirs, json=correction).status_code == 404
    guessed = death_url(facility.slug, GUESS)
    assert api.get(guessed).status_code == 404
    assert api.post(guessed, json=certificate()).status_code == 404
    assert api.put(ours, json=correction).status_code == 404  # a guessed version of a real chart
    nurse = token_client(facility.slug, role="nurse")
    assert nurse.post(ours, json=certificate()).status_code == 403  # certifying is a clinician's act


def test_the_certificate_is_append_only_and_its_mark_only_its_facilitys(token_client, facility, other_facility,
                                                                          db: Database):
    api = token_client(facility.slug, role="clinician")
    patient_id = register(api, facility.slug)
    certified = api.post(death_url(facility.slug, patient_id), json=certificate())
    assert certified.status_code == 201
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), db.tenant(facility.slug) as conn:
        conn.execute(sa.text("UPDATE death SET manner = 'war'"))
    # Another facility calling the withdrawal with this certificate's id withdraws nothing: the function names
    # the caller's facility from its role, not from anything the caller sends.
    with db.tenant(other_facility.slug) as conn:
        conn.execute(sa.text("SELECT control.withdraw_subject_death(:e, 'not mine to withdraw')"),
                     {"e": certified.json()["root_id"]})
    assert api.get(death_url(facility.slug, patient_id)).json()["deceased"] is True


def test_the_person_stays_deceased_when_the_certifying_facility_is_dropped(token_client, tenant_factory,
                                                                           other_facility, db: Database):
    closing = tenant_factory(name="Bondo Mission Hospital", **CONFIG)
    api = token_client(closing.slug, role="clinician")
    elsewhere = token_client(other_facility.slug, role="clinician")
    national_id = uuid.uuid4().hex[:10]
    certified = api.post(death_url(closing.slug, register(api, closing.slug, national_id)), json=certificate())
    assert certified.status_code == 201, certified.text
    there = register(elsewhere, other_facility.slug, national_id)

    drop_tenant(db, closing.slug)

    seen = elsewhere.get(death_url(other_facility.slug, there)).json()
    assert seen["deceased"] is True and seen["certified_at_facility"] == "a facility no longer on this appliance"
    refused = elsewhere.post(f"{BASE.format(tenant=other_facility.slug)}/patients/{there}/encounters",
                             json={"encounter_class": "outpatient", "reason": "review"})
    assert refused.status_code == 422 and "a facility no longer on this appliance" in refused.json()["detail"]


def test_a_facility_marks_deceased_only_a_person_it_holds_a_chart_of(token_client, facility, other_facility,
                                                                       db: Database):
    # Called from SQL by a facility role with another facility's patient's subject (a bug, or an injected
    # query): refused, nothing marked, and the refusal the same whether that person is living, already
    # deceased, or nobody, so probing subject ids tells the facility nothing.
    api = token_client(facility.slug, role="clinician")
    living, dead = register(api, facility.slug), register(api, facility.slug)
    certified = api.post(death_url(facility.slug, dead), json=certificate())
    assert certified.status_code == 201
    # Its correction called from the other facility with this certificate's id changes nothing (the caller's
    # facility comes from its role), as the withdrawal does not (test above).
    with db.tenant(other_facility.slug) as conn:
        conn.execute(sa.text("SELECT control.correct_subject_death(:e, '1970-01-01')"),
                     {"e": certified.json()["root_id"]})
    assert api.get(death_url(facility.slug, dead)).json()["died_at"] == certified.json()["died_at"]
    with db.tenant(facility.slug) as conn:
        subjects = dict(conn.execute(sa.text("SELECT id::text, subject_id FROM patient WHERE id IN (:a, :b)"),
                                     {"a": living, "b": dead}).all())
    refusals = []
    for subject in (subjects[living], subjects[dead], uuid.uuid4()):
        with pytest.raises(sa.exc.DBAPIError) as refused, db.tenant(other_facility.slug) as conn:
            conn.execute(sa.text("SELECT control.record_subject_death(:s, :p, :e, now())"),
                         {"s": subject, "p": uuid.uuid4(), "e": uuid.uuid4()})
        refusals.append((refused.value.orig.sqlstate, refused.value.orig.diag.message_primary))
    assert refusals[0] == refusals[1] == refusals[2] and refusals[0][0] == "42501", refusals
    with db.control() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM control.subject_death WHERE subject_id = :s"),
                            {"s": subjects[living]}).scalar() == 0
    assert api.get(death_url(facility.slug, living)).json()["deceased"] is False


def test_every_control_function_a_facility_may_call_pins_its_search_path(db: Database):
    # A SECURITY DEFINER function runs with its owner's rights: one that resolved a name through the caller's
    # search_path would run an operator or function the caller created. Each is pinned to pg_catalog.
    with db.control() as conn:
        loose = conn.execute(sa.text(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'control' AND p.prosecdef "
            "AND NOT coalesce('search_path=pg_catalog' = ANY (p.proconfig), false)")).scalars().all()
    assert loose == []


def test_every_read_and_write_of_a_death_is_on_the_patients_access_log(token_client, facility, other_facility,
                                                                        bed_manager, db: Database):
    api = token_client(facility.slug, role="clinician")
    elsewhere = token_client(other_facility.slug, role="clinician")
    national_id = uuid.uuid4().hex[:10]
    here, there = register(api, facility.slug, national_id), register(elsewhere, other_facility.slug, national_id)
    with db.tenant(facility.slug) as conn:
        adt.admit(conn, bed_manager, uuid.UUID(here), ward_code="GEN")
        adt.discharge(conn, bed_manager, uuid.UUID(here), disposition="died")
    assert api.get(f"{BASE.format(tenant=facility.slug)}/deaths/to-certify").status_code == 200
    certified = api.post(death_url(facility.slug, here), json=certificate()).json()
    assert api.get(death_url(facility.slug, here)).status_code == 200
    assert api.put(death_url(facility.slug, here), json=certificate(
        reason="the interval of line b", version_id=certified["id"])).status_code == 200
    assert elsewhere.get(death_url(other_facility.slug, there)).json()["deceased"] is True

    def kinds(tenant: str, patient_id: str) -> list[str]:
        return [e.event_type for e in audit.patient_access_log(db, tenant, uuid.UUID(patient_id))
                if ".death." in e.event_type or "encounter.read" in e.event_type]

    logged = kinds(facility.slug, here)
    # The list of deaths to certify, the certificate written, read, and corrected: each on the patient's log.
    assert logged[0] == "record.encounter.read" and logged.count("record.death.create") == 1, logged
    assert "record.death.read" in logged and "record.death.amend" in logged, logged
    # The other facility's read of the mark is on its own log of the person.
    assert "record.death.read" in kinds(other_facility.slug, there)
