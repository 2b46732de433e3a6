"""What the financial layer does when another layer's entry is appended: capture the charge.

The charging policy (policies/README.md, "Charging"), decided here and applied by these reactions:

- **lab and imaging orders are billable when placed** (`service_request`, priced by LOINC code). In
  the facilities we serve, payment is collected before the specimen is taken or the film shot, so the
  cashier needs the charge at ordering; an order revoked or entered in error before it is performed
  is credited. Billing on result would also leave a test performed without a result (a haemolysed
  sample, a patient who left) unbilled.
- **a dose is billable when given** (`medication_administration`, outcome given; held, refused and
  missed doses are not), priced by drug per unit of dose.
- **a medicine dispensed is billable when handed over** (`dispense`, the operations layer's outpatient
  pharmacy), priced by drug in the fee item's unit: the item's own (capsule, bottle) or its strength's
  (15 capsules of 500 mg are 7500 mg where the fee is per 500 mg). Outpatient medicines are otherwise
  never charged (a dose is charged only when a nurse gives it on the ward). What the patient brings back
  (`dispense_return`) is not charged: the dispense is billed again for what was kept (its charge credited
  and one for the rest posted, at the dispense's day's price; all brought back, credited alone), whether
  or not what came back was fit to restock.
- **a consultation is billable when its encounter finishes** (`encounter_status` to finished),
  priced by encounter class; a cancelled encounter had no consultation.
- **an operation is billable when completed** (`surgery`, the clinical layer's theatre case, to completed),
  priced by the code of the facility's procedure list it was booked with, the `procedure` fee item's code
  (department THEATRE unless the item names one); a case booked in words only, or a code the schedule does not
  price, waits unpriced on the billing worklist. A completed case entered in error is credited.
- **a unit of blood is billable when the nurse starts it** (`transfusion`, the nursing layer's bedside record,
  first version), priced by the component of the blood bank's unit (`blood` fee items: whole_blood, red_cells,
  plasma, platelets; department BLOOD unless the item names one): a unit started cannot go back to stock, so a
  transfusion stopped for a reaction is charged as one completed.
- **a bed-day is billable for each admission present at the facility's census time**
  (`accrual.accrue_bed_days`, from operations' `admission`/`transfer`/`discharge` entries, read by
  SQL), priced by the kind of ward the patient was in at the census.

Each reaction runs inside the transaction of the entry it reacts to. A new version of a billable
record is reconciled: billed if it became billable, credited if it stopped being billable (cancelled,
held, entered in error) — never charged twice for one record.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.financial import schedule
from appliance.layers.financial.charges import (
    CONSULTATION_DEPARTMENTS,
    DEFAULT_DEPARTMENTS,
    Billable,
    _unit_key,
    credit_charge,
    hold_payers,
    open_charges,
    post_charge,
    post_charges,
    rebill_charge,
    reconcile,
    reverse_charges,
)
from appliance.layers.financial.models import charge
from appliance.substrate import record
from appliance.substrate.principal import Principal
from appliance.substrate.record import Entry

BILLABLE_KINDS = ("service_request", "medication_administration", "encounter_status", "admission", "dispense",
                  "surgery", "transfusion")


def _order(version: Entry) -> Billable | None:
    detail = version.detail
    if version.status == "entered_in_error" or detail.get("status", "active") != "active":
        return None
    category = detail.get("category") or "lab"
    return Billable(item_kind=category, item_code=detail["code"], description=detail.get("display") or detail["code"],
                    department=DEFAULT_DEPARTMENTS.get(category, "LAB"))


def charge_order(conn: Connection, principal: Principal, version: Entry) -> None:
    if version.supersedes is None:  # a new order: nothing billed for it yet, no need to look
        billable = _order(version)
        if billable is not None:
            post_charge(conn, principal, version, billable)
        return
    reconcile(conn, principal, version, _order(version))


_PRESCRIPTION = sa.text("""
    SELECT m.drug, m.dose, m.dose_unit FROM entry e JOIN medication_request m ON m.entry_id = e.id
    WHERE e.root_id = :root AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = e.id)
""")


def _dose(conn: Connection, version: Entry) -> Billable | None:
    detail = version.detail
    if version.status == "entered_in_error" or detail.get("outcome") != "given":
        return None
    drug, dose, unit = detail.get("drug"), detail.get("dose"), detail.get("dose_unit")
    if not drug or dose is None:  # the administration names only its prescription: read that
        prescribed = conn.execute(_PRESCRIPTION, {"root": detail.get("medication_request_id")}).first()
        if prescribed is not None:
            drug, dose, unit = drug or prescribed.drug, dose if dose is not None else prescribed.dose, \
                unit or prescribed.dose_unit
    return Billable(item_kind="medication", item_code=drug or "unknown drug",
                    description=f"{drug or 'Medication'} {dose or ''} {unit or ''}".strip(),
                    department=DEFAULT_DEPARTMENTS["medication"], quantity=Decimal(str(dose or 1)), unit=unit,
                    service_at=detail.get("administered_at"))


def charge_dose(conn: Connection, principal: Principal, version: Entry) -> None:
    if version.supersedes is None:
        billable = _dose(conn, version)
        if billable is not None:
            post_charge(conn, principal, version, billable)
        return
    reconcile(conn, principal, version, _dose(conn, version))


# The operations layer's pharmacy item a dispense names, the units its drug is priced in, and what the patient
# brought back of the dispense (its `dispense_return`s) (read by SQL).
_DISPENSED_ITEM = sa.text("""
    SELECT i.drug, i.strength, i.strength_unit, i.unit,
           ARRAY(SELECT DISTINCT f.unit FROM fee_item f WHERE f.kind = 'medication' AND f.match_code = lower(i.drug)
                 AND f.unit IS NOT NULL) AS fee_units,
           (SELECT COALESCE(sum(r.quantity), 0) FROM dispense_return r WHERE r.dispense_id = :dispense) AS returned
    FROM pharmacy_item i WHERE i.id = :item
""")


def _dispensed(conn: Connection, version: Entry) -> Billable | None:
    """What a dispense bills: what it handed over less what was brought back; None reversed or all brought back."""
    detail = version.detail
    if version.status == "entered_in_error" or not detail.get("item_id"):
        return None
    item = conn.execute(_DISPENSED_ITEM, {"item": detail["item_id"], "dispense": version.root_id}).first()
    if item is None:
        return None
    kept = Decimal(str(detail["quantity"])) - item.returned
    if kept <= 0:
        return None
    quantity, unit = kept, item.unit
    fee_units = {_unit_key(u) for u in item.fee_units}
    by_strength = item.strength is not None and _unit_key(item.strength_unit) in fee_units
    if _unit_key(item.unit) not in fee_units and by_strength:
        quantity, unit = quantity * item.strength, item.strength_unit
    brought_back = f", {item.returned.normalize():f} brought back" if item.returned else ""
    return Billable(item_kind="medication", item_code=item.drug,
                    description=f"{item.drug} {kept.normalize():f} {item.unit} (dispensed{brought_back})",
                    department=DEFAULT_DEPARTMENTS["medication"], quantity=quantity, unit=unit)


def charge_dispense(conn: Connection, principal: Principal, version: Entry) -> None:
    if version.supersedes is None:
        billable = _dispensed(conn, version)
        if billable is not None:
            post_charge(conn, principal, version, billable)
        return
    reconcile(conn, principal, version, _dispensed(conn, version))


def credit_return(conn: Connection, principal: Principal, version: Entry) -> None:
    """Medicine brought back against a dispense: the dispense's open charge is billed again for what the patient
    kept (`rebill_charge`: credited, and the rest posted beside it, priced for the dispense's day), or credited
    alone when all of it came back. Both name the dispense as their source, so its record and KPI 8 follow."""
    dispense = record.get_entry(conn, version.detail["dispense_id"])
    kept = _dispensed(conn, dispense)
    reason = f"brought back to the pharmacy: {version.detail['reason']}"
    hold_payers(conn, [dispense.patient_id])
    for billed in open_charges(conn, charge.c.source_root_id == dispense.root_id):
        if kept is None:
            credit_charge(conn, principal, billed, dispense, reason=reason)
        else:
            rebill_charge(conn, principal, billed, dispense, kept, because=version.id, reason=reason)


_ENCOUNTER = sa.text("SELECT encounter_class, ward_code FROM encounter WHERE id = :id")


def _consultation(conn: Connection, version: Entry) -> Billable | None:
    if version.detail.get("to_status") != "finished":
        return None
    found = conn.execute(_ENCOUNTER, {"id": version.detail.get("encounter_id") or version.encounter_id}).first()
    encounter_class = found.encounter_class if found else "outpatient"
    return Billable(item_kind="consultation", item_code=encounter_class,
                    description=f"Consultation ({encounter_class.replace('_', ' ')})",
                    department=(found.ward_code if found and found.ward_code
                                else CONSULTATION_DEPARTMENTS.get(encounter_class, "OPD")))


def charge_consultation(conn: Connection, principal: Principal, version: Entry) -> None:
    billable = _consultation(conn, version)
    if billable is not None:
        post_charge(conn, principal, version, billable)


def _operation(version: Entry) -> Billable | None:
    detail = version.detail
    if version.status == "entered_in_error" or detail.get("status") != "completed":
        return None
    return Billable(item_kind="procedure", item_code=detail.get("procedure_code") or detail["procedure"],
                    description=detail["procedure"], department=DEFAULT_DEPARTMENTS["procedure"],
                    service_at=detail.get("ended_at"))


def charge_operation(conn: Connection, principal: Principal, version: Entry) -> None:
    """Every version of a case is reconciled: it becomes billable only at its completion (a later version), and
    a correction after completion leaves its charge alone."""
    reconcile(conn, principal, version, _operation(version))


# The clinical layer's blood unit a bedside transfusion names (its table, read by SQL: layers never import each other).
_TRANSFUSED_UNIT = sa.text("SELECT component FROM blood_unit WHERE unit_number = :number")


def _transfused(conn: Connection, version: Entry) -> Billable | None:
    detail = version.detail
    if version.status == "entered_in_error":
        return None
    component = conn.execute(_TRANSFUSED_UNIT, {"number": detail["unit_number"]}).scalar()
    if component is None:  # the blood bank's reaction refuses the transfusion: nothing to bill
        return None
    return Billable(item_kind="blood", item_code=component,
                    description=f"Blood transfusion, {component.replace('_', ' ')} (unit {detail['unit_number']})",
                    department=DEFAULT_DEPARTMENTS["blood"], service_at=detail.get("started_at"))


def charge_transfusion(conn: Connection, principal: Principal, version: Entry) -> None:
    """A unit is billable once started: it cannot go back to stock, however much of it was given. Its observations
    and its end (later versions) change nothing billable."""
    reconcile(conn, principal, version, _transfused(conn, version))


def credit_admission(conn: Connection, principal: Principal, version: Entry) -> None:
    """An admission entered in error had no bed-days: credit the ones accrued for it."""
    if version.status == "entered_in_error":
        reverse_charges(conn, principal, version)


def billable_again(conn: Connection, source: Entry, billed: Mapping) -> Billable | None:
    """What the charge `billed` bills, read from its source as the reaction that posted it read it, to
    price it again; a bed-day, which has no entry of its own (it bills the admission), from the charge:
    the ward kind at that day's census. None: a source no reaction here bills."""
    if source.kind == "admission" and billed["item_kind"] == "bed_day":
        setting = schedule.setting(conn)
        census = dt.datetime.combine(billed["service_date"], setting.census_time, zoneinfo.ZoneInfo(setting.timezone))
        return Billable(item_kind="bed_day", item_code=billed["item_code"], description=billed["description"],
                        department=billed["department"], service_at=census)
    read = {"service_request": lambda: _order(source), "medication_administration": lambda: _dose(conn, source),
            "encounter_status": lambda: _consultation(conn, source),
            "dispense": lambda: _dispensed(conn, source), "surgery": lambda: _operation(source),
            "transfusion": lambda: _transfused(conn, source)}.get(source.kind)
    return read() if read else None


REACTIONS = {
    "service_request": charge_order,
    "medication_administration": charge_dose,
    "encounter_status": charge_consultation,
    "admission": credit_admission,
    "dispense": charge_dispense,
    "dispense_return": credit_return,
    "surgery": charge_operation,
    "transfusion": charge_transfusion,
}


def _in_bulk(billable_of: Callable[[Connection, Entry], Billable | None]):
    """The bulk path's reaction: `append_many` writes first versions only, so each entry is billed if
    billable, and every charge of the batch is written in one go (same prices, ids and accounts)."""
    def batch(conn: Connection, principal: Principal, versions: Sequence[Entry]) -> None:
        billed = [(v, b) for v in versions if (b := billable_of(conn, v)) is not None]
        if billed:
            post_charges(conn, principal, billed)

    return batch


BATCHES = {
    charge_order: _in_bulk(lambda conn, version: _order(version)),
    charge_dose: _in_bulk(_dose),
    charge_consultation: _in_bulk(_consultation),
    charge_dispense: _in_bulk(_dispensed),
}


def register() -> None:
    for kind, reaction in REACTIONS.items():
        record.register_reaction(kind, reaction, batch=BATCHES.get(reaction))


def unregister() -> None:
    """For the benchmark that measures what charge capture costs a clinical write."""
    for kind, reaction in REACTIONS.items():
        record.unregister_reaction(kind, reaction)


register()
