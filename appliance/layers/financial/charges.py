"""Charges: the revenue event written beside the clinical one, and the credit that undoes it.

A charge is an entry of kind `charge` in the one record: it points at the billable entry
(`source_entry_id`, and the record's `source_root_id`), sits on the encounter's account, and carries
the price the fee schedule gave it that day — or, when the schedule has none, no price and the
reason (`unpriced`), so it waits on the billing clerk's worklist instead of vanishing. It is written
by a reaction, inside the transaction of the clinical act: both are saved or neither is.

A credit is a charge with `reverses` naming the charge it undoes, the negated quantity and amount,
on the same account and service day, so the two net to zero to the cent. Charges are never updated:
pricing an unpriced one is a new version of it (`record.append(..., supersedes=)`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from appliance.layers.financial import schedule
from appliance.layers.financial.models import account, charge
from appliance.layers.financial.money import line_amount
from appliance.substrate import record
from appliance.substrate.db import driver
from appliance.substrate.principal import Principal
from appliance.substrate.record import Entry, entry

# Where a charge lands on the variance report when its fee item names no department.
DEFAULT_DEPARTMENTS = {"lab": "LAB", "imaging": "IMAGING", "procedure": "THEATRE", "medication": "PHARMACY",
                       "blood": "BLOOD"}
CONSULTATION_DEPARTMENTS = {"outpatient": "OPD", "emergency": "ED", "inpatient": "IPD"}


@dataclass(frozen=True)
class Billable:
    """What a billable entry is, for the fee schedule: its kind, its code and how many."""

    item_kind: str  # lab, imaging, procedure, consultation, bed_day, medication, blood
    item_code: str
    description: str  # what to call it when the schedule has no name for it
    department: str
    quantity: Decimal = Decimal(1)
    unit: str | None = None  # a medication's dose unit, matched against the fee item's
    service_at: dt.datetime | None = None  # when the care happened (the source entry's time by default)


def _account_of(conn: Connection, patient_id: uuid.UUID, encounter_id: uuid.UUID | None) -> uuid.UUID | None:
    same_encounter = (account.c.encounter_id.is_(None) if encounter_id is None
                      else account.c.encounter_id == encounter_id)
    return conn.execute(sa.select(account.c.id).where(account.c.patient_id == patient_id, same_encounter)).scalar()


def account_for(conn: Connection, patient_id: uuid.UUID, encounter_id: uuid.UUID | None,
                payer_code: str | None, opened_at: dt.datetime | None = None) -> uuid.UUID:
    """The encounter's account (the patient's own one for care outside an encounter), opened on first use:
    when the first act it bills was written down (`opened_at`; now when not given), so an account of care
    recorded in the past (the demo's year, an import) is not dated the day it was loaded."""
    found = _account_of(conn, patient_id, encounter_id)
    if found is not None:
        return found
    number = sa.func.concat("AC-", sa.func.lpad(sa.cast(sa.func.nextval("account_number_seq"), sa.Text), 7, "0"))
    opened = conn.execute(
        postgresql.insert(account)
        .values(id=uuid.uuid4(), number=number, patient_id=patient_id, encounter_id=encounter_id,
                payer_code=payer_code, **({"opened_at": opened_at} if opened_at is not None else {}))
        .on_conflict_do_nothing(constraint="account_patient_encounter_key").returning(account.c.id)
    ).scalar()
    # Another transaction opened it between our look and our insert: use theirs.
    return opened or _account_of(conn, patient_id, encounter_id)


# Charges written by reactions take ids derived from what they bill, as the nursing layer's derived
# entries do, so the same acts (a seeded demo population, a replayed import) give the same record.
_DERIVED = uuid.UUID("6f1d4c3e-2b7a-5e9f-8c41-0d3a9b6e7f21")


def _derived_id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(_DERIVED, ":".join(str(part) for part in parts))


# Who pays for a patient's care is decided under a lock of that patient's (advisory, held to the end of
# the transaction): a cover recorded after the care takes it alone while it re-prices the patient's
# charges (rebilling.follow_cover); every charge is priced holding it shared. So a charge posted while a
# cover is being saved is either priced once the cover has committed — at the insurer's price — or is
# committed before the re-pricing reads the patient's charges, and is re-priced with them; charges of one
# patient posted together do not wait for one another. The lock is a statement of its own, taken before
# the pricing read: under READ COMMITTED that read then sees a cover committed while we waited.
_PAYER_LOCK = "healthos.financial.payer:{}"
_HOLD_PAYERS_SHARED = "SELECT pg_advisory_xact_lock_shared(hashtextextended(k, 0)) FROM unnest(%(keys)s::text[]) AS k"
_HOLD_PAYER = "SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))"


def hold_payers(conn: Connection, patient_ids: Iterable[uuid.UUID | None]) -> None:
    """Before pricing these patients' charges: their payer locks, shared (waiting for a cover being saved)."""
    keys = sorted({_PAYER_LOCK.format(patient_id) for patient_id in patient_ids if patient_id is not None})
    if keys:
        driver(conn).execute(_HOLD_PAYERS_SHARED, {"keys": keys})


def hold_payer_alone(conn: Connection, patient_id: uuid.UUID) -> None:
    """Before changing who pays for this patient's care: their payer lock, alone (waiting for charges
    being priced)."""
    driver(conn).execute(_HOLD_PAYER, {"key": _PAYER_LOCK.format(patient_id)})


def charge_for(conn: Connection, source: Entry, billable: Billable) -> record.NewEntry:
    """The charge entry billing `source`: priced for the patient and day, on the encounter's account. The
    caller holds the patient's payer lock (`hold_payers`, or `hold_payer_alone` when re-pricing)."""
    service_at = billable.service_at or source.occurred_at
    price = schedule.price_of(conn, kind=billable.item_kind, code=billable.item_code, patient_id=source.patient_id,
                              at=service_at, encounter_id=source.encounter_id, open_account=True,
                              opened_at=source.recorded_at)
    quantity = billable.quantity
    unpriced_reason = None
    if price.price_list is None:
        unpriced_reason = "this facility has no fee schedule"
    elif price.unit_price is None:
        unpriced_reason = (f"no price for {billable.item_kind} {billable.item_code} on price list {price.price_list} "
                           f"on {price.service_date:%d %b %Y}")
    elif billable.item_kind == "medication":
        if _unit_key(billable.unit) != _unit_key(price.unit):
            unpriced_reason = (f"{billable.item_code} is priced per {price.per} {price.unit}, "
                               f"the dose was in {billable.unit or 'no unit'}")
        else:
            quantity = billable.quantity / price.per
    account_id = price.account_id or account_for(conn, source.patient_id, source.encounter_id, price.payer_code,
                                                 source.recorded_at)
    if price.account_id and price.payer_code and price.account_payer is None:
        # Insurance recorded after the account opened: the account now bills the insurer whose prices it carries.
        conn.execute(sa.update(account).where(account.c.id == account_id, account.c.payer_code.is_(None))
                     .values(payer_code=price.payer_code))
    detail = {
        "account_id": account_id,
        "source_entry_id": source.id, "source_root_id": source.root_id, "source_kind": source.kind,
        "item_kind": billable.item_kind, "item_code": billable.item_code,
        "description": price.name if unpriced_reason is None and price.name else billable.description,
        "department": price.department or billable.department, "service_date": price.service_date,
        "quantity": quantity, "currency": price.currency, "price_list": price.price_list,
        "reverses": None,
    }
    if unpriced_reason is None:
        detail |= {"status": "posted", "unit_price": price.unit_price,
                   "amount": line_amount(quantity, price.unit_price, price.currency), "unpriced_reason": None}
    else:
        detail |= {"status": "unpriced", "unit_price": None, "amount": None, "unpriced_reason": unpriced_reason}
    # Posted with the act it bills, in its transaction: at the time the act was recorded (now, but for a
    # replayed past record written in bulk — the demo's year of care — when that act was written down).
    return record.NewEntry(kind="charge", patient_id=source.patient_id, encounter_id=source.encounter_id,
                           detail=detail, id=_derived_id("charge", source.id, billable.item_kind, billable.item_code,
                                                         service_at.isoformat()),
                           occurred_at=source.recorded_at, recorded_at=source.recorded_at)


def _unit_key(unit: str | None) -> str:
    """A dose unit as prices are matched on it: without case or a plural "s" — 4 "tablets" are priced per
    "tablet", as a prescriber writes the one and a fee schedule the other. No dose unit ends in a
    singular "s" (mg, g, mL, IU, tablet, sachet, puff, application...)."""
    return (unit or "").strip().lower().removesuffix("s")


def post_charge(conn: Connection, principal: Principal, source: Entry, billable: Billable) -> Entry:
    """Price `billable` for the patient and day and append its charge, pointing at `source`."""
    hold_payers(conn, [source.patient_id])
    new = charge_for(conn, source, billable)
    return record.append(conn, principal, "charge", patient_id=new.patient_id, encounter_id=new.encounter_id,
                         detail=new.detail, entry_id=new.id)


def post_charges(conn: Connection, principal: Principal, billed: list[tuple[Entry, Billable]]) -> list[Entry]:
    """The bulk path's charges (`record.append_many` reacting to many entries at once): each priced as
    `post_charge` prices it, all written together — one insert and one audit note per patient."""
    hold_payers(conn, [source.patient_id for source, _ in billed])
    return record.append_many(conn, principal, [charge_for(conn, source, billable) for source, billable in billed])


_CURRENT_CHARGE = entry.alias("current_charge")
_CREDIT = charge.alias("credit")


def open_charges(conn: Connection, *where: sa.ColumnElement[bool]) -> list[dict]:
    """Current versions of the charges (`where`: of a record, of an account...) that no credit has reversed
    yet, oldest care first."""
    return [dict(row) for row in conn.execute(
        sa.select(entry.c.id, entry.c.root_id, entry.c.patient_id, entry.c.encounter_id,
                  *[c for c in charge.c if c.name != "entry_id"])
        .select_from(entry.join(charge, charge.c.entry_id == entry.c.id))
        .where(charge.c.reverses.is_(None), record.current_clause(),
               ~sa.exists().where(_CREDIT.c.reverses == entry.c.root_id), *where)
        .order_by(charge.c.service_date, entry.c.recorded_at)
    ).mappings()]


def credit_charge(conn: Connection, principal: Principal, billed: dict, cause: Entry, *,
                  entry_id: uuid.UUID | None = None, reason: str | None = None) -> Entry:
    """The credit undoing one open charge (a row of `open_charges`), written because of `cause`."""
    return record.append(conn, principal, "charge", patient_id=billed["patient_id"], reason=reason,
                         entry_id=entry_id or _derived_id("credit", billed["id"], cause.id),
                         encounter_id=billed["encounter_id"], detail={
        "account_id": billed["account_id"], "source_entry_id": cause.id, "source_root_id": cause.root_id,
        "source_kind": cause.kind, "item_kind": billed["item_kind"], "item_code": billed["item_code"],
        "description": f"Credit: {billed['description']}", "department": billed["department"],
        "service_date": billed["service_date"], "quantity": -billed["quantity"],
        "unit_price": billed["unit_price"], "amount": None if billed["amount"] is None else -billed["amount"],
        "currency": billed["currency"], "price_list": billed["price_list"], "status": billed["status"],
        "unpriced_reason": billed["unpriced_reason"], "reverses": billed["root_id"],
    })


def reverse_charges(conn: Connection, principal: Principal, cause: Entry) -> list[Entry]:
    """Credit every open charge of the record `cause` belongs to (it was cancelled or entered in error)."""
    return [credit_charge(conn, principal, billed, cause)
            for billed in open_charges(conn, charge.c.source_root_id == cause.root_id)]


def rebilled_id(charge_id: uuid.UUID, because: uuid.UUID) -> uuid.UUID:
    """The id `rebill_charge` gives the charge that bills `charge_id` again because of `because`."""
    return _derived_id("rebilled", charge_id, because)


def rebill_charge(conn: Connection, principal: Principal, billed: dict, source: Entry, billable: Billable, *,
                  because: uuid.UUID, reason: str) -> Entry:
    """Bill `billed` (an open charge for `source`) again at the price its patient's payer has for its day
    now, on the same account: a posted charge is credited and a new one posted beside it, so the old
    price nets to zero and the record keeps both; an unpriced one, with nothing to credit, gets a new
    version (as pricing it by hand does). The entries' ids derive from the charge and `because` (what
    changed the price), so one cause bills a charge again once, and what it did can be found again."""
    new = charge_for(conn, source, billable)
    detail = {**new.detail, "account_id": billed["account_id"]}
    new_id = rebilled_id(billed["id"], because)
    if billed["status"] == "unpriced":
        return record.append(conn, principal, "charge", patient_id=billed["patient_id"], detail=detail,
                             encounter_id=billed["encounter_id"], supersedes=billed["id"], reason=reason,
                             entry_id=new_id)
    credit_charge(conn, principal, billed, source, entry_id=_derived_id("credit", billed["id"], because),
                  reason=reason)
    return record.append(conn, principal, "charge", patient_id=billed["patient_id"], detail=detail,
                         encounter_id=billed["encounter_id"], reason=reason, entry_id=new_id)


def reconcile(conn: Connection, principal: Principal, version: Entry, billable: Billable | None) -> None:
    """After a new version of a billable record: bill it if it has become billable and is not billed,
    credit it if it is billed and no longer billable (`billable` None), else leave it alone — so an
    amendment that changes nothing billable (an order's priority) changes nothing on the bill."""
    billed = bool(open_charges(conn, charge.c.source_root_id == version.root_id))
    if billable is not None and not billed:
        post_charge(conn, principal, version, billable)
    elif billable is None and billed:
        reverse_charges(conn, principal, version)
