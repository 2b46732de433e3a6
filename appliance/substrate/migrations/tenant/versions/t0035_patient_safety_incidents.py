"""Patient safety incidents (operations layer, appliance/layers/operations/incidents.py): what staff report and
the quality manager's review of it.

- `incident`: one report, as the reporter gave it, never rewritten: when and where (a ward or department of the
  facility's configuration), the incident type (derived from WHO's ICPS, 2009), what happened, the harm to the
  patient (ICPS degree of harm: none, mild, moderate, severe, death) or a near miss (did not reach the patient),
  the immediate action taken, optionally the patient concerned (then patient data), and who reported it, unless
  it is anonymous: then `reported_by` and `reporter_name` are empty (a check says so) and the reporter is named
  only in the encrypted audit trail. `number` is the facility's running number of its reports (what a person
  quotes). Not an entry of the record: an incident may name no patient, and it is a quality record, not the chart.
- `incident_review`: the review's history, append-only: notes, contributing factors (ICPS), actions (owner, due
  date), the severity confirmed, and the closing with its learning summary (at most one per incident).
  An incident's status is read from it: open (no event), under review, closed.

Revision ID: t0035
Revises: t0034
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "t0035"
down_revision = "t0034"
branch_labels = None
depends_on = None

TYPES = ("clinical_process", "medication", "fall", "pressure_injury", "infection", "blood", "medical_device",
         "documentation", "patient_identification", "behaviour", "other")
OUTCOMES = ("near_miss", "none", "mild", "moderate", "severe", "death")
REVIEW_KINDS = ("note", "contributing_factors", "action", "severity_confirmed", "closed")
FACTORS = ("staff", "communication", "patient", "environment", "organisation", "external", "other")
APPEND_ONLY = ("incident", "incident_review")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "incident",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("number", sa.BigInteger(), sa.Identity(always=True), nullable=False, unique=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ward_code", sa.Text(), sa.ForeignKey("ward.code"), nullable=False),
        sa.Column("incident_type", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("immediate_action", sa.Text(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), sa.ForeignKey("patient.id"), nullable=True),
        sa.Column("anonymous", sa.Boolean(), nullable=False),
        sa.Column("reported_by", sa.Uuid(), nullable=True),
        sa.Column("reporter_name", sa.Text(), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(_in("incident_type", TYPES), name="incident_type_known"),
        sa.CheckConstraint(_in("outcome", OUTCOMES), name="incident_outcome_known"),
        sa.CheckConstraint("length(description) BETWEEN 1 AND 4000", name="incident_description_length"),
        sa.CheckConstraint("length(immediate_action) BETWEEN 1 AND 2000", name="incident_action_length"),
        # An anonymous report keeps no trace of its reporter here; a named one keeps both.
        sa.CheckConstraint("anonymous = (reported_by IS NULL) AND (reported_by IS NULL) = (reporter_name IS NULL)",
                           name="incident_anonymous_names_nobody"),
    )
    op.create_index("incident_occurred_idx", "incident", ["occurred_at"])
    op.create_index("incident_reported_by_idx", "incident", ["reported_by"],
                    postgresql_where=sa.text("reported_by IS NOT NULL"))
    op.create_table(
        "incident_review",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("incident_id", sa.Uuid(), sa.ForeignKey("incident.id"), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("factors", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("action", sa.Text(), nullable=True),
        sa.Column("action_owner", sa.Text(), nullable=True),
        sa.Column("action_due", sa.Date(), nullable=True),
        sa.Column("harm", sa.Text(), nullable=True),
        sa.Column("by_account", sa.Uuid(), nullable=False),
        sa.Column("by_name", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(_in("kind", REVIEW_KINDS), name="incident_review_kind_known"),
        sa.CheckConstraint("kind NOT IN ('note', 'closed') OR length(note) BETWEEN 1 AND 4000",
                           name="incident_review_note_given"),
        sa.CheckConstraint(f"kind <> 'contributing_factors' OR (cardinality(factors) > 0 AND factors <@ "
                           f"ARRAY[{', '.join(repr(f) for f in FACTORS)}]::text[])",
                           name="incident_review_factors_known"),
        sa.CheckConstraint("kind <> 'action' OR (length(action) BETWEEN 1 AND 1000 AND "
                           "length(action_owner) BETWEEN 1 AND 200 AND action_due IS NOT NULL)",
                           name="incident_review_action_complete"),
        sa.CheckConstraint(f"kind <> 'severity_confirmed' OR {_in('harm', OUTCOMES)}",
                           name="incident_review_harm_known"),
    )
    op.create_index("incident_review_incident_idx", "incident_review", ["incident_id", "at"])
    # Closed once: two reviewers closing at the same moment cannot both succeed.
    op.create_index("incident_review_one_close_key", "incident_review", ["incident_id"], unique=True,
                    postgresql_where=sa.text("kind = 'closed'"))
    # Reports and their reviews are appended to and read, never rewritten or removed by the tenant role.
    for table in APPEND_ONLY:
        op.execute(sa.text(
            f"""
            DO $$
            BEGIN
                IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM %I', current_schema());
                END IF;
            END $$
            """  # noqa: S608 -- the table names are this module's constants
        ))


def downgrade() -> None:
    op.drop_table("incident_review")
    op.drop_table("incident")
