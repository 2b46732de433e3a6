"""The billing journey in a real browser: a clinician orders two tests from the chart's order form; the
billing clerk finds the priced one on the day's variance and the unpriced one on the worklist, prices
it, prepares the encounter's invoice, discounts it with a reason and an approver, finalises it, takes
a part payment by mobile money, prints the receipt, and reads the A/R aging chart, the invoice and the account
(on a phone too). Screenshots in test-artifacts/billing-journey/; any CSP violation, script error or unprovoked error
response fails it."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

import pytest

from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.schemas import EncounterIn, PatientIn
from appliance.substrate.principal import Principal
from tests.e2e.conftest import Journey, Watch
from tests.e2e.test_journeys import new_page, sign_in
from tests.layers.financial.conftest import FINANCIAL_CONFIG
from tests.web.test_billing import billed_for_a_blood_count

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def billed_facility(db, tenant_factory):
    config = tenant_factory(name="Lakeshore Billing Test", **FINANCIAL_CONFIG)
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Setup", tenant=config.slug,
                       role="clinician")
    with db.tenant(config.slug) as conn:
        patient = clinical.register_patient(conn, doctor, PatientIn.model_validate({
            "family_name": "Chebet", "given_names": "Faith", "birth_date": "1992-08-14", "sex": "female",
            "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}))
        clinical.open_encounter(conn, doctor, patient["id"], EncounterIn(encounter_class="outpatient",
                                                                         reason="fever for two days"))
    return config, patient


def test_billing_journey(browser, live_server, billed_facility, person_factory):
    config, patient = billed_facility
    journey, watch = Journey("billing-journey"), Watch()

    # the clinician orders a full blood count (priced) and a glucose (not in the fee schedule)
    doctor = person_factory("clinician", config.slug)
    context, page = new_page(browser, watch)
    sign_in(page, live_server, doctor)
    page.goto(f"{live_server}/t/{config.slug}/patients/{patient['id']}/orders")
    for test in ("Full blood count (lab)", "Glucose (lab)"):
        page.locator("#test-code").select_option(label=test)
        page.get_by_role("button", name="Order test").click()
        page.wait_for_url(re.compile(r"/orders\?done=ordered$"))
    journey.shot(page, "clinician-ordered")
    context.close()

    # the billing clerk's worklist: the order's charge on the day's variance, the glucose unpriced
    clerk = person_factory("billing_clerk", config.slug)
    context, page = new_page(browser, watch)
    sign_in(page, live_server, clerk)
    page.goto(f"{live_server}/t/{config.slug}/billing")
    page.get_by_role("link", name="Billing worklist").wait_for()
    unpriced = page.locator("table.unpriced tbody tr")
    assert unpriced.count() == 1 and "Glucose" in unpriced.inner_text() and "CHEBET" in unpriced.inner_text()
    same_day = page.locator("details#LAB-same_day")
    same_day.locator("summary").click()  # the list behind the figure opens in place
    assert "Full blood count" in same_day.inner_text() and "KES 450.00" in same_day.inner_text()
    assert page.locator("table.variance").get_by_role("row", name=re.compile("^LAB")).count() == 1
    journey.shot(page, "worklist")

    # price it: a wrong entry first, then the price with where it comes from
    row = unpriced.first
    row.get_by_label("Unit price (KES)").fill("a lot")
    row.get_by_role("button", name="Price").click()
    assert "Give the unit price as a number" in page.locator(".field-error").first.inner_text()
    journey.shot(page, "price-refused")
    row = page.locator("table.unpriced tbody tr").first
    row.get_by_label("Unit price (KES)").fill("180.00")
    row.get_by_label("Where the price comes from").fill("Lab manager, pending tariff update")
    row.get_by_role("button", name="Price").click()
    page.wait_for_url(re.compile(r"/billing\?done=priced$"))
    assert page.locator("table.unpriced").count() == 0
    journey.shot(page, "priced")

    # the encounter's account → invoice → discount → finalise
    page.get_by_role("link", name="Accounts", exact=True).click()
    page.get_by_role("link", name=re.compile(r"^AC-")).first.click()
    assert "Full blood count" in page.locator("table.charges").inner_text()
    journey.shot(page, "account")
    account_url = page.url
    page.get_by_role("button", name="Prepare invoice").click()
    page.wait_for_url(re.compile(r"/invoices/[0-9a-f-]{36}\?done=drafted$"))
    invoice_url = page.url.split("?")[0]
    assert page.locator("#total").inner_text() == "KES 630.00"
    page.get_by_label("Kind").select_option("discount")
    page.get_by_label("As", exact=True).select_option("percent")
    page.get_by_label("Percentage or amount").fill("10")
    page.get_by_label("Approved by").fill("Dr Mwangi, medical superintendent")
    page.get_by_label("Reason").fill("Hardship assessed by the social worker")
    page.get_by_role("button", name="Add adjustment").click()
    page.wait_for_url(re.compile(r"\?done=adjusted$"))
    assert page.locator("#total").inner_text() == "KES 567.00"
    journey.shot(page, "invoice-discounted")
    # Finalising cannot be undone but by a credit note: asked first; dismissed, nothing is posted.
    asked, finalising = [], []
    page.on("request", lambda request: request.method == "POST" and request.url.endswith("/finalise")
            and finalising.append(request.url))
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Finalise invoice").click()
    assert re.fullmatch(r"Finalise invoice INV-\d+ for KES 567\.00\? A final invoice is never changed: a mistake on "
                        r"it is put right only by a credit note\.", asked[0]), asked
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Finalise invoice").click()
    page.wait_for_url(re.compile(r"\?done=finalised$"))
    assert len(asked) == 2 and len(finalising) == 1, (asked, finalising)  # the dismissed click posted nothing
    assert page.locator("#outstanding").inner_text() == "KES 567.00"

    # payment by mobile money, and the printable receipt
    page.get_by_label("Method").select_option("mobile_money")
    page.get_by_label("Amount received").fill("300")  # a part now, the rest owed
    page.get_by_label("Reference").fill("QJK4TR77XZ")
    journey.shot(page, "payment")
    page.get_by_role("button", name="Record payment and print receipt").click()
    page.wait_for_url(re.compile(r"/receipts/[0-9a-f-]{36}\?done=paid$"))
    assert page.locator("#receipt-amount").inner_text() == "KES 300.00"
    assert page.locator("#receipt-outstanding").inner_text() == "KES 267.00"
    page.emulate_media(media="print")
    assert not page.locator("nav.layers").is_visible()  # the receipt prints without the portal around it
    journey.shot(page, "receipt-print")
    page.emulate_media(media="screen")

    # A/R aging: the chart is server-side SVG
    page.get_by_role("link", name="A/R aging").click()
    page.wait_for_url(re.compile(r"/billing/aging$"))  # counting the bars at once counted the receipt's: none
    assert page.locator("svg.plot.bars rect.plot-bar").count() == 4
    assert page.locator("#receivable").inner_text() == "KES 267.00"  # what is still owed, 0–30 days old
    journey.shot(page, "aging")
    # On a phone the tables scroll inside their card; the page itself does not scroll sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    journey.shot(page, "aging-phone")
    # The invoice's lines stack on a phone, so what is owed is on the screen beside its label, not off its edge.
    page.goto(invoice_url)
    owed = page.locator("#outstanding").bounding_box()
    assert owed["x"] + owed["width"] <= 390 and page.locator("#outstanding").inner_text() == "KES 267.00"
    journey.shot(page, "invoice-phone")
    # The account's seven columns stack alike: each charge's amount and state are on the screen, not off its edge.
    page.goto(account_url)
    first_charge = page.locator("table.charges tbody tr").first
    for cell in (first_charge.locator("td.amount"), first_charge.locator("td").last):
        box = cell.bounding_box()
        assert box["x"] + box["width"] <= 390, (cell.inner_text(), box)
    assert first_charge.locator("td").last.inner_text() == "invoiced"
    journey.shot(page, "account-phone")
    page.get_by_role("link", name="Billing worklist").click()
    page.locator("details#LAB-same_day summary").click()  # the entries behind a figure, opened on a phone
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    journey.shot(page, "worklist-phone")
    context.close()
    watch.assert_clean(provoked={422})


def test_enter_in_the_shortfall_amount_submits_neither_write_off_nor_bill_the_patient(
        db, browser, live_server, billed_facility, person_factory):
    """The shortfall form has two submit buttons, Write off first: Enter in its Amount field submitted that one
    (HTML's implicit submission), writing money off for a keystroke. Now Enter submits nothing, and a click on
    either button still does what it says."""
    config, _ = billed_facility
    invoice = billed_for_a_blood_count(db, config, "Enter", "Esther", remitted=Decimal("300"))
    watch = Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, person_factory("billing_clerk", config.slug))
    page.goto(f"{live_server}/t/{config.slug}/billing/invoices/{invoice['id']}")
    # Record what a submission would send, and keep it on the page, to read it after the keystroke.
    page.evaluate("""() => document.querySelector('#shortfall_amount').form.addEventListener('submit', event => {
        window.submittedBy = event.submitter ? event.submitter.textContent : 'the form'; event.preventDefault(); })""")
    page.locator("#shortfall_reason").fill("NHIF tariff cap")
    amount = page.locator("#shortfall_amount")
    amount.fill("30")
    amount.press("Enter")
    assert page.evaluate("() => window.submittedBy ?? 'nothing'") == "nothing"
    assert page.locator("button.implicit-submit-blocker").is_hidden()  # what blocks it is never seen
    page.reload()
    assert page.locator("#outstanding").inner_text() == "KES 80.00"  # nothing written off
    page.locator("#shortfall_amount").fill("30")
    page.locator("#shortfall_reason").fill("NHIF tariff cap")
    page.get_by_role("button", name="Write off").click()
    page.wait_for_url(re.compile(r"\?done=written-off$"))
    assert page.locator("#credit-outstanding").inner_text() == "KES 50.00"
    context.close()
    watch.assert_clean()
