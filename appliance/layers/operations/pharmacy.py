"""The outpatient pharmacy: what it stocks, its stock ledger, and dispensing against prescriptions.

- **Items** (`pharmacy_item`): a medicine named as prescriptions name it (the queue matches an item to a
  prescription by the drug's name, case aside), its form and strength, the unit it is counted and handed
  over in, and its reorder level.
- **The stock ledger** (`stock_movement`, append-only): goods received (batch, expiry, the delivery's
  reference), adjustments (expired, damaged, counted, other, with the reason) and dispensings. Stock on
  hand is the ledger's sum, per batch and per item; a batch past its expiry is not on hand but listed apart
  as expired, for the pharmacist to adjust out. An item is *low* at or below its reorder level, *out* at none.
- **Dispensing**: the queue is the active prescriptions of outpatient visits, and those linked to no
  encounter (written after the visit ended, or for a patient who came to the window with a paper one; a
  ward's prescriptions are the ward's), written in the last `QUEUE_DAYS` days, today's first, not yet
  dispensed, or dispensed in part. A dispense is a `dispense`
  entry of the record (patient data: the prescription, item, batch, quantity) and, in the same
  transaction, the ledger's `dispensed` row. The dispensing act writes both itself rather than through a
  reaction on `dispense`: the stock must be checked, under the item's lock, *before* anything is written,
  so that a dispense beyond what is on hand is refused whole (409, saying what is left) and two
  pharmacists handing over the last units cannot both succeed; and the kind and the ledger are this
  layer's own (reactions are for another layer's entries). Batches go earliest expiry first (FEFO). With no
  quantity given, the rest of the course is handed over (`course_quantity`: dose × doses a day × days, the
  frequency read by `substrate.regimen` as the ward's drug round reads it).
- **Reversing a dispense** recorded by mistake, with a reason, on the day it was recorded: the entry is entered
  in error (a new version; nothing deleted), the ledger's `reversed` row puts the quantity back into its batch,
  and the financial layer credits the charge by its own reaction to the new version. The prescription is back
  on the queue. After its day the medicine has left the pharmacy and a reversal would put back, unseen, what
  may never come back: what is brought back is a return, and a dispense recorded on the wrong patient is
  corrected by a return of its whole quantity with the reason "wrong patient" (and a dispense to the right one).
- **A return**: medicine a patient (or a ward) brings back, days later, against the dispense that handed it
  over: a `dispense_return` entry of the record (a new record of its own; the dispense is never rewritten)
  with the quantity (at most what that dispense handed over less what was brought back before), its
  condition and why. The ledger's `returned` row takes it back into its batch; not fit to restock (opened,
  spoilt, its batch expired), a `quarantined` row takes it out again at once, to be destroyed. The financial
  layer's reaction to the return bills the dispense again for what the patient kept (the charge credited, a
  charge for the rest posted beside it), so the account is credited the returned quantity's price.

Every write to an item's stock takes the item's row lock first (`_locked_item`), so the sum read after it
(a new statement, READ COMMITTED) includes whatever the transaction that held the lock committed.
Stock acts are audited as operations acts (`pharmacy.*` events, no patient); dispensing is noted on the
patient's record by `record.append`, and every read of prescriptions or dispenses by `note_access`.
The clinical tables (prescriptions, encounters, patients) are read by SQL; no other layer is imported.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections import defaultdict
from decimal import Decimal

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection

from appliance.layers.operations.errors import Conflict, Invalid, NotFound
from appliance.layers.operations.models import ADJUSTMENT_REASONS, RETURN_CONDITIONS, pharmacy_item, stock_movement
from appliance.layers.operations.service import require_patient
from appliance.substrate import audit, record
from appliance.substrate.principal import Principal
from appliance.substrate.record import note_access, note_list_read
from appliance.substrate.regimen import doses_a_day, regimen

log = structlog.get_logger(__name__)

# An outpatient prescription older than this has been collected elsewhere or not at all; the queue is today's work.
QUEUE_DAYS = 30


def amount(value: Decimal | int | float) -> int | float:
    """A quantity as JSON and a person read it: 20, not 20.000."""
    value = Decimal(value)
    return int(value) if value == value.to_integral_value() else float(value)


def _text(value: Decimal | int | float) -> str:
    return f"{amount(value)}"


def counted(quantity: Decimal | int | float, unit: str) -> str:
    """A quantity with its unit as a person says it: "1 capsule", "10 capsules", but "2.5 ml" (a measure's
    abbreviation, as a unit of four letters or fewer with a capital or a digit is read, takes no plural)."""
    text = _text(quantity)
    word = unit.strip()
    # A counted thing is a lower-case word (capsule, tablet, sachet, tube); ml, mg, IU, g are measures.
    if Decimal(quantity) != 1 and len(word) > 3 and word.isalpha() and word.islower() and not word.endswith("s"):
        word += "s"
    return f"{text} {word}"


def label(item: dict) -> str:
    """An item as a shelf label reads: "Amoxicillin 500 mg capsule"."""
    strength = f" {_text(item['strength'])} {item['strength_unit']}" if item.get("strength") is not None else ""
    return f"{item['drug']}{strength} {item['form']}"


# -- items -------------------------------------------------------------------------------------------

ITEM_COLUMNS = (pharmacy_item.c.id, pharmacy_item.c.drug, pharmacy_item.c.form, pharmacy_item.c.strength,
                pharmacy_item.c.strength_unit, pharmacy_item.c.unit, pharmacy_item.c.reorder_level)


def create_item(conn: Connection, principal: Principal, *, drug: str, form: str, unit: str,
                strength: Decimal | None = None, strength_unit: str | None = None,
                reorder_level: Decimal = Decimal(0)) -> dict:
    """A medicine the pharmacy will stock. The same drug, form, strength and unit twice is refused (409)."""
    if (strength is None) != (strength_unit is None):
        raise Invalid("give the strength with its unit (500 and mg), or neither", field="strength_unit")
    same = conn.execute(sa.select(pharmacy_item.c.id).where(
        sa.func.lower(pharmacy_item.c.drug) == drug.lower(), sa.func.lower(pharmacy_item.c.form) == form.lower(),
        pharmacy_item.c.strength.is_(None) if strength is None else pharmacy_item.c.strength == strength,
        sa.func.lower(pharmacy_item.c.unit) == unit.lower())).scalar()
    if same is not None:
        raise Conflict("the pharmacy already stocks this item", field="drug", item_id=str(same))
    item = {"id": uuid.uuid4(), "drug": drug, "form": form, "strength": strength, "strength_unit": strength_unit,
            "unit": unit, "reorder_level": reorder_level}
    conn.execute(pharmacy_item.insert().values(**item))
    audit.append(conn, tenant=conn.info["healthos_tenant"], principal=principal, event_type="pharmacy.item.create",
                 action="C", entity={"kind": "pharmacy_item", "ids": [str(item["id"])], "count": 1})
    return {**item, "on_hand": Decimal(0), "expired": Decimal(0), "status": "out", "batches": []}


def _locked_item(conn: Connection, item_id: uuid.UUID, field: str = "item_id") -> dict:
    """The item, its row locked until the transaction ends: every stock write on it waits its turn."""
    row = conn.execute(sa.select(*ITEM_COLUMNS).where(pharmacy_item.c.id == item_id)
                       .with_for_update()).mappings().first()
    if row is None:
        raise NotFound(f"the pharmacy has no item {item_id}", field=field)
    return dict(row)


def _batches(conn: Connection, item_ids: list[uuid.UUID] | None = None) -> dict[uuid.UUID, list[dict]]:
    """Each item's batches with stock left, earliest expiry first."""
    query = (sa.select(stock_movement.c.item_id, stock_movement.c.batch,
                       sa.func.min(stock_movement.c.expires_on).label("expires_on"),
                       sa.func.sum(stock_movement.c.quantity).label("on_hand"))
             .group_by(stock_movement.c.item_id, stock_movement.c.batch)
             .having(sa.func.sum(stock_movement.c.quantity) != 0)
             .order_by(sa.text("expires_on"), stock_movement.c.batch))
    if item_ids is not None:
        query = query.where(stock_movement.c.item_id.in_(item_ids))
    found: dict[uuid.UUID, list[dict]] = defaultdict(list)
    for row in conn.execute(query).mappings():
        found[row["item_id"]].append({"batch": row["batch"], "expires_on": row["expires_on"],
                                      "on_hand": row["on_hand"]})
    return found


def _with_stock(item: dict, batches: list[dict], today: dt.date) -> dict:
    usable = [b | {"expired": False} for b in batches if b["expires_on"] >= today]
    expired = [b | {"expired": True} for b in batches if b["expires_on"] < today]
    on_hand = sum((b["on_hand"] for b in usable), Decimal(0))
    status = "out" if on_hand <= 0 else "low" if on_hand <= item["reorder_level"] else "ok"
    return {**item, "on_hand": on_hand, "expired": sum((b["on_hand"] for b in expired), Decimal(0)),
            "status": status, "batches": usable + expired}


def stock(conn: Connection, today: dt.date, status: str | None = None) -> list[dict]:
    """Every item with its stock on hand, by batch (earliest expiry first, expired ones last); `status`
    "low" gives those at or below their reorder level with some left, "out" those with none usable."""
    items = [dict(row) for row in conn.execute(sa.select(*ITEM_COLUMNS).order_by(
        sa.func.lower(pharmacy_item.c.drug), pharmacy_item.c.form, pharmacy_item.c.strength)).mappings()]
    batches = _batches(conn)
    listed = [_with_stock(item, batches.get(item["id"], []), today) for item in items]
    return [item for item in listed if status is None or item["status"] == status]


def item_stock(conn: Connection, item_id: uuid.UUID, today: dt.date) -> dict:
    row = conn.execute(sa.select(*ITEM_COLUMNS).where(pharmacy_item.c.id == item_id)).mappings().first()
    if row is None:
        raise NotFound(f"the pharmacy has no item {item_id}", field="item_id")
    return _with_stock(dict(row), _batches(conn, [item_id]).get(item_id, []), today)


def _batch_of(conn: Connection, item_id: uuid.UUID, batch: str) -> dict | None:
    row = conn.execute(sa.select(sa.func.min(stock_movement.c.expires_on).label("expires_on"),
                                 sa.func.coalesce(sa.func.sum(stock_movement.c.quantity), 0).label("on_hand"),
                                 sa.func.count().label("movements"))
                       .where(stock_movement.c.item_id == item_id, stock_movement.c.batch == batch)).mappings().one()
    return dict(row) if row["movements"] else None


def _move(conn: Connection, principal: Principal, item_id: uuid.UUID, batch: str, expires_on: dt.date, kind: str,
          quantity: Decimal, *, reason: str | None = None, reference: str | None = None,
          dispense_entry_id: uuid.UUID | None = None, recorded_at: dt.datetime | None = None) -> dict:
    row = {"id": uuid.uuid4(), "item_id": item_id, "batch": batch, "expires_on": expires_on, "kind": kind,
           "quantity": quantity, "reason": reason, "reference": reference, "dispense_entry_id": dispense_entry_id,
           "recorded_by": principal.account_id}
    if recorded_at is not None:  # a replay of a past day's dispensing (the demo): the ledger keeps its time
        row["recorded_at"] = recorded_at
    recorded_at = conn.execute(stock_movement.insert().values(**row).returning(stock_movement.c.recorded_at)).scalar()
    return row | {"recorded_at": recorded_at}


def receive(conn: Connection, principal: Principal, item_id: uuid.UUID, *, batch: str, expires_on: dt.date,
            quantity: Decimal, reference: str | None, today: dt.date, at: dt.datetime | None = None) -> dict:
    """Goods received into the pharmacy: a batch with its expiry, from a delivery (`reference`). A batch
    already received keeps the expiry it was received with; one already expired is not taken in. `at`:
    when, for a replay of past days (the demo); now otherwise."""
    _locked_item(conn, item_id)
    if expires_on < today:
        raise Invalid(f"batch {batch} expired on {expires_on}: it cannot be taken into stock", field="expires_on")
    known = _batch_of(conn, item_id, batch)
    if known is not None and known["expires_on"] != expires_on:
        raise Conflict(f"batch {batch} of this item was received with expiry {known['expires_on']}; check the "
                       "batch number or the expiry on the pack", field="expires_on")
    moved = _move(conn, principal, item_id, batch, expires_on, "received", quantity, reference=reference,
                  recorded_at=at)
    audit.append(conn, tenant=conn.info["healthos_tenant"], principal=principal, event_type="pharmacy.stock.receive",
                 action="C", entity={"kind": "stock_movement", "ids": [str(moved["id"])], "count": 1})
    log.info("pharmacy_stock_received", tenant=conn.info["healthos_tenant"], item=str(item_id),
             quantity=_text(quantity))
    return moved


def adjust(conn: Connection, principal: Principal, item_id: uuid.UUID, *, batch: str, quantity: Decimal,
           reason: str, note: str | None) -> dict:
    """A correction of a batch's stock: expired or damaged units taken out, or a count's difference in or
    out. Never below nothing; "other" says why in `note`."""
    if reason not in ADJUSTMENT_REASONS:
        raise Invalid(f"an adjustment's reason is one of {', '.join(ADJUSTMENT_REASONS)}", field="reason")
    if reason == "other" and not note:
        raise Invalid("say what the adjustment is for", field="note")
    if reason in {"expired", "damaged"} and quantity > 0:
        raise Invalid(f"{reason} units are taken out of stock: give a negative quantity", field="quantity")
    _locked_item(conn, item_id)
    known = _batch_of(conn, item_id, batch)
    if known is None:
        raise Invalid(f"no batch {batch} of this item has been received", field="batch")
    if known["on_hand"] + quantity < 0:
        raise Conflict(f"only {_text(known['on_hand'])} left in batch {batch}: {_text(-quantity)} cannot be taken "
                       "out", field="quantity", on_hand=amount(known["on_hand"]))
    moved = _move(conn, principal, item_id, batch, known["expires_on"], "adjusted", quantity, reason=reason,
                  reference=note)
    audit.append(conn, tenant=conn.info["healthos_tenant"], principal=principal, event_type="pharmacy.stock.adjust",
                 action="U", entity={"kind": "stock_movement", "ids": [str(moved["id"])], "count": 1},
                 detail={"reason": reason})
    return moved


# -- dispensing --------------------------------------------------------------------------------------

_PRESCRIPTION = sa.text("""
    SELECT e.root_id, e.patient_id, e.encounter_id, mr.drug, mr.dose, mr.dose_unit, mr.frequency, mr.duration_days,
           mr.status, enc.encounter_class
    FROM entry v JOIN entry e ON e.root_id = v.root_id
    JOIN medication_request mr ON mr.entry_id = e.id
    LEFT JOIN encounter enc ON enc.id = e.encounter_id
    WHERE v.id = :id AND v.kind = 'medication_request'
      AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = e.id)
""")

_DISPENSED = sa.text("""
    SELECT d.medication_request_id, sum(d.quantity) AS dispensed, count(*) AS times,
           (array_agg(d.partial ORDER BY de.recorded_at DESC))[1] AS partial,
           (array_agg(d.item_id ORDER BY de.recorded_at DESC))[1] AS item_id,
           (array_agg(d.unit ORDER BY de.recorded_at DESC))[1] AS unit,
           max(de.occurred_at) AS last_dispensed_at
    FROM dispense d JOIN entry de ON de.id = d.entry_id
    WHERE d.medication_request_id = ANY(:roots)
      AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = de.id)  -- a dispense reversed handed nothing over
    GROUP BY d.medication_request_id
""")


def _dispensed(conn: Connection, roots: list[uuid.UUID]) -> dict[uuid.UUID, dict]:
    if not roots:
        return {}
    return {row["medication_request_id"]: dict(row) for row in conn.execute(_DISPENSED, {"roots": roots}).mappings()}


def course_quantity(prescription: dict, item: dict) -> int | None:
    """The prescription's whole course in the item's unit (dose × doses a day × days, rounded up to whole
    units; a single dose for "stat"), or None where it cannot be worked out from what was written: a
    frequency the drug round does not read (as needed, "with meals"), no duration, or a dose in neither the
    item's strength unit nor its own unit."""
    dose_unit = prescription["dose_unit"].strip().lower()
    if item.get("strength") and (item.get("strength_unit") or "").lower() == dose_unit:
        per_dose = Decimal(prescription["dose"]) / Decimal(item["strength"])
    elif dose_unit in {item["unit"].lower(), item["unit"].lower() + "s"}:
        per_dose = Decimal(prescription["dose"])
    else:
        return None
    plan = regimen(prescription["frequency"])
    if plan.kind == "once":
        return math.ceil(per_dose)
    per_day = doses_a_day(plan)
    if per_day is None or not prescription.get("duration_days"):
        return None
    return math.ceil(per_dose * per_day * prescription["duration_days"])


def _proposed_quantity(prescription: dict, item: dict, dispensed_before: Decimal) -> Decimal:
    """What to hand over when the pharmacist gives no quantity: the rest of the course."""
    course = course_quantity(prescription, item)
    if course is None:
        raise Invalid(f"give the quantity: the course of {prescription['drug']} {_text(prescription['dose'])} "
                      f"{prescription['dose_unit']}, {prescription['frequency']}"
                      f"{'' if prescription.get('duration_days') else ', no duration'} cannot be counted in "
                      f"{item['unit']}", field="quantity")
    rest = Decimal(course) - dispensed_before
    if rest <= 0:
        raise Invalid(f"give the quantity: the course prescribed ({course} {item['unit']}) has been handed over "
                      "already", field="quantity")
    return rest


def dispense_medicine(conn: Connection, principal: Principal, *, medication_request_id: uuid.UUID,
                      item_id: uuid.UUID, quantity: Decimal | None, today: dt.date, batch: str | None = None,
                      partial: bool = False, at: dt.datetime | None = None) -> dict:
    """Hand over `quantity` of an item against an outpatient prescription, from `batch` or the batch that
    expires first; no `quantity`: the rest of the course (`course_quantity` less what was dispensed), 422
    where the course cannot be counted. Refused whole, writing nothing, when the stock on hand (of that
    batch) is short (409, saying what is left), when the item is another drug than prescribed (422), or when
    the prescription is not active, a ward stay's, or already dispensed in full (409). `partial`: the
    patient comes back for the rest, and the prescription stays on the queue. `at`: when it was handed
    over, for a replay of past days (the demo); now otherwise."""
    item = _locked_item(conn, item_id)
    found = conn.execute(_PRESCRIPTION, {"id": medication_request_id}).mappings().first()
    if found is None:
        raise NotFound(f"no prescription {medication_request_id} at this facility", field="medication_request_id")
    if found["status"] != "active":
        raise Conflict(f"this prescription is {found['status']}: it is not dispensed", field="medication_request_id")
    if found["encounter_id"] is not None and found["encounter_class"] != "outpatient":
        raise Conflict("the outpatient pharmacy dispenses prescriptions of outpatient visits, and this one is "
                       f"of an {found['encounter_class']} encounter", field="medication_request_id")
    # One dispense of a prescription at a time, whichever item it is filled from (the item's lock does not
    # cover two items of one drug): the second waits, then sees the first's dispense if it was in full.
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(
        f"healthos.pharmacy.dispense:{found['root_id']}", 0))))
    before = _dispensed(conn, [found["root_id"]]).get(found["root_id"])
    if before is not None and not before["partial"]:
        raise Conflict("this prescription has already been dispensed in full", field="medication_request_id")
    if item["drug"].lower() != found["drug"].lower():
        raise Invalid(f"{label(item)} is not {found['drug']}, the drug prescribed", field="item_id")
    proposed = quantity is None
    if quantity is None:
        quantity = _proposed_quantity(dict(found), item, before["dispensed"] if before is not None else Decimal(0))
    batches = [b for b in _batches(conn, [item_id]).get(item_id, []) if b["on_hand"] > 0]
    usable = [b for b in batches if b["expires_on"] >= today]
    left = sum((b["on_hand"] for b in usable), Decimal(0))
    unit = item["unit"]
    if batch:
        chosen = next((b for b in batches if b["batch"] == batch), None)
        if chosen is None:
            raise Conflict(f"batch {batch} of {label(item)} has none left ({_text(left)} {unit} on hand in all)",
                           field="batch", on_hand=amount(left), batch_on_hand=0)
        if chosen["expires_on"] < today:
            raise Conflict(f"batch {batch} expired on {chosen['expires_on']}: it is not dispensed", field="batch")
    elif not usable:
        raise Conflict(f"{label(item)} is out of stock: none left to dispense", field="item_id", on_hand=0)
    else:
        chosen = usable[0]
    if quantity > chosen["on_hand"]:
        more = (f"; {_text(left)} {unit} on hand in all, dispense what batch {chosen['batch']} holds and then the "
                "rest from the next batch") if left > chosen["on_hand"] else ""
        raise Conflict(f"only {_text(chosen['on_hand'])} {unit} of {label(item)} left in batch {chosen['batch']}"
                       f"{more}", field="quantity", on_hand=amount(left), batch_on_hand=amount(chosen["on_hand"]),
                       batch=chosen["batch"])
    written = record.append(conn, principal, "dispense", patient_id=found["patient_id"],
                            encounter_id=found["encounter_id"], occurred_at=at,
                            detail={"medication_request_id": found["root_id"], "item_id": item_id,
                                    "batch": chosen["batch"], "quantity": quantity, "unit": unit, "partial": partial})
    _move(conn, principal, item_id, chosen["batch"], chosen["expires_on"], "dispensed", -quantity,
          dispense_entry_id=written.id, recorded_at=at)
    log.info("pharmacy_dispensed", tenant=conn.info["healthos_tenant"], item=str(item_id), quantity=_text(quantity))
    return {"id": written.id, "patient_id": found["patient_id"], "medication_request_id": found["root_id"],
            "item_id": item_id, "item": label(item), "batch": chosen["batch"], "expires_on": chosen["expires_on"],
            "quantity": quantity, "quantity_proposed": proposed, "unit": unit, "partial": partial,
            "dispensed_at": written.occurred_at, "on_hand_after": left - quantity}


_DISPENSE_OF = sa.text("""
    SELECT e.id, e.patient_id, e.encounter_id, e.occurred_at, d.medication_request_id, d.item_id, d.batch,
           d.quantity, d.unit,
           EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = e.id) AS reversed,
           (SELECT COALESCE(sum(r.quantity), 0) FROM dispense_return r WHERE r.dispense_id = e.id) AS returned
    FROM entry e JOIN dispense d ON d.entry_id = e.id
    WHERE e.id = :id AND e.kind = 'dispense'
""")


def _dispense_locked(conn: Connection, dispense_id: uuid.UUID) -> tuple[dict, dict]:
    """The dispense and its item, the item's row locked first: read after the lock, what a reversal or a return
    of the same dispense a moment ago wrote has committed, and is seen."""
    item_id = conn.execute(sa.text("SELECT d.item_id FROM entry e JOIN dispense d ON d.entry_id = e.id "
                                   "WHERE e.id = :id AND e.kind = 'dispense'"), {"id": dispense_id}).scalar()
    if item_id is None:
        raise NotFound(f"the pharmacy has no dispense {dispense_id}", field="dispense_id")
    item = _locked_item(conn, item_id)
    return dict(conn.execute(_DISPENSE_OF, {"id": dispense_id}).mappings().one()), item


def reverse_dispense(conn: Connection, principal: Principal, dispense_id: uuid.UUID, *, reason: str,
                     today_start: dt.datetime) -> dict:
    """Undo a dispense recorded by mistake today (the wrong patient, the wrong quantity, a patient who left
    without the medicine), saying why: the `dispense` entry is superseded by an "entered in error" version (both
    stay readable; `record.retract`, which audits it), and the ledger takes a `reversed` row putting the quantity
    back into its batch. The financial layer's reaction to the new version credits its charge, in this
    transaction. Refused (409): a dispense already reversed (a dispense has no other later version), one of an
    earlier day than `today_start` (the facility's midnight: the medicine has left; what comes back is a
    return), or one some of which was brought back (return the rest)."""
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("say why the dispense is reversed (the wrong patient, the wrong quantity, not collected)",
                      field="reason")
    found, item = _dispense_locked(conn, dispense_id)
    if found["reversed"]:
        raise Conflict(f"this dispense has already been reversed: its {_text(found['quantity'])} {found['unit']} "
                       "went back into stock then", field="dispense_id")
    if found["occurred_at"] < today_start:
        day = found["occurred_at"].astimezone(today_start.tzinfo)
        raise Conflict(f"this dispense was handed over on {day:%d %b %Y}, and only a dispense of today is reversed: "
                       "record what the patient brings back as a return; a dispense recorded on the wrong patient "
                       "is corrected by a return of its whole quantity with the reason 'wrong patient'",
                       field="dispense_id")
    if found["returned"]:
        raise Conflict(f"{counted(found['returned'], found['unit'])} of this dispense were brought back already, "
                       "which a reversal would count twice: record what else comes back as a return",
                       field="dispense_id")
    reversal = record.retract(conn, principal, dispense_id, reason)
    batch = _batch_of(conn, found["item_id"], found["batch"])
    _move(conn, principal, found["item_id"], found["batch"], batch["expires_on"], "reversed", found["quantity"],
          dispense_entry_id=dispense_id)
    log.info("pharmacy_dispense_reversed", tenant=conn.info["healthos_tenant"], item=str(found["item_id"]),
             quantity=_text(found["quantity"]))
    return {"id": reversal.id, "dispense_id": dispense_id, "patient_id": found["patient_id"],
            "medication_request_id": found["medication_request_id"], "item_id": found["item_id"],
            "item": label(item), "batch": found["batch"], "quantity": found["quantity"], "unit": found["unit"],
            "reason": reason, "reversed_at": reversal.occurred_at,
            "batch_on_hand_after": batch["on_hand"] + found["quantity"]}


def return_dispense(conn: Connection, principal: Principal, dispense_id: uuid.UUID, *, quantity: Decimal,
                    condition: str, reason: str, today: dt.date) -> dict:
    """Medicine brought back against a dispense: `quantity` of what it handed over, `condition` fit (back into its
    batch: sealed, in date, kept as labelled) or not_fit (quarantined: out of stock, to be destroyed), saying why.
    A `dispense_return` entry (audited on the patient's record), the ledger's `returned` row and, not fit, its
    `quarantined` row; the financial layer's reaction credits the returned quantity's charge. Refused whole,
    writing nothing: more than is still out (422, saying how much is), a batch expired by `today` returned as fit
    (422), a dispense reversed or brought back whole already (409)."""
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("say why the medicine came back (not needed, stopped by the prescriber, the wrong patient)",
                      field="reason")
    if condition not in RETURN_CONDITIONS:
        raise Invalid("say whether the medicine is fit to go back on the shelf (fit) or not (not_fit)",
                      field="condition")
    found, item = _dispense_locked(conn, dispense_id)
    unit = found["unit"]
    if found["reversed"]:
        raise Conflict("this dispense was reversed: its quantity went back into stock then, and nothing of it is "
                       "out to bring back", field="dispense_id")
    out = found["quantity"] - found["returned"]
    if out <= 0:
        raise Conflict(f"all {counted(found['quantity'], unit)} of this dispense were brought back already",
                       field="dispense_id")
    if quantity > out:
        before = f", {_text(found['returned'])} brought back before" if found["returned"] else ""
        raise Invalid(f"only {counted(out, unit)} of this dispense are still with the patient "
                      f"({_text(found['quantity'])} handed over{before}): {_text(quantity)} cannot be returned",
                      field="quantity", still_out=amount(out))
    batch = _batch_of(conn, found["item_id"], found["batch"])
    if condition == "fit" and batch["expires_on"] < today:
        raise Invalid(f"batch {found['batch']} expired on {batch['expires_on']}: it cannot go back on the shelf; "
                      "record the return as not fit", field="condition")
    written = record.append(conn, principal, "dispense_return", patient_id=found["patient_id"],
                            encounter_id=found["encounter_id"],
                            detail={"dispense_id": dispense_id, "item_id": found["item_id"], "batch": found["batch"],
                                    "quantity": quantity, "unit": unit, "condition": condition, "reason": reason})
    _move(conn, principal, found["item_id"], found["batch"], batch["expires_on"], "returned", quantity,
          reason=condition, dispense_entry_id=dispense_id)
    if condition == "not_fit":
        _move(conn, principal, found["item_id"], found["batch"], batch["expires_on"], "quarantined", -quantity,
              reason=condition, dispense_entry_id=dispense_id)
    log.info("pharmacy_dispense_returned", tenant=conn.info["healthos_tenant"], item=str(found["item_id"]),
             quantity=_text(quantity), condition=condition)
    restocked = quantity if condition == "fit" else Decimal(0)
    return {"id": written.id, "dispense_id": dispense_id, "patient_id": found["patient_id"],
            "medication_request_id": found["medication_request_id"], "item_id": found["item_id"],
            "item": label(item), "batch": found["batch"], "quantity": quantity, "unit": unit, "condition": condition,
            "reason": reason, "returned_at": written.occurred_at, "still_out": out - quantity,
            "batch_on_hand_after": batch["on_hand"] + restocked}


_RETURNS_OF = sa.text("""
    SELECT r.entry_id AS id, re.patient_id, r.dispense_id, re.occurred_at AS returned_at, r.quantity, r.unit,
           r.condition, r.reason
    FROM dispense_return r JOIN entry re ON re.id = r.entry_id
    WHERE r.dispense_id = ANY(:dispenses)
    ORDER BY re.occurred_at, r.entry_id
""")


def _with_returns(conn: Connection, principal: Principal, dispenses: list[dict]) -> list[dict]:
    """Dispense rows, each with what was brought back of it (`returns`, oldest first; the read noted on each
    patient's record) and what is still out."""
    returns: dict[uuid.UUID, list[dict]] = defaultdict(list)
    if dispenses:
        found = [dict(row) for row in conn.execute(_RETURNS_OF, {"dispenses": [d["id"] for d in dispenses]})
                 .mappings()]
        note_list_read(conn, principal, "dispense_return", found)
        for row in found:
            returns[row["dispense_id"]].append(row)
    for row in dispenses:
        row["returns"] = returns[row["id"]]
        row["still_out"] = row["quantity"] - sum((r["quantity"] for r in row["returns"]), Decimal(0))
    return dispenses


_HANDED_OVER = sa.text("""
    SELECT de.id, de.patient_id, de.occurred_at AS dispensed_at, d.medication_request_id, d.item_id, d.batch,
           d.quantity, d.unit, d.partial, p.mrn, p.family_name, p.given_names
    FROM entry de JOIN dispense d ON d.entry_id = de.id JOIN patient p ON p.id = de.patient_id
    WHERE de.kind = 'dispense' AND de.occurred_at >= :since AND (CAST(:mrn AS text) IS NULL OR p.mrn = :mrn)
      AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = de.id)
    ORDER BY de.occurred_at DESC, de.id
    LIMIT :limit
""")


def handed_over(conn: Connection, principal: Principal, since: dt.datetime, limit: int = 200, *,
                mrn: str | None = None) -> list[dict]:
    """The dispenses since `since` not reversed, latest first, each with what was brought back of it: the day's,
    for the pharmacist to reverse one recorded by mistake, or one patient's (`mrn`) of the queue's days, for a
    return. Each patient listed has the read noted on their record."""
    rows = _labelled(conn, [dict(row) for row in conn.execute(
        _HANDED_OVER, {"since": since, "limit": limit, "mrn": mrn}).mappings()])
    note_list_read(conn, principal, "dispense", rows)
    return _with_returns(conn, principal, rows)


def _labelled(conn: Connection, dispenses: list[dict]) -> list[dict]:
    """Dispense rows, each with its item's shelf label (`item`)."""
    items = {row["id"]: dict(row) for row in conn.execute(sa.select(*ITEM_COLUMNS).where(
        pharmacy_item.c.id.in_({r["item_id"] for r in dispenses}))).mappings()} if dispenses else {}
    for row in dispenses:
        row["item"] = label(items[row["item_id"]])
    return dispenses


_QUEUE = sa.text("""
    SELECT e.id AS version_id, e.root_id AS id, e.patient_id, e.encounter_id, f.occurred_at AS prescribed_at,
           mr.drug, mr.dose, mr.dose_unit, mr.route, mr.frequency, mr.duration_days, mr.instructions,
           mr.allergy_override_reason, p.mrn, p.family_name, p.given_names, f.occurred_at >= :today_start AS today
    FROM entry e
    JOIN medication_request mr ON mr.entry_id = e.id
    JOIN entry f ON f.id = e.root_id
    LEFT JOIN encounter enc ON enc.id = e.encounter_id
    JOIN patient p ON p.id = e.patient_id
    WHERE e.kind = 'medication_request' AND mr.status = 'active' AND f.occurred_at >= :since
      AND (e.encounter_id IS NULL OR enc.encounter_class = 'outpatient')
      AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = e.id)
    ORDER BY f.occurred_at >= :today_start DESC, f.occurred_at, e.root_id
""")


def queue(conn: Connection, principal: Principal, today_start: dt.datetime) -> list[dict]:
    """Active prescriptions of outpatient visits or of no encounter still to hand over (none dispensed, or the
    last dispense partial), today's first, each with what was dispensed so far and the items that could fill
    it (in stock or not). Each patient listed has the read noted on their record."""
    since = today_start - dt.timedelta(days=QUEUE_DAYS)
    rows = [dict(row) for row in conn.execute(_QUEUE, {"today_start": today_start, "since": since}).mappings()]
    dispensed = _dispensed(conn, [row["id"] for row in rows])
    waiting = [row for row in rows if row["id"] not in dispensed or dispensed[row["id"]]["partial"]]
    today = today_start.date()
    by_drug: dict[str, list[dict]] = defaultdict(list)
    for item in stock(conn, today):
        by_drug[item["drug"].lower()].append(item)
    for row in waiting:
        so_far = dispensed.get(row["id"])
        row["dispensed"] = so_far["dispensed"] if so_far else Decimal(0)
        # What was handed over is counted in the unit of the item last dispensed from, which the course is read in.
        row["dispensed_item_id"] = so_far["item_id"] if so_far else None
        row["dispensed_unit"] = so_far["unit"] if so_far else None
        row["items"] = by_drug.get(row["drug"].lower(), [])
    note_list_read(conn, principal, "medication_request", waiting)
    return waiting


_HISTORY = sa.text("""
    SELECT de.id, de.patient_id, de.occurred_at AS dispensed_at, de.author_id, d.medication_request_id,
           d.item_id, d.batch, d.quantity, d.unit, d.partial, mr.drug AS prescribed, mr.dose, mr.dose_unit,
           mr.frequency, mr.duration_days
    FROM entry de JOIN dispense d ON d.entry_id = de.id
    JOIN entry rx ON rx.id = d.medication_request_id JOIN medication_request mr ON mr.entry_id = rx.id
    WHERE de.patient_id = :patient AND de.kind = 'dispense'
      AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = de.id)
    ORDER BY de.occurred_at DESC, de.id
""")


def dispensing_history(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> list[dict]:
    """What the pharmacy handed this patient, latest first: one line per dispense (the prescription as
    first written, the item and batch, the quantity, what was brought back of it). The read is noted on the
    patient's record."""
    require_patient(conn, patient_id)
    rows = _labelled(conn, [dict(row) for row in conn.execute(_HISTORY, {"patient": patient_id}).mappings()])
    note_access(conn, principal, "read", patient_id, "dispense", [row["id"] for row in rows])
    _with_returns(conn, principal, rows)
    return rows

