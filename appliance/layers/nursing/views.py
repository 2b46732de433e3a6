"""The other layers' tables this layer reads, by SQL over the tenant schema (layers never import each
other): the clinical layer's patients, encounters and chart entries, and where a patient is now.

Only the columns read here are named. Where a patient is: the ward of their open encounter (the
clinical encounter carries a ward; the operations layer's admissions and transfers keep it current).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from appliance.substrate.record import entry

patient = sa.table(
    "patient", sa.column("id"), sa.column("mrn"), sa.column("family_name"), sa.column("given_names"),
    sa.column("birth_date"), sa.column("birth_date_estimated"), sa.column("sex"),
)
encounter = sa.table(
    "encounter", sa.column("id"), sa.column("patient_id"), sa.column("encounter_class"), sa.column("status"),
    sa.column("reason"), sa.column("ward_code"), sa.column("started_at"), sa.column("ended_at"),
    sa.column("updated_at"),
)
ward = sa.table("ward", sa.column("code"), sa.column("name"), sa.column("kind"), sa.column("active"))
vital_signs = sa.table(
    "vital_signs", sa.column("entry_id"), sa.column("systolic_mmhg"), sa.column("diastolic_mmhg"),
    sa.column("heart_rate_bpm"), sa.column("respiratory_rate"), sa.column("temperature_c"),
    sa.column("spo2_percent"), sa.column("consciousness"), sa.column("supplemental_oxygen"),
    sa.column("oxygen_l_min"), sa.column("spo2_scale"), sa.column("weight_kg"), sa.column("muac_mm"),
    sa.column("oedema"), sa.column("oedema_grade"),
)
medication_request = sa.table(
    "medication_request", sa.column("entry_id"), sa.column("drug"), sa.column("dose"), sa.column("dose_unit"),
    sa.column("route"), sa.column("frequency"), sa.column("duration_days"), sa.column("status"),
    sa.column("instructions"), sa.column("allergy_override_reason"),
)
condition = sa.table("condition", sa.column("entry_id"), sa.column("code"), sa.column("display"),
                     sa.column("clinical_status"), sa.column("verification"), sa.column("onset_date"))
allergy = sa.table("allergy", sa.column("entry_id"), sa.column("substance"), sa.column("severity"),
                   sa.column("clinical_status"))
# The clinical layer's birth on the mother's record: when a woman delivered (her puerperium, MEOWS's).
delivery = sa.table("delivery", sa.column("entry_id"), sa.column("born_at"))
result = sa.table("result", sa.column("entry_id"), sa.column("display"), sa.column("value_numeric"),
                  sa.column("value_text"), sa.column("unit"), sa.column("flag"))

OPEN = ("arrived", "in_progress")


def patient_exists(conn: Connection, patient_id: uuid.UUID) -> bool:
    return conn.execute(sa.select(patient.c.id).where(patient.c.id == patient_id)).first() is not None


def ward_of_query(patient_id: uuid.UUID, encounter_id: uuid.UUID | None = None) -> sa.Select:
    """The ward the patient is on now: that of the named encounter if it is open on a ward, else of
    their most recent open encounter on a ward; no row for a patient on no ward (an outpatient)."""
    query = (
        sa.select(encounter.c.ward_code)
        .where(encounter.c.patient_id == patient_id, encounter.c.status.in_(OPEN), encounter.c.ward_code.is_not(None))
        .limit(1)
    )
    if encounter_id is not None:
        query = query.order_by(sa.case((encounter.c.id == encounter_id, 0), else_=1))
    return query.order_by(encounter.c.started_at.desc().nulls_last())


def main_ward(conn: Connection) -> str | None:
    """The ward a facility's nursing centres on: its busiest general ward (kind `inpatient`), else its
    busiest other ward but the emergency department, else the first by code; None for a facility
    without wards. Counts, not patients: not audited."""
    on_ward = sa.and_(encounter.c.ward_code == ward.c.code, encounter.c.status.in_(OPEN))
    return conn.execute(
        sa.select(ward.c.code).select_from(ward.outerjoin(encounter, on_ward))
        .where(ward.c.active, ward.c.kind != "emergency")
        .group_by(ward.c.code, ward.c.kind)
        .order_by((ward.c.kind == "inpatient").desc(), sa.func.count(encounter.c.id).desc(), ward.c.code).limit(1)
    ).scalar()


# Built once: every vital-signs set asks for its patient's ward (the observation schedule), and building the
# select per call was ~3 % of the server's CPU per intake patient (py-spy, bench/intake.py).
_WARD_OF = ward_of_query(sa.bindparam("patient_id"))
_WARD_OF_ENCOUNTER = ward_of_query(sa.bindparam("patient_id"), sa.bindparam("encounter_id"))


def ward_of(conn: Connection, patient_id: uuid.UUID, encounter_id: uuid.UUID | None = None) -> str | None:
    """`ward_of_query`'s ward; None for a patient on no ward."""
    if encounter_id is None:
        return conn.execute(_WARD_OF, {"patient_id": patient_id}).scalar()
    return conn.execute(_WARD_OF_ENCOUNTER, {"patient_id": patient_id, "encounter_id": encounter_id}).scalar()


# The operations layer's open stays (t0004), for the bed a patient is in; read only if the table is there.
inpatient_stay = sa.table("inpatient_stay", sa.column("encounter_id"), sa.column("bed_code"),
                          sa.column("discharged_at"), sa.column("expected_discharge_on", sa.Date))


def _has_stays(conn: Connection) -> bool:
    return conn.execute(sa.text("SELECT to_regclass('inpatient_stay') IS NOT NULL")).scalar()


def patients_on_ward(conn: Connection, ward_code: str) -> list[dict]:
    """Patients with an open encounter on the ward, with the encounter that puts them there and, where
    the operations layer placed them, their bed and the day the ward expects them home."""
    query = (
        sa.select(patient.c.id, patient.c.mrn, patient.c.family_name, patient.c.given_names, patient.c.birth_date,
                  patient.c.sex, encounter.c.id.label("encounter_id"), encounter.c.reason,
                  encounter.c.started_at)
        .select_from(patient.join(encounter, encounter.c.patient_id == patient.c.id))
        .where(encounter.c.ward_code == ward_code, encounter.c.status.in_(OPEN))
        .order_by(patient.c.id, encounter.c.started_at.desc().nulls_last())
        .ext(postgresql.distinct_on(patient.c.id))
    )
    if _has_stays(conn):
        open_stay = sa.and_(inpatient_stay.c.encounter_id == encounter.c.id, inpatient_stay.c.discharged_at.is_(None))
        query = query.add_columns(*(sa.select(column).where(open_stay).limit(1).scalar_subquery().label(column.name)
                                    for column in (inpatient_stay.c.bed_code, inpatient_stay.c.expected_discharge_on)))
    else:
        query = query.add_columns(sa.null().label("bed_code"), sa.null().label("expected_discharge_on"))
    rows = conn.execute(query).mappings()
    return sorted((dict(r) for r in rows), key=lambda r: (r["bed_code"] or "~", r["family_name"], r["given_names"]))


def ward_exists(conn: Connection, ward_code: str) -> dict | None:
    row = conn.execute(sa.select(ward.c.code, ward.c.name, ward.c.kind)
                       .where(ward.c.code == ward_code, ward.c.active)).mappings().first()
    return dict(row) if row else None


def wards(conn: Connection) -> list[dict]:
    """The active wards with how many patients are on each now. Counts, not patients: not audited."""
    on_ward = sa.and_(encounter.c.ward_code == ward.c.code, encounter.c.status.in_(OPEN))
    return [dict(r) for r in conn.execute(
        sa.select(ward.c.code, ward.c.name, sa.func.count(sa.distinct(encounter.c.patient_id)).label("patients"))
        .select_from(ward.outerjoin(encounter, on_ward)).where(ward.c.active)
        .group_by(ward.c.code, ward.c.name).order_by(ward.c.code)).mappings()]


# -- the stay, for the medication administration record ---------------------------------------------
#
# An admitted patient's MAR holds the prescriptions of their stay: those written in it, and those the
# patient came in on that the admitting clinician continued, which are new prescriptions of the stay
# (the clinical layer's medicines reconciliation, clinical/reconciliation.py, keeps the same rule).

# The operations layer's emergency visits (t0004): the visit a patient was admitted from is part of the stay.
ed_visit = sa.table("ed_visit", sa.column("id"), sa.column("admitted_encounter_id"))
# The clinical layer's reconciliation decisions (t0019): continue, stop or hold, on the stay's encounter.
medication_reconciliation = sa.table("medication_reconciliation", sa.column("entry_id"),
                                     sa.column("medication_request_id"), sa.column("decision"))


def stays_of(conn: Connection, patient_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict]:
    """The stay of each of these patients who is admitted (an open inpatient encounter): `id`, the inpatient
    encounter (the latest begun, were there two); `encounter_ids`, every encounter of the stay (the open
    inpatient ones and the emergency visit the patient was admitted from); `started_at`, when the first of
    them began. A patient with no open inpatient encounter has none. Not audited: callers are."""
    if not patient_ids:
        return {}
    inpatient = (sa.select(encounter.c.id).where(encounter.c.patient_id.in_(patient_ids),
                                                 encounter.c.encounter_class == "inpatient",
                                                 encounter.c.status.in_(OPEN)))
    admitted_from = sa.select(ed_visit.c.id).where(ed_visit.c.admitted_encounter_id.in_(inpatient))
    rows = conn.execute(
        sa.select(encounter.c.id, encounter.c.patient_id, encounter.c.encounter_class, encounter.c.started_at)
        .where(sa.or_(encounter.c.id.in_(inpatient), encounter.c.id.in_(admitted_from)))
        .order_by(encounter.c.started_at.desc().nulls_last())
    ).all()
    found: dict[uuid.UUID, dict] = {}
    for row in rows:
        stay = found.setdefault(row.patient_id, {"id": None, "encounter_ids": set(), "started_at": None})
        if row.encounter_class == "inpatient" and stay["id"] is None:
            stay["id"] = row.id
        stay["encounter_ids"].add(row.id)
        if row.started_at is not None and (stay["started_at"] is None or row.started_at < stay["started_at"]):
            stay["started_at"] = row.started_at
    return found


def reconciled(conn: Connection, stay_ids: Iterable[uuid.UUID]) -> dict[tuple[uuid.UUID, uuid.UUID], str]:
    """The decision in force on each medicine reconciled in these stays, by (stay, prescription root id)."""
    ids = list(stay_ids)
    if not ids:
        return {}
    rows = conn.execute(current_of_kind(medication_reconciliation, "medication_reconciliation",
                                        entry.c.encounter_id.in_(ids), entry.c.status != "entered_in_error"))
    return {(row.encounter_id, row.medication_request_id): row.decision for row in rows}


# "Nobody supersedes this version", built once: `record.current_clause()` aliases the entry table anew
# on each call, which costs a reaction more than the query it guards (bench/nursing.py).
_successor = entry.alias("successor")
CURRENT = ~sa.exists().where(_successor.c.supersedes == entry.c.id)


@functools.cache
def _current_base(table: sa.TableClause, kind: str) -> sa.Select:
    return (sa.select(entry.c.id, entry.c.root_id, entry.c.patient_id, entry.c.encounter_id, entry.c.author_id,
                      entry.c.occurred_at, entry.c.recorded_at, *[c for c in table.c if c.name != "entry_id"])
            .select_from(entry.join(table, table.c.entry_id == entry.c.id))
            .where(entry.c.kind == kind, CURRENT))


def current_of_kind(table: sa.TableClause, kind: str, *where) -> sa.Select:
    """Current versions of one kind's entries joined to their detail."""
    return _current_base(table, kind).where(*where) if where else _current_base(table, kind)
