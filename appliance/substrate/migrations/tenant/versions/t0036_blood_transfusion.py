"""The blood bank and the bedside transfusion record (appliance/layers/clinical/blood.py, the laboratory's side;
appliance/layers/nursing/transfusion.py, the ward's).

- `blood_unit`: the blood bank's stock, one row per bag received: its unit number (unique in the facility), the
  component, its ABO and RhD group, volume, when it was collected and when it expires, who received it. Not
  patient data.
- `blood_unit_event`: what became of each unit, append-only for the tenant role: reserved for a patient's request
  (crossmatched, or issued uncrossmatched in an emergency with the reason), released back to stock, issued to the
  ward, transfused (naming the bedside `transfusion` entry), discarded with the reason. A unit's status is its
  last event's (none: available); expired is computed from `expires_on`. The rows naming a patient are patient
  data.
- `blood_request`: the detail of the clinical layer's `blood_request` entries (patient data): the component, how
  many units, the indication and the urgency.
- `transfusion`: the detail of the nursing layer's `transfusion` entries (patient data): the unit, the second
  person of the bedside check, start and end, the vital signs before, at 15 minutes and at the end (the clinical
  layer's `vital_signs` entries they were recorded as), the volume given and the reaction, if any.

Revision ID: t0036
Revises: t0035
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "t0036"
down_revision = "t0035"
branch_labels = None
depends_on = None

COMPONENTS = "('whole_blood', 'red_cells', 'plasma', 'platelets')"
APPEND_ONLY = ("blood_unit", "blood_unit_event", "blood_request", "transfusion")


def upgrade() -> None:
    op.create_table(
        "blood_unit",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("unit_number", sa.Text(), nullable=False, unique=True),
        sa.Column("component", sa.Text(), nullable=False),
        sa.Column("abo", sa.Text(), nullable=False),
        sa.Column("rhd", sa.Text(), nullable=False),
        sa.Column("volume_ml", sa.Integer(), nullable=False),
        sa.Column("collected_on", sa.Date(), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("received_by", sa.Uuid(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(f"component IN {COMPONENTS}", name="blood_unit_component"),
        sa.CheckConstraint("abo IN ('O', 'A', 'B', 'AB')", name="blood_unit_abo"),
        sa.CheckConstraint("rhd IN ('positive', 'negative')", name="blood_unit_rhd"),
        sa.CheckConstraint("volume_ml BETWEEN 1 AND 1000", name="blood_unit_volume_range"),
        sa.CheckConstraint("expires_on >= collected_on", name="blood_unit_expires_after_collection"),
    )
    op.create_index("blood_unit_expires_on_idx", "blood_unit", ["expires_on"])
    op.create_table(
        "blood_unit_event",
        sa.Column("seq", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("unit_id", sa.Uuid(), sa.ForeignKey("blood_unit.id"), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=True),
        sa.Column("request_id", sa.Uuid(), nullable=True),
        sa.Column("emergency", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), nullable=True),
        sa.Column("recorded_by", sa.Uuid(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("kind IN ('reserved', 'released', 'issued', 'transfused', 'discarded')",
                           name="blood_unit_event_kind"),
        sa.CheckConstraint("kind NOT IN ('reserved', 'issued', 'transfused') OR "
                           "(patient_id IS NOT NULL AND request_id IS NOT NULL)", name="blood_unit_event_for_whom"),
        sa.CheckConstraint("kind NOT IN ('discarded', 'released') OR reason IS NOT NULL",
                           name="blood_unit_event_reason"),
        sa.CheckConstraint("NOT emergency OR reason IS NOT NULL", name="blood_unit_event_emergency_reason"),
        sa.CheckConstraint("kind <> 'transfused' OR entry_id IS NOT NULL", name="blood_unit_event_transfused_entry"),
    )
    op.create_index("blood_unit_event_unit_idx", "blood_unit_event", ["unit_id", "seq"])
    op.create_index("blood_unit_event_request_idx", "blood_unit_event", ["request_id"])
    op.create_table(
        "blood_request",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("component", sa.Text(), nullable=False),
        sa.Column("units", sa.SmallInteger(), nullable=False),
        sa.Column("indication", sa.Text(), nullable=False),
        sa.Column("urgency", sa.Text(), nullable=False),
        sa.CheckConstraint(f"component IN {COMPONENTS}", name="blood_request_component"),
        sa.CheckConstraint("units BETWEEN 1 AND 10", name="blood_request_units_range"),
        sa.CheckConstraint("urgency IN ('routine', 'urgent', 'emergency')", name="blood_request_urgency"),
    )
    op.create_table(
        "transfusion",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("unit_number", sa.Text(), nullable=False),
        sa.Column("checked_by", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("vitals_before_id", sa.Uuid(), nullable=False),
        sa.Column("vitals_15min_id", sa.Uuid(), nullable=True),
        sa.Column("vitals_end_id", sa.Uuid(), nullable=True),
        sa.Column("volume_ml", sa.Integer(), nullable=True),
        sa.Column("reaction", sa.Text(), nullable=True),
        sa.Column("reaction_note", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('in_progress', 'completed', 'stopped')", name="transfusion_status"),
        sa.CheckConstraint("reaction IN ('none', 'febrile', 'allergic', 'haemolytic', 'taco', 'trali', 'other')",
                           name="transfusion_reaction"),
        sa.CheckConstraint("(status = 'in_progress') = (ended_at IS NULL)", name="transfusion_ended"),
        sa.CheckConstraint("status = 'in_progress' OR (reaction IS NOT NULL AND volume_ml IS NOT NULL)",
                           name="transfusion_end_says_how"),
        sa.CheckConstraint("(status = 'stopped') = (reaction IS NOT NULL AND reaction <> 'none')",
                           name="transfusion_stopped_by_reaction"),
        sa.CheckConstraint("volume_ml BETWEEN 0 AND 1000", name="transfusion_volume_range"),
        sa.CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="transfusion_ends_after_start"),
    )
    op.create_index("transfusion_unit_number_idx", "transfusion", ["unit_number"])
    # The stock's history and the record are appended to and read, never rewritten or removed by the tenant role.
    op.execute(sa.text(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON {", ".join(APPEND_ONLY)} FROM %I',
                               current_schema());
            END IF;
        END $$
        """  # noqa: S608 -- the table names are this module's constants
    ))


def downgrade() -> None:
    for table in ("transfusion", "blood_request", "blood_unit_event", "blood_unit"):
        op.drop_table(table)
