"""`control.referral`: a patient referred from one facility of the appliance to another (substrate/referrals.py).

The referring facility writes a `referral` entry in its own record (tenant t0028) and, in the same transaction,
this row: to whom, how urgent, why, and the letter (the clinician's summary and the items of the chart they chose
to send, copied at sending). The receiving facility reads the row and answers it: accepted (with its own chart of
the person), declined with a reason, then completed with the feedback (the counter-referral) the referring
facility reads. The referring facility may withdraw one not yet answered. Statuses: sent -> accepted | declined |
withdrawn; accepted -> completed.

A tenant role cannot read or write `control`, so, as for c0010's death mark, SECURITY DEFINER functions owned by
the appliance's login role are the only way in, each naming its caller's facility from the role the tenant
transaction runs as (`current_setting('role')`), never from an argument: a facility reads only the referrals it
sent and those addressed to it, sends one only for a person it holds a chart of (`subject_facility`), and acts
only on its own side of one. A referral between two other facilities is not there for it: an act on one, like
an act on an id nobody sent, is refused as not found (SQLSTATE HR404).
Refusals a person can act on carry their own SQLSTATE (HR404 not found, HR409 not in a state for this act, HR422
wrong input), which `referrals.py` turns into the API's 404/409/422 with the function's sentence.

Revision ID: c0011
Revises: c0010
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "c0011"
down_revision = "c0010"
branch_labels = None
depends_on = None

# The calling facility, from the tenant role its transaction runs as; NULL outside a tenant transaction.
_CALLER = """(SELECT t.slug FROM control.tenant t
              WHERE 't_' || t.slug = current_setting('role') AND t.status = 'active')"""

_TEMPLATES = [
    """
    CREATE FUNCTION control.send_referral(p_id uuid, p_subject uuid, p_patient uuid, p_entry uuid, p_by uuid,
                                          p_to text, p_clinic text, p_urgency text, p_reason text, p_letter jsonb)
    RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
    DECLARE
        caller text := __CALLER__;
        target record;
        survivor uuid;
        charted boolean;
    BEGIN
        IF caller IS NULL THEN
            RAISE EXCEPTION 'a referral is sent from a facility''s own transaction' USING ERRCODE = '42501';
        END IF;
        -- Only a person the caller holds a chart of is referred: a forged subject would put a letter on a
        -- hospital's chart of a stranger and bring its feedback back. Nobody is refused the same way.
        WITH RECURSIVE up(id, merged_into) AS (
            SELECT s.id, s.merged_into FROM control.subject s WHERE s.id = p_subject
            UNION SELECT s.id, s.merged_into FROM control.subject s JOIN up ON s.id = up.merged_into),
        person(id) AS (
            SELECT up.id FROM up WHERE up.merged_into IS NULL
            UNION SELECT s.id FROM control.subject s JOIN person ON s.merged_into = person.id)
        SELECT EXISTS (SELECT 1 FROM control.subject_facility f
                       WHERE f.subject_id IN (SELECT id FROM person) AND f.tenant = caller) INTO charted;
        IF NOT charted THEN
            RAISE EXCEPTION 'a facility refers only a person it holds a chart of' USING ERRCODE = '42501';
        END IF;
        SELECT t.slug, t.name, t.config INTO target FROM control.tenant t
        WHERE t.slug = p_to AND t.status = 'active';
        IF NOT FOUND THEN
            RAISE EXCEPTION 'there is no facility "%" on this appliance to refer to', p_to
                USING ERRCODE = 'HR422', HINT = 'to_tenant';
        END IF;
        IF p_to = caller THEN
            RAISE EXCEPTION 'a patient is referred to another facility, not to the one referring them'
                USING ERRCODE = 'HR422', HINT = 'to_tenant';
        END IF;
        IF p_clinic IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM jsonb_array_elements(coalesce(target.config -> 'clinics', '[]'::jsonb)) c
                WHERE c ->> 'code' = p_clinic) THEN
            RAISE EXCEPTION '% has no clinic "%" to refer to', target.name, p_clinic
                USING ERRCODE = 'HR422', HINT = 'clinic';
        END IF;
        WITH RECURSIVE up(id, merged_into) AS (
            SELECT s.id, s.merged_into FROM control.subject s WHERE s.id = p_subject
            UNION SELECT s.id, s.merged_into FROM control.subject s JOIN up ON s.id = up.merged_into)
        SELECT up.id INTO survivor FROM up WHERE up.merged_into IS NULL;
        IF survivor IS NULL THEN
            RAISE EXCEPTION 'no subject %', p_subject USING ERRCODE = '23503';
        END IF;
        INSERT INTO control.referral (id, subject_id, from_tenant, from_patient, from_entry, sent_by, to_tenant,
                                      clinic, urgency, reason, letter)
        VALUES (p_id, survivor, caller, p_patient, p_entry, p_by, p_to, p_clinic, p_urgency, p_reason, p_letter);
    END $$
    """,
    """
    CREATE FUNCTION control.referrals_of(p_side text, p_id uuid, p_patient uuid)
    RETURNS TABLE (id uuid, subject_id uuid, from_tenant text, from_facility text, from_patient uuid,
                   to_tenant text, to_facility text, clinic text, urgency text, reason text, letter jsonb,
                   status text, sent_at timestamptz, sent_by uuid, answered_at timestamptz, answered_by uuid,
                   declined_reason text, to_patient uuid, feedback jsonb, completed_at timestamptz,
                   completed_by uuid, withdrawn_at timestamptz, withdrawn_reason text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
        SELECT r.id, r.subject_id, r.from_tenant, f.name, r.from_patient, r.to_tenant, t.name, r.clinic,
               r.urgency, r.reason, r.letter, r.status, r.sent_at, r.sent_by, r.answered_at, r.answered_by,
               r.declined_reason, r.to_patient, r.feedback, r.completed_at, r.completed_by, r.withdrawn_at,
               r.withdrawn_reason
        FROM control.referral r
        LEFT JOIN control.tenant f ON f.slug = r.from_tenant LEFT JOIN control.tenant t ON t.slug = r.to_tenant
        WHERE CASE p_side WHEN 'sent' THEN r.from_tenant = __CALLER__
                          WHEN 'received' THEN r.to_tenant = __CALLER__ ELSE false END
          AND (p_id IS NULL OR r.id = p_id)
          AND (p_patient IS NULL OR p_patient = CASE p_side WHEN 'sent' THEN r.from_patient ELSE r.to_patient END)
        ORDER BY r.sent_at DESC
    $$
    """,
    """
    CREATE FUNCTION control.act_on_referral(p_id uuid, p_act text, p_by uuid, p_text text, p_patient uuid,
                                            p_feedback jsonb)
    RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
    DECLARE
        caller text := __CALLER__;
        held control.referral%ROWTYPE;
    BEGIN
        IF caller IS NULL THEN
            RAISE EXCEPTION 'a referral is answered from a facility''s own transaction' USING ERRCODE = '42501';
        END IF;
        -- The referring facility withdraws; the receiving one answers. Anyone else's referral is not there.
        SELECT * INTO held FROM control.referral r
        WHERE r.id = p_id AND CASE WHEN p_act = 'withdraw' THEN r.from_tenant ELSE r.to_tenant END = caller
        FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no referral % %', p_id,
                CASE WHEN p_act = 'withdraw' THEN 'sent from this facility' ELSE 'addressed to this facility' END
                USING ERRCODE = 'HR404';
        END IF;
        IF held.status = 'withdrawn' THEN
            RAISE EXCEPTION 'this referral was withdrawn by the referring facility: nothing more is done with it'
                USING ERRCODE = 'HR409';
        END IF;
        IF p_act IN ('withdraw', 'accept', 'decline') AND held.status <> 'sent' THEN
            RAISE EXCEPTION 'this referral was already answered (%): it can no longer be %', held.status,
                CASE p_act WHEN 'withdraw' THEN 'withdrawn' WHEN 'accept' THEN 'accepted' ELSE 'declined' END
                USING ERRCODE = 'HR409';
        END IF;
        IF p_act = 'complete' AND held.status <> 'accepted' THEN
            RAISE EXCEPTION 'feedback is written on an accepted referral; this one is %', held.status
                USING ERRCODE = 'HR409';
        END IF;
        IF p_act = 'withdraw' THEN
            UPDATE control.referral SET status = 'withdrawn', withdrawn_at = now(), withdrawn_reason = p_text
            WHERE referral.id = p_id;
        ELSIF p_act = 'accept' THEN
            IF p_patient IS NULL THEN
                RAISE EXCEPTION 'a referral is accepted onto a chart of this facility' USING ERRCODE = 'HR422';
            END IF;
            UPDATE control.referral SET status = 'accepted', answered_at = now(), answered_by = p_by,
                                        to_patient = p_patient
            WHERE referral.id = p_id;
        ELSIF p_act = 'decline' THEN
            IF coalesce(btrim(p_text), '') = '' THEN
                RAISE EXCEPTION 'say why the referral is declined' USING ERRCODE = 'HR422', HINT = 'reason';
            END IF;
            UPDATE control.referral SET status = 'declined', answered_at = now(), answered_by = p_by,
                                        declined_reason = p_text
            WHERE referral.id = p_id;
        ELSIF p_act = 'complete' THEN
            IF p_feedback IS NULL THEN
                RAISE EXCEPTION 'write the feedback for the referring facility' USING ERRCODE = 'HR422';
            END IF;
            UPDATE control.referral SET status = 'completed', completed_at = now(), completed_by = p_by,
                                        feedback = p_feedback
            WHERE referral.id = p_id;
        ELSE
            RAISE EXCEPTION 'no act "%" on a referral', p_act USING ERRCODE = 'HR422';
        END IF;
        RETURN (SELECT r.status FROM control.referral r WHERE r.id = p_id);
    END $$
    """,
]
# The caller fragment written into each function's text (a constant of this module: nothing is interpolated
# from outside).
FUNCTIONS = [template.replace("__CALLER__", _CALLER) for template in _TEMPLATES]
SIGNATURES = ["control.send_referral(uuid, uuid, uuid, uuid, uuid, text, text, text, text, jsonb)",
              "control.referrals_of(text, uuid, uuid)",
              "control.act_on_referral(uuid, text, uuid, text, uuid, jsonb)"]


def upgrade() -> None:
    op.create_table(
        "referral",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("subject_id", sa.Uuid(), sa.ForeignKey("control.subject.id"), nullable=False),
        sa.Column("from_tenant", sa.Text(), nullable=False),
        sa.Column("from_patient", sa.Uuid(), nullable=False),
        sa.Column("from_entry", sa.Uuid(), nullable=False),
        sa.Column("sent_by", sa.Uuid(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("to_tenant", sa.Text(), nullable=False),
        sa.Column("clinic", sa.Text(), nullable=True),
        sa.Column("urgency", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("letter", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="sent"),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_by", sa.Uuid(), nullable=True),
        sa.Column("declined_reason", sa.Text(), nullable=True),
        sa.Column("to_patient", sa.Uuid(), nullable=True),
        sa.Column("feedback", postgresql.JSONB(), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_by", sa.Uuid(), nullable=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_reason", sa.Text(), nullable=True),
        sa.CheckConstraint("urgency IN ('routine', 'urgent', 'emergency')", name="referral_urgency"),
        sa.CheckConstraint("status IN ('sent', 'accepted', 'declined', 'withdrawn', 'completed')",
                           name="referral_status"),
        sa.CheckConstraint("from_tenant <> to_tenant", name="referral_elsewhere"),
        sa.UniqueConstraint("from_tenant", "from_entry", name="referral_entry_key"),
        schema="control",
    )
    op.create_index("referral_from_idx", "referral", ["from_tenant", "sent_at"], schema="control")
    op.create_index("referral_to_idx", "referral", ["to_tenant", "sent_at"], schema="control")
    for function in FUNCTIONS:
        op.execute(function)
    for signature in SIGNATURES:
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO PUBLIC")


def downgrade() -> None:
    for signature in SIGNATURES:
        op.execute(f"DROP FUNCTION {signature}")
    op.drop_table("referral", schema="control")
