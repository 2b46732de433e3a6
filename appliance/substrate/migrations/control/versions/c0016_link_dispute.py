"""`control.subject_link_dispute`: a chart linked to a person over a differing answer to the national-ID question,
and a death recorded on such a chart kept to it (appliance/substrate/identity.py, deaths.py).

A desk that confirms a national ID whose holder elsewhere has another birth date or sex links the chart to the
holder's subject (`clinical.service.link_registration`); nothing recorded that it did. A death certified on that
chart then marked the holder deceased at every facility (c0010). This revision records the link, in the control
transaction that makes it: the facility and chart, the subject, what differed, who confirmed and when. The row goes
when a clinician there confirms the identity from documents (`identity.confirm_linked_identity`, audited) or the
national ID is corrected and the chart relinked (`identity.relink_facility`).

A death recorded on a chart with such a row is `confined`: `control.subject_death_of` shows it to the recording
facility alone, and it is left out of the one-live-death index, so the holder's own death, certified elsewhere, is
not refused as a second one. `record_subject_death` answers whether it kept the death to the chart, which the
recording facility is told. Confirming the identity lifts the confinement; correcting the national ID moves the
death to the person the chart now names.

Revision ID: c0016
Revises: c0015
Create Date: 2026-11-28
"""

import importlib

import sqlalchemy as sa
from alembic import op

revision = "c0016"
down_revision = "c0015"
branch_labels = None
depends_on = None

c0010 = importlib.import_module("appliance.substrate.migrations.control.versions.c0010_subject_death")

_DEATH_OF = """
    CREATE FUNCTION control.subject_death_of(p_subject uuid)
    RETURNS TABLE (died_at timestamptz, tenant text, facility text, timezone text, entry_id uuid, confined boolean)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog ROWS 1 AS $$
    #variable_conflict use_column
    BEGIN
        -- As c0010's: three index probes answer for a living person never merged (a confined death is a live row).
        IF NOT EXISTS (SELECT 1 FROM control.subject_death d WHERE d.subject_id = p_subject AND d.withdrawn_at IS NULL)
           AND NOT EXISTS (SELECT 1 FROM control.subject s WHERE s.id = p_subject AND s.merged_into IS NOT NULL)
           AND NOT EXISTS (SELECT 1 FROM control.subject s WHERE s.merged_into = p_subject) THEN
            RETURN;
        END IF;
        RETURN QUERY
        __PERSON__
        SELECT d.died_at, d.tenant, coalesce(t.name, 'a facility no longer on this appliance'),
               coalesce(t.timezone, 'UTC'), d.entry_id, d.confined
        FROM control.subject_death d LEFT JOIN control.tenant t ON t.slug = d.tenant
        WHERE d.subject_id IN (SELECT id FROM person) AND d.withdrawn_at IS NULL
          -- A death kept to a chart whose link is in dispute is the recording facility's alone.
          AND (NOT d.confined OR d.tenant = __CALLER__)
          AND EXISTS (SELECT 1 FROM control.subject_facility f
                      WHERE f.subject_id IN (SELECT id FROM person) AND f.tenant = __CALLER__)
        -- The recording facility reads its own kept death first, even once the holder's is certified elsewhere.
        ORDER BY d.confined DESC, d.recorded_at LIMIT 1;
    END $$
"""

_RECORD = """
    CREATE FUNCTION control.record_subject_death(p_subject uuid, p_patient uuid, p_entry uuid, p_died_at timestamptz)
    RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
    DECLARE
        caller text := __CALLER__;
        survivor uuid;
        charted boolean;
        kept boolean;
    BEGIN
        IF caller IS NULL THEN
            RAISE EXCEPTION 'a death is recorded from a facility''s own transaction' USING ERRCODE = '42501';
        END IF;
        __PERSON__
        SELECT (SELECT up.id FROM up WHERE up.merged_into IS NULL),
               EXISTS (SELECT 1 FROM control.subject_facility f
                       WHERE f.subject_id IN (SELECT id FROM person) AND f.tenant = caller)
        INTO survivor, charted;
        IF NOT charted THEN
            RAISE EXCEPTION 'a facility records the death only of a person it holds a chart of'
                USING ERRCODE = '42501';
        END IF;
        IF survivor IS NULL THEN
            RAISE EXCEPTION 'no subject %', p_subject USING ERRCODE = '23503';
        END IF;
        kept := EXISTS (SELECT 1 FROM control.subject_link_dispute l
                        WHERE l.tenant = caller AND l.patient_id = p_patient);
        INSERT INTO control.subject_death (subject_id, tenant, patient_id, entry_id, died_at, confined)
        VALUES (survivor, caller, p_patient, p_entry, p_died_at, kept);
        RETURN kept;
    END $$
"""

FUNCTIONS = [template.replace("__CALLER__", c0010._CALLER).replace("__PERSON__", c0010._PERSON)
             for template in (_DEATH_OF, _RECORD)]
SIGNATURES = ["control.subject_death_of(uuid)", "control.record_subject_death(uuid, uuid, uuid, timestamptz)"]


def upgrade() -> None:
    op.create_table(
        "subject_link_dispute",
        sa.Column("tenant", sa.Text(), primary_key=True),
        sa.Column("patient_id", sa.Uuid(), primary_key=True),
        sa.Column("subject_id", sa.Uuid(), sa.ForeignKey("control.subject.id"), nullable=False),
        sa.Column("differs", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column("confirmed_by", sa.Uuid(), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema="control",
    )
    op.add_column("subject_death", sa.Column("confined", sa.Boolean(), nullable=False, server_default=sa.false()),
                  schema="control")
    op.drop_index("subject_death_live_key", "subject_death", schema="control")
    op.create_index("subject_death_live_key", "subject_death", ["subject_id"], unique=True, schema="control",
                    postgresql_where=sa.text("withdrawn_at IS NULL AND NOT confined"))
    for signature in SIGNATURES:
        op.execute(f"DROP FUNCTION {signature}")
    for function in FUNCTIONS:
        op.execute(function)
    for signature in SIGNATURES:
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO PUBLIC")


def downgrade() -> None:
    kept = op.get_bind().execute(sa.text(
        "SELECT count(*) FROM control.subject_death WHERE confined AND withdrawn_at IS NULL")).scalar()
    if kept:
        raise RuntimeError(
            f"{kept} death(s) are kept to a chart whose identity is not confirmed; before c0016 they would mark the "
            "national ID's holder deceased at every facility. Confirm the identity or correct the national ID of "
            "those charts, then downgrade.")
    for signature in SIGNATURES:
        op.execute(f"DROP FUNCTION {signature}")
    for function in c0010.FUNCTIONS[:2]:
        op.execute(function)
    for signature in SIGNATURES:
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO PUBLIC")
    op.drop_index("subject_death_live_key", "subject_death", schema="control")
    op.drop_column("subject_death", "confined", schema="control")
    op.create_index("subject_death_live_key", "subject_death", ["subject_id"], unique=True, schema="control",
                    postgresql_where=sa.text("withdrawn_at IS NULL"))
    op.drop_table("subject_link_dispute", schema="control")
