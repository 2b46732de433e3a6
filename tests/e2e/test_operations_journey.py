"""The bed manager's journey in a real browser (Debian's chromium, headless) against the appliance served
over HTTP: the command center's occupancy, a patient arriving in the emergency department (recorded by
MRN), the decision to admit, admission to a bed from the ED board, the bed board showing the bed
occupied, and occupancy on the command center one patient higher — with the patient behind the number
on the KPI's detail page; then her discharge from the bed board and the cleaned bed marked available. And
a bed's form with two named buttons posts the one clicked, once, however quickly it is clicked twice. And a
pharmacist dispensing a clinic prescription from the pharmacy queue. And a clinician setting the day a patient is
expected home on the ward's bed board."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import PatientIn
from appliance.layers.operations import adt
from appliance.layers.operations import service as operations
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_timezone_of
from tests.e2e.conftest import Journey, Watch
from tests.e2e.test_journeys import DESKTOP, new_page, sign_in

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def arriving(db, clinic, person_factory) -> dict:
    """A woman registered at the front desk, about to be brought to the emergency department."""
    registrar = person_factory("registrar", clinic.slug)
    desk = Principal(account_id=registrar.account_id, kind="staff", display_name="Test registrar",
                     tenant=clinic.slug, role="registrar")
    with db.tenant(clinic.slug) as conn:
        patient = service.register_patient(conn, desk, PatientIn.model_validate({
            "family_name": "Chepkoech", "given_names": "Faith Jepkorir", "birth_date": "1971-03-14", "sex": "female",
            "identifiers": [{"system": "national_id", "value": "27615093"}]}))
    return {"id": str(patient["id"]), "mrn": patient["mrn"]}


def test_admit_from_the_ed_changes_the_bed_board_and_occupancy(browser, live_server, clinic, person_factory, arriving):
    journey, watch = Journey("bed-manager-admit-from-ed"), Watch()
    manager = person_factory("bed_manager", clinic.slug)
    context, page = new_page(browser, watch)
    sign_in(page, live_server, manager)
    base = f"{live_server}/t/{clinic.slug}"

    # the bed board before: how many beds are taken
    page.goto(f"{base}/beds")
    occupied_before = int(page.locator("#occupied-count").inner_text())
    journey.shot(page, "bed-board-before")

    # the command center: occupancy now
    page.get_by_role("link", name="Command center").click()
    page.wait_for_url(re.compile(r"/command-center$"))
    tile = page.locator("#kpi-bed_occupancy")
    occupancy_before = tile.locator(".kpi-value").inner_text()
    assert tile.locator("svg").count() == 1 and page.locator(".kpi-tile").count() == 8
    journey.shot(page, "command-center-before")

    # the emergency department: she arrives by ambulance, recorded by her MRN
    page.get_by_role("link", name="Emergency department").click()
    page.wait_for_url(re.compile(r"/ed$"))
    page.get_by_label("Patient MRN").fill(arriving["mrn"])
    page.get_by_label("Arrived by").select_option("ambulance")
    page.get_by_label("Presenting complaint").fill("Shortness of breath")
    page.get_by_role("button", name="Record arrival").click()
    page.wait_for_url(re.compile(r"/ed\?done=ed-arrival$"))
    row = page.locator("tr", has_text="CHEPKOECH")
    assert "Faith Jepkorir" in row.inner_text()
    # every next step is in sight on a desktop, not scrolled past the card's edge; no acuity chosen yet
    card, admit = page.locator("section[aria-labelledby=visits-title]").bounding_box(), \
        row.get_by_role("link", name="Admit to a bed").bounding_box()
    assert admit["x"] + admit["width"] <= card["x"] + card["width"]
    assert row.get_by_label("Acuity").input_value() == ""
    row.get_by_label("Acuity").select_option("2")
    row.get_by_role("button", name="Triage").click()
    page.wait_for_url(re.compile(r"/ed\?done=ed-updated$"))
    row = page.locator("tr", has_text="CHEPKOECH")
    assert "2 · Emergent" in row.inner_text()
    row.get_by_role("button", name="Seen by clinician").click()
    page.wait_for_url(re.compile(r"/ed\?done=ed-updated$"))
    page.locator("tr", has_text="CHEPKOECH").get_by_role("button", name="Decide to admit").click()
    page.wait_for_url(re.compile(r"/ed\?done=ed-updated$"))
    journey.shot(page, "ed-board-decided")
    # on a phone the visit is a block: its complaint, acuity, bed wait and next steps all on the screen
    page.set_viewport_size({"width": 390, "height": 844})
    row = page.locator("tr", has_text="CHEPKOECH")
    assert "Shortness of breath" in row.inner_text() and "waiting for a bed" in row.inner_text()
    for shown in (row.get_by_text("2 · Emergent", exact=False).first, row.get_by_role("link", name="Admit to a bed")):
        box = shown.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert page.evaluate("document.querySelector('.table-wrap').scrollWidth <= 390")
    journey.shot(page, "ed-board-phone")
    page.set_viewport_size(DESKTOP)

    # admit her to a bed from the ED board
    page.locator("tr", has_text="CHEPKOECH").get_by_role("link", name="Admit to a bed").click()
    page.wait_for_url(re.compile(r"/ed/[0-9a-f-]+/admit$"))
    page.get_by_label("Bed").select_option("MAT-03")
    page.get_by_label("Reason for admission").fill("Community-acquired pneumonia, hypoxic")
    journey.shot(page, "admit-form")
    page.get_by_role("button", name="Admit").click()
    page.wait_for_url(re.compile(r"/beds/MAT\?done=admitted$"))
    bed = page.locator("#bed-MAT-03")
    assert bed.get_attribute("data-state") == "occupied" and "CHEPKOECH" in bed.inner_text()
    journey.shot(page, "ward-bed-board-after")

    # the facility's bed board: one bed more taken; she has left the ED board
    page.get_by_role("link", name="Bed board").click()
    page.wait_for_url(re.compile(r"/beds$"))
    assert int(page.locator("#occupied-count").inner_text()) == occupied_before + 1
    page.get_by_role("link", name="Emergency department").click()
    assert page.locator("tr", has_text="CHEPKOECH").count() == 0

    # the command center on the next request: occupancy is higher, and she is behind the number
    page.get_by_role("link", name="Command center").click()
    page.wait_for_url(re.compile(r"/command-center$"))
    occupancy_after = page.locator("#kpi-bed_occupancy .kpi-value").inner_text()
    assert float(occupancy_after.rstrip("%")) > float(occupancy_before.rstrip("%"))
    journey.shot(page, "command-center-after")
    page.locator("#kpi-bed_occupancy a").click()
    page.wait_for_url(re.compile(r"/command-center/bed_occupancy$"))
    assert arriving["mrn"] in page.locator("#drill-entries").inner_text()
    assert page.locator("svg.plot").count() == 1
    journey.shot(page, "occupancy-detail")

    # she goes home from the ward's board, asked once though Discharge is pressed again while the discharge is
    # on its way (held, as a slow answer would be); the bed goes to cleaning, and once cleaned is marked available
    page.goto(f"{base}/beds/MAT")
    asked: list[str] = []
    page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    held, posted = [], []
    page.route("**/discharge", lambda route: route.continue_() if held else held.append(route))
    page.on("request", lambda request: request.method == "POST" and posted.append(request.url))
    page.locator("#bed-MAT-03").get_by_label("Discharge disposition").select_option("home")
    discharge = page.locator("#bed-MAT-03").get_by_role("button", name="Discharge")
    discharge.scroll_into_view_if_needed()
    box = discharge.bounding_box()
    with page.expect_request(lambda request: request.method == "POST"):
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    held[0].continue_()
    page.wait_for_url(re.compile(r"/beds/MAT\?done=discharged$"))
    assert len(asked) == 1 and len(posted) == 1, (asked, posted)
    assert page.locator("#bed-MAT-03").get_attribute("data-state") == "cleaning"
    journey.shot(page, "ward-bed-board-discharged")
    page.locator("#bed-MAT-03").get_by_role("button", name="Mark available").click()
    page.wait_for_url(re.compile(r"/beds/MAT\?done=bed-state$"))
    assert page.locator("#bed-MAT-03").get_attribute("data-state") == "available"
    watch.assert_clean()
    context.close()


def test_a_clinician_sets_the_day_a_patient_is_expected_home_on_the_ward_board(browser, live_server, clinic, db,
                                                                                person_factory):
    """On the ward's bed board a clinician picks tomorrow in the bed's date field and sets it: the bed says when she
    is expected home, and the ward's count of patients expected home tomorrow is one higher; no script the page's
    policy refuses, no error in the console."""
    clinician = person_factory("clinician", clinic.slug)
    acting = Principal(account_id=clinician.account_id, kind="staff", display_name="Test clinician",
                       tenant=clinic.slug, role="clinician")
    with db.tenant(clinic.slug) as conn:
        patient = service.register_patient(conn, acting, PatientIn.model_validate({
            "family_name": "Nyambura", "given_names": "Esther", "birth_date": "1966-08-02", "sex": "female",
            "identifiers": [{"system": "national_id", "value": "24417730"}]}))
        bed_code = adt.admit(conn, acting, patient["id"], ward_code="GEN")["bed_code"]
        tomorrow = dt.datetime.now(facility_timezone_of(conn)).date() + dt.timedelta(days=1)
    watch = Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, clinician)
    page.goto(f"{live_server}/t/{clinic.slug}/beds/GEN")
    before = int(page.locator("#expected-tomorrow").inner_text())
    bed = page.locator(f"#bed-{bed_code}")
    assert "No expected discharge date" in bed.inner_text()
    bed.get_by_label("Expected home on").fill(tomorrow.isoformat())
    bed.get_by_label("What it waits on").fill("oxygen weaned")
    bed.get_by_role("button", name="Set expected home").click()
    page.wait_for_url(re.compile(r"/beds/GEN\?done=expected-discharge$"))
    assert f"Expected home {tomorrow:%d %b %Y} tomorrow" in page.locator(f"#bed-{bed_code}").inner_text()
    assert int(page.locator("#expected-tomorrow").inner_text()) == before + 1
    assert page.locator(f"#bed-{bed_code}").get_by_role("button", name="Change expected home").count() == 1
    watch.assert_clean()
    context.close()


def test_a_beds_two_named_buttons_post_the_one_clicked_once(browser, live_server, clinic, db, person_factory):
    """A bed being cleaned has one form with two buttons, name="state" value="available" and value="blocked":
    the server gets the one clicked, and clicking it again while the answer is on its way posts nothing more.
    The one-click guard disabled the buttons as the form posted, and a disabled button is not sent, so the
    state clicked never reached the server."""
    manager = person_factory("bed_manager", clinic.slug)
    with db.tenant(clinic.slug) as conn:
        operations.set_bed_state(conn, Principal(account_id=manager.account_id, kind="staff", display_name="Test",
                                                 tenant=clinic.slug, role="bed_manager"), "GEN-12", "cleaning")
    watch = Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, manager)
    posted: list[str] = []
    page.on("request", lambda request: request.method == "POST" and request.url.endswith("/beds/GEN-12/state")
            and posted.append(request.post_data))
    # The first post is held in the browser until the second click is made, as a slow answer would be: a
    # fast local server otherwise answers before any person could click twice.
    held = []
    page.route("**/beds/GEN-12/state", lambda route: route.continue_() if held else held.append(route))
    page.goto(f"{live_server}/t/{clinic.slug}/beds/GEN")
    bed = page.locator("#bed-GEN-12")
    assert bed.get_by_role("button").all_inner_texts() == ["Mark available", "Block"]
    bed.scroll_into_view_if_needed()  # the mouse clicks where the viewport shows the button, not further down the board
    block = bed.get_by_role("button", name="Block").bounding_box()
    # The mouse itself, as a person clicks: a locator's click would wait for the held navigation.
    with page.expect_request(lambda request: request.method == "POST"):
        page.mouse.click(block["x"] + block["width"] / 2, block["y"] + block["height"] / 2)
    page.mouse.click(block["x"] + block["width"] / 2, block["y"] + block["height"] / 2)
    held[0].continue_()
    page.wait_for_url(re.compile(r"/beds/GEN\?done=bed-state$"))
    assert page.locator("#bed-GEN-12").get_attribute("data-state") == "blocked"
    assert len(posted) == 1 and "state=blocked" in posted[0]
    context.close()
    watch.assert_clean()


def test_a_pharmacist_dispenses_a_clinic_prescription(browser, live_server, clinic, db, person_factory):
    """The pharmacy window: the clinic's amoxicillin for five days, three times a day, waits on the queue with
    the course (15 capsules) proposed from the batch that expires first; dispensed, it leaves the queue."""
    import datetime as dt
    from decimal import Decimal

    from appliance.layers.clinical.schemas import EncounterIn, MedicationIn
    from appliance.layers.operations import pharmacy

    pharmacist, doctor = person_factory("pharmacist", clinic.slug), person_factory("clinician", clinic.slug)
    acting = {p.role: Principal(account_id=p.account_id, kind="staff", display_name="Test", tenant=clinic.slug,
                                role=p.role) for p in (pharmacist, doctor)}
    with db.tenant(clinic.slug) as conn:
        item = pharmacy.create_item(conn, acting["pharmacist"], drug="Amoxicillin", form="capsule",
                                    strength=Decimal(500), strength_unit="mg", unit="capsule")["id"]
        for batch, days in (("AMX-LATE", 700), ("AMX-SOON", 200)):
            pharmacy.receive(conn, acting["pharmacist"], item, batch=batch, quantity=Decimal(100), reference=None,
                             expires_on=dt.date.today() + dt.timedelta(days=days), today=dt.date.today())
        patient_id = service.register_patient(conn, acting["clinician"], PatientIn.model_validate({
            "family_name": "Barasa", "given_names": "Juma", "birth_date": "1988-07-02", "sex": "male",
            "identifiers": [{"system": "national_id", "value": "30915526"}]}))["id"]
        visit = service.open_encounter(conn, acting["clinician"], patient_id, EncounterIn(encounter_class="outpatient"))
        rx = service.request_medication(conn, acting["clinician"], patient_id, MedicationIn(
            drug="Amoxicillin", dose=Decimal(500), dose_unit="mg", route="oral", frequency="tds", duration_days=5,
            encounter_id=visit["id"])).placed[0]["id"]
    watch = Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, pharmacist)
    page.goto(f"{live_server}/t/{clinic.slug}/pharmacy")
    waiting = page.locator(f"#queue-{rx}")
    assert "BARASA" in waiting.inner_text()
    assert waiting.get_by_label("Quantity (capsule)").input_value() == "15"
    # On a phone the dispense form wraps at the card's width: the proposed quantity readable, the button on screen;
    # and the day's dispenses, with their reversal, fit their card.
    page.set_viewport_size({"width": 390, "height": 844})
    quantity = waiting.get_by_label("Quantity (capsule)").bounding_box()
    button = waiting.get_by_role("button", name="Dispense").bounding_box()
    assert quantity and button and quantity["width"] >= 48 and button["x"] + button["width"] <= 390, (quantity, button)
    waiting.get_by_role("button", name="Dispense").click()
    page.wait_for_url(re.compile(r"/pharmacy\?done=dispensed$"))
    assert page.locator(f"#queue-{rx}").count() == 0
    width, room = page.locator("#handed-over-list").evaluate("t => [t.scrollWidth, t.parentElement.clientWidth]")
    assert width <= room, (width, room)
    page.set_viewport_size(DESKTOP)
    page.get_by_role("link", name="Pharmacy stock").click()
    assert "AMX-SOON" in page.locator(f"#stock-{item}").inner_text()
    assert page.locator(f"#stock-{item} .on-hand").inner_text() == "185 capsule"
    watch.assert_clean()
    context.close()



def test_a_nurse_reports_a_fall_on_a_phone_and_the_quality_manager_sees_it_first(browser, live_server, clinic,
                                                                                  person_factory):
    """From any page's navigation, at a phone's width: a fall with severe harm; it is under the nurse's reports, and
    heads the quality manager's list, flagged for immediate review, with the navigation's badge."""
    nurse, manager = person_factory("nurse", clinic.slug, ward="GEN"), person_factory("quality_manager", clinic.slug)
    journey, watch = Journey("incident-report"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, nurse)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server}/t/{clinic.slug}/ward")
    page.get_by_role("link", name="Report an incident").click()
    form = page.locator("#incident-report")
    form.get_by_label("Where").select_option("GEN")
    form.get_by_label("What kind of incident").select_option("fall")
    form.get_by_label("What happened").fill("Found on the floor beside bed 4 at the 02:00 round, bleeding scalp.")
    form.get_by_role("radio", name=re.compile("Severe harm")).check()
    form.get_by_label("Immediate action taken").fill("Doctor called, wound closed, neurological observations.")
    journey.shot(page, "the-report")
    button = form.get_by_role("button", name="Send the report")
    box = button.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390
    button.click()
    page.wait_for_url(re.compile(r"/incidents/mine\?done=incident-reported$"))
    assert "open" in page.locator("table.list").inner_text().lower()
    journey.shot(page, "my-reports")
    context.close()

    context, page = new_page(browser, watch)
    sign_in(page, live_server, manager)
    page.goto(f"{live_server}/t/{clinic.slug}/incidents")
    assert page.locator("#badge-incident-review").inner_text().strip() == "1"
    first = page.locator("table.list tbody tr").first.inner_text()
    assert "Immediate review" in first and "Test nurse" in first
    journey.shot(page, "quality-manager-list")
    context.close()
    watch.assert_clean()


def test_the_nurse_in_charge_rosters_a_night_and_takes_a_nurse_off(browser, live_server, clinic, person_factory):
    """The ward's week from the navigation: a colleague put on tomorrow's night shift by the form, her name in its
    cell with the shift's staffing; taken off with why from under her name; the grid printed without the forms."""
    import datetime as dt
    import zoneinfo

    journey, watch = Journey("nurse-in-charge-roster"), Watch()
    charge = person_factory("nurse", clinic.slug, ward="GEN")
    colleague = person_factory("nurse", clinic.slug, ward="GEN")
    tomorrow = (dt.datetime.now(zoneinfo.ZoneInfo("Africa/Nairobi")) + dt.timedelta(days=1)).date().isoformat()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, charge)
    page.goto(f"{live_server}/t/{clinic.slug}/ward")
    page.get_by_role("link", name="Duty roster").click()
    page.wait_for_url(re.compile(r"/roster$"))
    form = page.locator("#roster-add")
    form.get_by_label("Date the shift starts").fill(tomorrow)
    form.locator("#shift_code").select_option("N")
    form.get_by_label("Who").select_option(str(colleague.account_id))
    form.get_by_label("Role on the shift").select_option("nurse")
    form.get_by_role("button", name="Add to the roster").click()
    page.wait_for_url(re.compile(r"done=roster-added$"))
    cell = page.locator(f"#cell-{tomorrow}-N")
    assert "Test nurse" in cell.inner_text() and "1 nurse" in cell.inner_text()
    journey.shot(page, "week-with-the-night")
    page.emulate_media(media="print")
    assert not page.locator("#roster-add").is_visible() and page.locator("#roster-grid").is_visible()
    page.emulate_media(media="screen")
    cell.get_by_text("Take off", exact=True).click()
    cell.get_by_label("Why").fill("Swapped with a colleague")
    cell.get_by_role("button", name="Take off the shift").click()
    page.wait_for_url(re.compile(r"done=roster-withdrawn$"))
    assert "Test nurse" not in page.locator(f"#cell-{tomorrow}-N").inner_text()
    journey.shot(page, "week-after-taking-off")
    context.close()
    watch.assert_clean()


def test_the_operations_pages_fit_a_phone(browser, live_server, clinic, person_factory):
    """At 390px the command center's companion, incident and staffing tables, the staffing page, My shifts and the
    roster's ward and week form ran past the screen's edge: the whole page scrolled sideways, header and all. A wide
    table now scrolls in its own box, the roster's form wraps, and no page is wider than the phone."""
    watch = Watch()
    manager = person_factory("bed_manager", clinic.slug)
    context, page = new_page(browser, watch)
    sign_in(page, live_server, manager)
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/beds", "/ed", "/command-center", "/command-center/bed_occupancy", "/staffing", "/roster",
                 "/roster/mine", "/clinics"):
        page.goto(f"{live_server}/t/{clinic.slug}{path}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    context.close()
    watch.assert_clean()
