"""Clinical services: registering patients, encounters and everything written on a chart.

Every function takes the caller's tenant transaction and the principal acting; none commits (the
request boundary does), so an operation that raises leaves nothing behind. Writes go through
`record.append`; every read of patient data is noted on the audit seam (`record.note_access`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.clinical import catalogue, drugs, icd10
from appliance.layers.clinical.bench import CLOCK_SKEW, refuse_time
from appliance.layers.clinical.errors import Conflict, Invalid, NotFound, TooOften
from appliance.layers.clinical.models import (
    allergy,
    condition,
    encounter,
    medication_request,
    note,
    patient,
    patient_identifier,
    result,
    result_disclosure,
    result_signoff,
    service_request,
    vital_signs,
)
from appliance.layers.clinical.schemas import (
    AllergyIn,
    ConditionIn,
    EncounterIn,
    MedicationIn,
    NoteIn,
    OrderSetIn,
    PatientIn,
    ResultIn,
    ServiceRequestIn,
    VitalSignsIn,
)
from appliance.substrate import identity, record, retraction
from appliance.substrate.db import Database, after_commit, after_rollback
from appliance.substrate.principal import Principal
from appliance.substrate.record import Entry, current_clause, entry, note_access
from appliance.substrate.tenancy import facility_clock_of, facility_day, facility_timezone_of
from appliance.substrate.tenant_config import OrderableConfig

_FIRST_VERSION = entry.alias("first_version")
# When a record's act happened: its first version's time. A correction (a prescription stopped, a diagnosis
# confirmed) is a version written when it is made, so its own occurred_at is the correction's time, and a
# drug prescribed a year ago and stopped today read as started today on every list, the FHIR read and the
# Orders page. `recorded_at` stays the version's own: when it was written, which for a correction is when it
# was corrected. A first version needs no lookup (CASE evaluates the subquery only for corrections).
RECORD_OCCURRED_AT = sa.case(
    (entry.c.supersedes.is_(None), entry.c.occurred_at),
    else_=sa.select(_FIRST_VERSION.c.occurred_at).where(_FIRST_VERSION.c.id == entry.c.root_id).scalar_subquery())
# Who wrote the record: its first version's author (the prescriber, the clinician who diagnosed). `author_id`
# stays the version's, so a stopped prescription names both who prescribed it and who stopped it.
RECORD_AUTHOR_ID = sa.case(
    (entry.c.supersedes.is_(None), entry.c.author_id),
    else_=sa.select(_FIRST_VERSION.c.author_id).where(_FIRST_VERSION.c.id == entry.c.root_id).scalar_subquery())
# `entry_status` (final, amended, entered in error) is the record's; a kind's own `status` (an order's
# active/revoked, a prescription's active/stopped) is its detail's. Responses carry both, named apart.
ENTRY_COLUMNS = (entry.c.id, entry.c.root_id, entry.c.status.label("entry_status"), entry.c.encounter_id,
                 entry.c.author_id, RECORD_AUTHOR_ID.label("record_author_id"), RECORD_OCCURRED_AT.label("occurred_at"),
                 entry.c.recorded_at)
# Kinds a clinician may mark "entered in error"; registrations and encounters have their own acts.
RETRACTABLE = {"condition", "allergy", "medication_request", "service_request", "result", "vital_signs", "note",
               "result_disclosure", "antenatal"}


def _detail_columns(table: sa.Table) -> list[sa.Column]:
    return [c for c in table.c if c.name != "entry_id"]


def _entry_dict(appended: Entry) -> dict:
    """A first version as the lists give it; a later version's record fields come from `_record_of`."""
    return {"id": appended.id, "root_id": appended.root_id, "entry_status": appended.status,
            "encounter_id": appended.encounter_id, "author_id": appended.author_id,
            "record_author_id": appended.author_id,
            "occurred_at": appended.occurred_at, "recorded_at": appended.recorded_at, **appended.detail}


def _record_of(conn: Connection, root_id: uuid.UUID) -> dict:
    """A record's own time and author, its first version's (RECORD_OCCURRED_AT, RECORD_AUTHOR_ID), for the
    answer to a correction or retraction, as the lists answer it."""
    first = conn.execute(sa.select(entry.c.occurred_at, entry.c.author_id).where(entry.c.id == root_id)).one()
    return {"occurred_at": first.occurred_at, "record_author_id": first.author_id}


def current_query(table: sa.Table, patient_id: uuid.UUID, *where: Any) -> sa.Select:
    """The statement behind `current_rows`, unordered and unlimited, for a caller that pages or counts it."""
    return (
        sa.select(*ENTRY_COLUMNS, *_detail_columns(table))
        .select_from(entry.join(table, table.c.entry_id == entry.c.id))
        .where(entry.c.patient_id == patient_id, current_clause(), *where)
    )


def current_rows(conn: Connection, table: sa.Table, patient_id: uuid.UUID, *where: Any,
                 order_by: Any = None, limit: int | None = None) -> list[dict]:
    """Current versions of one kind's records for a patient, entry fields and detail together."""
    query = current_query(table, patient_id, *where).order_by(
        *(order_by if isinstance(order_by, list | tuple) else
          [order_by if order_by is not None else entry.c.occurred_at.desc()]))
    if limit:
        query = query.limit(limit)
    return [dict(row) for row in conn.execute(query).mappings()]


def first_recorded(conn: Connection, root_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, dt.datetime]:
    """When each record began (its first version's time), by root id: a correction is a new version written
    when it is made, and a record's place in time is when it began, not when it was last corrected. Read
    with the rows the caller has already read (and audited)."""
    roots = list({r for r in root_ids if r is not None})
    if not roots:
        return {}
    return dict(conn.execute(sa.select(entry.c.id, entry.c.occurred_at).where(entry.c.id.in_(roots))).all())


def list_withdrawn(conn: Connection, principal: Principal, patient_id: uuid.UUID, table: sa.Table, kind: str,
                   limit: int = 50) -> list[dict]:
    """Records of one kind marked entered in error, newest first: the version withdrawn (its detail, who
    recorded it) with who withdrew it, when and why. Nothing is deleted, so the chart can still show what
    was withdrawn. The read is audited."""
    require_patient(conn, patient_id)
    mistaken = entry.alias("mistaken")
    rows = [dict(r) for r in conn.execute(
        sa.select(mistaken.c.id, mistaken.c.root_id, mistaken.c.recorded_at, mistaken.c.author_id,
                  *_detail_columns(table), entry.c.id.label("withdrawn_id"),
                  entry.c.author_id.label("withdrawn_by"), entry.c.recorded_at.label("withdrawn_at"),
                  entry.c.reason.label("withdrawn_reason"))
        .select_from(entry.join(mistaken, mistaken.c.id == entry.c.supersedes)
                     .join(table, table.c.entry_id == mistaken.c.id))
        .where(entry.c.patient_id == patient_id, entry.c.kind == kind, entry.c.status == "entered_in_error",
               current_clause())
        .order_by(entry.c.recorded_at.desc()).limit(limit)).mappings()]
    note_access(conn, principal, "read", patient_id, kind, [r["id"] for r in rows])
    return rows


# -- patients ----------------------------------------------------------------------------------------


def name_search_columns(given: str, family: str) -> dict[str, str]:
    """A patient's names as they are searched (`identity.search_text`, case and accents folded): whole
    ("given family", what the trigram index serves) and each part, which FHIR's `family=` and `given=` narrow by."""
    return {"name_search": identity.search_text(f"{given} {family}"),
            "given_search": identity.search_text(given), "family_search": identity.search_text(family)}


def _demographics(data: PatientIn) -> dict:
    return {
        "family_name": data.family_name, "given_names": data.given_names, "birth_date": data.birth_date,
        "birth_date_estimated": data.birth_date_estimated, "sex": data.sex, "phone": data.phone,
        "address": data.address.model_dump(exclude_none=True),
        "identifiers": [i.model_dump() for i in data.identifiers],
        "contacts": [c.model_dump() for c in data.contacts],
        "next_of_kin": [k.model_dump(exclude_none=True) for k in data.next_of_kin],
    }


def _projection(detail: dict) -> dict:
    values = {k: v for k, v in detail.items() if k != "identifiers"}
    return values | name_search_columns(detail["given_names"], detail["family_name"])


def _refuse_identifiers_held(conn: Connection, patient_id: uuid.UUID | None, identifiers: list[dict]) -> None:
    """Conflict when another patient of this facility holds one of `identifiers` (`patient_id`: the chart they are
    for, None for a chart not yet registered)."""
    if identifiers:
        owners = conn.execute(
            sa.select(patient_identifier.c.system, patient_identifier.c.value, patient_identifier.c.patient_id)
            .where(sa.tuple_(patient_identifier.c.system, patient_identifier.c.value).in_(
                [(i["system"], i["value"]) for i in identifiers]))
        ).all()
        for system, value, owner in owners:
            if owner != patient_id:
                raise Conflict(f"identifier {system} {value} already belongs to another patient of this facility",
                               field="identifiers", system=system, patient_id=str(owner))


def _claim_identifiers(conn: Connection, patient_id: uuid.UUID, identifiers: list[dict], new: bool = False) -> None:
    _refuse_identifiers_held(conn, patient_id, identifiers)
    if not new:
        conn.execute(sa.delete(patient_identifier).where(patient_identifier.c.patient_id == patient_id))
    if identifiers:
        conn.execute(patient_identifier.insert(), [{**i, "patient_id": patient_id} for i in identifiers])


MRN_DIGITS = 7  # an MRN is the facility's sequence number, zero-padded to this many digits: 0000023
_NEW_PATIENT = patient.insert().values(
    mrn=sa.func.lpad(sa.cast(sa.func.nextval("patient_mrn_seq"), sa.Text), MRN_DIGITS, "0"))


def national_id_of(data: PatientIn) -> str | None:
    """The national ID a registration carries: what links a chart to its one-identity subject."""
    return next((i.value for i in data.identifiers if i.system == "national_id"), None)


class NationalIdHolderDiffers(Conflict):
    """A registration's national ID held, at another facility, by a person born on another day or of another
    sex: asked (`national_id_confirmed`), never linked on the number alone."""


class NationalIdAskedTooOften(TooOften):
    """A national ID whose holder elsewhere was said to differ too often this hour (`identity.
    compare_national_id_holder`): not compared again for now, and nothing written."""


NATIONAL_ID_ASKED_TOO_OFTEN = (
    "This national ID was typed too often in the last hour with a birth date or sex its holder does not have, so it "
    "is not compared again for now. Check the number on the patient's ID card, or ask the records office. Nothing "
    "was written.")


class ChartLeftUnlinked(Invalid):
    """A chart registered without a subject whose national ID's holder differs (`subject_of`): it stays unlinked
    until its registration is corrected, and what needed the person is refused."""


def national_id_question(differs: list[str]) -> str:
    """The question, in the words every caller shows: what differs, nothing of that person."""
    return (f"This national ID is held by a person with another {' and '.join(differs)}, registered at a facility "
            "of this appliance. Check the number on the ID card: a mistyped one would put this chart on that "
            "person's patient portal.")


def national_id_disagreement(db: Database, principal: Principal, data: PatientIn, *, tenant: str,
                             chart_id: uuid.UUID | None = None) -> list[str]:
    """What the person already holding this registration's national ID differs in ("birth date", "sex", both;
    none when nobody holds it or they agree): `with_subject` links the chart to them on the national ID alone.
    The comparison is the identity index's (`identity.compare_national_id_holder`, which audits it as asked by
    `principal` at `tenant`, and refuses it when asked too often: `NationalIdAskedTooOften`, 429). An ID a patient
    of `tenant` holds is left to the registration, which refuses it naming that record; `chart_id`, the chart being
    linked, is not that patient."""
    national_id = national_id_of(data)
    if not national_id:
        return []
    with db.tenant(tenant) as conn:
        if conn.execute(sa.select(patient_identifier.c.patient_id).where(
                patient_identifier.c.system == "national_id", patient_identifier.c.value == national_id,
                patient_identifier.c.patient_id.is_distinct_from(chart_id))).first():
            return []
    with db.control() as conn:  # committed before a refusal: the count and the audit event stay
        answer = identity.compare_national_id_holder(
            conn, national_id, birth_date=data.birth_date, sex=data.sex, tenant=tenant, by=principal,
            confirmed=data.national_id_confirmed)
    if answer is not None and answer.refused:
        raise NationalIdAskedTooOften(NATIONAL_ID_ASKED_TOO_OFTEN, field="identifiers")
    return answer.differs if answer is not None else []


def _national_id_holder_differs(differs: list[str]) -> NationalIdHolderDiffers:
    return NationalIdHolderDiffers(
        national_id_question(differs) + " Nothing was written; if the number is right, confirm it "
        "(national_id_confirmed: true).", field="national_id_confirmed",
        requires_national_id_confirmation=True, differs=differs)


def _named_subject(conn: Connection, subject_id: uuid.UUID) -> uuid.UUID:
    """The subject a registration names, followed through merges; it must exist."""
    if not identity.subject_exists(conn, subject_id):
        raise Invalid(f"no subject {subject_id} on this appliance", field="subject_id")
    return identity.resolve_subject(conn, subject_id)


def with_subject(db: Database, data: PatientIn, *, tenant: str, chart_id: uuid.UUID | None = None,
                 chart_conn: Connection | None = None) -> PatientIn:
    """`data` linked to its one-identity subject (`control.subject`), before the chart is registered at
    `tenant`: the subject holding the same national ID, else a new one. A person registered at two
    facilities under one national ID is then one subject, whose records the patient portal shows
    together; the facility is noted as holding a chart of the subject (`identity.note_facility`), which is
    how the portal knows where to look. A subject the caller names must exist. Its own control
    transaction: a tenant transaction cannot write `control`. A registration refused after it would leave a
    subject no chart names and a facility listed with no chart of it, so the caller passes the transaction that
    writes the chart (`chart_conn`), whose rollback undoes both (`identity.forget_refused_registration`).

    So a new chart (`chart_id` None) whose national ID a patient of this facility holds is refused here, as its
    registration would be, before a subject is made: the front desk typing a patient's ID for someone else made
    a subject of that ID with the other person's birth date and sex, and the chart holding it, when it had no
    subject yet (a chart from before subjects, or the demo's), was later refused its portal invitation as
    another person's ID (before `link_registration`, it was linked to that stranger's subject)."""
    national_id = national_id_of(data)
    if chart_id is None and national_id and data.subject_id is None:
        with _chart_transaction(db, tenant, chart_conn) as conn:
            _refuse_identifiers_held(conn, None, [{"system": "national_id", "value": national_id}])
    made = False
    with db.control() as conn:
        if data.subject_id is not None:
            subject_id = _named_subject(conn, data.subject_id)
        else:
            match = identity.match_or_create_subject(
                conn, family_name=data.family_name, given_names=data.given_names, birth_date=data.birth_date,
                sex=data.sex, national_id=national_id)
            subject_id, made = match.subject_id, match.how == "created"
        noted = identity.note_facility(conn, subject_id, tenant)
    _forgotten_if_refused(chart_conn, tenant, subject_id, made=made, noted=noted)
    return data.model_copy(update={"subject_id": subject_id})


def _chart_transaction(db: Database, tenant: str, chart_conn: Connection | None):
    """Where a registration reads the facility's own charts before asking the identity index: the chart's transaction
    when the caller holds it open (a second tenant transaction beside it took another pooled connection and its round
    trips on every registration: bench/intake.py's server CPU 9.57 → 8.84 ms and PostgreSQL's 4.33 → 3.71 ms a
    patient without it), else one of its own."""
    return contextlib.nullcontext(chart_conn) if chart_conn is not None else db.tenant(tenant)


def _forgotten_if_refused(chart_conn: Connection | None, tenant: str, subject_id: uuid.UUID, *, made: bool,
                          noted: bool, disputed_chart: uuid.UUID | None = None) -> None:
    """What a registration wrote to the identity index ahead of its chart, undone if the chart's transaction
    (`chart_conn`) rolls back: with the new chart's disputed link (`disputed_chart`), the record of it too."""
    if chart_conn is None or not (made or noted or disputed_chart):
        return

    def forget(db: Database) -> None:
        with db.control() as conn:
            identity.forget_refused_registration(conn, subject_id, tenant, made=made, noted=noted,
                                                 disputed_chart=disputed_chart)

    after_rollback(chart_conn, forget)


def link_registration(db: Database, principal: Principal, data: PatientIn, *, tenant: str,
                      chart_id: uuid.UUID | None = None, chart_conn: Connection | None = None) -> PatientIn:
    """`data` linked to its one-identity subject as `with_subject` links it, after the national-ID question:
    refused (`NationalIdHolderDiffers`, 409, naming only what differs) when the person holding that ID
    elsewhere was born on another day or is of another sex, unless the caller says the number was checked on
    the card (`national_id_confirmed`); the comparison is audited (`identity.compare_national_id_holder`) and
    nothing else is written. A link made over the confirmed difference is recorded on the chart, in the same
    control transaction (`identity.note_link_dispute`: a new chart's id is chosen then, `PatientIn.chart_id`, which
    `register_patient` takes; a registration refused after it takes the record away with it). Until resolved a death
    certified there is kept to the chart (`substrate.deaths`) and a referral from it reaches no chart of the person
    elsewhere. Asked too often this hour: `NationalIdAskedTooOften` (429), not compared. A
    registration naming its subject is not asked: it links to the person it names. The one rule the portal's
    desk, the API, HL7 v2 and FHIR registrations and a corrected national ID (`chart_id`, the chart relinked)
    all go through.

    One tenant read and one control transaction: asking and linking apart took two of each, a quarter of a
    registration's server time (py-spy, bench/intake.py). A new chart whose national ID a patient of this
    facility holds is refused before the identity index is asked anything (`with_subject` says why, and why the
    caller passes the chart's transaction as `chart_conn`)."""
    national_id = national_id_of(data)
    if national_id and data.subject_id is None:
        with _chart_transaction(db, tenant, chart_conn) as conn:
            _refuse_identifiers_held(conn, chart_id, [{"system": "national_id", "value": national_id}])
    differs: list[str] = []
    refused = made = noted = False
    new_chart = chart_id is None
    with db.control() as conn:
        if data.subject_id is not None:
            subject_id = _named_subject(conn, data.subject_id)
        else:
            if national_id:
                answer = identity.compare_national_id_holder(
                    conn, national_id, birth_date=data.birth_date, sex=data.sex, tenant=tenant, by=principal,
                    confirmed=data.national_id_confirmed)
                if answer is not None:
                    differs, refused = answer.differs, answer.refused
            if refused or (differs and not data.national_id_confirmed):
                subject_id = None  # the comparison's count and audit event commit; the refusal is raised below
            else:
                match = identity.match_or_create_subject(
                    conn, family_name=data.family_name, given_names=data.given_names, birth_date=data.birth_date,
                    sex=data.sex, national_id=national_id)
                subject_id, made = match.subject_id, match.how == "created"
                if differs:  # linked over the differing answer the desk confirmed: recorded on the chart to be
                    chart_id = chart_id or uuid.uuid4()
                    identity.note_link_dispute(conn, tenant=tenant, chart_id=chart_id, subject_id=subject_id,
                                               differs=differs, by=principal)
        if subject_id is not None:
            noted = identity.note_facility(conn, subject_id, tenant)
    if subject_id is not None:
        _forgotten_if_refused(chart_conn, tenant, subject_id, made=made, noted=noted,
                              disputed_chart=chart_id if differs and new_chart else None)
    if refused:
        raise NationalIdAskedTooOften(NATIONAL_ID_ASKED_TOO_OFTEN, field="identifiers")
    if subject_id is None:
        raise _national_id_holder_differs(differs)
    linked = data.model_copy(update={"subject_id": subject_id})
    if differs:
        linked._chart_id = chart_id
    return linked


def subject_of(db: Database, tenant: str, principal: Principal, patient_id: uuid.UUID) -> tuple[dict, uuid.UUID]:
    """The patient and their subject, linking a chart registered without one (before registration
    matched subjects, or written by a generator) the way `with_subject` would have: its own control
    transaction, then the link, audited on the patient's record (`record.patient.update`). Nobody is there to
    answer `link_registration`'s question, so a chart whose national ID is held elsewhere by a person born on
    another day or of another sex is left unlinked, and `ChartLeftUnlinked` says so (and what differs)."""
    with db.tenant(tenant) as conn:
        found = get_patient(conn, principal, patient_id)
    if found["subject_id"] is not None:
        with db.control() as conn:  # a chart linked before facilities were noted (c0006 notes those too)
            identity.note_facility(conn, found["subject_id"], tenant)
        return found, found["subject_id"]
    data = PatientIn.model_validate(
        {key: found[key] for key in ("family_name", "given_names", "birth_date", "sex", "identifiers")})
    if differs := national_id_disagreement(db, principal, data, tenant=tenant, chart_id=patient_id):
        raise ChartLeftUnlinked(national_id_question(differs) + " This chart is left unlinked from that person "
                                "until its registration is corrected, or the number confirmed there if it is right.",
                                field="identifiers", differs=differs)
    linked = with_subject(db, data, tenant=tenant, chart_id=patient_id)
    with db.tenant(tenant) as conn:
        subject_id = conn.execute(
            sa.update(patient).where(patient.c.id == patient_id, patient.c.subject_id.is_(None))
            .values(subject_id=linked.subject_id).returning(patient.c.subject_id)).scalar()
        if subject_id is None:  # linked by someone else in between: theirs stands
            subject_id = conn.execute(sa.select(patient.c.subject_id).where(patient.c.id == patient_id)).scalar()
        note_access(conn, principal, "update", patient_id, "patient", (patient_id,),
                    detail={"change": "linked to the one-identity subject"})
    return found, subject_id


def register_patient(conn: Connection, principal: Principal, data: PatientIn) -> dict:
    """A new chart: the patient row, their identifiers, and the first `demographics` entry."""
    patient_id = data.chart_id or uuid.uuid4()
    entry_id = uuid.uuid4()
    detail = _demographics(data)
    values = {"id": patient_id, "subject_id": data.subject_id, "demographics_entry_id": entry_id,
              **_projection(detail)}
    registered = conn.execute(_NEW_PATIENT.values(**values).returning(
        patient.c.mrn, patient.c.registered_at, patient.c.updated_at)).one()
    _claim_identifiers(conn, patient_id, detail["identifiers"], new=True)
    record.append(conn, principal, "demographics", patient_id=patient_id, detail=detail, entry_id=entry_id)
    _listed_once_committed(conn, data.subject_id)
    return {**values, **registered._mapping, "identifiers": detail["identifiers"], "version_id": entry_id}


def _listed_once_committed(conn: Connection, subject_id: uuid.UUID | None) -> None:
    """The facility listed for the subject again once this chart has committed. `with_subject` listed it
    before the chart was written; a correction that relinked another chart of this facility away from the
    subject in between (`release_unlinked_subject`) found no chart of it here, and unlisted the facility,
    so the portal would not show this chart until it was next linked."""
    if subject_id is None:
        return
    tenant = conn.info["healthos_tenant"]

    def list_facility(db: Database) -> None:
        with db.control_autocommit() as control:
            identity.note_facility(control, subject_id, tenant)

    after_commit(conn, list_facility)


def update_patient(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: PatientIn, *,
                   reason: str, version_id: uuid.UUID | None = None, db: Database) -> dict:
    """Correct a registration: a new demographics entry supersedes the one in force.

    The chart stays linked to its one-identity subject (which the patient portal and every facility's
    view of the person read by), unless the correction says it is someone else's:
    - its national ID changed, was added or was removed: the chart is linked as a registration with the
      corrected details would be (`with_subject`), to the subject holding the corrected ID, else to a new
      subject of its own; demographic look-alikes are never linked. A removed ID so parts the chart from
      the person that ID named: if the ID was wrong, keeping the link keeps two people's records joined.
      A corrected ID whose holder was born on another day or is of another sex is asked first, as at
      registration (`link_registration`), and nothing is written until the caller confirms it.
    - it names a subject (`subject_id`) other than the one in force: that subject, which must exist.
    - the chart has no subject yet and a national ID: linked as above, its ID unchanged or not.
    Leaving `subject_id` out keeps the link: a client sending the demographics it corrects does not
    unlink the patient. The relink is written in this transaction, with the correction, and audited on
    the chart naming both subjects; the subject's own control transaction (`with_subject`) commits first,
    as at registration. Nothing about the old subject changes; the facility stops being listed for it
    once this transaction has committed (`release_unlinked_subject`, which reads `unlinked_subject_id`).

    A correction cannot be marked entered in error (a demographics entry is not RETRACTABLE): it is undone
    by correcting again, which links by the same rule (the ID restored, the subject that ID names)."""
    found = conn.execute(
        sa.select(patient.c.demographics_entry_id, patient.c.subject_id).where(patient.c.id == patient_id)
        .with_for_update()
    ).first()
    if found is None:
        raise NotFound(f"no patient {patient_id} at this facility", patient_id=str(patient_id))
    current = found.demographics_entry_id
    if version_id is not None and version_id != current:
        raise Conflict("the registration was changed since you loaded it; reload and try again",
                       version_id=str(current))
    detail = _demographics(data)
    in_force = conn.execute(sa.select(patient_identifier.c.value).where(
        patient_identifier.c.patient_id == patient_id, patient_identifier.c.system == "national_id")).scalar()
    _claim_identifiers(conn, patient_id, detail["identifiers"])  # refused before the index is asked anything
    subject_id = found.subject_id
    named = data.subject_id if data.subject_id != found.subject_id else None
    # A chart with no subject yet (registered before subjects, or left unlinked by `subject_of` because its ID's
    # holder differs) is linked by its correction even when the ID stays: the desk that checked the number on the
    # card confirms it here, where before nothing but changing the number could link it.
    unlinked = found.subject_id is None and national_id_of(data) is not None
    if named is not None or national_id_of(data) != in_force or unlinked:
        # The facility whose transaction this is, as the audit seam reads it.
        tenant, relinking = conn.info["healthos_tenant"], data.model_copy(update={"subject_id": named})
        subject_id = link_registration(db, principal, relinking, tenant=tenant, chart_id=patient_id,
                                       chart_conn=conn).subject_id
    appended = record.append(conn, principal, "demographics", patient_id=patient_id, detail=detail,
                             supersedes=current, reason=reason)
    conn.execute(sa.update(patient).where(patient.c.id == patient_id).values(
        demographics_entry_id=appended.id, subject_id=subject_id, updated_at=sa.func.now(), **_projection(detail),
    ))
    relinked = subject_id != found.subject_id
    if relinked:
        _listed_once_committed(conn, subject_id)
        note_access(conn, principal, "update", patient_id, "patient", (patient_id,), detail={
            "change": "linked to another one-identity subject by the corrected registration",
            "from_subject": str(found.subject_id) if found.subject_id else None, "to_subject": str(subject_id)})
    return {**patient_of(conn, patient_id), "unlinked_subject_id": found.subject_id if relinked else None}


def confirm_identity(db: Database, tenant: str, principal: Principal, patient_id: uuid.UUID, documents: str) -> dict:
    """A chart linked to its person over a differing national-ID answer (`link_registration`) is that person's, as
    `principal` checked on `documents`: the link is no longer in dispute (`identity.confirm_linked_identity`, audited
    there), so a death kept to the chart is the person's at every facility, and the confirmation, with the documents
    named, is on the chart's access log. 404 for a chart not of this facility; 409 for one not in dispute, or while
    the person is recorded deceased by another facility too."""
    with db.tenant(tenant) as conn:
        require_patient(conn, patient_id)
    with db.control() as conn:
        try:
            identity.confirm_linked_identity(conn, tenant=tenant, chart_id=patient_id, by=principal)
        except identity.IdentityError as refused:
            raise Conflict(str(refused), field="patient_id") from None
    with db.tenant(tenant) as conn:
        note_access(conn, principal, "update", patient_id, "patient", (patient_id,),
                    detail={"change": "identity confirmed from documents", "documents": documents})
        return patient_of(conn, patient_id)


def release_unlinked_subject(db: Database, tenant: str, principal: Principal, corrected: dict) -> None:
    """After a correction that relinked a chart (`update_patient`) has committed: the facility is no
    longer listed for the subject the chart left, unless another chart here still links to it
    (`identity.relink_facility`, which audits it). Nothing to do for a correction that kept the link."""
    unlinked = corrected.get("unlinked_subject_id")
    if unlinked is None:
        return

    def holds_chart(subject_id: uuid.UUID) -> bool:
        with db.tenant(tenant) as conn:
            return conn.execute(sa.select(patient.c.id).where(patient.c.subject_id == subject_id).limit(1)).first() \
                is not None

    with db.control() as conn:
        identity.relink_facility(conn, tenant=tenant, chart_id=corrected["id"], from_subject=unlinked,
                                 to_subject=corrected["subject_id"], holds_chart=holds_chart, by=principal)


_IDENTIFIERS = (
    sa.select(sa.func.coalesce(
        sa.func.jsonb_agg(sa.func.jsonb_build_object("system", patient_identifier.c.system,
                                                     "value", patient_identifier.c.value))
        .filter(patient_identifier.c.system.is_not(None)), sa.text("'[]'::jsonb")))
    .where(patient_identifier.c.patient_id == patient.c.id)
    .scalar_subquery()
)

PATIENT_COLUMNS = (
    patient.c.id, patient.c.mrn, patient.c.subject_id, patient.c.family_name, patient.c.given_names,
    patient.c.birth_date, patient.c.birth_date_estimated, patient.c.sex, patient.c.phone, patient.c.address,
    _IDENTIFIERS.label("identifiers"), patient.c.contacts, patient.c.next_of_kin,
    patient.c.demographics_entry_id.label("version_id"), patient.c.registered_at, patient.c.updated_at,
)


def patient_of(conn: Connection, patient_id: uuid.UUID) -> dict:
    row = conn.execute(sa.select(*PATIENT_COLUMNS).where(patient.c.id == patient_id)).mappings().first()
    if row is None:
        raise NotFound(f"no patient {patient_id} at this facility", patient_id=str(patient_id))
    return dict(row)


def get_patient(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> dict:
    found = patient_of(conn, patient_id)
    note_access(conn, principal, "read", patient_id, "patient", (patient_id,))
    return found


def require_patient(conn: Connection, patient_id: uuid.UUID) -> None:
    if conn.execute(sa.select(patient.c.id).where(patient.c.id == patient_id)).first() is None:
        raise NotFound(f"no patient {patient_id} at this facility", patient_id=str(patient_id))


def search_patients(conn: Connection, principal: Principal, *, name: str | None = None,
                    identifier: str | None = None, birth_date: dt.date | None = None,
                    phone: str | None = None, limit: int = 20) -> list[dict]:
    """Patients by identifier (or MRN) exactly, and/or by name (trigram similarity, so a misspelt or
    partial name still finds them), phone number and birth date. Best matches first."""
    query, order = patient_search_query(name=name, identifier=identifier, birth_date=birth_date, phone=phone)
    limit = max(1, min(limit, 100))
    rows = [dict(r) for r in conn.execute(query.order_by(*order).limit(limit)).mappings()]
    record.note_patients_found(conn, principal, [r["id"] for r in rows])
    return rows


PATIENT_SEARCH_COLUMNS = (patient.c.id, patient.c.mrn, patient.c.family_name, patient.c.given_names,
                          patient.c.birth_date, patient.c.sex)


# Fewer significant digits than this is an MRN (seven) or a fragment, not a phone number.
PHONE_DIGITS_MIN = 8
_PHONE_TYPED = re.compile(r"\+?[\d\s().-]+")


def phone_digits(typed: str) -> str | None:
    """The significant digits of what reads as a phone number ('+254 712 345 678', '0712-345678': '712345678',
    the trunk's leading zero dropped, '254712345678' with the country's code), or None for anything else."""
    if not _PHONE_TYPED.fullmatch(typed.strip()):
        return None
    digits = re.sub(r"\D", "", typed).lstrip("0")
    return digits if len(digits) >= PHONE_DIGITS_MIN else None


def _phone_matches(digits: str) -> sa.ColumnElement[bool]:
    """A chart whose phone is the number `digits` names, written with or without the country's code on either
    side: a desk registers '0712 345678' and the patient says '+254712345678', or the other way round. No index
    serves it: the phone's last digit is compared first, so only a tenth of the charts have their digits taken
    out (20,000 charts: 20-50 ms, where taking every one's was 180-300 ms)."""
    held = sa.func.ltrim(sa.func.regexp_replace(patient.c.phone, r"\D", "", "g"), "0")
    return sa.and_(patient.c.phone.like(f"%{digits[-1]}"), sa.or_(
        sa.func.right(held, len(digits)) == digits,
        sa.and_(sa.func.length(held) >= PHONE_DIGITS_MIN,
                sa.func.right(sa.literal(digits), sa.func.length(held)) == held)))


def patient_search_query(*, name: str | None = None, identifier: str | None = None, birth_date: dt.date | None = None,
                         phone: str | None = None) -> tuple[sa.Select, list[sa.UnaryExpression]]:
    """The statement behind `search_patients` (with its `score` column) and its order, best first and
    then by name and id (a total order, so a caller can page it by keyset); not audited — callers are.
    A phone number finds the charts registered with it (alongside an identifier's, when both are given:
    one search box's digits may be either)."""
    name = identity.search_text(name or "")
    identifier = (identifier or "").strip()
    digits = phone_digits(phone) if phone else None
    if phone and digits is None:
        raise Invalid(f"{phone.strip()[:40]!r} is not a phone number: give its digits, with the country's code "
                      "or without", field="phone")
    if not (name or identifier or birth_date or digits):
        raise Invalid("give a name, an identifier, a phone number or a birth date to search by", field="name")
    if name and len(name) < 2:
        raise Invalid("a name to search by needs at least two letters", field="name")
    query = sa.select(*PATIENT_SEARCH_COLUMNS)
    score: sa.ColumnElement = sa.literal(1.0, sa.Double)
    if identifier or digits:
        found: list[sa.ColumnElement[bool]] = []
        if identifier:
            by_identifier = sa.select(patient_identifier.c.patient_id).where(
                patient_identifier.c.value == identifier)
            # A folder, a card or a clerk writes the MRN without its leading zeros ("23" for 0000023).
            mrns = {identifier, identifier.zfill(MRN_DIGITS)} if identifier.isdigit() else {identifier}
            found += [patient.c.mrn.in_(sorted(mrns)), patient.c.id.in_(by_identifier)]
        if digits:
            found.append(_phone_matches(digits))
        query = query.where(sa.or_(*found))
        if name:
            query = query.where(patient.c.name_search.op("OPERATOR(public.%>)")(name))
    elif name:
        # Three ways to match, all served by the GIN trigram index: the whole name is similar (`%`,
        # a misspelt full name), the text is close to some run of words in it (`%>`, one name of
        # several), or it is a plain substring (a prefix being typed). Best first.
        # In double precision: a real's text form rounds, and a page's cursor must compare equal to it.
        score = sa.cast(sa.func.greatest(sa.func.public.similarity(name, patient.c.name_search),
                                         sa.func.public.word_similarity(name, patient.c.name_search)),
                        sa.Double)
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(sa.or_(
            patient.c.name_search.like(f"%{escaped}%"),
            patient.c.name_search.op("OPERATOR(public.%)")(name),
            patient.c.name_search.op("OPERATOR(public.%>)")(name),
        ))
    if birth_date:
        query = query.where(patient.c.birth_date == birth_date)
    query = query.add_columns(score.label("score"))
    return query, [score.desc(), patient.c.family_name.asc(), patient.c.given_names.asc(), patient.c.id.asc()]


# -- encounters --------------------------------------------------------------------------------------

TRANSITIONS: dict[str, set[str]] = {
    "planned": {"arrived", "cancelled"},
    "arrived": {"in_progress", "cancelled"},
    "in_progress": {"finished"},
    "finished": set(),
    "cancelled": set(),
}
ENCOUNTER_COLUMNS = (encounter.c.id, encounter.c.patient_id, encounter.c.encounter_class, encounter.c.status,
                     encounter.c.reason, encounter.c.ward_code, encounter.c.planned_for, encounter.c.started_at,
                     encounter.c.ended_at)
# An encounter the operations layer holds on one of its boards ends there, never by hand: an inpatient stay
# given a bed ends with the patient's discharge (which frees the bed), an emergency visit on the ED board
# with its departure. Finished or cancelled on the chart instead, the patient stayed in the bed or on the
# board with their encounter closed: the ward's nurses lost them and their open tasks were cancelled. The
# kinds are named, not imported (the clinical layer does not know the operations layer): the entry that
# put the encounter on a board, the entry that takes it off, and the sentence saying where that is done.
HELD_ON_A_BOARD: dict[str, tuple[str, str]] = {
    "admission": ("discharge", "an inpatient admission with a bed ends when the patient is discharged from the "
                               "bed on the bed board, which frees the bed; it finishes then"),
    "ed_arrival": ("ed_departure", "an emergency visit on the emergency department board ends when its "
                                   "departure is recorded there (discharged, admitted, transferred); it "
                                   "finishes then"),
}


def held_on_a_board() -> sa.ColumnElement:
    """SQL, correlated with `encounter`: the kind of entry that put this encounter on an operations board
    ('admission', 'ed_arrival') while the entry that takes it off is not yet written; NULL otherwise."""
    def written(kind: str) -> sa.ColumnElement[bool]:
        found = entry.alias(f"board_{kind}")
        return sa.exists().where(found.c.encounter_id == encounter.c.id, found.c.kind == kind,
                                 found.c.status != "entered_in_error", current_clause(found))

    return sa.case(*[(sa.and_(written(put_on), ~written(taken_off)), put_on)
                     for put_on, (taken_off, _) in HELD_ON_A_BOARD.items()], else_=sa.null())


def held_on_boards(conn: Connection, encounter_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Which of these encounters an operations board holds, and by what (held_on_a_board), for a reader
    holding encounters from the chart summary, which does not carry it; not audited — the caller's read
    of those encounters is."""
    if not encounter_ids:
        return {}
    held = held_on_a_board()
    return dict(conn.execute(sa.select(encounter.c.id, held).where(encounter.c.id.in_(encounter_ids),
                                                                   held.is_not(None))).all())


def require_encounter(conn: Connection, patient_id: uuid.UUID, encounter_id: uuid.UUID | None) -> None:
    if encounter_id is None:
        return
    found = conn.execute(sa.select(encounter.c.patient_id).where(encounter.c.id == encounter_id)).scalar()
    if found != patient_id:
        raise Invalid(f"encounter {encounter_id} is not an encounter of this patient", field="encounter_id")


_ENCOUNTER_OF = (sa.select(encounter.c.patient_id).where(encounter.c.id == sa.bindparam("encounter_id"))
                 .scalar_subquery())
_PATIENT_AND_ENCOUNTER = sa.select(patient.c.id, _ENCOUNTER_OF.label("encounter_patient")).where(
    patient.c.id == sa.bindparam("patient_id"))


# An order asks for its test's definition in the same round trip.
_PATIENT_ENCOUNTER_AND_TEST = _PATIENT_AND_ENCOUNTER.add_columns(catalogue.DEFINITION_OF_CODE.label("test"))


def one_writer_at_a_time(conn: Connection, kind: str, patient_id: uuid.UUID) -> None:
    """Writes of `kind` for one patient, in transactions at once, are checked one after the other: the second waits
    here until the first commits or rolls back, then reads what it wrote. A lock, not a constraint, where what may be
    written depends on the patient's entries before (a family planning method in place, a delivery already
    recorded), not on one row."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(f"healthos.{kind}.{patient_id}",
                                                                                    0))))


def require_chart(conn: Connection, patient_id: uuid.UUID, encounter_id: uuid.UUID | None, *,
                  test_code: str | None = None) -> OrderableConfig | None:
    """The patient exists here and the encounter, if named, is theirs: one round trip for both, and
    for the catalogue's test `test_code` if one is named (returned; a 422 if there is none)."""
    params = {"patient_id": patient_id, "encounter_id": encounter_id}
    if test_code is None:
        row = conn.execute(_PATIENT_AND_ENCOUNTER, params).first()
    else:
        row = conn.execute(_PATIENT_ENCOUNTER_AND_TEST, params | {"code": test_code}).first()
    if row is None:
        raise NotFound(f"no patient {patient_id} at this facility", patient_id=str(patient_id))
    if encounter_id is not None:
        if row.encounter_patient != patient_id:
            raise Invalid(f"encounter {encounter_id} is not an encounter of this patient", field="encounter_id")
        record.encounter_checked(conn, patient_id, encounter_id)
    return None if test_code is None else catalogue.orderable_of(test_code, row.test)


_ENCOUNTER_PATIENT = sa.select(encounter.c.patient_id).where(encounter.c.id == sa.bindparam("encounter_id"))


def refuse_another_patients_encounter(conn: Connection, kind: str, patient_id: uuid.UUID | None,
                                      encounter_id: uuid.UUID) -> None:
    """The record's check before any layer files an entry under an encounter (record.register_encounter_check):
    the encounter must be this patient's. An `encounter` entry's detail is the encounter itself, written with
    its patient."""
    if kind == "encounter":
        return
    owner = conn.execute(_ENCOUNTER_PATIENT, {"encounter_id": encounter_id}).scalar()
    if owner is None or owner != patient_id:
        raise Invalid(f"encounter {encounter_id} is not an encounter of this patient", field="encounter_id")


record.register_encounter_check(refuse_another_patients_encounter)


def open_encounter(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: EncounterIn) -> dict:
    """A new encounter, with its vital signs if given. A patient has one inpatient admission under way at
    a time: a second (a clinician admitting the patient the bed board had already put in a bed) is refused,
    naming the one open, since the ward's lists, the discharge and its summary all follow one stay. A
    planned admission (next month's elective surgery) may be booked meanwhile."""
    require_patient(conn, patient_id)
    if data.encounter_class == "inpatient" and data.status != "planned":
        _refusing_a_second_admission(conn, patient_id)
    encounter_id = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    detail = {
        "id": encounter_id, "patient_id": patient_id, "encounter_class": data.encounter_class,
        "status": data.status, "reason": data.reason, "ward_code": data.ward_code,
        "planned_for": data.planned_for, "started_at": None if data.status == "planned" else now,
    }
    record.append(conn, principal, "encounter", patient_id=patient_id, encounter_id=encounter_id, detail=detail)
    opened = {k: v for k, v in detail.items() if k in {c.name for c in ENCOUNTER_COLUMNS}} | {"ended_at": None}
    if data.vitals is not None:
        opened["vitals"] = _append_vitals(conn, principal, patient_id, encounter_id, data.vitals)
    return opened


def _refusing_a_second_admission(conn: Connection, patient_id: uuid.UUID) -> None:
    admitted = conn.execute(
        sa.select(encounter.c.id, encounter.c.status, encounter.c.ward_code)
        .where(encounter.c.patient_id == patient_id, encounter.c.encounter_class == "inpatient",
               encounter.c.status.in_(("arrived", "in_progress")))
        .order_by(encounter.c.started_at.desc()).limit(1)
    ).first()
    if admitted is not None:
        where = f" on ward {admitted.ward_code}" if admitted.ward_code else ""
        raise Conflict(f"this patient already has an inpatient admission {admitted.status.replace('_', ' ')}{where}: "
                       "record on that encounter, or finish it first", field="encounter_class",
                       encounter_id=str(admitted.id))


def transition_encounter(conn: Connection, principal: Principal, patient_id: uuid.UUID,
                         encounter_id: uuid.UUID, to_status: str) -> dict:
    """Move an encounter along planned → arrived → in progress → finished (or cancelled before it
    starts); anything else is refused and changes nothing, as is ending one an operations board holds
    (HELD_ON_A_BOARD)."""
    row = conn.execute(
        sa.select(encounter.c.status, encounter.c.started_at, held_on_a_board().label("held_by"))
        .where(encounter.c.id == encounter_id, encounter.c.patient_id == patient_id)
        .with_for_update(of=encounter)
    ).first()
    if row is None:
        raise NotFound(f"no encounter {encounter_id} for this patient", encounter_id=str(encounter_id))
    if to_status in {"finished", "cancelled"} and row.held_by is not None:
        raise Conflict(f"this encounter cannot be {to_status} here: {HELD_ON_A_BOARD[row.held_by][1]}",
                       field="status", current_status=row.status, held_by=row.held_by)
    if to_status not in TRANSITIONS[row.status]:
        allowed = sorted(TRANSITIONS[row.status]) or ["none: it is closed"]
        raise Conflict(f"an encounter that is {row.status} cannot become {to_status} "
                       f"(allowed next: {', '.join(allowed)})", field="status", current_status=row.status)
    record.append(conn, principal, "encounter_status", patient_id=patient_id, encounter_id=encounter_id,
                  detail={"encounter_id": encounter_id, "from_status": row.status, "to_status": to_status})
    values: dict[str, Any] = {"status": to_status, "updated_at": sa.func.now()}
    if to_status in {"arrived", "in_progress"} and row.started_at is None:
        values["started_at"] = sa.func.now()
    if to_status in {"finished", "cancelled"}:
        values["ended_at"] = sa.func.now()
    updated = conn.execute(sa.update(encounter).where(encounter.c.id == encounter_id).values(**values)
                           .returning(*ENCOUNTER_COLUMNS)).mappings().one()
    return dict(updated)


def list_encounters(conn: Connection, principal: Principal, patient_id: uuid.UUID, limit: int = 50) -> list[dict]:
    require_patient(conn, patient_id)
    rows = [dict(r) for r in conn.execute(  # with who opened it, as every other entry carries its author
        sa.select(*ENCOUNTER_COLUMNS, entry.c.author_id, held_on_a_board().label("held_by"))
        .join(entry, entry.c.id == encounter.c.entry_id)
        .where(encounter.c.patient_id == patient_id)
        .order_by(sa.func.coalesce(encounter.c.started_at, encounter.c.planned_for).desc().nulls_last())
        .limit(limit)
    ).mappings()]
    note_access(conn, principal, "read", patient_id, "encounter", [r["id"] for r in rows])
    return rows


def record_vitals(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: VitalSignsIn) -> dict:
    require_chart(conn, patient_id, data.encounter_id)
    return _append_vitals(conn, principal, patient_id, data.encounter_id, data)


def _append_vitals(conn: Connection, principal: Principal, patient_id: uuid.UUID, encounter_id: uuid.UUID | None,
                   data: VitalSignsIn) -> dict:
    appended = record.append(conn, principal, "vital_signs", patient_id=patient_id, encounter_id=encounter_id,
                             detail=data.model_dump(exclude={"encounter_id"}))
    return _entry_dict(appended)


# -- amending and retracting entries -----------------------------------------------------------------


def _version_of(conn: Connection, patient_id: uuid.UUID, entry_id: uuid.UUID, kind: str | None = None) -> dict:
    row = conn.execute(
        sa.select(entry.c.id, entry.c.kind, entry.c.root_id, entry.c.encounter_id, entry.c.status)
        .where(entry.c.id == entry_id, entry.c.patient_id == patient_id)
    ).mappings().first()
    if row is None or (kind is not None and row["kind"] != kind):
        raise NotFound(f"no {kind or 'entry'} {entry_id} on this patient's chart", entry_id=str(entry_id))
    return dict(row)


def _amend(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID, kind: str,
           detail: dict, reason: str, encounter_id: uuid.UUID | None = None) -> dict:
    _version_of(conn, patient_id, entry_id, kind)
    appended = record.append(conn, principal, kind, patient_id=patient_id, detail=detail, supersedes=entry_id,
                             reason=reason, encounter_id=encounter_id)
    # Answered as the lists answer it: the record's time and author, not the correction's.
    return _entry_dict(appended) | _record_of(conn, appended.root_id)


# The nurse who charted a set of vital signs withdraws it herself within a shift (ACC-035,
# `clinical.vitals.retract_own`): the one rule is the substrate's `retraction`, which the nursing layer's doses and
# fluid balance lines ask too. The author's routes (API and page) ask it here; the generic entries route is the
# clinician's, its permission decided by the route guard.
retraction.register_own("vital_signs", "clinical.vitals.retract_own", "set of vital signs")


def retract_own_vitals(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                       reason: str) -> dict:
    """Mark a set of vital signs entered in error by the author's own route (the API's and the observations
    page's, `clinical.vitals.retract_own`), if `retraction.require` lets this principal: 403 saying who can."""
    _version_of(conn, patient_id, entry_id, "vital_signs")
    retraction.require(conn, principal, entry_id)
    return retract_entry(conn, principal, patient_id, entry_id, reason)


def retract_entry(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                  reason: str) -> dict:
    """Mark a record entered in error. The mistaken version stays in the history."""
    found = _version_of(conn, patient_id, entry_id)
    if found["kind"] == "delivery":  # and a death, below: each is withdrawn by its own route
        raise Invalid("a delivery is marked entered in error on the delivery itself (POST .../deliveries/<id>/"
                      "entered-in-error), which sees to its babies' charts", field="entry_id")
    if found["kind"] == "death":
        raise Invalid("a death certificate is marked entered in error on the certificate itself (POST .../death/"
                      "entered-in-error), which lists the appointments and visits it had closed, to rebook",
                      field="entry_id")
    if found["kind"] not in RETRACTABLE:
        raise Invalid(f"a {found['kind']} entry cannot be marked entered in error", field="entry_id")
    return retraction_of(conn, record.retract(conn, principal, entry_id, reason))


def retraction_of(conn: Connection, appended: Entry) -> dict:
    """A retraction as the API answers it (`EntryVersion`): the new version marking the record entered in error,
    with the record's first author."""
    return {"id": appended.id, "root_id": appended.root_id, "kind": appended.kind, "entry_status": appended.status,
            "encounter_id": appended.encounter_id, "author_id": appended.author_id,
            "occurred_at": appended.occurred_at, "recorded_at": appended.recorded_at,
            "supersedes": appended.supersedes, "reason": appended.reason, "detail": {},
            "record_author_id": _record_of(conn, appended.root_id)["record_author_id"]}


def entry_history(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID) -> list[dict]:
    _version_of(conn, patient_id, entry_id)
    versions = record.history(conn, entry_id)
    note_access(conn, principal, "read", patient_id, versions[0].kind, [v.id for v in versions])
    return [{
        "id": v.id, "root_id": v.root_id, "kind": v.kind, "entry_status": v.status, "encounter_id": v.encounter_id,
        "author_id": v.author_id, "record_author_id": versions[0].author_id, "occurred_at": v.occurred_at,
        "recorded_at": v.recorded_at, "supersedes": v.supersedes, "reason": v.reason, "detail": dict(v.detail),
    } for v in versions]


# -- problems ----------------------------------------------------------------------------------------


def _condition_detail(data: ConditionIn) -> dict:
    try:
        code = icd10.lookup(data.code)
    except icd10.InvalidIcd10 as exc:
        raise Invalid(f"ICD-10 code {exc}", field="code", code=data.code) from None
    if data.resolved_date and data.onset_date and data.resolved_date < data.onset_date:
        raise Invalid("resolved date is before onset date", field="resolved_date")
    return {"code": code.code, "display": code.display, "clinical_status": data.clinical_status,
            "verification": data.verification, "onset_date": data.onset_date,
            "resolved_date": data.resolved_date, "note": data.note}


def add_condition(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: ConditionIn) -> dict:
    require_chart(conn, patient_id, data.encounter_id)
    appended = record.append(conn, principal, "condition", patient_id=patient_id, encounter_id=data.encounter_id,
                             detail=_condition_detail(data))
    return _entry_dict(appended)


def amend_condition(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                    data: ConditionIn, reason: str) -> dict:
    return _amend(conn, principal, patient_id, entry_id, "condition", _condition_detail(data), reason,
                  data.encounter_id)


def list_conditions(conn: Connection, principal: Principal, patient_id: uuid.UUID, *,
                    active_only: bool = False) -> list[dict]:
    require_patient(conn, patient_id)
    where = [condition.c.clinical_status == "active"] if active_only else []
    rows = current_rows(conn, condition, patient_id, *where)
    note_access(conn, principal, "read", patient_id, "condition", [r["id"] for r in rows])
    return rows


# -- allergies ---------------------------------------------------------------------------------------


def add_allergy(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: AllergyIn) -> dict:
    require_chart(conn, patient_id, data.encounter_id)
    appended = record.append(conn, principal, "allergy", patient_id=patient_id, encounter_id=data.encounter_id,
                             detail=data.model_dump(exclude={"encounter_id"}))
    return _entry_dict(appended)


def amend_allergy(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                  data: AllergyIn, reason: str) -> dict:
    return _amend(conn, principal, patient_id, entry_id, "allergy",
                  data.model_dump(exclude={"encounter_id", "reason"}), reason, data.encounter_id)


def list_allergies(conn: Connection, principal: Principal, patient_id: uuid.UUID, *,
                   active_only: bool = False) -> list[dict]:
    require_patient(conn, patient_id)
    where = [allergy.c.clinical_status == "active"] if active_only else []
    rows = current_rows(conn, allergy, patient_id, *where)
    note_access(conn, principal, "read", patient_id, "allergy", [r["id"] for r in rows])
    return rows


# -- medications -------------------------------------------------------------------------------------


@dataclass
class MedicationOutcome:
    """A prescription that was placed, or refused by the drug–allergy check (`blocked`)."""

    placed: list[dict] = field(default_factory=list)
    blocked: list[dict] = field(default_factory=list)  # [{drug, matches: [...]}]
    services: list[dict] = field(default_factory=list)


def _allergy_conflicts(conn: Connection, patient_id: uuid.UUID, drug_names: list[str]) -> dict[str, list]:
    active = conn.execute(
        sa.select(entry.c.root_id, allergy.c.substance)
        .select_from(entry.join(allergy, allergy.c.entry_id == entry.c.id))
        .where(entry.c.patient_id == patient_id, current_clause(), allergy.c.clinical_status == "active")
    ).all()
    conflicts = {}
    for drug in drug_names:
        matches = drugs.check(drug, active)
        if matches:
            conflicts[drug] = [m.as_dict() for m in matches]
    return conflicts


def _record_alerts(conn: Connection, principal: Principal, patient_id: uuid.UUID,
                   encounter_id: uuid.UUID | None, conflicts: dict[str, list], override: str | None) -> None:
    for drug, matches in conflicts.items():
        record.append(conn, principal, "allergy_alert", patient_id=patient_id, encounter_id=encounter_id, detail={
            "drug": drug, "matches": matches, "outcome": "overridden" if override else "blocked",
            "override_reason": override,
        })


def _medication_detail(data: MedicationIn, override: str | None, order_set: str | None) -> dict:
    return {"drug": data.drug, "dose": data.dose, "dose_unit": data.dose_unit, "route": data.route,
            "frequency": data.frequency, "duration_days": data.duration_days, "status": "active",
            "instructions": data.instructions, "allergy_override_reason": override, "order_set": order_set}


def request_medication(conn: Connection, principal: Principal, patient_id: uuid.UUID,
                       data: MedicationIn) -> MedicationOutcome:
    """Prescribe, after the drug–allergy check. A match without an override reason is refused, and the
    refusal is itself recorded (an `allergy_alert` entry, outcome "blocked"); with a reason, the alert is
    recorded as "overridden" and the prescription carries the reason."""
    require_chart(conn, patient_id, data.encounter_id)
    conflicts = _allergy_conflicts(conn, patient_id, [data.drug])
    override = data.allergy_override_reason if conflicts else None
    if conflicts:
        _record_alerts(conn, principal, patient_id, data.encounter_id, conflicts, override)
        if not override:
            return MedicationOutcome(blocked=[{"drug": d, "matches": m} for d, m in conflicts.items()])
    appended = record.append(conn, principal, "medication_request", patient_id=patient_id,
                             encounter_id=data.encounter_id, detail=_medication_detail(data, override, None))
    return MedicationOutcome(placed=[_entry_dict(appended)])


def change_medication_status(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                             status: str, reason: str) -> dict:
    """Stop or complete a prescription: a new version of it with the new status."""
    _version_of(conn, patient_id, entry_id, "medication_request")
    current = conn.execute(sa.select(*_detail_columns(medication_request))
                           .where(medication_request.c.entry_id == entry_id)).mappings().first()
    if current is None:
        raise Conflict(f"medication request {entry_id} was entered in error", entry_id=str(entry_id))
    if current["status"] != "active":
        raise Conflict(f"this prescription is already {current['status']}", field="status")
    return _amend(conn, principal, patient_id, entry_id, "medication_request",
                  {**current, "status": status}, reason)


def list_medications(conn: Connection, principal: Principal, patient_id: uuid.UUID, *,
                     active_only: bool = False) -> list[dict]:
    require_patient(conn, patient_id)
    where = [medication_request.c.status == "active"] if active_only else []
    rows = current_rows(conn, medication_request, patient_id, *where)
    note_access(conn, principal, "read", patient_id, "medication_request", [r["id"] for r in rows])
    return rows


# -- lab and imaging orders --------------------------------------------------------------------------


def refuse_order_time(conn: Connection, patient_id: uuid.UUID, encounter_id: uuid.UUID | None, at: dt.datetime, *,
                      display: str, done: str = "ordered") -> None:
    """An order's time as another system or a person gives it: not still to come, not before the patient was born
    (on the facility's calendar, as a birth date is kept) and not before the visit it is filed under began, give or
    take the clock skew another machine's clock may have against ours (the visit's start is our clock's)."""
    refuse_time(conn, at, display=display, ordered_at=None, field="occurred_at", done=done)
    started = sa.select(encounter.c.started_at).where(encounter.c.id == encounter_id).scalar_subquery()
    found = conn.execute(sa.select(patient.c.birth_date, facility_day(sa.literal(at, sa.DateTime(timezone=True)))
                                   .label("day"), started.label("started_at"))
                         .where(patient.c.id == patient_id)).first()
    given = f"{at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
    if found is not None and found.birth_date is not None and found.day < found.birth_date:
        raise Invalid(f"{given} is before the patient was born ({found.birth_date:%d %B %Y}): give the time the "
                      f"{display} was {done}", field="occurred_at")
    if found is not None and found.started_at is not None and at < found.started_at - CLOCK_SKEW:
        raise Invalid(f"{given} is before the visit it is ordered on began "
                      f"({found.started_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC): give the time the {display} was "
                      f"{done}", field="occurred_at")


def order_test(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: ServiceRequestIn) -> dict:
    """One test of the catalogue ordered, at `data.occurred_at` when another system placed it before sending it
    (its clock may run a little ahead of ours) or a clinician writes up an order given earlier, else now."""
    test = require_chart(conn, patient_id, data.encounter_id, test_code=data.code)
    if data.occurred_at is not None:
        refuse_order_time(conn, patient_id, data.encounter_id, data.occurred_at, display=test.name)
    appended = record.append(conn, principal, "service_request", patient_id=patient_id,
                             encounter_id=data.encounter_id, occurred_at=data.occurred_at, detail={
                                 "category": test.category, "code": test.loinc, "display": test.name,
                                 "priority": data.priority, "status": "active",
                                 "clinical_info": data.clinical_info, "order_set": None})
    return _entry_dict(appended)


def place_order_set(conn: Connection, principal: Principal, patient_id: uuid.UUID, code: str,
                    data: OrderSetIn) -> MedicationOutcome:
    """Every order of the set, or none: all are validated first (catalogue, drug–allergy check), and the
    appends share the caller's transaction, so a failure part-way undoes the ones before it. The drugs
    `data.leave_out` names are not ordered (a clinician keeps the tests of a set whose drug the patient is
    allergic to, rather than override the allergy or order nothing)."""
    require_chart(conn, patient_id, data.encounter_id)
    order_set = catalogue.get_order_set(conn, code)
    strange = [drug for drug in data.leave_out if drug not in {m.drug for m in order_set.medications}]
    if strange:
        raise Invalid(f"order set {code} has no drug {strange[0]} to leave out; nothing was ordered", field="leave_out")
    medications = [m for m in order_set.medications if m.drug not in data.leave_out]
    if not order_set.tests and not medications:
        raise Invalid(f"leaving out {', '.join(data.leave_out)} leaves nothing of order set {code} to order",
                      field="leave_out")
    tests = catalogue.get_orderables(conn, order_set.tests)
    missing = [t for t in order_set.tests if t not in tests]
    if missing:
        raise Invalid(f"order set {code} names test {missing[0]}, which is not in this facility's catalogue; "
                      "nothing was ordered", field="code", code=missing[0])
    if data.occurred_at is not None:
        refuse_order_time(conn, patient_id, data.encounter_id, data.occurred_at,
                          display=f"order set {order_set.name}", done="placed")
    conflicts = _allergy_conflicts(conn, patient_id, [m.drug for m in medications])
    override = data.allergy_override_reason if conflicts else None
    if conflicts:
        _record_alerts(conn, principal, patient_id, data.encounter_id, conflicts, override)
        if not override:
            return MedicationOutcome(blocked=[{"drug": d, "matches": m} for d, m in conflicts.items()])
    outcome = MedicationOutcome()
    for loinc in order_set.tests:
        test = tests[loinc]
        appended = record.append(conn, principal, "service_request", patient_id=patient_id,
                                 encounter_id=data.encounter_id, occurred_at=data.occurred_at, detail={
                                     "category": test.category, "code": test.loinc, "display": test.name,
                                     "priority": data.priority, "status": "active",
                                     "clinical_info": data.clinical_info, "order_set": code})
        outcome.services.append(_entry_dict(appended))
    for med in medications:
        med_in = MedicationIn(**med.model_dump(), encounter_id=data.encounter_id)
        appended = record.append(conn, principal, "medication_request", patient_id=patient_id,
                                 encounter_id=data.encounter_id, occurred_at=data.occurred_at,
                                 detail=_medication_detail(med_in, override if med.drug in conflicts else None, code))
        outcome.placed.append(_entry_dict(appended))
    return outcome


def _has_result():
    answered = result.alias("answered")
    answered_entry = entry.alias("answered_entry")
    successor = entry.alias("answered_successor")
    return sa.exists().where(
        answered.c.service_request_id == entry.c.root_id,
        answered_entry.c.id == answered.c.entry_id,
        ~sa.exists().where(successor.c.supersedes == answered_entry.c.id),
    )


def orders_of(conn: Connection, patient_id: uuid.UUID, *, open_only: bool = False,
              limit: int | None = None) -> list[dict]:
    """Current orders (open ones: active and not yet answered by a result); not audited — callers are."""
    where = [service_request.c.status == "active", ~_has_result()] if open_only else []
    return current_rows(conn, service_request, patient_id, *where, limit=limit)


def list_orders(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, open_only: bool = False,
                limit: int | None = None) -> list[dict]:
    require_patient(conn, patient_id)
    rows = orders_of(conn, patient_id, open_only=open_only, limit=limit)
    note_access(conn, principal, "read", patient_id, "service_request", [r["id"] for r in rows])
    return rows


# -- results -----------------------------------------------------------------------------------------


# A critical result is one beyond the catalogue's critical limits, or one its sender flagged so: a laboratory's
# HH or LL, an imaging report's critical finding AA (HL7's "critically abnormal" for a result in words: a tension
# pneumothorax), where A is abnormal only (an unexpected finding the clinician reads in their review, not a call).
CRITICAL_FLAGS = ("HH", "LL", "AA")


def _flag(value: Decimal | str, definition: Any, low: Decimal | None, high: Decimal | None) -> str | None:
    if isinstance(value, Decimal):
        critical_low, critical_high = _decimal(definition.critical_low), _decimal(definition.critical_high)
        if critical_low is not None and value < critical_low:
            return "LL"
        if critical_high is not None and value > critical_high:
            return "HH"
        if low is not None and value < low:
            return "L"
        if high is not None and value > high:
            return "H"
        return "N" if low is not None or high is not None else None
    if definition.choices:
        return "A" if value in definition.abnormal else "N"
    return None


# A result just written: nobody has reviewed it or given it to the patient.
_UNREVIEWED = {"signed_by": None, "signed_at": None, "disclosure_id": None, "disclosed_by": None, "disclosed_at": None}


def record_result(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: ResultIn) -> dict:
    """One analyte's result, with the unit, reference range and abnormal flag; the range and unit come
    from the catalogue unless the lab sends its own. Its time is when it was observed (`occurred_at`), given by
    an analyser whose results arrive after a backlog, else its arrival, which it is recorded at either way."""
    detail, encounter_id, band = _result_detail(conn, patient_id, data, taken_at=data.occurred_at)
    appended = record.append(conn, principal, "result", patient_id=patient_id, encounter_id=encounter_id,
                             detail=detail, occurred_at=data.occurred_at)
    return _entry_dict(appended) | _UNREVIEWED | {"reference_band": band}


def correct_result(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                   data: ResultIn, reason: str) -> dict:
    """The next version of a result with a corrected value (the laboratory misread or mistyped it), read
    against the catalogue and flagged as a new result is. It answers the same order and analyte, waits for
    review again (a sign-off is of the version signed), and the version corrected stays in the history."""
    found = _version_of(conn, patient_id, entry_id, "result")
    if not record.is_current(conn, entry_id):
        raise Conflict("this version of the result has been corrected since: correct the current one",
                       entry_id=str(entry_id))
    before = conn.execute(sa.select(result.c.code, result.c.service_request_id)
                          .where(result.c.entry_id == entry_id)).first()
    if before is None:  # the id of a retraction: the result it withdrew is not there to correct
        raise NotFound(f"no result {entry_id} in force on this patient's chart", entry_id=str(entry_id))
    if data.code != before.code:
        raise Invalid(f"a correction keeps the analyte ({before.code}); record another analyte as its own result",
                      field="code")
    # Judged at the patient's age when the result was first taken, not at the correction's.
    taken_at = conn.execute(sa.select(entry.c.occurred_at).where(entry.c.id == found["root_id"])).scalar_one()
    detail, _, band = _result_detail(conn, patient_id,
                                     data.model_copy(update={"service_request_id": before.service_request_id}),
                                     taken_at=taken_at)
    appended = record.append(conn, principal, "result", patient_id=patient_id, detail=detail, supersedes=entry_id,
                             reason=reason, encounter_id=found["encounter_id"])
    return _entry_dict(appended) | _record_of(conn, appended.root_id) | _UNREVIEWED | {"reference_band": band}


def _result_detail(conn: Connection, patient_id: uuid.UUID, data: ResultIn, *,
                   taken_at: dt.datetime | None = None) -> tuple[dict, uuid.UUID | None, str | None]:
    """A result's detail as the record keeps it (the catalogue's name, unit, range and flag unless the
    sender gave its own; the range the patient's band by age and sex when it was taken, `taken_at`, now
    unless given), the encounter it belongs to, and whom the band it was judged by is for (None: the test's own
    range, or the sender's); refuses what the catalogue cannot take, and a time observed still to come or before
    the order."""
    require_chart(conn, patient_id, data.encounter_id)
    ordered_code = None
    order_root = None
    ordered_at = None
    encounter_id = data.encounter_id
    if data.service_request_id is not None:
        order = conn.execute(
            sa.select(entry.c.root_id, entry.c.encounter_id, service_request.c.code, service_request.c.status,
                      RECORD_OCCURRED_AT.label("ordered_at"))
            .select_from(entry.join(service_request, service_request.c.entry_id == entry.c.id))
            .where(entry.c.patient_id == patient_id, current_clause(),
                   sa.or_(entry.c.id == data.service_request_id, entry.c.root_id == data.service_request_id))
        ).mappings().first()
        if order is None:
            raise Invalid(f"no current order {data.service_request_id} on this patient's chart",
                          field="service_request_id")
        if order["status"] != "active":
            raise Conflict(f"order {data.service_request_id} is {order['status']}", field="service_request_id")
        ordered_code, order_root, ordered_at = order["code"], order["root_id"], order["ordered_at"]
        encounter_id = encounter_id or order["encounter_id"]
    display, definition = catalogue.find_analyte(conn, data.code, ordered_code)
    if data.occurred_at is not None:
        # The time is the analyser's or the laboratory system's clock, which may run a little behind ours, and an
        # HL7 time is to the second where the order's is to the microsecond: a glucose measured at the bedside in
        # the minute it was ordered is not observed before its order.
        refuse_time(conn, data.occurred_at, display=display, ordered_at=ordered_at, field="occurred_at",
                    done="observed", early=CLOCK_SKEW)
    definition = judged_for(conn, patient_id, definition, taken_at)
    if data.unit and definition.unit and data.unit != definition.unit:
        # Asked before the value is judged: a value in another unit is that unit's slip, not an impossible value.
        raise Invalid(f"{display} is reported in {definition.unit} at this facility, got {data.unit}",
                      field="unit")
    value = data.value
    if definition.choices:
        # A figure is read as the words of a choice too: "1" for a malaria smear was kept as the number 1.
        chosen = next((c for c in definition.choices if c.lower() == str(value).strip().lower()), None)
        if chosen is None:
            raise Invalid(f"{display} is reported as one of {definition.choices}, got {str(value)!r}", field="value")
        value = chosen
    elif isinstance(value, str) and (definition.unit or definition.low is not None):
        raise Invalid(_not_a_number(display, definition.unit, value), field="value")
    elif isinstance(value, Decimal):
        _refuse_impossible(display, value, definition, data)
    unit = data.unit or definition.unit
    low = data.reference_low if data.reference_low is not None else _decimal(definition.low)
    high = data.reference_high if data.reference_high is not None else _decimal(definition.high)
    if low is not None and high is not None and low > high:
        raise Invalid("reference low is above reference high", field="reference_low")
    detail = {
        "service_request_id": order_root, "code": data.code, "display": display,
        "value_numeric": value if isinstance(value, Decimal) else None,
        "value_text": value if isinstance(value, str) else None,
        "unit": unit if isinstance(value, Decimal) else None, "reference_low": low, "reference_high": high,
        "flag": _result_flag(data.flag, _flag(value, definition, low, high)), "note": data.note,
    }
    judged_by_band = data.reference_low is None and data.reference_high is None and isinstance(value, Decimal)
    return detail, encounter_id, definition.band if judged_by_band else None


# A figure with a comma in it: 7,4 or 1,200.
_COMMA_FIGURE = re.compile(r"[+-]?\d+,\d+")


def _not_a_number(display: str, unit: str | None, value: str) -> str:
    """The refusal of a figure given as words. One written with a decimal comma (7,4: a keyboard or an analyser
    set to French or Portuguese) is told to write a point, rather than only that it is not a number; it is not
    read as one, since 1,200 may be twelve hundred as well as 1.2."""
    said = f"{display} is a number in {unit or 'its unit'}"
    typed = value.strip()
    if not _COMMA_FIGURE.fullmatch(typed):
        return f"{said}, got {value!r}"
    pointed = typed.replace(",", ".")
    if len(typed.partition(",")[2]) == 3:  # a decimal comma or one between thousands: which, the writer knows
        return (f"{said}, written with a point for its decimals and no comma: {pointed} or "
                f"{typed.replace(',', '')}, not {typed}")
    return f"{said}, written with a point for its decimals, not a comma: {pointed}, not {typed}"


def _refuse_impossible(display: str, value: Decimal, definition: Any, data: ResultIn) -> None:
    """Refuse a figure no specimen can give: below zero where nothing of the analyte's range goes below zero (a
    count, a concentration: a slipped minus sign was flagged critical low as if it were a finding), above 100
    per cent of a share of a whole (a percentage whose range stays within 100: a haematocrit of 410 for 41.0; a
    prothrombin activity's range goes above 100, and so may it), or beyond the test's possible limits in the
    catalogue (platelets of 45000 in 10*3/uL: a count per microlitre, a slip of units, was flagged high)."""
    limits = [limit for limit in (definition.low, definition.high, definition.critical_low, definition.critical_high,
                                  data.reference_low, data.reference_high) if limit is not None]
    if value < 0 and not any(limit < 0 for limit in limits):
        raise Invalid(f"{display} cannot be below zero, got {value}", field="value")
    if value > 100 and (data.unit or definition.unit) == "%" and all(limit <= 100 for limit in limits):
        raise Invalid(f"{display} is a share of 100 per cent: it cannot be above 100, got {value}", field="value")
    unit = definition.unit or "its unit"
    if definition.possible_high is not None and value > Decimal(str(definition.possible_high)):
        raise Invalid(f"{display} of {value} is not possible in {unit}, the unit it is reported in here: no specimen "
                      f"gives more than {definition.possible_high:g} {unit} (was it measured in another unit?)",
                      field="value")
    if definition.possible_low is not None and value < Decimal(str(definition.possible_low)):
        raise Invalid(f"{display} of {value} is not possible in {unit}, the unit it is reported in here: no specimen "
                      f"gives less than {definition.possible_low:g} {unit} (was it measured in another unit?)",
                      field="value")


def judged_for(conn: Connection, patient_id: uuid.UUID, analyte: Any, taken_at: dt.datetime | None = None) -> Any:
    """The analyte with the range and critical limits a result of this patient's is judged by when it was taken
    (`taken_at`, now unless given): its band for their sex and their age on that day of the facility's calendar
    (a child's 5th birthday begins at midnight in Nairobi, 21:00 UTC the evening before), else its own. The
    stored range is this one, so the chart and the trend show the range the result was judged by. The calendar
    is the facility's zone as the substrate answers it, not the fee schedule's copy of it (a facility's billing
    setting is the financial layer's, and a facility need not bill)."""
    if not getattr(analyte, "ranges", None):
        return analyte
    sex, born = conn.execute(sa.select(patient.c.sex, patient.c.birth_date).where(patient.c.id == patient_id)).one()
    day = (taken_at or dt.datetime.now(dt.UTC)).astimezone(facility_timezone_of(conn)).date()
    return analyte.for_patient(sex, born, day)


def _result_flag(sent: str | None, computed: str | None) -> str | None:
    """The sender's flag (a laboratory's, a clinician's) stands, except that this facility's critical limits
    apply whatever it says: a potassium of 7.2 sent as "H" is critical here."""
    if computed in CRITICAL_FLAGS and sent not in CRITICAL_FLAGS:
        return computed
    return sent or computed


def _decimal(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def sign_result(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                comment: str | None) -> dict:
    """The reviewing clinician's sign-off on the current version of a result (the sign-off's author)."""
    _version_of(conn, patient_id, entry_id, "result")
    if not record.is_current(conn, entry_id):
        raise Conflict("this version of the result has been superseded; review the current one",
                       entry_id=str(entry_id))
    signed = conn.execute(
        sa.select(entry.c.author_id, entry.c.recorded_at)
        .select_from(entry.join(result_signoff, result_signoff.c.entry_id == entry.c.id))
        .where(result_signoff.c.result_id == entry_id, current_clause())
    ).first()
    if signed is not None:
        raise Conflict(f"this result was already signed off at {facility_clock_of(conn, signed.recorded_at)}",
                       signed_by=str(signed.author_id))
    record.append(conn, principal, "result_signoff", patient_id=patient_id,
                  detail={"result_id": entry_id, "comment": comment})
    return results_of(conn, patient_id, entry_ids=[entry_id])[0]


def disclose_result(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                    note: str | None) -> dict:
    """The clinician records that they gave the patient this reviewed result in person (the author told
    them). A result the release rules give only in person, with counselling, reaches the patient
    portal from this moment (appliance/layers/patient/release.py); it is recorded once per version."""
    _version_of(conn, patient_id, entry_id, "result")
    if not record.is_current(conn, entry_id):
        raise Conflict("this version of the result has been superseded; give the patient the current one",
                       entry_id=str(entry_id))
    # Two clinicians recording it at once record it once: the second waits here, then finds the first's.
    # (A lock, not a unique index: a disclosure marked entered in error may be recorded again.)
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(
        f"healthos.result_disclosure.{entry_id}", 0))))
    (found,) = results_of(conn, patient_id, entry_ids=[entry_id])
    if found["signed_at"] is None:
        raise Conflict("this result has not been reviewed yet: review and sign it first, then give it to "
                       "the patient", entry_id=str(entry_id))
    if found["disclosed_at"] is not None:
        raise Conflict(f"this result was already recorded as given in person at "
                       f"{facility_clock_of(conn, found['disclosed_at'])}", disclosed_by=str(found["disclosed_by"]))
    record.append(conn, principal, "result_disclosure", patient_id=patient_id,
                  detail={"result_id": entry_id, "note": note})
    return results_of(conn, patient_id, entry_ids=[entry_id])[0]


def withdraw_disclosure(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                        reason: str) -> dict:
    """Mark the record that this result was given in person entered in error (recorded on the wrong
    result, or before the conversation took place): the result leaves the patient portal again until it
    is recorded as given. The mistaken record stays in the history."""
    _version_of(conn, patient_id, entry_id, "result")
    (found,) = results_of(conn, patient_id, entry_ids=[entry_id])
    if found["disclosure_id"] is None:
        raise Conflict("this result is not recorded as given in person", entry_id=str(entry_id))
    record.retract(conn, principal, found["disclosure_id"], reason)
    return results_of(conn, patient_id, entry_ids=[entry_id])[0]


def disclosed_at_of(conn: Connection, patient_id: uuid.UUID,
                    result_ids: list[uuid.UUID]) -> dict[uuid.UUID, dt.datetime]:
    """When each of these results was given to the patient in person, for those that were; one query.
    For a reader holding results from the chart summary, which does not carry it; not audited — the
    caller's read of those results is."""
    if not result_ids:
        return {}
    rows = conn.execute(
        sa.select(result_disclosure.c.result_id, entry.c.recorded_at)
        .select_from(entry.join(result_disclosure, result_disclosure.c.entry_id == entry.c.id))
        .where(entry.c.patient_id == patient_id, result_disclosure.c.result_id.in_(result_ids), current_clause())
    ).all()
    return {result_id: at for result_id, at in rows}


def _latest_signoff() -> sa.Lateral:
    signer = entry.alias("signer")
    return (
        sa.select(signer.c.author_id, signer.c.recorded_at)
        .select_from(signer.join(result_signoff, result_signoff.c.entry_id == signer.c.id))
        .where(result_signoff.c.result_id == entry.c.id)
        .order_by(signer.c.recorded_at.desc()).limit(1).lateral("signoff")
    )


def _disclosure() -> sa.Lateral:
    teller = entry.alias("teller")
    return (
        sa.select(teller.c.id, teller.c.author_id, teller.c.recorded_at)
        .select_from(teller.join(result_disclosure, result_disclosure.c.entry_id == teller.c.id))
        .where(result_disclosure.c.result_id == entry.c.id, current_clause(teller))  # not withdrawn
        .order_by(teller.c.recorded_at.desc()).limit(1).lateral("disclosure")
    )


def results_of(conn: Connection, patient_id: uuid.UUID, *, entry_ids: list[uuid.UUID] | None = None,
               limit: int = 200) -> list[dict]:
    """Current results, the latest observed first (a correction keeps its result's place, as on the chart
    summary), with who signed each off and who gave it to the patient in person; not audited — callers are."""
    signoff, disclosure = _latest_signoff(), _disclosure()
    query = (
        sa.select(*ENTRY_COLUMNS, *_detail_columns(result), signoff.c.author_id.label("signed_by"),
                  signoff.c.recorded_at.label("signed_at"), disclosure.c.id.label("disclosure_id"),
                  disclosure.c.author_id.label("disclosed_by"), disclosure.c.recorded_at.label("disclosed_at"))
        .select_from(entry.join(result, result.c.entry_id == entry.c.id).outerjoin(signoff, sa.true())
                     .outerjoin(disclosure, sa.true()))
        .where(entry.c.patient_id == patient_id, current_clause())
        .order_by(RECORD_OCCURRED_AT.desc()).limit(limit)
    )
    if entry_ids is not None:
        query = query.where(entry.c.id.in_(entry_ids))
    return [dict(r) for r in conn.execute(query).mappings()]


def list_results(conn: Connection, principal: Principal, patient_id: uuid.UUID, *,
                 entry_ids: list[uuid.UUID] | None = None, limit: int = 200) -> list[dict]:
    require_patient(conn, patient_id)
    rows = results_of(conn, patient_id, entry_ids=entry_ids, limit=limit)
    note_access(conn, principal, "read", patient_id, "result", [r["id"] for r in rows])
    return rows


# -- notes -------------------------------------------------------------------------------------------


def write_note(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: NoteIn) -> dict:
    """A clinical note: free text, or a template's fields validated against the facility's template."""
    require_chart(conn, patient_id, data.encounter_id)
    fields: dict[str, Any] = {}
    title = data.title
    if data.template_code:
        template = catalogue.get_template(conn, data.template_code)
        fields = catalogue.validate_note_fields(template, data.fields)
        title = title or template.name
    elif data.fields:
        raise Invalid("structured fields need a template_code naming the template they belong to",
                      field="template_code")
    elif not data.text:
        raise Invalid("a note without a template needs its text", field="text")
    appended = record.append(conn, principal, "note", patient_id=patient_id, encounter_id=data.encounter_id,
                             detail={"template_code": data.template_code, "title": title or "Clinical note",
                                     "fields": fields, "text": data.text})
    return _entry_dict(appended)


def get_note(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID) -> dict:
    """One note as it stands, `entry_id` naming its current version; the read is audited."""
    _version_of(conn, patient_id, entry_id, "note")
    rows = current_rows(conn, note, patient_id, entry.c.id == entry_id)
    if not rows:
        raise Conflict("this version of the note has been corrected or withdrawn since; open the note again from "
                       "the patient's notes", entry_id=str(entry_id))
    note_access(conn, principal, "read", patient_id, "note", [entry_id])
    return rows[0]


def amend_note(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID, data: NoteIn,
               reason: str) -> dict:
    """A corrected version of a note by its author, with the reason: its template's fields validated as when
    it was written (the template stays the note's), the earlier version kept in its history. Another
    clinician does not rewrite someone's note: they write their own."""
    current = get_note(conn, principal, patient_id, entry_id)
    if current["record_author_id"] != principal.account_id:
        raise Conflict("a note is corrected only by its author; write a note of your own to add to it or to "
                       "correct what it says", field="form", entry_id=str(entry_id))
    fields: dict[str, Any] = {}
    if current["template_code"]:
        fields = catalogue.validate_note_fields(catalogue.get_template(conn, current["template_code"]), data.fields)
    elif not data.text:
        raise Invalid("a note without a template needs its text", field="text")
    detail = {"template_code": current["template_code"], "title": data.title or current["title"], "fields": fields,
              "text": data.text}
    return _amend(conn, principal, patient_id, entry_id, "note", detail, reason, encounter_id=current["encounter_id"])


def list_notes(conn: Connection, principal: Principal, patient_id: uuid.UUID, limit: int = 50) -> list[dict]:
    require_patient(conn, patient_id)
    rows = current_rows(conn, note, patient_id, limit=limit)
    note_access(conn, principal, "read", patient_id, "note", [r["id"] for r in rows])
    return rows


def latest_vitals(conn: Connection, patient_id: uuid.UUID) -> dict | None:
    rows = current_rows(conn, vital_signs, patient_id, limit=1)
    return rows[0] if rows else None

