"""What the clinical layer's programme registers share (the TB register, clinical/tuberculosis.py; the ART register,
clinical/hiv.py): their programme file's regimens, each code once and found by code; a number given in sequence from
a counter row; one patient's writes on either register taken one at a time, under one lock; and the two agreeing on a
person's HIV status.

A person enrolled in HIV care here was HIV-positive from the day HIV was confirmed: a TB treatment they started on or
after that day is recorded HIV-positive at its start, or the TB register's HIV-positive row (the cohort the programme
reports for TB/HIV) misses them while the ART register lists them. Each register refuses the write that would make
the two disagree, naming the other's record, whichever is written first; the two sent at the same moment, the second
waits for the first and is checked against it. An antenatal contact after that day records her HIV as known positive
(clinical/antenatal.py): not a new test's result, negative or positive. A refusal that names the other record (HIV
care, the day it was confirmed; a TB case) is a read of it, on the person's access log although the write is refused."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from appliance.layers.clinical.errors import Invalid
from appliance.layers.clinical.models import hiv_care, tb_treatment
from appliance.substrate.principal import Principal
from appliance.substrate.record import current_clause, entry, note_read_told_by_refusal


class RegimenFile(BaseModel):
    """A programme file's `[[regimen]]` list: a subclass names the regimen's model (`regimen: tuple[Regimen, ...]`);
    each code is there once and `by_code` finds it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    regimen: tuple[Any, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> RegimenFile:
        codes = [r.code for r in self.regimen]
        if len(set(codes)) != len(codes):
            raise ValueError("each regimen code once")
        return self

    @functools.cached_property
    def by_code(self) -> dict[str, Any]:
        return {r.code: r for r in self.regimen}


def next_number(conn: Connection, sequence: sa.Table, **key: object) -> int:
    """The next number of the counter row `key` names in `sequence` (its columns: the key and `last_number`), 1 for
    a row not there yet. The row's lock holds a second registration until this transaction ends, so two at once
    never share a number, and a registration refused later in its transaction gives its number back."""
    stmt = (pg_insert(sequence).values(**key, last_number=1)
            .on_conflict_do_update(index_elements=list(key), set_={"last_number": sequence.c.last_number + 1})
            .returning(sequence.c.last_number))
    return conn.execute(stmt).scalar_one()


def lock_patient(conn: Connection, patient_id: uuid.UUID) -> None:
    """One patient's writes on the TB and ART registers one at a time, until the transaction ends: one lock for
    both, so a register's check against its own records (none open) and against the other's (their HIV status
    agreeing) and the write it allows are one step; a TB registration and an HIV enrolment of the same person sent at
    once cannot both pass the check of the other's not yet written."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(f"registers:{patient_id}", 0))))


def _in_force(table: sa.Table, kind: str, patient_id: uuid.UUID) -> sa.Select:
    return (sa.select(table).select_from(entry.join(table, table.c.entry_id == entry.c.id))
            .where(entry.c.kind == kind, entry.c.patient_id == patient_id, entry.c.status != "entered_in_error",
                   current_clause()))


def _hiv_care_of(conn: Connection, patient_id: uuid.UUID) -> sa.Row | None:
    """The person's enrolment in HIV care here in force (its `entry_id` and `diagnosed_on`), or None."""
    return conn.execute(_in_force(hiv_care, "hiv_care", patient_id)
                        .with_only_columns(hiv_care.c.entry_id, hiv_care.c.diagnosed_on)).first()


def hiv_confirmed_on(conn: Connection, patient_id: uuid.UUID) -> dt.date | None:
    """The day HIV was confirmed on the person's enrolment in HIV care here in force (whatever their status in care
    since), or None where they are not enrolled here. Unaudited: a refusal that tells it asks `hiv_confirmed_by`."""
    care = _hiv_care_of(conn, patient_id)
    return None if care is None else care.diagnosed_on


def hiv_confirmed_by(conn: Connection, principal: Principal, patient_id: uuid.UUID, day: dt.date, *,
                     refusing: str) -> dt.date | None:
    """The day HIV was confirmed on the person's enrolment in HIV care here in force if it is on or before `day`, for
    the caller to refuse the write `refusing` names (an entry kind) and tell why; else None. Telling it is a read of
    the enrolment: noted on the person's access log although the write is refused
    (`record.note_read_told_by_refusal`)."""
    care = _hiv_care_of(conn, patient_id)
    if care is None or care.diagnosed_on > day:
        return None
    note_read_told_by_refusal(conn, principal, patient_id, "hiv_care", [care.entry_id], refused=refusing)
    return care.diagnosed_on


def refuse_tb_hiv_status_against_hiv_care(conn: Connection, principal: Principal, patient_id: uuid.UUID,
                                          started_on: dt.date, hiv_status: str) -> None:
    """Refuse (422 on hiv_status) a TB treatment starting on or after the day HIV was confirmed on this person's
    enrolment in HIV care here (whatever their status in care since) recorded other than HIV-positive. Takes
    `lock_patient`: an enrolment sent at the same moment is checked after this write, against it."""
    lock_patient(conn, patient_id)
    if hiv_status == "positive":
        return
    confirmed = hiv_confirmed_by(conn, principal, patient_id, started_on, refusing="tb_treatment")
    if confirmed is not None:
        raise Invalid(f"this person is enrolled in HIV care here, HIV confirmed on {confirmed.isoformat()}, before "
                      f"this treatment started on {started_on.isoformat()}: their HIV status at its start is "
                      "positive", field="hiv_status")


def refuse_hiv_diagnosis_against_tb_register(conn: Connection, principal: Principal, patient_id: uuid.UUID,
                                             diagnosed_on: dt.date) -> None:
    """Refuse (422 on diagnosed_on) an enrolment in HIV care confirming HIV on or before the start of a TB treatment
    of this facility's register that records the person other than HIV-positive at that start. Takes
    `lock_patient`: a TB registration sent at the same moment is checked after this write, against it. The refusal
    tells the treatment: a read of it, noted on the person's access log although the enrolment is refused."""
    lock_patient(conn, patient_id)
    disagreeing = conn.execute(
        _in_force(tb_treatment, "tb_treatment", patient_id)
        .with_only_columns(tb_treatment.c.entry_id, tb_treatment.c.register_number, tb_treatment.c.started_on,
                           tb_treatment.c.hiv_status)
        .where(tb_treatment.c.started_on >= diagnosed_on, tb_treatment.c.hiv_status != "positive")
        .order_by(tb_treatment.c.started_on)).first()
    if disagreeing is not None:
        note_read_told_by_refusal(conn, principal, patient_id, "tb_treatment", [disagreeing.entry_id],
                                  refused="hiv_care")
        raise Invalid(f"the TB register records this person's HIV status as {disagreeing.hiv_status} at the start of "
                      f"treatment {disagreeing.register_number} on {disagreeing.started_on.isoformat()}, after HIV "
                      "was confirmed: correct the TB registration's HIV status to positive first, or the day HIV "
                      "was confirmed if it is wrong", field="diagnosed_on")
