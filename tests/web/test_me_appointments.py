"""A patient's own appointments on the portal, over real HTTP: they cancel one, move it, and book at a clinic
that takes bookings from patients, by the JSON API and the page; the acts are theirs on the record and in
their access log, and the clinic's day list shows the booking. Refused: after the cut-off (409, phone the
clinic), a slot someone has (409), a clinic without self-booking (403), more than the limit (409), another
patient's appointment or a guessed id (404, unchanged), a facility holding no record of them (404), a staff
token or session, and a session's write without the CSRF header."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

import pytest
import sqlalchemy as sa

from appliance.layers.operations import scheduling
from appliance.layers.operations.models import appointment
from appliance.substrate import identity, record
from appliance.substrate.principal import Principal
from tests.layers.operations.conftest import new_patient
from tests.web.test_auth import csrf_token
from tests.web.test_me import _patient_client

NAIROBI = zoneinfo.ZoneInfo("Africa/Nairobi")
ALL_DAY = [{"weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "23:59"}]
CLINICS = [
    # Slots round the clock, so a slot inside the two-hour cut-off and slots days away exist whenever this runs.
    {"code": "GEN", "name": "General outpatient clinic", "slot_minutes": 30, "sessions": ALL_DAY,
     "self_booking": True},
    {"code": "DESK", "name": "Specialist clinic", "slot_minutes": 30, "sessions": ALL_DAY},
]


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Portal Booking Hospital", clinics=CLINICS, phone="+254 20 555 0199",
                          opening_hours="Monday to Friday 08:00-17:00")


@pytest.fixture(scope="module")
def elsewhere(tenant_factory):
    return tenant_factory(name="Elsewhere Health Centre", clinics=CLINICS)


@pytest.fixture(scope="module")
def desk(facility) -> Principal:
    return Principal(account_id=uuid.uuid4(), kind="staff", display_name="Front desk", tenant=facility.slug,
                     role="registrar")


def _patient(db, policy, app, facility, desk, given: str):
    """A chart at `facility` linked to a subject with a portal account; (chart id, account id, its client)."""
    with db.tenant(facility.slug) as conn:
        chart = new_patient(conn, desk, given_names=given)
    email = f"{given.lower()}-{uuid.uuid4().hex[:6]}@example.org"
    with db.control() as conn:
        subject = identity.match_or_create_subject(conn, family_name="Otieno", given_names=given,
                                                   national_id=f"APT-{uuid.uuid4().hex[:8]}").subject_id
        identity.note_facility(conn, subject, facility.slug)
        account = identity.create_account(conn, policy, kind="patient", email=email, display_name=f"{given} Otieno",
                                          role="patient", subject_id=subject).account_id
    with db.tenant(facility.slug) as conn:
        conn.exec_driver_sql("UPDATE patient SET subject_id = %s WHERE id = %s", (subject, chart))
    client = _patient_client(db, app, email)
    assert client.get("/api/me/appointments").status_code == 200  # and the CSRF cookie, as a browser gets it
    client.headers["x-csrf-token"] = client.cookies["healthos_csrf"]
    return chart, account, client


@pytest.fixture(scope="module")
def grace(db, policy, app, facility, desk):
    return _patient(db, policy, app, facility, desk, "Grace")


@pytest.fixture(scope="module")
def other(db, policy, app, facility, desk):
    return _patient(db, policy, app, facility, desk, "Wanjiku")


def _free(db, facility, clinic: str, *, after: dt.timedelta, skip: int = 0) -> uuid.UUID:
    """A free slot of the clinic beginning at least `after` from now (the `skip`-th such)."""
    with db.tenant(facility.slug) as conn:
        now = conn.execute(sa.select(sa.func.now())).scalar_one()
        free = [s for s in scheduling.slots(conn, clinic, (now + after).astimezone(NAIROBI).date(), 3)
                if s["free"] and s["starts_at"] >= now + after]
    return free[skip]["id"]


def _book(db, facility, desk, chart, clinic: str, *, after: dt.timedelta) -> dict:
    """The front desk books the patient (as a registrar would, by phone)."""
    slot = _free(db, facility, clinic, after=after)
    with db.tenant(facility.slug) as conn:
        return scheduling.book(conn, desk, chart, slot)


def _appointment(db, facility, appointment_id) -> dict:
    with db.tenant(facility.slug) as conn:
        return scheduling.appointment_of(conn, appointment_id)


def test_a_patient_moves_cancels_and_books_their_own_appointments(db, app, signed_in, facility, desk, grace):
    chart, account, client = grace
    booked = _book(db, facility, desk, chart, "DESK", after=dt.timedelta(days=1))
    listed = client.get("/api/me/appointments").json()
    mine = next(a for a in listed["appointments"] if a["id"] == str(booked["id"]))
    assert mine["changeable"] and mine["clinic"] == "Specialist clinic" and mine["starts_at"].endswith("+03:00")
    assert [(c["facility"], c["clinic_code"]) for c in listed["bookable"]] == [(facility.slug, "GEN")]
    assert listed["rules"] == {"cancel_cutoff_hours": 2, "live_self_booked": 3, "weeks_ahead": 4}

    base = f"/api/me/appointments/{facility.slug}/{booked['id']}"
    offered = client.get(f"{base}/slots").json()
    assert offered["time_zone"] == "Africa/Nairobi" and offered["clinic_code"] == "DESK"
    later = next(s for day in offered["days"][1:] for s in day["slots"] if s["id"] != str(booked["slot_id"]))
    moved = client.post(f"{base}/move", json={"slot_id": later["id"]})
    assert moved.status_code == 200, moved.text
    assert moved.json()["starts_at"] == later["starts_at"] and moved.json()["status"] == "booked"
    cancelled = client.post(f"{base}/cancel", json={"reason": "I feel better"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and not cancelled.json()["changeable"]
    freed = {s["id"] for day in client.get(f"/api/me/clinics/{facility.slug}/GEN/slots").json()["days"]
             for s in day["slots"]}
    assert freed  # GEN's times are offered; DESK's freed time is free to the desk's next caller:
    with db.tenant(facility.slug) as conn:
        at = dt.datetime.fromisoformat(later["starts_at"])
        assert next(s for s in scheduling.slots(conn, "DESK", at.date()) if str(s["id"]) == later["id"])["free"]

    slot = next(iter(sorted(freed)))
    made = client.post("/api/me/appointments", json={"facility": facility.slug, "slot_id": slot, "reason": "Review"})
    assert made.status_code == 201, made.text
    assert made.json()["clinic"] == "General outpatient clinic" and made.json()["status"] == "booked"

    # The acts are the patient's own on the record, and their access log says them in words.
    with db.tenant(facility.slug) as conn:
        authors = conn.execute(sa.select(record.entry.c.kind, record.entry.c.author_id)
                               .where(record.entry.c.patient_id == chart, record.entry.c.recorded_at > sa.func.now()
                                      - sa.text("interval '1 hour'"), record.entry.c.author_id == account)).all()
    assert sorted(kind for kind, _ in authors) == ["appointment", "appointment_status", "appointment_status"]
    log = client.get("/me/access?who=all").text
    assert "booked an appointment" in log and "moved an appointment" in log and "cancelled an appointment" in log

    # The clinic's day list, staff side, shows the booking like any other.
    day = dt.datetime.fromisoformat(made.json()["starts_at"]).date().isoformat()
    registrar = signed_in("registrar", facility.slug)
    listed = registrar.get(f"/api/t/{facility.slug}/clinics/GEN/appointments?date={day}").json()
    assert any(a["id"] == made.json()["id"] and a["status"] == "booked" for a in listed)

    # The page: the appointments, the book page's form books the next free time.
    page = client.get("/me/appointments")
    assert page.status_code == 200 and made.json()["id"] in page.text and "Book an appointment" in page.text
    # each appointment's actions named with its day: a screen reader's list of links read 'Move to another time' twice
    when = dt.datetime.fromisoformat(made.json()["starts_at"]).strftime("%A %d %B, %H:%M")
    assert f'aria-label="Move to another time: your appointment of {when}"' in page.text
    assert f'aria-label="Cancel this appointment: {when}"' in page.text
    form = client.get(f"/me/appointments/{facility.slug}/book/GEN")
    assert form.status_code == 200 and 'name="slot_id"' in form.text
    second = _free(db, facility, "GEN", after=dt.timedelta(days=1))
    posted = client.post(f"/me/appointments/{facility.slug}/book/GEN", follow_redirects=False,
                         data={"slot_id": str(second), "_csrf_token": csrf_token(form.text)})
    assert posted.status_code == 303 and posted.headers["location"].startswith("/me/appointments?done=booked&")
    # What was booked says when and where, in the facility's time, not 'booked.' alone.
    at = _appointment(db, facility, uuid.UUID(posted.headers["location"].rsplit("=", 1)[1]))
    assert at["slot_id"] == second
    with db.tenant(facility.slug) as conn:
        starts = conn.execute(sa.text("SELECT starts_at FROM slot WHERE id = :id"), {"id": second}).scalar_one()
    when = starts.astimezone(NAIROBI).strftime("%A %d %B %Y at %H:%M")
    said = client.get(posted.headers["location"]).text.split('id="done">')[1].split("</p>")[0]
    assert said == f"Your appointment is booked: {when}, General outpatient clinic, Portal Booking Hospital."


def test_the_list_names_only_the_patients_own_appointment_booked_or_moved(db, facility, desk, grace, other):
    """The list's 'booked: Monday … at 09:30' is found among the patient's own appointments: another patient's id
    in the address (a link passed on, a guess) names nothing of theirs, and a moved appointment says its new time."""
    chart, _, client = grace
    theirs = _book(db, facility, desk, other[0], "DESK", after=dt.timedelta(days=2))
    for guessed in (theirs["id"], uuid.uuid4(), "not-an-id"):
        said = client.get(f"/me/appointments?done=booked&appointment={guessed}").text
        assert 'id="done">Your appointment is booked.</p>' in said and "Specialist clinic," not in said
    mine = _book(db, facility, desk, chart, "DESK", after=dt.timedelta(days=1))
    action = f"/me/appointments/{facility.slug}/{mine['id']}/move"
    form = client.get(action)
    later = _free(db, facility, "DESK", after=dt.timedelta(days=3))
    moved = client.post(action, follow_redirects=False, data={"slot_id": str(later),
                                                              "_csrf_token": csrf_token(form.text)})
    assert moved.status_code == 303 and moved.headers["location"] == \
        f"/me/appointments?done=moved&appointment={mine['id']}"
    with db.tenant(facility.slug) as conn:
        starts = conn.execute(sa.text("SELECT starts_at FROM slot WHERE id = :id"), {"id": later}).scalar_one()
    when = starts.astimezone(NAIROBI).strftime("%A %d %B %Y at %H:%M")
    assert f"Your appointment is moved to {when}, Specialist clinic, Portal Booking Hospital." in \
        client.get(moved.headers["location"]).text


def test_the_desks_acts_on_an_appointment_each_say_what_they_were_in_the_access_log(db, policy, app, facility, desk):
    """The front desk books, moves, cancels and checks in: the patient's access log says each, as it says the
    patient's own acts, not "recorded an appointment" or "recorded an appointment's progress" for all."""
    chart, _, client = _patient(db, policy, app, facility, desk, "Akinyi")
    booked = _book(db, facility, desk, chart, "DESK", after=dt.timedelta(days=1))
    with db.tenant(facility.slug) as conn:
        scheduling.reschedule(conn, desk, booked["id"], _free(db, facility, "DESK", after=dt.timedelta(days=2)))
        scheduling.change(conn, desk, booked["id"], "cancelled", "the patient phoned")
    today = _book(db, facility, desk, chart, "DESK", after=dt.timedelta(minutes=1))
    with db.tenant(facility.slug) as conn:
        scheduling.change(conn, desk, today["id"], "checked_in")
    log = client.get("/me/access?who=all").text
    for said in ("booked an appointment", "moved an appointment", "cancelled an appointment",
                 "checked you in for an appointment"):
        assert said in log, said
    assert "recorded an appointment" not in log


def test_within_the_cut_off_the_patient_phones_the_clinic(db, facility, desk, grace):
    chart, _, client = grace
    soon = _book(db, facility, desk, chart, "DESK", after=dt.timedelta(minutes=1))
    base = f"/api/me/appointments/{facility.slug}/{soon['id']}"
    for refused in (client.post(f"{base}/cancel", json={}),
                    client.post(f"{base}/move", json={"slot_id": str(_free(db, facility, "DESK",
                                                                                  after=dt.timedelta(days=1)))})):
        assert refused.status_code == 409, refused.text
        assert "less than 2 hours" in refused.json()["detail"]
        assert "phone Portal Booking Hospital on +254 20 555 0199" in refused.json()["detail"]
    assert _appointment(db, facility, soon["id"])["status"] == "booked"
    # The number the tenant file gives, wherever the portal says to phone, as a link a phone dials.
    number = '<a class="nowrap" href="tel:+254205550199">+254 20 555 0199</a>'
    page = client.get("/me/appointments").text
    entry = page.split(f'data-appointment="{soon["id"]}"')[1].split("</li>")[0]
    assert f"phone Portal Booking Hospital on {number}" in entry and "/cancel" not in entry
    contact = f'<p class="small contact">Phone {number} · Open Monday to Friday 08:00-17:00</p>'
    assert contact in page and contact in client.get("/me").text
    assert f"phone Portal Booking Hospital on {number} for one" in client.get(
        f"/me/appointments/{facility.slug}/book/GEN").text


def test_a_facility_whose_file_gives_no_phone_is_named_alone():
    """Its file's `phone` is optional: without it a refusal says to phone the facility by name, and no page shows
    an empty link or a line saying nothing."""
    from appliance.layers.patient.portal import Holding

    holding = Holding("quiet", "Quiet Health Centre", uuid.uuid4())
    assert holding.whom_to_phone == "Quiet Health Centre" and holding.tel is None
    assert Holding("quiet", "Quiet Health Centre", uuid.uuid4(), phone="(020) 555-0100").tel == "tel:0205550100"


def test_the_portal_books_and_moves_only_to_a_time_it_could_still_cancel(db, facility, desk, grace):
    """A time inside the cut-off, booked or moved to on the portal, could not then be cancelled there: it is not
    offered, and one sent anyway is refused (422, phone the clinic), nothing booked or moved; the page says so."""
    chart, _, client = grace
    with db.tenant(facility.slug) as conn:
        now = conn.execute(sa.select(sa.func.now())).scalar_one()
    offered = [dt.datetime.fromisoformat(s["starts_at"]) for day in
               client.get(f"/api/me/clinics/{facility.slug}/GEN/slots").json()["days"] for s in day["slots"]]
    assert offered and min(offered) >= now + dt.timedelta(hours=2)
    soon = _free(db, facility, "GEN", after=dt.timedelta(minutes=30))
    refused = client.post("/api/me/appointments", json={"facility": facility.slug, "slot_id": str(soon)})
    assert refused.status_code == 422 and refused.json()["field"] == "slot_id", refused.text
    assert "begins in less than 2 hours" in refused.json()["detail"]
    assert "phone Portal Booking Hospital" in refused.json()["detail"]
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(appointment)
                            .where(appointment.c.slot_id == soon)).scalar_one() == 0
    booked = _book(db, facility, desk, chart, "DESK", after=dt.timedelta(days=1))
    moved = client.post(f"/api/me/appointments/{facility.slug}/{booked['id']}/move",
                        json={"slot_id": str(_free(db, facility, "DESK", after=dt.timedelta(minutes=30)))})
    assert moved.status_code == 422 and "begins in less than 2 hours" in moved.json()["detail"], moved.text
    assert _appointment(db, facility, booked["id"])["slot_id"] == booked["slot_id"]
    assert "book or move to a time here only if it begins at least 2 hours" in client.get("/me/appointments").text
    assert "a sooner time could not be cancelled or moved here" in client.get(
        f"/me/appointments/{facility.slug}/book/GEN").text


def test_a_slot_someone_has_and_a_clinic_without_self_booking_are_refused(db, facility, desk, grace, other):
    chart, _, client = grace
    mine = _book(db, facility, desk, chart, "DESK", after=dt.timedelta(days=1))
    theirs = _book(db, facility, desk, other[0], "DESK", after=dt.timedelta(days=2))
    taken = client.post(f"/api/me/appointments/{facility.slug}/{mine['id']}/move",
                        json={"slot_id": str(theirs["slot_id"])})
    assert taken.status_code == 409 and "already booked" in taken.json()["detail"]
    gen = _book(db, facility, desk, other[0], "GEN", after=dt.timedelta(days=2))
    twice = client.post("/api/me/appointments", json={"facility": facility.slug, "slot_id": str(gen["slot_id"])})
    assert twice.status_code == 409 and "already booked" in twice.json()["detail"]
    # On the pages, a time taken meanwhile gives the free times again with the refusal on top (what was typed
    # kept), not a page saying to choose another with nothing to choose from.
    for action, slot in ((f"/me/appointments/{facility.slug}/{mine['id']}/move", theirs["slot_id"]),
                         (f"/me/appointments/{facility.slug}/book/GEN", gen["slot_id"])):
        form = client.get(action)
        again = client.post(action, follow_redirects=False, data={
            "slot_id": str(slot), "reason": "Knee pain", "_csrf_token": csrf_token(form.text)})
        assert again.status_code == 409 and 'id="slots-refusal"' in again.text and "already booked" in again.text
        assert 'name="slot_id"' in again.text and f'value="{slot}"' not in again.text, action
    assert 'value="Knee pain"' in again.text
    desk_slot = _free(db, facility, "DESK", after=dt.timedelta(days=1))
    not_offered = client.post("/api/me/appointments", json={"facility": facility.slug, "slot_id": str(desk_slot)})
    assert not_offered.status_code == 403 and "does not take bookings on the portal" in not_offered.json()["detail"]
    assert client.get(f"/api/me/clinics/{facility.slug}/DESK/slots").status_code == 403
    assert _appointment(db, facility, mine["id"])["slot_id"] == mine["slot_id"]


def test_at_most_three_self_booked_appointments_to_come(db, policy, app, facility, desk):
    _, _, client = _patient(db, policy, app, facility, desk, "Akinyi")
    for n in range(3):
        slot = _free(db, facility, "GEN", after=dt.timedelta(days=1), skip=n)
        made = client.post("/api/me/appointments", json={"facility": facility.slug, "slot_id": str(slot)})
        assert made.status_code == 201, made.text
    fourth = client.post("/api/me/appointments", json={"facility": facility.slug, "slot_id": str(
        _free(db, facility, "GEN", after=dt.timedelta(days=1)))})
    assert fourth.status_code == 409 and "already have 3 appointments" in fourth.json()["detail"]


def test_another_patients_appointment_or_a_guessed_id_is_not_found_and_stays_as_it_was(db, facility, desk, grace,
                                                                                        other):
    _, _, client = grace
    theirs = _book(db, facility, desk, other[0], "DESK", after=dt.timedelta(days=1))
    target = str(_free(db, facility, "DESK", after=dt.timedelta(days=1)))
    for appointment_id in (theirs["id"], uuid.uuid4()):
        base = f"/api/me/appointments/{facility.slug}/{appointment_id}"
        page = f"/me/appointments/{facility.slug}/{appointment_id}/move"
        for answer in (client.post(f"{base}/cancel", json={}), client.post(f"{base}/move", json={"slot_id": target}),
                       client.get(f"{base}/slots"), client.get(page)):
            assert answer.status_code == 404, answer.text
    with db.tenant(facility.slug) as conn:
        row = conn.execute(sa.select(appointment).where(appointment.c.id == theirs["id"])).mappings().one()
    assert row["status"] == "booked" and row["slot_id"] == theirs["slot_id"]


def test_a_facility_holding_no_record_of_the_patient_takes_no_booking(db, elsewhere, grace):
    _, _, client = grace
    slot = str(_free(db, elsewhere, "GEN", after=dt.timedelta(days=1)))
    refused = client.post("/api/me/appointments", json={"facility": elsewhere.slug, "slot_id": slot})
    assert refused.status_code == 404
    assert refused.json()["detail"] == ("Elsewhere Health Centre holds no record of you: its front desk registers you "
                                        "first")
    nowhere = client.get("/me/appointments/nowhere/book/GEN", headers={"accept": "text/html"})
    assert nowhere.status_code == 404 and "No facility at this address holds a record of you." in nowhere.text
    assert client.get(f"/api/me/clinics/{elsewhere.slug}/GEN/slots").status_code == 404
    with db.tenant(elsewhere.slug) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(appointment)).scalar_one() == 0


def test_staff_and_unchecked_writes_are_refused_on_the_patients_api(db, facility, desk, grace, signed_in,
                                                                     token_client):
    chart, _, client = grace
    booked = _book(db, facility, desk, chart, "DESK", after=dt.timedelta(days=1))
    cancel = f"/api/me/appointments/{facility.slug}/{booked['id']}/cancel"
    token = token_client(facility.slug, permissions=["operations.*", "patient.*"])
    assert token.get("/api/me/appointments").status_code == 403
    assert token.post(cancel, json={}).status_code == 403
    clinician = signed_in("clinician", facility.slug)
    assert clinician.get("/api/me/appointments").status_code == 403
    clinician.headers["x-csrf-token"] = clinician.cookies.get("healthos_csrf") or ""
    assert clinician.post(cancel, json={}).status_code == 403
    del client.headers["x-csrf-token"]  # the patient's own session, without the CSRF header
    try:
        assert client.post(cancel, json={}).status_code == 403
    finally:
        client.headers["x-csrf-token"] = client.cookies["healthos_csrf"]
    assert _appointment(db, facility, booked["id"])["status"] == "booked"
    bad = client.post(cancel, json={"reason": "x" * 501})
    assert bad.status_code == 422 and "reason" in bad.json()["detail"]
    assert _appointment(db, facility, booked["id"])["status"] == "booked"
    # A NUL typed by no person is dropped, not a 500 (PostgreSQL text cannot hold one).
    assert client.post(cancel, json={"reason": "feel\u0000 better"}).json()["status"] == "cancelled"


def test_a_wrong_rules_file_is_refused_naming_why(tmp_path):
    from appliance.layers.operations.self_booking import AppointmentRulesError, load_rules

    wrong = tmp_path / "appointments.toml"
    wrong.write_text('cancel_cutoff_hours = "two"\nlive_self_booked = 3\nweeks_ahead = 12\n')
    with pytest.raises(AppointmentRulesError) as refused:
        load_rules(wrong)
    assert "cancel_cutoff_hours" in str(refused.value) and "weeks_ahead" in str(refused.value)
