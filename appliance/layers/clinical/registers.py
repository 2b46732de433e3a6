"""What the clinical layer's programme registers share (the TB register, clinical/tuberculosis.py; the ART register,
clinical/hiv.py): their programme file's regimens, each code once and found by code; a number given in sequence from
a counter row; and one patient's registrations taken one at a time."""

from __future__ import annotations

import functools
import uuid
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection


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
