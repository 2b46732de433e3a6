"""The financial API over HTTP, through the real app, authentication and permission guard: the issue's
acceptance cases as a client sees them, the revenue cycle end to end, structured refusals (never a
500), and every route tried from another facility and with a guessed id."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from decimal import Decimal

import pytest

from appliance.layers.financial import service as financial_service
from appliance.substrate.principal import Principal
from tests.layers.financial.conftest import FULL_BLOOD_COUNT, GLUCOSE, MALARIA_SMEAR

API = "/api/t/{tenant}"


@pytest.fixture
def doctor(token_client, facility):
    return token_client(facility.slug, role="clinician")


@pytest.fixture
def clerk_api(token_client, facility):
    return token_client(facility.slug, role="billing_clerk")


def today(facility) -> dt.date:
    return dt.datetime.now(zoneinfo.ZoneInfo(facility.timezone)).date()


def admit_patient(doctor, tenant: str, **extra) -> tuple[str, str]:
    """A registered patient with an outpatient encounter in progress: (patient_id, encounter_id)."""
    base = API.format(tenant=tenant)
    patient = doctor.post(f"{base}/patients", json={
        "family_name": "Wanjiru", "given_names": "Grace", "birth_date": "1985-02-11", "sex": "female",
        "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}], **extra})
    assert patient.status_code == 201, patient.text
    encounter = doctor.post(f"{base}/patients/{patient.json()['id']}/encounters",
                            json={"encounter_class": "outpatient", "status": "in_progress", "reason": "fever"})
    assert encounter.status_code == 201, encounter.text
    return patient.json()["id"], encounter.json()["id"]


def place(doctor, tenant: str, patient_id: str, encounter_id: str, code: str) -> dict:
    response = doctor.post(f"{API.format(tenant=tenant)}/patients/{patient_id}/orders",
                           json={"code": code, "encounter_id": encounter_id})
    assert response.status_code == 201, response.text
    return response.json()


def account_of(clerk_api, tenant: str, patient_id: str) -> dict:
    [found] = clerk_api.get(f"{API.format(tenant=tenant)}/billing/accounts", params={"patient_id": patient_id}).json()
    return found


def test_a_lab_order_through_the_api_is_charged_and_on_the_day_s_variance(doctor, signed_in, facility):
    patient_id, encounter_id = admit_patient(doctor, facility.slug)
    placed = place(doctor, facility.slug, patient_id, encounter_id, FULL_BLOOD_COUNT)
    clerk = signed_in("billing_clerk", facility.slug)  # a browser session may read the API
    variance = clerk.get(f"{API.format(tenant=facility.slug)}/billing/variance",
                         params={"day": today(facility).isoformat()})
    assert variance.status_code == 200, variance.text
    lab = next(d for d in variance.json()["departments"] if d["department"] == "LAB")
    [line] = [e for e in lab["entries"]["same_day"] if e["entry_id"] == placed["id"]]
    assert line["amount"] == "450.00" and line["charge_id"] is not None
    account = account_of(clerk, facility.slug, patient_id)
    assert account["charged"] == "450.00" and account["encounter_id"] == encounter_id


def test_an_order_whose_charge_cannot_be_written_is_not_saved_either(doctor, db, facility):
    patient_id, encounter_id = admit_patient(doctor, facility.slug)
    schema = f"t_{facility.slug}"
    with db.control() as conn:
        conn.exec_driver_sql(f'ALTER TABLE "{schema}".charge ADD CONSTRAINT test_refuse_all CHECK (false) NOT VALID')
    try:
        refused = doctor.post(f"{API.format(tenant=facility.slug)}/patients/{patient_id}/orders",
                              json={"code": FULL_BLOOD_COUNT, "encounter_id": encounter_id})
    finally:
        with db.control() as conn:
            conn.exec_driver_sql(f'ALTER TABLE "{schema}".charge DROP CONSTRAINT test_refuse_all')
    assert 400 <= refused.status_code < 500 and "detail" in refused.json()
    orders = doctor.get(f"{API.format(tenant=facility.slug)}/patients/{patient_id}/orders")
    assert orders.status_code == 200 and orders.json() == []


def test_entered_in_error_credits_the_charge_and_the_draft_invoice_follows(doctor, clerk_api, facility):
    base = API.format(tenant=facility.slug)
    patient_id, encounter_id = admit_patient(doctor, facility.slug)
    blood_count = place(doctor, facility.slug, patient_id, encounter_id, FULL_BLOOD_COUNT)
    place(doctor, facility.slug, patient_id, encounter_id, MALARIA_SMEAR)
    account = account_of(clerk_api, facility.slug, patient_id)
    draft = clerk_api.post(f"{base}/billing/accounts/{account['id']}/invoices")
    assert draft.status_code == 200, draft.text
    assert draft.json()["total"] == "650.50" and draft.json()["status"] == "draft"
    retracted = doctor.post(f"{base}/patients/{patient_id}/entries/{blood_count['id']}/entered-in-error",
                            json={"reason": "ordered on the wrong patient"})
    assert retracted.status_code == 200, retracted.text
    after = clerk_api.get(f"{base}/billing/invoices/{draft.json()['id']}").json()
    assert after["total"] == "200.50"
    assert sorted(line["amount"] for line in after["lines"]) == ["-450.00", "200.50", "450.00"]


def test_an_unpriced_item_is_on_the_worklist_and_in_the_variance(doctor, clerk_api, facility):
    base = API.format(tenant=facility.slug)
    patient_id, encounter_id = admit_patient(doctor, facility.slug)
    placed = place(doctor, facility.slug, patient_id, encounter_id, GLUCOSE)
    worklist = clerk_api.get(f"{base}/billing/worklist").json()
    [item] = [c for c in worklist if c["source_entry_id"] == placed["id"]]
    assert item["status"] == "unpriced" and item["amount"] is None and GLUCOSE in item["unpriced_reason"]
    variance = clerk_api.get(f"{base}/billing/variance", params={"day": today(facility).isoformat()}).json()
    lab = next(d for d in variance["departments"] if d["department"] == "LAB")
    assert placed["id"] in {e["entry_id"] for e in lab["entries"]["unpriced"]}
    assert lab["unpriced"] >= 1 and variance["totals"]["unpriced"] >= 1


def test_the_revenue_cycle_end_to_end(doctor, clerk_api, facility, db):
    """Unpriced blocks finalising; priced, discounted with reason and approver, finalised, paid in
    part by mobile money and in full by cash, with receipts; balance and aging reconcile."""
    base = API.format(tenant=facility.slug)
    patient_id, encounter_id = admit_patient(doctor, facility.slug)
    place(doctor, facility.slug, patient_id, encounter_id, FULL_BLOOD_COUNT)
    unpriced = place(doctor, facility.slug, patient_id, encounter_id, GLUCOSE)
    account = account_of(clerk_api, facility.slug, patient_id)
    invoice = clerk_api.post(f"{base}/billing/accounts/{account['id']}/invoices").json()
    blocked = clerk_api.post(f"{base}/billing/invoices/{invoice['id']}/finalise")
    assert blocked.status_code == 409 and "no price" in blocked.json()["detail"]
    [charge] = [c for c in clerk_api.get(f"{base}/billing/worklist").json() if c["source_entry_id"] == unpriced["id"]]
    assert clerk_api.post(f"{base}/billing/charges/{charge['id']}/price",
                          json={"unit_price": "abc", "reason": "x"}).status_code == 422
    priced = clerk_api.post(f"{base}/billing/charges/{charge['id']}/price",
                            json={"unit_price": "150.00", "reason": "glucose added to the price list"})
    assert priced.status_code == 200 and priced.json()["amount"] == "150.00"
    no_approver = clerk_api.post(f"{base}/billing/invoices/{invoice['id']}/adjustments",
                                 json={"kind": "discount", "percent": "10", "reason": "staff dependant"})
    assert no_approver.status_code == 422
    discounted = clerk_api.post(f"{base}/billing/invoices/{invoice['id']}/adjustments", json={
        "kind": "discount", "percent": "10", "reason": "staff dependant", "approved_by": "Dr A. Mwangi, MS"})
    assert discounted.status_code == 200 and discounted.json()["total"] == "540.00"
    final = clerk_api.post(f"{base}/billing/invoices/{invoice['id']}/finalise")
    assert final.status_code == 200 and final.json()["status"] == "final" and final.json()["outstanding"] == "540.00"
    pay = f"{base}/billing/invoices/{invoice['id']}/payments"
    assert clerk_api.post(pay, json={"method": "mobile_money", "amount": "200"}).status_code == 422  # no reference
    assert clerk_api.post(pay, json={"method": "cash", "amount": "0.001"}).status_code == 422  # finer than a cent
    over = clerk_api.post(pay, json={"method": "card", "amount": "540.01", "reference": "CARD-OVER"})
    assert over.status_code == 422 and "only cash can be more" in over.json()["detail"]  # no change by card
    first = clerk_api.post(pay, json={"method": "mobile_money", "amount": "200", "reference": "QK7ABC123"})
    assert first.status_code == 201 and first.json()["outstanding"] == "340.00"
    # What the patient sees of it, in their portal: the bill, what was paid and what is still owed.
    own = Principal(account_id=uuid.uuid4(), kind="patient", display_name="The patient", role="patient")
    with db.tenant(facility.slug) as conn:
        [bill] = financial_service.bills_of_patient(conn, own, uuid.UUID(patient_id))
    assert (bill["number"], bill["payer"]) == (final.json()["number"], "Self-pay")
    assert (str(bill["total"]), str(bill["paid"]), str(bill["outstanding"])) == ("540.00", "200.00", "340.00")
    second = clerk_api.post(pay, json={"method": "cash", "amount": "340"})
    assert second.status_code == 201 and second.json()["receipt_number"].startswith("RCT-")
    receipt = clerk_api.get(f"{base}/billing/payments/{second.json()['id']}")
    assert receipt.status_code == 200 and receipt.json()["outstanding"] == "0.00"
    balance = clerk_api.get(f"{base}/billing/patients/{patient_id}/balance").json()
    assert (balance["invoiced"], balance["paid"], balance["outstanding"]) == ("540.00", "540.00", "0.00")
    aging = clerk_api.get(f"{base}/billing/aging").json()
    assert Decimal(aging["receivable"]) == sum(Decimal(v) for v in aging["buckets"].values())


def test_cash_above_what_is_owed_pays_what_is_owed_and_says_the_change(doctor, clerk_api, facility):
    """A cashier handed 5,000 for a 4,200 balance records 4,200 paid and gives back 800: the receipt says
    what was tendered and the change; once paid, more cash is refused (nothing is owed)."""
    base = API.format(tenant=facility.slug)
    patient_id, encounter_id = admit_patient(doctor, facility.slug)
    place(doctor, facility.slug, patient_id, encounter_id, FULL_BLOOD_COUNT)
    account = account_of(clerk_api, facility.slug, patient_id)
    invoice = clerk_api.post(f"{base}/billing/accounts/{account['id']}/invoices").json()
    clerk_api.post(f"{base}/billing/invoices/{invoice['id']}/finalise")
    pay = f"{base}/billing/invoices/{invoice['id']}/payments"
    exact = clerk_api.post(pay, json={"method": "cash", "amount": "50"}).json()
    assert (exact["amount"], exact["tendered"], exact["change"], exact["outstanding"]) == (
        "50.00", "50.00", "0.00", "400.00")
    paid = clerk_api.post(pay, json={"method": "cash", "amount": "1000"})
    assert paid.status_code == 201, paid.text
    receipt = clerk_api.get(f"{base}/billing/payments/{paid.json()['id']}").json()
    assert (receipt["amount"], receipt["tendered"], receipt["change"], receipt["outstanding"]) == (
        "400.00", "1000.00", "600.00", "0.00")
    balance = clerk_api.get(f"{base}/billing/patients/{patient_id}/balance").json()
    assert (balance["paid"], balance["outstanding"]) == ("450.00", "0.00")  # the change is not takings
    settled = clerk_api.post(pay, json={"method": "cash", "amount": "10"})
    assert settled.status_code == 422 and settled.json()["detail"] == "nothing is outstanding on this invoice"


@pytest.mark.parametrize(("method", "code", "other_method", "called"), [
    ("mobile_money", "RB4APITWICE", "card", "transaction code"),
    ("card", "RRN402117583921", "mobile_money", "card reference")])
def test_a_transaction_code_already_receipted_is_refused_until_confirmed(doctor, clerk_api, token_client, facility,
                                                                         other_facility, method, code, other_method,
                                                                         called):
    """The API asks as the form does: a mobile-money code or a card terminal's reference already on a receipt here is
    a 422 naming that receipt, with nothing written, until `transaction_code_reused_confirmed` says one payment pays
    both invoices. The same characters by the other method are another payment and ask nothing; another facility's
    clerk is refused this facility's invoice, and finds no invoice of a guessed id at their own."""
    base = API.format(tenant=facility.slug)
    invoices = []
    for _ in range(2):
        patient_id, encounter_id = admit_patient(doctor, facility.slug)
        place(doctor, facility.slug, patient_id, encounter_id, FULL_BLOOD_COUNT)
        invoice = clerk_api.post(f"{base}/billing/accounts/{account_of(clerk_api, facility.slug, patient_id)['id']}"
                                 "/invoices").json()
        clerk_api.post(f"{base}/billing/invoices/{invoice['id']}/finalise")
        invoices.append(f"{base}/billing/invoices/{invoice['id']}/payments")
    first = clerk_api.post(invoices[0], json={"method": method, "amount": "100", "reference": code})
    assert first.status_code == 201, first.text
    by_the_other = clerk_api.post(invoices[0], json={"method": other_method, "amount": "50", "reference": code})
    assert by_the_other.status_code == 201, by_the_other.text
    again = clerk_api.post(invoices[1], json={"method": method, "amount": "100", "reference": f" {code.lower()} "})
    assert again.status_code == 422
    problem = again.json()
    assert problem["field"] == "transaction_code_reused_confirmed"
    assert (problem["earlier_receipt"], problem["earlier_amount"]) == (first.json()["receipt_number"], "100.00")
    assert problem["detail"].startswith(f"{called} {code.lower()} is already on receipt "
                                        f"{first.json()['receipt_number']} of ")
    unpaid = clerk_api.get(invoices[1].rsplit("/", 1)[0]).json()
    assert unpaid["outstanding"] == "450.00"  # the refusal wrote nothing
    confirmed = {"method": method, "amount": "100", "reference": code, "transaction_code_reused_confirmed": True}
    outsider = token_client(other_facility.slug, role="billing_clerk")
    assert outsider.post(invoices[1], json=confirmed).status_code == 403
    guessed = f"{API.format(tenant=other_facility.slug)}/billing/invoices/{uuid.uuid4()}/payments"
    assert outsider.post(guessed, json=confirmed).status_code == 404
    both = clerk_api.post(invoices[1], json=confirmed)
    assert both.status_code == 201, both.text


def test_a_discount_capped_at_what_was_left_says_so(doctor, clerk_api, facility):
    """An amount above the subtotal takes the subtotal (an invoice never goes below zero), and says it was capped
    and at what, instead of showing a 500 discount that took only 450."""
    base = API.format(tenant=facility.slug)
    patient_id, encounter_id = admit_patient(doctor, facility.slug)
    place(doctor, facility.slug, patient_id, encounter_id, FULL_BLOOD_COUNT)
    invoice = clerk_api.post(f"{base}/billing/accounts/{account_of(clerk_api, facility.slug, patient_id)['id']}"
                             "/invoices").json()
    url = f"{base}/billing/invoices/{invoice['id']}/adjustments"
    first = clerk_api.post(url, json={"kind": "discount", "percent": "10", "reason": "staff", "approved_by": "HR"})
    [asked] = first.json()["adjustment_list"]
    assert (asked["applied"], asked["asked"], asked["capped"]) == ("45.00", "45.00", False)
    capped = clerk_api.post(url, json={"kind": "exemption", "amount": "500", "reason": "waiver", "approved_by": "MS"})
    assert capped.status_code == 200 and capped.json()["total"] == "0.00"
    [_, waiver] = capped.json()["adjustment_list"]
    assert (waiver["applied"], waiver["asked"], waiver["capped"]) == ("405.00", "500.00", True)


def test_the_days_takings_over_the_api(clerk_api, facility, victim_ids):
    base = API.format(tenant=facility.slug)
    found = clerk_api.get(f"{base}/billing/takings")
    assert found.status_code == 200, found.text
    takings = found.json()
    assert takings["day"] == today(facility).isoformat() and takings["payments"]
    assert str(victim_ids["payment"]) in {p["id"] for p in takings["payments"]}
    assert Decimal(takings["total"]) == sum(Decimal(p["amount"]) for p in takings["payments"])
    assert Decimal(takings["total"]) == sum(Decimal(m["amount"]) for m in takings["by_method"].values())
    assert Decimal(takings["total"]) == sum(Decimal(c["amount"]) for c in takings["by_person"])
    quiet = clerk_api.get(f"{base}/billing/takings", params={"day": "2001-01-01"}).json()
    assert (quiet["total"], quiet["payments"], quiet["credits"]) == ("0", [], [])
    bad = clerk_api.get(f"{base}/billing/takings", params={"day": "31/12/2026"})
    assert bad.status_code == 422 and "day" in bad.json()["detail"]


def test_an_insurer_invoice_is_claimed_with_the_records_diagnoses(doctor, clerk_api, facility):
    base = API.format(tenant=facility.slug)
    patient_id, encounter_id = admit_patient(doctor, facility.slug)
    covered = clerk_api.post(f"{base}/billing/patients/{patient_id}/coverage", json={
        "payer_code": "NHIF", "member_number": "NH-778899", "valid_from": "2024-01-01"})
    assert covered.status_code == 201, covered.text
    assert doctor.post(f"{base}/patients/{patient_id}/problems",
                       json={"code": "B54", "encounter_id": encounter_id}).status_code == 201
    place(doctor, facility.slug, patient_id, encounter_id, MALARIA_SMEAR)
    account = account_of(clerk_api, facility.slug, patient_id)
    assert account["payer_code"] == "NHIF"
    invoice = clerk_api.post(f"{base}/billing/accounts/{account['id']}/invoices").json()
    assert invoice["total"] == "150.00"  # the national insurance price list
    clerk_api.post(f"{base}/billing/invoices/{invoice['id']}/finalise")
    claimed = clerk_api.post(f"{base}/billing/invoices/{invoice['id']}/claim")
    assert claimed.status_code == 201, claimed.text
    claim = claimed.json()
    assert claim["diagnosis_codes"] == ["B54"] and claim["member_number"] == "NH-778899"
    status = f"{base}/billing/claims/{claim['id']}/status"
    assert clerk_api.post(status, json={"status": "rejected"}).status_code == 422  # the insurer's reason
    assert clerk_api.post(status, json={"status": "paid"}).status_code == 409
    assert clerk_api.post(status, json={"status": "rejected", "reason": "member number unreadable"}).json()[
        "rejection_reason"] == "member number unreadable"
    assert clerk_api.post(status, json={"status": "submitted"}).status_code == 200
    assert clerk_api.post(status, json={"status": "accepted"}).json()["status"] == "accepted"
    owed = clerk_api.get(f"{base}/billing/aging").json()  # the insurer by its name, beside its code
    assert owed["by_payer"]["NHIF"]["0-30"] != "0" and owed["payer_names"]["NHIF"] == "National Health Insurance Fund"
    remitted = clerk_api.post(f"{base}/billing/invoices/{invoice['id']}/payments",
                              json={"method": "insurer_remittance", "amount": "150", "reference": "NHIF-RA-2026-11"})
    assert remitted.status_code == 201
    assert clerk_api.get(f"{base}/billing/claims/{claim['id']}").json()["status"] == "paid"


def test_insurance_shown_at_the_cashier_re_prices_the_open_account(doctor, clerk_api, facility):
    base = API.format(tenant=facility.slug)
    patient_id, encounter_id = admit_patient(doctor, facility.slug)
    place(doctor, facility.slug, patient_id, encounter_id, FULL_BLOOD_COUNT)
    assert account_of(clerk_api, facility.slug, patient_id)["payer_code"] is None
    covered = clerk_api.post(f"{base}/billing/patients/{patient_id}/coverage", json={
        "payer_code": "NHIF", "member_number": "NH-AT-CASHIER", "valid_from": "2024-01-01"})
    assert covered.status_code == 201, covered.text
    [switched] = covered.json()["accounts"]
    assert {k: switched[k] for k in ("outcome", "payer_code", "rebilled", "amount_before", "amount_after")} == {
        "outcome": "switched", "payer_code": "NHIF", "rebilled": 1, "amount_before": "450.00", "amount_after": "380.00"}
    assert "(KES 450.00 → KES 380.00)" in switched["summary"]
    account = account_of(clerk_api, facility.slug, patient_id)
    assert account["payer_code"] == "NHIF" and Decimal(account["charged"]) == Decimal("380.00")


def test_bad_input_is_a_structured_refusal_never_a_500(clerk_api, facility):
    base = API.format(tenant=facility.slug)
    guessed = uuid.uuid4()
    for response in (
        clerk_api.get(f"{base}/billing/variance", params={"day": "yesterday"}),
        clerk_api.get(f"{base}/billing/variance"),
        clerk_api.post(f"{base}/billing/invoices/{guessed}/payments", json={"method": "cheque", "amount": "1"}),
        clerk_api.post(f"{base}/billing/patients/{guessed}/coverage", json={"payer_code": "nope!"}),
        clerk_api.post(f"{base}/billing/charges/{guessed}/price", json={"unit_price": "-1", "reason": "why"}),
    ):
        assert response.status_code in (400, 422), response.text
        assert response.json()["detail"]


def test_a_clinician_cannot_work_the_billing(doctor, facility):
    assert doctor.get(f"{API.format(tenant=facility.slug)}/billing/worklist").status_code == 403


def test_cookie_sessions_cannot_write_through_the_api(signed_in, facility):
    clerk = signed_in("billing_clerk", facility.slug)
    assert clerk.post(f"{API.format(tenant=facility.slug)}/billing/bed-days/accrue").status_code == 401


ROUTES = [
    ("GET", "/billing/worklist", None), ("GET", "/billing/variance?day=2026-01-05", None),
    ("POST", "/billing/bed-days/accrue", None), ("GET", "/billing/accounts", None),
    ("GET", "/billing/accounts/{account}", None), ("POST", "/billing/accounts/{account}/invoices", None),
    ("GET", "/billing/invoices/{invoice}", None),
    ("POST", "/billing/invoices/{invoice}/adjustments",
     {"kind": "discount", "amount": "1", "reason": "probe", "approved_by": "nobody"}),
    ("POST", "/billing/invoices/{invoice}/finalise", None),
    ("POST", "/billing/invoices/{invoice}/payments", {"method": "cash", "amount": "1"}),
    ("GET", "/billing/payments/{payment}", None),
    ("POST", "/billing/charges/{charge}/price", {"unit_price": "1", "reason": "probe"}),
    ("GET", "/billing/patients/{patient}/coverage", None),
    ("POST", "/billing/patients/{patient}/coverage", {"payer_code": "NHIF", "member_number": "X",
                                                      "valid_from": "2024-01-01"}),
    ("GET", "/billing/patients/{patient}/balance", None),
    ("POST", "/billing/invoices/{invoice}/claim", None),
    ("GET", "/billing/claims/{claim}", None), ("POST", "/billing/claims/{claim}/status", {"status": "accepted"}),
    ("GET", "/billing/aging", None), ("GET", "/billing/takings", None),
]
WITH_IDS = [r for r in ROUTES if "{" in r[1]]


@pytest.fixture(scope="module")
def victim_ids(db, facility, clinician, clerk) -> dict:
    """Real ids of another facility's patient, account, invoice, charge, payment and claim."""
    from appliance.layers.clinical import service as clinical
    from appliance.layers.clinical.schemas import ConditionIn
    from appliance.layers.financial import service
    from tests.layers.financial.conftest import order, visit

    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        service.add_coverage(conn, clerk, patient["id"], payer_code="NHIF", member_number="V-1",
                             valid_from=dt.date(2020, 1, 1), valid_to=None)
        clinical.add_condition(conn, clinician, patient["id"], ConditionIn(code="B54", encounter_id=encounter["id"]))
        placed = order(conn, clinician, patient, encounter, FULL_BLOOD_COUNT)
        unpriced = order(conn, clinician, patient, None, GLUCOSE)
        account = service.list_accounts(conn, clerk, patient_id=patient["id"])
        by_encounter = next(a for a in account if a["encounter_id"] == encounter["id"])
        invoice = service.finalise_invoice(conn, clerk, service.draft_invoice(conn, clerk, by_encounter["id"])["id"])
        receipt = service.record_payment(conn, clerk, invoice["id"], method="cash", amount=Decimal("1"))
        claim = service.create_claim(conn, clerk, invoice["id"])
        charge = next(c for c in service.unpriced_charges(conn, clerk) if c["source_entry_id"] == unpriced["id"])
    assert placed
    return {"patient": patient["id"], "account": by_encounter["id"], "invoice": invoice["id"], "charge": charge["id"],
            "payment": receipt["id"], "claim": claim["id"]}


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_another_facilitys_credentials_are_refused_on_every_route(token_client, facility, other_facility,
                                                                   victim_ids, method, path, body):
    outsider = token_client(other_facility.slug, role="billing_clerk")
    url = API.format(tenant=facility.slug) + path.format(**victim_ids)
    response = outsider.request(method, url, json=body)
    assert response.status_code == 403, response.text


@pytest.mark.parametrize(("method", "path", "body"), WITH_IDS, ids=[f"{m} {p}" for m, p, _ in WITH_IDS])
def test_another_facilitys_ids_are_not_found_from_here(token_client, other_facility, victim_ids, method, path, body):
    """A clerk of the other facility, in their own facility, with this facility's real ids (or a guess)."""
    outsider = token_client(other_facility.slug, role="billing_clerk")
    url = API.format(tenant=other_facility.slug) + path.format(**victim_ids)
    response = outsider.request(method, url, json=body)
    assert response.status_code == 404, response.text
    guessed = API.format(tenant=other_facility.slug) + path.format(**dict.fromkeys(victim_ids, uuid.uuid4()))
    assert outsider.request(method, guessed, json=body).status_code == 404
