"""The grade of bilateral pitting oedema on vital signs: `oedema_grade`, the WHO's + (1, both feet), ++ (2,
feet and lower legs, hands or lower arms) or +++ (3, generalised, including the face), beside t0021's
`oedema` (true present, false looked for and absent, null not examined). Any grade is severe acute
malnutrition, as oedema present always was; the grade is what WHO's 2013 guideline reads to decide inpatient
care (severe oedema, +++), so a child's record keeps it (appliance/layers/clinical/growth.py cites it).

Nullable, and every row recorded before keeps none: its oedema stays present or absent, ungraded, as it was
recorded. Two checks keep the column honest whatever writes it: a grade is 1, 2 or 3, and a grade is held only
with oedema present (`vital_signs_oedema_grade_is_present`), so no row says "absent, +++".

The chart summary's latest vital signs show the grade, so `chart_summary(p_patient uuid)` (t0021's) is replaced
by what appliance/layers/clinical/chart.py composes now, and the kept chart documents (t0009) are emptied by
both the upgrade and the downgrade, so each is made afresh by the function in place.
tests/layers/clinical/test_chart_function.py holds the installed function equal to what chart.py composes.
The downgrade drops the grades (each graded finding stays oedema present).

Revision ID: t0024
Revises: t0023
Create Date: 2026-11-27
"""

import importlib

import sqlalchemy as sa
from alembic import op

revision = "t0024"
down_revision = "t0023"
branch_labels = None
depends_on = None

# The body as chart.summary_function_body() composes it at this revision (re-wrapped; whitespace outside
# string literals is not significant).
BODY = """
    SELECT json_build_object( 'patient', (SELECT row_to_json(x) FROM (SELECT p.id, p.mrn, p.subject_id,
    p.family_name, p.given_names, p.birth_date, p.birth_date_estimated, p.sex, p.phone, p.address, (SELECT
    coalesce(json_agg(json_build_object('system', i.system, 'value', i.value) ORDER BY i.system), '[]'::json) FROM
    patient_identifier i WHERE i.patient_id = p.id) AS identifiers, p.contacts, p.next_of_kin,
    p.demographics_entry_id AS version_id, p.registered_at, p.updated_at FROM patient p WHERE p.id = p_patient)
    x), 'problems', (SELECT coalesce(json_agg(x), '[]'::json) FROM (SELECT e.id, e.root_id, e.status AS
    entry_status, e.encounter_id, e.author_id, CASE WHEN e.supersedes IS NULL THEN e.author_id ELSE (SELECT
    first.author_id FROM entry first WHERE first.id = e.root_id) END AS record_author_id, CASE WHEN e.supersedes
    IS NULL THEN e.occurred_at ELSE (SELECT first.occurred_at FROM entry first WHERE first.id = e.root_id) END AS
    occurred_at, e.recorded_at, d.code, d.display, d.clinical_status, d.verification, d.onset_date,
    d.resolved_date, d.note FROM entry e JOIN condition d ON d.entry_id = e.id WHERE e.patient_id = p_patient AND
    e.kind = 'condition' AND NOT EXISTS (SELECT 1 FROM entry successor WHERE successor.supersedes = e.id) AND
    d.clinical_status = 'active' ORDER BY CASE WHEN e.supersedes IS NULL THEN e.occurred_at ELSE (SELECT
    first.occurred_at FROM entry first WHERE first.id = e.root_id) END DESC) x), 'allergies', (SELECT
    coalesce(json_agg(x), '[]'::json) FROM (SELECT e.id, e.root_id, e.status AS entry_status, e.encounter_id,
    e.author_id, CASE WHEN e.supersedes IS NULL THEN e.author_id ELSE (SELECT first.author_id FROM entry first
    WHERE first.id = e.root_id) END AS record_author_id, CASE WHEN e.supersedes IS NULL THEN e.occurred_at ELSE
    (SELECT first.occurred_at FROM entry first WHERE first.id = e.root_id) END AS occurred_at, e.recorded_at,
    d.substance, d.category, d.reaction, d.severity, d.criticality, d.clinical_status, d.note FROM entry e JOIN
    allergy d ON d.entry_id = e.id WHERE e.patient_id = p_patient AND e.kind = 'allergy' AND NOT EXISTS (SELECT 1
    FROM entry successor WHERE successor.supersedes = e.id) AND d.clinical_status = 'active' ORDER BY CASE WHEN
    e.supersedes IS NULL THEN e.occurred_at ELSE (SELECT first.occurred_at FROM entry first WHERE first.id =
    e.root_id) END DESC) x), 'medications', (SELECT coalesce(json_agg(x), '[]'::json) FROM (SELECT e.id,
    e.root_id, e.status AS entry_status, e.encounter_id, e.author_id, CASE WHEN e.supersedes IS NULL THEN
    e.author_id ELSE (SELECT first.author_id FROM entry first WHERE first.id = e.root_id) END AS record_author_id,
    CASE WHEN e.supersedes IS NULL THEN e.occurred_at ELSE (SELECT first.occurred_at FROM entry first WHERE
    first.id = e.root_id) END AS occurred_at, e.recorded_at, d.drug, d.dose, d.dose_unit, d.route, d.frequency,
    d.duration_days, d.status, d.instructions, d.allergy_override_reason, d.order_set FROM entry e JOIN
    medication_request d ON d.entry_id = e.id WHERE e.patient_id = p_patient AND e.kind = 'medication_request' AND
    NOT EXISTS (SELECT 1 FROM entry successor WHERE successor.supersedes = e.id) AND d.status = 'active' ORDER BY
    CASE WHEN e.supersedes IS NULL THEN e.occurred_at ELSE (SELECT first.occurred_at FROM entry first WHERE
    first.id = e.root_id) END DESC) x), 'vitals', (SELECT row_to_json(x) FROM (SELECT e.id, e.root_id, e.status AS
    entry_status, e.encounter_id, e.author_id, CASE WHEN e.supersedes IS NULL THEN e.author_id ELSE (SELECT
    first.author_id FROM entry first WHERE first.id = e.root_id) END AS record_author_id, CASE WHEN e.supersedes
    IS NULL THEN e.occurred_at ELSE (SELECT first.occurred_at FROM entry first WHERE first.id = e.root_id) END AS
    occurred_at, e.recorded_at, d.systolic_mmhg, d.diastolic_mmhg, d.heart_rate_bpm, d.respiratory_rate,
    d.temperature_c, d.spo2_percent, d.weight_kg, d.height_cm, d.consciousness, d.supplemental_oxygen,
    d.oxygen_l_min, d.spo2_scale, d.muac_mm, d.oedema, d.oedema_grade FROM entry e JOIN vital_signs d ON
    d.entry_id = e.id WHERE e.patient_id = p_patient AND e.kind = 'vital_signs' AND NOT EXISTS (SELECT 1 FROM
    entry successor WHERE successor.supersedes = e.id) ORDER BY CASE WHEN e.supersedes IS NULL THEN e.occurred_at
    ELSE (SELECT first.occurred_at FROM entry first WHERE first.id = e.root_id) END DESC LIMIT 1) x), 'results',
    (SELECT coalesce(json_agg(x), '[]'::json) FROM (SELECT e.id, e.root_id, e.status AS entry_status,
    e.encounter_id, e.author_id, CASE WHEN e.supersedes IS NULL THEN e.author_id ELSE (SELECT first.author_id FROM
    entry first WHERE first.id = e.root_id) END AS record_author_id, CASE WHEN e.supersedes IS NULL THEN
    e.occurred_at ELSE (SELECT first.occurred_at FROM entry first WHERE first.id = e.root_id) END AS occurred_at,
    e.recorded_at, d.service_request_id, d.code, d.display, d.value_numeric, d.value_text, d.unit,
    d.reference_low, d.reference_high, d.flag, d.note, signed.author_id AS signed_by, signed.recorded_at AS
    signed_at FROM entry e JOIN result d ON d.entry_id = e.id LEFT JOIN LATERAL (SELECT s.author_id, s.recorded_at
    FROM result_signoff rs JOIN entry s ON s.id = rs.entry_id WHERE rs.result_id = e.id ORDER BY s.recorded_at
    DESC LIMIT 1) signed ON true WHERE e.patient_id = p_patient AND e.kind = 'result' AND NOT EXISTS (SELECT 1
    FROM entry successor WHERE successor.supersedes = e.id) ORDER BY CASE WHEN e.supersedes IS NULL THEN
    e.occurred_at ELSE (SELECT first.occurred_at FROM entry first WHERE first.id = e.root_id) END DESC LIMIT 20)
    x), 'open_orders', (SELECT coalesce(json_agg(x), '[]'::json) FROM (SELECT e.id, e.root_id, e.status AS
    entry_status, e.encounter_id, e.author_id, CASE WHEN e.supersedes IS NULL THEN e.author_id ELSE (SELECT
    first.author_id FROM entry first WHERE first.id = e.root_id) END AS record_author_id, CASE WHEN e.supersedes
    IS NULL THEN e.occurred_at ELSE (SELECT first.occurred_at FROM entry first WHERE first.id = e.root_id) END AS
    occurred_at, e.recorded_at, d.category, d.code, d.display, d.priority, d.status, d.clinical_info, d.order_set
    FROM entry e JOIN service_request d ON d.entry_id = e.id WHERE e.patient_id = p_patient AND e.kind =
    'service_request' AND NOT EXISTS (SELECT 1 FROM entry successor WHERE successor.supersedes = e.id) AND
    d.status = 'active' AND NOT EXISTS (SELECT 1 FROM result r JOIN entry re ON re.id = r.entry_id WHERE
    r.service_request_id = e.root_id AND NOT EXISTS (SELECT 1 FROM entry rs WHERE rs.supersedes = re.id)) ORDER BY
    CASE WHEN e.supersedes IS NULL THEN e.occurred_at ELSE (SELECT first.occurred_at FROM entry first WHERE
    first.id = e.root_id) END DESC) x), 'encounters', (SELECT coalesce(json_agg(x), '[]'::json) FROM (SELECT n.id,
    n.patient_id, n.encounter_class, n.status, n.reason, n.ward_code, n.planned_for, n.started_at, n.ended_at FROM
    encounter n WHERE n.patient_id = p_patient ORDER BY coalesce(n.started_at, n.planned_for) DESC NULLS LAST
    LIMIT 10) x) )::text
"""

# t0015's installer (which also empties the kept chart documents) and t0021's body, the one this replaces.
INSTALLER = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0015_chart_record_times")
PREVIOUS = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0021_muac_and_oedema")


def upgrade() -> None:
    op.add_column("vital_signs", sa.Column("oedema_grade", sa.SmallInteger(), nullable=True))
    op.create_check_constraint("vital_signs_oedema_grade_range", "vital_signs", "oedema_grade BETWEEN 1 AND 3")
    op.create_check_constraint("vital_signs_oedema_grade_is_present", "vital_signs",
                               "oedema_grade IS NULL OR oedema IS TRUE")
    INSTALLER._install(BODY)


def downgrade() -> None:
    INSTALLER._install(PREVIOUS.BODY)
    op.drop_column("vital_signs", "oedema_grade")  # its checks go with it
