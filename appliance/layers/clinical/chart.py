"""The chart summary: the page a clinician opens first, in one call, one transaction and one SQL
statement.

PostgreSQL assembles the whole document as JSON (demographics, active problems, active allergies,
active medications, the latest vital signs, recent results with their sign-off, open orders, recent
encounters) and the route hands that text to the client as it is: one round trip and no per-row work
in Python, which is what lets a two-core appliance serve a ward round's worth of charts at once.
The columns each section selects are the fields of its response model in `schemas.py`, so the
response models stay the allow-list of what leaves the appliance. The query runs as the tenant
schema's `chart_summary(uuid)` function (tenant migration t0007), so its plan survives the tenant
switches of a pooled connection; reads go through `chart_document(uuid)` (t0009), which serves the
document kept since the patient's last change — database triggers on every table the summary reads
mark a change — and makes it afresh otherwise.
"""

from __future__ import annotations

import functools
import uuid

from sqlalchemy.engine import Connection

from appliance.layers.clinical import access
from appliance.layers.clinical.errors import NotFound
from appliance.layers.clinical.schemas import (
    AllergyOut,
    ChartResultOut,
    ChartSummary,
    ConditionOut,
    EncounterOut,
    EntryOut,
    MedicationOut,
    PatientOut,
    ServiceRequestOut,
    VitalSignsOut,
)
from appliance.substrate.db import Database, driver
from appliance.substrate.principal import Principal
from appliance.substrate.record import note_access

RESULTS = 20
ENCOUNTERS = 10
_ENTRY_FIELDS = set(EntryOut.model_fields)
_CURRENT = "NOT EXISTS (SELECT 1 FROM entry successor WHERE successor.supersedes = e.id)"
# A row's `occurred_at` and `record_author_id` are its record's, the first version's, as the clinical service's
# RECORD_OCCURRED_AT and RECORD_AUTHOR_ID give them on every list: a problem recorded in March and corrected
# today began in March. Lists are ordered by that time too, so the latest vital signs are the latest measured,
# not the latest corrected.
_RECORD_OCCURRED_AT = ("CASE WHEN e.supersedes IS NULL THEN e.occurred_at "
                       "ELSE (SELECT first.occurred_at FROM entry first WHERE first.id = e.root_id) END")
_RECORD_AUTHOR_ID = ("CASE WHEN e.supersedes IS NULL THEN e.author_id "
                     "ELSE (SELECT first.author_id FROM entry first WHERE first.id = e.root_id) END")
_ENTRY_RENAMED = {"entry_status": "e.status", "occurred_at": _RECORD_OCCURRED_AT,
                  "record_author_id": _RECORD_AUTHOR_ID}


def _columns(model: type, **overrides: str) -> str:
    """`e.<field>` for entry fields, `d.<field>` for detail fields, in the model's order."""
    parts = []
    for name in model.model_fields:
        if name in overrides or name in _ENTRY_RENAMED:
            parts.append(f"{overrides.get(name) or _ENTRY_RENAMED[name]} AS {name}")
        else:
            parts.append(f"{'e' if name in _ENTRY_FIELDS else 'd'}.{name}")
    return ", ".join(parts)


def _current_list(model: type, kind: str, table: str, where: str = "", order: str = f"{_RECORD_OCCURRED_AT} DESC",
                  limit: int | None = None, joins: str = "", **overrides: str) -> str:
    # Composed from constants and response-model field names only; the patient id is a bound parameter.
    return (
        f"(SELECT coalesce(json_agg(x), '[]'::json) FROM ("  # noqa: S608
        f"SELECT {_columns(model, **overrides)} FROM entry e JOIN {table} d ON d.entry_id = e.id {joins} "
        f"WHERE e.patient_id = p_patient AND e.kind = '{kind}' AND {_CURRENT} {where} "
        f"ORDER BY {order}{f' LIMIT {limit}' if limit else ''}) x)"
    )


@functools.cache
def summary_function_body() -> str:
    """The query `chart_summary(p_patient uuid)` returns, composed from the response models: the
    body a tenant migration installs. A test compares it with the installed function, so a change
    here without a migration that replaces the function fails the suite."""
    computed = {
        "version_id": "p.demographics_entry_id",
        "identifiers": "(SELECT coalesce(json_agg(json_build_object('system', i.system, 'value', i.value) "
                       "ORDER BY i.system), '[]'::json) FROM patient_identifier i WHERE i.patient_id = p.id)",
    }
    patient = ", ".join(f"{computed[name]} AS {name}" if name in computed else f"p.{name}"
                        for name in PatientOut.model_fields)
    signoff = ("LEFT JOIN LATERAL (SELECT s.author_id, s.recorded_at FROM result_signoff rs "
               "JOIN entry s ON s.id = rs.entry_id WHERE rs.result_id = e.id "
               "ORDER BY s.recorded_at DESC LIMIT 1) signed ON true")
    answered = ("AND d.status = 'active' AND NOT EXISTS (SELECT 1 FROM result r JOIN entry re ON re.id = r.entry_id "
                "WHERE r.service_request_id = e.root_id AND NOT EXISTS "
                "(SELECT 1 FROM entry rs WHERE rs.supersedes = re.id))")
    encounter_fields = ", ".join(f"n.{name}" for name in EncounterOut.model_fields if name != "vitals")
    sql = f"""
        SELECT json_build_object(
            'patient', (SELECT row_to_json(x) FROM (SELECT {patient} FROM patient p WHERE p.id = p_patient) x),
            'problems', {_current_list(ConditionOut, 'condition', 'condition', "AND d.clinical_status = 'active'")},
            'allergies', {_current_list(AllergyOut, 'allergy', 'allergy', "AND d.clinical_status = 'active'")},
            'medications', {_current_list(MedicationOut, 'medication_request', 'medication_request',
                                          "AND d.status = 'active'")},
            'vitals', (SELECT row_to_json(x) FROM (SELECT {_columns(VitalSignsOut)} FROM entry e
                       JOIN vital_signs d ON d.entry_id = e.id
                       WHERE e.patient_id = p_patient AND e.kind = 'vital_signs' AND {_CURRENT}
                       ORDER BY {_RECORD_OCCURRED_AT} DESC LIMIT 1) x),
            'results', {_current_list(ChartResultOut, 'result', 'result', limit=RESULTS, joins=signoff,
                                      signed_by="signed.author_id", signed_at="signed.recorded_at")},
            'open_orders', {_current_list(ServiceRequestOut, 'service_request', 'service_request', answered)},
            'encounters', (SELECT coalesce(json_agg(x), '[]'::json) FROM (SELECT {encounter_fields}
                           FROM encounter n WHERE n.patient_id = p_patient
                           ORDER BY coalesce(n.started_at, n.planned_for) DESC NULLS LAST LIMIT {ENCOUNTERS}) x)
        )::text
    """  # noqa: S608 -- composed from constants and model field names; the patient id is the argument
    return sql


# The kept document when nothing it shows has changed, else `chart_summary` made afresh and kept
# (tenant migration t0009: the database's own triggers decide what "changed" means).
_SUMMARY = "chart_document(%(patient)s)"
_CALL_SUMMARY = f"SELECT {_SUMMARY}"


def chart_summary_json(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> str:
    """The summary as JSON text, shaped like `ChartSummary`. Noted once on the audit seam."""
    # A function per tenant schema rather than the query itself: PostgreSQL re-plans a prepared query
    # whenever the connection's search_path differs from the last run, and pooled connections move
    # between tenants on nearly every request, so this ~2 ms plan was made afresh each time; a
    # PL/pgSQL function keeps its plan per schema for the life of the connection.
    (document,) = driver(conn).execute(_CALL_SUMMARY, {"patient": patient_id}).fetchone()
    if document.startswith('{"patient" : null'):
        raise NotFound(f"no patient {patient_id} at this facility", patient_id=str(patient_id))
    note_access(conn, principal, "read", patient_id, "chart", (patient_id,))
    return document


def open_chart_summary_json(conn: Connection, principal: Principal, patient_id: uuid.UUID,
                            break_glass_reason: str | None = None) -> str:
    """The care decision (`access.open_chart`) and the summary in one round trip where there were two:
    the read every clinician makes first. A chart opened by break-the-glass is read after the decision."""
    _, document = access.open_chart_and_read(conn, principal, patient_id, break_glass_reason,
                                             read=_SUMMARY)
    if document is None:
        return chart_summary_json(conn, principal, patient_id)
    note_access(conn, principal, "read", patient_id, "chart", (patient_id,))
    return document


def chart_summary_in_care(db: Database, tenant: str, principal: Principal, patient_id: uuid.UUID) -> str | None:
    """The summary for a principal in a care relationship with the patient, decided, read and audited
    in one round trip (`access.read_in_care`); None when the ordinary path must answer."""
    return access.read_in_care(db, tenant, principal, patient_id, _SUMMARY, "chart")


def chart_summary(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> dict:
    """The summary as Python values (UUIDs, dates, decimals), validated against `ChartSummary`."""
    return ChartSummary.model_validate_json(chart_summary_json(conn, principal, patient_id)).model_dump()
