"""A parent opens their baby's vaccination card on a phone in a real browser (Debian's chromium, headless) against
the appliance served over HTTP: from the record to the Vaccinations tab, the dose overdue at the top and the doses
given below, at a phone's width.

The journey asserts what the parent sees, saves a screenshot per step to test-artifacts/<journey>/, and fails on a
CSP violation, a script error, an error response, a request outside the appliance, or an inline script."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

import pytest

from appliance.layers.clinical import immunization
from appliance.layers.clinical.immunization_schedule import load_schedule
from appliance.layers.clinical.schemas import ImmunizationIn
from appliance.substrate import identity
from appliance.substrate.principal import Principal
from tests.e2e.conftest import Clinic, Journey, Watch
from tests.e2e.test_feeds_reports_and_release_journeys import assert_self_contained, watch_origin
from tests.e2e.test_journeys import new_page
from tests.layers.clinical.conftest import new_patient

pytestmark = pytest.mark.slow

PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def clinic(tenant_factory) -> Clinic:
    """The facility this journey's server is started for (no clinical history needed: the shared one is not made)."""
    config = tenant_factory(name="Kayole Health Centre")
    return Clinic(config.slug, config.name, [])


@pytest.fixture(scope="module")
def baby(db, policy, settings, clinic) -> dict:
    """A baby of eleven weeks with a portal account: BCG and the six-week doses given, the pentavalent's second
    dose overdue since the day after ten weeks."""
    nurse = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Nurse Wairimu", tenant=clinic.slug,
                      role="nurse")
    today, utc = dt.date.today(), zoneinfo.ZoneInfo("UTC")
    born = today - dt.timedelta(weeks=11)
    schedule = load_schedule(settings.policies_dir / "immunization.toml")
    with db.tenant(clinic.slug) as conn:
        chart = new_patient(conn, nurse, family_name="Njeri", given_names="Imani", birth_date=born)["id"]
        for vaccine, day in (("BCG", born), ("PENTA", born + dt.timedelta(weeks=6))):
            immunization.record_dose(conn, nurse, chart, ImmunizationIn(vaccine=vaccine, dose_number=1, given_on=day),
                                     schedule=schedule, today=today, tz=utc)
    email, password = f"imani-{uuid.uuid4().hex[:6]}@example.org", "a long enough passphrase"
    with db.control() as conn:
        subject = identity.match_or_create_subject(conn, family_name="Njeri", given_names="Imani",
                                                   national_id=f"E2E-{uuid.uuid4().hex[:8]}").subject_id
        identity.note_facility(conn, subject, clinic.slug)
        account = identity.create_account(conn, policy, kind="patient", email=email, display_name="Imani Njeri",
                                          role="patient", subject_id=subject)
        identity.set_credentials(conn, account.account_id, password=password, mfa_secret=None)
    with db.tenant(clinic.slug) as conn:
        conn.exec_driver_sql("UPDATE patient SET subject_id = %s WHERE id = %s", (subject, chart))
    return {"email": email, "password": password}


def test_a_parent_reads_the_vaccination_card_on_a_phone(browser, live_server, clinic, baby):
    journey, watch = Journey("parent-reads-the-vaccination-card"), Watch()
    context, page = new_page(browser, watch)
    page.set_viewport_size(PHONE)
    elsewhere = watch_origin(page, live_server)
    page.goto(f"{live_server}/signin")
    page.get_by_label("E-mail").fill(baby["email"])
    page.get_by_label("Password").fill(baby["password"])
    page.get_by_role("button", name="Continue").click()  # no authenticator for patients
    page.wait_for_url(f"{live_server}/")
    page.goto(f"{live_server}/me")
    page.get_by_role("link", name="Vaccinations").click()
    page.wait_for_url(f"{live_server}/me/immunizations")
    overdue = page.locator('ul.due li[data-vaccine="PENTA"][data-dose="2"]')
    assert "overdue since" in overdue.inner_text() and overdue.is_visible()
    journey.shot(page, "card-due")
    doses = page.locator("table.doses")
    doses.scroll_into_view_if_needed()
    assert "BCG" in doses.inner_text() and clinic.name in doses.inner_text()
    # Nothing of the card runs off a phone's screen: the table fits its width.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    journey.shot(page, "card-doses")
    assert_self_contained(page, elsewhere)
    context.close()
    watch.assert_clean()

