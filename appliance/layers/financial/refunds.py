"""Refunds: money given back on a final invoice that was overpaid (financial layer).

A credit note on an invoice already paid (a line billed in error found after the patient paid, a wrong price the
insurer had paid in full) leaves more paid than is now owed. The cashier gives the difference back as a **refund**
(RFD-…): the invoice, the method (cash, mobile money, card, bank transfer), the amount, the reference and the
reason, with a printable slip. It goes to whoever paid: the insurer by its remittances (its claim notes the
refund), the patient by any other payment — a patient who paid cash on an insurer's invoice is given their money
back, not the insurer. When both paid, the cashier says which is given it back. Never more than was overpaid, nor
more than that party paid; the day's takings count it as money out.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.financial import service
from appliance.layers.financial.credits import amount_in, stated_reason
from appliance.layers.financial.errors import Conflict, Invalid, NotFound
from appliance.layers.financial.models import invoice, refund
from appliance.layers.financial.money import format_money
from appliance.substrate.principal import Principal
from appliance.substrate.record import note_access

REFUND_METHODS = ("cash", "mobile_money", "card", "bank_transfer")
REFUND_PARTIES = ("patient", "insurer")


def record_refund(conn: Connection, principal: Principal, invoice_id: uuid.UUID, *, method: str, amount: Decimal,
                  reason: str, reference: str | None = None, to: str | None = None) -> dict:
    """Give back `amount` of what was overpaid on a final invoice to the party that paid it: `to` the patient or
    the insurer, which may be left out when only one of them paid. Returns the refund."""
    found = service.invoice_row(conn, invoice_id, lock=True)  # serialises with payments, credits and other refunds
    if found["status"] != "final":
        raise Conflict("a draft invoice has taken no payment: there is nothing to refund", invoice_id=str(invoice_id))
    if method not in REFUND_METHODS:
        raise Invalid(f"a refund is given by {', '.join(REFUND_METHODS)}", field="method")
    currency = found["currency"]
    overpaid = -service.outstanding_on(conn, found)
    if overpaid <= 0:
        raise Conflict("nothing was paid on this invoice beyond what is owed, so there is nothing to refund (a credit "
                       "note takes a line billed in error off first)", invoice_id=str(invoice_id))
    amount = amount_in(amount, currency, "amount")
    if amount > overpaid:
        raise Invalid(f"only {format_money(overpaid, currency)} was paid beyond what is owed on this invoice: a "
                      "refund gives back no more than that", field="amount", overpaid=str(overpaid))
    refundable = service.refundable_on(conn, found)
    party = _party_refunded(conn, found, refundable, to)
    can_have = refundable[party]
    if amount > can_have:
        raise Invalid(f"{_named(conn, found, party)} paid {format_money(can_have, currency)} of what was overpaid on "
                      "this invoice: a refund to them gives back no more than that", field="amount",
                      refundable=str(can_have))
    stated = stated_reason(reason, "say why the money is given back (the credit note that made it owed)")
    if method != "cash" and not (reference or "").strip():
        raise Invalid("give the transaction reference of the money sent back", field="reference")
    refund_id = uuid.uuid4()
    number = conn.execute(sa.select(sa.func.concat("RFD-", sa.func.lpad(
        sa.cast(sa.func.nextval("refund_number_seq"), sa.Text), 7, "0")))).scalar_one()
    conn.execute(refund.insert().values(
        id=refund_id, number=number, invoice_id=invoice_id, patient_id=found["patient_id"],
        payer_code=found["payer_code"] if party == "insurer" else None, method=method, amount=amount, currency=currency,
        reference=(reference or "").strip() or None, reason=stated, recorded_by=principal.account_id))
    note_access(conn, principal, "create", found["patient_id"], "refund", [refund_id])
    if party == "insurer":
        service.claim_follows(conn, principal, found, {"number": number, "amount": amount, "reason": stated}, "refund")
    return refund_of(conn, principal, refund_id)


def _named(conn: Connection, found: dict, party: str) -> str:
    return "the patient" if party == "patient" else service.payer_name(conn, found["payer_code"]) or "the insurer"


def _party_refunded(conn: Connection, found: dict, paid: dict[str, Decimal], to: str | None) -> str:
    """Who a refund goes to: `to`, which must have paid on the invoice (`paid`: `service.refundable_on`), or the
    one party that did."""
    if to is not None:
        if to not in REFUND_PARTIES:
            raise Invalid("a refund goes to the patient or to the insurer", field="to")
        if to not in paid:
            raise Invalid(f"{_named(conn, found, to)} paid nothing on this invoice that is still to be given back",
                          field="to")
        return to
    if len(paid) > 1:
        currency = found["currency"]
        raise Invalid("both paid on this invoice: say who is given the money back — the patient (up to "
                      f"{format_money(paid['patient'], currency)}) or {_named(conn, found, 'insurer')} (up to "
                      f"{format_money(paid['insurer'], currency)})", field="to")
    return next(iter(paid))


def refund_of(conn: Connection, principal: Principal, refund_id: uuid.UUID) -> dict:
    """A refund as its slip shows it: to whom, how much, the invoice and what is left overpaid on it."""
    row = conn.execute(sa.select(refund, invoice.c.number.label("invoice_number"), invoice.c.total.label(
        "invoice_total")).select_from(refund.join(invoice, invoice.c.id == refund.c.invoice_id))
        .where(refund.c.id == refund_id)).mappings().first()
    if row is None:
        raise NotFound(f"no refund {refund_id} at this facility", refund_id=str(refund_id))
    found = dict(row)
    owed = service.outstanding_on(conn, service.invoice_row(conn, found["invoice_id"]))
    found["outstanding"], found["overpaid"] = service.owed_and_overpaid(owed)
    found["payer_name"] = None if found["payer_code"] is None else service.payer_name(conn, found["payer_code"])
    found["patient"] = service.patients_named(conn, {found["patient_id"]}).get(found["patient_id"])
    note_access(conn, principal, "read", found["patient_id"], "refund", [refund_id])
    return found
