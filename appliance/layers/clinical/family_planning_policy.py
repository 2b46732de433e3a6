"""The family planning programme as data and where a client stands in it: the clinical layer's reading of
`policies/family_planning.toml` (each contraceptive method's unit, couple-years of protection per unit, class,
how long a unit lasts or when a device is replaced, which sex it is given to) and of a client's visits.

`standing` is a pure function — the visits in force, a day, the programme — with no database and no clock, so
the chart's "Family planning" tab, the list of clients due, the recording of a visit and the national count
judge a visit one way:

- the **current method** is the method of her latest visit that provided one, unless a removal of it came
  after; a device (implant, IUD) stays **in place** from its insertion to its removal, whatever she is given
  meanwhile (condoms with an implant);
- her next re-supply or injection is **due** `each_unit_lasts` times the quantity after the visit that gave
  it, a device's replacement `replace_after` after its insertion; the list of clients due names her from
  `due_soon` before that day, **overdue** after it, until `trace_overdue_for` has passed.

Couple-years of protection are kept as exact fractions (`cyp`): "15 cycles per CYP" is 1/15 of a CYP per cycle,
which no decimal holds, so a sum of visits is exact and rounded once, where it is reported (`tenths`).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from appliance.layers.clinical.immunization_schedule import Span, read_policy

MethodClass = Literal["short_acting", "long_acting", "permanent"]
CLASS_WORDS = {"short_acting": "short-acting", "long_acting": "long-acting", "permanent": "permanent"}
Unit = Literal["cycle", "dose", "device", "piece", "procedure", "user"]
CLIENT_TYPES = {"new_acceptor": "new acceptor (new to the programme)", "new_to_method": "new to this method",
                "continuing": "continuing user", "restart": "restarting after a break"}
REMOVAL_REASONS = {"wants_pregnancy": "she wants to become pregnant", "side_effects": "side effects",
                   "expired": "due for replacement", "switching": "switching to another method",
                   "medical": "a medical reason", "other": "another reason (see the note)"}


def _span(value: Any) -> Span | None:
    return None if value is None else value if isinstance(value, Span) else Span.parse(value)


class Method(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, populate_by_name=True)

    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,29}$")
    name: str = Field(min_length=1, max_length=100)
    method_class: MethodClass = Field(alias="class")
    unit: Unit
    cyp_per_unit: Fraction
    max_quantity: int = Field(ge=1, le=1000)
    each_unit_lasts: Span | None = None
    replace_after: Span | None = None
    removable: bool = False
    sex: Literal["female", "male"] | None = None

    @field_validator("cyp_per_unit", mode="before")
    @classmethod
    def _factor(cls, value: Any) -> Fraction:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError("cyp_per_unit must be a number (\"2.5\") or a fraction (\"1/15\")")
        try:
            factor = Fraction(str(value).strip())
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"cyp_per_unit {value!r} is not a number (\"2.5\") or a fraction (\"1/15\")") from None
        if factor <= 0 or factor > 20:
            raise ValueError(f"cyp_per_unit {value!r} must be more than 0 and at most 20 years")
        return factor

    @field_validator("each_unit_lasts", "replace_after", mode="before")
    @classmethod
    def _spans(cls, value: Any) -> Span | None:
        return _span(value)

    @model_validator(mode="after")
    def _a_device_is_removable_and_replaced(self) -> Method:
        if self.removable and self.replace_after is None:
            raise ValueError("a removable device needs replace_after, its labelled duration")
        if self.replace_after is not None and self.each_unit_lasts is not None:
            raise ValueError("give each_unit_lasts (a re-supply) or replace_after (a device), not both")
        if self.method_class == "permanent" and (self.each_unit_lasts or self.replace_after or self.removable):
            raise ValueError("a permanent method is not re-supplied, replaced or removed")
        return self

    @property
    def units(self) -> str:
        return f"{self.unit}s"

    def quantity_words(self, quantity: int) -> str:
        return f"{quantity} {self.unit if quantity == 1 else self.units}"


class Programme(BaseModel):
    """`policies/family_planning.toml`: the methods, and how early and how long a client due is listed."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    due_soon: Span
    trace_overdue_for: Span
    method: list[Method] = Field(min_length=1, max_length=60)

    @field_validator("due_soon", "trace_overdue_for", mode="before")
    @classmethod
    def _spans(cls, value: Any) -> Span:
        return _span(value)

    @model_validator(mode="after")
    def _codes_unique(self) -> Programme:
        seen: set[str] = set()
        for m in self.method:
            if m.code in seen:
                raise ValueError(f"method {m.code} is listed twice")
            seen.add(m.code)
        return self

    @functools.cached_property
    def by_code(self) -> dict[str, Method]:
        return {m.code: m for m in self.method}


class ProgrammeError(ValueError):
    """The family planning file cannot be used; the message names the file, the method and the field."""


@functools.cache
def load_programme(path: Path) -> Programme:
    return read_policy(path, Programme, ProgrammeError, "method")


# -- couple-years of protection ----------------------------------------------------------------------


def cyp(method: Method, quantity: int) -> Fraction:
    """The couple-years of protection `quantity` units of `method` count for, exactly."""
    return method.cyp_per_unit * quantity


def tenths(value: Fraction) -> int:
    """`value` in tenths, rounded half up: how a CYP is reported where only whole numbers travel (DHIS2's
    data values, the disclosure rule's cells): 13.25 CYP is 133."""
    scaled = value * 10
    return int(scaled) + (1 if scaled - int(scaled) >= Fraction(1, 2) else 0)


# -- where a client stands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Visit:
    """A family planning entry in force as the standing reads it (the service builds these from the record)."""

    entry_id: Any
    method: str
    service: str  # provided, removal
    day: dt.date
    quantity: int | None = None


@dataclass(frozen=True)
class Standing:
    current: Visit | None  # the visit that gave her current method
    in_place: tuple[Visit, ...]  # devices inserted and not removed, oldest first
    due_on: dt.date | None  # her next re-supply, injection or replacement
    due_for: str | None  # "resupply" or "replacement"
    state: Literal["not_yet_due", "due", "overdue", "lost"] | None


def due_after(method: Method, visit: Visit) -> tuple[dt.date | None, str | None]:
    """When the client given `visit` is due back for this method, and for what."""
    if method.each_unit_lasts is not None:
        days = (method.each_unit_lasts.after(visit.day) - visit.day).days * (visit.quantity or 1)
        return visit.day + dt.timedelta(days=days), "resupply"
    if method.replace_after is not None:
        return method.replace_after.after(visit.day), "replacement"
    return None, None


def standing(programme: Programme, visits: list[Visit], today: dt.date) -> Standing:
    """Her current method, the devices in place and when she is next due, from her visits in force (any order)."""
    ordered = sorted(visits, key=lambda v: v.day)
    in_place: list[Visit] = []
    current: Visit | None = None
    for visit in ordered:
        method = programme.by_code.get(visit.method)
        if visit.service == "removal":
            in_place = [v for v in in_place if v.method != visit.method]
            if current is not None and current.method == visit.method:
                current = None
            continue
        current = visit
        if method is not None and method.removable:
            in_place.append(visit)
    if current is None and in_place:  # a device still in place after another method was stopped
        current = in_place[-1]
    method = programme.by_code.get(current.method) if current else None
    due_on, due_for = due_after(method, current) if method and current else (None, None)
    state = None
    if due_on is not None:
        if today > due_on:
            state = "lost" if today >= programme.trace_overdue_for.after(due_on) else "overdue"
        else:
            soon = dt.timedelta(days=(programme.due_soon.after(due_on) - due_on).days)
            state = "due" if today >= due_on - soon else "not_yet_due"
    return Standing(current, tuple(in_place), due_on, due_for, state)
