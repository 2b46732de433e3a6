"""What a facility is, as written by hospital IT in `tenants/<slug>.toml`, and how such a file is read.

The file is validated whole before anything touches the database: a typo'd key, a wrong type or an
unknown time zone fails with the file, the field and what was expected, and nothing changes. Later
layers extend `TenantConfig` with their own sections (fee schedule, templates, order sets, KPI
targets); unknown keys are refused so a misspelt section never silently does nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import tomllib
import zoneinfo
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from appliance.substrate.db import SLUG_PATTERN
from appliance.substrate.problems import validator_message

FacilityType = Literal["referral_hospital", "district_hospital", "health_centre", "clinic"]
WardKind = Literal["inpatient", "emergency", "maternity", "paediatric", "icu", "surgical", "outpatient"]
Code = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9_-]{0,15}$")]
LoincCode = Annotated[str, Field(pattern=r"^[0-9]{1,7}-[0-9]$", description="LOINC code, e.g. 718-7")]
FieldKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")]


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

    @model_validator(mode="after")
    def _range_and_choices(self) -> _Analyte:
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"reference range low {self.low} is above high {self.high}")
        if self.critical_low is not None and self.low is not None and self.critical_low > self.low:
            raise ValueError(f"critical low {self.critical_low} is above the reference range's low {self.low}")
        if self.critical_high is not None and self.high is not None and self.critical_high < self.high:
            raise ValueError(f"critical high {self.critical_high} is below the reference range's high {self.high}")
        if (self.critical_low is not None and self.critical_high is not None
                and self.critical_low >= self.critical_high):
            raise ValueError(f"critical low {self.critical_low} is not below critical high {self.critical_high}")
        if self.choices and (self.critical_low is not None or self.critical_high is not None):
            raise ValueError("critical limits are for a number; a result read from choices has none")
        unknown = [a for a in self.abnormal if a not in self.choices]
        if unknown:
            raise ValueError(f"abnormal values {unknown} are not among the choices {self.choices}")
        return self


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

FeeItemKind = Literal["lab", "imaging", "procedure", "consultation", "bed_day", "medication"]
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
    emergency, inpatient), the ward kind of a bed-day (inpatient, icu, maternity...) or the drug of a
    medication (matched without regard to case), priced per `per` `unit`s of its dose."""

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

    @model_serializer(mode="wrap")
    def _omit_default_self_booking(self, handler):
        # Left out of the dump when off, so the clinics of every facility that does not use it keep their stored
        # configuration and fingerprint (an upgrade re-applies their files as "unchanged").
        dumped = handler(self)
        if dumped.get("self_booking") is False:
            del dumped["self_booking"]
        return dumped


OPTIONAL_SECTIONS = ("catalogue", "note_templates", "order_sets", "clinics")


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
    wards: list[WardConfig] = Field(default_factory=list)
    catalogue: list[OrderableConfig] = Field(default_factory=list, description="lab tests and imaging studies")
    note_templates: list[NoteTemplateConfig] = Field(default_factory=list)
    order_sets: list[OrderSetConfig] = Field(default_factory=list)
    fee_schedule: FeeScheduleConfig | None = None
    clinics: list[ClinicConfig] = Field(default_factory=list, description="outpatient clinics and sessions")
    # The facility's target for each command-center KPI (policies/kpis.toml ids), e.g. bed_occupancy = 85.
    kpi_targets: dict[KpiId, float] = Field(default_factory=dict)

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
        return dumped

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON form: equal files apply as 'unchanged'."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


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
