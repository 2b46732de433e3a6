"""A nurse hangs a unit of blood in a real browser (Debian's chromium, headless) against the appliance served over
HTTP: the chart's Blood tab shows the patient's group and the unit the blood bank issued; a unit typed from another
patient's bag is refused beside the number (the wrong-patient catch, a provoked 422) with what was typed kept; the
right unit, scanned as its barcode reads, starts; the end is recorded. No inline script, no CSP complaint."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from appliance.layers.clinical import blood, service
from appliance.layers.clinical.blood_schemas import BloodRequestIn, BloodUnitIn
from appliance.layers.clinical.schemas import EncounterIn, PatientIn, ResultIn
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_timezone
from tests.e2e.conftest import Clinic, Journey, Watch
from tests.e2e.test_journeys import new_page, sign_in
from tests.layers.clinical.test_blood import GROUPING

pytestmark = pytest.mark.slow
PHONE = {"width": 390, "height": 844}
VITALS = {"temperature_c": "36.8", "heart_rate_bpm": "84", "systolic_mmhg": "118", "respiratory_rate": "16"}


@pytest.fixture(scope="module")
def clinic(tenant_factory) -> Clinic:
    """A hospital with nobody in it yet: this journey needs no year of history."""
    config = tenant_factory(name="Transfusion District Hospital", catalogue=[GROUPING])
    return Clinic(config.slug, config.name, [])


def _desk(doctor, clinic: Clinic) -> Principal:
    """The doctor as the service sees them, to set the scene the pages then show."""
    return Principal(account_id=doctor.account_id, kind="staff", display_name="Test", tenant=clinic.slug,
                     role="clinician")


def _registered(conn, desk: Principal, family: str, given: str, born: str, sex: str, national_id: str):
    return service.register_patient(conn, desk, PatientIn.model_validate({
        "family_name": family, "given_names": given, "birth_date": born, "sex": sex,
        "identifiers": [{"system": "national_id", "value": national_id}]}))["id"]


def test_a_nurse_is_stopped_by_the_wrong_bag_and_hangs_the_right_one(browser, live_server, clinic, db,
                                                                     person_factory):
    nurse, doctor = person_factory("nurse", clinic.slug, ward="GEN"), person_factory("clinician", clinic.slug)
    midwife = person_factory("nurse", clinic.slug, ward="GEN")  # the second person of the bedside check
    desk = _desk(doctor, clinic)
    today = dt.date.today()
    with db.tenant(clinic.slug) as conn:
        chart = _registered(conn, desk, "Chebet", "Ruth", "1994-07-02", "female", "E2E-BLOOD-1")
        service.open_encounter(conn, desk, chart, EncounterIn(encounter_class="inpatient", status="in_progress",
                                                              ward_code="GEN", reason="Postpartum haemorrhage"))
        service.record_result(conn, desk, chart, ResultIn(code="882-1", value="O+"))
        for number in ("G1234 26 000201", "G1234 26 000999"):
            blood.receive_unit(conn, desk, BloodUnitIn(
                unit_number=number, component="red_cells", abo="O", rhd="positive", volume_ml=280,
                collected_on=today - dt.timedelta(days=3), expires_on=today + dt.timedelta(days=20)), today=today)
        request = blood.request_blood(conn, desk, chart, BloodRequestIn(
            component="red_cells", units=1, indication="PPH, Hb 6.0 g/dl", urgency="emergency"))["id"]
        reserved = blood.reserve(conn, desk, request, "G123426000201", None, today=today)
        blood.issue(conn, desk, reserved["units_given"][0]["id"], today=today)
    journey, watch = Journey("transfusion"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, nurse)
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{chart}/chart")
    page.get_by_role("link", name="Blood").first.click()
    page.wait_for_url(re.compile(r"/transfusions$"))
    assert "O RhD positive" in page.locator("#blood-group").inner_text()
    assert "G123426000201" in page.locator("#units-waiting").inner_text()
    journey.shot(page, "blood-tab")
    # On the ward's 1280 px screen the vital signs sit side by side, not six screen-wide boxes one under another.
    rows = {round(page.locator(f"#start-{name}").bounding_box()["y"]) for name in VITALS}
    assert len(rows) == 1, rows

    def start(number: str) -> None:
        page.locator("#start-unit_number").fill(number)
        page.locator("#start-checked_by").select_option(str(midwife.account_id))
        for name, value in VITALS.items():
            page.locator(f"#start-{name}").fill(value)
        page.get_by_role("button", name="Start the transfusion").click()

    start("G1234 26 000999")  # the bag on the next bed
    page.wait_for_selector("#unit_number-error")
    assert "was not issued to this patient" in page.locator("#unit_number-error").inner_text()
    assert page.locator("#start-checked_by").input_value() == str(midwife.account_id)
    journey.shot(page, "wrong-bag-refused")
    start("=G123426000201 00")  # the right bag, scanned: its barcode's = and flag characters
    page.wait_for_url(re.compile(r"/transfusions\?done=transfusion-started$"))
    transfusion = page.locator("article.transfusion").first
    transfusion.get_by_text("End, or stop for a reaction").click()
    form = transfusion.locator("form[id^='end-']")
    form.locator("select[name='reaction']").select_option("none")
    form.locator("input[name='volume_ml']").fill("280")
    for name, value in VITALS.items():
        form.locator(f"input[name='{name}']").fill(value)
    form.get_by_role("button", name="Record the end").click()
    page.wait_for_url(re.compile(r"/transfusions\?done=transfusion-ended$"))
    assert "completed" in page.locator("article.transfusion").first.inner_text()
    journey.shot(page, "transfusion-ended")
    # An hour on she is breathless: the unit has run through, so the reaction is recorded on the completed record.
    transfusion = page.locator("article.transfusion").first
    transfusion.get_by_text("Record a reaction noticed after it ended").click()
    form = transfusion.locator("form[id^='reaction-']")
    form.locator("select[name='reaction']").select_option("taco")
    onset = dt.datetime.now(facility_timezone(db, clinic.slug)) + dt.timedelta(minutes=1)  # not before the start
    form.locator("input[name='onset_at']").fill(f"{onset:%Y-%m-%dT%H:%M}")
    form.locator("select[name='severity']").select_option("severe")
    form.locator("input[name='reaction_note']").fill("Breathless, SpO2 89 %: sat up, furosemide IV, doctor called")
    form.get_by_role("button", name="Record the reaction").click()
    page.wait_for_url(re.compile(r"/transfusions\?done=transfusion-reaction$"))
    recorded = page.locator("article.transfusion").first.inner_text()
    assert "TACO" in recorded and "after the unit was given" in recorded
    journey.shot(page, "reaction-after-the-end")
    watch.assert_clean(provoked={422})
    context.close()


def test_the_blood_bank_answers_an_emergency_on_a_phone(browser, live_server, clinic, db, person_factory):
    """The technician on a phone: the stock's eight groups fit the screen (AB+ and AB− had scrolled out of sight in
    the grid's box), the reservation's number, emergency reason and button wrap inside it (they ran 14 px past its
    edge), and once the one unit asked for is reserved no second reservation is offered."""
    technician, doctor = person_factory("lab_technician", clinic.slug), person_factory("clinician", clinic.slug)
    desk = _desk(doctor, clinic)
    today = dt.date.today()
    with db.tenant(clinic.slug) as conn:
        ungrouped = _registered(conn, desk, "Wekesa", "Samuel", "1961-03-14", "male", "E2E-BLOOD-2")
        blood.receive_unit(conn, desk, BloodUnitIn(
            unit_number="G1234 26 000501", component="red_cells", abo="O", rhd="negative", volume_ml=280,
            collected_on=today - dt.timedelta(days=3), expires_on=today + dt.timedelta(days=20)), today=today)
        blood.request_blood(conn, desk, ungrouped, BloodRequestIn(
            component="red_cells", units=1, indication="GI bleed, shocked, Hb 5.9 g/dl", urgency="emergency"))
    watch = Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, technician)
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server}/t/{clinic.slug}/blood")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert page.locator("#stock-grid th", has_text="AB−").bounding_box()["x"] + 10 < PHONE["width"]
    reservation = page.locator("form[action*='/reservations']")
    assert reservation.count() == 1
    reservation.locator("input[name='unit_number']").fill("G1234 26 000501")
    reservation.locator("input[name='emergency_reason']").fill("Shocked, no time to group")
    reservation.get_by_role("button", name="Reserve").click()
    page.wait_for_url(re.compile(r"/blood\?done=unit-reserved$"))
    assert "uncrossmatched emergency" in page.locator("main").inner_text()
    assert page.locator("form[action*='/reservations']").count() == 0
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    watch.assert_clean()
    context.close()
