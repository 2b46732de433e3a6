"""The operations layer's tables: ADT, emergency department, outpatient scheduling, the command center's
targets and indexes (operations layer).

Revision ID: t0004
Revises: t0003
Create Date: 2026-11-26

Detail tables of the operations kinds (`admission`, `transfer`, `discharge`, the five `ed_*` kinds,
`appointment`, `appointment_status`) are append-only like the clinical ones: the tenant role keeps
SELECT and INSERT only. Projections (`inpatient_stay`, `ed_visit`, `appointment`) change with the
record in the same transaction and carry the partial unique indexes that make a double placement
impossible even if two transactions raced past the row locks: one open stay per bed and per patient,
one live appointment per slot. Clinics, sessions, slots and KPI targets come from the tenant file.

The indexes under "command center" serve the KPI queries (bench/kpis.py): each KPI reads a range
of one projection by the time its window is about.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "t0004"
down_revision = "t0003"
branch_labels = None
depends_on = None

APPEND_ONLY = ("admission", "transfer", "discharge", "ed_event", "appointment_change")


def _entry_key() -> sa.Column:
    return sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True)


def upgrade() -> None:
    # -- ADT: detail tables of the record -----------------------------------------------------------
    op.create_table(
        "admission",
        _entry_key(),
        sa.Column("encounter_id", sa.Uuid(), nullable=False),
        sa.Column("ward_code", sa.Text(), nullable=False),
        sa.Column("bed_code", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("ed_encounter_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint("source IN ('emergency', 'direct', 'elective', 'transfer_in')",
                           name="admission_source_known"),
    )
    op.create_table(
        "transfer",
        _entry_key(),
        sa.Column("encounter_id", sa.Uuid(), nullable=False),
        sa.Column("from_ward_code", sa.Text(), nullable=False),
        sa.Column("from_bed_code", sa.Text(), nullable=False),
        sa.Column("to_ward_code", sa.Text(), nullable=False),
        sa.Column("to_bed_code", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
    )
    op.create_table(
        "discharge",
        _entry_key(),
        sa.Column("encounter_id", sa.Uuid(), nullable=False),
        sa.Column("ward_code", sa.Text(), nullable=False),
        sa.Column("bed_code", sa.Text(), nullable=False),
        sa.Column("disposition", sa.Text(), nullable=False),
        sa.Column("destination", sa.Text(), nullable=True),
        sa.CheckConstraint("disposition IN ('home', 'transfer_out', 'died', 'left_against_advice', 'other')",
                           name="discharge_disposition_known"),
    )
    # -- emergency department: one detail table for the five ed_* kinds -------------------------------
    op.create_table(
        "ed_event",
        _entry_key(),
        sa.Column("encounter_id", sa.Uuid(), nullable=False),
        sa.Column("arrival_mode", sa.Text(), nullable=True),
        sa.Column("complaint", sa.Text(), nullable=True),
        sa.Column("acuity", sa.SmallInteger(), nullable=True),
        sa.Column("decision", sa.Text(), nullable=True),
        sa.Column("disposition", sa.Text(), nullable=True),
        sa.CheckConstraint("acuity BETWEEN 1 AND 5", name="ed_event_acuity_range"),
        sa.CheckConstraint("decision IN ('admit', 'discharge', 'transfer')", name="ed_event_decision_known"),
        sa.CheckConstraint("disposition IN ('admitted', 'discharged', 'transferred', 'left_without_being_seen', "
                           "'left_against_advice', 'died')", name="ed_event_disposition_known"),
    )
    op.create_index("ed_event_encounter_idx", "ed_event", ["encounter_id"])
    # -- scheduling: detail of appointment entries -------------------------------------------------------
    op.create_table(
        "appointment_change",
        _entry_key(),
        sa.Column("appointment_id", sa.Uuid(), nullable=False),
        sa.Column("slot_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("from_slot_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint("action IN ('booked', 'rescheduled', 'cancelled', 'checked_in', 'no_show')",
                           name="appointment_change_action_known"),
    )
    op.create_index("appointment_change_appointment_idx", "appointment_change", ["appointment_id"])

    # -- projections -----------------------------------------------------------------------------------
    op.create_table(
        "inpatient_stay",
        sa.Column("id", sa.Uuid(), primary_key=True),  # the admission entry's id
        sa.Column("patient_id", sa.Uuid(), sa.ForeignKey("patient.id"), nullable=False),
        sa.Column("encounter_id", sa.Uuid(), sa.ForeignKey("encounter.id"), nullable=False),
        sa.Column("ward_code", sa.Text(), sa.ForeignKey("ward.code"), nullable=False),
        sa.Column("bed_code", sa.Text(), sa.ForeignKey("bed.code"), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("discharged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disposition", sa.Text(), nullable=True),
        sa.Column("discharge_entry_id", sa.Uuid(), nullable=True),
        sa.UniqueConstraint("encounter_id", name="inpatient_stay_encounter_key"),
        sa.CheckConstraint("discharged_at IS NULL OR discharged_at >= admitted_at", name="inpatient_stay_order"),
    )
    op.create_index("inpatient_stay_open_bed_key", "inpatient_stay", ["bed_code"], unique=True,
                    postgresql_where=sa.text("discharged_at IS NULL"))
    op.create_index("inpatient_stay_open_patient_key", "inpatient_stay", ["patient_id"], unique=True,
                    postgresql_where=sa.text("discharged_at IS NULL"))
    op.create_index("inpatient_stay_patient_idx", "inpatient_stay", ["patient_id", "admitted_at"])
    op.create_table(
        "ed_visit",
        sa.Column("id", sa.Uuid(), primary_key=True),  # the emergency encounter's id
        sa.Column("patient_id", sa.Uuid(), sa.ForeignKey("patient.id"), nullable=False),
        sa.Column("arrival_entry_id", sa.Uuid(), nullable=False),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acuity", sa.SmallInteger(), nullable=True),
        sa.Column("triaged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("departed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disposition", sa.Text(), nullable=True),
        sa.Column("departure_entry_id", sa.Uuid(), nullable=True),
        sa.Column("admitted_encounter_id", sa.Uuid(), nullable=True),
    )
    op.create_index("ed_visit_open_idx", "ed_visit", ["arrived_at"], postgresql_where=sa.text("departed_at IS NULL"))
    op.create_index("ed_visit_open_patient_key", "ed_visit", ["patient_id"], unique=True,
                    postgresql_where=sa.text("departed_at IS NULL"))

    op.create_table(
        "clinic",
        sa.Column("code", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("slot_minutes", sa.SmallInteger(), nullable=False),
        sa.Column("sessions", postgresql.JSONB(), nullable=False),
        sa.Column("timezone", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.create_table(
        "slot",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("clinic_code", sa.Text(), sa.ForeignKey("clinic.code"), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("clinic_code", "starts_at", name="slot_clinic_start_key"),
    )
    op.create_index("slot_starts_idx", "slot", ["starts_at"])
    op.create_table(
        "appointment",
        sa.Column("id", sa.Uuid(), primary_key=True),  # the booking entry's id
        sa.Column("patient_id", sa.Uuid(), sa.ForeignKey("patient.id"), nullable=False),
        sa.Column("slot_id", sa.Uuid(), sa.ForeignKey("slot.id"), nullable=False),
        sa.Column("clinic_code", sa.Text(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("status IN ('booked', 'checked_in', 'no_show', 'cancelled')",
                           name="appointment_status_known"),
    )
    # One live appointment per slot: the second of two racing bookings fails here if not at the lock.
    op.create_index("appointment_live_slot_key", "appointment", ["slot_id"], unique=True,
                    postgresql_where=sa.text("status <> 'cancelled'"))
    op.create_index("appointment_patient_idx", "appointment", ["patient_id", "starts_at"])
    op.create_index("appointment_starts_idx", "appointment", ["starts_at"])
    # Lab turnaround's projection: each lab order's first verification, kept by a reaction to
    # `result_signoff` (operations/reactions.py), so KPI 7 reads one indexed range.
    op.create_table(
        "lab_turnaround",
        sa.Column("order_id", sa.Uuid(), primary_key=True),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("ordered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signoff_entry_id", sa.Uuid(), nullable=False),
        sa.Column("display", sa.Text(), nullable=False),
        sa.Column("retracted", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index("lab_turnaround_verified_idx", "lab_turnaround", ["verified_at"])
    op.create_table(
        "kpi_target",
        sa.Column("kpi_id", sa.Text(), primary_key=True),
        sa.Column("target", sa.Numeric(), nullable=False),
    )

    # -- command center: the ranges each KPI reads ------------------------------------------------------
    op.create_index("inpatient_stay_discharged_idx", "inpatient_stay", ["discharged_at"])
    op.create_index("inpatient_stay_admitted_idx", "inpatient_stay", ["admitted_at"])
    op.create_index("ed_visit_departed_idx", "ed_visit", ["departed_at"])
    # KPI 8 (same-day charge capture, registered by the financial layer) finds a window's billable entries
    # by kind and time; entry_patient_kind_idx leads with the patient, so without this it scans `entry`.
    op.create_index("entry_kind_occurred_idx", "entry", ["kind", "occurred_at"])

    bind = op.get_bind()
    role = bind.execute(sa.text("SELECT rolname FROM pg_roles WHERE rolname = current_schema()")).scalar()
    if role is not None:
        quoted = bind.dialect.identifier_preparer.quote_identifier(role)
        op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {', '.join(APPEND_ONLY)} FROM {quoted}")


def downgrade() -> None:
    op.drop_index("entry_kind_occurred_idx", table_name="entry")
    for table in ("kpi_target", "lab_turnaround", "appointment", "slot", "clinic", "ed_visit", "inpatient_stay",
                  *APPEND_ONLY):
        op.drop_table(table)
