"""Death certification: the clinical layer's `death` entry, a certificate on the WHO international form of
medical certificate of cause of death, and the person deceased at every facility from then on.

The form (WHO, ICD-10 Volume 2, the international form as the WHO's DORIS tool exchanges it:
https://icd.who.int/docs/doris/en/json-format and https://icd.who.int/docs/doris/en/csv-excel-format):

- Part 1, lines a to d: a, the disease or condition leading directly to death; each line "due to (or as a
  consequence of)" the line below it. Each line here is an ICD-10 code, validated as a problem's is (a
  category or subcategory of the WHO list), with the interval from onset to death as the certifier writes it.
- Part 2: other significant conditions contributing to death, not in the sequence of Part 1.
- Manner of death: disease, accident, intentional self-harm, assault, legal intervention, war, pending
  investigation, could not be determined.
- For a woman: was she pregnant at death, within 42 days of the end of a pregnancy, or between 43 days and a
  year. Asked here of every woman of 10 to 54 years at death (the ages within which pregnancies are looked
  for, wider than the 15-49 of reproductive-age rates), refused for a man.
- Date and time of death, and place: this facility, home, other (named), en route.

The underlying cause AS CERTIFIED is the condition on the lowest used line of Part 1. That is the certifier's
sequence, kept as written: it is not the underlying cause ICD mortality coding would select (the selection
and modification rules DORIS or a trained coder apply may choose another condition); a ministry that codes
mortality does that downstream, from Part 1 and Part 2 as certified.

The certifier is the entry's author, a clinician (`clinical.death.write`). One certificate per person:
a second is refused, at this facility or at another (correct the first instead). The certificate's
transaction marks the person deceased for every facility (`substrate.deaths`, in `on_death` below); a
correction carries its time of death to the mark; entered in error (written on the wrong patient), the mark
is withdrawn, the history kept. From then on no facility opens a visit for the person: the clinical
layer's guard on new `encounter` entries (`refuse_encounter_for_deceased`) refuses it in one sentence.

What the certificate changes now, in its transaction (`on_death`, with the operations layer's own reaction
cancelling future appointments and closing an open ED visit): planned encounters are cancelled and open
outpatient and emergency encounters finished at the time of death. An inpatient still admitted is not
discharged here: the bed manager discharges with disposition `died`, which frees the bed.

Entered in error, none of that is undone: which appointment still stands, which visit is to be reopened, is for a
clerk to decide with the family, not for the record to guess. So the withdrawal (`withdraw`) answers with what the
certificate had closed (`closed_by`): its appointments cancelled, by day and clinic, and its visits cancelled or
ended, read back from the entries its own transaction appended (one transaction, one `recorded_at`); and the
certificate's page and `state` say the same of the last certificate withdrawn here, for as long as the person is not
certified again. The operations package is never imported: its appointments are read by SQL, as it reads the chart.
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.clinical import icd10
from appliance.layers.clinical.errors import Conflict, Invalid, NotFound
from appliance.layers.clinical.models import death, encounter, encounter_status_change, patient
from appliance.layers.clinical.schemas import DeathIn
from appliance.layers.clinical.service import ENTRY_COLUMNS, current_query, require_chart
from appliance.substrate import age, deaths, record
from appliance.substrate.principal import Principal
from appliance.substrate.record import Entry, note_access

LINES = ("a", "b", "c", "d")
PLACES = {"this_facility": "This facility", "home": "Home", "other": "Other", "en_route": "En route"}
MANNERS = {"disease": "Disease", "accident": "Accident", "intentional_self_harm": "Intentional self-harm",
           "assault": "Assault", "legal_intervention": "Legal intervention", "war": "War",
           "pending_investigation": "Pending investigation", "could_not_be_determined": "Could not be determined"}
PREGNANCY = {"not_pregnant": "Not pregnant within the past year", "pregnant": "Pregnant at the time of death",
             "within_42_days": "Within 42 days of the end of a pregnancy",
             "43_days_to_1_year": "Between 43 days and a year after the end of a pregnancy", "unknown": "Unknown"}
# Whose certificate asks about pregnancy: a woman of these ages (completed years) on the day of death.
PREGNANCY_AGES = (10, 54)
# A clock a little ahead of the server's is not a death in the future.
_CLOCK_SKEW = dt.timedelta(minutes=10)


def _cause(item, field: str, line: str | None = None) -> dict:
    try:
        code = icd10.lookup(item.code)
    except icd10.InvalidIcd10 as exc:
        raise Invalid(f"ICD-10 code {exc}", field=field, code=item.code) from None
    return {"line": line, "code": code.code, "display": code.display, "interval": item.interval or None}


def asks_pregnancy(sex: str, born: dt.date, died_on: dt.date) -> bool:
    return sex == "female" and PREGNANCY_AGES[0] <= age.years_on(born, died_on) <= PREGNANCY_AGES[1]


def _detail(conn: Connection, patient_id: uuid.UUID, data: DeathIn) -> dict:
    """The certificate's detail from the form, every condition checked against ICD-10 and the time and the
    pregnancy question against the patient; a refusal names the field."""
    who = conn.execute(sa.select(patient.c.sex, patient.c.birth_date, sa.func.now().label("now"))
                       .where(patient.c.id == patient_id)).one()
    if data.died_at > who.now + _CLOCK_SKEW:
        raise Invalid("the time of death is in the future", field="died_at")
    if data.died_at.date() < who.birth_date:
        raise Invalid("the time of death is before the patient's date of birth", field="died_at")
    part1 = [_cause(item, f"part1.{LINES[i]}.code", LINES[i]) for i, item in enumerate(data.part1)]
    part2 = [_cause(item, f"part2.{i}.code") for i, item in enumerate(data.part2)]
    if asks_pregnancy(who.sex, who.birth_date, data.died_at.date()):
        if data.pregnancy is None:
            raise Invalid("for a woman of 10 to 54 years, say whether she was pregnant or within a year of a "
                          "pregnancy ('unknown' if it is not known)", field="pregnancy")
    elif data.pregnancy is not None and who.sex == "male":
        raise Invalid("the pregnancy question is not asked for a man", field="pregnancy")
    underlying = part1[-1]  # the lowest used line: the underlying cause as certified
    return {"died_at": data.died_at, "place": data.place,
            "place_other": data.place_other if data.place == "other" else None, "part1": part1, "part2": part2,
            "underlying_code": underlying["code"], "underlying_display": underlying["display"],
            "manner": data.manner, "pregnancy": data.pregnancy}


def _certificate_row(conn: Connection, patient_id: uuid.UUID) -> dict | None:
    row = conn.execute(current_query(death, patient_id)).mappings().first()
    return dict(row) if row is not None else None


def _shaped(row: dict, patient_id: uuid.UUID) -> dict:
    return {**row, "patient_id": patient_id, "certifier_id": row["author_id"],
            "underlying_chapter": icd10.chapter(row["underlying_code"]),
            "part1": list(row["part1"]), "part2": list(row["part2"])}


def certificate(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> dict | None:
    """This facility's certificate in force for the patient, or None (audited as a read of it)."""
    require_chart(conn, patient_id, None)
    row = _certificate_row(conn, patient_id)
    note_access(conn, principal, "read", patient_id, "death", [row["id"]] if row else [])
    return _shaped(row, patient_id) if row else None


def state(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> dict:
    """The certificate here, if any, and whether the person is deceased by any facility's certificate; with none
    here, the last one withdrawn here and what it had closed (`last_withdrawn`)."""
    found = certificate(conn, principal, patient_id)
    mark = deaths.death_of(conn, patient_id)
    return {"certificate": found and {**found, "kept_to_this_chart": _kept(mark)}, "deceased": mark is not None,
            "died_at": mark.died_at if mark else None, "certified_at_facility": mark.facility if mark else None,
            "withdrawn": None if found else last_withdrawn(conn, principal, patient_id),
            "kept_to_this_chart": _kept(mark)}


def _kept(mark: deaths.Death | None) -> str | None:
    """What the recording facility is told of a death kept to its chart (`deaths.KEPT_TO_THIS_CHART`)."""
    return deaths.KEPT_TO_THIS_CHART if mark is not None and mark.confined else None


def deceased(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> deaths.Death | None:
    """Whether the person is recorded deceased (by any facility): what a chart's banner shows. One statement;
    audited as a read of the death when there is one."""
    mark = deaths.death_of(conn, patient_id)
    if mark is not None:
        note_access(conn, principal, "read", patient_id, "death", [], detail={"deceased_mark": True})
    return mark


def certify(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: DeathIn) -> dict:
    """Certify the patient's death. Refused (409) if this facility, or another, has a certificate in force
    for the person; refused (422) if the chart is linked to no one-identity person (the route links it first).
    On a chart whose link to its person is in dispute the death is kept to the chart, and the answer says so."""
    require_chart(conn, patient_id, data.encounter_id)
    if _certificate_row(conn, patient_id) is not None:
        raise Conflict("this patient's death is already certified here: correct that certificate instead",
                       field="patient_id")
    mark = deaths.death_of(conn, patient_id)
    if mark is not None:
        raise Conflict(f"this person was already {deaths.sentence(mark)}; a second certificate is refused "
                       "(that facility corrects its certificate)", field="patient_id", facility=mark.facility)
    detail = _detail(conn, patient_id, data)
    record.append(conn, principal, "death", patient_id=patient_id, encounter_id=data.encounter_id,
                  occurred_at=detail["died_at"], detail=detail)
    return {**_shaped(_certificate_row(conn, patient_id), patient_id),
            "kept_to_this_chart": _kept(deaths.death_of(conn, patient_id))}


def correct(conn: Connection, principal: Principal, patient_id: uuid.UUID, version_id: uuid.UUID, data: DeathIn,
            reason: str) -> dict:
    """Correct the certificate: a new version (the old one stays in its history); the mark every facility reads
    takes the corrected time of death. `version_id` is the version corrected: a stale one is refused (409)."""
    certificate_version(conn, patient_id, version_id)
    detail = _detail(conn, patient_id, data)
    record.append(conn, principal, "death", patient_id=patient_id, detail=detail, supersedes=version_id,
                  reason=reason, occurred_at=detail["died_at"], encounter_id=data.encounter_id)
    return _shaped(_certificate_row(conn, patient_id), patient_id)


# -- what a certificate changes, in its transaction -----------------------------------------------------------


def on_death(conn: Connection, principal: Principal, appended: Entry) -> None:
    """Keep the mark every facility reads in step with the certificate, and, for a new one, close what the
    living had open here: planned encounters cancelled, open outpatient and emergency ones finished."""
    if appended.status == "entered_in_error":
        deaths.withdraw(conn, appended.root_id, appended.reason or "entered in error")
        return
    if appended.status == "amended":
        deaths.correct(conn, appended.root_id, appended.detail["died_at"])
        return
    subject_id = conn.execute(sa.select(patient.c.subject_id).where(patient.c.id == appended.patient_id)).scalar()
    if subject_id is None:
        raise Invalid("this chart is not linked to a person of the one identity; a death cannot be certified on it",
                      field="patient_id")
    deaths.record(conn, patient_id=appended.patient_id, subject_id=subject_id, entry_id=appended.root_id,
                  died_at=appended.detail["died_at"])
    _close_encounters(conn, principal, appended)


def _close_encounters(conn: Connection, principal: Principal, appended: Entry) -> None:
    died_at = appended.detail["died_at"]
    rows = conn.execute(
        sa.select(encounter.c.id, encounter.c.status, encounter.c.encounter_class, encounter.c.started_at)
        .where(encounter.c.patient_id == appended.patient_id,
               sa.or_(encounter.c.status == "planned",
                      sa.and_(encounter.c.status.in_(("arrived", "in_progress")),
                              encounter.c.encounter_class.in_(("outpatient", "emergency")))))
        .with_for_update()).all()
    for row in rows:
        to_status = "cancelled" if row.status == "planned" else "finished"
        ended = max(died_at, row.started_at) if row.started_at else died_at
        values: dict = {"status": to_status, "updated_at": sa.func.now()}
        if to_status == "finished":
            values["ended_at"] = ended
        conn.execute(sa.update(encounter).where(encounter.c.id == row.id).values(**values))
        record.append(conn, principal, "encounter_status", patient_id=appended.patient_id, encounter_id=row.id,
                      occurred_at=ended, detail={"encounter_id": row.id, "from_status": row.status,
                                                 "to_status": to_status})


# -- what a certificate closed, for the clerk when it is withdrawn ---------------------------------------------

# The appointments the operations layer's reaction cancelled in the certificate's transaction (`appointment_status`
# entries of the same `recorded_at`), by the tables the operations layer keeps them in.
_CANCELLED_APPOINTMENTS = sa.text("""
    SELECT a.id, a.starts_at, a.clinic_code, c.name AS clinic, c.timezone
    FROM entry e
    JOIN appointment_change ch ON ch.entry_id = e.id AND ch.action = 'cancelled'
    JOIN appointment a ON a.id = ch.appointment_id
    JOIN clinic c ON c.code = a.clinic_code
    WHERE e.patient_id = :patient_id AND e.kind = 'appointment_status' AND e.recorded_at = :recorded_at
    ORDER BY a.starts_at
""")


def closed_by(conn: Connection, principal: Principal, patient_id: uuid.UUID, root_id: uuid.UUID) -> dict:
    """What the certificate `root_id` closed when it was written: the appointments cancelled (soonest first, with
    their clinic and its local time) and the visits cancelled or ended (with their class, reason and day). Each is
    audited as a read of the patient's appointments and visits."""
    recorded_at = conn.execute(sa.select(record.entry.c.recorded_at).where(record.entry.c.id == root_id)).scalar_one()
    appointments = [dict(r) for r in conn.execute(_CANCELLED_APPOINTMENTS,
                                                  {"patient_id": patient_id, "recorded_at": recorded_at}).mappings()]
    visits = [dict(r) for r in conn.execute(
        sa.select(encounter.c.id, encounter.c.encounter_class, encounter.c.reason, encounter.c.ward_code,
                  sa.func.coalesce(encounter.c.started_at, encounter.c.planned_for).label("on"),
                  encounter_status_change.c.from_status, encounter_status_change.c.to_status)
        .select_from(record.entry.join(encounter_status_change, encounter_status_change.c.entry_id == record.entry.c.id)
                     .join(encounter, encounter.c.id == encounter_status_change.c.encounter_id))
        .where(record.entry.c.patient_id == patient_id, record.entry.c.kind == "encounter_status",
               record.entry.c.recorded_at == recorded_at)
        .order_by(sa.func.coalesce(encounter.c.started_at, encounter.c.planned_for))).mappings()]
    if appointments:
        note_access(conn, principal, "read", patient_id, "appointment", [a["id"] for a in appointments])
    if visits:
        note_access(conn, principal, "read", patient_id, "encounter", [v["id"] for v in visits])
    return {"appointments": appointments, "encounters": visits}


def withdraw(conn: Connection, principal: Principal, patient_id: uuid.UUID, reason: str) -> dict:
    """Mark this facility's certificate entered in error (written on the wrong patient): the person is no longer
    recorded deceased anywhere. Nothing it closed is reopened; the answer lists it (`closed_by`) for a clerk to
    rebook. No certificate in force here: 404."""
    require_chart(conn, patient_id, None)
    current = _certificate_row(conn, patient_id)
    if current is None:
        raise NotFound("this patient has no death certificate in force here to mark entered in error",
                       field="patient_id")
    retracted = record.retract(conn, principal, current["id"], reason)
    return {"id": retracted.id, "root_id": retracted.root_id, "patient_id": patient_id, "reason": retracted.reason,
            "withdrawn_by": retracted.author_id, "withdrawn_at": retracted.recorded_at, "died_at": current["died_at"],
            "closed": closed_by(conn, principal, patient_id, retracted.root_id)}


def last_withdrawn(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> dict | None:
    """The last certificate marked entered in error here, with what it had closed, while no certificate is in force
    here (one written since on this chart makes the old list moot); None otherwise."""
    if _certificate_row(conn, patient_id) is not None:
        return None
    row = conn.execute(
        sa.select(record.entry.c.id, record.entry.c.root_id, record.entry.c.reason, record.entry.c.recorded_at,
                  record.entry.c.supersedes, record.entry.c.author_id)
        .where(record.entry.c.patient_id == patient_id, record.entry.c.kind == "death",
               record.entry.c.status == "entered_in_error")
        .order_by(record.entry.c.recorded_at.desc()).limit(1)).first()
    if row is None:
        return None
    # The time of death of the version withdrawn (a correction's, if it had one).
    died_at = conn.execute(sa.select(death.c.died_at).where(death.c.entry_id == row.supersedes)).scalar_one()
    return {"id": row.id, "root_id": row.root_id, "patient_id": patient_id, "reason": row.reason,
            "withdrawn_by": row.author_id, "withdrawn_at": row.recorded_at, "died_at": died_at,
            "closed": closed_by(conn, principal, patient_id, row.root_id)}


def refuse_encounter_for_deceased(conn: Connection, patient_id: uuid.UUID | None) -> None:
    """The guard on every new encounter, however it is opened (the front desk, the ED, an admission, a
    check-in, FHIR, HL7): none for a person recorded deceased at any facility."""
    deaths.refuse_if_deceased(conn, patient_id, "an encounter")


def certificate_version(conn: Connection, patient_id: uuid.UUID, version_id: uuid.UUID) -> dict:
    """One version of the patient's certificate (for the correction form), or 404."""
    row = conn.execute(
        sa.select(*ENTRY_COLUMNS, *(c for c in death.c if c.name != "entry_id"))
        .select_from(record.entry.join(death, death.c.entry_id == record.entry.c.id))
        .where(record.entry.c.id == version_id, record.entry.c.patient_id == patient_id)).mappings().first()
    if row is None:
        raise NotFound(f"no death certificate {version_id} on this patient's chart", entry_id=str(version_id))
    return _shaped(dict(row), patient_id)


record.register_reaction("death", on_death)
record.register_guard("encounter", refuse_encounter_for_deceased)
