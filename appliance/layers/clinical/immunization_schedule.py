"""The childhood immunization schedule and where a child stands on it: the clinical layer's reading of the
doses in the record against `policies/immunization.toml` (each vaccine's doses: minimum age, recommended
age, minimum interval from the dose before, an age after which it is no longer given; and its CVX code, the one
table the FHIR facade and the HL7 v2 feed code vaccines by).

`evaluate` is a pure function — a birth date, the doses recorded, a day, the schedule — with no database and
no clock, so the patient's Immunizations page, the list of children due or overdue, the recording of a dose
(which says at once whether it counts), and whatever reads the record for the national programme or the
patient's portal all judge a dose one way. Each dose of each vaccine is, on the day asked:

- **given**: a completed dose of that number that counts (given at or after the minimum age, and at least the
  minimum interval after the counted dose before it, or, where the schedule gives none, on a later day);
- **due** from the day the child may have it until its recommended day; **overdue** after that;
- **not yet due**: too young, or the dose before it not given yet (the interval runs from that one);
- **no longer given**: missing at the vaccine's age limit.

A dose given too early is recorded (the child did get it) and listed against its dose, "too early: does not
count", with the reason; the dose stays due. So is a dose from a lot past its expiry date (given after the day
the lot's expiry names), "from an expired lot: does not count": the ACIP's *General Best Practice Guidelines for
Immunization* count a dose of expired vaccine as not valid, to be repeated. A dose recorded without a number (a
campaign or an extra dose) counts for no dose of the series. An age in months is counted as the rest of the
appliance counts it (appliance/substrate/age.py): a child born on 31 January is one month old on 1 March.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import re
import tomllib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from appliance.substrate.age import months_on
from appliance.substrate.problems import validator_message

DoseState = Literal["given", "due", "overdue", "not_yet_due", "no_longer_given"]
_Model = TypeVar("_Model", bound=BaseModel)
STATE_WORDS = {"given": "Given", "due": "Due", "overdue": "Overdue", "not_yet_due": "Not yet due",
               "no_longer_given": "No longer given"}
_UNITS = {"d": "day", "w": "week", "m": "month", "y": "year"}
_APPROX_DAYS = {"d": 1.0, "w": 7.0, "m": 30.44, "y": 365.25}  # only to order two ages when checking the file
_AGE = re.compile(r"^(\d{1,3})([dwmy])$")


@dataclass(frozen=True)
class Span:
    """An age or an interval as the schedule writes it: "6w", "9m", "5y", "0d"."""

    amount: int
    unit: str  # d, w, m, y

    @classmethod
    def parse(cls, text: str) -> Span:
        found = _AGE.match(text.strip()) if isinstance(text, str) else None
        if found is None:
            raise ValueError(f"{text!r} is not an age: write a number and a unit, d, w, m or y (\"6w\", \"9m\")")
        return cls(int(found.group(1)), found.group(2))

    def after(self, start: dt.date) -> dt.date:
        """The first day on which this much time has passed since `start`: for months and years, the day a
        child born on `start` is that many whole months old (`substrate.age.months_on`)."""
        if self.unit in ("d", "w"):
            return start + dt.timedelta(days=self.amount * (7 if self.unit == "w" else 1))
        months = self.amount * (12 if self.unit == "y" else 1)
        year, month = divmod(start.month - 1 + months, 12)
        year, month = start.year + year, month + 1
        if start.day <= calendar.monthrange(year, month)[1]:
            return dt.date(year, month, start.day)
        # No such day that month (born 31 January, one month on): the child is that old on the 1st of the next.
        return dt.date(year + month // 12, month % 12 + 1, 1)

    @property
    def approx_days(self) -> float:
        return self.amount * _APPROX_DAYS[self.unit]

    def words(self) -> str:
        if self.amount == 0:
            return "birth"
        return f"{self.amount} {_UNITS[self.unit]}{'' if self.amount == 1 else 's'}"

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


def _span(value: Any) -> Span:
    if isinstance(value, Span):
        return value
    return Span.parse(value)


class DoseRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    min_age: Span
    recommended_age: Span
    min_interval: Span | None = None

    @field_validator("min_age", "recommended_age", "min_interval", mode="before")
    @classmethod
    def _spans(cls, value: Any) -> Span | None:
        return None if value is None else _span(value)

    @model_validator(mode="after")
    def _recommended_not_before_minimum(self) -> DoseRule:
        if self.recommended_age.approx_days < self.min_age.approx_days:
            raise ValueError(f"recommended_age {self.recommended_age} is younger than min_age {self.min_age}")
        return self


class Vaccine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,19}$")
    name: str = Field(min_length=1, max_length=100)
    antigen: str = Field(min_length=1, max_length=200)
    # CDC's CVX code and its short description: what the FHIR facade and the HL7 v2 feed code the vaccine in.
    cvx: str | None = Field(default=None, pattern=r"^[0-9]{1,4}$")
    cvx_name: str | None = Field(default=None, min_length=1, max_length=200)
    no_later_than: Span | None = None
    dose: list[DoseRule] = Field(min_length=1, max_length=10)

    @field_validator("no_later_than", mode="before")
    @classmethod
    def _limit(cls, value: Any) -> Span | None:
        return None if value is None else _span(value)

    @model_validator(mode="after")
    def _cvx_with_its_name(self) -> Vaccine:
        if (self.cvx is None) != (self.cvx_name is None):
            raise ValueError("cvx and cvx_name go together: the CVX code and CVX's short description of it")
        return self

    @model_validator(mode="after")
    def _doses_in_order(self) -> Vaccine:
        if self.dose[0].min_interval is not None:
            raise ValueError("dose 1 has a min_interval, but there is no dose before it")
        for number, rule in enumerate(self.dose[1:], 2):
            before = self.dose[number - 2]
            if rule.recommended_age.approx_days < before.recommended_age.approx_days:
                raise ValueError(f"dose {number}'s recommended_age {rule.recommended_age} is younger than dose "
                                 f"{number - 1}'s {before.recommended_age}")
        if self.no_later_than is not None:
            for number, rule in enumerate(self.dose, 1):
                if self.no_later_than.approx_days <= rule.recommended_age.approx_days:
                    raise ValueError(f"no_later_than {self.no_later_than} is not after dose {number}'s "
                                     f"recommended_age {rule.recommended_age}")
        return self

    @property
    def doses(self) -> int:
        return len(self.dose)


class Schedule(BaseModel):
    """`policies/immunization.toml`: the vaccines of the national schedule, and how old a child may be and still
    be on the list of children due or overdue."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    trace_until: Span
    vaccine: list[Vaccine] = Field(min_length=1, max_length=40)

    @field_validator("trace_until", mode="before")
    @classmethod
    def _trace(cls, value: Any) -> Span:
        return _span(value)

    @model_validator(mode="after")
    def _codes_unique(self) -> Schedule:
        seen: set[str] = set()
        cvx: dict[str, str] = {}
        for v in self.vaccine:
            if v.code in seen:
                raise ValueError(f"vaccine {v.code} is listed twice")
            seen.add(v.code)
            if v.cvx is None:
                continue
            # A dose coded in CVX (a FHIR search, an HL7 feed) must name one vaccine of the schedule; "08" and "8"
            # are one code.
            number = str(int(v.cvx))
            if number in cvx:
                raise ValueError(f"vaccine {v.code} has cvx {v.cvx}, which vaccine {cvx[number]} has too")
            cvx[number] = v.code
        return self

    @functools.cached_property
    def by_code(self) -> dict[str, Vaccine]:
        return {v.code: v for v in self.vaccine}

    @functools.cached_property
    def _by_cvx_number(self) -> dict[str, Vaccine]:
        return {str(int(v.cvx)): v for v in self.vaccine if v.cvx is not None}

    def vaccine_of_cvx(self, code: str) -> Vaccine | None:
        """The schedule's vaccine with this CVX code (written with or without its leading zero), if any."""
        code = code.strip()
        return self._by_cvx_number.get(str(int(code))) if code.isascii() and code.isdigit() and len(code) <= 4 else None


class ScheduleError(ValueError):
    """The schedule file cannot be used; the message names the file, the vaccine and the field."""


def place_in_file(loc: tuple, raw: dict, items: str = "vaccine") -> str:
    """An error's place in a policy file in a ministry's words: "vaccine PCV, dose 2, min_interval". `items` names
    the file's list of coded entries ("vaccine" here, "method" in policies/family_planning.toml), each said by its
    code."""
    listed = raw.get(items) if isinstance(raw.get(items), list) else []
    words: list[str] = []
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if part == items and parts and isinstance(parts[0], int):
            index = parts.pop(0)
            code = listed[index].get("code") if index < len(listed) and isinstance(listed[index], dict) else None
            words.append(f"{items} {code}" if code else f"{items} number {index + 1}")
        elif part == "dose" and parts and isinstance(parts[0], int):
            words.append(f"dose {parts.pop(0) + 1}")
        elif isinstance(part, str) and not part.startswith("function-"):
            words.append(part)
    return ", ".join(words) or "the file"


def read_policy(path: Path, model: type[_Model], error: type[ValueError], items: str) -> _Model:
    """A policy file read into `model`, or `error` naming the file and, for each fault, its place (`place_in_file`)
    and what is wrong: the sentence a ministry's broken edit stops the start with."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise error(f"{path}: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(f"{path}: " + "; ".join(
            f"{place_in_file(e['loc'], raw, items)}: {validator_message(e['msg'])}" for e in exc.errors())) from exc


@functools.cache
def load_schedule(path: Path) -> Schedule:
    return read_policy(path, Schedule, ScheduleError, "vaccine")


# -- where a child stands ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedDose:
    """A current immunization entry as the evaluation reads it (the service builds these from the record)."""

    entry_id: uuid.UUID
    vaccine: str
    dose_number: int | None
    given_on: dt.date
    status: str = "completed"  # completed, not_done
    not_done_reason: str | None = None
    expiry_date: dt.date | None = None  # of the lot, where recorded


@dataclass(frozen=True)
class Attempt:
    """A completed dose recorded against a dose of the series, and whether it counts (`why` not, if not)."""

    entry_id: uuid.UUID
    given_on: dt.date
    counts: bool
    why: str | None = None


@dataclass(frozen=True)
class DoseStatus:
    vaccine: str
    vaccine_name: str
    dose_number: int
    doses: int  # in the vaccine's series
    state: DoseState
    given_on: dt.date | None = None  # the dose that counts
    due_from: dt.date | None = None  # the first day it may be given (and count)
    recommended_on: dt.date | None = None
    overdue_since: dt.date | None = None
    no_later_than: dt.date | None = None  # the day it is no longer given, if the vaccine has an age limit
    attempts: tuple[Attempt, ...] = ()
    not_done: RecordedDose | None = None  # the latest time it was due and not given, and why
    waiting_for: int | None = None  # not yet due until this dose is given

    @property
    def label(self) -> str:
        return f"{self.vaccine_name}, dose {self.dose_number}" if self.doses > 1 else self.vaccine_name

    @property
    def outstanding(self) -> bool:
        return self.state in ("due", "overdue")


def _age_words(birth: dt.date, day: dt.date) -> str:
    days = (day - birth).days
    if days < 7:
        return f"{days} day{'' if days == 1 else 's'}"
    if days < 16 * 7:
        weeks, rest = divmod(days, 7)
        return f"{weeks} weeks" + (f" {rest} day{'' if rest == 1 else 's'}" if rest else "")
    return f"{months_on(birth, day)} months"


def _too_early(birth: dt.date, number: int, rule: DoseRule, previous: dt.date | None, given_on: dt.date) -> str | None:
    """Why a dose given on `given_on` does not count as dose `number`, or None if it does."""
    if given_on < rule.min_age.after(birth):
        return (f"given at {_age_words(birth, given_on)} of age, younger than the minimum age of "
                f"{rule.min_age.words()}")
    # A dose on or before the day of the dose before it is no later dose of the series, whether or not the
    # schedule gives the dose an interval (a ministry may leave one out, as the shipped measles dose 2 does).
    if previous is not None and given_on <= previous:
        return (f"given {'on the same day as' if given_on == previous else 'before'} dose {number - 1}, "
                f"given on {previous.isoformat()}")
    if previous is not None and rule.min_interval is not None and given_on < rule.min_interval.after(previous):
        days = (given_on - previous).days
        return (f"given {days} day{'' if days == 1 else 's'} after dose {number - 1}, sooner than the minimum "
                f"interval of {rule.min_interval.words()}")
    return None


def evaluate_vaccine(vaccine: Vaccine, birth: dt.date, recorded: Sequence[RecordedDose], today: dt.date
                     ) -> list[DoseStatus]:
    """Each dose of one vaccine for a child born on `birth`, on `today`, from the doses recorded (any vaccine;
    those of others are ignored)."""
    mine = [d for d in recorded if d.vaccine == vaccine.code]
    limit = vaccine.no_later_than.after(birth) if vaccine.no_later_than else None
    statuses: list[DoseStatus] = []
    previous: dt.date | None = None  # the counted dose before this one
    for number, rule in enumerate(vaccine.dose, 1):
        completed = sorted((d for d in mine if d.dose_number == number and d.status == "completed"),
                           key=lambda d: (d.given_on, str(d.entry_id)))
        attempts: list[Attempt] = []
        counted: dt.date | None = None
        for dose in completed:
            early = _too_early(birth, number, rule, previous, dose.given_on)
            expired = dose.expiry_date is not None and dose.given_on > dose.expiry_date
            why = (f"too early: does not count ({early})" if early else
                   f"from an expired lot: does not count (the lot expired on {dose.expiry_date.isoformat()}, "
                   f"before the dose's day)" if expired else
                   f"a repeat: dose {number} was already given on {counted.isoformat()}" if counted else None)
            attempts.append(Attempt(dose.entry_id, dose.given_on, why is None, why))
            if why is None:
                counted = dose.given_on
        declined = max((d for d in mine if d.dose_number == number and d.status == "not_done"),
                       key=lambda d: d.given_on, default=None)
        earliest = rule.min_age.after(birth)
        if previous is not None:
            interval = rule.min_interval or Span(1, "d")  # at the least the day after the dose before it
            earliest = max(earliest, interval.after(previous))
        recommended = max(rule.recommended_age.after(birth), earliest)
        common = {"vaccine": vaccine.code, "vaccine_name": vaccine.name, "dose_number": number,
                  "doses": vaccine.doses, "no_later_than": limit, "attempts": tuple(attempts)}
        if counted is not None:
            statuses.append(DoseStatus(**common, state="given", given_on=counted))
        elif limit is not None and today >= limit:
            statuses.append(DoseStatus(**common, state="no_longer_given", not_done=declined))
        elif number > 1 and previous is None:
            statuses.append(DoseStatus(**common, state="not_yet_due", waiting_for=number - 1, not_done=declined))
        elif today < earliest:
            statuses.append(DoseStatus(**common, state="not_yet_due", due_from=earliest, recommended_on=recommended,
                                       not_done=declined))
        elif today <= recommended:
            statuses.append(DoseStatus(**common, state="due", due_from=earliest, recommended_on=recommended,
                                       not_done=declined))
        else:
            statuses.append(DoseStatus(**common, state="overdue", due_from=earliest, recommended_on=recommended,
                                       overdue_since=recommended + dt.timedelta(days=1), not_done=declined))
        previous = counted
    return statuses


def evaluate(schedule: Schedule, birth: dt.date, recorded: Iterable[RecordedDose], today: dt.date
             ) -> list[DoseStatus]:
    """Every dose of every vaccine of the schedule, in the schedule's order, for a child born on `birth`, on
    `today`, from the current doses recorded (completed or not done; entries in error left out by the caller)."""
    doses = list(recorded)
    return [status for vaccine in schedule.vaccine for status in evaluate_vaccine(vaccine, birth, doses, today)]


def counted(statuses: Iterable[DoseStatus], entry_id: uuid.UUID) -> Attempt | None:
    """How the evaluation read one recorded dose (None: it was not recorded against a dose of the series)."""
    for status in statuses:
        for attempt in status.attempts:
            if attempt.entry_id == entry_id:
                return attempt
    return None


@dataclass(frozen=True)
class Outstanding:
    """What a child is due or overdue, for the list a vaccinator works from."""

    doses: tuple[DoseStatus, ...] = field(default_factory=tuple)

    @property
    def overdue_since(self) -> dt.date | None:
        return min((d.overdue_since for d in self.doses if d.overdue_since), default=None)


def outstanding(statuses: Iterable[DoseStatus]) -> Outstanding:
    return Outstanding(tuple(s for s in statuses if s.outstanding))
