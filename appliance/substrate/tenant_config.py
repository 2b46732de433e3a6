"""What a facility is, as written by hospital IT in `tenants/<slug>.toml`, and how such a file is read.

The file is validated whole before anything touches the database: a typo'd key, a wrong type or an
unknown time zone fails with the file, the field and what was expected, and nothing changes. Later
layers extend `TenantConfig` with their own sections (fee schedule, templates, order sets, KPI
targets); unknown keys are refused so a misspelt section never silently does nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import itertools
import json
import re
import tomllib
import zoneinfo
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from appliance.substrate.age import months_on, years_on
from appliance.substrate.db import SLUG_PATTERN
from appliance.substrate.problems import validator_message

FacilityType = Literal["referral_hospital", "district_hospital", "health_centre", "clinic"]
WardKind = Literal["inpatient", "emergency", "maternity", "paediatric", "icu", "surgical", "outpatient"]
Code = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9_-]{0,15}$")]
LoincCode = Annotated[str, Field(pattern=r"^[0-9]{1,7}-[0-9]$", description="LOINC code, e.g. 718-7")]
FieldKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")]
# A phone number as people write it to dial: "+254 20 555 0100", "(020) 555-0100".
PHONE_PATTERN = re.compile(r"\+?[0-9(][0-9 ()-]*[0-9]")


class TenantFileError(ValueError):
    """A tenant file that cannot be applied; the message names the file, the field and the expectation."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class WardConfig(_Strict):
    code: Code
    name: str = Field(min_length=1, max_length=120)
    kind: WardKind = "inpatient"
    # Either a number of beds (coded <WARD>-01, <WARD>-02...) or the explicit bed codes.
    beds: int | list[Code] = Field(default=0)

    @field_validator("beds", mode="before")
    @classmethod
    def _beds_shape(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | list):
            raise ValueError("expected a number of beds (e.g. 12) or a list of bed codes (e.g. [\"A1\", \"A2\"])")
        return value

    @field_validator("beds")
    @classmethod
    def _beds_in_range(cls, value: int | list[str]) -> int | list[str]:
        if isinstance(value, int) and not 0 <= value <= 999:
            raise ValueError("a ward holds between 0 and 999 beds")
        if isinstance(value, list) and len(set(value)) != len(value):
            raise ValueError("bed codes must be unique within the ward")
        return value

    def bed_codes(self) -> list[str]:
        if isinstance(self.beds, int):
            return [f"{self.code}-{n:02d}" for n in range(1, self.beds + 1)]
        return list(self.beds)


# -- clinical: orderable tests, note templates, order sets -------------------------------------------


def loinc_check_digit_ok(code: str) -> bool:
    """LOINC's mod-10 check digit (the Luhn scheme over the digits before the hyphen)."""
    number, check = code.split("-")
    total = 0
    for position, char in enumerate(reversed(number)):
        value = int(char)
        if position % 2 == 0:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return (10 - total % 10) % 10 == int(check)


def _loinc(value: str) -> str:
    if not loinc_check_digit_ok(value):
        raise ValueError(f"LOINC code {value} has a wrong check digit (a typo?)")
    return value


# An age as a tenant file writes it: whole days, months or years completed ("28D", "6M", "15Y"), counted as
# appliance/substrate/age.py counts them, so a band starting at "5Y" takes a child on their fifth birthday.
AgeText = Annotated[str, Field(pattern=r"^[0-9]{1,3}[DMY]$", description='an age: "28D", "6M" or "15Y"')]
BandSex = Literal["female", "male", "any"]
# The unit's rough length in days: only to put bands in order and find overlaps, never to place a patient.
_DAYS_IN = {"D": 1.0, "M": 30.4375, "Y": 365.25}


def age_in_days(age: str) -> float:
    """An `AgeText`'s rough length, to order bands: "6M" ~ 182.6."""
    return int(age[:-1]) * _DAYS_IN[age[-1]]


def _age_words(age: str) -> str:
    """An `AgeText` in words: "6M" is "6 months", "1Y" "1 year"."""
    count, unit = int(age[:-1]), {"D": "day", "M": "month", "Y": "year"}[age[-1]]
    return f"{count} {unit}" + ("" if count == 1 else "s")


def has_reached(born: dt.date, day: dt.date, age: str) -> bool:
    """Whether someone born on `born` has completed `age` ("6M", "5Y") on `day`."""
    count, unit = int(age[:-1]), age[-1]
    if unit == "Y":
        return years_on(born, day) >= count
    if unit == "M":
        return months_on(born, day) >= count
    return (day - born).days >= count


class ReferenceBand(_Strict):
    """A reference range for some patients: one sex (or `any`) from an age (inclusive) to an age (exclusive).
    A limit the band leaves out is the analyte's own, so a band may name only the bound that differs."""

    sex: BandSex = "any"
    from_age: AgeText = "0D"
    to_age: AgeText | None = None
    low: float | None = None
    high: float | None = None
    critical_low: float | None = None
    critical_high: float | None = None

    @model_validator(mode="after")
    def _shape(self) -> ReferenceBand:
        if all(limit is None for limit in (self.low, self.high, self.critical_low, self.critical_high)):
            raise ValueError(f"the band {self.describe()} gives no limit: give it low, high or critical limits")
        if self.to_age is not None and age_in_days(self.to_age) <= age_in_days(self.from_age):
            raise ValueError(f"the band {self.describe()} ends at or before it starts: to_age comes after from_age")
        return self

    def words(self) -> str:
        """Whom the band is for, as the bench and a result's range say it: "6 months to 5 years", "under 7 days",
        "male, 15 years and over"."""
        start, end = _age_words(self.from_age), _age_words(self.to_age) if self.to_age else None
        ages = (f"under {end}" if self.from_age.startswith("0") and end else f"{start} to {end}" if end
                else f"{start} and over" if not self.from_age.startswith("0") else "every age")
        return ages if self.sex == "any" else f"{self.sex}, {ages}"

    def describe(self) -> str:
        """The band as a sentence names it: "male from 15Y", "any sex from 6M to 5Y"."""
        who = "any sex" if self.sex == "any" else self.sex
        return f"{who} from {self.from_age}" + (f" to {self.to_age}" if self.to_age else "")

    def holds(self, sex: str, born: dt.date, day: dt.date) -> bool:
        if self.sex != "any" and self.sex != sex:
            return False
        return has_reached(born, day, self.from_age) and not (
            self.to_age is not None and has_reached(born, day, self.to_age))

    def overlaps(self, other: ReferenceBand) -> bool:
        if "any" not in (self.sex, other.sex) and self.sex != other.sex:
            return False
        start, end = age_in_days(self.from_age), age_in_days(self.to_age) if self.to_age else float("inf")
        other_start = age_in_days(other.from_age)
        other_end = age_in_days(other.to_age) if other.to_age else float("inf")
        return start < other_end and other_start < end


def _limits_problem(low: float | None, high: float | None, critical_low: float | None,
                    critical_high: float | None) -> str | None:
    """What is wrong with a range and its critical limits, in a sentence; None when they agree."""
    if low is not None and high is not None and low > high:
        return f"reference range low {low} is above high {high}"
    if critical_low is not None and low is not None and critical_low > low:
        return f"critical low {critical_low} is above the reference range's low {low}"
    if critical_high is not None and high is not None and critical_high < high:
        return f"critical high {critical_high} is below the reference range's high {high}"
    if critical_low is not None and critical_high is not None and critical_low >= critical_high:
        return f"critical low {critical_low} is not below critical high {critical_high}"
    return None


class _Analyte(_Strict):
    """What a result of a test carries: a number with a unit and reference range, or one of `choices`."""

    unit: str | None = Field(default=None, max_length=30)
    low: float | None = None
    high: float | None = None
    # Critical limits, the laboratory's "call the clinician now" values (a potassium of 6.5 mmol/L): a result
    # beyond one is flagged LL or HH, which puts it first on every clinician's results to review.
    critical_low: float | None = None
    critical_high: float | None = None
    choices: list[str] = Field(default_factory=list)
    # Choices that are abnormal (flagged "A" on a result), e.g. ["positive"].
    abnormal: list[str] = Field(default_factory=list)

    # Ranges by age and sex (a child's haemoglobin is not a woman's, nor a woman's a man's); `low`/`high` and the
    # critical limits above stay the range of whoever no band holds.
    ranges: list[ReferenceBand] = Field(default_factory=list)
    # What no specimen of this test can give, whoever it is from: a result beyond is refused, naming the value,
    # the unit and the limit, where it was flagged as a finding (platelets of 45000 typed as a count per microlitre
    # where the unit is 10*3/uL, a haemoglobin of 120 g/L where it is g/dL). They lie beyond every range and
    # critical limit, the bands' too.
    possible_low: float | None = None
    possible_high: float | None = None
    # The band `for_patient` judged by, in words (None: the analyte's own range); not part of the definition.
    _band: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _range_and_choices(self) -> _Analyte:
        problem = _limits_problem(self.low, self.high, self.critical_low, self.critical_high)
        if problem:
            raise ValueError(problem)
        if self.choices and (self.critical_low is not None or self.critical_high is not None):
            raise ValueError("critical limits are for a number; a result read from choices has none")
        unknown = [a for a in self.abnormal if a not in self.choices]
        if unknown:
            raise ValueError(f"abnormal values {unknown} are not among the choices {self.choices}")
        if self.ranges and self.choices:
            raise ValueError("ranges by age and sex are for a number; a result read from choices has none")
        if self.choices and (self.possible_low is not None or self.possible_high is not None):
            raise ValueError("possible limits are for a number; a result read from choices has none")
        if self.possible_low is not None and self.possible_high is not None and self.possible_low >= self.possible_high:
            raise ValueError(f"possible low {self.possible_low} is not below possible high {self.possible_high}")
        return self

    @model_validator(mode="after")
    def _bands_agree(self) -> _Analyte:
        # Said of the analyte: a panel's file holds several, and the sentence must name which one is wrong.
        name = getattr(self, "name", None) or "this analyte"
        problems = []
        if problem := self._beyond_possible():
            problems.append(f"{name}: {problem}")
        for band in self.ranges:
            limits = self._banded(band)
            problem = (_limits_problem(limits.low, limits.high, limits.critical_low, limits.critical_high)
                       or limits._beyond_possible())
            if problem:
                problems.append(f"{name}'s band {band.describe()}: {problem}")
        for first, second in itertools.combinations(self.ranges, 2):
            if first.overlaps(second):
                problems.append(f"{name}'s bands {first.describe()} and {second.describe()} overlap: a patient "
                                f"of that sex and age would have two ranges (end the first where the second starts)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _beyond_possible(self) -> str | None:
        """A range or critical limit beyond what the analyte can be, in a sentence; None when all are within."""
        named = {"low": self.low, "high": self.high, "critical low": self.critical_low,
                 "critical high": self.critical_high}
        for said, limit in named.items():
            if limit is None:
                continue
            if self.possible_low is not None and limit < self.possible_low:
                return f"{said} {limit} is below possible low {self.possible_low}: no result could reach it"
            if self.possible_high is not None and limit > self.possible_high:
                return f"{said} {limit} is above possible high {self.possible_high}: no result could reach it"
        return None

    def _banded(self, band: ReferenceBand) -> _Analyte:
        return self.model_copy(update={
            "low": self.low if band.low is None else band.low,
            "high": self.high if band.high is None else band.high,
            "critical_low": self.critical_low if band.critical_low is None else band.critical_low,
            "critical_high": self.critical_high if band.critical_high is None else band.critical_high,
            "ranges": []})

    def for_patient(self, sex: str, born: dt.date, day: dt.date) -> _Analyte:
        """The analyte as a result of this patient's, taken on `day`, is judged: its range and critical limits
        those of the band their sex and age fall in, else its own (a patient of sex "other" or "unknown" is
        held only by a band of `any` sex)."""
        band = next((b for b in self.ranges if b.holds(sex, born, day)), None)
        if band is None:
            return self
        banded = self._banded(band)
        banded._band = band.words()
        return banded

    @property
    def band(self) -> str | None:
        """Whom the range of an analyte `for_patient` answered is for ("5 years to 12 years"); None when it is the
        analyte's own, no band holding the patient."""
        return self._band

    @model_serializer(mode="wrap")
    def _omit_no_ranges(self, handler):
        # Left out of the dump when there are none, so every analyte written before bands existed keeps its
        # stored definition and its facility's fingerprint (an upgrade re-applies their files as "unchanged").
        dumped = handler(self)
        if dumped.get("ranges") == []:
            del dumped["ranges"]
        for limit in ("possible_low", "possible_high"):  # the same, for analytes written before these limits
            if limit in dumped and dumped[limit] is None:
                del dumped[limit]
        return dumped


class OrderableComponent(_Analyte):
    loinc: LoincCode
    name: str = Field(min_length=1, max_length=200)

    @field_validator("loinc")
    @classmethod
    def _check_digit(cls, value: str) -> str:
        return _loinc(value)


class OrderableConfig(_Analyte):
    """A lab test or imaging study the facility can perform, coded in LOINC."""

    loinc: LoincCode
    name: str = Field(min_length=1, max_length=200)
    category: Literal["lab", "imaging"] = "lab"
    specimen: str | None = Field(default=None, max_length=60)
    # A panel's analytes (a full blood count's haemoglobin, white cells, platelets...).
    components: list[OrderableComponent] = Field(default_factory=list)

    @field_validator("loinc")
    @classmethod
    def _check_digit(cls, value: str) -> str:
        return _loinc(value)

    @model_validator(mode="after")
    def _unique_components(self) -> OrderableConfig:
        codes = [c.loinc for c in self.components]
        if len(set(codes)) != len(codes):
            raise ValueError(f"{self.loinc}: component LOINC codes must be unique")
        return self


FieldType = Literal["text", "number", "integer", "boolean", "date", "choice", "multichoice"]


class TemplateField(_Strict):
    """One structured field of a note template, validated when a note is saved."""

    key: FieldKey
    label: str = Field(min_length=1, max_length=120)
    type: FieldType = "text"
    unit: str | None = Field(default=None, max_length=30)
    required: bool = False
    choices: list[str] = Field(default_factory=list)
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _shape(self) -> TemplateField:
        if self.type in {"choice", "multichoice"} and not self.choices:
            raise ValueError(f"field {self.key!r} of type {self.type} needs its choices")
        if self.type not in {"choice", "multichoice"} and self.choices:
            raise ValueError(f"field {self.key!r} has choices but is of type {self.type}")
        if self.unit and self.type not in {"number", "integer"}:
            raise ValueError(f"field {self.key!r} has a unit but is of type {self.type}")
        if (self.min is not None or self.max is not None) and self.type not in {"number", "integer"}:
            raise ValueError(f"field {self.key!r} has min/max but is of type {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"field {self.key!r}: min {self.min} is above max {self.max}")
        return self


class NoteTemplateConfig(_Strict):
    code: Code
    name: str = Field(min_length=1, max_length=120)
    specialty: str = Field(default="general", min_length=1, max_length=60)
    fields: list[TemplateField] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_keys(self) -> NoteTemplateConfig:
        keys = [f.key for f in self.fields]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"template {self.code}: field keys must be unique: {', '.join(duplicates)}")
        return self


class OrderSetMedication(_Strict):
    drug: str = Field(min_length=1, max_length=120)
    dose: float = Field(gt=0)
    dose_unit: str = Field(min_length=1, max_length=20)
    route: str = Field(min_length=1, max_length=40)
    frequency: str = Field(min_length=1, max_length=60)
    duration_days: int | None = Field(default=None, ge=1, le=365)


class OrderSetConfig(_Strict):
    """Several orders placed in one act, e.g. "Suspected malaria": smear, RDT, blood count, paracetamol."""

    code: Code
    name: str = Field(min_length=1, max_length=120)
    tests: list[LoincCode] = Field(default_factory=list, description="LOINC codes from this facility's catalogue")
    medications: list[OrderSetMedication] = Field(default_factory=list)

    @field_validator("tests")
    @classmethod
    def _check_digits(cls, value: list[str]) -> list[str]:
        return [_loinc(code) for code in value]

    @model_validator(mode="after")
    def _not_empty(self) -> OrderSetConfig:
        if not self.tests and not self.medications:
            raise ValueError(f"order set {self.code} places nothing: give it tests or medications")
        return self


# -- financial: the fee schedule ---------------------------------------------------------------------

FeeItemKind = Literal["lab", "imaging", "procedure", "consultation", "bed_day", "medication", "blood"]
PayerKind = Literal["self_pay", "national_insurance", "private_insurance"]
# ISO 4217 minor units of the currencies a facility may price in (the rest have two).
CURRENCY_MINOR_UNITS = {"UGX": 0, "RWF": 0, "BIF": 0, "XOF": 0, "XAF": 0, "KMF": 0, "DJF": 0, "GNF": 0,
                        "JPY": 0, "KRW": 0, "VND": 0, "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3, "LYD": 3,
                        "IQD": 3}


def minor_units(currency: str) -> int:
    return CURRENCY_MINOR_UNITS.get(currency, 2)


class PriceListConfig(_Strict):
    code: Code
    name: str = Field(min_length=1, max_length=120)


class PayerConfig(_Strict):
    """Who pays: the patient (self-pay), the national health insurance, a private insurer."""

    code: Code
    name: str = Field(min_length=1, max_length=120)
    kind: PayerKind
    price_list: Code


class FeeItemConfig(_Strict):
    """One billable item and its price on each price list, for a period. `code` is the LOINC code of a
    lab test or imaging study, a procedure's code, the encounter class of a consultation (outpatient,
    emergency, inpatient), the ward kind of a bed-day (inpatient, icu, maternity...), the drug of a
    medication (matched without regard to case), priced per `per` `unit`s of its dose, or the component of a unit
    of blood transfused (whole_blood, red_cells, plasma, platelets)."""

    kind: FeeItemKind
    code: str = Field(min_length=1, max_length=80)
    name: str = Field(min_length=1, max_length=200)
    department: Code | None = None
    unit: str | None = Field(default=None, max_length=20)
    per: Decimal = Field(default=Decimal(1), gt=0)
    effective_from: dt.date
    effective_to: dt.date | None = Field(default=None, description="last day the prices apply (inclusive)")
    prices: dict[Code, Decimal] = Field(min_length=1, description="price list code -> price")

    @model_validator(mode="after")
    def _shape(self) -> FeeItemConfig:
        if self.effective_to is not None and self.effective_to < self.effective_from:
            raise ValueError(f"{self.kind} {self.code}: effective_to {self.effective_to} is before "
                             f"effective_from {self.effective_from}")
        if self.kind == "medication" and not self.unit:
            raise ValueError(f"medication {self.code}: give the dose unit its price is per (e.g. unit = \"mg\")")
        negative = [code for code, price in self.prices.items() if not price.is_finite() or price < 0]
        if negative:
            raise ValueError(f"{self.kind} {self.code}: prices must be zero or more ({', '.join(negative)})")
        return self


class FeeScheduleConfig(_Strict):
    """What the facility charges, to whom: price lists, payers, and billable items with their prices."""

    # Bed-days accrue for every patient admitted at this local time of day.
    census_time: dt.time = dt.time(0, 0)
    # The price list of a patient with no insurance on file.
    self_pay_price_list: Code
    price_lists: list[PriceListConfig] = Field(min_length=1)
    payers: list[PayerConfig] = Field(default_factory=list)
    items: list[FeeItemConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> FeeScheduleConfig:
        problems = []
        lists = [p.code for p in self.price_lists]
        for label, codes in (("price list codes", lists), ("payer codes", [p.code for p in self.payers])):
            duplicates = sorted({c for c in codes if codes.count(c) > 1})
            if duplicates:
                problems.append(f"{label} must be unique: {', '.join(duplicates)}")
        known = set(lists)
        if self.self_pay_price_list not in known:
            problems.append(f"self_pay_price_list {self.self_pay_price_list} is not among the price lists")
        for payer in self.payers:
            if payer.price_list not in known:
                problems.append(f"payer {payer.code} names price list {payer.price_list}, which is not defined")
        periods: dict[tuple[str, str], list[FeeItemConfig]] = {}
        for item in self.items:
            unknown = sorted(set(item.prices) - known)
            if unknown:
                problems.append(f"{item.kind} {item.code} is priced on unknown price list(s) {', '.join(unknown)}")
            periods.setdefault((item.kind, item.code.lower()), []).append(item)
        for (kind, code), items in periods.items():
            items.sort(key=lambda i: i.effective_from)
            for before, after in itertools.pairwise(items):
                if before.effective_to is None or before.effective_to >= after.effective_from:
                    problems.append(f"{kind} {code}: prices from {before.effective_from} and from "
                                    f"{after.effective_from} overlap (end the first with effective_to)")
        if problems:
            raise ValueError("; ".join(problems))
        return self


# -- operations: outpatient clinics and the command center's targets --------------------------------

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
KpiId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,40}$", description="an id from policies/kpis.toml")]


class NursingConfig(_Strict):
    """What the facility's wards chart by: the hour the fluid balance chart's day starts (07:00 by default, the
    day shift's start on most wards), local time, on the hour, since the chart totals urine by the hour; and when
    the kitchen serves breakfast, lunch and supper."""

    fluid_day_starts: dt.time = dt.time(7, 0)
    # When the kitchen serves each meal, local time: its list of diets is for the patients on the ward then, and a
    # patient fasting for theatre by then is flagged nil by mouth on it (appliance/layers/nursing/diet.py).
    breakfast: dt.time = dt.time(7, 30)
    lunch: dt.time = dt.time(12, 30)
    supper: dt.time = dt.time(18, 0)

    @field_validator("fluid_day_starts")
    @classmethod
    def _on_the_hour(cls, value: dt.time) -> dt.time:
        if value.minute or value.second or value.microsecond:
            raise ValueError("the fluid day starts on the hour (e.g. 07:00)")
        return value


class ShiftConfig(_Strict):
    """A shift of the duty roster, in facility time (e.g. night: start 19:00, end 07:00, ending the next morning),
    with the most patients one nurse should have on it: above it the ward is flagged understaffed."""

    code: Code
    name: str = Field(min_length=1, max_length=60)
    start: dt.time
    end: dt.time
    patients_per_nurse: int = Field(ge=1, le=50)

    @model_validator(mode="after")
    def _a_working_length(self) -> ShiftConfig:
        minutes = ((self.end.hour * 60 + self.end.minute) - (self.start.hour * 60 + self.start.minute)) % 1440
        if not 4 * 60 <= minutes <= 16 * 60:
            raise ValueError(f"a shift lasts 4 to 16 hours ({self.start} to {self.end} is {minutes // 60} h "
                             f"{minutes % 60} min; an end at or before the start is the next day's)")
        return self


def _default_shifts() -> list[ShiftConfig]:
    # The two 12-hour shifts most district hospital wards work; the thresholds follow NICE's safe staffing
    # guideline (SG1, 2014): more than 8 patients per registered nurse on a day shift is a red flag. NICE sets no
    # night figure: 10 is this appliance's default, a facility sets its own.
    return [ShiftConfig(code="D", name="Day", start=dt.time(7), end=dt.time(19), patients_per_nurse=8),
            ShiftConfig(code="N", name="Night", start=dt.time(19), end=dt.time(7), patients_per_nurse=10)]


class RosterConfig(_Strict):
    """The duty roster's shifts and rules. `min_rest_hours`: the least rest between two shifts of one person (11,
    the EU Working Time Directive 2003/88/EC, article 3's daily rest); `correction_days`: how many days back a past
    shift may still be added or withdrawn (a late correction), beyond which the roster is history."""

    shifts: list[ShiftConfig] = Field(default_factory=_default_shifts, min_length=1)
    min_rest_hours: int = Field(default=11, ge=0, le=24)
    correction_days: int = Field(default=7, ge=0, le=60)

    @model_validator(mode="after")
    def _unique_shift_codes(self) -> RosterConfig:
        codes = [shift.code for shift in self.shifts]
        if len(set(codes)) != len(codes):
            raise ValueError("shift codes must be unique")
        return self


class TheatreConfig(_Strict):
    """An operating theatre of the facility, where the theatre list books cases (e.g. code = "TH1")."""

    code: Code
    name: str = Field(min_length=1, max_length=120)


class ProcedureConfig(_Strict):
    """A procedure of the facility's own list a surgeon may book by code; the same code is its fee item's
    (`kind = "procedure"`) where the fee schedule prices it."""

    code: Code
    name: str = Field(min_length=1, max_length=200)


class ClinicSessionConfig(_Strict):
    """A weekly session of a clinic, e.g. Monday and Thursday 08:00-12:00 (facility-local time)."""

    weekdays: list[Weekday] = Field(min_length=1)
    start: dt.time
    end: dt.time

    @model_validator(mode="after")
    def _start_before_end(self) -> ClinicSessionConfig:
        if self.end <= self.start:
            raise ValueError(f"a session ends after it starts (start {self.start}, end {self.end})")
        return self


class ClinicConfig(_Strict):
    """An outpatient clinic: its sessions are cut into slots of `slot_minutes`, one patient per slot."""

    code: Code
    name: str = Field(min_length=1, max_length=120)
    slot_minutes: int = Field(default=15, ge=5, le=240)
    sessions: list[ClinicSessionConfig] = Field(min_length=1)
    # Whether patients book their own appointments here on the patient portal (a facility that holds their
    # record); off by default: a clinic that triages its bookings (a specialist's referral list) keeps the desk.
    self_booking: bool = False
    # Whether other facilities of the appliance refer patients to this clinic (the Refer form offers it, the API
    # accepts it). A facility that marks none of its clinics is referred to at every one of them.
    takes_referrals: bool = False

    @model_serializer(mode="wrap")
    def _omit_default_flags(self, handler):
        # Left out of the dump when off, so the clinics of every facility that does not use them keep their stored
        # configuration and fingerprint (an upgrade re-applies their files as "unchanged").
        dumped = handler(self)
        for flag in ("self_booking", "takes_referrals"):
            if dumped.get(flag) is False:
                del dumped[flag]
        return dumped


OPTIONAL_SECTIONS = ("catalogue", "note_templates", "order_sets", "clinics", "theatres", "procedures")


class TenantConfig(_Strict):
    slug: str = Field(description="^[a-z][a-z0-9_]{1,30}$; schema and role are t_<slug>")
    name: str = Field(min_length=2, max_length=200)
    facility_type: FacilityType
    country_code: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    region: str = Field(min_length=1, max_length=120)
    district: str = Field(min_length=1, max_length=120)
    timezone: str = Field(description="IANA time zone, e.g. Africa/Nairobi")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")
    dhis2_org_unit: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,50}$",
                                       description="the facility's organisation unit code in the ministry's DHIS2; "
                                                   "national exports name the facility by it (else by its slug)")
    # The first day whose records the national figures count, in its month: by default the month the facility
    # was created on this appliance (`tenancy.recording_since`); earlier where old records were migrated in,
    # later where it went live after a trial. The months before it are "not recording yet", never zeros.
    recording_since: dt.date | None = Field(default=None, description="national figures count its records from "
                                                                      "this date's month")
    # How a patient reaches the facility: the portal gives them where it tells them to phone or come in (to cancel
    # an appointment inside the cut-off, to book at a clinic the desk books, to pay a bill), which said "phone the
    # clinic" with no number anywhere.
    phone: str | None = Field(default=None, max_length=30, description="the number patients phone, as they dial it")
    opening_hours: str | None = Field(default=None, min_length=3, max_length=120,
                                      description="when the front desk is open and answers the phone, in words")
    wards: list[WardConfig] = Field(default_factory=list)
    catalogue: list[OrderableConfig] = Field(default_factory=list, description="lab tests and imaging studies")
    note_templates: list[NoteTemplateConfig] = Field(default_factory=list)
    order_sets: list[OrderSetConfig] = Field(default_factory=list)
    fee_schedule: FeeScheduleConfig | None = None
    clinics: list[ClinicConfig] = Field(default_factory=list, description="outpatient clinics and sessions")
    # The facility's target for each command-center KPI (policies/kpis.toml ids), e.g. bed_occupancy = 85.
    kpi_targets: dict[KpiId, float] = Field(default_factory=dict)
    nursing: NursingConfig | None = None
    theatres: list[TheatreConfig] = Field(default_factory=list, description="operating theatres")
    procedures: list[ProcedureConfig] = Field(default_factory=list, description="procedures booked by code")
    roster: RosterConfig | None = None

    @field_validator("slug")
    @classmethod
    def _slug_shape(cls, value: str) -> str:
        if not SLUG_PATTERN.fullmatch(value):
            raise ValueError("expected 2-31 characters: lowercase letters, digits, underscore, starting "
                             "with a letter")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("recording_since", mode="before")
    @classmethod
    def _a_day(cls, value: object) -> object:
        # TOML's own date (recording_since = 2026-03-01) or the same written as a string; nothing looser, since
        # Python's ISO reading also takes "20260301" and week dates, which no one means here.
        if value is None or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
            return value
        if isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value.strip()):
            with contextlib.suppress(ValueError):
                return dt.date.fromisoformat(value.strip())
        raise ValueError("expected the day the national figures count this facility's records from, a real date "
                         'written YYYY-MM-DD, e.g. "2026-03-01"')

    @field_validator("phone")
    @classmethod
    def _dialable(cls, value: str | None) -> str | None:
        if value is not None and not (PHONE_PATTERN.fullmatch(value) and 6 <= len(re.sub(r"\D", "", value)) <= 15):
            raise ValueError('expected the number patients phone, as they dial it: 6 to 15 digits, spaces, hyphens or '
                             'brackets between them and an optional + before, e.g. "+254 20 555 0100"')
        return value

    @field_validator("opening_hours")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and any(not character.isprintable() for character in value):
            raise ValueError('expected one line a patient reads, e.g. "Monday to Friday 08:00-17:00, Saturday '
                             '08:00-12:00"')
        return value

    @model_validator(mode="after")
    def _unique_codes(self) -> TenantConfig:
        ward_codes = [ward.code for ward in self.wards]
        if len(set(ward_codes)) != len(ward_codes):
            raise ValueError("ward codes must be unique")
        bed_codes = [bed for ward in self.wards for bed in ward.bed_codes()]
        duplicates = sorted({bed for bed in bed_codes if bed_codes.count(bed) > 1})
        if duplicates:
            raise ValueError(f"bed codes must be unique across wards: {', '.join(duplicates)}")
        clinic_codes = [c.code for c in self.clinics]
        if len(set(clinic_codes)) != len(clinic_codes):
            raise ValueError("clinic codes must be unique")
        for label, codes in (("theatre codes", [t.code for t in self.theatres]),
                             ("procedure codes", [p.code for p in self.procedures])):
            if len(set(codes)) != len(codes):
                raise ValueError(f"{label} must be unique")
        return self

    @model_validator(mode="after")
    def _clinical_references(self) -> TenantConfig:
        problems = []
        for label, codes in (
            ("catalogue LOINC codes", [item.loinc for item in self.catalogue]),
            ("note template codes", [t.code for t in self.note_templates]),
            ("order set codes", [o.code for o in self.order_sets]),
        ):
            duplicates = sorted({c for c in codes if codes.count(c) > 1})
            if duplicates:
                problems.append(f"{label} must be unique: {', '.join(duplicates)}")
        known = {item.loinc for item in self.catalogue}
        for order_set in self.order_sets:
            missing = [code for code in order_set.tests if code not in known]
            if missing:
                problems.append(f"order set {order_set.code} ({order_set.name}) names test(s) not in this "
                                f"facility's catalogue: {', '.join(missing)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _prices_in_the_currency(self) -> TenantConfig:
        if self.fee_schedule is None:
            return self
        places = minor_units(self.currency)
        finer = [f"{item.kind} {item.code} {code} {price}" for item in self.fee_schedule.items
                 for code, price in item.prices.items() if price != round(price, places)]
        if finer:
            raise ValueError(f"prices in {self.currency} have at most {places} decimal places: {'; '.join(finer)}")
        return self

    @model_serializer(mode="wrap")
    def _omit_empty_sections(self, handler):
        # Optional sections a facility does not use are left out of the dump, so adding a section to
        # the model changes neither the stored configuration nor the fingerprint of existing tenants
        # (an upgrade re-applies their files as "unchanged").
        dumped = handler(self)
        for section in OPTIONAL_SECTIONS:
            if dumped.get(section) == []:
                del dumped[section]
        if dumped.get("fee_schedule", ...) is None:
            del dumped["fee_schedule"]
        if dumped.get("kpi_targets") == {}:
            del dumped["kpi_targets"]
        for section in ("nursing", "roster", "recording_since", "phone", "opening_hours"):
            if dumped.get(section, ...) is None:
                del dumped[section]
        return dumped

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON form: equal files apply as 'unchanged'."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def dial(phone: str) -> str:
    """A phone number as a `tel:` link dials it: its digits, and the + before them if written."""
    return ("+" if phone.startswith("+") else "") + re.sub(r"\D", "", phone)


def _describe(error: dict) -> str:
    location = ""
    for part in error["loc"]:
        location += f"[{part}]" if isinstance(part, int) else (f".{part}" if location else str(part))
    message = validator_message(error["msg"])
    if error["type"] == "extra_forbidden":
        message = "unknown field (check the spelling; see tenants/README.md for the fields)"
    elif error["type"] == "missing":
        message = "required field is missing"
    got = error.get("input")
    if error["type"] not in {"missing", "extra_forbidden"} and not isinstance(got, dict | list):
        message += f" (got {got!r})"
    return f"{location or '(file)'}: {message}"


def parse_tenant_file(path: Path) -> TenantConfig:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TenantFileError(path, ["file not found"]) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TenantFileError(path, [f"not valid TOML: {exc}"]) from exc
    try:
        return TenantConfig.model_validate(raw)
    except ValidationError as exc:
        raise TenantFileError(path, [_describe(error) for error in exc.errors()]) from exc


def tenant_files(path: Path) -> list[Path]:
    """A single file, or every `*.toml` in a directory, sorted."""
    if path.is_dir():
        return sorted(p for p in path.glob("*.toml") if p.is_file())
    return [path]
