"""Correcting a final invoice: credit notes, and an insurer's shortfall written off or billed to the patient
(financial layer).

A final invoice is never edited: what it billed in error (a line that should not have been charged, a
price that was wrong) is taken off by a **credit note** — its own number (CN-…), the invoice it credits,
the lines and the amount credited on each, and the reason. What is owed on the invoice is then its total
less what was paid and what was credited (`service.outstanding_on`), and the patient's balance, the A/R
aging and the day's takings read it so.

A credit note never exceeds what was invoiced: on each line, at most what is left of it after earlier credit
notes; in all, at most what is left of the invoice after its other credits. Beyond what is still owed, the invoice
is overpaid by the difference and the cashier refunds it (refunds.py). On a claimed invoice the claim follows
(`service.claim_follows`): amended to the new amount and sent again, or, paid already, owed back to the insurer.

When an insurer pays less than its invoice, the **shortfall** (what is still owed on it) is either **written
off** (WO-…: taken off the receivable, with the reason; its own permission, `financial.invoice.write_off`) or
**transferred to the patient** (TR-…: taken off the insurer's invoice and billed to the patient on a new final
self-pay invoice, which `transferred_from` ties to the insurer's; `financial.invoice.transfer`). Either may take
part of the shortfall, never more than it, and only once the insurer has answered: an invoice whose claim is still
submitted or accepted with nothing remitted has no shortfall yet (a rejected or paid claim, or a remittance, is an
answer).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.financial import service
from appliance.layers.financial.errors import Conflict, Invalid, NotFound
from appliance.layers.financial.models import (
    charge,
    claim,
    invoice,
    invoice_credit,
    invoice_credit_line,
    invoice_line,
    payer,
)
from appliance.layers.financial.money import ZERO, format_money, rounded
from appliance.substrate.principal import Principal
from appliance.substrate.record import note_access

NUMBER_PREFIX = {"credit_note": "CN-", "write_off": "WO-", "transfer": "TR-"}
SHORTFALL_KINDS = ("write_off", "transfer")


def _new_credit(conn: Connection, principal: Principal, found: dict, *, kind: str, amount: Decimal, reason: str,
                transfer_invoice_id: uuid.UUID | None = None) -> tuple[uuid.UUID, str]:
    credit_id = uuid.uuid4()
    number = conn.execute(sa.select(sa.func.concat(NUMBER_PREFIX[kind], sa.func.lpad(
        sa.cast(sa.func.nextval("invoice_credit_number_seq"), sa.Text), 7, "0")))).scalar_one()
    conn.execute(invoice_credit.insert().values(
        id=credit_id, number=number, invoice_id=found["id"], patient_id=found["patient_id"], kind=kind, amount=amount,
        currency=found["currency"], reason=reason, transfer_invoice_id=transfer_invoice_id,
        recorded_by=principal.account_id))
    return credit_id, number


def amount_in(amount: Decimal, currency: str, field: str) -> Decimal:
    if amount <= 0 or amount != rounded(amount, currency):
        raise Invalid(f"an amount in {currency} is above zero, to the currency's smallest unit", field=field)
    return rounded(amount, currency)


def stated_reason(reason: str | None, hint: str) -> str:
    stated = (reason or "").strip()
    if len(stated) < 3:
        raise Invalid(hint, field="reason")
    return stated


def issue_credit_note(conn: Connection, principal: Principal, invoice_id: uuid.UUID, *,
                      lines: Sequence[tuple[uuid.UUID, Decimal | None]], reason: str) -> dict:
    """A credit note against a final invoice: each (invoice line, amount) credits that much of the line (None:
    all that is left of it). Returns the credit note."""
    found = service.invoice_row(conn, invoice_id, lock=True)  # serialises with payments and other credits
    if found["status"] != "final":
        raise Conflict("a draft invoice follows its account's charges: credit the charge instead; a credit note "
                       "corrects a final invoice", invoice_id=str(invoice_id))
    stated = stated_reason(reason, "say why the lines are credited (billed in error, the wrong price)")
    if not lines:
        raise Invalid("choose at least one line of the invoice to credit", field="lines")
    wanted = [line_id for line_id, _ in lines]
    if len(set(wanted)) != len(wanted):
        raise Invalid("each line is credited once on a credit note", field="lines")
    # A charge re-priced (insurance recorded after the care) or cancelled is undone by a credit charge on the same
    # invoice: the two net to nothing, so the line has nothing billed left to credit.
    reversal_line, reversal = invoice_line.alias("reversal_line"), charge.alias("reversal")
    undone_here = sa.exists().where(reversal_line.c.invoice_id == invoice_id,
                                    reversal.c.entry_id == reversal_line.c.charge_entry_id,
                                    reversal.c.reverses == invoice_line.c.charge_root_id)
    on_invoice = {r["id"]: dict(r) for r in conn.execute(
        sa.select(invoice_line.c.id, invoice_line.c.description, invoice_line.c.amount, undone_here.label("undone"),
                  (sa.select(sa.func.coalesce(sa.func.sum(invoice_credit_line.c.amount), 0))
                   .where(invoice_credit_line.c.invoice_line_id == invoice_line.c.id)
                   .scalar_subquery()).label("credited"))
        .where(invoice_line.c.invoice_id == invoice_id, invoice_line.c.id.in_(wanted))).mappings()}
    currency = found["currency"]
    credited_lines: list[dict] = []
    for line_id, amount in lines:
        line = on_invoice.get(line_id)
        if line is None:
            raise Invalid(f"line {line_id} is not a line of invoice {found['number']}", field="lines")
        if line["undone"]:
            raise Invalid(f"“{line['description']}” is undone on this invoice by its own credit (re-priced or "
                          "cancelled): the two net to nothing, so there is nothing of it to credit", field="lines",
                          line_id=str(line_id))
        left = line["amount"] - line["credited"]
        if left <= 0:
            raise Invalid(f"nothing is left to credit on “{line['description']}”"
                          + (" (it is itself a credit)" if line["amount"] < 0 else " (credited in full already)"),
                          field="lines")
        amount = left if amount is None else amount_in(amount, currency, "lines")
        if amount > left:
            raise Invalid(f"at most {format_money(left, currency)} of “{line['description']}” can be credited: "
                          "a credit note never exceeds what was invoiced", field="lines", line_id=str(line_id))
        credited_lines.append({"invoice_line_id": line_id, "amount": amount})
    total = sum((c["amount"] for c in credited_lines), ZERO)
    # Adjustments (a discount, an exemption) took part of the lines off already: the invoice's total, not its
    # lines, is what can be credited, so a refund never gives back money that was not paid.
    left = found["total"] - service.credited_on(conn, invoice_id)
    if total > left:
        raise Invalid(f"the lines chosen come to {format_money(total, currency)} but only "
                      f"{format_money(left, currency)} of this invoice is left to credit (its total less its "
                      "discounts and earlier credits)", field="lines", left=str(left))
    credit_id, number = _new_credit(conn, principal, found, kind="credit_note", amount=total, reason=stated)
    conn.execute(invoice_credit_line.insert(), [{"id": uuid.uuid4(), "credit_id": credit_id, **c}
                                                for c in credited_lines])
    note_access(conn, principal, "create", found["patient_id"], "invoice_credit", [credit_id],
                detail={"kind": "credit_note"})
    service.claim_follows(conn, principal, found, {"number": number, "amount": total, "reason": stated},
                          "credit_note")
    return get_credit(conn, principal, credit_id)


def settle_shortfall(conn: Connection, principal: Principal, invoice_id: uuid.UUID, *, kind: str,
                     amount: Decimal | None, reason: str) -> dict:
    """Write off (`write_off`) or transfer to the patient (`transfer`) what an insurer left unpaid on its final
    invoice: `amount` of it (None: all that is outstanding). Returns the credit, with the patient's new invoice
    for a transfer."""
    if kind not in SHORTFALL_KINDS:
        raise Invalid("a shortfall is written off or transferred to the patient", field="kind")
    found = service.invoice_row(conn, invoice_id, lock=True)  # serialises with payments and other credits
    if found["status"] != "final":
        raise Conflict("an insurer's shortfall is settled once its invoice is final and the insurer has answered",
                       invoice_id=str(invoice_id))
    payer_kind = conn.execute(sa.select(payer.c.kind).where(payer.c.code == found["payer_code"])).scalar()
    if payer_kind is None or payer_kind == "self_pay":
        raise Conflict("this invoice bills the patient, not an insurer: there is no insurer's shortfall to write off "
                       "or transfer (a line billed in error is taken off by a credit note)", invoice_id=str(invoice_id))
    claimed = conn.execute(sa.select(claim.c.number, claim.c.status).where(claim.c.invoice_id == invoice_id)).first()
    # Until the insurer answers its claim (a remittance, a rejection) nobody knows what it will not pay: a
    # shortfall settled before then is billed twice (to the patient, or written off, and then paid by the insurer).
    if claimed is not None and claimed.status not in ("rejected", "paid") and not service.remitted_on(conn, invoice_id):
        insurer = service.payer_name(conn, found["payer_code"])
        raise Conflict(f"claim {claimed.number} is still {claimed.status}: {insurer} "
                       "has neither paid anything on it nor rejected it, so there is no shortfall yet; record the "
                       "insurer's remittance or its rejection first", invoice_id=str(invoice_id),
                       claim_status=claimed.status)
    currency = found["currency"]
    outstanding = service.outstanding_on(conn, found)
    if outstanding <= 0:
        raise Conflict("nothing is outstanding on this invoice: there is no shortfall", invoice_id=str(invoice_id))
    stated = stated_reason(reason, "say why (the insurer's answer: a tariff cap, an item the cover excludes)")
    amount = outstanding if amount is None else amount_in(amount, currency, "amount")
    if amount > outstanding:
        raise Invalid(f"the shortfall is {format_money(outstanding, currency)}: no more of it can be "
                      f"{'written off' if kind == 'write_off' else 'transferred'}", field="amount",
                      outstanding=str(outstanding))
    billed_to_patient = None
    if kind == "transfer":
        billed_to_patient = uuid.uuid4()
        number = sa.func.concat("INV-", sa.func.lpad(sa.cast(sa.func.nextval("invoice_number_seq"), sa.Text), 7, "0"))
        conn.execute(invoice.insert().values(
            id=billed_to_patient, number=number, account_id=found["account_id"], patient_id=found["patient_id"],
            payer_code=None, currency=currency, status="final", created_by=principal.account_id,
            finalised_at=sa.func.now(), finalised_by=principal.account_id, subtotal=amount, adjustments=ZERO,
            total=amount, transferred_from=invoice_id))
        note_access(conn, principal, "create", found["patient_id"], "invoice", [billed_to_patient],
                    detail={"transferred_from": str(invoice_id)})
    credit_id, number = _new_credit(conn, principal, found, kind=kind, amount=amount, reason=stated,
                                    transfer_invoice_id=billed_to_patient)
    note_access(conn, principal, "create", found["patient_id"], "invoice_credit", [credit_id], detail={"kind": kind})
    service.claim_follows(conn, principal, found, {"number": number, "amount": amount, "reason": stated}, kind)
    return get_credit(conn, principal, credit_id)


def get_credit(conn: Connection, principal: Principal, credit_id: uuid.UUID) -> dict:
    """A credit note (or a write-off or transfer) with its lines, its invoice and its patient."""
    row = conn.execute(sa.select(invoice_credit.c.invoice_id, invoice_credit.c.patient_id)
                       .where(invoice_credit.c.id == credit_id)).first()
    if row is None:
        raise NotFound(f"no credit note {credit_id} at this facility", credit_id=str(credit_id))
    found = next(c for c in service.credits_of(conn, row.invoice_id) if c["id"] == credit_id)
    credited = service.invoice_row(conn, row.invoice_id)
    found["invoice_number"] = credited["number"]
    found["invoice_total"] = credited["total"]
    owed = service.outstanding_on(conn, credited)
    found["outstanding"], found["overpaid"] = service.owed_and_overpaid(owed)
    found["patient"] = service.patients_named(conn, {row.patient_id}).get(row.patient_id)
    note_access(conn, principal, "read", row.patient_id, "invoice_credit", [credit_id])
    return found
