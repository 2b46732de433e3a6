"""Operations services: wards, beds and clinics in line with the tenant file; the bed board; the
helpers the ADT, ED and scheduling services share.

Every function takes the caller's tenant transaction and the principal acting; none commits (the
request boundary does). Patient data read here (who lies in which bed) is noted on the audit seam.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from appliance.layers.operations.errors import Conflict, Invalid, NotFound
from appliance.layers.operations.models import (
    BED_STATES,
    INPATIENT_WARD_KINDS,
    bed,
    clinic,
    inpatient_stay,
    kpi_target,
    ward,
)
from appliance.substrate.principal import Principal
from appliance.substrate.record import note_access
from appliance.substrate.tenancy import facility_day, register_config_applier
from appliance.substrate.tenant_config import TenantConfig

log = structlog.get_logger(__name__)

# The clinical layer's patient projection, read (never written) by SQL: layers meet in the record and
# its tables, not in each other's modules.
patient = sa.table("patient", sa.column("id", sa.Uuid), sa.column("mrn", sa.Text),
                   sa.column("family_name", sa.Text), sa.column("given_names", sa.Text),
                   sa.column("birth_date", sa.Date), sa.column("sex", sa.Text))
encounter = sa.table("encounter", sa.column("id", sa.Uuid), sa.column("patient_id", sa.Uuid),
                     sa.column("encounter_class", sa.Text), sa.column("status", sa.Text),
                     sa.column("ward_code", sa.Text), sa.column("started_at", sa.DateTime(timezone=True)),
                     sa.column("ended_at", sa.DateTime(timezone=True)))

# A time typed by a person may run a little ahead of the server's clock; more than this is a mistake.
CLOCK_SKEW = dt.timedelta(minutes=5)


@register_config_applier
def sync_wards_and_beds(conn: Connection, config: TenantConfig) -> None:
    """Upsert the file's wards and beds; ones no longer listed are deactivated, never deleted,
    because admissions and history point at them."""
    ward_codes = [w.code for w in config.wards]
    for ward_config in config.wards:
        conn.execute(
            postgresql.insert(ward)
            .values(code=ward_config.code, name=ward_config.name, kind=ward_config.kind, active=True)
            .on_conflict_do_update(
                index_elements=[ward.c.code],
                set_={"name": ward_config.name, "kind": ward_config.kind, "active": True},
            )
        )
        codes = ward_config.bed_codes()
        if codes:
            statement = postgresql.insert(bed).values(
                [{"code": code, "ward_code": ward_config.code, "active": True} for code in codes]
            )
            conn.execute(statement.on_conflict_do_update(
                index_elements=[bed.c.code],
                set_={"ward_code": statement.excluded.ward_code, "active": True},
            ))
        conn.execute(
            sa.update(bed)
            .where(bed.c.ward_code == ward_config.code, bed.c.code.not_in(codes or [""]), bed.c.active)
            .values(active=False)
        )
    conn.execute(sa.update(ward).where(ward.c.code.not_in(ward_codes or [""]), ward.c.active).values(active=False))
    conn.execute(sa.update(bed).where(bed.c.ward_code.not_in(ward_codes or [""]), bed.c.active).values(active=False))


@register_config_applier
def sync_clinics_and_targets(conn: Connection, config: TenantConfig) -> None:
    """Clinics (with their weekly sessions) and KPI targets from the file. A clinic no longer listed is
    deactivated: its slots and appointments stay. Slots are cut from the sessions when asked for
    (scheduling.ensure_slots), so a changed session applies to days not yet generated."""
    codes = [c.code for c in config.clinics]
    for item in config.clinics:
        values = {"name": item.name, "slot_minutes": item.slot_minutes, "timezone": config.timezone,
                  "sessions": [s.model_dump(mode="json") for s in item.sessions], "active": True}
        conn.execute(postgresql.insert(clinic).values(code=item.code, **values)
                     .on_conflict_do_update(index_elements=[clinic.c.code], set_=values))
    conn.execute(sa.update(clinic).where(clinic.c.code.not_in(codes or [""]), clinic.c.active).values(active=False))
    conn.execute(sa.delete(kpi_target))
    if config.kpi_targets:
        conn.execute(kpi_target.insert(), [{"kpi_id": k, "target": v} for k, v in config.kpi_targets.items()])


# -- shared helpers ----------------------------------------------------------------------------------


def moment(conn: Connection, at: dt.datetime | None, *, field: str = "at") -> dt.datetime:
    """When an act happened: now (the database's clock) unless the person says when; never the future."""
    now = conn.execute(sa.select(sa.func.now())).scalar_one()
    if at is None:
        return now
    if at.tzinfo is None:
        raise Invalid("give the time with its time zone (e.g. 2026-11-26T09:30+03:00)", field=field)
    if at > now + CLOCK_SKEW:
        raise Invalid("that time is in the future", field=field)
    return at


def require_patient(conn: Connection, patient_id: uuid.UUID) -> None:
    if conn.execute(sa.select(patient.c.id).where(patient.c.id == patient_id)).first() is None:
        raise NotFound(f"no patient {patient_id} at this facility", patient_id=str(patient_id))


# A boy lies on the maternity ward beside his mother in his first four weeks (the neonatal period).
NEWBORN_DAYS = 28


def maternity_may_take(sex: str | None, birth_date: dt.date | None, on: dt.date | None) -> bool:
    """Whether a maternity ward may take this patient: anyone but a man past the neonatal period."""
    newborn = birth_date is not None and on is not None and (on - birth_date).days < NEWBORN_DAYS
    return sex != "male" or newborn


def inpatient_ward(conn: Connection, ward_code: str, field: str = "ward_code", *,
                   patient_id: uuid.UUID | None = None, at: dt.datetime | None = None) -> dict:
    """The active inpatient ward `ward_code`; with `patient_id`, one that may take that patient at `at` (now if not
    given): a maternity ward takes women and newborns, so a man placed there by a slip of the bed board is refused.
    A newborn's age is counted in the facility's days: after 21:00 UTC a Nairobi facility is on the next day."""
    row = conn.execute(sa.select(ward.c.code, ward.c.name, ward.c.kind)
                       .where(ward.c.code == ward_code, ward.c.active)).mappings().first()
    if row is None:
        raise Invalid(f"there is no ward {ward_code} at this facility", field=field)
    if row["kind"] not in INPATIENT_WARD_KINDS:
        raise Invalid(f"{row['name']} is a {row['kind']} area, not an inpatient ward", field=field)
    if row["kind"] == "maternity" and patient_id is not None:
        moment_of = sa.func.now() if at is None else sa.literal(at, sa.DateTime(timezone=True))
        found = conn.execute(sa.select(patient.c.sex, patient.c.birth_date, facility_day(moment_of).label("on"))
                             .where(patient.c.id == patient_id)).first()
        if found is not None and not maternity_may_take(found.sex, found.birth_date, found.on):
            raise Invalid(f"{row['name']} is a maternity ward, for women and newborns, and this patient is "
                          "registered as male: choose another ward (or correct the registration)", field=field)
    return dict(row)


def claim_bed(conn: Connection, ward_code: str, bed_code: str | None, field: str = "bed_code") -> str:
    """Lock and return a bed to place a patient in: the one named (which must be available) or the
    first available one of the ward. Row locks serialise two placements of one bed: the second waits
    for the first, then sees the bed occupied (READ COMMITTED re-reads the locked row); `SKIP LOCKED`
    lets a request for "any bed" take the next free one instead of queueing behind the first."""
    if bed_code:
        row = conn.execute(sa.select(bed.c.code, bed.c.state).where(
            bed.c.code == bed_code, bed.c.ward_code == ward_code, bed.c.active).with_for_update()).first()
        if row is None:
            raise Invalid(f"there is no bed {bed_code} in ward {ward_code}", field=field)
        if row.state != "available":
            raise Conflict(f"bed {bed_code} is {row.state}; choose an available bed", field=field,
                           bed_state=row.state)
        return row.code
    code = conn.execute(sa.select(bed.c.code).where(
        bed.c.ward_code == ward_code, bed.c.active, bed.c.state == "available")
        .order_by(bed.c.code).limit(1).with_for_update(skip_locked=True)).scalar()
    if code is None:
        raise Conflict(f"no bed is available in ward {ward_code}", field="ward_code")
    return code


def set_bed_state(conn: Connection, principal: Principal, bed_code: str, state: str) -> dict:
    """A bed manager marks a bed cleaned, blocks or unblocks it. Occupancy is changed only by
    admitting, transferring and discharging, so an occupied bed cannot be emptied by hand."""
    if state not in BED_STATES or state == "occupied":
        raise Invalid("a bed can be marked available, cleaning or blocked (occupied comes from an admission)",
                      field="state")
    row = conn.execute(sa.select(bed.c.code, bed.c.state, bed.c.ward_code)
                       .where(bed.c.code == bed_code, bed.c.active).with_for_update()).first()
    if row is None:
        raise NotFound(f"no bed {bed_code} at this facility", bed_code=bed_code)
    if row.state == "occupied":
        raise Conflict(f"bed {bed_code} is occupied: transfer or discharge the patient first", field="state")
    conn.execute(sa.update(bed).where(bed.c.code == bed_code).values(state=state))
    log.info("bed_state_changed", bed=bed_code, from_state=row.state, to_state=state,
             account=str(principal.account_id))
    return {"code": bed_code, "ward_code": row.ward_code, "state": state}


# -- reading the wards -------------------------------------------------------------------------------


def ward_census(conn: Connection) -> list[dict]:
    """Each active ward with its bed counts by state."""
    counts = {state: sa.func.count(bed.c.code).filter(bed.c.state == state).label(state) for state in BED_STATES}
    rows = conn.execute(
        sa.select(ward.c.code, ward.c.name, ward.c.kind, sa.func.count(bed.c.code).label("beds"), *counts.values())
        .select_from(ward.outerjoin(bed, sa.and_(bed.c.ward_code == ward.c.code, bed.c.active)))
        .where(ward.c.active)
        .group_by(ward.c.code)
        .order_by(ward.c.code)
    ).mappings()
    return [dict(row) for row in rows]


def bed_board(conn: Connection, principal: Principal, ward_code: str | None = None) -> list[dict]:
    """Wards with each bed, its state and, for an occupied bed, who is in it since when and the day they are
    expected home: the bed board. Naming the occupants reads patient data, so each occupant's read is audited."""
    wards = ward_census(conn)
    if ward_code is not None:
        wards = [w for w in wards if w["code"] == ward_code]
        if not wards:
            raise NotFound(f"no ward {ward_code} at this facility", ward_code=ward_code)
    query = (
        sa.select(bed.c.code, bed.c.ward_code, bed.c.state, inpatient_stay.c.id.label("stay_id"),
                  inpatient_stay.c.patient_id, inpatient_stay.c.encounter_id, inpatient_stay.c.admitted_at,
                  inpatient_stay.c.source, inpatient_stay.c.expected_discharge_on,
                  inpatient_stay.c.expected_discharge_entry_id, patient.c.mrn,
                  patient.c.family_name, patient.c.given_names, patient.c.birth_date, patient.c.sex)
        .select_from(bed.outerjoin(inpatient_stay, sa.and_(inpatient_stay.c.bed_code == bed.c.code,
                                                           inpatient_stay.c.discharged_at.is_(None)))
                     .outerjoin(patient, patient.c.id == inpatient_stay.c.patient_id))
        .where(bed.c.active)
        .order_by(bed.c.ward_code, bed.c.code)
    )
    if ward_code is not None:
        query = query.where(bed.c.ward_code == ward_code)
    beds: dict[str, list[dict]] = defaultdict(list)
    occupants: list[tuple[uuid.UUID, uuid.UUID]] = []
    for row in conn.execute(query).mappings():
        item = dict(row)
        beds[item["ward_code"]].append(item)
        if item["patient_id"] is not None:
            occupants.append((item["patient_id"], item["stay_id"]))
    for patient_id, stay_id in occupants:
        note_access(conn, principal, "read", patient_id, "admission", (stay_id,))
    return [{**w, "bed_list": beds.get(w["code"], [])} for w in wards]
