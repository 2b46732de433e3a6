"""A patient moves and then cancels their own clinic appointment in a real browser (Debian's chromium,
headless) against the appliance served over HTTP: the appointments page, the free times of the clinic by day,
the move, the cancel (confirmed by the page's script), and the slot given back.

The journey asserts what the patient sees, saves a screenshot per step to test-artifacts/<journey>/, and fails
on a CSP violation, a script error, an error response, a request outside the appliance, or an inline script."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.operations import scheduling
from appliance.layers.operations.models import appointment_change
from appliance.substrate import identity
from appliance.substrate.principal import Principal
from tests.e2e.conftest import Clinic, Journey, Watch
from tests.e2e.test_feeds_reports_and_release_journeys import assert_self_contained, watch_origin
from tests.e2e.test_journeys import new_page
from tests.layers.operations.conftest import new_patient

pytestmark = pytest.mark.slow

WEEK = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@pytest.fixture(scope="module")
def clinic(tenant_factory) -> Clinic:
    """The facility this journey's server is started for: a clinic that sees patients every day (this journey
    needs no clinical history, so the shared fixture's is not made)."""
    config = tenant_factory(name="Lakeshore District Hospital", clinics=[
        {"code": "OPD", "name": "General outpatient clinic", "slot_minutes": 30, "self_booking": True,
         "sessions": [{"weekdays": WEEK, "start": "08:00", "end": "12:00"}]}])
    return Clinic(config.slug, config.name, [])


@pytest.fixture(scope="module")
def booked(db, policy, clinic) -> dict:
    """A patient with a portal account, booked by the front desk at the clinic's first time two days from now."""
    desk = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Front desk", tenant=clinic.slug,
                     role="registrar")
    with db.tenant(clinic.slug) as conn:
        chart = new_patient(conn, desk, given_names="Rose")
        day = conn.execute(sa.select(sa.func.now())).scalar_one().date() + dt.timedelta(days=2)
        first = next(s for s in scheduling.slots(conn, "OPD", day) if s["free"])
        appointment = scheduling.book(conn, desk, chart, first["id"])
    email, password = f"rose-{uuid.uuid4().hex[:6]}@example.org", "a long enough passphrase"
    with db.control() as conn:
        subject = identity.match_or_create_subject(conn, family_name="Otieno", given_names="Rose",
                                                   national_id=f"E2E-{uuid.uuid4().hex[:8]}").subject_id
        identity.note_facility(conn, subject, clinic.slug)
        account = identity.create_account(conn, policy, kind="patient", email=email, display_name="Rose Otieno",
                                          role="patient", subject_id=subject)
        identity.set_credentials(conn, account.account_id, password=password, mfa_secret=None)
    with db.tenant(clinic.slug) as conn:
        conn.exec_driver_sql("UPDATE patient SET subject_id = %s WHERE id = %s", (subject, chart))
    return {"email": email, "password": password, "appointment": appointment, "day": day}


def test_a_patient_moves_then_cancels_their_appointment(browser, live_server, db, clinic, booked):
    journey, watch = Journey("patient-moves-and-cancels-an-appointment"), Watch()
    context, page = new_page(browser, watch)
    elsewhere = watch_origin(page, live_server)
    page.goto(f"{live_server}/signin")
    page.get_by_label("E-mail").fill(booked["email"])
    page.get_by_label("Password").fill(booked["password"])
    page.get_by_role("button", name="Continue").click()  # no authenticator for patients
    page.wait_for_url(f"{live_server}/")
    page.goto(f"{live_server}/me")
    page.get_by_role("link", name="Cancel, move or book an appointment").click()
    page.wait_for_url(f"{live_server}/me/appointments")
    mine = page.locator(f'li[data-appointment="{booked["appointment"]["id"]}"]')
    assert "08:00" in mine.inner_text() and "General outpatient clinic" in mine.inner_text()
    journey.shot(page, "appointments")

    mine.get_by_role("link", name="Move to another time").click()
    day = page.locator(f'fieldset[data-day="{booked["day"].isoformat()}"]')
    assert "08:00" not in day.inner_text()  # the time it has is not offered again
    day.get_by_label("09:30").check()
    journey.shot(page, "free-times")
    page.get_by_role("button", name="Move to this time").click()
    page.wait_for_url(f"{live_server}/me/appointments?done=moved&appointment={booked['appointment']['id']}")
    assert "Your appointment is moved to " in page.locator("#done").inner_text()
    assert "09:30, General outpatient clinic" in page.locator("#done").inner_text()
    assert "09:30" in mine.inner_text()
    journey.shot(page, "moved")

    page.once("dialog", lambda dialog: dialog.accept())  # our script asks before cancelling
    mine.get_by_label("Why (optional, for the clinic)").fill("I am better")
    mine.get_by_role("button", name="Cancel this appointment").click()
    page.wait_for_url(f"{live_server}/me/appointments?done=cancelled")
    assert page.locator(f'li[data-appointment="{booked["appointment"]["id"]}"]').count() == 0
    journey.shot(page, "cancelled")
    with db.tenant(clinic.slug) as conn:
        held = scheduling.appointment_of(conn, booked["appointment"]["id"])
        freed = {s["id"]: s["free"] for s in scheduling.slots(conn, "OPD", booked["day"])}
        why = conn.execute(sa.select(appointment_change.c.reason).where(
            appointment_change.c.appointment_id == held["id"], appointment_change.c.action == "cancelled")).scalar()
    assert held["status"] == "cancelled" and freed[held["slot_id"]] and why == "I am better"
    assert_self_contained(page, elsewhere)
    context.close()
    watch.assert_clean()
