"""The billing pages over HTTP with a real session: the worklist shows a lab order's charge and an
unpriced item, pricing it from the page, an account → invoice → discount → finalise → payment →
printable receipt, the A/R aging chart; bad input on the page beside its field; another facility's
session and guessed ids refused; every page audited."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import ROUND_HALF_UP, Decimal

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.schemas import ConditionIn, EncounterIn, PatientIn, ServiceRequestIn
from appliance.layers.financial import service as financial
from appliance.substrate.principal import Principal
from tests.layers.financial.conftest import FINANCIAL_CONFIG, FULL_BLOOD_COUNT, GLUCOSE


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Billing Pages Facility", **FINANCIAL_CONFIG)


@pytest.fixture(scope="module")
def other_facility(tenant_factory):
    return tenant_factory(name="Other Billing Facility", **FINANCIAL_CONFIG)


def csrf(page_html: str) -> str:
    return re.search(r'name="_csrf_token" value="([^"]+)"', page_html)[1]


@pytest.fixture(scope="module")
def charted(db, facility) -> dict:
    """A patient seen today with a full blood count (priced) and a glucose (unpriced) ordered."""
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Page", tenant=facility.slug,
                       role="clinician")
    with db.tenant(facility.slug) as conn:
        patient = clinical.register_patient(conn, doctor, PatientIn.model_validate({
            "family_name": "Kamau", "given_names": "Peter", "birth_date": "1970-05-01", "sex": "male"}))
        encounter = clinical.open_encounter(conn, doctor, patient["id"], EncounterIn(encounter_class="outpatient"))
        priced = clinical.order_test(conn, doctor, patient["id"],
                                     ServiceRequestIn(code=FULL_BLOOD_COUNT, encounter_id=encounter["id"]))
        unpriced = clinical.order_test(conn, doctor, patient["id"],
                                       ServiceRequestIn(code=GLUCOSE, encounter_id=encounter["id"]))
        account_id = conn.execute(sa.text("SELECT id FROM account WHERE encounter_id = :e"),
                                  {"e": encounter["id"]}).scalar_one()
        charge_id = conn.execute(sa.text("SELECT c.entry_id FROM charge c WHERE c.source_root_id = :r"),
                                 {"r": unpriced["root_id"]}).scalar_one()
    return {"patient": patient, "priced": priced, "unpriced": unpriced, "account": account_id, "charge": charge_id}


def test_the_worklist_shows_the_days_charge_and_the_unpriced_item(signed_in, facility, charted):
    clerk = signed_in("billing_clerk", facility.slug)
    page = clerk.get(f"/t/{facility.slug}/billing")
    assert page.status_code == 200, page.text
    assert f'data-entry="{charted["priced"]["id"]}"' in page.text  # behind the LAB same-day figure
    assert f'id="charge-{charted["charge"]}"' in page.text and "no price for lab 2345-7" in page.text
    assert "Billing worklist" in page.text
    # The unpriced charge's patient, written as everywhere else, opens their account.
    row = page.text.split(f'id="charge-{charted["charge"]}"')[1].split("</tr>")[0]
    assert f'<a href="/t/{facility.slug}/billing/accounts/{charted["account"]}">KAMAU, Peter</a>' in row


def test_pricing_from_the_worklist_with_bad_then_good_input(signed_in, facility, charted):
    clerk = signed_in("billing_clerk", facility.slug)
    page = clerk.get(f"/t/{facility.slug}/billing")
    action = f"/t/{facility.slug}/billing/charges/{charted['charge']}/price"
    bad = clerk.post(action, data={"unit_price": "lots", "reason": "x", "_csrf_token": csrf(page.text)})
    assert bad.status_code == 422 and "Give the unit price as a number" in bad.text
    good = clerk.post(action, data={"unit_price": "175.50", "reason": "price list update pending",
                                    "_csrf_token": csrf(bad.text)}, follow_redirects=False)
    assert good.status_code == 303 and good.headers["location"].endswith("done=priced")
    after = clerk.get(good.headers["location"])
    assert f'id="charge-{charted["charge"]}"' not in after.text and "Charge priced" in after.text


def test_account_invoice_discount_finalise_payment_and_receipt(signed_in, facility, charted):
    clerk = signed_in("billing_clerk", facility.slug)
    base = f"/t/{facility.slug}/billing"
    account = clerk.get(f"{base}/accounts/{charted['account']}")
    assert account.status_code == 200 and "Full blood count" in account.text
    drafted = clerk.post(f"{base}/accounts/{charted['account']}/invoices", data={"_csrf_token": csrf(account.text)},
                         follow_redirects=False)
    assert drafted.status_code == 303
    invoice_url = drafted.headers["location"].split("?")[0]
    invoice = clerk.get(invoice_url)
    assert invoice.status_code == 200 and 'id="total">KES 625.50<' in invoice.text
    missing = clerk.post(f"{invoice_url}/adjustments", data={"kind": "discount", "by": "percent", "size": "10",
                                                             "reason": "hardship", "_csrf_token": csrf(invoice.text)})
    assert missing.status_code == 422 and "approved" in missing.text
    # The form has one box for either a percentage or an amount: each refusal is said beside it.
    for by, size, said in (("percent", "150", "A percentage is above 0 and at most 100"),
                           ("percent", "12.345", "Give the percentage to two decimal places at most"),
                           ("amount", "0.005", "An amount in KES is above zero, to the currency")):
        refused = clerk.post(f"{invoice_url}/adjustments", data={
            "kind": "discount", "by": by, "size": size, "reason": "hardship", "approved_by": "Matron",
            "_csrf_token": csrf(invoice.text)})
        assert refused.status_code == 422 and said in refused.text, (by, size)
        assert 'id="size" name="size"' in refused.text and f'value="{size}"' in refused.text
    adjusted = clerk.post(f"{invoice_url}/adjustments", data={
        "kind": "exemption", "by": "amount", "size": "25.50", "reason": "waiver scheme",
        "approved_by": "Matron Achieng",
        "_csrf_token": csrf(invoice.text)})
    assert adjusted.status_code == 200 and 'id="total">KES 600.00<' in adjusted.text
    assert "capped at" not in adjusted.text
    # Finalising is undone only by a credit note: the page's script asks first, naming the invoice and its total.
    asked = re.search(r'/finalise"\s+data-confirm="([^"]+)"', adjusted.text)[1]
    assert re.fullmatch(r"Finalise invoice INV-\d+ for KES 600\.00\? A final invoice is never changed: a mistake on "
                        r"it is put right only by a credit note\.", asked), asked
    final = clerk.post(f"{invoice_url}/finalise", data={"_csrf_token": csrf(adjusted.text)})
    assert final.status_code == 200 and 'id="outstanding">KES 600.00<' in final.text
    owed = clerk.get(f"{base}/aging").text  # the bar says the money as the rest of the page does, not 600
    assert re.search(r'class="plot-bar-value"[^>]*>[\d,]*600\.00</text>', owed), owed.split("<svg")[1][:600]
    over = clerk.post(f"{invoice_url}/payments", data={"method": "card", "amount": "900", "reference": "CARD-9",
                                                       "_csrf_token": csrf(final.text)})
    assert over.status_code == 422 and "Only KES 600.00 is outstanding on this invoice; only cash can be more" in \
        over.text
    paid = clerk.post(f"{invoice_url}/payments", data={"method": "mobile_money", "amount": "600",
                                                       "reference": "QX12ABC", "_csrf_token": csrf(final.text)},
                      follow_redirects=False)
    assert paid.status_code == 303 and "/receipts/" in paid.headers["location"]
    receipt = clerk.get(paid.headers["location"])
    assert receipt.status_code == 200 and 'id="receipt-amount">KES 600.00<' in receipt.text
    assert 'id="receipt-outstanding">KES 0.00<' in receipt.text and "QX12ABC" in receipt.text
    aging = clerk.get(f"{base}/aging")
    assert aging.status_code == 200 and '<svg class="plot bars"' in aging.text
    assert clerk.get(f"{base}/aging", params={"as_of": "not-a-day"}).status_code == 422
    assert clerk.get(f"{base}/accounts").status_code == 200


def test_an_account_is_found_by_its_number_or_the_patients_mrn_or_name(db, signed_in, facility, other_facility,
                                                                       charted):
    """The list shows the most recent accounts only: the cashier finds any other by what is in hand."""
    clerk = signed_in("billing_clerk", facility.slug)
    base = f"/t/{facility.slug}/billing/accounts"
    with db.tenant(facility.slug) as conn:
        number = conn.execute(sa.text("SELECT number FROM account WHERE id = :a"), {"a": charted["account"]}).scalar()
    link = f'href="{base}/{charted["account"]}"'
    for typed in (charted["patient"]["mrn"], number.lower(), f"  {number} "):
        found = clerk.get(base, params={"q": typed})
        assert found.status_code == 200 and link in found.text, typed
        assert "1 account for" in found.text
    # The patient at the counter without their card: by name (misspelt too), or the MRN without its zeros.
    for typed in ("Kamau", "kamua peter", charted["patient"]["mrn"].lstrip("0")):
        found = clerk.get(base, params={"q": typed})
        assert found.status_code == 200 and link in found.text, typed
    missing = clerk.get(base, params={"q": "AC-9999999"})
    assert missing.status_code == 200
    assert "No account numbered “AC-9999999” and no patient of that MRN or name" in missing.text
    assert clerk.get(base, params={"q": "K"}).status_code == 200  # one letter finds nobody, and says so
    outsider = signed_in("billing_clerk", other_facility.slug)
    for typed in (charted["patient"]["mrn"], "Kamau"):
        elsewhere = outsider.get(f"/t/{other_facility.slug}/billing/accounts", params={"q": typed})
        assert elsewhere.status_code == 200 and str(charted["account"]) not in elsewhere.text
    assert outsider.get(base, params={"q": number}).status_code == 403


def test_the_accounts_not_yet_invoiced_are_listed_apart(db, signed_in, facility, other_facility):
    """Each account says its invoice, and 'Not yet invoiced' lists those with charges and no final invoice: a
    patient seen and gone without paying was found only by opening every account."""
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr U", tenant=facility.slug,
                       role="clinician")
    with db.tenant(facility.slug) as conn:
        gone = seen_for_a_blood_count(conn, doctor, "Unbilled", "Una")
        [unbilled] = financial.list_accounts(conn, doctor, patient_id=gone["id"])
    invoice = billed_for_a_blood_count(db, facility, "Billed", "Bella")
    clerk = signed_in("billing_clerk", facility.slug)
    base = f"/t/{facility.slug}/billing/accounts"
    listed = clerk.get(base).text
    assert "not invoiced" in listed.split(f'id="invoice-of-{unbilled["id"]}"')[1].split("</td>")[0]
    assert f'href="/t/{facility.slug}/billing/invoices/{invoice["id"]}"' in listed and 'id="unbilled-link"' in listed
    only = clerk.get(base, params={"unbilled": "1"})
    assert only.status_code == 200 and 'id="accounts-unbilled"' in only.text
    assert f'id="invoice-of-{unbilled["id"]}"' in only.text and f'/invoices/{invoice["id"]}"' not in only.text
    outsider = signed_in("billing_clerk", other_facility.slug)
    assert str(unbilled["id"]) not in outsider.get(f"/t/{other_facility.slug}/billing/accounts",
                                                     params={"unbilled": "1"}).text
    assert outsider.get(base, params={"unbilled": "1"}).status_code == 403


def test_billing_pages_are_audited(db, signed_in, facility, charted):
    clerk = signed_in("billing_clerk", facility.slug)
    with db.tenant(facility.slug) as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM audit_event")).scalar_one()
    assert clerk.get(f"/t/{facility.slug}/billing/accounts/{charted['account']}").status_code == 200
    with db.tenant(facility.slug) as conn:
        after = conn.execute(sa.text("SELECT count(*) FROM audit_event")).scalar_one()
    assert after > count


PAGES = ["/billing", "/billing/accounts", "/billing/aging", "/billing/takings", "/billing/accounts/{account}",
         "/billing/accounts/{account}?done=coverage&cover={guess}",
         "/billing/invoices/{guess}", "/billing/receipts/{guess}", "/billing/credit-notes/{guess}",
         "/billing/refunds/{guess}"]


@pytest.mark.parametrize("path", PAGES)
def test_another_facilitys_session_is_refused(signed_in, facility, other_facility, charted, path):
    outsider = signed_in("billing_clerk", other_facility.slug)
    response = outsider.get(f"/t/{facility.slug}" + path.format(account=charted["account"], guess=uuid.uuid4()))
    assert response.status_code == 403


@pytest.mark.parametrize("path", ["/billing/accounts/{account}", "/billing/invoices/{guess}",
                                  "/billing/receipts/{guess}", "/billing/accounts/{guess}",
                                  "/billing/credit-notes/{guess}", "/billing/refunds/{guess}"])
def test_this_facilitys_ids_are_not_found_elsewhere(signed_in, other_facility, charted, path):
    outsider = signed_in("billing_clerk", other_facility.slug)
    response = outsider.get(f"/t/{other_facility.slug}" + path.format(account=charted["account"], guess=uuid.uuid4()))
    assert response.status_code == 404


def seen_for_a_blood_count(conn, doctor: Principal, family_name: str, given_names: str) -> dict:
    """A new patient with an outpatient encounter and a full blood count ordered (self-pay priced)."""
    patient = clinical.register_patient(conn, doctor, PatientIn.model_validate({
        "family_name": family_name, "given_names": given_names, "birth_date": "1960-01-01", "sex": "female"}))
    encounter = clinical.open_encounter(conn, doctor, patient["id"], EncounterIn(encounter_class="outpatient"))
    clinical.order_test(conn, doctor, patient["id"], ServiceRequestIn(code=FULL_BLOOD_COUNT,
                                                                      encounter_id=encounter["id"]))
    return patient


@pytest.fixture(scope="module")
def victim(db, facility) -> dict:
    """This facility's account with a final invoice, a payment and its claim's invoice, for the probes."""
    from appliance.layers.financial import service

    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr V", tenant=facility.slug,
                       role="clinician")
    clerk = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Clerk V", tenant=facility.slug,
                      role="billing_clerk")
    with db.tenant(facility.slug) as conn:
        patient = seen_for_a_blood_count(conn, doctor, "Victim", "Vera")
        [account] = service.list_accounts(conn, clerk, patient_id=patient["id"])
        invoice = service.finalise_invoice(conn, clerk, service.draft_invoice(conn, clerk, account["id"])["id"])
        receipt = service.record_payment(conn, clerk, invoice["id"], method="cash", amount=Decimal("10"))
    return {"account": account["id"], "invoice": invoice["id"], "payment": receipt["id"]}


POSTS = [
    ("/billing/charges/{charge}/price", {"unit_price": "1", "reason": "probe"}),
    ("/billing/bed-days", {}),
    ("/billing/accounts/{account}/invoices", {}),
    ("/billing/accounts/{account}/coverage", {"payer_code": "NHIF", "member_number": "X", "valid_from": "2024-01-01"}),
    ("/billing/invoices/{invoice}/adjustments", {"kind": "discount", "by": "amount", "size": "1", "reason": "probe",
                                                  "approved_by": "nobody"}),
    ("/billing/invoices/{invoice}/finalise", {}),
    ("/billing/invoices/{invoice}/payments", {"method": "cash", "amount": "1"}),
    ("/billing/invoices/{invoice}/credit-notes", {"credit_reason": "probe"}),
    ("/billing/invoices/{invoice}/write-off", {"shortfall_reason": "probe"}),
    ("/billing/invoices/{invoice}/transfer-to-patient", {"shortfall_reason": "probe"}),
    ("/billing/invoices/{invoice}/refunds", {"refund_method": "cash", "refund_amount": "1", "refund_reason": "probe"}),
    ("/billing/invoices/{invoice}/claim", {}),
    ("/billing/invoices/{invoice}/claim/status", {"status": "accepted"}),
]


@pytest.mark.parametrize(("path", "form"), POSTS, ids=[p for p, _ in POSTS])
def test_every_form_is_refused_to_another_facility_and_to_guessed_ids(signed_in, facility, other_facility, charted,
                                                                       victim, path, form):
    outsider = signed_in("billing_clerk", other_facility.slug)
    token = csrf(outsider.get(f"/t/{other_facility.slug}/billing").text)
    ids = {"charge": charted["charge"], **victim}
    theirs = outsider.post(f"/t/{facility.slug}" + path.format(**ids), data={**form, "_csrf_token": token},
                           follow_redirects=False)
    assert theirs.status_code == 403
    if "{" in path:
        for probe in (ids, dict.fromkeys(ids, uuid.uuid4())):  # their real ids from here, and a guess
            here = outsider.post(f"/t/{other_facility.slug}" + path.format(**probe),
                                 data={**form, "_csrf_token": token}, follow_redirects=False)
            assert here.status_code == 404, here.text


def test_days_in_ar_says_its_daily_revenue_as_a_day_not_the_periods_total(signed_in, facility, victim):
    """Net days in A/R divides the receivable by a day's revenue: the page said the 90 days' total was the
    average daily revenue, a figure ninety times too large to check the division against."""
    page = signed_in("billing_clerk", facility.slug).get(f"/t/{facility.slug}/billing/aging").text
    money = lambda ident: Decimal(re.search(rf'id="{ident}">KES ([\d,.]+)<', page)[1].replace(",", ""))  # noqa: E731
    assert "invoiced in the last 90 days is" in page and "average daily net revenue of the last" not in page
    daily = money("daily-revenue")
    assert daily == (money("net-revenue") / 90).quantize(Decimal("0.01"), ROUND_HALF_UP) and daily > 0
    days = Decimal(re.search(r'id="days-in-ar">([\d.]+)<', page)[1])
    assert abs(days - money("receivable") / daily) < Decimal("0.1")


def _amounts(html: str, row_class: str) -> list[str]:
    table = html.split(f'class="list {row_class}')[1].split("</table>")[0]
    return re.findall(r'class="nowrap amount">KES ([\d,.]+)<', table.split("<tbody>")[1].split("</tbody>")[0])


def test_the_days_takings_add_up_by_method_and_by_cashier(db, signed_in, facility):
    """The cashier's cash-up: every receipt of the facility's day, totals by method and by who took them,
    each total the sum of the receipts behind it."""
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr T", tenant=facility.slug,
                       role="clinician")
    cashier = signed_in("billing_clerk", facility.slug)
    with db.tenant(facility.slug) as conn:
        patient = seen_for_a_blood_count(conn, doctor, "Takings", "Tabitha")
        [account] = financial.list_accounts(conn, Principal(account_id=uuid.uuid4(), kind="staff", display_name="C",
                                                          tenant=facility.slug, role="billing_clerk"),
                                          patient_id=patient["id"])
    base = f"/t/{facility.slug}/billing"
    page = cashier.get(f"{base}/accounts/{account['id']}")
    invoice_url = cashier.post(f"{base}/accounts/{account['id']}/invoices", data={"_csrf_token": csrf(page.text)},
                               follow_redirects=False).headers["location"].split("?")[0]
    final = cashier.post(f"{invoice_url}/finalise", data={"_csrf_token": csrf(page.text)})
    receipts = []
    for method, amount, reference in (("cash", "100", ""), ("mobile_money", "150.50", "MM-TAKINGS-1")):
        paid = cashier.post(f"{invoice_url}/payments", data={"method": method, "amount": amount,
                                                             "reference": reference, "_csrf_token": csrf(final.text)},
                            follow_redirects=False)
        assert paid.status_code == 303, paid.text
        receipts.append(re.search(r"RCT-\d+", cashier.get(paid.headers["location"]).text)[0])

    takings = cashier.get(f"{base}/takings")
    assert takings.status_code == 200 and "Day's takings" in takings.text
    text = takings.text
    for number in receipts:
        assert number in text
    assert "MM-TAKINGS-1" in text
    total = re.search(r'id="takings-total">KES ([\d,.]+)<', text)[1]
    shown = [Decimal(a.replace(",", "")) for a in _amounts(text, "compact takings-receipts")]
    assert Decimal(total.replace(",", "")) == sum(shown) and Decimal("250.50") <= sum(shown)
    by_method = [Decimal(a.replace(",", "")) for a in _amounts(text, "takings-methods")]
    assert sum(by_method) == sum(shown) and len(by_method) == 4  # cash, mobile money, card, remittance
    cashier_rows = text.split('class="list takings-cashiers')[1].split("<tbody>")[1].split("</tbody>")[0]
    totals = [Decimal(r.rsplit("KES ", 1)[1].split("<")[0].replace(",", "")) for r in cashier_rows.split("<tr>")[1:]]
    assert sum(totals) == sum(shown)

    with db.tenant(facility.slug) as conn:
        audited = conn.execute(sa.text("SELECT count(*) FROM audit_event")).scalar_one()
    quiet = cashier.get(f"{base}/takings", params={"day": "2001-01-01"})
    assert quiet.status_code == 200 and "No payment was received on this day." in quiet.text
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM audit_event")).scalar_one() > audited
    bad = cashier.get(f"{base}/takings", params={"day": "31/12/2026"})
    assert bad.status_code == 422 and "Give a date as YYYY-MM-DD." in bad.text


def test_the_account_offers_the_invoice_step_that_applies(db, signed_in, facility):
    """'Prepare invoice' while charges wait; the draft once one is open; and once every charge is on a final
    invoice, a sentence, where the button stayed and answered with a refusal."""
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr S", tenant=facility.slug,
                       role="clinician")
    with db.tenant(facility.slug) as conn:
        patient = seen_for_a_blood_count(conn, doctor, "Steps", "Stella")
        account_id = conn.execute(sa.text("SELECT id FROM account WHERE patient_id = :p"),
                                  {"p": patient["id"]}).scalar_one()
    clerk = signed_in("billing_clerk", facility.slug)
    url = f"/t/{facility.slug}/billing/accounts/{account_id}"
    waiting = clerk.get(url).text
    assert f'action="{url}/invoices"' in waiting and ">Prepare invoice<" in waiting
    drafted = clerk.post(f"{url}/invoices", data={"_csrf_token": csrf(waiting)}, follow_redirects=False)
    draft_url = drafted.headers["location"].split("?")[0]
    open_draft = clerk.get(url).text
    assert f'href="{draft_url}" class="button">Open the draft invoice<' in open_draft
    assert f'action="{url}/invoices"' not in open_draft
    clerk.post(f"{draft_url}/finalise", data={"_csrf_token": csrf(waiting)})
    done = clerk.get(url).text
    assert 'id="nothing-to-invoice">Every charge is on a final invoice.<' in done
    assert f'action="{url}/invoices"' not in done and "Open the draft invoice" not in done


def test_insurance_needs_its_start_and_says_when_it_changes_nothing(db, signed_in, facility):
    """A blank start was taken as today, so a card recorded for last month's care silently covered none of
    it; the start is now asked for, and a cover whose dates hold none of the care says so."""
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr I", tenant=facility.slug,
                       role="clinician")
    with db.tenant(facility.slug) as conn:
        patient = seen_for_a_blood_count(conn, doctor, "Idle", "Irene")
        account_id = conn.execute(sa.text("SELECT id FROM account WHERE patient_id = :p"),
                                  {"p": patient["id"]}).scalar_one()
    clerk = signed_in("billing_clerk", facility.slug)
    url = f"/t/{facility.slug}/billing/accounts/{account_id}"
    token = csrf(clerk.get(url).text)
    blank = clerk.post(f"{url}/coverage", data={"payer_code": "NHIF", "member_number": "NH-IDLE",
                                                "valid_from": "", "_csrf_token": token})
    assert blank.status_code == 422 and "Give the date the membership starts, as YYYY-MM-DD" in blank.text
    assert 'value="NH-IDLE"' in blank.text  # what was typed stays
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM coverage WHERE patient_id = :p"),
                            {"p": patient["id"]}).scalar() == 0
    later = (dt.date.today() + dt.timedelta(days=40)).isoformat()
    recorded = clerk.post(f"{url}/coverage", data={"payer_code": "NHIF", "member_number": "NH-IDLE",
                                                   "valid_from": later, "_csrf_token": token})
    assert recorded.status_code == 200 and "<dt>Billed to</dt><dd>Self-pay</dd>" in recorded.text
    said = recorded.text.split('id="cover-idle">')[1].split("</p>")[0]
    assert said.startswith("National Health Insurance Fund from ") and "changes none of the patient's accounts" in said
    # A guessed cover id says nothing at all on this account.
    assert 'id="cover-idle"' not in clerk.get(f"{url}?done=coverage&cover={uuid.uuid4()}").text


def test_accruing_bed_days_says_whether_any_were_charged(signed_in, other_facility):
    """With nobody in a bed, the accrual charges nothing and the page says so: it said 'accrued' whatever
    happened, so a second click (or an empty ward) read as if charges had been written."""
    clerk = signed_in("billing_clerk", other_facility.slug)
    base = f"/t/{other_facility.slug}/billing"
    accrued = clerk.post(f"{base}/bed-days", data={"_csrf_token": csrf(clerk.get(base).text)}, follow_redirects=False)
    assert accrued.status_code == 303 and accrued.headers["location"].endswith("?done=accrued-none")
    assert "No bed-day to accrue: every stay present at the last census is already charged." in \
        clerk.get(accrued.headers["location"]).text


def test_a_clinician_has_no_billing_pages_and_no_billing_navigation(signed_in, facility):
    doctor = signed_in("clinician", facility.slug)
    assert doctor.get(f"/t/{facility.slug}/billing").status_code == 403
    assert "Billing worklist" not in doctor.get(f"/t/{facility.slug}/patients").text


def test_recording_insurance_from_the_account_page(signed_in, facility, victim):
    clerk = signed_in("billing_clerk", facility.slug)
    url = f"/t/{facility.slug}/billing/accounts/{victim['account']}"
    page = clerk.get(url)
    bad = clerk.post(f"{url}/coverage", data={"payer_code": "NHIF", "member_number": "NH-1", "valid_from": "soon",
                                              "_csrf_token": csrf(page.text)})
    assert bad.status_code == 422 and "Give a date as YYYY-MM-DD." in bad.text
    unknown = clerk.post(f"{url}/coverage", data={"payer_code": "GOLD", "member_number": "G-1",
                                                  "valid_from": "2024-01-01", "_csrf_token": csrf(page.text)})
    assert unknown.status_code == 422 and "GOLD is not one of this facility" in unknown.text
    good = clerk.post(f"{url}/coverage", data={"payer_code": "NHIF", "member_number": "NH-778",
                                               "valid_from": "2024-01-01", "_csrf_token": csrf(page.text)},
                      follow_redirects=False)
    assert good.status_code == 303 and "done=coverage&cover=" in good.headers["location"]
    landed = clerk.get(good.headers["location"]).text
    assert "NH-778" in landed
    assert re.search(r"AC-\d+ is left as it is: its invoice INV-\d+ is final; a refund or credit", landed)


def test_insurance_recorded_after_the_care_says_what_it_re_priced(db, signed_in, facility, victim):
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr C", tenant=facility.slug,
                       role="clinician")
    with db.tenant(facility.slug) as conn:
        patient = seen_for_a_blood_count(conn, doctor, "Cashier", "Carol")
        account_id = conn.execute(sa.text("SELECT id FROM account WHERE patient_id = :p"),
                                  {"p": patient["id"]}).scalar_one()
    clerk = signed_in("billing_clerk", facility.slug)
    url = f"/t/{facility.slug}/billing/accounts/{account_id}"
    assert "<dt>Billed to</dt><dd>Self-pay</dd>" in clerk.get(url).text
    token = csrf(clerk.get(url).text)
    recorded = clerk.post(f"{url}/coverage", data={"payer_code": "NHIF", "member_number": "NH-9",
                                                   "valid_from": "2024-01-01", "_csrf_token": token})
    assert recorded.status_code == 200, recorded.text
    assert "<dt>Billed to</dt><dd>National Health Insurance Fund</dd>" in recorded.text
    assert re.search(r"AC-\d+ now bills National Health Insurance Fund: 1 charge re-priced on its price list "
                     r"\(KES 450.00 → KES 380.00\)\.", recorded.text)
    # The self-pay charge's credit is money taken off, written as every billing page writes it: "KES -450.00"
    # beside the invoice's "−KES 70.00" was one sum said two ways.
    credit = recorded.text.split('<tr class="credit">')[1].split("</tr>")[0]
    assert '<td class="nowrap amount">−KES 450.00</td>' in credit and "KES -" not in recorded.text
    # Only the record speaks: a guessed cover id, or another patient's cover, says nothing on this account.
    other_cover = recorded.url.params["cover"]
    for probe in (uuid.uuid4(), "not-an-id"):
        assert "now bills" not in clerk.get(f"{url}?done=coverage&cover={probe}").text
    victim_url = f"/t/{facility.slug}/billing/accounts/{victim['account']}"
    victim_page = clerk.get(f"{victim_url}?done=coverage&cover={other_cover}")
    assert victim_page.status_code == 200 and "now bills" not in victim_page.text


def test_an_invoice_bills_the_re_priced_charge_and_the_insurer_is_receipted(db, signed_in, facility):
    """Insurance recorded after the care credits the self-pay charge and posts it at the insurer's price: the
    invoice's lines are what is billed (the insurer's price), and the charge with the credit that undid it,
    netting to nothing, are set apart below them, on the draft and on the final invoice alike; its claim offers
    only the answers it can take next; the insurer's remittance is receipted as from the insurer."""
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr R", tenant=facility.slug,
                       role="clinician")
    desk = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Desk R", tenant=facility.slug,
                     role="billing_clerk")
    with db.tenant(facility.slug) as conn:
        patient = seen_for_a_blood_count(conn, doctor, "Repriced", "Rita")
        financial.add_coverage(conn, desk, patient["id"], payer_code="NHIF", member_number="NH-REPRICE",
                               valid_from=dt.date(2024, 1, 1), valid_to=None)
        [account] = financial.list_accounts(conn, desk, patient_id=patient["id"])
    clerk = signed_in("billing_clerk", facility.slug)
    base = f"/t/{facility.slug}/billing"
    page = clerk.get(f"{base}/accounts/{account['id']}")
    drafted = clerk.post(f"{base}/accounts/{account['id']}/invoices", data={"_csrf_token": csrf(page.text)})
    final = clerk.post(f"{str(drafted.url).split('?')[0]}/finalise", data={"_csrf_token": csrf(page.text)})
    for shown in (drafted, final):
        assert shown.status_code == 200, shown.text
        billed = shown.text.split('class="list invoice-lines')[1].split("<tbody>")[1].split("</tbody>")[0]
        assert re.findall(r'class="nowrap amount">KES ([\d,.-]+)<', billed) == ["380.00"]
        assert 'id="subtotal">KES 380.00<' in shown.text and 'id="total">KES 380.00<' in shown.text
        apart = shown.text.split('id="netted-lines"')[1].split("</details>")[0]
        assert "2 lines, net KES 0.00" in apart
        assert sorted(re.findall(r'class="nowrap amount">(−?KES [\d,.]+)<', apart)) == ["KES 450.00", "−KES 450.00"]

    # The claim's form offers only the answers the claim can take next.
    with db.tenant(facility.slug) as conn:
        clinical.add_condition(conn, doctor, patient["id"], ConditionIn(code="B54"))
    invoice_url = str(drafted.url).split("?")[0]
    claimed = clerk.post(f"{invoice_url}/claim", data={"_csrf_token": csrf(page.text)})
    answers = lambda html: re.findall(r'<option value="(\w+)"', html.split('id="status"')[1].split("</select>")[0])  # noqa: E731
    assert claimed.status_code == 200 and answers(claimed.text) == ["accepted", "rejected"]
    rejected = clerk.post(f"{invoice_url}/claim/status", data={"status": "rejected", "reason": "not eligible",
                                                               "_csrf_token": csrf(page.text)})
    assert rejected.status_code == 200 and answers(rejected.text) == ["submitted"]
    again = clerk.post(f"{invoice_url}/claim/status", data={"status": "submitted", "_csrf_token": csrf(page.text)})
    accepted = clerk.post(f"{invoice_url}/claim/status", data={"status": "accepted", "_csrf_token": csrf(again.text)})
    assert accepted.status_code == 200 and answers(accepted.text) == ["rejected"]

    # The insurer pays: the receipt says the money came from the insurer, for the patient.
    paid = clerk.post(f"{str(drafted.url).split('?')[0]}/payments", data={
        "method": "insurer_remittance", "amount": "380", "reference": "RA-2026-11", "_csrf_token": csrf(page.text)})
    assert paid.status_code == 200 and "/receipts/" in str(paid.url)
    said = paid.text.split('id="receipt-from">')[1].split("</dd>")[0]
    assert said.startswith("National Health Insurance Fund, for REPRICED, Rita")
    settled = clerk.get(invoice_url).text  # paid in full: the claim is paid and takes no answer
    assert "paid" in settled.split('id="claim-title"')[1] and 'id="status"' not in settled


def billed_for_a_blood_count(db, facility, family_name: str, given_names: str, *,
                             remitted: Decimal | None = None, claimed: bool = False) -> dict:
    """A new patient's final invoice for a full blood count: self-pay (450.00), or insured by NHIF (380.00) with
    `claimed` (malaria on the record, claimed from NHIF, submitted) and with `remitted` paid that much of it."""
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr B", tenant=facility.slug,
                       role="clinician")
    desk = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Desk B", tenant=facility.slug,
                     role="billing_clerk")
    with db.tenant(facility.slug) as conn:
        patient = seen_for_a_blood_count(conn, doctor, family_name, given_names)
        if remitted is not None or claimed:
            financial.add_coverage(conn, desk, patient["id"], payer_code="NHIF", member_number=f"NH-{family_name}",
                                   valid_from=dt.date(2024, 1, 1), valid_to=None)
        [account] = financial.list_accounts(conn, desk, patient_id=patient["id"])
        invoice = financial.finalise_invoice(conn, desk, financial.draft_invoice(conn, desk, account["id"])["id"])
        if claimed:
            clinical.add_condition(conn, doctor, patient["id"], ConditionIn(code="B54"))
            invoice["claim"] = financial.create_claim(conn, desk, invoice["id"])
        if remitted is not None:
            financial.record_payment(conn, desk, invoice["id"], method="insurer_remittance", amount=remitted,
                                     reference=f"RA-{family_name}")
    return invoice


def test_a_final_invoice_is_corrected_by_a_credit_note(db, signed_in, facility, other_facility):
    """A clerk who finds a final invoice wrong ticks the line billed in error (or types the part of a wrong
    price), says why, and gets a numbered, printable credit note; the invoice then owes that much less."""
    invoice = billed_for_a_blood_count(db, facility, "Credited", "Cora")
    [line] = invoice["lines"]
    clerk = signed_in("billing_clerk", facility.slug)
    url = f"/t/{facility.slug}/billing/invoices/{invoice['id']}"
    page = clerk.get(url).text
    assert f'name="line-{line["id"]}"' in page and f'action="{url}/credit-notes"' in page
    over = clerk.post(f"{url}/credit-notes", data={f"amount-{line['id']}": "500", "credit_reason": "wrong price",
                                                    "_csrf_token": csrf(page)})
    assert over.status_code == 422 and "At most KES 450.00 of “Full blood count” can be credited" in over.text
    assert 'value="500"' in over.text  # what was typed stays beside its line
    unsaid = clerk.post(f"{url}/credit-notes", data={f"line-{line['id']}": "whole", "credit_reason": "",
                                                      "_csrf_token": csrf(page)})
    assert unsaid.status_code == 422 and 'id="credit_reason-error"' in unsaid.text
    issued = clerk.post(f"{url}/credit-notes", data={f"amount-{line['id']}": "70", "_csrf_token": csrf(page),
                                                      "credit_reason": "staff rate is KES 380.00"},
                        follow_redirects=False)
    assert issued.status_code == 303 and "/credit-notes/" in issued.headers["location"], issued.text
    note = clerk.get(issued.headers["location"])
    assert note.status_code == 200 and re.search(r"Credit note <span class=\"mono\">CN-\d+</span>", note.text)
    assert 'id="credit-amount">KES 70.00<' in note.text and 'id="credit-outstanding">KES 380.00<' in note.text
    assert "staff rate is KES 380.00" in note.text and "Credit note issued" in note.text
    after = clerk.get(url).text
    assert 'id="credited">−KES 70.00<' in after and 'id="outstanding">KES 380.00<' in after
    assert 'id="total">KES 450.00<' in after  # the final invoice itself is unchanged
    takings = clerk.get(f"/t/{facility.slug}/billing/takings").text.split('class="list compact takings-credits')[1]
    assert "CREDITED, Cora" in takings and "staff rate is KES 380.00" in takings
    outsider = signed_in("billing_clerk", other_facility.slug)
    assert outsider.get(issued.headers["location"].split("?")[0]).status_code == 403


def test_cash_handed_over_beyond_the_bill_is_receipted_with_the_change(db, signed_in, facility):
    """The cashier types what the patient handed over; the receipt says what was paid, the cash tendered
    and the change to give back, and the day's takings count only what was paid."""
    invoice = billed_for_a_blood_count(db, facility, "Change", "Chebet")
    cashier = signed_in("billing_clerk", facility.slug)
    url = f"/t/{facility.slug}/billing/invoices/{invoice['id']}"
    page = cashier.get(url).text
    paid = cashier.post(f"{url}/payments", data={"method": "cash", "amount": "1,000", "_csrf_token": csrf(page)},
                        follow_redirects=False)
    assert paid.status_code == 303, paid.text
    receipt = cashier.get(paid.headers["location"]).text
    assert 'id="receipt-amount">KES 450.00<' in receipt and 'id="receipt-tendered">KES 1,000.00<' in receipt
    assert 'id="receipt-change">KES 550.00<' in receipt and 'id="receipt-outstanding">KES 0.00<' in receipt
    number = re.search(r"RCT-\d+", receipt)[0]
    takings = cashier.get(f"/t/{facility.slug}/billing/takings").text
    row = takings.split(number)[1].split("</tr>")[0]
    assert "KES 450.00" in row and "1,000" not in row


def test_an_amount_typed_with_a_decimal_comma_or_an_exponent_is_refused_not_misread(db, signed_in, facility):
    """'1,50' (a decimal comma) once read as 150 and '1e3' as 1000: each was receipted as that. The cashier now sees
    the amount refused beside its box and no payment is recorded; commas between thousands still read."""
    invoice = billed_for_a_blood_count(db, facility, "Comma", "Consolata")
    cashier = signed_in("billing_clerk", facility.slug)
    url = f"/t/{facility.slug}/billing/invoices/{invoice['id']}"
    page = cashier.get(url).text
    for typed in ("1,50", "1e3", "4,50.00", "1,5000"):
        refused = cashier.post(f"{url}/payments", data={"method": "cash", "amount": typed, "_csrf_token": csrf(page)})
        assert refused.status_code == 422, (typed, refused.status_code)
        assert "Give the amount received as a number, e.g. 1500 or 1,500.00" in refused.text, typed
    after = cashier.get(url).text
    assert 'id="outstanding">KES 450.00<' in after and "RCT-" not in after
    paid = cashier.post(f"{url}/payments", data={"method": "cash", "amount": "1,450.00", "_csrf_token": csrf(page)},
                        follow_redirects=False)
    assert paid.status_code == 303, paid.text
    assert 'id="receipt-tendered">KES 1,450.00<' in cashier.get(paid.headers["location"]).text


def test_the_insurers_shortfall_is_written_off_or_billed_to_the_patient_from_the_invoice(db, signed_in, facility):
    """NHIF remits 300 of its 380 invoice: the clerk writes 30 off and bills the patient the other 50, each with
    the insurer's reason; the patient's invoice says where its amount came from."""
    invoice = billed_for_a_blood_count(db, facility, "Shortfall", "Sharon", remitted=Decimal("300"))
    clerk = signed_in("billing_clerk", facility.slug)
    url = f"/t/{facility.slug}/billing/invoices/{invoice['id']}"
    page = clerk.get(url).text
    assert f'action="{url}/write-off"' in page and f'formaction="{url}/transfer-to-patient"' in page
    owed = clerk.get(f"/t/{facility.slug}/billing/aging").text  # the insurer by name, not the tenant file's code
    assert "<th scope=\"row\">National Health Insurance Fund</th>" in owed.split('class="list aging"')[1]
    assert ">NHIF<" not in owed
    unsaid = clerk.post(f"{url}/write-off", data={"shortfall_amount": "30", "_csrf_token": csrf(page)})
    assert unsaid.status_code == 422 and 'id="shortfall_reason-error"' in unsaid.text
    too_much = clerk.post(f"{url}/write-off", data={"shortfall_amount": "90", "shortfall_reason": "tariff cap",
                                                    "_csrf_token": csrf(page)})
    assert too_much.status_code == 422 and "The shortfall is KES 80.00" in too_much.text
    written = clerk.post(f"{url}/write-off", data={"shortfall_amount": "30", "shortfall_reason": "NHIF tariff cap",
                                                   "_csrf_token": csrf(page)}, follow_redirects=False)
    assert written.status_code == 303, written.text
    note = clerk.get(written.headers["location"]).text
    assert re.search(r"Shortfall written off <span class=\"mono\">WO-\d+</span>", note)
    assert 'id="credit-outstanding">KES 50.00<' in note
    moved = clerk.post(f"{url}/transfer-to-patient", data={"shortfall_reason": "not covered by the plan",
                                                           "_csrf_token": csrf(page)}, follow_redirects=False)
    assert moved.status_code == 303, moved.text
    transfer = clerk.get(moved.headers["location"]).text
    assert 'id="credit-amount">KES 50.00<' in transfer and 'id="credit-outstanding">KES 0.00<' in transfer
    patients_url = re.search(r'Billed to the patient on</dt><dd><a href="([^"]+)"', transfer)[1]
    patients = clerk.get(patients_url).text
    assert 'id="transferred-from"' in patients and invoice["number"] in patients
    assert "<dt>Billed to</dt><dd>Self-pay</dd>" in patients and 'id="outstanding">KES 50.00<' in patients
    settled = clerk.get(url).text
    assert 'id="outstanding">KES 0.00<' in settled and 'id="shortfall-title"' not in settled


def test_a_discount_capped_at_what_was_left_says_so_on_the_invoice(db, signed_in, facility):
    """An exemption of 500 on a 450 bill takes 450 (an invoice never goes below zero): the line said '500
    exemption' and took 450 without a word; it now says it was capped and at what."""
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Q", tenant=facility.slug,
                       role="clinician")
    with db.tenant(facility.slug) as conn:
        patient = seen_for_a_blood_count(conn, doctor, "Capped", "Cecilia")
        account_id = conn.execute(sa.text("SELECT id FROM account WHERE patient_id = :p"),
                                  {"p": patient["id"]}).scalar_one()
    clerk = signed_in("billing_clerk", facility.slug)
    account = clerk.get(f"/t/{facility.slug}/billing/accounts/{account_id}").text
    drafted = clerk.post(f"/t/{facility.slug}/billing/accounts/{account_id}/invoices",
                         data={"_csrf_token": csrf(account)})
    capped = clerk.post(f"{str(drafted.url).split('?')[0]}/adjustments", data={
        "kind": "exemption", "by": "amount", "size": "500", "reason": "waiver scheme", "approved_by": "Matron",
        "_csrf_token": csrf(account)})
    assert capped.status_code == 200 and 'id="total">KES 0.00<' in capped.text
    assert "capped at KES 450.00 of the KES 500.00 asked: an invoice never goes below zero" in capped.text


def test_when_the_patient_and_the_insurer_both_paid_the_cashier_says_who_has_the_refund(db, signed_in, facility):
    """On NHIF's invoice the patient paid 100 in cash and NHIF 280; a credit note of 150 leaves 150 overpaid. The
    invoice says it is owed to the patient or NHIF and the refund form asks who (left blank: refused beside the
    field); the patient's refund is theirs, at most what they paid."""
    invoice = billed_for_a_blood_count(db, facility, "Shared", "Salome", claimed=True)
    [line] = [ln for ln in invoice["lines"] if not ln["netted"]]
    clerk = signed_in("billing_clerk", facility.slug)
    url = f"/t/{facility.slug}/billing/invoices/{invoice['id']}"
    page = clerk.get(url).text
    clerk.post(f"{url}/claim/status", data={"status": "accepted", "_csrf_token": csrf(page)})
    clerk.post(f"{url}/payments", data={"method": "cash", "amount": "100", "_csrf_token": csrf(page)})
    clerk.post(f"{url}/payments", data={"method": "insurer_remittance", "amount": "280", "reference": "RA-280",
                                        "_csrf_token": csrf(page)})
    clerk.post(f"{url}/credit-notes", data={f"amount-{line['id']}": "150", "credit_reason": "tariff",
                                            "_csrf_token": csrf(page)})
    owed = clerk.get(url).text
    assert "a refund is owed to the patient or National Health Insurance Fund" in owed
    form = owed.split('id="refund-title"')[1].split("</form>")[0]
    assert re.findall(r'<option value="(\w*)"', form.split('name="refund_to"')[1].split("</select>")[0]) == [
        "", "patient", "insurer"]
    assert "the patient (up to KES 100.00 theirs to have back)" in form
    assert re.search(r'name="refund_amount" type="text" value=""', form)  # not 150, more than the patient's 100
    asked = {"refund_method": "cash", "refund_amount": "100", "refund_reason": "tariff", "_csrf_token": csrf(owed)}
    unnamed = clerk.post(f"{url}/refunds", data=asked)
    assert unnamed.status_code == 422 and 'id="refund_to-error"' in unnamed.text
    given = clerk.post(f"{url}/refunds", data={**asked, "refund_to": "patient"}, follow_redirects=False)
    assert given.status_code == 303, given.text
    slip = clerk.get(given.headers["location"]).text
    assert slip.split('id="refund-to">')[1].startswith("SHARED, Salome")
    assert "a refund is owed to National Health Insurance Fund" in clerk.get(url).text


def test_a_charge_and_the_credit_that_undid_it_are_not_offered_for_a_credit_note(db, signed_in, facility):
    """NHIF recorded after the care re-priced the blood count: the self-pay 450 and the credit that undid it net to
    nothing on the invoice. The credit note form offers only what is billed (NHIF's 380); the undone 450 posted
    anyway is refused beside the lines, with why, and nothing is credited."""
    invoice = billed_for_a_blood_count(db, facility, "Netted", "Neema", claimed=True)
    [undone] = [ln for ln in invoice["lines"] if ln["netted"] and ln["amount"] > 0]
    [billed] = [ln for ln in invoice["lines"] if not ln["netted"]]
    clerk = signed_in("billing_clerk", facility.slug)
    url = f"/t/{facility.slug}/billing/invoices/{invoice['id']}"
    page = clerk.get(url).text
    offered = re.findall(r'name="line-([0-9a-f-]{36})"', page.split('id="credit-title"')[1].split("</form>")[0])
    assert offered == [str(billed["id"])]
    refused = clerk.post(f"{url}/credit-notes", data={f"line-{undone['id']}": "whole", "credit_reason": "probe",
                                                      "_csrf_token": csrf(page)})
    assert refused.status_code == 422 and 'id="lines-error"' in refused.text
    assert "is undone on this invoice by its own credit" in refused.text
    assert 'id="credits-title"' not in clerk.get(url).text


def test_the_shortfall_waits_for_the_insurers_answer_on_the_invoice(db, signed_in, facility):
    """A claim still submitted has no shortfall yet: the invoice says why instead of offering the form, and a post
    anyway is refused on the page (409) with the same reason."""
    invoice = billed_for_a_blood_count(db, facility, "Waiting", "Wanjiku", claimed=True)
    clerk = signed_in("billing_clerk", facility.slug)
    url = f"/t/{facility.slug}/billing/invoices/{invoice['id']}"
    page = clerk.get(url).text
    waits = page.split('id="shortfall-waits">')[1].split("</p>")[0]
    assert "is submitted: National Health Insurance Fund has neither paid anything on it nor rejected it" in waits
    assert f'action="{url}/write-off"' not in page
    refused = clerk.post(f"{url}/write-off", data={"shortfall_reason": "tariff cap", "_csrf_token": csrf(page)})
    assert refused.status_code == 409 and "so there is no shortfall yet" in refused.text


def test_the_claim_offered_is_what_credit_notes_left_and_none_once_they_took_it_all(db, signed_in, facility):
    """NHIF's invoice of 380, not claimed yet: after a credit note of 150 the page offers to claim 230, not 380;
    after one of the rest it says there is nothing to claim, with no button (it offered 380, refused once sent)."""
    invoice = billed_for_a_blood_count(db, facility, "Unclaimed", "Ursula", remitted=Decimal("100"))
    [line] = [ln for ln in invoice["lines"] if not ln["netted"]]
    clerk = signed_in("billing_clerk", facility.slug)
    url = f"/t/{facility.slug}/billing/invoices/{invoice['id']}"
    for part, offered in (("150", "Claim KES 230.00 from National Health Insurance Fund"), ("230", None)):
        clerk.post(f"{url}/credit-notes", data={f"amount-{line['id']}": part, "credit_reason": "tariff",
                                                "_csrf_token": csrf(clerk.get(url).text)})
        page = clerk.get(url).text
        if offered:
            assert offered in page
    assert 'id="nothing-to-claim"' in page and f'action="{url}/claim"' not in page


def test_a_claim_amended_by_a_credit_note_says_it_must_be_sent_again(db, signed_in, facility):
    """A credit note on a claimed invoice: the claim on the invoice page asks the new amount, says it must be sent
    to the insurer again, shows its history with the credit note, and offers only 'Resubmitted'."""
    invoice = billed_for_a_blood_count(db, facility, "Amended", "Amina", claimed=True)
    [line] = [ln for ln in invoice["lines"] if not ln["netted"]]  # the blood count at NHIF's price
    clerk = signed_in("billing_clerk", facility.slug)
    url = f"/t/{facility.slug}/billing/invoices/{invoice['id']}"
    page = clerk.get(url).text
    assert "must be sent again" in page.split('id="credit-title"')[1]
    issued = clerk.post(f"{url}/credit-notes", data={f"amount-{line['id']}": "80", "_csrf_token": csrf(page),
                                                      "credit_reason": "NHIF tariff is 300.00"}, follow_redirects=False)
    assert issued.status_code == 303, issued.text
    after = clerk.get(url).text
    claim = after.split('id="claim-title"')[1]
    assert 'id="claim-amount">KES 300.00<' in claim and "status-amended" in claim
    assert "send it to National Health Insurance Fund again for KES 300.00" in claim.split('id="claim-resend">')[1]
    history = claim.split('id="claim-history"')[1].split("</details>")[0]
    assert re.search(r"CN-\d+ credited KES 80\.00: NHIF tariff is 300\.00; the claim asks KES 300\.00 now", history)
    answers = re.findall(r'<option value="(\w+)"', claim.split('id="status"')[1].split("</select>")[0])
    assert answers == ["submitted"]


def test_the_cashier_refunds_what_a_credit_note_left_overpaid_and_prints_the_slip(db, signed_in, facility,
                                                                                  other_facility):
    """Paid 450 in cash, then credited 70: the invoice says 70 is owed back to the patient and offers the refund
    (a refusal beside its field, what was typed kept); the slip prints; the day's takings count it out."""
    invoice = billed_for_a_blood_count(db, facility, "Refunded", "Rehema")
    [line] = invoice["lines"]
    cashier = signed_in("billing_clerk", facility.slug)
    url = f"/t/{facility.slug}/billing/invoices/{invoice['id']}"
    page = cashier.get(url).text
    assert 'id="refund-title"' not in page  # nothing overpaid, nothing to give back
    cashier.post(f"{url}/payments", data={"method": "cash", "amount": "450", "_csrf_token": csrf(page)})
    cashier.post(f"{url}/credit-notes", data={f"amount-{line['id']}": "70", "credit_reason": "staff rate is 380.00",
                                              "_csrf_token": csrf(page)})
    owed = cashier.get(url).text
    assert 'id="overpaid">KES 70.00<' in owed and "a refund is owed to the patient" in owed
    assert f'action="{url}/refunds"' in owed and 'id="refund_amount" name="refund_amount"' in owed
    too_much = cashier.post(f"{url}/refunds", data={"refund_method": "cash", "refund_amount": "75",
                                                    "refund_reason": "staff rate", "_csrf_token": csrf(owed)})
    assert too_much.status_code == 422 and 'id="refund_amount-error"' in too_much.text
    assert "Only KES 70.00 was paid beyond what is owed on this invoice" in too_much.text
    assert 'value="75"' in too_much.text
    given = cashier.post(f"{url}/refunds", data={"refund_method": "cash", "refund_amount": "70",
                                                 "refund_reason": "staff rate is 380.00", "_csrf_token": csrf(owed)},
                         follow_redirects=False)
    assert given.status_code == 303 and "/refunds/" in given.headers["location"], given.text
    slip = cashier.get(given.headers["location"]).text
    assert re.search(r"Refund <span class=\"mono\">RFD-\d+</span>", slip) and "Refund recorded" in slip
    assert 'id="refund-amount">KES 70.00<' in slip and 'id="refund-overpaid">KES 0.00<' in slip
    assert slip.split('id="refund-to">')[1].startswith("REFUNDED, Rehema")
    number = re.search(r"RFD-\d+", slip)[0]
    settled = cashier.get(url).text
    assert 'id="refunded">−KES 70.00<' in settled and 'id="overpaid"' not in settled and number in settled
    takings = cashier.get(f"/t/{facility.slug}/billing/takings").text
    out = takings.split('class="list compact takings-refunds')[1].split("</table>")[0]
    assert number in out and "REFUNDED, Rehema" in out and "−KES 70.00" in out
    total, refunded, net = (Decimal(re.search(rf'id="takings-{k}">KES ([\d,.]+)<', takings)[1].replace(",", ""))
                            for k in ("total", "refunded", "net"))
    assert net == total - refunded and refunded >= Decimal("70.00")
    outsider = signed_in("billing_clerk", other_facility.slug)
    assert outsider.get(given.headers["location"].split("?")[0]).status_code == 403


@pytest.mark.parametrize(("method", "code", "pays_both"), [
    ("mobile_money", "QK7TWICE01", "This one transfer pays both"),
    ("card", "RRN402117583920", "This one card payment pays both")])
def test_a_transaction_code_already_receipted_is_asked_about_then_recorded_when_one_payment_pays_both(
        db, signed_in, facility, other_facility, method, code, pays_both):
    """The same M-Pesa code, or a card terminal's reference, on two receipts counted one payment twice at cash-up.
    Typed again at this facility, the form asks, naming the earlier receipt, and writes nothing; ticked (one
    payment paying two invoices), it is recorded. Another facility's receipt with the same code is not this
    facility's and asks nothing."""
    elsewhere = billed_for_a_blood_count(db, other_facility, "Elsewhere", "Esther")
    there = signed_in("billing_clerk", other_facility.slug)
    there_url = f"/t/{other_facility.slug}/billing/invoices/{elsewhere['id']}"
    assert there.post(f"{there_url}/payments", data={"method": method, "amount": "100", "reference": code,
                                                     "_csrf_token": csrf(there.get(there_url).text)},
                      follow_redirects=False).status_code == 303
    first, second = (billed_for_a_blood_count(db, facility, family, "Twice") for family in ("Mwangi", "Otieno"))
    clerk = signed_in("billing_clerk", facility.slug)
    base = f"/t/{facility.slug}/billing/invoices"
    paid = clerk.post(f"{base}/{first['id']}/payments", data={
        "method": method, "amount": "200", "reference": code,
        "_csrf_token": csrf(clerk.get(f"{base}/{first['id']}").text)}, follow_redirects=False)
    assert paid.status_code == 303  # the other facility's receipt with the code is not this one's
    receipt = re.search(r"RCT-\d+", clerk.get(paid.headers["location"]).text)[0]
    with db.tenant(facility.slug) as conn:
        payments = conn.execute(sa.text("SELECT count(*) FROM payment")).scalar_one()
    form = {"method": method, "amount": "250", "reference": code.lower(),
            "_csrf_token": csrf(clerk.get(f"{base}/{second['id']}").text)}
    asked = clerk.post(f"{base}/{second['id']}/payments", data=form)
    assert asked.status_code == 422
    said = asked.text.split('id="transaction_code_reused_confirmed-error">')[1].split("</p>")[0]
    assert f"is already on receipt {receipt} of " in said and "for KES 200.00" in said
    assert 'name="transaction_code_reused_confirmed" value="yes"' in asked.text
    assert pays_both in asked.text
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM payment")).scalar_one() == payments
    both = clerk.post(f"{base}/{second['id']}/payments", data={**form, "transaction_code_reused_confirmed": "yes"},
                      follow_redirects=False)
    assert both.status_code == 303, both.text
