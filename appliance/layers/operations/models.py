"""Tables of the operations layer, in every tenant schema (migration t0004, and t0001 for wards and beds).

- **configuration** from the tenant file: `ward`, `bed` (whose `state` is the live bed board),
  `clinic` with its weekly sessions, the `slot`s generated from them, and `kpi_target`;
- **detail tables** of the operations entry kinds, append-only: `admission`, `transfer`, `discharge`,
  `expected_discharge` (t0049, the day the ward expects the patient home), `ed_event` (all five `ed_*` kinds),
  `appointment_change` (`appointment`, `appointment_status`);
- **the pharmacy** (t0022, t0023, t0047): `pharmacy_item` (what it stocks), `stock_movement` (its append-only stock
  ledger), `dispense`, the detail of the `dispense` entry kind (what was handed to a patient), and
  `dispense_return`, the detail of `dispense_return` (what a patient brought back of a dispense);
- **patient safety incidents** (t0035; incidents.py): `incident` (a report, as reported) and `incident_review`
  (the quality manager's review, append-only); not entries of the record: an incident may name no patient;
- **the duty roster** (t0041; roster.py): `roster_shift` and `roster_setting` from the tenant file, `roster_entry`
  (who works which shift on which ward) and `roster_withdrawal` (taking someone off, appended);
- **projections** kept in step with those entries in the same transaction, so the bed board, the ED
  board and the command center read one indexed range: `inpatient_stay`, `ed_visit`, `appointment`.

Columns marked "patient data" hold information about a person.
"""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from appliance.substrate import record
from appliance.substrate.db import tenant_metadata

JSONB = postgresql.JSONB

BED_STATES = ("available", "occupied", "cleaning", "blocked")
# Wards whose beds are inpatient beds (occupancy, turnover); emergency and outpatient places are not.
INPATIENT_WARD_KINDS = ("inpatient", "maternity", "paediatric", "icu", "surgical")
ADMISSION_SOURCES = ("emergency", "direct", "elective", "transfer_in")
DISCHARGE_DISPOSITIONS = ("home", "transfer_out", "died", "left_against_advice", "other")
ED_DECISIONS = ("admit", "discharge", "transfer")
ED_DISPOSITIONS = ("admitted", "discharged", "transferred", "left_without_being_seen", "left_against_advice", "died")
APPOINTMENT_STATUSES = ("booked", "checked_in", "no_show", "cancelled")

ward = sa.Table(
    "ward",
    tenant_metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
)

bed = sa.Table(
    "bed",
    tenant_metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("ward_code", sa.Text, sa.ForeignKey("ward.code"), nullable=False),
    sa.Column("state", sa.Text, nullable=False, server_default="available"),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Index("bed_ward_code_idx", "ward_code"),
)


def _entry_key() -> sa.Column:
    return sa.Column("entry_id", sa.Uuid, sa.ForeignKey("entry.id"), primary_key=True)


# -- detail tables (append-only) ---------------------------------------------------------------------

admission = sa.Table(
    "admission",
    tenant_metadata,
    _entry_key(),
    sa.Column("encounter_id", sa.Uuid, nullable=False),  # the inpatient encounter the admission opened
    sa.Column("ward_code", sa.Text, nullable=False),
    sa.Column("bed_code", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),  # emergency, direct, elective, transfer_in
    sa.Column("ed_encounter_id", sa.Uuid, nullable=True),  # the ED visit admitted from, if any
    sa.Column("reason", sa.Text, nullable=True),  # patient data
)

transfer = sa.Table(
    "transfer",
    tenant_metadata,
    _entry_key(),
    sa.Column("encounter_id", sa.Uuid, nullable=False),
    sa.Column("from_ward_code", sa.Text, nullable=False),
    sa.Column("from_bed_code", sa.Text, nullable=False),
    sa.Column("to_ward_code", sa.Text, nullable=False),
    sa.Column("to_bed_code", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),  # patient data
)

discharge = sa.Table(
    "discharge",
    tenant_metadata,
    _entry_key(),
    sa.Column("encounter_id", sa.Uuid, nullable=False),
    sa.Column("ward_code", sa.Text, nullable=False),
    sa.Column("bed_code", sa.Text, nullable=False),
    sa.Column("disposition", sa.Text, nullable=False),  # patient data: home, transfer_out, died, ...
    sa.Column("destination", sa.Text, nullable=True),  # patient data: where to, for a transfer out
)

ed_event = sa.Table(
    "ed_event",
    tenant_metadata,
    _entry_key(),
    sa.Column("encounter_id", sa.Uuid, nullable=False),  # the emergency encounter
    sa.Column("arrival_mode", sa.Text, nullable=True),  # ed_arrival: walk_in, ambulance, referral, police
    sa.Column("complaint", sa.Text, nullable=True),  # patient data (ed_arrival): presenting complaint
    sa.Column("acuity", sa.SmallInteger, nullable=True),  # ed_triage: 1 (resuscitation) .. 5 (non-urgent)
    sa.Column("decision", sa.Text, nullable=True),  # ed_decision: admit, discharge, transfer
    sa.Column("disposition", sa.Text, nullable=True),  # ed_departure: admitted, left_without_being_seen, ...
    sa.Index("ed_event_encounter_idx", "encounter_id"),
)

expected_discharge = sa.Table(
    "expected_discharge",
    tenant_metadata,
    _entry_key(),  # t0049; a change supersedes the last (discharge_plan.py)
    sa.Column("encounter_id", sa.Uuid, nullable=False),  # the inpatient encounter of the stay
    sa.Column("expected_on", sa.Date, nullable=False),  # patient data: the day the ward expects them home
    sa.Column("note", sa.Text, nullable=True),  # patient data: what it waits on ("after the physio review")
)

appointment_change = sa.Table(
    "appointment_change",
    tenant_metadata,
    _entry_key(),
    sa.Column("appointment_id", sa.Uuid, nullable=False),  # the booking entry's id
    sa.Column("slot_id", sa.Uuid, nullable=False),  # the slot after the change
    sa.Column("action", sa.Text, nullable=False),  # booked, rescheduled, cancelled, checked_in, no_show
    sa.Column("from_slot_id", sa.Uuid, nullable=True),  # a rescheduling's previous slot
    sa.Column("reason", sa.Text, nullable=True),  # patient data
    sa.Index("appointment_change_appointment_idx", "appointment_id"),
)

# -- projections -------------------------------------------------------------------------------------

inpatient_stay = sa.Table(
    "inpatient_stay",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),  # the admission entry's id
    sa.Column("patient_id", sa.Uuid, sa.ForeignKey("patient.id"), nullable=False),  # patient data: who
    sa.Column("encounter_id", sa.Uuid, sa.ForeignKey("encounter.id"), nullable=False),
    sa.Column("ward_code", sa.Text, sa.ForeignKey("ward.code"), nullable=False),  # where now
    sa.Column("bed_code", sa.Text, sa.ForeignKey("bed.code"), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("discharged_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("disposition", sa.Text, nullable=True),  # patient data
    sa.Column("discharge_entry_id", sa.Uuid, nullable=True),
    # t0049: the day the ward expects the patient home (patient data), and the `expected_discharge` entry saying it
    sa.Column("expected_discharge_on", sa.Date, nullable=True),
    sa.Column("expected_discharge_entry_id", sa.Uuid, nullable=True),
    sa.UniqueConstraint("encounter_id", name="inpatient_stay_encounter_key"),
    # One open stay per bed and per patient: the database refuses a double placement outright.
    sa.Index("inpatient_stay_open_bed_key", "bed_code", unique=True,
             postgresql_where=sa.text("discharged_at IS NULL")),
    sa.Index("inpatient_stay_open_patient_key", "patient_id", unique=True,
             postgresql_where=sa.text("discharged_at IS NULL")),
    sa.Index("inpatient_stay_patient_idx", "patient_id", "admitted_at"),
    sa.Index("inpatient_stay_discharged_idx", "discharged_at"),
    sa.Index("inpatient_stay_admitted_idx", "admitted_at"),
    sa.Index("inpatient_stay_open_expected_idx", "ward_code", "expected_discharge_on",
             postgresql_where=sa.text("discharged_at IS NULL")),
)

ed_visit = sa.Table(
    "ed_visit",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),  # the emergency encounter's id
    sa.Column("patient_id", sa.Uuid, sa.ForeignKey("patient.id"), nullable=False),  # patient data: who
    sa.Column("arrival_entry_id", sa.Uuid, nullable=False),
    sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("acuity", sa.SmallInteger, nullable=True),  # patient data
    sa.Column("triaged_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("decision", sa.Text, nullable=True),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("departed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("disposition", sa.Text, nullable=True),  # patient data
    sa.Column("departure_entry_id", sa.Uuid, nullable=True),
    sa.Column("admitted_encounter_id", sa.Uuid, nullable=True),
    sa.Index("ed_visit_open_idx", "arrived_at", postgresql_where=sa.text("departed_at IS NULL")),
    # One open ED visit per patient, even for two arrivals recorded at the same moment.
    sa.Index("ed_visit_open_patient_key", "patient_id", unique=True, postgresql_where=sa.text("departed_at IS NULL")),
    sa.Index("ed_visit_departed_idx", "departed_at"),
)

clinic = sa.Table(
    "clinic",
    tenant_metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("slot_minutes", sa.SmallInteger, nullable=False),
    sa.Column("sessions", JSONB, nullable=False),  # [{weekdays, start, end}] as in the tenant file
    sa.Column("timezone", sa.Text, nullable=False),  # the facility's: sessions are in local time
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
)

slot = sa.Table(
    "slot",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("clinic_code", sa.Text, sa.ForeignKey("clinic.code"), nullable=False),
    sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("clinic_code", "starts_at", name="slot_clinic_start_key"),
    sa.Index("slot_starts_idx", "starts_at"),
)

appointment = sa.Table(
    "appointment",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),  # the booking entry's id
    sa.Column("patient_id", sa.Uuid, sa.ForeignKey("patient.id"), nullable=False),  # patient data: who
    sa.Column("slot_id", sa.Uuid, sa.ForeignKey("slot.id"), nullable=False),
    sa.Column("clinic_code", sa.Text, nullable=False),
    sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # booked, checked_in, no_show, cancelled
    sa.Column("reason", sa.Text, nullable=True),  # patient data
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # The outpatient visit the check-in opened (t0010); none before check-in.
    sa.Column("encounter_id", sa.Uuid, sa.ForeignKey("encounter.id"), nullable=True),
    sa.Index("appointment_live_slot_key", "slot_id", unique=True, postgresql_where=sa.text("status <> 'cancelled'")),
    sa.Index("appointment_patient_idx", "patient_id", "starts_at"),
    sa.Index("appointment_starts_idx", "starts_at"),
)

kpi_target = sa.Table(
    "kpi_target",
    tenant_metadata,
    sa.Column("kpi_id", sa.Text, primary_key=True),
    sa.Column("target", sa.Numeric, nullable=False),
)

lab_turnaround = sa.Table(
    "lab_turnaround",
    tenant_metadata,
    # A lab order's first verification (the first sign-off of a result answering it), kept by the
    # reaction to `result_signoff` (reactions.py) so KPI 7 reads one indexed range of this table.
    sa.Column("order_id", sa.Uuid, primary_key=True),  # the service_request's root entry id
    sa.Column("patient_id", sa.Uuid, nullable=False),  # patient data: whose order
    sa.Column("ordered_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("verified_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("signoff_entry_id", sa.Uuid, nullable=False),
    sa.Column("display", sa.Text, nullable=False),  # the test's name
    sa.Column("retracted", sa.Boolean, nullable=False, server_default=sa.false()),  # order entered in error
    sa.Index("lab_turnaround_verified_idx", "verified_at"),
)

# -- the pharmacy (t0022; pharmacy.py) -----------------------------------------------------------------

# reversed: t0023, a dispense put back; returned and quarantined: t0047, what a patient brought back, and of it
# what was not fit to go back on the shelf, taken out again
STOCK_MOVEMENT_KINDS = ("received", "adjusted", "dispensed", "reversed", "returned", "quarantined")
# A medicine brought back is fit to restock (sealed, in date, kept as labelled) or not (opened, spoilt, doubtful)
RETURN_CONDITIONS = ("fit", "not_fit")
ADJUSTMENT_REASONS = ("expired", "damaged", "counted", "other")

pharmacy_item = sa.Table(
    "pharmacy_item",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("drug", sa.Text, nullable=False),  # as prescriptions name it: "Amoxicillin"
    sa.Column("form", sa.Text, nullable=False),  # capsule, tablet, oral suspension, ...
    sa.Column("strength", sa.Numeric, nullable=True),  # 500 (mg per capsule); none for a pack or a device
    sa.Column("strength_unit", sa.Text, nullable=True),
    sa.Column("unit", sa.Text, nullable=False),  # what is counted and handed over: capsule, bottle, ml
    sa.Column("reorder_level", sa.Numeric, nullable=False, server_default="0"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("pharmacy_item_drug_idx", "drug"),
)

stock_movement = sa.Table(
    "stock_movement",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("item_id", sa.Uuid, sa.ForeignKey("pharmacy_item.id"), nullable=False),
    sa.Column("batch", sa.Text, nullable=False),
    sa.Column("expires_on", sa.Date, nullable=False),  # the batch's, as received
    sa.Column("kind", sa.Text, nullable=False),  # STOCK_MOVEMENT_KINDS
    sa.Column("quantity", sa.Numeric, nullable=False),  # signed: in (+) or out (-), in the item's unit
    sa.Column("reason", sa.Text, nullable=True),  # an adjustment's: expired, damaged, counted, other
    sa.Column("reference", sa.Text, nullable=True),  # a delivery note or requisition; an adjustment's note
    # the dispense a `dispensed` row hands over, a `reversed` row puts back (once: t0023's unique index), or a
    # `returned` row takes back (and a `quarantined` row sets aside)
    sa.Column("dispense_entry_id", sa.Uuid, sa.ForeignKey("entry.id"), nullable=True),
    sa.Column("recorded_by", sa.Uuid, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("stock_movement_item_batch_idx", "item_id", "batch"),
    sa.Index("stock_movement_recorded_at_idx", "recorded_at"),
    sa.Index("stock_movement_one_reversal_key", "dispense_entry_id", unique=True,
             postgresql_where=sa.text("kind = 'reversed'")),
)

dispense = sa.Table(
    "dispense",
    tenant_metadata,
    _entry_key(),
    # patient data: a medicine handed to the patient
    sa.Column("medication_request_id", sa.Uuid, nullable=False),  # root id of the prescription
    sa.Column("item_id", sa.Uuid, sa.ForeignKey("pharmacy_item.id"), nullable=False),
    sa.Column("batch", sa.Text, nullable=False),
    sa.Column("quantity", sa.Numeric, nullable=False),
    sa.Column("unit", sa.Text, nullable=False),
    sa.Column("partial", sa.Boolean, nullable=False, server_default=sa.false()),  # the patient comes back for the rest
    sa.Index("dispense_request_idx", "medication_request_id"),
)

dispense_return = sa.Table(
    "dispense_return",
    tenant_metadata,
    _entry_key(),
    # patient data: medicine a patient brought back, against the dispense that handed it over
    sa.Column("dispense_id", sa.Uuid, sa.ForeignKey("entry.id"), nullable=False),
    sa.Column("item_id", sa.Uuid, sa.ForeignKey("pharmacy_item.id"), nullable=False),
    sa.Column("batch", sa.Text, nullable=False),
    sa.Column("quantity", sa.Numeric, nullable=False),  # in the dispense's unit, at most what is still out
    sa.Column("unit", sa.Text, nullable=False),
    sa.Column("condition", sa.Text, nullable=False),  # RETURN_CONDITIONS: fit goes back into the batch
    sa.Column("reason", sa.Text, nullable=False),  # why it came back: not needed, stopped, the wrong patient
    sa.Index("dispense_return_dispense_idx", "dispense_id"),
)

# -- patient safety incidents (t0035; incidents.py) ------------------------------------------------------

incident = sa.Table(
    "incident",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    # The named reports' running number, from incident_named_number_seq (t0045: a sequence of their own, so an
    # anonymous report leaves no gap between two of them); an anonymous report has none.
    sa.Column("number", sa.BigInteger, nullable=True, unique=True),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ward_code", sa.Text, sa.ForeignKey("ward.code"), nullable=False),
    sa.Column("incident_type", sa.Text, nullable=False),  # incidents.INCIDENT_TYPES
    sa.Column("description", sa.Text, nullable=False),  # patient data when a patient is named
    sa.Column("outcome", sa.Text, nullable=False),  # near_miss, or the ICPS degree of harm (none ... death)
    sa.Column("immediate_action", sa.Text, nullable=False),  # patient data when a patient is named
    sa.Column("patient_id", sa.Uuid, sa.ForeignKey("patient.id"), nullable=True),  # patient data
    sa.Column("anonymous", sa.Boolean, nullable=False),
    # Empty for an anonymous report: the reporter is named only in the audit trail (incidents.report).
    sa.Column("reported_by", sa.Uuid, nullable=True),
    sa.Column("reporter_name", sa.Text, nullable=True),
    sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("incident_occurred_idx", "occurred_at"),
    sa.Index("incident_reported_by_idx", "reported_by", postgresql_where=sa.text("reported_by IS NOT NULL")),
)

incident_review = sa.Table(
    "incident_review",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("incident_id", sa.Uuid, sa.ForeignKey("incident.id"), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # note, contributing_factors, action, severity_confirmed, closed
    sa.Column("note", sa.Text, nullable=True),  # a note's text; a closing's learning summary
    sa.Column("factors", postgresql.ARRAY(sa.Text), nullable=True),  # incidents.CONTRIBUTING_FACTORS
    sa.Column("action", sa.Text, nullable=True),
    sa.Column("action_owner", sa.Text, nullable=True),
    sa.Column("action_due", sa.Date, nullable=True),
    sa.Column("harm", sa.Text, nullable=True),  # the severity confirmed
    sa.Column("by_account", sa.Uuid, nullable=False),
    sa.Column("by_name", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("incident_review_incident_idx", "incident_id", "at"),
    sa.Index("incident_review_one_close_key", "incident_id", unique=True, postgresql_where=sa.text("kind = 'closed'")),
)

# -- the duty roster (t0041; roster.py) ---------------------------------------------------------------------

roster_shift = sa.Table(
    "roster_shift",
    tenant_metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("starts", sa.Time, nullable=False),  # facility time
    sa.Column("ends", sa.Time, nullable=False),  # facility time; at or before `starts`: the next day's
    sa.Column("patients_per_nurse", sa.SmallInteger, nullable=False),  # above this the shift is understaffed
    sa.Column("position", sa.SmallInteger, nullable=False),  # the file's order: the grid's rows
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
)

roster_setting = sa.Table(
    "roster_setting",
    tenant_metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True),  # always 1
    sa.Column("min_rest_hours", sa.SmallInteger, nullable=False),
    sa.Column("correction_days", sa.SmallInteger, nullable=False),
)

roster_entry = sa.Table(
    "roster_entry",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("ward_code", sa.Text, sa.ForeignKey("ward.code"), nullable=False),
    sa.Column("shift_date", sa.Date, nullable=False),  # the facility-local date the shift starts on
    sa.Column("shift_code", sa.Text, sa.ForeignKey("roster_shift.code"), nullable=False),
    sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("account_id", sa.Uuid, nullable=False),  # the member of staff: control.account, by id only
    sa.Column("role_on_shift", sa.Text, nullable=False),  # roster.ROLES_ON_SHIFT
    sa.Column("added_by", sa.Uuid, nullable=False),
    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("roster_entry_ward_date_idx", "ward_code", "shift_date"),
    sa.Index("roster_entry_account_idx", "account_id", "starts_at"),
)

roster_withdrawal = sa.Table(
    "roster_withdrawal",
    tenant_metadata,
    sa.Column("entry_id", sa.Uuid, sa.ForeignKey("roster_entry.id"), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("withdrawn_by", sa.Uuid, nullable=False),
    sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

# The command center finds a window's entries of one kind by time (KPI 8's billable entries); the
# record's own entry_patient_kind_idx leads with the patient. Declared here because operations' bench
# (bench/kpis.py) is what needs it; migration t0004 creates it.
sa.Index("entry_kind_occurred_idx", record.entry.c.kind, record.entry.c.occurred_at)

KINDS: dict[str, sa.Table] = {
    "admission": admission,
    "transfer": transfer,
    "discharge": discharge,
    "expected_discharge": expected_discharge,
    "ed_arrival": ed_event,
    "ed_triage": ed_event,
    "ed_seen": ed_event,
    "ed_decision": ed_event,
    "ed_departure": ed_event,
    "appointment": appointment_change,
    "appointment_status": appointment_change,
    "dispense": dispense,
    "dispense_return": dispense_return,
}
for _kind, _table in KINDS.items():
    record.register_kind(_kind, _table)
