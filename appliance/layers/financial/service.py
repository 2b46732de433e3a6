"""Financial services: accounts, invoices with discounts and exemptions, coverage, claims, payments and
receipts, and pricing what the fee schedule left unpriced.

Every function takes the caller's tenant transaction and the principal acting; none commits. Charges
and payments are entries in the one record (`record.append`, audited there); every read of patient
data and every write to the working tables (invoices, adjustments, coverage, claims) is noted on the
audit seam (`record.note_access`) with the patient it concerns.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from appliance.layers.financial import rebilling, schedule
from appliance.layers.financial.errors import Conflict, Invalid, NotFound
from appliance.layers.financial.models import (
    account,
    charge,
    claim,
    claim_event,
    coverage,
    invoice,
    invoice_adjustment,
    invoice_credit,
    invoice_credit_line,
    invoice_line,
    payer,
    payment,
    refund,
)
from appliance.layers.financial.money import ZERO, Adjustment, format_money, invoice_figures, line_amount, rounded
from appliance.substrate import record
from appliance.substrate.principal import Principal
from appliance.substrate.record import current_clause, entry, note_access
from appliance.substrate.tenancy import facility_timezone_of

# The clinical layer's tables, read by SQL (layers never import each other).
patient_t = sa.table("patient", sa.column("id", sa.Uuid), sa.column("mrn", sa.Text),
                     sa.column("family_name", sa.Text), sa.column("given_names", sa.Text))
encounter_t = sa.table("encounter", sa.column("id", sa.Uuid), sa.column("encounter_class", sa.Text),
                       sa.column("status", sa.Text), sa.column("started_at", sa.DateTime(timezone=True)),
                       sa.column("ended_at", sa.DateTime(timezone=True)), sa.column("ward_code", sa.Text))

CHARGE_COLUMNS = (entry.c.id, entry.c.root_id, entry.c.recorded_at, entry.c.patient_id, entry.c.encounter_id,
                  entry.c.status.label("entry_status"), *[c for c in charge.c if c.name != "entry_id"])
PAYMENT_METHODS = ("cash", "mobile_money", "card", "insurer_remittance")
# A claim a credit note changed is `amended` until it is sent again; one it left nothing to claim is `withdrawn`.
CLAIM_TRANSITIONS = {"submitted": {"accepted", "rejected"}, "accepted": {"paid", "rejected"},
                     "rejected": {"submitted"}, "paid": set(), "amended": {"submitted"}, "withdrawn": set()}


def patients_named(conn: Connection, ids: set[uuid.UUID]) -> dict[uuid.UUID, dict]:
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    rows = conn.execute(sa.select(patient_t.c.id, patient_t.c.mrn, patient_t.c.family_name, patient_t.c.given_names)
                        .where(patient_t.c.id.in_(ids))).mappings()
    # As the rest of the portal writes a patient: FAMILY, Given.
    return {r["id"]: {"mrn": r["mrn"], "name": f"{r['family_name'].upper()}, {r['given_names']}"} for r in rows}


def _live_charges(*where: Any) -> sa.Select:
    """Current versions of charges (a priced charge supersedes its unpriced version)."""
    return (sa.select(*CHARGE_COLUMNS).select_from(entry.join(charge, charge.c.entry_id == entry.c.id))
            .where(current_clause(), *where))


_credited = charge.alias("credited")


def _is_reversed() -> sa.ColumnElement[bool]:
    return sa.exists().where(_credited.c.reverses == entry.c.root_id)


# -- accounts -------------------------------------------------------------------------------------------


def _account_row(conn: Connection, account_id: uuid.UUID) -> dict:
    row = conn.execute(sa.select(account).where(account.c.id == account_id)).mappings().first()
    if row is None:
        raise NotFound(f"no account {account_id} at this facility", account_id=str(account_id))
    return dict(row)


def account_charges(conn: Connection, account_id: uuid.UUID) -> list[dict]:
    rows = conn.execute(_live_charges(charge.c.account_id == account_id)
                        .add_columns(_is_reversed().label("reversed"),
                                     sa.select(invoice_line.c.invoice_id)
                                     .where(invoice_line.c.charge_root_id == entry.c.root_id)
                                     .scalar_subquery().label("invoice_id"))
                        .order_by(charge.c.service_date, entry.c.recorded_at)).mappings()
    return [dict(r) for r in rows]


def get_account(conn: Connection, principal: Principal, account_id: uuid.UUID) -> dict:
    """An encounter's account: who, which encounter, every charge and credit, and its invoices."""
    found = _account_row(conn, account_id)
    found["patient"] = patients_named(conn, {found["patient_id"]}).get(found["patient_id"])
    found["encounter"] = None
    if found["encounter_id"] is not None:
        row = conn.execute(sa.select(encounter_t).where(encounter_t.c.id == found["encounter_id"])).mappings().first()
        found["encounter"] = dict(row) if row else None
    found["charges"] = account_charges(conn, account_id)
    found["invoices"] = [invoice_summary(conn, r["id"]) for r in conn.execute(
        sa.select(invoice.c.id).where(invoice.c.account_id == account_id).order_by(invoice.c.created_at)).mappings()]
    found["payer_name"] = payer_name(conn, found["payer_code"])
    posted = [c["amount"] for c in found["charges"] if c["status"] == "posted"]
    found["charged"] = sum(posted, ZERO)
    found["unpriced"] = sum(1 for c in found["charges"] if c["status"] == "unpriced" and c["reverses"] is None
                            and not c["reversed"])
    found["currency"] = schedule.setting(conn).currency
    note_access(conn, principal, "read", found["patient_id"], "account",
                [account_id, *(c["id"] for c in found["charges"])])
    return found


def list_accounts(conn: Connection, principal: Principal, *, patient_id: uuid.UUID | None = None,
                  number_or_mrn: str | None = None, patient_ids: Collection[uuid.UUID] | None = None,
                  not_invoiced: bool = False, limit: int = 50) -> list[dict]:
    """Accounts, most recent first, with what has been charged on each, what is still unpriced and its latest
    invoice (`invoice_id`, `invoice_number`, `invoice_status`; None when there is none); with `number_or_mrn`, the
    account of that number or every account of the patient of that MRN (what the cashier has in hand: the bill or
    the patient's card); with `patient_ids`, those patients' accounts; with `not_invoiced`, only accounts with
    charges and no final invoice (care not yet billed: the patient may have left without paying)."""
    charged = (sa.select(sa.func.coalesce(sa.func.sum(charge.c.amount), 0))
               .select_from(entry.join(charge, charge.c.entry_id == entry.c.id))
               .where(charge.c.account_id == account.c.id, current_clause()).scalar_subquery())
    unpriced = (sa.select(sa.func.count()).select_from(entry.join(charge, charge.c.entry_id == entry.c.id))
                .where(charge.c.account_id == account.c.id, charge.c.status == "unpriced", charge.c.reverses.is_(None),
                       current_clause(), ~_is_reversed()).scalar_subquery())
    latest = (sa.select(invoice.c.id.label("invoice_id"), invoice.c.number.label("invoice_number"),
                        invoice.c.status.label("invoice_status"))
              .where(invoice.c.account_id == account.c.id).order_by(invoice.c.created_at.desc()).limit(1)
              .lateral("latest_invoice"))
    query = sa.select(account, charged.label("charged"), unpriced.label("unpriced"), latest).select_from(
        account.outerjoin(latest, sa.true())).order_by(account.c.opened_at.desc()).limit(max(1, min(limit, 200)))
    if not_invoiced:
        query = query.where(charged != 0, ~sa.exists().where(invoice.c.account_id == account.c.id,
                                                             invoice.c.status == "final"))
    if patient_id is not None:
        query = query.where(account.c.patient_id == patient_id)
    if patient_ids is not None:
        query = query.where(account.c.patient_id.in_(list(patient_ids)))
    if number_or_mrn is not None:
        typed = number_or_mrn.strip()
        query = query.where(sa.or_(sa.func.upper(account.c.number) == typed.upper(), account.c.patient_id.in_(
            sa.select(patient_t.c.id).where(patient_t.c.mrn == typed))))
    rows = [dict(r) for r in conn.execute(query).mappings()]
    names = patients_named(conn, {r["patient_id"] for r in rows})
    for row in rows:
        row["patient"] = names.get(row["patient_id"])
    note_access(conn, principal, "search", patient_id, "account", [r["id"] for r in rows])
    return rows


def payer_name(conn: Connection, code: str | None) -> str:
    if code is None:
        return "Self-pay"
    return conn.execute(sa.select(payer.c.name).where(payer.c.code == code)).scalar() or code


def list_payers(conn: Connection) -> list[dict]:
    return [dict(r) for r in conn.execute(sa.select(payer).where(payer.c.active).order_by(payer.c.name)).mappings()]


# -- pricing what the schedule left unpriced ------------------------------------------------------------


def unpriced_charges(conn: Connection, principal: Principal, limit: int = 500) -> list[dict]:
    """The worklist: charges captured without a price, not since credited, oldest first."""
    rows = [dict(r) for r in conn.execute(
        _live_charges(charge.c.status == "unpriced", charge.c.reverses.is_(None), ~_is_reversed())
        .order_by(charge.c.service_date, entry.c.recorded_at).limit(limit)).mappings()]
    names = patients_named(conn, {r["patient_id"] for r in rows})
    for row in rows:
        row["patient"] = names.get(row["patient_id"])
    note_access(conn, principal, "search", None, "charge", [r["id"] for r in rows])
    return rows


def price_charge(conn: Connection, principal: Principal, charge_entry_id: uuid.UUID, unit_price: Decimal,
                 reason: str) -> dict:
    """Give an unpriced charge its price: a new version of the charge, posted; the unpriced one stays in
    its history with why it had no price."""
    found = conn.execute(_live_charges(entry.c.id == charge_entry_id).add_columns(_is_reversed().label("reversed"))
                         ).mappings().first()
    if found is None:
        raise NotFound(f"no current charge {charge_entry_id} at this facility", charge_id=str(charge_entry_id))
    if found["status"] != "unpriced" or found["reverses"] is not None:
        raise Conflict("this charge already has its price", charge_id=str(charge_entry_id))
    if found["reversed"]:
        raise Conflict("this charge was credited (its order was cancelled or entered in error); there is "
                       "nothing to price", charge_id=str(charge_entry_id))
    if not reason or not reason.strip():
        raise Invalid("say where the price comes from (a price list, a manager's decision)", field="reason")
    currency = found["currency"]
    if unit_price < 0 or unit_price != rounded(unit_price, currency):
        raise Invalid(f"a price in {currency} is zero or more, to the currency's smallest unit", field="unit_price")
    unit_price = rounded(unit_price, currency)
    detail = {c.name: found[c.name] for c in charge.c if c.name != "entry_id"}
    detail |= {"status": "posted", "unit_price": unit_price, "unpriced_reason": None,
               "amount": line_amount(found["quantity"], unit_price, currency)}
    appended = record.append(conn, principal, "charge", patient_id=found["patient_id"],
                             encounter_id=found["encounter_id"], detail=detail, supersedes=charge_entry_id,
                             reason=reason.strip())
    return {"id": appended.id, "root_id": appended.root_id, "recorded_at": appended.recorded_at,
            "patient_id": appended.patient_id, **appended.detail}


# -- invoices -------------------------------------------------------------------------------------------


def invoice_row(conn: Connection, invoice_id: uuid.UUID, *, lock: bool = False) -> dict:
    query = sa.select(invoice).where(invoice.c.id == invoice_id)
    row = conn.execute(query.with_for_update() if lock else query).mappings().first()
    if row is None:
        raise NotFound(f"no invoice {invoice_id} at this facility", invoice_id=str(invoice_id))
    return dict(row)


def _uninvoiced(account_id: uuid.UUID) -> sa.Select:
    already = sa.exists().where(invoice_line.c.charge_root_id == entry.c.root_id)
    return _live_charges(charge.c.account_id == account_id, ~already)


def _adjustments(conn: Connection, invoice_id: uuid.UUID) -> list[dict]:
    return [dict(r) for r in conn.execute(sa.select(invoice_adjustment).where(
        invoice_adjustment.c.invoice_id == invoice_id).order_by(invoice_adjustment.c.recorded_at)).mappings()]


def _paid(conn: Connection, invoice_id: uuid.UUID) -> Decimal:
    return conn.execute(sa.select(sa.func.coalesce(sa.func.sum(payment.c.amount), 0))
                        .where(payment.c.invoice_id == invoice_id)).scalar_one()


def remitted_on(conn: Connection, invoice_id: uuid.UUID) -> Decimal:
    """What the insurer has paid on the invoice (its remittances)."""
    return conn.execute(sa.select(sa.func.coalesce(sa.func.sum(payment.c.amount), 0))
                        .where(payment.c.invoice_id == invoice_id,
                               payment.c.method == "insurer_remittance")).scalar_one()


def credited_on(conn: Connection, invoice_id: uuid.UUID, kinds: tuple[str, ...] | None = None) -> Decimal:
    """What the invoice's credits (of `kinds`, or all) took off it."""
    query = sa.select(sa.func.coalesce(sa.func.sum(invoice_credit.c.amount), 0)).where(
        invoice_credit.c.invoice_id == invoice_id)
    return conn.execute(query if kinds is None else query.where(invoice_credit.c.kind.in_(kinds))).scalar_one()


def refunded_on(conn: Connection, invoice_id: uuid.UUID) -> Decimal:
    return conn.execute(sa.select(sa.func.coalesce(sa.func.sum(refund.c.amount), 0))
                        .where(refund.c.invoice_id == invoice_id)).scalar_one()


def net_paid_by(payments: list[dict], refunds: list[dict]) -> dict[str, Decimal]:
    """What each party paid on an invoice, net of what was already given back to it: the insurer by its
    remittances, the patient by every other payment (cash, mobile money, card on an insurer's invoice too)."""
    net = {"patient": ZERO, "insurer": ZERO}
    for paid in payments:
        net["insurer" if paid["method"] == "insurer_remittance" else "patient"] += paid["amount"]
    for given_back in refunds:
        net["insurer" if given_back["payer_code"] is not None else "patient"] -= given_back["amount"]
    return net


def refundable(overpaid: Decimal, net_paid: dict[str, Decimal]) -> dict[str, Decimal]:
    """To whom a refund of what was overpaid may go, and at most how much: each party that paid (`net_paid_by`), up
    to what it paid and never beyond what was overpaid. Empty when nothing was overpaid."""
    return {party: min(overpaid, paid) for party, paid in net_paid.items() if paid > 0 and overpaid > 0}


def refundable_on(conn: Connection, found: dict) -> dict[str, Decimal]:
    """`refundable` for a final invoice, read from its payments and refunds."""
    payments = [dict(r) for r in conn.execute(sa.select(payment.c.method, payment.c.amount)
                                              .where(payment.c.invoice_id == found["id"])).mappings()]
    overpaid = owed_and_overpaid(outstanding_on(conn, found))[1]
    return refundable(overpaid, net_paid_by(payments, refunds_of(conn, found["id"])))


def outstanding_on(conn: Connection, found: dict) -> Decimal:
    """What is still owed on a final invoice: its total less what was paid (net of refunds) and what was
    credited (credit notes, a shortfall written off or transferred to the patient). Below zero, it was
    overpaid by that much (a credit note after payment) and a refund is owed."""
    return (found["total"] - _paid(conn, found["id"]) + refunded_on(conn, found["id"])
            - credited_on(conn, found["id"]))


def owed_and_overpaid(owed: Decimal) -> tuple[Decimal, Decimal]:
    """`outstanding_on`'s figure as the views say it: what is still owed and what was overpaid, each never below
    zero and at the amount's own scale ('0.00', not '0')."""
    nothing = owed - owed
    return max(owed, nothing), max(-owed, nothing)


def claimed_amount(conn: Connection, found: dict) -> Decimal:
    """What the invoice's insurer is asked for: its total less what credit notes took off (a shortfall written
    off or transferred is what the insurer did not pay of it, not less asked)."""
    return found["total"] - credited_on(conn, found["id"], ("credit_note",))


def refunds_of(conn: Connection, invoice_id: uuid.UUID) -> list[dict]:
    return [dict(r) for r in conn.execute(sa.select(refund).where(refund.c.invoice_id == invoice_id)
                                          .order_by(refund.c.recorded_at, refund.c.number)).mappings()]


def credits_of(conn: Connection, invoice_id: uuid.UUID) -> list[dict]:
    """The invoice's credits, oldest first, each with its lines (a credit note's) and the invoice a transfer
    opened for the patient."""
    billed_to_patient = invoice.alias("billed_to_patient")
    credits = [dict(r) for r in conn.execute(
        sa.select(invoice_credit, billed_to_patient.c.number.label("transfer_invoice_number"))
        .select_from(invoice_credit.outerjoin(billed_to_patient,
                                              billed_to_patient.c.id == invoice_credit.c.transfer_invoice_id))
        .where(invoice_credit.c.invoice_id == invoice_id)
        .order_by(invoice_credit.c.recorded_at, invoice_credit.c.number)).mappings()]
    lines: dict[uuid.UUID, list[dict]] = {c["id"]: [] for c in credits}
    if credits:
        for row in conn.execute(
                sa.select(invoice_credit_line.c.credit_id, invoice_credit_line.c.invoice_line_id,
                          invoice_credit_line.c.amount, invoice_line.c.description, invoice_line.c.service_date,
                          invoice_line.c.amount.label("line_amount"))
                .select_from(invoice_credit_line.join(invoice_line,
                                                      invoice_line.c.id == invoice_credit_line.c.invoice_line_id))
                .where(invoice_credit_line.c.credit_id.in_(lines))
                .order_by(invoice_line.c.service_date, invoice_line.c.description)).mappings():
            lines[row["credit_id"]].append(dict(row))
    for credit in credits:
        credit["lines"] = lines[credit["id"]]
    return credits


def invoice_summary(conn: Connection, invoice_id: uuid.UUID) -> dict:
    """An invoice with its lines, adjustments, figures, payments and claim (not audited: callers are)."""
    found = invoice_row(conn, invoice_id)
    if found["status"] == "draft":
        charges = [dict(r) for r in conn.execute(_uninvoiced(found["account_id"])
                                                 .order_by(charge.c.service_date, entry.c.recorded_at)).mappings()]
        lines = [{"charge_entry_id": c["id"], "charge_root_id": c["root_id"], "description": c["description"],
                  "service_date": c["service_date"], "quantity": c["quantity"], "unit_price": c["unit_price"],
                  "amount": c["amount"], "status": c["status"], "unpriced_reason": c["unpriced_reason"],
                  "reverses": c["reverses"]}
                 for c in charges]
    else:  # in the draft's order: by day, then as the charges were written
        lines = [dict(r) | {"status": "posted", "unpriced_reason": None} for r in conn.execute(
            sa.select(invoice_line, charge.c.reverses)
            .select_from(invoice_line.join(entry, entry.c.id == invoice_line.c.charge_entry_id)
                         .join(charge, charge.c.entry_id == invoice_line.c.charge_entry_id))
            .where(invoice_line.c.invoice_id == invoice_id)
            .order_by(invoice_line.c.service_date, entry.c.recorded_at)).mappings()]
    # A charge and the credit that undid it (re-priced when insurance was recorded, or its order cancelled),
    # both on this invoice, net to nothing: the page shows them apart from what is billed.
    credited_here = {ln["reverses"] for ln in lines if ln["reverses"] is not None}
    roots_here = {ln["charge_root_id"] for ln in lines}
    for ln in lines:
        ln["netted"] = ln["charge_root_id"] in credited_here or (ln["reverses"] is not None
                                                                   and ln["reverses"] in roots_here)
    adjustments = _adjustments(conn, invoice_id)
    figures = invoice_figures([ln["amount"] for ln in lines if ln["amount"] is not None],
                              [Adjustment(a["percent"], a["amount"]) for a in adjustments], found["currency"])
    for adjustment, applied, asked in zip(adjustments, figures.adjustment_amounts, figures.adjustment_asked,
                                          strict=True):
        adjustment |= {"applied": applied, "asked": asked, "capped": applied < asked}
    if found["status"] == "final":  # what was frozen is what is owed
        figures_out = {"subtotal": found["subtotal"], "adjustments": found["adjustments"], "total": found["total"]}
    else:
        figures_out = {"subtotal": figures.subtotal, "adjustments": figures.adjustments, "total": figures.total}
    payments = [dict(r) for r in conn.execute(
        sa.select(entry.c.id, entry.c.recorded_at, entry.c.occurred_at.label("received_at"), entry.c.author_id,
                  payment.c.receipt_number, payment.c.method, payment.c.amount, payment.c.tendered,
                  payment.c.reference, payment.c.payer_code)
        .select_from(entry.join(payment, payment.c.entry_id == entry.c.id))
        .where(payment.c.invoice_id == invoice_id).order_by(entry.c.occurred_at)).mappings()]
    paid = sum((p["amount"] for p in payments), ZERO)
    remitted = sum((p["amount"] for p in payments if p["method"] == "insurer_remittance"), ZERO)
    credits = credits_of(conn, invoice_id)
    credited = sum((c["amount"] for c in credits), ZERO)
    refunds = refunds_of(conn, invoice_id)
    refunded = sum((r["amount"] for r in refunds), ZERO)
    owed = figures_out["total"] - paid + refunded - credited if found["status"] == "final" else None
    outstanding, overpaid = (None, None) if owed is None else owed_and_overpaid(owed)
    net_paid = net_paid_by(payments, refunds)
    credited_by_line: dict[uuid.UUID, Decimal] = {}
    for credit in credits:
        for credited_line in credit["lines"]:
            key = credited_line["invoice_line_id"]
            credited_by_line[key] = credited_by_line.get(key, ZERO) + credited_line["amount"]
    for ln in lines:
        ln["credited"] = credited_by_line.get(ln.get("id"), ZERO)
    found_claim = conn.execute(sa.select(claim).where(claim.c.invoice_id == invoice_id)).mappings().first()
    transferred_from = None if found["transferred_from"] is None else conn.execute(
        sa.select(invoice.c.number).where(invoice.c.id == found["transferred_from"])).scalar()
    return found | figures_out | {
        "lines": lines, "adjustment_list": adjustments, "payments": payments, "paid": paid, "remitted": remitted,
        "credits": credits, "credited": credited, "transferred_from_number": transferred_from,
        "refunds": refunds, "refunded": refunded,
        # What a claim would ask: the page offered the total before credit notes, and a claim on an invoice they
        # took off whole was refused only once sent.
        "claimable": claimed_amount(conn, found) if found["status"] == "final" else None,
        "outstanding": outstanding, "overpaid": overpaid,  # overpaid: a refund is owed
        "refundable": refundable(overpaid, net_paid) if overpaid else {},  # to whom, at most how much
        "claim": claim_view(conn, found_claim, found, owed) if found_claim else None,
        "unpriced": sum(1 for ln in lines if ln["status"] == "unpriced"),
        "payer_name": payer_name(conn, found["payer_code"]),
    }


def get_invoice(conn: Connection, principal: Principal, invoice_id: uuid.UUID) -> dict:
    found = invoice_summary(conn, invoice_id)
    found["patient"] = patients_named(conn, {found["patient_id"]}).get(found["patient_id"])
    note_access(conn, principal, "read", found["patient_id"], "invoice", [invoice_id])
    return found


def draft_invoice(conn: Connection, principal: Principal, account_id: uuid.UUID) -> dict:
    """The account's draft invoice: the one being prepared, or a new one over its uninvoiced charges."""
    found = _account_row(conn, account_id)
    existing = conn.execute(sa.select(invoice.c.id).where(invoice.c.account_id == account_id,
                                                          invoice.c.status == "draft")).scalar()
    if existing is None:
        if conn.execute(sa.select(_uninvoiced(account_id).exists())).scalar() is False:
            raise Conflict("every charge on this account is already on a final invoice; nothing to invoice",
                           account_id=str(account_id))
        existing = uuid.uuid4()
        number = sa.func.concat("INV-", sa.func.lpad(sa.cast(sa.func.nextval("invoice_number_seq"), sa.Text), 7, "0"))
        conn.execute(postgresql.insert(invoice).values(
            id=existing, number=number, account_id=account_id, patient_id=found["patient_id"],
            payer_code=found["payer_code"], currency=schedule.setting(conn).currency, status="draft",
            created_by=principal.account_id).on_conflict_do_nothing())
        existing = conn.execute(sa.select(invoice.c.id).where(invoice.c.account_id == account_id,
                                                              invoice.c.status == "draft")).scalar_one()
        note_access(conn, principal, "create", found["patient_id"], "invoice", [existing])
    return get_invoice(conn, principal, existing)


def add_adjustment(conn: Connection, principal: Principal, invoice_id: uuid.UUID, *, kind: str,
                   percent: Decimal | None, amount: Decimal | None, reason: str, approved_by: str) -> dict:
    """A discount or exemption on a draft invoice, with the reason and who approved it."""
    found = invoice_row(conn, invoice_id, lock=True)
    if found["status"] != "draft":
        raise Conflict("a final invoice cannot be discounted; credit its charges instead", invoice_id=str(invoice_id))
    if kind not in ("discount", "exemption"):
        raise Invalid("an adjustment is a discount or an exemption", field="kind")
    if (percent is None) == (amount is None):
        raise Invalid("give either a percentage or an amount", field="percent")
    if percent is not None and not (Decimal(0) < percent <= Decimal(100)):
        raise Invalid("a percentage is above 0 and at most 100", field="percent")
    if percent is not None and percent != percent.quantize(Decimal("0.01")):  # kept to two places, never rounded
        raise Invalid("give the percentage to two decimal places at most, e.g. 12.5", field="percent")
    if amount is not None and (amount <= 0 or amount != rounded(amount, found["currency"])):
        raise Invalid(f"an amount in {found['currency']} is above zero, to the currency's smallest unit",
                      field="amount")
    if not (reason or "").strip():
        raise Invalid("say why (the waiver scheme, the hardship assessment)", field="reason")
    if not (approved_by or "").strip():
        raise Invalid("name who approved it", field="approved_by")
    amount = None if amount is None else rounded(amount, found["currency"])
    adjustment_id = uuid.uuid4()
    conn.execute(invoice_adjustment.insert().values(
        id=adjustment_id, invoice_id=invoice_id, kind=kind, percent=percent, amount=amount, reason=reason.strip(),
        approved_by=approved_by.strip(), recorded_by=principal.account_id))
    note_access(conn, principal, "create", found["patient_id"], "invoice_adjustment", [adjustment_id])
    return get_invoice(conn, principal, invoice_id)


def finalise_invoice(conn: Connection, principal: Principal, invoice_id: uuid.UUID) -> dict:
    """Freeze a draft: its lines are copied from the charges as they are now, and its figures stored."""
    found = invoice_row(conn, invoice_id, lock=True)
    if found["status"] != "draft":
        raise Conflict("this invoice is already final", invoice_id=str(invoice_id))
    summary = invoice_summary(conn, invoice_id)
    if summary["unpriced"]:
        raise Conflict(f"{summary['unpriced']} item(s) on this account have no price yet; price them from the "
                       "worklist before finalising", invoice_id=str(invoice_id), unpriced=summary["unpriced"])
    if not summary["lines"]:
        raise Conflict("this invoice has no lines", invoice_id=str(invoice_id))
    conn.execute(invoice_line.insert(), [
        {"id": uuid.uuid4(), "invoice_id": invoice_id, "charge_entry_id": ln["charge_entry_id"],
         "charge_root_id": ln["charge_root_id"], "description": ln["description"], "service_date": ln["service_date"],
         "quantity": ln["quantity"], "unit_price": ln["unit_price"], "amount": ln["amount"]}
        for ln in summary["lines"]])
    conn.execute(sa.update(invoice).where(invoice.c.id == invoice_id).values(
        status="final", finalised_at=sa.func.now(), finalised_by=principal.account_id,
        subtotal=summary["subtotal"], adjustments=summary["adjustments"], total=summary["total"]))
    note_access(conn, principal, "update", found["patient_id"], "invoice", [invoice_id],
                detail={"status": "final"})
    return get_invoice(conn, principal, invoice_id)


def list_invoices(conn: Connection, principal: Principal, *, patient_id: uuid.UUID | None = None,
                  status: str | None = None, limit: int = 100) -> list[dict]:
    query = sa.select(invoice).order_by(invoice.c.created_at.desc()).limit(max(1, min(limit, 500)))
    if patient_id is not None:
        query = query.where(invoice.c.patient_id == patient_id)
    if status is not None:
        query = query.where(invoice.c.status == status)
    rows = [dict(r) for r in conn.execute(query).mappings()]
    names = patients_named(conn, {r["patient_id"] for r in rows})
    for row in rows:
        row["patient"] = names.get(row["patient_id"])
    note_access(conn, principal, "search", patient_id, "invoice", [r["id"] for r in rows])
    return rows


def bills_of_patient(conn: Connection, principal: Principal, patient_id: uuid.UUID, limit: int = 20) -> list[dict]:
    """The patient's final invoices, newest first, with what was paid, what is still owed and what was overpaid
    (a credit note after payment: a refund owed until the cashier records it), for the patient's own view
    (drafts are the facility's work in progress, not yet a bill)."""
    paid = sa.func.coalesce(sa.func.sum(payment.c.amount), ZERO)
    credited = (sa.select(sa.func.coalesce(sa.func.sum(invoice_credit.c.amount), ZERO))
                .where(invoice_credit.c.invoice_id == invoice.c.id).scalar_subquery())
    refunded = (sa.select(sa.func.coalesce(sa.func.sum(refund.c.amount), ZERO))
                .where(refund.c.invoice_id == invoice.c.id).scalar_subquery())
    rows = [dict(r) for r in conn.execute(
        sa.select(invoice.c.id, invoice.c.number, invoice.c.finalised_at, invoice.c.total, invoice.c.currency,
                  invoice.c.payer_code, paid.label("paid"), credited.label("credited"), refunded.label("refunded"))
        .select_from(invoice.outerjoin(payment, payment.c.invoice_id == invoice.c.id))
        .where(invoice.c.patient_id == patient_id, invoice.c.status == "final")
        .group_by(invoice.c.id).order_by(invoice.c.finalised_at.desc()).limit(limit)).mappings()]
    for row in rows:
        row["payer"] = payer_name(conn, row["payer_code"])
        row["outstanding"], row["overpaid"] = owed_and_overpaid(
            row["total"] - row["paid"] + row["refunded"] - row["credited"])
    note_access(conn, principal, "read", patient_id, "invoice", [r["id"] for r in rows])
    return rows


# -- payments and receipts ------------------------------------------------------------------------------


def record_payment(conn: Connection, principal: Principal, invoice_id: uuid.UUID, *, method: str, amount: Decimal,
                   reference: str | None = None, received_at: dt.datetime | None = None,
                   transaction_code_reused_confirmed: bool = False) -> dict:
    """A payment against a final invoice, with its receipt number; never more than is outstanding. Cash
    handed over beyond what is owed is recorded as what is owed, with what was tendered, so the receipt says
    the change to give back; any other method above what is owed is refused (nothing can be handed back).
    A mobile-money transaction code or a card terminal's reference already on a receipt of this facility is asked
    about (422 naming the earlier receipt) unless `transaction_code_reused_confirmed`: one transfer or card payment
    may pay two invoices, but a code typed twice counts the money twice at cash-up. `received_at` (the demo
    generator's past months; no route offers it) is when the money came in, the entry's occurred time, which the
    day's takings and the aging's payments as of a day are counted by."""
    found = invoice_row(conn, invoice_id, lock=True)  # serialises payments on one invoice
    if found["status"] != "final":
        raise Conflict("finalise the invoice before taking payment against it", invoice_id=str(invoice_id))
    if method not in PAYMENT_METHODS:
        raise Invalid(f"a payment is made by {', '.join(PAYMENT_METHODS)}", field="method")
    currency = found["currency"]
    if amount <= 0 or amount != rounded(amount, currency):
        raise Invalid(f"an amount in {currency} is above zero, to the currency's smallest unit", field="amount")
    amount = rounded(amount, currency)  # stored at the currency's scale: 200 is kept as 200.00
    outstanding = outstanding_on(conn, found)
    if outstanding <= 0:
        raise Invalid("nothing is outstanding on this invoice", field="amount", outstanding=str(outstanding))
    tendered = amount if method == "cash" else None
    if method == "cash":
        amount = min(amount, outstanding)
    elif amount > outstanding:
        raise Invalid(f"only {format_money(outstanding, currency)} is outstanding on this invoice; only cash can be "
                      "more (the change is given back)", field="amount", outstanding=str(outstanding))
    if method in ("mobile_money", "card", "insurer_remittance") and not (reference or "").strip():
        raise Invalid("give the transaction or remittance reference", field="reference")
    if method in _RECEIPTED_CODES and not transaction_code_reused_confirmed:
        _refuse_a_code_already_receipted(conn, principal, method, reference.strip(), currency)
    receipt = conn.execute(sa.select(sa.func.concat(
        "RCT-", sa.func.lpad(sa.cast(sa.func.nextval("receipt_number_seq"), sa.Text), 7, "0")))).scalar_one()
    appended = record.append(conn, principal, "payment", patient_id=found["patient_id"], occurred_at=received_at,
                             detail={
        "invoice_id": invoice_id, "receipt_number": receipt, "method": method, "amount": amount, "currency": currency,
        "tendered": tendered, "reference": (reference or "").strip() or None,
        "payer_code": found["payer_code"] if method == "insurer_remittance" else None})
    if amount == outstanding:
        conn.execute(sa.update(claim).where(claim.c.invoice_id == invoice_id, claim.c.status == "accepted")
                     .values(status="paid", updated_at=sa.func.now()))
    return receipt_of(conn, principal, appended.id)


# What a code is called, what it paid by and where the cashier checks it, by method: the methods whose code names
# one payment, so the same code on a second receipt is the same money unless the cashier says it pays both.
_RECEIPTED_CODES = {"mobile_money": ("transaction code", "transfer", "the code on the payer's message"),
                    "card": ("card reference", "card payment", "the reference on the terminal's slip")}

_SAME_TRANSACTION_CODE = sa.text("""
    SELECT e.id, e.patient_id, e.occurred_at, p.receipt_number, p.amount
    FROM payment p JOIN entry e ON e.id = p.entry_id
    WHERE upper(p.reference) = upper(:code) AND p.method = :method AND e.status <> 'entered_in_error'
      AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = e.id)
    ORDER BY e.occurred_at DESC, e.id LIMIT 1
""")


def _refuse_a_code_already_receipted(conn: Connection, principal: Principal, method: str, code: str,
                                     currency: str) -> None:
    """422 when this facility already receipted `code` by `method` (its tenant schema holds only its own
    receipts), naming the earlier receipt so the cashier can tell a code typed twice from one transfer or card
    payment paying two invoices. Two cashiers taking the same code at once are serialised on it."""
    called, paid_by, where_to_check = _RECEIPTED_CODES[method]
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(
        f"healthos.payment.{method}:{code.upper()}", 0))))
    earlier = conn.execute(_SAME_TRANSACTION_CODE, {"code": code, "method": method}).mappings().first()
    if earlier is None:
        return
    note_access(conn, principal, "read", earlier["patient_id"], "payment", [earlier["id"]])
    when = earlier["occurred_at"].astimezone(facility_timezone_of(conn))
    raise Invalid(f"{called} {code} is already on receipt {earlier['receipt_number']} of "
                  f"{when:%d %b %Y at %H:%M}, for {format_money(earlier['amount'], currency)}: if this one {paid_by} "
                  f"pays both, tick the box to record it; otherwise check {where_to_check}",
                  field="transaction_code_reused_confirmed", earlier_receipt=earlier["receipt_number"],
                  earlier_received_at=earlier["occurred_at"].isoformat(), earlier_amount=str(earlier["amount"]))


def receipt_of(conn: Connection, principal: Principal, payment_entry_id: uuid.UUID) -> dict:
    row = conn.execute(
        sa.select(entry.c.id, entry.c.recorded_at, entry.c.occurred_at.label("received_at"), entry.c.author_id,
                  entry.c.patient_id, payment)
        .select_from(entry.join(payment, payment.c.entry_id == entry.c.id)).where(entry.c.id == payment_entry_id)
    ).mappings().first()
    if row is None:
        raise NotFound(f"no payment {payment_entry_id} at this facility", payment_id=str(payment_entry_id))
    found = dict(row)
    paid_invoice = invoice_row(conn, found["invoice_id"])
    found["invoice_number"] = paid_invoice["number"]
    found["invoice_total"] = paid_invoice["total"]
    found["outstanding"], _ = owed_and_overpaid(outstanding_on(conn, paid_invoice))
    found["change"] = None if found["tendered"] is None else found["tendered"] - found["amount"]
    found["patient"] = patients_named(conn, {found["patient_id"]}).get(found["patient_id"])
    note_access(conn, principal, "read", found["patient_id"], "payment", [payment_entry_id])
    return found


# -- coverage and claims --------------------------------------------------------------------------------


def require_patient(conn: Connection, patient_id: uuid.UUID) -> None:
    if conn.execute(sa.select(patient_t.c.id).where(patient_t.c.id == patient_id)).first() is None:
        raise NotFound(f"no patient {patient_id} at this facility", patient_id=str(patient_id))


def add_coverage(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, payer_code: str,
                 member_number: str, valid_from: dt.date, valid_to: dt.date | None) -> dict:
    require_patient(conn, patient_id)
    known = conn.execute(sa.select(payer.c.kind).where(payer.c.code == payer_code, payer.c.active)).scalar()
    if known is None:
        raise Invalid(f"payer {payer_code} is not one of this facility's payers", field="payer_code")
    if valid_to is not None and valid_to < valid_from:
        raise Invalid("the membership ends before it starts", field="valid_to")
    if not (member_number or "").strip():
        raise Invalid("give the membership number", field="member_number")
    coverage_id = uuid.uuid4()
    conn.execute(coverage.insert().values(id=coverage_id, patient_id=patient_id, payer_code=payer_code,
                                          member_number=member_number.strip(), valid_from=valid_from,
                                          valid_to=valid_to, recorded_by=principal.account_id))
    note_access(conn, principal, "create", patient_id, "coverage", [coverage_id])
    recorded = _coverage_row(conn, coverage_id)
    # The card shown after the care: the patient's accounts it reaches bill the insurer from now on.
    rebilling.follow_cover(conn, principal, recorded)
    return recorded | {"accounts": rebilling.outcome(conn, recorded, schedule.setting(conn).currency)}


def _coverage_row(conn: Connection, coverage_id: uuid.UUID) -> dict | None:
    row = conn.execute(
        sa.select(coverage, payer.c.name.label("payer_name"), payer.c.kind.label("payer_kind"))
        .select_from(coverage.join(payer, payer.c.code == coverage.c.payer_code))
        .where(coverage.c.id == coverage_id)).mappings().first()
    return dict(row) if row else None


def coverage_outcome(conn: Connection, principal: Principal, coverage_id: uuid.UUID,
                     patient_id: uuid.UUID) -> list[dict]:
    """What recording this cover of this patient did to their accounts (`rebilling.outcome`); nothing for a
    cover of another patient or none."""
    found = _coverage_row(conn, coverage_id)
    if found is None or found["patient_id"] != patient_id:
        return []
    accounts = rebilling.outcome(conn, found, schedule.setting(conn).currency)
    note_access(conn, principal, "read", patient_id, "coverage", [coverage_id, *(a["account_id"] for a in accounts)])
    return accounts


def list_coverage(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> list[dict]:
    require_patient(conn, patient_id)
    rows = [dict(r) for r in conn.execute(
        sa.select(coverage, payer.c.name.label("payer_name"), payer.c.kind.label("payer_kind"))
        .select_from(coverage.join(payer, payer.c.code == coverage.c.payer_code))
        .where(coverage.c.patient_id == patient_id).order_by(coverage.c.recorded_at.desc())).mappings()]
    note_access(conn, principal, "read", patient_id, "coverage", [r["id"] for r in rows])
    return rows


_DIAGNOSES = sa.text("""
    SELECT DISTINCT c.code FROM entry e JOIN condition c ON c.entry_id = e.id
    WHERE e.patient_id = :patient_id AND e.status <> 'entered_in_error'
      AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = e.id)
      AND (CAST(:encounter_id AS uuid) IS NULL OR e.encounter_id = :encounter_id OR c.clinical_status = 'active')
    ORDER BY c.code
""")


def create_claim(conn: Connection, principal: Principal, invoice_id: uuid.UUID) -> dict:
    """A claim to the invoice's insurer for its total, with the diagnoses on the record (the encounter's
    and the patient's active problems, ICD-10)."""
    found = invoice_row(conn, invoice_id, lock=True)
    if found["status"] != "final":
        raise Conflict("only a final invoice can be claimed", invoice_id=str(invoice_id))
    kind = conn.execute(sa.select(payer.c.kind).where(payer.c.code == found["payer_code"])).scalar()
    if kind is None or kind == "self_pay":
        raise Conflict("this invoice is billed to the patient, not to an insurer", invoice_id=str(invoice_id))
    if conn.execute(sa.select(claim.c.id).where(claim.c.invoice_id == invoice_id)).first() is not None:
        raise Conflict("this invoice has already been claimed", invoice_id=str(invoice_id))
    asked = claimed_amount(conn, found)
    if asked <= 0:
        raise Conflict("credit notes took the whole invoice off: there is nothing to claim", invoice_id=str(invoice_id))
    encounter_id = _account_row(conn, found["account_id"])["encounter_id"]
    codes = list(conn.execute(_DIAGNOSES, {"patient_id": found["patient_id"], "encounter_id": encounter_id}).scalars())
    if not codes:
        raise Conflict("the record holds no diagnosis for this patient; an insurer will not accept a claim "
                       "without one — ask the clinician to record it", invoice_id=str(invoice_id))
    member = conn.execute(sa.select(coverage.c.member_number).where(
        coverage.c.patient_id == found["patient_id"], coverage.c.payer_code == found["payer_code"], coverage.c.active)
        .order_by(coverage.c.recorded_at.desc())).scalar()
    claim_id = uuid.uuid4()
    number = sa.func.concat("CLM-", sa.func.lpad(sa.cast(sa.func.nextval("claim_number_seq"), sa.Text), 7, "0"))
    conn.execute(claim.insert().values(
        id=claim_id, number=number, invoice_id=invoice_id, patient_id=found["patient_id"],
        payer_code=found["payer_code"], member_number=member, amount=asked, currency=found["currency"],
        diagnosis_codes=codes, status="submitted"))
    conn.execute(claim_event.insert().values(id=uuid.uuid4(), claim_id=claim_id, status="submitted",
                                             author_id=principal.account_id))
    note_access(conn, principal, "create", found["patient_id"], "claim", [claim_id])
    return get_claim(conn, principal, claim_id)


def claim_view(conn: Connection, row: Any, claimed_invoice: dict, owed: Decimal) -> dict:
    """A claim as its views show it: its history (each event, oldest first), what the insurer has remitted and
    been refunded, and what it is owed back (its invoice overpaid once a credit note followed its payment)."""
    found = dict(row)
    found["events"] = [dict(r) for r in conn.execute(
        sa.select(claim_event).where(claim_event.c.claim_id == found["id"])
        .order_by(claim_event.c.at, claim_event.c.id)).mappings()]
    found["invoice_number"] = claimed_invoice["number"]
    found["remitted"] = remitted_on(conn, claimed_invoice["id"])
    # Refunds to the insurer: what the patient paid and was given back is not the claim's.
    found["refunded"] = rounded(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(refund.c.amount), 0)).where(
        refund.c.invoice_id == claimed_invoice["id"], refund.c.payer_code.is_not(None))).scalar_one(),
        claimed_invoice["currency"])
    found["owed_back"] = min(owed_and_overpaid(owed)[1], max(found["remitted"] - found["refunded"], ZERO))
    found["must_resend"] = found["status"] == "amended"
    return found


def get_claim(conn: Connection, principal: Principal, claim_id: uuid.UUID) -> dict:
    row = conn.execute(sa.select(claim).where(claim.c.id == claim_id)).mappings().first()
    if row is None:
        raise NotFound(f"no claim {claim_id} at this facility", claim_id=str(claim_id))
    claimed_invoice = invoice_row(conn, row["invoice_id"])
    found = claim_view(conn, row, claimed_invoice, outstanding_on(conn, claimed_invoice))
    note_access(conn, principal, "read", found["patient_id"], "claim", [claim_id])
    return found


# How a claim event names what happened to its invoice.
DONE_ON_INVOICE = {"credit_note": "credited", "write_off": "wrote off", "transfer": "billed to the patient",
                   "refund": "refunded"}


def claim_follows(conn: Connection, principal: Principal, found: dict, done: dict, kind: str) -> None:
    """What a credit (`kind` credit_note, write_off, transfer) or a refund to the insurer (`refund`), `done` on a
    claimed invoice, does to its claim, said in a claim event naming it. A credit note changes what the insurer is
    asked for: a claim not yet paid is `amended` (to be sent again), or `withdrawn` when nothing is left to claim,
    or `paid` when the insurer's remittances already cover it; a paid claim stays paid (never silently reduced):
    the event says what the insurer is owed back, refunded from the invoice. A shortfall written off or billed to
    the patient leaves what was asked as it was, and closes a claim the insurer has paid part of once nothing more
    is owed on it."""
    row = conn.execute(sa.select(claim).where(claim.c.invoice_id == found["id"]).with_for_update()).mappings().first()
    if row is None:
        return
    currency, insurer = found["currency"], payer_name(conn, row["payer_code"])
    owed, remitted = outstanding_on(conn, found), remitted_on(conn, found["id"])
    status, amount = row["status"], row["amount"]
    said = f"{done['number']} {DONE_ON_INVOICE[kind]} {format_money(done['amount'], currency)}"
    said += f" to {insurer}: {done['reason']}" if kind == "refund" else f": {done['reason']}"
    if kind == "credit_note":
        amount = claimed_amount(conn, found)
        said += f"; the claim asks {format_money(amount, currency)} now, {format_money(row['amount'], currency)} before"
        if status == "paid" or (remitted > 0 and owed <= 0):
            status = "paid"
            if owed < 0:
                said += f"; {insurer} paid {format_money(-owed, currency)} more than that, owed back to it"
        elif amount <= 0:
            status = "withdrawn"
            said += f"; nothing is left to claim: tell {insurer} the claim is withdrawn"
        else:
            status = "amended"
            said += f"; send it to {insurer} again"
    elif kind != "refund" and status in ("submitted", "accepted") and owed <= 0:
        status = "paid"
        said += (f"; {insurer} paid {format_money(remitted, currency)} of the {format_money(row['amount'], currency)}"
                 " claimed and nothing more is owed on it")
    conn.execute(sa.update(claim).where(claim.c.id == row["id"]).values(
        status=status, amount=amount, updated_at=sa.func.now(),
        rejection_reason=row["rejection_reason"] if status == "rejected" else None))
    conn.execute(claim_event.insert().values(id=uuid.uuid4(), claim_id=row["id"], status=status, reason=said,
                                             author_id=principal.account_id))
    note_access(conn, principal, "update", row["patient_id"], "claim", [row["id"]], detail={"status": status})


def change_claim_status(conn: Connection, principal: Principal, claim_id: uuid.UUID, status: str,
                        reason: str | None = None) -> dict:
    row = conn.execute(sa.select(claim.c.status, claim.c.patient_id).where(claim.c.id == claim_id)
                       .with_for_update()).first()
    if row is None:
        raise NotFound(f"no claim {claim_id} at this facility", claim_id=str(claim_id))
    if status not in CLAIM_TRANSITIONS.get(row.status, set()):
        allowed = ", ".join(sorted(CLAIM_TRANSITIONS[row.status])) or "none: it is paid"
        raise Conflict(f"a claim that is {row.status} cannot become {status} (allowed next: {allowed})",
                       field="status", current_status=row.status)
    reason = (reason or "").strip() or None
    if status == "rejected" and reason is None:
        raise Invalid("give the insurer's reason for rejecting the claim", field="reason")
    conn.execute(sa.update(claim).where(claim.c.id == claim_id).values(
        status=status, rejection_reason=reason if status == "rejected" else None, updated_at=sa.func.now()))
    conn.execute(claim_event.insert().values(id=uuid.uuid4(), claim_id=claim_id, status=status, reason=reason,
                                             author_id=principal.account_id))
    note_access(conn, principal, "update", row.patient_id, "claim", [claim_id], detail={"status": status})
    return get_claim(conn, principal, claim_id)


def list_claims(conn: Connection, principal: Principal, *, status: str | None = None, limit: int = 200) -> list[dict]:
    query = sa.select(claim).order_by(claim.c.submitted_at.desc()).limit(max(1, min(limit, 500)))
    if status is not None:
        query = query.where(claim.c.status == status)
    rows = [dict(r) for r in conn.execute(query).mappings()]
    note_access(conn, principal, "search", None, "claim", [r["id"] for r in rows])
    return rows
