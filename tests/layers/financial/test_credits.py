"""Correcting a final invoice over HTTP: credit notes (whole lines and a wrong price), what they may not
exceed, and the balance, aging and takings reading them; an insurer's shortfall written off or billed to the
patient; refusals structured and writing nothing; every
route tried from another facility and with guessed ids."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from decimal import Decimal

import pytest
import sqlalchemy as sa

from appliance.layers.financial import reports, service
from tests.layers.financial.conftest import FULL_BLOOD_COUNT, MALARIA_SMEAR, order, visit

API = "/api/t/{tenant}/billing"


@pytest.fixture
def clerk_api(token_client, facility):
    return token_client(facility.slug, role="billing_clerk")


def final_invoice(db, facility, clinician, clerk, *codes: str) -> dict:
    """A patient seen today with `codes` ordered, their account's invoice finalised (self-pay prices)."""
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        for code in codes:
            order(conn, clinician, patient, encounter, code)
        [account] = service.list_accounts(conn, clerk, patient_id=patient["id"])
        return service.finalise_invoice(conn, clerk, service.draft_invoice(conn, clerk, account["id"])["id"])


def _audited(db, facility, event_type: str) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM audit_event WHERE event_type = :t"),
                            {"t": event_type}).scalar_one()


def _credits(db, facility, invoice_id) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM invoice_credit WHERE invoice_id = :i"),
                            {"i": invoice_id}).scalar_one()


def _refunds(db, facility, invoice_id) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM refund WHERE invoice_id = :i"),
                            {"i": invoice_id}).scalar_one()


def test_a_credit_note_corrects_a_final_invoice_and_the_balance_and_aging_follow(db, facility, clinician, clerk,
                                                                                  clerk_api):
    invoice = final_invoice(db, facility, clinician, clerk, FULL_BLOOD_COUNT, MALARIA_SMEAR)
    base = API.format(tenant=facility.slug)
    issued_before = _audited(db, facility, "record.invoice_credit.create")
    lines = {ln["description"]: ln["id"] for ln in clerk_api.get(f"{base}/invoices/{invoice['id']}").json()["lines"]}
    smear, blood_count = lines["Malaria smear"], lines["Full blood count"]
    url = f"{base}/invoices/{invoice['id']}/credit-notes"

    # Refusals say why and write nothing.
    for body, said in (
        ({"lines": [{"line_id": str(smear), "amount": "200.51"}], "reason": "wrong price"}, "at most KES 200.50"),
        ({"lines": [{"line_id": str(uuid.uuid4())}], "reason": "billed in error"}, "is not a line of invoice"),
        ({"lines": [{"line_id": str(smear)}, {"line_id": str(smear)}], "reason": "twice"}, "credited once"),
        ({"lines": [{"line_id": str(smear), "amount": "0.001"}], "reason": "finer than a cent"}, "smallest unit"),
        ({"lines": [{"line_id": str(smear)}], "reason": " "}, "reason"),
        ({"lines": [], "reason": "nothing chosen"}, "lines"),
    ):
        refused = clerk_api.post(url, json=body)
        assert refused.status_code == 422, refused.text
        assert said in refused.json()["detail"], refused.json()
    assert _credits(db, facility, invoice["id"]) == 0

    # A line billed in error, whole; then part of another (the price should have been 380.00).
    whole = clerk_api.post(url, json={"lines": [{"line_id": str(smear)}], "reason": "smear not done: no reagent"})
    assert whole.status_code == 201, whole.text
    note = whole.json()
    assert note["number"].startswith("CN-") and note["kind"] == "credit_note" and note["amount"] == "200.50"
    assert note["invoice_number"] == invoice["number"] and note["outstanding"] == "450.00"
    assert [(ln["invoice_line_id"], ln["amount"]) for ln in note["lines"]] == [(str(smear), "200.50")]
    part = clerk_api.post(url, json={"lines": [{"line_id": str(blood_count), "amount": "70"}],
                                     "reason": "priced at self-pay; the staff rate is 380.00"})
    assert part.status_code == 201 and part.json()["outstanding"] == "380.00"
    again = clerk_api.post(url, json={"lines": [{"line_id": str(smear)}], "reason": "credited twice by mistake"})
    assert again.status_code == 422 and "credited in full already" in again.json()["detail"]

    after = clerk_api.get(f"{base}/invoices/{invoice['id']}").json()
    assert (after["total"], after["credited"], after["outstanding"]) == ("650.50", "270.50", "380.00")
    assert {ln["id"]: ln["credited"] for ln in after["lines"]} == {str(smear): "200.50", str(blood_count): "70.00"}
    assert [c["number"] for c in after["credits"]] == [note["number"], part.json()["number"]]
    balance = clerk_api.get(f"{base}/patients/{invoice['patient_id']}/balance").json()
    assert (balance["invoiced"], balance["credited"], balance["outstanding"]) == ("650.50", "270.50", "380.00")
    aging = clerk_api.get(f"{base}/aging").json()
    assert Decimal(aging["receivable"]) == sum(Decimal(v) for v in aging["buckets"].values())
    today = dt.datetime.now(zoneinfo.ZoneInfo(facility.timezone)).date()
    with db.tenant(facility.slug) as conn:
        [row] = [r for r in reports.ar_aging(conn, clerk, today)["invoices"] if r["id"] == invoice["id"]]
        assert row["outstanding"] == Decimal("380.00")
        taken = reports.takings(conn, clerk, today)
    assert {c["number"] for c in taken["credits"]} >= {note["number"], part.json()["number"]}

    # Credited beyond what is still owed, the invoice is overpaid by the difference: a refund is owed.
    assert clerk_api.post(f"{base}/invoices/{invoice['id']}/payments",
                          json={"method": "card", "amount": "300", "reference": "CARD-1"}).status_code == 201
    over = clerk_api.post(url, json={"lines": [{"line_id": str(blood_count), "amount": "100"}],
                                     "reason": "staff rate applied twice"})
    assert over.status_code == 201 and (over.json()["outstanding"], over.json()["overpaid"]) == ("0.00", "20.00")
    fetched = clerk_api.get(f"{base}/credit-notes/{note['id']}")
    assert fetched.status_code == 200 and fetched.json()["reason"] == "smear not done: no reagent"
    assert _audited(db, facility, "record.invoice_credit.create") == issued_before + 3


def test_a_draft_is_not_credited_it_follows_its_charges(db, facility, clinician, clerk, clerk_api):
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        order(conn, clinician, patient, encounter, FULL_BLOOD_COUNT)
        [account] = service.list_accounts(conn, clerk, patient_id=patient["id"])
        draft = service.draft_invoice(conn, clerk, account["id"])
    refused = clerk_api.post(f"{API.format(tenant=facility.slug)}/invoices/{draft['id']}/credit-notes",
                             json={"lines": [{"line_id": str(uuid.uuid4())}], "reason": "billed in error"})
    assert refused.status_code == 409 and "credit the charge instead" in refused.json()["detail"]


@pytest.fixture(scope="module")
def victim(db, facility, clinician, clerk) -> dict:
    """This facility's final invoice, paid, one of its lines, a credit note on it and the refund it made owed."""
    from appliance.layers.financial import credits, refunds

    invoice = final_invoice(db, facility, clinician, clerk, FULL_BLOOD_COUNT)
    with db.tenant(facility.slug) as conn:
        line_id = conn.execute(sa.text("SELECT id FROM invoice_line WHERE invoice_id = :i"),
                               {"i": invoice["id"]}).scalar_one()
        service.record_payment(conn, clerk, invoice["id"], method="cash", amount=Decimal("450"))
        note = credits.issue_credit_note(conn, clerk, invoice["id"], lines=[(line_id, Decimal("20"))],
                                         reason="probe target")
        given_back = refunds.record_refund(conn, clerk, invoice["id"], method="cash", amount=Decimal("10"),
                                           reason="probe target")
    return {"invoice": invoice["id"], "line": line_id, "credit": note["id"], "refund": given_back["id"]}


def _probes(ids: dict) -> list[tuple[str, str, dict | None]]:
    return [("POST", f"/invoices/{ids['invoice']}/credit-notes",
             {"lines": [{"line_id": str(ids["line"])}], "reason": "probe from elsewhere"}),
            ("POST", f"/invoices/{ids['invoice']}/write-off", {"reason": "probe from elsewhere"}),
            ("POST", f"/invoices/{ids['invoice']}/transfer-to-patient", {"reason": "probe from elsewhere"}),
            ("GET", f"/credit-notes/{ids['credit']}", None),
            ("POST", f"/invoices/{ids['invoice']}/refunds", {"method": "cash", "amount": "1", "reason": "probe"}),
            ("GET", f"/refunds/{ids['refund']}", None)]


def test_another_facility_is_refused_and_finds_none_of_these_ids(db, token_client, facility, other_facility, victim):
    outsider = token_client(other_facility.slug, role="billing_clerk")
    for method, path, body in _probes(victim):
        theirs = outsider.request(method, API.format(tenant=facility.slug) + path, json=body)
        assert theirs.status_code == 403, theirs.text
        here = outsider.request(method, API.format(tenant=other_facility.slug) + path, json=body)
        assert here.status_code == 404, here.text
    guessed = dict.fromkeys(victim, uuid.uuid4())
    for method, path, body in _probes(guessed):
        assert outsider.request(method, API.format(tenant=other_facility.slug) + path, json=body).status_code == 404
    assert _credits(db, facility, victim["invoice"]) == 1 and _refunds(db, facility, victim["invoice"]) == 1
    doctor = token_client(facility.slug, role="clinician")
    assert doctor.get(API.format(tenant=facility.slug) + f"/credit-notes/{victim['credit']}").status_code == 403
    assert doctor.get(API.format(tenant=facility.slug) + f"/refunds/{victim['refund']}").status_code == 403


def insurer_invoice(db, facility, clinician, clerk) -> dict:
    """A patient insured by NHIF seen today for a full blood count (380.00 on its list), the invoice final."""
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        service.add_coverage(conn, clerk, patient["id"], payer_code="NHIF", member_number="NH-SHORT",
                             valid_from=dt.date(2020, 1, 1), valid_to=None)
        order(conn, clinician, patient, encounter, FULL_BLOOD_COUNT)
        [account] = service.list_accounts(conn, clerk, patient_id=patient["id"])
        return service.finalise_invoice(conn, clerk, service.draft_invoice(conn, clerk, account["id"])["id"])


def test_an_insurers_shortfall_is_written_off_or_billed_to_the_patient(db, facility, clinician, clerk, clerk_api,
                                                                        token_client):
    """NHIF pays 300 of 380: 30 is written off (tariff cap), the other 50 billed to the patient, who pays it."""
    invoice = insurer_invoice(db, facility, clinician, clerk)
    base = API.format(tenant=facility.slug)
    url = f"{base}/invoices/{invoice['id']}"
    assert clerk_api.post(f"{url}/payments", json={"method": "insurer_remittance", "amount": "300",
                                                   "reference": "NHIF-RA-77"}).status_code == 201
    for body, said in (({"amount": "80.01", "reason": "tariff cap"}, "the shortfall is KES 80.00"),
                       ({"amount": "0.001", "reason": "tariff cap"}, "smallest unit"),
                       ({"reason": "  "}, "reason")):
        refused = clerk_api.post(f"{url}/write-off", json=body)
        assert refused.status_code == 422 and said in refused.json()["detail"], refused.text
    assert _credits(db, facility, invoice["id"]) == 0
    # Writing off has its own permission: a client allowed to transfer only may not.
    transfers_only = token_client(facility.slug, permissions=["financial.invoice.transfer"])
    assert transfers_only.post(f"{url}/write-off", json={"amount": "30", "reason": "tariff cap"}).status_code == 403

    written = clerk_api.post(f"{url}/write-off", json={"amount": "30", "reason": "NHIF tariff cap for FBC"})
    assert written.status_code == 201, written.text
    assert written.json()["number"].startswith("WO-") and written.json()["outstanding"] == "50.00"
    moved = clerk_api.post(f"{url}/transfer-to-patient", json={"reason": "item not covered by the member's plan"})
    assert moved.status_code == 201, moved.text
    transfer = moved.json()
    assert transfer["number"].startswith("TR-") and transfer["amount"] == "50.00" and transfer["outstanding"] == "0.00"
    patients = clerk_api.get(f"{base}/invoices/{transfer['transfer_invoice_id']}").json()
    assert (patients["payer_code"], patients["status"], patients["total"], patients["outstanding"]) == (
        None, "final", "50.00", "50.00")
    assert patients["transferred_from"] == str(invoice["id"]) and patients["lines"] == []
    nothing_left = clerk_api.post(f"{url}/write-off", json={"reason": "again"})
    assert nothing_left.status_code == 409 and "nothing is outstanding" in nothing_left.json()["detail"]

    balance = clerk_api.get(f"{base}/patients/{invoice['patient_id']}/balance").json()
    assert {k: balance[k] for k in ("invoiced", "credited", "paid", "outstanding", "self_pay_outstanding")} == {
        "invoiced": "380.00", "credited": "30.00", "paid": "300.00", "outstanding": "50.00",
        "self_pay_outstanding": "50.00"}
    today = dt.datetime.now(zoneinfo.ZoneInfo(facility.timezone)).date()
    with db.tenant(facility.slug) as conn:
        aged = reports.ar_aging(conn, clerk, today, patient_id=invoice["patient_id"])
    assert aged["by_payer"] == {"SELF": {"0-30": Decimal("50.00"), "31-60": 0, "61-90": 0, "90+": 0}}
    paid = clerk_api.post(f"{base}/invoices/{transfer['transfer_invoice_id']}/payments",
                          json={"method": "cash", "amount": "50"})
    assert paid.status_code == 201 and paid.json()["outstanding"] == "0.00"


def test_a_patients_own_bill_has_no_insurers_shortfall(db, facility, clinician, clerk, clerk_api):
    invoice = final_invoice(db, facility, clinician, clerk, FULL_BLOOD_COUNT)
    url = f"{API.format(tenant=facility.slug)}/invoices/{invoice['id']}"
    for action in ("write-off", "transfer-to-patient"):
        refused = clerk_api.post(f"{url}/{action}", json={"reason": "patient cannot pay"})
        assert refused.status_code == 409 and "bills the patient, not an insurer" in refused.json()["detail"]
    assert _credits(db, facility, invoice["id"]) == 0


def claimed_insurer_invoice(db, facility, clinician, clerk) -> dict:
    """`insurer_invoice` with malaria (B54) on the record and the invoice claimed from NHIF (submitted)."""
    from appliance.layers.clinical import service as clinical
    from appliance.layers.clinical.schemas import ConditionIn

    invoice = insurer_invoice(db, facility, clinician, clerk)
    with db.tenant(facility.slug) as conn:
        clinical.add_condition(conn, clinician, invoice["patient_id"], ConditionIn(code="B54"))
        return invoice | {"claim": service.create_claim(conn, clerk, invoice["id"])}


def test_a_shortfall_waits_for_the_insurers_answer_to_its_claim(db, facility, clinician, clerk, clerk_api):
    """Submitted or accepted with nothing remitted, NHIF has not said what it will not pay: writing off or billing
    the patient then is refused (409, saying why) and writes nothing; a remittance or a rejection is an answer."""
    invoice = claimed_insurer_invoice(db, facility, clinician, clerk)
    base = API.format(tenant=facility.slug)
    url, status = f"{base}/invoices/{invoice['id']}", f"{base}/claims/{invoice['claim']['id']}/status"
    for answered in (None, "accepted"):
        if answered:
            assert clerk_api.post(status, json={"status": answered}).status_code == 200
        for action in ("write-off", "transfer-to-patient"):
            refused = clerk_api.post(f"{url}/{action}", json={"reason": "patient's plan excludes it"})
            assert refused.status_code == 409, refused.text
            said = refused.json()
            assert said["detail"].startswith(f"claim {invoice['claim']['number']} is still {answered or 'submitted'}: "
                                              "National Health Insurance Fund has neither paid anything on it nor "
                                              "rejected it, so there is no shortfall yet")
    assert _credits(db, facility, invoice["id"]) == 0
    assert clerk_api.post(f"{url}/payments", json={"method": "insurer_remittance", "amount": "300",
                                                   "reference": "NHIF-RA-90"}).status_code == 201
    written = clerk_api.post(f"{url}/write-off", json={"reason": "NHIF tariff cap for FBC"})
    assert written.status_code == 201 and written.json()["amount"] == "80.00", written.text
    # Nothing more is owed: the claim NHIF paid part of is closed, asking what it asked, saying what happened.
    closed = clerk_api.get(f"{base}/claims/{invoice['claim']['id']}").json()
    assert (closed["status"], closed["amount"], closed["remitted"]) == ("paid", "380.00", "300.00")
    assert closed["events"][-1]["reason"] == (
        f"{written.json()['number']} wrote off KES 80.00: NHIF tariff cap for FBC; National Health Insurance Fund "
        "paid KES 300.00 of the KES 380.00 claimed and nothing more is owed on it")

    rejected = claimed_insurer_invoice(db, facility, clinician, clerk)
    assert clerk_api.post(f"{base}/claims/{rejected['claim']['id']}/status",
                          json={"status": "rejected", "reason": "membership lapsed"}).status_code == 200
    moved = clerk_api.post(f"{base}/invoices/{rejected['id']}/transfer-to-patient",
                           json={"reason": "NHIF membership lapsed: the patient pays"})
    assert moved.status_code == 201 and moved.json()["amount"] == "380.00", moved.text


def test_a_credit_note_amends_the_claim_which_is_sent_again(db, facility, clinician, clerk, clerk_api):
    """NHIF was claimed 380 for a blood count billed at the wrong price: the credit note of 80 amends the claim to
    300, with an event naming the credit note and why, and the claim must be sent again before NHIF answers it.
    A credit note taking the rest leaves nothing to claim: the claim is withdrawn. A claim made after a credit note
    asks the invoice's total less it."""
    invoice = claimed_insurer_invoice(db, facility, clinician, clerk)
    base = API.format(tenant=facility.slug)
    claim_url = f"{base}/claims/{invoice['claim']['id']}"
    [line] = invoice["lines"]
    assert clerk_api.post(f"{claim_url}/status", json={"status": "accepted"}).status_code == 200
    note = clerk_api.post(f"{base}/invoices/{invoice['id']}/credit-notes", json={
        "lines": [{"line_id": str(line["id"]), "amount": "80"}], "reason": "NHIF tariff for FBC is 300.00"}).json()
    amended = clerk_api.get(claim_url).json()
    assert (amended["status"], amended["amount"], amended["must_resend"]) == ("amended", "300.00", True)
    assert [e["status"] for e in amended["events"]] == ["submitted", "accepted", "amended"]
    assert amended["events"][-1]["reason"] == (
        f"{note['number']} credited KES 80.00: NHIF tariff for FBC is 300.00; the claim asks KES 300.00 now, "
        "KES 380.00 before; send it to National Health Insurance Fund again")
    early = clerk_api.post(f"{claim_url}/status", json={"status": "accepted"})
    assert early.status_code == 409 and "allowed next: submitted" in early.json()["detail"]
    resent = clerk_api.post(f"{claim_url}/status", json={"status": "submitted"}).json()
    assert (resent["status"], resent["must_resend"]) == ("submitted", False)

    rest = clerk_api.post(f"{base}/invoices/{invoice['id']}/credit-notes", json={
        "lines": [{"line_id": str(line["id"])}], "reason": "test not done: sample haemolysed"}).json()
    withdrawn = clerk_api.get(claim_url).json()
    assert (withdrawn["status"], withdrawn["amount"]) == ("withdrawn", "0.00")
    assert withdrawn["events"][-1]["reason"].startswith(f"{rest['number']} credited KES 300.00: test not done")
    assert withdrawn["events"][-1]["reason"].endswith(
        "nothing is left to claim: tell National Health Insurance Fund the claim is withdrawn")
    assert clerk_api.post(f"{claim_url}/status", json={"status": "submitted"}).status_code == 409

    later = insurer_invoice(db, facility, clinician, clerk)
    from appliance.layers.clinical import service as clinical
    from appliance.layers.clinical.schemas import ConditionIn

    with db.tenant(facility.slug) as conn:
        clinical.add_condition(conn, clinician, later["patient_id"], ConditionIn(code="B54"))
    clerk_api.post(f"{base}/invoices/{later['id']}/credit-notes", json={
        "lines": [{"line_id": str(later["lines"][0]["id"]), "amount": "30"}], "reason": "tariff is 350.00"})
    claimed = clerk_api.post(f"{base}/invoices/{later['id']}/claim")
    assert claimed.status_code == 201 and claimed.json()["amount"] == "350.00", claimed.text


def test_what_was_overpaid_is_refunded_and_counted_out_of_the_days_takings(db, facility, clinician, clerk,
                                                                            clerk_api):
    """The patient paid 450 by card; the smear-free blood count should have been 380: the credit note of 70 leaves
    70 overpaid, refunded by card reversal (never more; refusals write nothing), and the day's takings count it
    out of the card's total and the cashier's."""
    invoice = final_invoice(db, facility, clinician, clerk, FULL_BLOOD_COUNT)
    base = API.format(tenant=facility.slug)
    url = f"{base}/invoices/{invoice['id']}"
    [line] = invoice["lines"]
    assert clerk_api.post(f"{url}/payments", json={"method": "card", "amount": "450",
                                                   "reference": "CARD-450"}).status_code == 201
    early = clerk_api.post(f"{url}/refunds", json={"method": "cash", "amount": "10", "reason": "asked for it"})
    assert early.status_code == 409 and "nothing was paid on this invoice beyond what is owed" in early.json()["detail"]
    note = clerk_api.post(f"{url}/credit-notes", json={"lines": [{"line_id": str(line["id"]), "amount": "70"}],
                                                       "reason": "staff rate is 380.00"})
    assert note.status_code == 201 and (note.json()["outstanding"], note.json()["overpaid"]) == ("0.00", "70.00")
    for body, said in (({"method": "card", "amount": "70.01", "reference": "REV-1", "reason": "staff rate"},
                        "only KES 70.00 was paid beyond what is owed on this invoice"),
                       ({"method": "card", "amount": "70", "reason": "staff rate"}, "reference"),
                       ({"method": "cheque", "amount": "70", "reason": "staff rate"}, "method"),
                       ({"method": "cash", "amount": "70", "reason": " "}, "reason")):
        refused = clerk_api.post(f"{url}/refunds", json=body)
        assert refused.status_code == 422 and said in refused.json()["detail"], refused.text
    assert _refunds(db, facility, invoice["id"]) == 0

    given = clerk_api.post(f"{url}/refunds", json={"method": "card", "amount": "70", "reference": "REV-CARD-450",
                                                   "reason": f"{note.json()['number']}: staff rate"})
    assert given.status_code == 201, given.text
    refund = given.json()
    assert refund["number"].startswith("RFD-") and refund["payer_code"] is None
    assert (refund["amount"], refund["overpaid"], refund["outstanding"]) == ("70.00", "0.00", "0.00")
    assert clerk_api.get(f"{base}/refunds/{refund['id']}").json()["reference"] == "REV-CARD-450"
    after = clerk_api.get(url).json()
    assert {k: after[k] for k in ("paid", "refunded", "credited", "outstanding", "overpaid")} == {
        "paid": "450.00", "refunded": "70.00", "credited": "70.00", "outstanding": "0.00", "overpaid": "0.00"}
    assert [r["number"] for r in after["refunds"]] == [refund["number"]]
    again = clerk_api.post(f"{url}/refunds", json={"method": "cash", "amount": "1", "reason": "twice"})
    assert again.status_code == 409
    balance = clerk_api.get(f"{base}/patients/{invoice['patient_id']}/balance").json()
    assert (balance["paid"], balance["refunded"], balance["outstanding"]) == ("380.00", "70.00", "0.00")

    takings = clerk_api.get(f"{base}/takings").json()
    [listed] = [r for r in takings["refunds"] if r["id"] == refund["id"]]
    assert (listed["method"], listed["amount"], listed["invoice_number"]) == ("card", "70.00", invoice["number"])
    assert Decimal(takings["refunded"]) == sum(Decimal(r["amount"]) for r in takings["refunds"])
    assert Decimal(takings["net"]) == Decimal(takings["total"]) - Decimal(takings["refunded"])
    card = takings["by_method"]["card"]
    assert Decimal(card["net"]) == Decimal(card["amount"]) - Decimal(card["refunded"]) and card["refunds"] >= 1
    assert Decimal(takings["net"]) == sum(Decimal(p["net"]) for p in takings["by_person"])
    assert _audited(db, facility, "record.refund.create") >= 1


def test_a_paid_claim_is_not_reduced_silently_what_the_insurer_overpaid_is_refunded(db, facility, clinician, clerk,
                                                                                     clerk_api):
    """NHIF paid its 380 claim in full; a credit note of 80 then leaves the claim paid, asking 300 and saying NHIF
    is owed 80 back, until the refund to NHIF (by bank transfer) is recorded on the claim too."""
    invoice = claimed_insurer_invoice(db, facility, clinician, clerk)
    base = API.format(tenant=facility.slug)
    claim_url = f"{base}/claims/{invoice['claim']['id']}"
    assert clerk_api.post(f"{claim_url}/status", json={"status": "accepted"}).status_code == 200
    assert clerk_api.post(f"{base}/invoices/{invoice['id']}/payments", json={
        "method": "insurer_remittance", "amount": "380", "reference": "NHIF-RA-380"}).status_code == 201
    note = clerk_api.post(f"{base}/invoices/{invoice['id']}/credit-notes", json={
        "lines": [{"line_id": str(invoice["lines"][0]["id"]), "amount": "80"}], "reason": "NHIF tariff is 300.00"})
    assert note.status_code == 201, note.text
    owed = clerk_api.get(claim_url).json()
    assert (owed["status"], owed["amount"], owed["owed_back"], owed["must_resend"]) == ("paid", "300.00", "80.00",
                                                                                         False)
    assert owed["events"][-1]["reason"].endswith(
        "the claim asks KES 300.00 now, KES 380.00 before; National Health Insurance Fund paid KES 80.00 more than "
        "that, owed back to it")
    given = clerk_api.post(f"{base}/invoices/{invoice['id']}/refunds", json={
        "method": "bank_transfer", "amount": "80", "reference": "EFT-0091", "reason": "NHIF overpaid FBC"})
    assert given.status_code == 201 and given.json()["payer_code"] == "NHIF", given.text
    settled = clerk_api.get(claim_url).json()
    assert (settled["status"], settled["owed_back"], settled["refunded"]) == ("paid", "0.00", "80.00")
    assert settled["events"][-1]["reason"] == (
        f"{given.json()['number']} refunded KES 80.00 to National Health Insurance Fund: NHIF overpaid FBC")


def test_a_refund_goes_back_to_whoever_paid_the_patient_or_the_insurer(db, facility, clinician, clerk, clerk_api):
    """On NHIF's 380 invoice the patient paid 100 in cash and NHIF remitted 280; a credit note of 150 leaves 150
    overpaid. Both paid, so the cashier must say who is given it back (422 naming both, writing nothing); the patient
    has back at most their 100, by a refund that is theirs (no insurer on it, the claim untouched); the 50 left can
    only be NHIF's."""
    invoice = claimed_insurer_invoice(db, facility, clinician, clerk)
    base = API.format(tenant=facility.slug)
    url, claim_url = f"{base}/invoices/{invoice['id']}", f"{base}/claims/{invoice['claim']['id']}"
    assert clerk_api.post(f"{claim_url}/status", json={"status": "accepted"}).status_code == 200
    assert clerk_api.post(f"{url}/payments", json={"method": "cash", "amount": "100"}).status_code == 201
    assert clerk_api.post(f"{url}/payments", json={
        "method": "insurer_remittance", "amount": "280", "reference": "NHIF-RA-280"}).status_code == 201
    assert clerk_api.post(f"{url}/credit-notes", json={
        "lines": [{"line_id": str(invoice["lines"][0]["id"]), "amount": "150"}], "reason": "tariff"}).status_code == 201
    shown = clerk_api.get(url).json()
    assert (shown["overpaid"], shown["refundable"]) == ("150.00", {"patient": "100.00", "insurer": "150.00"})

    asked = {"method": "cash", "amount": "100", "reason": "credit note on the FBC"}
    unnamed = clerk_api.post(f"{url}/refunds", json=asked)
    assert unnamed.status_code == 422 and unnamed.json()["field"] == "to", unnamed.text
    assert "the patient (up to KES 100.00)" in unnamed.json()["detail"]
    assert "National Health Insurance Fund (up to KES 150.00)" in unnamed.json()["detail"]
    too_much = clerk_api.post(f"{url}/refunds", json={**asked, "amount": "120", "to": "patient"})
    assert too_much.status_code == 422 and too_much.json()["field"] == "amount"
    assert "the patient paid KES 100.00" in too_much.json()["detail"]
    assert _refunds(db, facility, invoice["id"]) == 0
    events_before = len(clerk_api.get(claim_url).json()["events"])

    to_patient = clerk_api.post(f"{url}/refunds", json={**asked, "to": "patient"})
    assert to_patient.status_code == 201 and to_patient.json()["payer_code"] is None, to_patient.text
    claimed = clerk_api.get(claim_url).json()
    assert len(claimed["events"]) == events_before and (claimed["refunded"], claimed["owed_back"]) == ("0.00", "50.00")
    assert clerk_api.get(url).json()["refundable"] == {"insurer": "50.00"}
    again = clerk_api.post(f"{url}/refunds", json={**asked, "amount": "10", "to": "patient"})
    assert again.status_code == 422 and again.json()["field"] == "to" and "the patient paid nothing" in again.text
    to_insurer = clerk_api.post(f"{url}/refunds", json={  # the one party left: no need to name it
        "method": "bank_transfer", "amount": "50", "reference": "EFT-0092", "reason": "NHIF overpaid FBC"})
    assert to_insurer.status_code == 201 and to_insurer.json()["payer_code"] == "NHIF", to_insurer.text
    assert clerk_api.get(claim_url).json()["refunded"] == "50.00"


def test_a_credit_note_never_takes_off_more_than_the_invoice_came_to(db, facility, clinician, clerk, clerk_api):
    """A 450 blood count exempted 150 was billed 300 and paid: crediting the whole line would leave 450 'overpaid'
    and refund money never paid; at most the total, 300, is credited."""
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        order(conn, clinician, patient, encounter, FULL_BLOOD_COUNT)
        [account] = service.list_accounts(conn, clerk, patient_id=patient["id"])
        draft = service.draft_invoice(conn, clerk, account["id"])
        service.add_adjustment(conn, clerk, draft["id"], kind="exemption", percent=None, amount=Decimal("150"),
                               reason="waiver scheme", approved_by="Matron")
        invoice = service.finalise_invoice(conn, clerk, draft["id"])
        service.record_payment(conn, clerk, invoice["id"], method="cash", amount=Decimal("300"))
    url = f"{API.format(tenant=facility.slug)}/invoices/{invoice['id']}/credit-notes"
    [line] = invoice["lines"]
    refused = clerk_api.post(url, json={"lines": [{"line_id": str(line["id"])}], "reason": "billed in error"})
    assert refused.status_code == 422
    assert "only KES 300.00 of this invoice is left to credit" in refused.json()["detail"]
    whole = clerk_api.post(url, json={"lines": [{"line_id": str(line["id"]), "amount": "300"}],
                                      "reason": "billed in error"})
    assert whole.status_code == 201 and whole.json()["overpaid"] == "300.00", whole.text
