"""What the clinical layer's programme registers share (the TB register, clinical/tuberculosis.py; the ART register,
clinical/hiv.py): their programme file's regimens, each code once and found by code; a number given in sequence from
a counter row; one patient's registrations taken one at a time; and the two agreeing on a person's HIV status.

A person enrolled in HIV care here was HIV-positive from the day HIV was confirmed: a TB treatment they started on or
after that day is recorded HIV-positive at its start, or the TB register's HIV-positive row (the cohort the programme
reports for TB/HIV) misses them while the ART register lists them. Each register refuses the write that would make
the two disagree, naming the other's record, whichever is written first. An antenatal contact after that day records
her HIV as known positive (clinical/antenatal.py): not a new test's result, negative or positive."""

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
from appliance.substrate.record import current_clause, entry


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


def lock_patient(conn: Connection, register: str, patient_id: uuid.UUID) -> None:
    """One patient's registrations in `register` one at a time, until the transaction ends: the check that none is
    open and the write it allows are then one step."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(f"{register}:{patient_id}", 0))))


def _in_force(table: sa.Table, kind: str, patient_id: uuid.UUID) -> sa.Select:
    return (sa.select(table).select_from(entry.join(table, table.c.entry_id == entry.c.id))
            .where(entry.c.kind == kind, entry.c.patient_id == patient_id, entry.c.status != "entered_in_error",
                   current_clause()))


def hiv_confirmed_on(conn: Connection, patient_id: uuid.UUID) -> dt.date | None:
    """The day HIV was confirmed on the person's enrolment in HIV care here in force (whatever their status in care
    since), or None where they are not enrolled here."""
    return conn.execute(_in_force(hiv_care, "hiv_care", patient_id).with_only_columns(hiv_care.c.diagnosed_on)).scalar()


def refuse_tb_hiv_status_against_hiv_care(conn: Connection, patient_id: uuid.UUID, started_on: dt.date,
                                          hiv_status: str) -> None:
    """Refuse (422 on hiv_status) a TB treatment starting on or after the day HIV was confirmed on this person's
    enrolment in HIV care here (whatever their status in care since) recorded other than HIV-positive."""
    if hiv_status == "positive":
        return
    confirmed = hiv_confirmed_on(conn, patient_id)
    if confirmed is not None and confirmed <= started_on:
        raise Invalid(f"this person is enrolled in HIV care here, HIV confirmed on {confirmed.isoformat()}, before "
                      f"this treatment started on {started_on.isoformat()}: their HIV status at its start is "
                      "positive", field="hiv_status")


def refuse_hiv_diagnosis_against_tb_register(conn: Connection, patient_id: uuid.UUID, diagnosed_on: dt.date) -> None:
    """Refuse (422 on diagnosed_on) an enrolment in HIV care confirming HIV on or before the start of a TB treatment
    of this facility's register that records the person other than HIV-positive at that start."""
    disagreeing = conn.execute(
        _in_force(tb_treatment, "tb_treatment", patient_id)
        .with_only_columns(tb_treatment.c.register_number, tb_treatment.c.started_on, tb_treatment.c.hiv_status)
        .where(tb_treatment.c.started_on >= diagnosed_on, tb_treatment.c.hiv_status != "positive")
        .order_by(tb_treatment.c.started_on)).first()
    if disagreeing is not None:
        raise Invalid(f"the TB register records this person's HIV status as {disagreeing.hiv_status} at the start of "
                      f"treatment {disagreeing.register_number} on {disagreeing.started_on.isoformat()}, after HIV "
                      "was confirmed: correct the TB registration's HIV status to positive first, or the day HIV "
                      "was confirmed if it is wrong", field="diagnosed_on")
