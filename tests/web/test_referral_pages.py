"""Referrals in the portal (appliance/web/referral.py) over in-process HTTP: "Refer to another facility" from the
chart (CSRF, no inline script, a refusal beside its field with what was typed kept), "Referrals received" at the
facility referred to, accepting (the person registered there from the letter), declining without a reason refused,
the feedback, and the referring chart reading it back; another facility's session, a third facility and guessed ids
refused on the pages."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.operations import scheduling
from appliance.web.portal import Clock
from tests.conftest import FACILITY_ZONE
from tests.layers.clinical.test_referral import CLINICS
from tests.web.test_death_pages import no_inline_script, seen_at
from tests.web.test_me import _portal_of
from tests.web.test_portal import post_form, principal_of


@pytest.fixture(scope="module")
def hillview(tenant_factory):
    return tenant_factory(name="Hillview Health Centre", facility_type="health_centre")


@pytest.fixture(scope="module")
def lakeshore(tenant_factory):
    return tenant_factory(name="Lakeshore District Hospital", clinics=CLINICS)  # MOPC takes referrals, DENT not


@pytest.fixture(scope="module")
def riverside(tenant_factory):
    return tenant_factory(name="Riverside Referral Hospital", facility_type="referral_hospital")


def send(clinician, tenant: str, patient_id, to: str, **typed):
    chart = f"/t/{tenant}/patients/{patient_id}"
    data = {"destination": to, "urgency": "urgent", "reason": "Chest pain on exertion",
            "summary": "Three weeks of exertional chest pain; ECG here unremarkable.", **typed}
    return post_form(clinician, f"{chart}/referrals/new", f"{chart}/referrals", data)


def test_a_letters_result_is_dated_on_the_facilitys_day_it_was_taken():
    """A letter keeps its results' times as ISO text, and the page printed their first ten characters: a glucose taken
    at 01:30 in Nairobi (22:30 UTC the evening before) was dated the day before."""
    clock = Clock(FACILITY_ZONE)
    assert clock.day("2026-03-30T22:30:00+00:00") == "31 Mar 2026"
    assert clock.day("2026-03-31") == "31 Mar 2026" and clock.day(None) == ""


def test_refer_accept_and_read_the_feedback_back(signed_in, db, hillview, lakeshore, person_factory):
    author = person_factory("clinician", hillview.slug)
    patient_id = seen_at(db, hillview.slug, author, uuid.uuid4().hex[:10])
    clinician = signed_in("clinician", hillview.slug)
    chart = f"/t/{hillview.slug}/patients/{patient_id}"
    tab = clinician.get(f"{chart}/referrals")
    assert tab.status_code == 200 and 'id="refer"' in tab.text
    form = clinician.get(f"{chart}/referrals/new")
    assert form.status_code == 200 and 'name="_csrf_token"' in form.text and "Lakeshore District Hospital" in form.text
    assert f'value="{hillview.slug}"' not in form.text  # not to itself
    assert f'value="{lakeshore.slug}:MOPC"' in form.text and ":DENT" not in form.text  # where it takes referrals
    no_inline_script(form.text)

    refused = send(clinician, hillview.slug, patient_id, "", reason="Typed and kept")
    assert refused.status_code == 422 and 'id="destination-error"' in refused.text and "Typed and kept" in refused.text
    closed = send(clinician, hillview.slug, patient_id, f"{lakeshore.slug}:DENT")
    assert closed.status_code == 422 and 'id="destination-error"' in closed.text
    assert "does not take referrals" in closed.text
    sent = send(clinician, hillview.slug, patient_id, lakeshore.slug)
    assert sent.status_code == 303, sent.text
    assert "Referred to Lakeshore District Hospital" in clinician.get(sent.headers["location"]).text

    desk = signed_in("registrar", lakeshore.slug)
    received = desk.get(f"/t/{lakeshore.slug}/referrals")
    assert received.status_code == 200 and "OKELLO" in received.text and "Urgent" in received.text
    no_inline_script(received.text)
    with db.control() as conn:
        referral_id = conn.execute(sa.text("SELECT id FROM control.referral WHERE from_patient = :p"),
                                   {"p": patient_id}).scalar()
    one = f"/t/{lakeshore.slug}/referrals/{referral_id}"
    letter = desk.get(one)
    assert "Three weeks of exertional chest pain" in letter.text and 'id="accept-form"' in letter.text
    # The patient's birth day as every page writes it, and the age the letter was sent at: '1950-02-11' was all the
    # receiving clinician read, to work out the age from.
    sent_on = dt.datetime.now(FACILITY_ZONE).date()
    aged = sent_on.year - 1950 - ((sent_on.month, sent_on.day) < (2, 11))
    assert f"(male, born 11 Feb 1950, {aged} y when referred)" in letter.text
    assert 'id="decline-form"' not in letter.text  # declining is a clinician's
    accepted = post_form(desk, one, f"{one}/accept", {})
    assert accepted.status_code == 303 and "referral-registered" in accepted.headers["location"]
    assert 'id="open-chart"' in desk.get(one).text

    doctor = signed_in("clinician", lakeshore.slug)
    empty = post_form(doctor, one, f"{one}/feedback", {"findings": ""})
    assert empty.status_code == 422 and 'id="findings-error"' in empty.text
    given = post_form(doctor, one, f"{one}/feedback", {"findings": "Stable angina; exercise test positive",
                                                       "advice": "Aspirin and atenolol; review in 3 months"})
    assert given.status_code == 303, given.text
    back = clinician.get(f"{chart}/referrals")
    assert "Stable angina; exercise test positive" in back.text and "Completed, feedback given" in back.text
    assert "Referred to Lakeshore District Hospital (urgent)" in clinician.get(f"{chart}/timeline").text
    sent_list = clinician.get(f"/t/{hillview.slug}/referrals/sent")
    assert sent_list.status_code == 200 and str(referral_id) in sent_list.text


def test_decline_needs_a_reason_and_others_are_refused(signed_in, db, hillview, lakeshore, riverside, person_factory):
    author = person_factory("clinician", hillview.slug)
    patient_id = seen_at(db, hillview.slug, author, uuid.uuid4().hex[:10])
    clinician = signed_in("clinician", hillview.slug)
    assert send(clinician, hillview.slug, patient_id, lakeshore.slug).status_code == 303
    with db.control() as conn:
        referral_id = conn.execute(sa.text("SELECT id FROM control.referral WHERE from_patient = :p"),
                                   {"p": patient_id}).scalar()
    doctor = signed_in("clinician", lakeshore.slug)
    one = f"/t/{lakeshore.slug}/referrals/{referral_id}"
    assert post_form(doctor, one, f"{one}/decline", {"reason": ""}).status_code == 422
    declined = post_form(doctor, one, f"{one}/decline", {"reason": "No cardiologist until March"})
    assert declined.status_code == 303
    assert "No cardiologist until March" in clinician.get(f"/t/{hillview.slug}/referrals/{referral_id}").text

    # The referring facility withdraws another one, not yet answered, saying why.
    assert send(clinician, hillview.slug, patient_id, lakeshore.slug).status_code == 303
    with db.control() as conn:
        second = conn.execute(sa.text("SELECT id FROM control.referral WHERE from_patient = :p AND status = 'sent'"),
                              {"p": patient_id}).scalar()
    mine = f"/t/{hillview.slug}/referrals/{second}"
    assert post_form(clinician, mine, f"{mine}/withdraw", {"reason": ""}).status_code == 422
    assert post_form(clinician, mine, f"{mine}/withdraw", {"reason": "Travelled to Nairobi"}).status_code == 303
    assert "Travelled to Nairobi" in clinician.get(mine).text

    outsider = signed_in("clinician", riverside.slug)
    assert outsider.get(f"/t/{hillview.slug}/referrals").status_code == 403
    assert outsider.get(f"/t/{hillview.slug}/referrals/{referral_id}").status_code == 403
    assert outsider.get(f"/t/{hillview.slug}/patients/{patient_id}/referrals").status_code == 403
    assert outsider.get(f"/t/{riverside.slug}/referrals/{referral_id}").status_code == 404
    assert str(referral_id) not in outsider.get(f"/t/{riverside.slug}/referrals").text
    assert clinician.get(f"/t/{hillview.slug}/referrals/{uuid.uuid4()}").status_code == 404
    assert clinician.get(f"/t/{hillview.slug}/patients/{uuid.uuid4()}/referrals").status_code == 404


def test_the_patient_reads_where_they_were_referred_but_not_the_letter(db, app, policy, signed_in, hillview,
                                                                       lakeshore, person_factory):
    author = person_factory("clinician", hillview.slug)
    patient_id = seen_at(db, hillview.slug, author, uuid.uuid4().hex[:10])
    clinician = signed_in("clinician", hillview.slug)
    assert send(clinician, hillview.slug, patient_id, lakeshore.slug,
                summary="Private working note: query angina").status_code == 303
    patient = _portal_of(db, app, policy, hillview.slug, patient_id, "Okello", "James")
    page = patient.get("/me")
    assert page.status_code == 200
    assert "Referred to <strong>Lakeshore District Hospital</strong>" in page.text
    assert "waiting for their answer" in page.text and "query angina" not in page.text
    assert "looked at a referral to another facility" in patient.get("/me/access?who=all").text


def test_the_forms_refuse_a_guessed_id_a_third_facility_and_the_wrong_side(signed_in, db, hillview, lakeshore,
                                                                           riverside, person_factory):
    author = person_factory("clinician", hillview.slug)
    patient_id = seen_at(db, hillview.slug, author, uuid.uuid4().hex[:10])
    clinician = signed_in("clinician", hillview.slug)
    assert send(clinician, hillview.slug, patient_id, lakeshore.slug).status_code == 303
    with db.control() as conn:
        referral_id = conn.execute(sa.text("SELECT id FROM control.referral WHERE from_patient = :p"),
                                   {"p": patient_id}).scalar()
    typed = {"reason": "not ours", "findings": "not ours"}
    tried = [(signed_in("clinician", riverside.slug), riverside.slug, referral_id, act)  # a third facility
             for act in ("accept", "decline", "feedback", "withdraw")]
    tried += [(clinician, hillview.slug, guess, act) for guess in (uuid.uuid4(),)
              for act in ("accept", "decline", "feedback", "withdraw")]
    tried += [(clinician, hillview.slug, referral_id, act) for act in ("accept", "decline", "feedback")]  # sender
    tried += [(signed_in("clinician", lakeshore.slug), lakeshore.slug, referral_id, "withdraw")]  # receiver
    for client, tenant, rid, act in tried:
        refused = post_form(client, f"/t/{tenant}/referrals", f"/t/{tenant}/referrals/{rid}/{act}", typed)
        assert refused.status_code == 404, (tenant, act, refused.status_code)
    with db.control() as conn:
        assert conn.execute(sa.text("SELECT status FROM control.referral WHERE id = :r"),
                            {"r": referral_id}).scalar() == "sent"


def test_accepting_books_a_slot_of_the_referrals_clinic_and_a_slot_taken_first_accepts_nothing(
        signed_in, db, hillview, lakeshore, person_factory):
    author = person_factory("clinician", hillview.slug)
    patient_id = seen_at(db, hillview.slug, author, uuid.uuid4().hex[:10])
    clinician = signed_in("clinician", hillview.slug)
    assert send(clinician, hillview.slug, patient_id, f"{lakeshore.slug}:MOPC").status_code == 303
    with db.control() as conn:
        referral_id = conn.execute(sa.text("SELECT id FROM control.referral WHERE from_patient = :p"),
                                   {"p": patient_id}).scalar()
    desk = signed_in("registrar", lakeshore.slug)
    one = f"/t/{lakeshore.slug}/referrals/{referral_id}"
    letter = desk.get(one)
    assert 'name="slot_id"' in letter.text and "Book the visit in MOPC" in letter.text
    no_inline_script(letter.text)
    offered = re.findall(r'<option value="([0-9a-f-]{36})"', letter.text)
    assert len(offered) >= 2
    assert 'name="slot_id"' not in signed_in("clinician", lakeshore.slug).get(one).text  # a clinician does not book

    # Someone at the desk books the first slot while the referral's page is open: accepting with it accepts nothing.
    desk_person = person_factory("registrar", lakeshore.slug)
    other = seen_at(db, lakeshore.slug, desk_person, uuid.uuid4().hex[:10])
    with db.tenant(lakeshore.slug) as conn:
        scheduling.book(conn, principal_of(desk_person, lakeshore.slug), other, uuid.UUID(offered[0]))
    taken = post_form(desk, one, f"{one}/accept", {"slot_id": offered[0]})
    assert taken.status_code == 409 and 'id="slot_id-error"' in taken.text
    assert "already booked" in taken.text and "The referral is not accepted yet" in taken.text
    assert offered[0] not in re.findall(r'<option value="([0-9a-f-]{36})"', taken.text)
    guessed = post_form(desk, one, f"{one}/accept", {"slot_id": str(uuid.uuid4())})
    assert guessed.status_code == 422 and 'id="slot_id-error"' in guessed.text
    assert post_form(desk, one, f"{one}/accept", {"slot_id": "tomorrow"}).status_code == 422
    with db.control() as conn:
        assert conn.execute(sa.text("SELECT status FROM control.referral WHERE id = :r"),
                            {"r": referral_id}).scalar() == "sent"

    booked = post_form(desk, one, f"{one}/accept", {"slot_id": offered[1]})
    assert booked.status_code == 303 and "referral-booked" in booked.headers["location"]
    with db.tenant(lakeshore.slug) as conn:
        reason = conn.execute(sa.text("SELECT reason FROM appointment WHERE slot_id = :s AND status = 'booked'"),
                              {"s": offered[1]}).scalar()
    assert reason.startswith(f"Referral from Hillview Health Centre ({referral_id}): Chest pain on exertion")
