"""`control.subject_death`: a person recorded deceased, once, for every facility (appliance/substrate/deaths.py).

A death certificate is an entry of the facility that certified it (the clinical layer's `death` kind); this
row says, for the one-identity subject, that they died, when, and which facility's certificate says so, so
that no facility opens a visit, admits or books for them again. Marked entered in error (the certificate was
written on the wrong patient), the row is withdrawn, not deleted: `withdrawn_at` and the reason stay, and
the person can be certified again. One live row per subject (`subject_death_live_key`).

A tenant transaction cannot read or write `control` (its role has no rights on it), yet it is inside the
certifying transaction, and inside an encounter's, that the mark must be written and read: a certificate
and its mark commit together or not at all, and a refusal must come before anything is written. So four
functions, SECURITY DEFINER and owned by the appliance's login role, are the only way in. Each names its
caller's facility from the role the tenant transaction runs as (`current_setting('role')`, which a
SECURITY DEFINER function does not change), never from an argument, and a facility reads or writes the mark
only of a person it holds a chart of (`subject_facility`). For them the schema's USAGE is granted to PUBLIC: every
table in it stays refused to a tenant role, and EXECUTE is revoked from PUBLIC on every other function here
and on those created later.

Revision ID: c0010
Revises: c0009
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "c0010"
down_revision = "c0009"
branch_labels = None
depends_on = None

# The calling facility, from the tenant role its transaction runs as; NULL outside a tenant transaction.
_CALLER = """(SELECT t.slug FROM control.tenant t
              WHERE 't_' || t.slug = current_setting('role') AND t.status = 'active')"""

# Every subject that is the same person as p_subject: its survivor after merges, and all merged into it.
_PERSON = """
    WITH RECURSIVE up(id, merged_into) AS (
        SELECT s.id, s.merged_into FROM control.subject s WHERE s.id = p_subject
        UNION SELECT s.id, s.merged_into FROM control.subject s JOIN up ON s.id = up.merged_into),
    person(id) AS (
        SELECT up.id FROM up WHERE up.merged_into IS NULL
        UNION SELECT s.id FROM control.subject s JOIN person ON s.merged_into = person.id)
"""

_TEMPLATES = [
    """
    CREATE FUNCTION control.subject_death_of(p_subject uuid)
    RETURNS TABLE (died_at timestamptz, tenant text, facility text, timezone text, entry_id uuid)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog ROWS 1 AS $$
    #variable_conflict use_column
    BEGIN
        -- Every new encounter, admission and booking asks this, and nearly always of a living person never
        -- merged: three index probes say so (no live mark of its own, merged into no one, no one merged into
        -- it), before the merges are resolved and the caller's charts read for the rare person who needs it.
        IF NOT EXISTS (SELECT 1 FROM control.subject_death d WHERE d.subject_id = p_subject AND d.withdrawn_at IS NULL)
           AND NOT EXISTS (SELECT 1 FROM control.subject s WHERE s.id = p_subject AND s.merged_into IS NOT NULL)
           AND NOT EXISTS (SELECT 1 FROM control.subject s WHERE s.merged_into = p_subject) THEN
            RETURN;
        END IF;
        RETURN QUERY
        __PERSON__
        -- A facility dropped from the appliance leaves the person deceased: the death happened, and its
        -- certificate went with the facility's schema, not the fact.
        SELECT d.died_at, d.tenant, coalesce(t.name, 'a facility no longer on this appliance'),
               coalesce(t.timezone, 'UTC'), d.entry_id
        FROM control.subject_death d LEFT JOIN control.tenant t ON t.slug = d.tenant
        WHERE d.subject_id IN (SELECT id FROM person) AND d.withdrawn_at IS NULL
          AND EXISTS (SELECT 1 FROM control.subject_facility f
                      WHERE f.subject_id IN (SELECT id FROM person) AND f.tenant = __CALLER__)
        ORDER BY d.recorded_at LIMIT 1;
    END $$
    """,
    """
    CREATE FUNCTION control.record_subject_death(p_subject uuid, p_patient uuid, p_entry uuid,
                                                 p_died_at timestamptz)
    RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
    DECLARE
        caller text := __CALLER__;
        survivor uuid;
        charted boolean;
    BEGIN
        IF caller IS NULL THEN
            RAISE EXCEPTION 'a death is recorded from a facility''s own transaction' USING ERRCODE = '42501';
        END IF;
        __PERSON__
        SELECT (SELECT up.id FROM up WHERE up.merged_into IS NULL),
               EXISTS (SELECT 1 FROM control.subject_facility f
                       WHERE f.subject_id IN (SELECT id FROM person) AND f.tenant = caller)
        INTO survivor, charted;
        -- Before anything else is looked at: a person the caller holds no chart of, living, deceased or nobody,
        -- is one refusal, so a facility cannot mark a stranger deceased nor learn from the answer who is.
        IF NOT charted THEN
            RAISE EXCEPTION 'a facility records the death only of a person it holds a chart of'
                USING ERRCODE = '42501';
        END IF;
        IF survivor IS NULL THEN
            RAISE EXCEPTION 'no subject %', p_subject USING ERRCODE = '23503';
        END IF;
        INSERT INTO control.subject_death (subject_id, tenant, patient_id, entry_id, died_at)
        VALUES (survivor, caller, p_patient, p_entry, p_died_at);
    END $$
    """,
    """
    CREATE FUNCTION control.correct_subject_death(p_entry uuid, p_died_at timestamptz)
    RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
        UPDATE control.subject_death SET died_at = p_died_at
        WHERE tenant = __CALLER__ AND entry_id = p_entry AND withdrawn_at IS NULL
    $$
    """,
    """
    CREATE FUNCTION control.withdraw_subject_death(p_entry uuid, p_reason text)
    RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
        UPDATE control.subject_death SET withdrawn_at = now(), withdrawn_reason = p_reason
        WHERE tenant = __CALLER__ AND entry_id = p_entry AND withdrawn_at IS NULL
    $$
    """,
]
# The two fragments above written into each function's text (constants of this module: nothing is interpolated
# from outside).
FUNCTIONS = [template.replace("__CALLER__", _CALLER).replace("__PERSON__", _PERSON) for template in _TEMPLATES]
SIGNATURES = ["control.subject_death_of(uuid)", "control.record_subject_death(uuid, uuid, uuid, timestamptz)",
              "control.correct_subject_death(uuid, timestamptz)", "control.withdraw_subject_death(uuid, text)"]


def upgrade() -> None:
    op.create_table(
        "subject_death",
        sa.Column("id", sa.Uuid(), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("subject_id", sa.Uuid(), sa.ForeignKey("control.subject.id"), nullable=False),
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("entry_id", sa.Uuid(), nullable=False),
        sa.Column("died_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_reason", sa.Text(), nullable=True),
        sa.UniqueConstraint("tenant", "entry_id", name="subject_death_entry_key"),
        schema="control",
    )
    op.create_index("subject_death_live_key", "subject_death", ["subject_id"], unique=True, schema="control",
                    postgresql_where=sa.text("withdrawn_at IS NULL"))
    op.execute("REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA control FROM PUBLIC")
    op.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA control REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC")
    for function in FUNCTIONS:
        op.execute(function)
    for signature in SIGNATURES:
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO PUBLIC")
    op.execute("GRANT USAGE ON SCHEMA control TO PUBLIC")


def downgrade() -> None:
    op.execute("REVOKE USAGE ON SCHEMA control FROM PUBLIC")
    for signature in SIGNATURES:
        op.execute(f"DROP FUNCTION {signature}")
    op.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA control GRANT EXECUTE ON FUNCTIONS TO PUBLIC")
    op.drop_index("subject_death_live_key", "subject_death", schema="control")
    op.drop_table("subject_death", schema="control")
