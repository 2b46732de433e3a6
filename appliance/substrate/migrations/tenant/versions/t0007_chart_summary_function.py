"""The chart summary as a function in each tenant schema: `chart_summary(p_patient uuid)` returns the
document appliance/layers/clinical/chart.py serves.

Why a function: PostgreSQL re-plans a prepared statement whenever the connection's search_path differs
from the one it was planned under, and the one pool's connections move between tenants on nearly every
request, so the ~2 ms plan of this 9-part query was made afresh for almost every chart read. A PL/pgSQL
function keeps its plan per schema for the life of the connection (measured: 5.4 ms → 1.2 ms per call
when two tenants alternate on one connection). It runs with the caller's rights (the tenant role).

The body is frozen here (re-wrapped; whitespace is not significant). `chart.summary_function_body()`
composes it from the response models and a test compares the two, so a change to the chart's
shape needs a new revision that replaces it.

Revision ID: t0007
Revises: t0006
Create Date: 2026-11-26
"""

from alembic import op

revision = "t0007"
down_revision = "t0006"
branch_labels = None
depends_on = None

BODY = """
    SELECT json_build_object( 'patient', (SELECT row_to_json(x) FROM (SELECT p.id, p.mrn, p.subject_id,
        p.family_name, p.given_names, p.birth_date, p.birth_date_estimated, p.sex, p.phone, p.address, (SELECT
        coalesce(json_agg(json_build_object('system', i.system, 'value', i.value) ORDER BY i.system),
        '[]'::json) FROM patient_identifier i WHERE i.patient_id = p.id) AS identifiers, p.contacts,
        p.next_of_kin, p.demographics_entry_id AS version_id, p.registered_at, p.updated_at FROM patient p WHERE
        p.id = p_patient) x), 'problems', (SELECT coalesce(json_agg(x), '[]'::json) FROM (SELECT e.id,
        e.root_id, e.status AS entry_status, e.encounter_id, e.author_id, e.occurred_at, e.recorded_at, d.code,
        d.display, d.clinical_status, d.verification, d.onset_date, d.resolved_date, d.note FROM entry e JOIN
        condition d ON d.entry_id = e.id WHERE e.patient_id = p_patient AND e.kind = 'condition' AND NOT EXISTS
        (SELECT 1 FROM entry successor WHERE successor.supersedes = e.id) AND d.clinical_status = 'active' ORDER
        BY e.occurred_at DESC) x), 'allergies', (SELECT coalesce(json_agg(x), '[]'::json) FROM (SELECT e.id,
        e.root_id, e.status AS entry_status, e.encounter_id, e.author_id, e.occurred_at, e.recorded_at,
        d.substance, d.category, d.reaction, d.severity, d.criticality, d.clinical_status, d.note FROM entry e
        JOIN allergy d ON d.entry_id = e.id WHERE e.patient_id = p_patient AND e.kind = 'allergy' AND NOT EXISTS
        (SELECT 1 FROM entry successor WHERE successor.supersedes = e.id) AND d.clinical_status = 'active' ORDER
        BY e.occurred_at DESC) x), 'medications', (SELECT coalesce(json_agg(x), '[]'::json) FROM (SELECT e.id,
        e.root_id, e.status AS entry_status, e.encounter_id, e.author_id, e.occurred_at, e.recorded_at, d.drug,
        d.dose, d.dose_unit, d.route, d.frequency, d.duration_days, d.status, d.instructions,
        d.allergy_override_reason, d.order_set FROM entry e JOIN medication_request d ON d.entry_id = e.id WHERE
        e.patient_id = p_patient AND e.kind = 'medication_request' AND NOT EXISTS (SELECT 1 FROM entry successor
        WHERE successor.supersedes = e.id) AND d.status = 'active' ORDER BY e.occurred_at DESC) x), 'vitals',
        (SELECT row_to_json(x) FROM (SELECT e.id, e.root_id, e.status AS entry_status, e.encounter_id,
        e.author_id, e.occurred_at, e.recorded_at, d.systolic_mmhg, d.diastolic_mmhg, d.heart_rate_bpm,
        d.respiratory_rate, d.temperature_c, d.spo2_percent, d.weight_kg, d.height_cm, d.consciousness,
        d.supplemental_oxygen, d.oxygen_l_min, d.spo2_scale FROM entry e JOIN vital_signs d ON d.entry_id = e.id
        WHERE e.patient_id = p_patient AND e.kind = 'vital_signs' AND NOT EXISTS (SELECT 1 FROM entry successor
        WHERE successor.supersedes = e.id) ORDER BY e.occurred_at DESC LIMIT 1) x), 'results', (SELECT
        coalesce(json_agg(x), '[]'::json) FROM (SELECT e.id, e.root_id, e.status AS entry_status,
        e.encounter_id, e.author_id, e.occurred_at, e.recorded_at, d.service_request_id, d.code, d.display,
        d.value_numeric, d.value_text, d.unit, d.reference_low, d.reference_high, d.flag, d.note,
        signed.author_id AS signed_by, signed.recorded_at AS signed_at FROM entry e JOIN result d ON d.entry_id
        = e.id LEFT JOIN LATERAL (SELECT s.author_id, s.recorded_at FROM result_signoff rs JOIN entry s ON s.id
        = rs.entry_id WHERE rs.result_id = e.id ORDER BY s.recorded_at DESC LIMIT 1) signed ON true WHERE
        e.patient_id = p_patient AND e.kind = 'result' AND NOT EXISTS (SELECT 1 FROM entry successor WHERE
        successor.supersedes = e.id) ORDER BY e.occurred_at DESC LIMIT 20) x), 'open_orders', (SELECT
        coalesce(json_agg(x), '[]'::json) FROM (SELECT e.id, e.root_id, e.status AS entry_status,
        e.encounter_id, e.author_id, e.occurred_at, e.recorded_at, d.category, d.code, d.display, d.priority,
        d.status, d.clinical_info, d.order_set FROM entry e JOIN service_request d ON d.entry_id = e.id WHERE
        e.patient_id = p_patient AND e.kind = 'service_request' AND NOT EXISTS (SELECT 1 FROM entry successor
        WHERE successor.supersedes = e.id) AND d.status = 'active' AND NOT EXISTS (SELECT 1 FROM result r JOIN
        entry re ON re.id = r.entry_id WHERE r.service_request_id = e.root_id AND NOT EXISTS (SELECT 1 FROM
        entry rs WHERE rs.supersedes = re.id)) ORDER BY e.occurred_at DESC) x), 'encounters', (SELECT
        coalesce(json_agg(x), '[]'::json) FROM (SELECT n.id, n.patient_id, n.encounter_class, n.status,
        n.reason, n.ward_code, n.planned_for, n.started_at, n.ended_at FROM encounter n WHERE n.patient_id =
        p_patient ORDER BY coalesce(n.started_at, n.planned_for) DESC NULLS LAST LIMIT 10) x) )::text
"""


def upgrade() -> None:
    op.execute(
        "CREATE FUNCTION chart_summary(p_patient uuid) RETURNS text LANGUAGE plpgsql STABLE AS "
        f"$chart$ BEGIN RETURN ({BODY}); END $chart$"
    )
    op.execute("REVOKE ALL ON FUNCTION chart_summary(uuid) FROM PUBLIC")
    op.execute("""
        DO $grant$ BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('GRANT EXECUTE ON FUNCTION chart_summary(uuid) TO %I', current_schema());
            END IF;
        END $grant$
    """)


def downgrade() -> None:
    op.execute("DROP FUNCTION chart_summary(uuid)")
