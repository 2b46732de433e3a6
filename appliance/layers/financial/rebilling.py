"""Insurance recorded after the care: the patient's open accounts follow the new cover.

The card is often shown at the cashier, after the care was charged at the self-pay prices. When a cover
is recorded (`service.add_coverage`, in the same transaction), each of the patient's accounts that
bills the patient (no payer, or a payer of kind `self_pay` other than the cover's), has no final invoice
and holds open charges dated inside the cover's validity is switched to the cover's payer, and those
charges are billed again (`charges.rebill_charge`: a credit and a new charge; an unpriced one a new
version), priced by the one look-up that prices every charge (`charges.charge_for` →
`schedule.price_of`), so the bill is the one the card would have given at the door. A draft invoice
follows its account's payer (its lines and figures are the account's uninvoiced charges).

Left alone, and said so: an account with a final invoice (what was billed stands; a refund or credit is
the cashier's decision), an account that already bills an insurer, the same cover's one included (a
cover recorded twice bills nothing again), and charges dated outside the cover (their self-pay prices
stay). A second insurer recorded later therefore changes only accounts that still bill the patient.

An order placed while the cover is being saved is billed once, at the insurer's price: the re-pricing
holds the patient's payer lock alone, and every charge is priced holding it shared (charges.py), so the
order's charge is either priced after the cover commits, or committed before the re-pricing reads the
patient's charges and re-priced with them.

What a cover did is read back from the record (`outcome`): the charges it posted have ids derived from
the charge they replace and the cover, so the API's answer and the page the clerk lands on after
recording it say the same thing, from the same rows.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.financial.charges import hold_payer_alone, open_charges, rebill_charge, rebilled_id
from appliance.layers.financial.models import account, charge, invoice, invoice_line, payer
from appliance.layers.financial.money import ZERO, format_money
from appliance.layers.financial.reactions import billable_again
from appliance.substrate import record
from appliance.substrate.principal import Principal
from appliance.substrate.record import entry, note_access


def _in_cover(cover: dict) -> sa.ColumnElement[bool]:
    starts = charge.c.service_date >= cover["valid_from"]
    return starts if cover["valid_to"] is None else sa.and_(starts, charge.c.service_date <= cover["valid_to"])


def _accounts(conn: Connection, ids: set[uuid.UUID]) -> list[dict]:
    """The accounts, with the kind of payer each bills (None: the patient, by default) and its first final
    invoice's number, if any."""
    final = (sa.select(invoice.c.number).where(invoice.c.account_id == account.c.id, invoice.c.status == "final")
             .order_by(invoice.c.finalised_at).limit(1).scalar_subquery())
    return [dict(r) for r in conn.execute(
        sa.select(account.c.id, account.c.number, account.c.patient_id, account.c.payer_code,
                  payer.c.name.label("payer_name"), payer.c.kind.label("payer_kind"), final.label("final_invoice"))
        .select_from(account.outerjoin(payer, payer.c.code == account.c.payer_code))
        .where(account.c.id.in_(ids)).order_by(account.c.opened_at)).mappings()]


def _bills_patient(found: dict, cover: dict) -> bool:
    return found["payer_code"] is None or (found["payer_kind"] == "self_pay"
                                           and found["payer_code"] != cover["payer_code"])


def follow_cover(conn: Connection, principal: Principal, cover: dict) -> None:
    """Switch the patient's accounts the cover reaches to its payer and bill their charges again (see the
    module's docstring for which)."""
    # Charges being priced for the patient now are waited for, and none is priced until this commits
    # (charges.py): one posted meanwhile is either among the charges read below or priced for the insurer.
    hold_payer_alone(conn, cover["patient_id"])
    # Two covers recorded at once for one patient take turns: the second reads the accounts and charges as
    # the first left them (and finds them billing its insurer) instead of crediting the same charges twice.
    conn.execute(sa.select(account.c.id).where(account.c.patient_id == cover["patient_id"])
                 .order_by(account.c.id).with_for_update())
    not_invoiced = ~sa.exists().where(invoice_line.c.charge_root_id == entry.c.root_id)
    in_cover = open_charges(conn, entry.c.patient_id == cover["patient_id"], _in_cover(cover), not_invoiced)
    by_account: dict[uuid.UUID, list[dict]] = {}
    for billed in in_cover:
        by_account.setdefault(billed["account_id"], []).append(billed)
    reason = (f"insurance recorded after the care: {cover['payer_code']} from {cover['valid_from']:%Y-%m-%d}"
              + (f" to {cover['valid_to']:%Y-%m-%d}" if cover["valid_to"] else ""))
    for found in _accounts(conn, set(by_account)):
        if not _bills_patient(found, cover) or found["final_invoice"] is not None:
            continue
        conn.execute(sa.update(account).where(account.c.id == found["id"]).values(payer_code=cover["payer_code"]))
        drafts = list(conn.execute(sa.update(invoice).where(invoice.c.account_id == found["id"],
                                                            invoice.c.status == "draft")
                                   .values(payer_code=cover["payer_code"]).returning(invoice.c.id)).scalars())
        note_access(conn, principal, "update", found["patient_id"], "account", [found["id"]],
                    detail={"payer_code": cover["payer_code"], "coverage_id": str(cover["id"])})
        if drafts:
            note_access(conn, principal, "update", found["patient_id"], "invoice", drafts,
                        detail={"payer_code": cover["payer_code"]})
        for billed in by_account[found["id"]]:
            source = record.get_entry(conn, billed["source_entry_id"])
            billable = billable_again(conn, source, billed)
            if billable is not None:  # a charge no reaction here posted keeps its price
                rebill_charge(conn, principal, billed, source, billable, because=cover["id"], reason=reason)


def _charges(count: int, verb: str) -> str:
    """'1 charge stays', '3 charges stay'."""
    return f"1 charge {verb}s" if count == 1 else f"{count} charges {verb}"


def outcome(conn: Connection, cover: dict, currency: str) -> list[dict]:
    """What `cover` did to each of its patient's accounts holding care in its dates: switched (how many
    charges billed again, the amounts before and after, which stay as they were), or left alone and why.
    Not audited: the caller notes the read."""
    charges_of_patient = [dict(r) for r in conn.execute(
        sa.select(entry.c.id, charge.c.account_id, charge.c.service_date, charge.c.amount,
                  _in_cover(cover).label("in_cover"))
        .select_from(entry.join(charge, charge.c.entry_id == entry.c.id))
        .where(entry.c.patient_id == cover["patient_id"], charge.c.reverses.is_(None))).mappings()]
    wanted = {rebilled_id(c["id"], cover["id"]): c for c in charges_of_patient}
    rebilled = {r["id"]: dict(r) for r in conn.execute(
        sa.select(charge.c.entry_id.label("id"), charge.c.amount, charge.c.status)
        .where(charge.c.entry_id.in_(list(wanted)))).mappings()} if wanted else {}
    reached = {c["account_id"] for c in charges_of_patient if c["in_cover"]}
    results = []
    for found in _accounts(conn, reached):
        pairs = [(old, rebilled[new_id]) for new_id, old in wanted.items()
                 if new_id in rebilled and old["account_id"] == found["id"]]
        row = {"account_id": found["id"], "number": found["number"], "payer_code": found["payer_code"],
               "payer_name": found["payer_name"] or "Self-pay", "final_invoice": found["final_invoice"],
               "rebilled": len(pairs), "unpriced": sum(1 for _, new in pairs if new["status"] == "unpriced"),
               "amount_before": sum((old["amount"] or ZERO for old, _ in pairs), ZERO),
               "amount_after": sum((new["amount"] or ZERO for _, new in pairs), ZERO),
               "before_cover": 0, "after_cover": 0, "currency": currency}
        if pairs:
            row["outcome"] = "switched"
            kept = open_charges(conn, charge.c.account_id == found["id"], ~_in_cover(cover))
            row["before_cover"] = sum(1 for c in kept if c["service_date"] < cover["valid_from"])
            row["after_cover"] = len(kept) - row["before_cover"]
        elif found["payer_code"] is not None and not _bills_patient(found, cover):
            row["outcome"] = "already_insured"
        elif found["final_invoice"] is not None:
            row["outcome"] = "final_invoice"
        else:  # nothing of it was open in the cover's dates (credited, or a charge no reaction posted)
            continue
        row["summary"] = _summary(row)
        results.append(row)
    return results


def _summary(row: dict) -> str:
    money = lambda amount: format_money(amount, row["currency"])  # noqa: E731 -- a local shorthand
    if row["outcome"] == "already_insured":
        return f"{row['number']} already bills {row['payer_name']}; it is left as it is."
    if row["outcome"] == "final_invoice":
        return (f"{row['number']} is left as it is: its invoice {row['final_invoice']} is final; a refund or "
                "credit is the cashier's decision.")
    said = (f"{row['number']} now bills {row['payer_name']}: {row['rebilled']} "
            f"{'charge' if row['rebilled'] == 1 else 'charges'} re-priced on its price list "
            f"({money(row['amount_before'])} → {money(row['amount_after'])})")
    if row["unpriced"]:
        said += f"; {_charges(row['unpriced'], 'wait')} on the worklist: that list has no price for them"
    if row["before_cover"]:
        said += f"; {_charges(row['before_cover'], 'stay')} at the earlier price: dated before the cover's start"
    if row["after_cover"]:
        said += f"; {_charges(row['after_cover'], 'stay')} at the earlier price: dated after the cover's end"
    return said + "."

