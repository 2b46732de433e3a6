"""The one record: entry spine and the clinical layer's detail tables.

Revision ID: t0002
Revises: t0001
Create Date: 2026-11-25

`entry` and the detail tables are append-only: the tenant role keeps SELECT and INSERT and loses
UPDATE, DELETE and TRUNCATE, so a correction can only be a new entry — PostgreSQL refuses anything else.
Patient-name search uses pg_trgm, installed once in schema `public` by the cluster bootstrap; the
operator class is schema-qualified because a tenant's search_path holds only its own schema.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "t0002"
down_revision = "t0001"
branch_labels = None
depends_on = None

JSONB = postgresql.JSONB

def _entry_key() -> sa.Column:
    return sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True)


def upgrade() -> None:
    if not _trgm_installed():
        op.execute("CREATE EXTENSION pg_trgm SCHEMA public")

    op.create_table(
        "entry",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("root_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=True),
        sa.Column("encounter_id", sa.Uuid(), nullable=True),
        sa.Column("author_id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("supersedes", sa.Uuid(), sa.ForeignKey("entry.id"), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('final', 'amended', 'entered_in_error')", name="entry_status_known"),
        sa.CheckConstraint("(supersedes IS NULL) = (status = 'final')", name="entry_versions_supersede"),
    )
    op.create_index("entry_patient_kind_idx", "entry", ["patient_id", "kind", "occurred_at"])
    op.create_index("entry_encounter_idx", "entry", ["encounter_id"])
    op.create_index("entry_root_idx", "entry", ["root_id"])
    op.create_index("entry_supersedes_key", "entry", ["supersedes"], unique=True,
                    postgresql_where=sa.text("supersedes IS NOT NULL"))

    op.create_table(
        "patient",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("subject_id", sa.Uuid(), nullable=True),
        sa.Column("mrn", sa.Text(), nullable=False),
        sa.Column("family_name", sa.Text(), nullable=False),
        sa.Column("given_names", sa.Text(), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("birth_date_estimated", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("sex", sa.Text(), nullable=False),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("address", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("contacts", JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("next_of_kin", JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("name_search", sa.Text(), nullable=False),
        sa.Column("demographics_entry_id", sa.Uuid(), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("mrn", name="patient_mrn_key"),
        sa.CheckConstraint("sex IN ('female', 'male', 'other', 'unknown')", name="patient_sex_known"),
    )
    op.create_index("patient_name_trgm_idx", "patient", ["name_search"], postgresql_using="gin",
                    postgresql_ops={"name_search": "public.gin_trgm_ops"})
    op.create_index("patient_birth_date_idx", "patient", ["birth_date"])
    op.create_index("patient_subject_idx", "patient", ["subject_id"])
    op.execute("CREATE SEQUENCE patient_mrn_seq")

    op.create_table(
        "patient_identifier",
        sa.Column("system", sa.Text(), primary_key=True),
        sa.Column("value", sa.Text(), primary_key=True),
        sa.Column("patient_id", sa.Uuid(), sa.ForeignKey("patient.id"), nullable=False),
    )
    op.create_index("patient_identifier_patient_idx", "patient_identifier", ["patient_id"])
    op.create_index("patient_identifier_value_idx", "patient_identifier", ["value"])

    op.create_table(
        "encounter",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), nullable=False),
        sa.Column("patient_id", sa.Uuid(), sa.ForeignKey("patient.id"), nullable=False),
        sa.Column("encounter_class", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("ward_code", sa.Text(), nullable=True),
        sa.Column("planned_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("entry_id", name="encounter_entry_id_key"),
        sa.CheckConstraint("encounter_class IN ('outpatient', 'emergency', 'inpatient')", name="encounter_class_known"),
        sa.CheckConstraint("status IN ('planned', 'arrived', 'in_progress', 'finished', 'cancelled')",
                           name="encounter_status_known"),
    )
    op.create_index("encounter_patient_idx", "encounter", ["patient_id", "started_at"])
    op.create_index("encounter_open_idx", "encounter", ["status"],
                    postgresql_where=sa.text("status IN ('planned', 'arrived', 'in_progress')"))

    op.create_table(
        "demographics",
        _entry_key(),
        sa.Column("family_name", sa.Text(), nullable=False),
        sa.Column("given_names", sa.Text(), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("birth_date_estimated", sa.Boolean(), nullable=False),
        sa.Column("sex", sa.Text(), nullable=False),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("address", JSONB(), nullable=False),
        sa.Column("identifiers", JSONB(), nullable=False),
        sa.Column("contacts", JSONB(), nullable=False),
        sa.Column("next_of_kin", JSONB(), nullable=False),
    )
    op.create_table(
        "encounter_status_change",
        _entry_key(),
        sa.Column("encounter_id", sa.Uuid(), sa.ForeignKey("encounter.id"), nullable=False),
        sa.Column("from_status", sa.Text(), nullable=False),
        sa.Column("to_status", sa.Text(), nullable=False),
    )
    op.create_table(
        "condition",
        _entry_key(),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("display", sa.Text(), nullable=False),
        sa.Column("clinical_status", sa.Text(), nullable=False),
        sa.Column("verification", sa.Text(), nullable=False),
        sa.Column("onset_date", sa.Date(), nullable=True),
        sa.Column("resolved_date", sa.Date(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_table(
        "allergy",
        _entry_key(),
        sa.Column("substance", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("reaction", sa.Text(), nullable=True),
        sa.Column("severity", sa.Text(), nullable=True),
        sa.Column("criticality", sa.Text(), nullable=False),
        sa.Column("clinical_status", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_table(
        "medication_request",
        _entry_key(),
        sa.Column("drug", sa.Text(), nullable=False),
        sa.Column("dose", sa.Numeric(), nullable=False),
        sa.Column("dose_unit", sa.Text(), nullable=False),
        sa.Column("route", sa.Text(), nullable=False),
        sa.Column("frequency", sa.Text(), nullable=False),
        sa.Column("duration_days", sa.Integer(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=True),
        sa.Column("allergy_override_reason", sa.Text(), nullable=True),
        sa.Column("order_set", sa.Text(), nullable=True),
    )
    op.create_table(
        "allergy_alert",
        _entry_key(),
        sa.Column("drug", sa.Text(), nullable=False),
        sa.Column("matches", JSONB(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("override_reason", sa.Text(), nullable=True),
    )
    op.create_table(
        "service_request",
        _entry_key(),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("display", sa.Text(), nullable=False),
        sa.Column("priority", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("clinical_info", sa.Text(), nullable=True),
        sa.Column("order_set", sa.Text(), nullable=True),
    )
    op.create_table(
        "result",
        _entry_key(),
        sa.Column("service_request_id", sa.Uuid(), nullable=True),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("display", sa.Text(), nullable=False),
        sa.Column("value_numeric", sa.Numeric(), nullable=True),
        sa.Column("value_text", sa.Text(), nullable=True),
        sa.Column("unit", sa.Text(), nullable=True),
        sa.Column("reference_low", sa.Numeric(), nullable=True),
        sa.Column("reference_high", sa.Numeric(), nullable=True),
        sa.Column("flag", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_index("result_service_request_idx", "result", ["service_request_id"])
    op.create_table(
        "result_signoff",
        _entry_key(),
        sa.Column("result_id", sa.Uuid(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
    )
    op.create_index("result_signoff_result_idx", "result_signoff", ["result_id"])
    op.create_table(
        "vital_signs",
        _entry_key(),
        sa.Column("systolic_mmhg", sa.Integer(), nullable=True),
        sa.Column("diastolic_mmhg", sa.Integer(), nullable=True),
        sa.Column("heart_rate_bpm", sa.Integer(), nullable=True),
        sa.Column("respiratory_rate", sa.Integer(), nullable=True),
        sa.Column("temperature_c", sa.Numeric(4, 1), nullable=True),
        sa.Column("spo2_percent", sa.Integer(), nullable=True),
        sa.Column("weight_kg", sa.Numeric(5, 1), nullable=True),
        sa.Column("height_cm", sa.Numeric(4, 1), nullable=True),
    )
    op.create_table(
        "note",
        _entry_key(),
        sa.Column("template_code", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("fields", JSONB(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
    )

    for name in ("orderable", "note_template", "order_set"):
        columns = [
            sa.Column("code", sa.Text(), primary_key=True),
            sa.Column("name", sa.Text(), nullable=False),
        ]
        if name == "orderable":
            columns.append(sa.Column("category", sa.Text(), nullable=False))
        if name == "note_template":
            columns.append(sa.Column("specialty", sa.Text(), nullable=False))
        columns += [
            sa.Column("definition", JSONB(), nullable=False),
            sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        ]
        op.create_table(name, *columns)

    # The tenant role (named like the schema) may read and append, never rewrite or remove, the record.
    # Provisioning creates the role before migrating; a schema migrated without one has nothing to revoke.
    op.execute(sa.text(
        """
        DO $$
        DECLARE
            append_only text;
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                FOREACH append_only IN ARRAY ARRAY[
                    'entry', 'demographics', 'encounter_status_change', 'condition', 'allergy',
                    'medication_request', 'allergy_alert', 'service_request', 'result', 'result_signoff',
                    'vital_signs', 'note'
                ] LOOP
                    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %I FROM %I', append_only, current_schema());
                END LOOP;
            END IF;
        END $$
        """
    ))


def _trgm_installed() -> bool:
    """pg_trgm is normally installed by the embedded cluster's bootstrap (a superuser, once); on an
    operator's own server it is a trusted extension the database owner may create itself."""
    found = op.get_bind().execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).first()
    return found is not None
