"""National indicators: counted inside each facility, withheld where small, summed for the ministry.

The definitions are data (`policies/indicators.toml`): what each indicator counts, its DHIS2 code, the
age bands, and the disclosure threshold. `gather` counts one calendar month at every active facility: a
statement per kind of count (encounters, diagnoses, screenings, deaths, immunizations, deliveries, antenatal
care) in the facility's own transaction (its role and search_path pinned, so they can read nothing else), grouped
by sex and age band, with one audit event in the facility's own log saying the ministry counted its records. Only
counts come out of that transaction, and `withhold` applies the disclosure rule to each facility's breakdown
before anything is summed, shown or exported: a count from 1 to threshold - 1 is never published, and when a
facility's breakdown has exactly one such cell (or withheld cells that add up to less than the threshold) the next
smallest is withheld too, so that no withheld cell can be worked out from the facility's total and the rest.

District, regional and national figures are sums of what the facilities published; the page and the
exports say how many facility figures were withheld from each sum, never guess them. A facility reported
by an appliance on another version of the definitions may not count every indicator this one does (see
`federation`): such an indicator is "not reported" for it — no figure in `Facility.figures`, never a
zero and never "withheld" — and sums say how many facilities did not report it, apart from the withheld.

A facility records here from a month on (`records_in`: the month its tenant was created on this appliance, or
its tenant file's `recording_since`); before it, its records were kept elsewhere, so for such a month it is "not
recording yet": no figures, in no sum, no row of the CSV and no value of the DHIS2 file, which would otherwise
overwrite the figures the earlier system sent for the month with zeros.

A package held from before the ministry changed its age bands or raised its threshold is read as it was
published (`federation`), under the rule this room applies to every figure:
- the disclosure rule again, at today's threshold (`withhold_published`): a count the package published
  under it is withheld now, with the cell that would reveal it, as for a facility counted today;
- its cells under its own age bands. A band code names the same ages wherever it appears (the receipt
  compares codes, and DHIS2 knows a category option by its code), so a band whose ages change takes a
  new code (policies/indicators.toml says so). A cell whose band is still defined here counts in that
  band; a cell of a band no longer defined is kept apart (`Published.earlier`), in no band; a band the
  package did not have reads "published under earlier age bands" for its facility: no figure there,
  never a zero or "withheld", and sums by band count such facilities apart (`Sum.earlier_bands`).
- its total, and its totals by sex (`Published.sex_total`: its every band of that sex, the earlier ones
  included, where none is withheld), still add up whatever the bands, so they count as any facility's.
The DHIS2 file sends only cells of bands still defined (DHIS2 would report a category option combo
the data set no longer has as a conflict, or refuse the whole import); the CSV carries the earlier
cells, marked.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import io
import itertools
import re
import tomllib
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import sqlalchemy as sa

from appliance.layers.clinical import hiv, immunization
from appliance.layers.clinical.delivery import BORN_HERE, LOW_BIRTH_WEIGHT_BELOW_G
from appliance.layers.clinical.family_planning_policy import Programme, cyp, load_programme, tenths
from appliance.layers.clinical.growth import (
    ACUTE_FROM_MONTHS,
    ACUTE_TO_MONTHS,
    MUAC_MODERATE_BELOW_MM,
    MUAC_SEVERE_BELOW_MM,
)
from appliance.layers.clinical.immunization_schedule import Schedule, ScheduleError, load_schedule
from appliance.substrate import audit, disclosure
from appliance.substrate.config import PROJECT_ROOT
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import list_tenants

SOURCES = ("encounters", "diagnoses", "screenings", "deaths", "immunizations", "deliveries", "antenatal",
           "family_planning", "tb_outcomes", "hiv_care")
ENCOUNTER_CLASSES = ("outpatient", "emergency", "inpatient")
# What a `family_planning` indicator counts of the month's visits that provided a method: clients by the client
# type recorded (each once), or the couple-years of protection given, in tenths.
FP_CLIENT_TYPE = {"new_acceptors": "new_acceptor", "new_to_method": "new_to_method",
                  "continuing_users": "continuing", "restarts": "restart"}
FP_MEASURES = (*FP_CLIENT_TYPE, "cyp")
FP_METHOD_CLASSES = ("short_acting", "long_acting", "permanent")
# What a `screenings` indicator counts of the children screened for acute malnutrition in the month.
FINDINGS = ("screened", "severe", "moderate")
# The acute malnutrition criteria a screening is counted by: the clinical layer's own (clinical/growth.py),
# so a child the chart calls severe is the child the ministry counts as severe. Only MUAC and oedema: the
# wasting z-score needs the WHO tables, which SQL inside the facility cannot read (see indicators.toml).
SCREENING_CUTOFFS = {"acute_from_months": ACUTE_FROM_MONTHS, "acute_to_months": ACUTE_TO_MONTHS,
                     "muac_severe_below": MUAC_SEVERE_BELOW_MM, "muac_moderate_below": MUAC_MODERATE_BELOW_MM}
SCREENING_CRITERIA = (
    f"Acute malnutrition counts children {ACUTE_FROM_MONTHS}–{ACUTE_TO_MONTHS} months old when screened with a "
    f"mid-upper-arm circumference (MUAC) or bilateral pitting oedema recorded, each once a month: severe when "
    f"the MUAC was under {MUAC_SEVERE_BELOW_MM} mm or oedema was present at any screening of the month, moderate "
    f"when the MUAC was {MUAC_SEVERE_BELOW_MM}–{MUAC_MODERATE_BELOW_MM - 1} mm and not severe (WHO/UNICEF 2009). "
    "Wasting by weight-for-height or BMI-for-age is on each child's chart but not counted here.")
# How an `immunizations` indicator treats a dose the child's card does not count (`immunization.doses_that_count`).
DOSE_CRITERIA = (
    "A vaccine dose counts as the child's card counts it, by the national immunization schedule: a dose given "
    "younger than its minimum age, sooner than its minimum interval after the dose before, from a lot past its "
    "expiry date, or again after the same dose counted, is recorded on the card but not counted here, and the "
    "child stays due for it. A dose read from a child's card or another facility's record counts where it was given.")
# What a `births` indicator counts of the month's deliveries (clinical/delivery.py): the deliveries (a twin
# delivery once) and caesarean ones, by the mother's sex and age; and the babies, by their own sex in the youngest
# band: born alive, stillborn (fresh and macerated, or either), and born alive under 2500 g.
BIRTH_COUNTS = ("deliveries", "caesarean", "live_births", "stillbirths", "fresh_stillbirths", "macerated_stillbirths",
                "low_birth_weight")
# What a `tb_outcomes` indicator counts of the new and relapse TB cases whose treatment started in the month
# (clinical/tuberculosis.py): those registered (the cohort), or those with a WHO treatment outcome assigned.
TB_COUNTS = ("registered", "cured", "treatment_completed", "treatment_failed", "died", "lost_to_follow_up",
             "not_evaluated")
# What an `hiv_care` indicator counts (clinical/hiv.py; PEPFAR MER): people who started ART in the month (TX_NEW),
# active on ART at its end (TX_CURR), of those a viral load in the 12 months to its end (TX_PVLS denominator) and that
# result suppressed (numerator), and those whose interruption in treatment began in the month (IIT); TX_PVLS's
# denominator and numerator again by the latest result's indication, routine or targeted (a result recorded before
# the indication was asked is in the totals and in neither part).
HIV_COUNTS = ("tx_new", "tx_curr", "tx_pvls_d", "tx_pvls_n", "iit", "tx_pvls_d_routine", "tx_pvls_d_targeted",
              "tx_pvls_n_routine", "tx_pvls_n_targeted")
# What an `antenatal` indicator counts of the month's antenatal care contacts (clinical/antenatal.py): pregnancies
# at their first contact (ANC1), first seen before 12 weeks, at their fourth and eighth contact, first tested for
# syphilis, first found syphilis positive.
ANC_COUNTS = ("anc1", "anc1_before_12_weeks", "anc4", "anc8", "syphilis_tested", "syphilis_positive")
ANC1_BEFORE_DAYS = 12 * 7  # "before 12 weeks": under 12 completed weeks at the first contact
# Sex as DHIS2 category options; "other" and "unknown" are one option, as small as they are.
SEXES: tuple[tuple[str, str], ...] = (("F", "female"), ("M", "male"), ("U", "other or unknown"))
SEX_CODE = {"female": "F", "male": "M"}  # a cell's sex; anything else is "U"
_CATEGORY = re.compile(r"^[A-Z][0-9]{2}$")


def category_range(text: str) -> tuple[str, str] | None:
    """An ICD-10 category range as policies write it ("B50-B54", or one category "A00"), or None if it is not one:
    the one reading of it for the indicators and the notifiable diseases."""
    low, _, high = text.partition("-")
    high = high or low
    return (low, high) if _CATEGORY.fullmatch(low) and _CATEGORY.fullmatch(high) and low <= high else None
_VACCINE = re.compile(r"^[A-Z][A-Z0-9_]{0,19}$")  # a vaccine code of policies/immunization.toml
_PERIOD = re.compile(r"^(\d{4})-(\d{2})$")

Cell = tuple[str, str]  # (sex code, age band code)


class IndicatorError(ValueError):
    """The indicator definitions file, or a requested period, is not usable; the message says why."""


@dataclass(frozen=True)
class AgeBand:
    code: str
    label: str
    from_years: int
    to_years: int | None  # exclusive; None: no upper bound


@dataclass(frozen=True)
class Indicator:
    id: str
    name: str
    dhis2: str
    source: str
    encounter_class: str | None = None
    icd10: tuple[tuple[str, str], ...] = ()  # inclusive ranges of three-character categories
    finding: str | None = None  # a `screenings` indicator's: one of FINDINGS
    births: str | None = None  # a `deliveries` indicator's: one of BIRTH_COUNTS
    anc: str | None = None  # an `antenatal` indicator's: one of ANC_COUNTS
    vaccine: str | None = None  # an `immunizations` indicator's: a vaccine code of the schedule,
    dose_number: int | None = None  # its dose in the series,
    under_years: int | None = None  # and, where given, only to children younger than this when vaccinated
    tb_cases: str | None = None  # a `tb_outcomes` indicator's: one of TB_COUNTS
    hiv_count: str | None = None  # an `hiv_care` indicator's: one of HIV_COUNTS
    fp_measure: str | None = None  # a `family_planning` indicator's: one of FP_MEASURES,
    method_class: str | None = None  # and, where given, only methods of this class


@dataclass(frozen=True)
class Definitions:
    indicators: tuple[Indicator, ...]
    age_bands: tuple[AgeBand, ...]
    threshold: int
    # policies/family_planning.toml beside the definitions, read when an indicator counts family planning
    family_planning: Programme | None = None
    # policies/immunization.toml beside them, read when an indicator counts doses: the schedule that judges a dose
    immunization: Schedule | None = None

    @property
    def cells(self) -> list[Cell]:
        return [(sex, band.code) for sex, _ in SEXES for band in self.age_bands]

    def band_of(self, years: int) -> str:
        for band in self.age_bands:
            if years >= band.from_years and (band.to_years is None or years < band.to_years):
                return band.code
        return self.age_bands[0].code  # a birth date recorded after the event: the youngest band

    def indicator(self, indicator_id: str) -> Indicator:
        for indicator in self.indicators:
            if indicator.id == indicator_id:
                return indicator
        raise IndicatorError(f"no indicator {indicator_id!r}; the indicators are "
                             f"{', '.join(i.id for i in self.indicators)}")


def load_definitions(path: Path) -> Definitions:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise IndicatorError(f"{path}: {exc}") from exc
    section = data.get("disclosure")
    written = section.get("threshold") if isinstance(section, dict) else None
    if not isinstance(written, int) or isinstance(written, bool):
        raise IndicatorError(f"{path}: [disclosure] threshold must be a whole number, the smallest count shown (a "
                             f"smaller one is withheld), not {'nothing' if written is None else repr(written)}")
    try:
        threshold = disclosure.threshold_of(data)
        bands = tuple(_age_band(number, band) for number, band in enumerate(_listed(data, "age_band"), 1))
        indicators = tuple(_listed_indicator(number, item) for number, item in enumerate(_listed(data, "indicator"), 1))
    except ValueError as exc:  # each says which band or indicator, and what is wrong with it
        raise IndicatorError(f"{path}: {exc}") from exc
    if not bands or bands[0].from_years != 0 or bands[-1].to_years is not None or any(
            a.to_years != b.from_years for a, b in itertools.pairwise(bands)):
        raise IndicatorError(f"{path}: the age bands must run from 0 without gaps, the last one open")
    ids = [i.id for i in indicators]
    if len(set(ids)) != len(ids):
        raise IndicatorError(f"{path}: indicator ids must be unique")
    programme = None
    if any(i.source == "family_planning" for i in indicators):
        try:
            programme = load_programme(_policy_beside(path, "family_planning.toml"))
        except ValueError as exc:
            raise IndicatorError(f"{path}: its family planning indicators need {exc}") from exc
    return Definitions(indicators, bands, threshold, programme, _schedule_beside(path, indicators))


def _policy_beside(path: Path, name: str) -> Path:
    """The ministry's policy file `name` beside its indicators; a copy of the indicators kept elsewhere (an edited
    copy compared with the live one) reads the one the appliance ships."""
    beside = Path(path).parent / name
    return beside if beside.exists() else PROJECT_ROOT / "policies" / name


def _schedule_beside(path: Path, indicators: tuple[Indicator, ...]) -> Schedule | None:
    """The immunization schedule, when an indicator counts doses: a dose counts by the schedule's judgement, so each
    counted vaccine and dose must be one of it."""
    counted = [i for i in indicators if i.source == "immunizations"]
    if not counted:
        return None
    try:
        schedule = load_schedule(_policy_beside(path, "immunization.toml"))
    except ScheduleError as exc:
        raise IndicatorError(f"{path}: its immunization indicators need {exc}") from exc
    for indicator in counted:
        vaccine = schedule.by_code.get(indicator.vaccine)
        if vaccine is None or indicator.dose_number > vaccine.doses:
            raise IndicatorError(
                f"{path}: indicator {indicator.id!r} counts {indicator.vaccine} dose {indicator.dose_number}, a dose "
                f"the immunization schedule does not have (its vaccines: {', '.join(schedule.by_code)})")
    return schedule


def _listed(data: dict, table: str) -> list:
    listed = data.get(table)
    if not isinstance(listed, list) or not listed:
        raise ValueError(f"no [[{table}]] is listed")
    return listed


def _age_band(number: int, band: object) -> AgeBand:
    if not isinstance(band, dict):
        raise ValueError(f"age band number {number} is not a table of fields")
    missing = [field for field in ("code", "label", "from_years") if field not in band]
    if missing:
        raise ValueError(f"age band number {number}: {', '.join(missing)} missing")
    years = [band["from_years"], *([band["to_years"]] if band.get("to_years") is not None else [])]
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in years):
        raise ValueError(f"age band {band['code']!r}: from_years and to_years are whole numbers of years")
    return AgeBand(str(band["code"]), str(band["label"]), band["from_years"], band.get("to_years"))


def _listed_indicator(number: int, item: object) -> Indicator:
    if not isinstance(item, dict):
        raise ValueError(f"indicator number {number} is not a table of fields")
    named = repr(item["id"]) if "id" in item else f"number {number}"
    try:
        return _indicator(item)
    except KeyError as exc:
        raise ValueError(f"indicator {named}: {exc.args[0]} is missing") from exc
    except (TypeError, AttributeError) as exc:
        raise ValueError(f"indicator {named}: a field holds the wrong kind of value ({exc})") from exc


def _indicator(item: dict) -> Indicator:
    source = item["source"]
    if source not in SOURCES:
        raise ValueError(f"indicator {item['id']!r}: source {source!r} is not one of {', '.join(SOURCES)}")
    if source == "encounters":
        if item.get("encounter_class") not in ENCOUNTER_CLASSES:
            raise ValueError(f"indicator {item['id']!r}: encounter_class must be one of {', '.join(ENCOUNTER_CLASSES)}")
        return Indicator(item["id"], item["name"], item["dhis2"], source, encounter_class=item["encounter_class"])
    if source == "screenings":
        if item.get("finding") not in FINDINGS:
            raise ValueError(f"indicator {item['id']!r}: finding must be one of {', '.join(FINDINGS)}")
        return Indicator(item["id"], item["name"], item["dhis2"], source, finding=item["finding"])
    if source == "deliveries":
        if item.get("births") not in BIRTH_COUNTS:
            raise ValueError(f"indicator {item['id']!r}: births must be one of {', '.join(BIRTH_COUNTS)}")
        return Indicator(item["id"], item["name"], item["dhis2"], source, births=item["births"])
    if source == "family_planning":
        measure, method_class = item.get("measure"), item.get("method_class")
        if measure not in FP_MEASURES:
            raise ValueError(f"indicator {item['id']!r}: measure must be one of {', '.join(FP_MEASURES)}")
        if method_class is not None and method_class not in FP_METHOD_CLASSES:
            raise ValueError(f"indicator {item['id']!r}: method_class must be one of "
                             f"{', '.join(FP_METHOD_CLASSES)}")
        return Indicator(item["id"], item["name"], item["dhis2"], source, fp_measure=measure,
                         method_class=method_class)
    if source == "tb_outcomes":
        if item.get("cases") not in TB_COUNTS:
            raise ValueError(f"indicator {item['id']!r}: cases must be one of {', '.join(TB_COUNTS)}")
        return Indicator(item["id"], item["name"], item["dhis2"], source, tb_cases=item["cases"])
    if source == "hiv_care":
        if item.get("count") not in HIV_COUNTS:
            raise ValueError(f"indicator {item['id']!r}: count must be one of {', '.join(HIV_COUNTS)}")
        return Indicator(item["id"], item["name"], item["dhis2"], source, hiv_count=item["count"])
    if source == "immunizations":
        return _immunization_indicator(item)
    if source == "antenatal":
        if item.get("anc") not in ANC_COUNTS:
            raise ValueError(f"indicator {item['id']!r}: anc must be one of {', '.join(ANC_COUNTS)}")
        return Indicator(item["id"], item["name"], item["dhis2"], source, anc=item["anc"])
    ranges = []
    for text in item["icd10"]:
        found = category_range(text)
        if found is None:
            raise ValueError(f"indicator {item['id']!r}: {text!r} is not an ICD-10 category range such as B50-B54")
        ranges.append(found)
    return Indicator(item["id"], item["name"], item["dhis2"], source, icd10=tuple(ranges))


def _immunization_indicator(item: dict) -> Indicator:
    vaccine, dose, under = item.get("vaccine"), item.get("dose_number"), item.get("under_years")
    if not isinstance(vaccine, str) or not _VACCINE.fullmatch(vaccine):
        raise ValueError(f"indicator {item['id']!r}: vaccine must be a vaccine code of policies/immunization.toml, "
                         "such as PENTA")
    for name, value in (("dose_number", dose), ("under_years", under)):
        if (value is not None or name == "dose_number") and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"indicator {item['id']!r}: {name} must be a whole number from 1, not {value!r}")
    return Indicator(item["id"], item["name"], item["dhis2"], "immunizations", vaccine=vaccine, dose_number=dose,
                     under_years=under)


# -- periods --------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Period:
    """A calendar month; each facility counts it in its own time zone."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Period:
        match = _PERIOD.fullmatch(text.strip())
        if not match or not 1 <= int(match[2]) <= 12 or int(match[1]) < 1900:
            raise IndicatorError(f"{text!r} is not a month; write it as YYYY-MM, e.g. 2026-10")
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def containing(cls, day: dt.date) -> Period:
        return cls(day.year, day.month)

    def previous(self) -> Period:
        return Period(self.year - 1, 12) if self.month == 1 else Period(self.year, self.month - 1)

    def bounds(self, timezone: str) -> tuple[dt.datetime, dt.datetime]:
        zone = zoneinfo.ZoneInfo(timezone)
        following = Period(self.year + 1, 1) if self.month == 12 else Period(self.year, self.month + 1)
        return (dt.datetime(self.year, self.month, 1, tzinfo=zone),
                dt.datetime(following.year, following.month, 1, tzinfo=zone))

    @property
    def value(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def dhis2(self) -> str:
        return f"{self.year:04d}{self.month:02d}"

    @property
    def label(self) -> str:
        return f"{calendar.month_name[self.month]} {self.year}"


# The furthest any clock is ahead of UTC (Kiribati's Line Islands, UTC+14): a facility counts its month
# on its own clock, so a month has begun for some facility once it has begun there.
FURTHEST_AHEAD = dt.timedelta(hours=14)


def begun_anywhere(now: dt.datetime) -> Period:
    """The latest month some clock on Earth has reached at `now`."""
    return Period.containing((now.astimezone(dt.UTC) + FURTHEST_AHEAD).date())


def today(db: Database) -> dt.date:
    """The ministry's today: the latest date any facility of this appliance has reached on its own
    clock (from 21:00 UTC on 30 November a Nairobi facility counts December), else UTC's."""
    now = dt.datetime.now(dt.UTC)
    zones = {t["timezone"] for t in list_tenants(db) if t["status"] == "active"}
    return max((now.astimezone(zoneinfo.ZoneInfo(zone)).date() for zone in zones), default=now.date())


def month_asked(text: str | None, today: dt.date) -> Period:
    """The month a person asked for (YYYY-MM), else the last whole month as of `today` (the ministry
    reports whole months); a month that has not begun on any clock is refused."""
    if not text:
        return Period.containing(today).previous()
    period = Period.parse(text)
    if period > max(Period.containing(today), begun_anywhere(dt.datetime.now(dt.UTC))):
        raise IndicatorError(f"{period.label} has not begun; choose this month or an earlier one")
    return period


# -- counting inside one facility -----------------------------------------------------------------

# A newborn's encounter alongside its mother's stay (the delivery's, `BORN_HERE`) is not an attendance or an
# admission of its own: counting it would add every birth to the month's admissions; births are counted apart.
_ENCOUNTERS = """
SELECT e.encounter_class AS what,
       date_part('year', age((e.started_at AT TIME ZONE :tz)::date, p.birth_date))::int AS years,
       p.sex, count(*) AS n
FROM encounter e
JOIN entry x ON x.id = e.entry_id
JOIN patient p ON p.id = e.patient_id
WHERE e.status IN ('arrived', 'in_progress', 'finished')
  AND e.started_at >= :start AND e.started_at < :end
  AND e.reason IS DISTINCT FROM :born_here
  AND NOT EXISTS (SELECT 1 FROM entry r WHERE r.root_id = x.root_id AND r.status = 'entered_in_error')
GROUP BY 1, 2, 3
"""

# A diagnosis counts in the month it was first recorded (its record's first version, `x.root_id`): the
# current version says what it is now, but a correction written later (provisional made confirmed, a
# code refined) is not a new case and does not move the case into the month of the correction.
_DIAGNOSES = """
WITH cases AS (
    SELECT w.what, x.patient_id, min(first.occurred_at) AS first_at
    FROM entry x
    JOIN entry first ON first.id = x.root_id
    JOIN condition c ON c.entry_id = x.id
    JOIN (VALUES {wanted}) AS w (what, low, high) ON substr(c.code, 1, 3) BETWEEN w.low AND w.high
    WHERE x.kind = 'condition' AND x.status <> 'entered_in_error'
      AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = x.id)
      AND c.verification IN ('confirmed', 'provisional')
      AND first.occurred_at >= :start AND first.occurred_at < :end
    GROUP BY w.what, x.patient_id
)
SELECT cases.what, date_part('year', age((cases.first_at AT TIME ZONE :tz)::date, p.birth_date))::int AS years,
       p.sex, count(*) AS n
FROM cases JOIN patient p ON p.id = cases.patient_id
GROUP BY 1, 2, 3
"""

# Children screened for acute malnutrition: a set of vital signs with a MUAC or an oedema finding (present,
# or looked for and absent), current and not entered in error, taken in the month (its record's first
# version: a corrected MUAC stays on the day it was measured) while the child was 6-59 months old, on the
# facility's calendar. Each child once a month, whatever the number of screenings, in the sex and age band
# of the first: severe if any screening met a severe criterion, moderate if none did and one met a moderate
# one. `first.kind` lets the month be found on the entry's (kind, occurred_at) index: a record's versions
# are all of one kind.
_SCREENINGS = """
WITH screening AS (
    SELECT x.patient_id, first.occurred_at AS screened_at, v.muac_mm, v.oedema
    FROM entry x
    JOIN entry first ON first.id = x.root_id
    JOIN vital_signs v ON v.entry_id = x.id
    JOIN patient p ON p.id = x.patient_id
    WHERE x.kind = 'vital_signs' AND first.kind = 'vital_signs' AND x.status <> 'entered_in_error'
      AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = x.id)
      AND (v.muac_mm IS NOT NULL OR v.oedema IS NOT NULL)
      AND first.occurred_at >= :start AND first.occurred_at < :end
      AND (SELECT date_part('year', a) * 12 + date_part('month', a)
           FROM age((first.occurred_at AT TIME ZONE :tz)::date, p.birth_date) AS a)
          BETWEEN :acute_from_months AND :acute_to_months
), child AS (
    SELECT patient_id, min(screened_at) AS first_at,
           bool_or(oedema IS TRUE OR muac_mm < :muac_severe_below) AS severe,
           bool_or(muac_mm < :muac_moderate_below) AS moderate_or_severe_muac
    FROM screening
    GROUP BY patient_id
)
SELECT f.what, date_part('year', age((child.first_at AT TIME ZONE :tz)::date, p.birth_date))::int AS years,
       p.sex, count(*) AS n
FROM child
JOIN patient p ON p.id = child.patient_id
CROSS JOIN LATERAL (VALUES ('screened', true), ('severe', child.severe),
                           ('moderate', child.moderate_or_severe_muac AND NOT child.severe)) AS f (what, met)
WHERE f.met
GROUP BY 1, 2, 3
"""


# Deaths certified (clinical/death.py): the certificates in force (not entered in error; a corrected one as
# corrected) whose time of death falls in the month on the facility's calendar and whose underlying cause as
# certified (the lowest used line of Part 1, the certifier's sequence, not ICD mortality coding) falls in the
# indicator's ICD-10 categories; at the age at death. One certificate per person, so each death once.
_DEATHS = """
SELECT w.what, date_part('year', age((d.died_at AT TIME ZONE :tz)::date, p.birth_date))::int AS years,
       p.sex, count(*) AS n
FROM entry x
JOIN death d ON d.entry_id = x.id
JOIN patient p ON p.id = x.patient_id
JOIN (VALUES {wanted}) AS w (what, low, high) ON substr(d.underlying_code, 1, 3) BETWEEN w.low AND w.high
WHERE x.kind = 'death' AND x.status <> 'entered_in_error'
  AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = x.id)
  AND d.died_at >= :start AND d.died_at < :end
GROUP BY 1, 2, 3
"""


# Doses of vaccine given here (clinical/immunization.py), the EPI tally: the doses in force (not entered in error;
# a corrected one as corrected, on its corrected day: the current version's own time) given in the month on the
# facility's calendar, of the indicator's vaccine and dose number, at the child's age on the day. Given here only:
# a dose recorded from a child's card or another facility's record (`historical`) was counted where it was given,
# and a dose due and not given is none. Only a dose the child's card counts (`immunization.doses_that_count`, the
# schedule's one judgement): a dose given too early, from an expired lot, or again after the dose it repeats is
# recorded and not counted, so Penta3 and MCV1 count children protected, each once.
_IMMUNIZATIONS = """
SELECT x.id, x.patient_id, p.birth_date, w.what,
       date_part('year', age((x.occurred_at AT TIME ZONE :tz)::date, p.birth_date))::int AS years, p.sex
FROM entry x
JOIN immunization i ON i.entry_id = x.id
JOIN patient p ON p.id = x.patient_id
JOIN (VALUES {wanted}) AS w (what, vaccine, dose, under_years) ON i.vaccine = w.vaccine AND i.dose_number = w.dose
WHERE x.kind = 'immunization' AND x.status <> 'entered_in_error'
  AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = x.id)
  AND i.status = 'completed' AND i.source = 'administered'
  AND x.occurred_at >= :start AND x.occurred_at < :end
  AND (w.under_years IS NULL
       OR age((x.occurred_at AT TIME ZONE :tz)::date, p.birth_date) < make_interval(years => w.under_years))
"""


@dataclass(frozen=True)
class _Tally:
    """Doses counted of one indicator in one cell, as the grouped statements of the other sources answer."""

    what: str
    years: int
    sex: str
    n: int


def _counted_doses(conn: sa.Connection, wanted: list[Indicator], params: dict, schedule: Schedule) -> list[_Tally]:
    """The month's doses of the indicators `wanted` that count on each child's card, by indicator, age and sex."""
    given = conn.execute(sa.text(_IMMUNIZATIONS.format(wanted=_doses_wanted(wanted, params))), params).all()
    valid = immunization.doses_that_count(conn, {row.patient_id: row.birth_date for row in given},
                                          schedule=schedule, tz=zoneinfo.ZoneInfo(params["tz"]))
    tallies: dict[tuple[str, int, str], int] = {}
    for row in given:
        if row.id in valid:
            tallies[(row.what, row.years, row.sex)] = tallies.get((row.what, row.years, row.sex), 0) + 1
    return [_Tally(what, years, sex, n) for (what, years, sex), n in tallies.items()]


def _doses_wanted(wanted: list[Indicator], params: dict) -> str:
    """The VALUES rows of (indicator, vaccine, dose, under_years), their values added to `params`."""
    for n, indicator in enumerate(wanted):
        params |= {f"imm_what{n}": indicator.id, f"imm_vaccine{n}": indicator.vaccine,
                   f"imm_dose{n}": indicator.dose_number, f"imm_under{n}": indicator.under_years}
    return ", ".join(f"(CAST(:imm_what{n} AS text), CAST(:imm_vaccine{n} AS text), CAST(:imm_dose{n} AS int), "
                     f"CAST(:imm_under{n} AS int))" for n in range(len(wanted)))


# Births at the facility (clinical/delivery.py): the deliveries in force (a corrected one as corrected; one
# entered in error not at all) whose time of birth falls in the month on the facility's calendar. A delivery
# counts once, at the mother's age; each baby counts in the youngest band under its own sex (a baby whose sex
# could not be told in "other or unknown"), a stillborn baby as much as a live-born one, who has no chart here.
_DELIVERIES = """
WITH delivered AS (
    SELECT d.mode, d.babies, d.born_at, p.sex, p.birth_date
    FROM entry x
    JOIN delivery d ON d.entry_id = x.id
    JOIN patient p ON p.id = x.patient_id
    WHERE x.kind = 'delivery' AND x.status <> 'entered_in_error'
      AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = x.id)
      AND d.born_at >= :start AND d.born_at < :end
)
SELECT f.what, date_part('year', age((born_at AT TIME ZONE :tz)::date, birth_date))::int AS years, sex,
       count(*) AS n
FROM delivered
CROSS JOIN LATERAL (VALUES ('deliveries', true), ('caesarean', mode = 'caesarean')) AS f (what, met)
WHERE f.met
GROUP BY 1, 2, 3
UNION ALL
SELECT f.what, 0 AS years, b ->> 'sex' AS sex, count(*) AS n
FROM delivered
CROSS JOIN LATERAL jsonb_array_elements(babies) AS b
CROSS JOIN LATERAL (VALUES ('live_births', b ->> 'outcome' = 'live_birth'),
                           ('stillbirths', b ->> 'outcome' <> 'live_birth'),
                           ('fresh_stillbirths', b ->> 'outcome' = 'fresh_stillbirth'),
                           ('macerated_stillbirths', b ->> 'outcome' = 'macerated_stillbirth'),
                           ('low_birth_weight', b ->> 'outcome' = 'live_birth'
                                                AND (b ->> 'weight_g')::int < :low_birth_weight_below)) AS f (what, met)
WHERE f.met
GROUP BY 1, 2, 3
"""


# Antenatal care contacts (clinical/antenatal.py) in force (a corrected one as corrected, on its corrected day; one
# entered in error not at all) on a day of the month on the facility's calendar, each numbered in its pregnancy among
# the pregnancy's contacts in force (all of them, the earlier months' too). ANC1 is a pregnancy's first contact, ANC4
# and ANC8 its fourth and eighth (a woman reaching her fourth contact in the month counts there once); the syphilis
# counts are a pregnancy's first contact with a test done, and its first with a positive one. At the woman's age on
# the day of the contact. Only pregnancies with a contact in the month are read.
_ANTENATAL = """
WITH month AS (
    SELECT DISTINCT a.pregnancy_id
    FROM entry x JOIN antenatal a ON a.entry_id = x.id
    WHERE x.kind = 'antenatal' AND x.occurred_at >= :start AND x.occurred_at < :end
), contact AS (
    SELECT x.patient_id, x.occurred_at, a.gestation_days, a.syphilis_test,
           row_number() OVER w AS number,
           count(*) FILTER (WHERE a.syphilis_test <> 'not_done') OVER w AS tests,
           count(*) FILTER (WHERE a.syphilis_test = 'positive') OVER w AS positives
    FROM entry x
    JOIN antenatal a ON a.entry_id = x.id
    JOIN month m ON m.pregnancy_id = a.pregnancy_id
    WHERE x.kind = 'antenatal' AND x.status <> 'entered_in_error'
      AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = x.id)
    WINDOW w AS (PARTITION BY a.pregnancy_id ORDER BY x.occurred_at, x.recorded_at)
)
SELECT f.what, date_part('year', age((c.occurred_at AT TIME ZONE :tz)::date, p.birth_date))::int AS years, p.sex,
       count(*) AS n
FROM contact c
JOIN patient p ON p.id = c.patient_id
CROSS JOIN LATERAL (VALUES ('anc1', c.number = 1),
                           ('anc1_before_12_weeks', c.number = 1 AND c.gestation_days < :anc1_before_days),
                           ('anc4', c.number = 4), ('anc8', c.number = 8),
                           ('syphilis_tested', c.syphilis_test <> 'not_done' AND c.tests = 1),
                           ('syphilis_positive', c.syphilis_test = 'positive' AND c.positives = 1)) AS f (what, met)
WHERE f.met AND c.occurred_at >= :start AND c.occurred_at < :end
GROUP BY 1, 2, 3
"""


# Family planning visits (clinical/family_planning.py) in force (a corrected one as corrected, on its corrected day;
# one entered in error not at all) that provided a method, on a day of the month on the facility's calendar: each
# visit's method, client type, client and quantity, at the client's age on the day. The counting is `_family_planning`
# below, with the programme's classes and CYP factors (policies/family_planning.toml), which SQL inside the
# facility's schema cannot read. A removal provides nothing and counts for nothing.
_FAMILY_PLANNING = """
SELECT f.method, f.client_type, f.quantity, x.patient_id, p.sex,
       date_part('year', age((x.occurred_at AT TIME ZONE :tz)::date, p.birth_date))::int AS years
FROM entry x
JOIN family_planning f ON f.entry_id = x.id
JOIN patient p ON p.id = x.patient_id
WHERE x.kind = 'family_planning' AND x.status <> 'entered_in_error'
  AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = x.id)
  AND f.service = 'provided' AND x.occurred_at >= :start AND x.occurred_at < :end
ORDER BY x.occurred_at, x.recorded_at
"""


def _family_planning(conn, params: dict, wanted: list[Indicator],
                     definitions: Definitions) -> dict[str, dict[Cell, int]]:
    """The month's family planning figures by (sex, age band): a client count counts each client once (at her age at
    her first such visit of the month); CYP sums each cell's visits exactly (quantity times the method's factor) and
    reports it in tenths, rounded half up once per cell (`family_planning_policy.tenths`), so a facility's cells add
    up to its total to within a tenth per cell."""
    programme = definitions.family_planning
    clients: dict[str, dict[Cell, set]] = {i.id: {} for i in wanted}
    protection: dict[str, dict[Cell, Fraction]] = {i.id: {} for i in wanted}
    seen: dict[str, set] = {i.id: set() for i in wanted}
    for row in conn.execute(sa.text(_FAMILY_PLANNING), params):
        method = programme.by_code.get(row.method)
        if method is None:  # a method since taken out of the programme: no class or factor to count it by
            continue
        cell = (SEX_CODE.get(row.sex, "U"), definitions.band_of(row.years))
        for indicator in wanted:
            if indicator.method_class is not None and method.method_class != indicator.method_class:
                continue
            if indicator.fp_measure == "cyp":
                figures = protection[indicator.id]
                figures[cell] = figures.get(cell, Fraction(0)) + cyp(method, row.quantity)
            elif row.client_type == FP_CLIENT_TYPE[indicator.fp_measure] and row.patient_id not in seen[indicator.id]:
                seen[indicator.id].add(row.patient_id)
                clients[indicator.id].setdefault(cell, set()).add(row.patient_id)
    counted: dict[str, dict[Cell, int]] = {}
    for indicator in wanted:
        if indicator.fp_measure == "cyp":
            counted[indicator.id] = {cell: tenths(value) for cell, value in protection[indicator.id].items()
                                     if tenths(value)}
        else:
            counted[indicator.id] = {cell: len(people) for cell, people in clients[indicator.id].items()}
    return counted


# New and relapse TB cases (clinical/tuberculosis.py; WHO 2013 definitions) whose treatment started in the month on the
# facility's calendar, each registration in force once as registered and once more under its outcome if one is
# assigned (as corrected; a registration entered in error not at all), at the patient's age when treatment started.
# By the month of the start, not of the outcome: the quarterly cohort is the cases started in the quarter, so the
# ministry sums three months and divides (treatment success = (cured + completed) / registered) once the cohort's
# outcomes are in, 12 months on. A month's outcome counts grow as outcomes are assigned; a package sent again later
# carries them.
_TB_OUTCOMES = """
SELECT f.what, date_part('year', age(t.started_on, p.birth_date))::int AS years, p.sex, count(*) AS n
FROM entry x
JOIN tb_treatment t ON t.entry_id = x.id
JOIN patient p ON p.id = x.patient_id
CROSS JOIN LATERAL (VALUES ('registered'), (t.outcome)) AS f (what)
WHERE x.kind = 'tb_treatment' AND x.status <> 'entered_in_error'
  AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = x.id)
  AND t.history IN ('new', 'relapse') AND f.what IS NOT NULL
  AND t.started_on >= (CAST(:start AS timestamptz) AT TIME ZONE :tz)::date
  AND t.started_on < (CAST(:end AS timestamptz) AT TIME ZONE :tz)::date
GROUP BY 1, 2, 3
"""


# People in HIV care (clinical/hiv.py), each enrolment in force once (one entered in error not at all; the status in
# care as corrected), on the facility's calendar. The rules are the clinical layer's, passed in, not repeated: the
# last expected contact is the later of the last visit's next appointment and the day its ARVs ran out (the day ART
# started before any visit), counted from the last visit before the month ended; an interruption begins the 29th
# day after it (hiv.IIT_AFTER_DAYS). tx_new: ART started (the initiation in force) in the month, at the age that day.
# tx_curr: ART started by the month's last day, still in care that day (not transferred out, stopped or died by
# then, nor certified dead by then at any facility, whatever the status in care says) and not interrupted on it, at the
# age that day. tx_pvls_d: of those, the ones with a viral load sampled in the
# 12 months to the month's end; tx_pvls_n: their latest result below hiv.SUPPRESSED_BELOW; each again by that latest
# result's indication (tx_pvls_d_routine, tx_pvls_n_targeted...). iit: an interruption that
# began in the month and had not ended by its last day (MER's TX_ML for a month: on ART, then no contact).
_HIV_CARE = """
WITH bounds AS (
    SELECT (CAST(:start AS timestamptz) AT TIME ZONE :tz)::date AS s,
           (CAST(:end AS timestamptz) AT TIME ZONE :tz)::date - 1 AS last_day
), in_force AS (
    SELECT x.id, x.root_id, x.patient_id, x.kind, x.recorded_at FROM entry x
    WHERE x.kind IN ('hiv_care', 'hiv_regimen', 'hiv_visit', 'hiv_viral_load') AND x.status <> 'entered_in_error'
      AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = x.id)
), person AS (
    SELECT f.patient_id, c.status, c.status_on,
           (SELECT min(r.started_on) FROM in_force g JOIN hiv_regimen r ON r.entry_id = g.id
            WHERE r.care_id = f.root_id AND r.change = 'initiation') AS art_on,
           (SELECT GREATEST(v.next_appointment_on, v.visit_on + v.arv_days) FROM in_force g
            JOIN hiv_visit v ON v.entry_id = g.id, bounds b
            WHERE v.care_id = f.root_id AND v.visit_on <= b.last_day
            ORDER BY v.visit_on DESC, g.recorded_at DESC LIMIT 1) AS visit_expected,
           vl.last_copies, vl.last_indication,
           (SELECT min((d.died_at AT TIME ZONE d.timezone)::date) FROM patient pt,
                   control.subject_death_of(pt.subject_id, pt.id) d WHERE pt.id = f.patient_id) AS died_on
    FROM in_force f JOIN hiv_care c ON c.entry_id = f.id
    LEFT JOIN LATERAL (
        SELECT l.copies_per_ml AS last_copies, l.indication AS last_indication
        FROM in_force g JOIN hiv_viral_load l ON l.entry_id = g.id, bounds b
        WHERE l.care_id = f.root_id AND l.sampled_on <= b.last_day
          AND l.sampled_on > b.last_day - interval '12 months'
        ORDER BY l.sampled_on DESC, g.recorded_at DESC LIMIT 1) AS vl ON true
), standing AS (
    SELECT p.*, b.s, b.last_day,
           COALESCE(p.visit_expected, p.art_on) + CAST(:iit_after AS integer) + 1 AS interrupted_from,
           (p.status = 'in_care' OR p.status_on > b.last_day)
               AND (p.died_on IS NULL OR p.died_on > b.last_day) AS in_care_then
    FROM person p, bounds b WHERE p.art_on IS NOT NULL AND p.art_on <= b.last_day
), counted AS (
    SELECT 'tx_new' AS what, st.patient_id, st.art_on AS age_on FROM standing st WHERE st.art_on >= st.s
    UNION ALL
    SELECT f.what, st.patient_id, st.last_day FROM standing st
    CROSS JOIN LATERAL (VALUES ('tx_curr'), (CASE WHEN st.last_copies IS NOT NULL THEN 'tx_pvls_d' END),
                               (CASE WHEN st.last_copies < :suppressed_below THEN 'tx_pvls_n' END),
                               ('tx_pvls_d_' || st.last_indication),
                               (CASE WHEN st.last_copies < :suppressed_below
                                     THEN 'tx_pvls_n_' || st.last_indication END)) AS f (what)
    WHERE st.in_care_then AND st.interrupted_from > st.last_day AND f.what IS NOT NULL
    UNION ALL
    SELECT 'iit', st.patient_id, st.interrupted_from FROM standing st
    WHERE st.in_care_then AND st.interrupted_from BETWEEN st.s AND st.last_day
)
SELECT k.what, date_part('year', age(k.age_on, p.birth_date))::int AS years, p.sex, count(*) AS n
FROM counted k JOIN patient p ON p.id = k.patient_id
GROUP BY 1, 2, 3
"""


def range_values(wanted: list[tuple[str, str, str]], params: dict, prefix: str) -> str:
    """The VALUES rows of (indicator, low, high) category ranges, their values added to `params`."""
    for n, (what, low, high) in enumerate(wanted):
        params |= {f"{prefix}what{n}": what, f"{prefix}low{n}": low, f"{prefix}high{n}": high}
    return ", ".join(f"(:{prefix}what{n}, :{prefix}low{n}, :{prefix}high{n})" for n in range(len(wanted)))


def count_facility(db: Database, slug: str, timezone: str, period: Period,
                   definitions: Definitions) -> dict[str, dict[Cell, int]]:
    """The month's raw counts of every indicator at one facility, by (sex, age band): counted in the
    facility's own transaction, which also records in its audit log that they were counted."""
    start, end = period.bounds(timezone)
    params = {"tz": timezone, "start": start, "end": end}
    counts: dict[str, dict[Cell, int]] = {indicator.id: {} for indicator in definitions.indicators}
    by_class: dict[str, list[str]] = {}
    wanted: list[tuple[str, str, str]] = []
    by_finding: dict[str, list[str]] = {}
    by_births: dict[str, list[str]] = {}
    by_anc: dict[str, list[str]] = {}
    died_of: list[tuple[str, str, str]] = []
    doses: list[Indicator] = []
    tb_counts: dict[str, list[str]] = {}
    hiv_counts: dict[str, list[str]] = {}
    contraception: list[Indicator] = []
    for indicator in definitions.indicators:
        if indicator.source == "encounters":
            by_class.setdefault(indicator.encounter_class, []).append(indicator.id)
        elif indicator.source == "screenings":
            by_finding.setdefault(indicator.finding, []).append(indicator.id)
        elif indicator.source == "deliveries":
            by_births.setdefault(indicator.births, []).append(indicator.id)
        elif indicator.source == "deaths":
            died_of += [(indicator.id, low, high) for low, high in indicator.icd10]
        elif indicator.source == "immunizations":
            doses.append(indicator)
        elif indicator.source == "tb_outcomes":
            tb_counts.setdefault(indicator.tb_cases, []).append(indicator.id)
        elif indicator.source == "hiv_care":
            hiv_counts.setdefault(indicator.hiv_count, []).append(indicator.id)
        elif indicator.source == "family_planning":
            contraception.append(indicator)
        elif indicator.source == "antenatal":
            by_anc.setdefault(indicator.anc, []).append(indicator.id)
        else:
            wanted += [(indicator.id, low, high) for low, high in indicator.icd10]
    with db.tenant(slug) as conn:
        found = [(by_class.get(row.what, []), row)
                 for row in conn.execute(sa.text(_ENCOUNTERS), {**params, "born_here": BORN_HERE})] if by_class else []
        if wanted:
            values = range_values(wanted, params, "")
            found += [([row.what], row) for row in conn.execute(sa.text(_DIAGNOSES.format(wanted=values)), params)]
        if died_of:
            values = range_values(died_of, params, "died_")
            found += [([row.what], row) for row in conn.execute(sa.text(_DEATHS.format(wanted=values)), params)]
        if doses:
            found += [([tally.what], tally) for tally in _counted_doses(conn, doses, params, definitions.immunization)]
        if by_births:
            found += [(by_births.get(row.what, []), row) for row in conn.execute(
                sa.text(_DELIVERIES), params | {"low_birth_weight_below": LOW_BIRTH_WEIGHT_BELOW_G})]
        if by_anc:
            found += [(by_anc.get(row.what, []), row) for row in conn.execute(
                sa.text(_ANTENATAL), params | {"anc1_before_days": ANC1_BEFORE_DAYS})]
        if tb_counts:
            found += [(tb_counts.get(row.what, []), row) for row in conn.execute(sa.text(_TB_OUTCOMES), params)]
        if hiv_counts:
            found += [(hiv_counts.get(row.what, []), row) for row in conn.execute(sa.text(_HIV_CARE), params | {
                "iit_after": hiv.IIT_AFTER_DAYS, "suppressed_below": hiv.SUPPRESSED_BELOW})]
        if by_finding:
            found += [(by_finding.get(row.what, []), row)
                      for row in conn.execute(sa.text(_SCREENINGS), params | SCREENING_CUTOFFS)]
        for ids, row in found:
            cell = (SEX_CODE.get(row.sex, "U"), definitions.band_of(row.years))
            for indicator_id in ids:
                counts[indicator_id][cell] = counts[indicator_id].get(cell, 0) + row.n
        if contraception:
            counts |= _family_planning(conn, params, contraception, definitions)
        audit.append(conn, tenant=slug, principal=None, event_type="national.count", action="R",
                     detail={"period": period.value, "indicators": [i.id for i in definitions.indicators]})
    return counts


# -- disclosure -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    """One facility's figure for one indicator, as it may leave the facility: None where withheld.

    A figure published under earlier age bands (see the module docstring) holds in `cells` only the
    cells of bands still defined, in `earlier` those of bands no longer defined, and names in `bands`
    the age bands it was published under; `bands` is empty for a figure under this appliance's own."""

    total: int | None
    cells: dict[Cell, int | None]
    earlier: dict[Cell, int | None] = field(default_factory=dict)
    bands: tuple[str, ...] = ()
    # Counts the package published that this appliance's threshold, raised since, withholds.
    withheld_by_raised_threshold: int = 0

    @property
    def withheld(self) -> int:
        return sum(value is None for value in (*self.cells.values(), *self.earlier.values()))

    @property
    def under_earlier_bands(self) -> bool:
        return bool(self.bands)

    def sex_total(self, sex: str) -> int | None:
        """Its figure for one sex, all ages: None (withheld) where any of its bands of that sex is."""
        values = [value for (of, _), value in (*self.cells.items(), *self.earlier.items()) if of == sex]
        return None if None in values else sum(values)

    def under(self, definitions: Definitions) -> Published:
        """The figure with its cells split between the bands `definitions` defines and the earlier ones:
        itself when its bands are theirs."""
        current = {band.code for band in definitions.age_bands}
        bands = tuple(dict.fromkeys(band for _, band in self.cells))
        if set(bands) == current:
            return Published(self.total, {cell: self.cells[cell] for cell in definitions.cells},
                             withheld_by_raised_threshold=self.withheld_by_raised_threshold)
        return Published(self.total, {cell: self.cells[cell] for cell in definitions.cells if cell in self.cells},
                         {cell: value for cell, value in self.cells.items() if cell[1] not in current}, bands,
                         self.withheld_by_raised_threshold)


def withhold(counts: dict[Cell, int], cells: Iterable[Cell], threshold: int) -> Published:
    """The disclosure rule (appliance/substrate/disclosure.py) on one facility's breakdown."""
    total, shown = disclosure.withhold({cell: counts.get(cell, 0) for cell in cells}, threshold)
    return Published(total, shown)


def withhold_published(figure: Published, threshold: int) -> Published:
    """The disclosure rule on a figure already published, under a threshold that may have been raised
    since: each published count under it is withheld, and then, as `withhold` does, the next smallest
    while one withheld cell stands beside the total or the withheld ones add up (total less the rest)
    to under the threshold. What was withheld stays withheld; the rest is unchanged."""
    total = None if figure.total is None or 0 < figure.total < threshold else figure.total
    shown = {cell: n for cell, n in figure.cells.items() if n is not None and not 0 < n < threshold}
    hidden = set(figure.cells) - set(shown)

    # Beside a withheld total every count is withheld already (each is under the total, under the threshold);
    # beside a published one, what is withheld adds up to the total less what is shown.
    while hidden and total is not None and (len(hidden) == 1 or total - sum(shown.values()) < threshold):
        smallest = sorted((n, cell) for cell, n in shown.items() if n > 0)
        if not smallest:
            break
        hidden.add(smallest[0][1])
        del shown[smallest[0][1]]
    newly = sum(figure.cells[cell] is not None for cell in hidden) + (total is None and figure.total is not None)
    return Published(total, {cell: None if cell in hidden else n for cell, n in figure.cells.items()},
                     figure.earlier, figure.bands, figure.withheld_by_raised_threshold + newly)


# -- across facilities ----------------------------------------------------------------------------


@dataclass
class Facility:
    slug: str
    name: str
    facility_type: str
    district: str
    region: str
    figures: dict[str, Published] = field(default_factory=dict)
    org_unit: str = ""  # the facility's DHIS2 organisation unit code (its tenant file's), else its slug
    source: str = ""  # the appliance that reported it (`federation`), empty for this appliance's own
    # The first month it records in (`records_in`); None where its package did not say (one made before it was
    # carried), which reads as recording, as such a package always did.
    recording_since: Period | None = None
    # Whether it recorded in the month these figures are of: one that did not yet has no figures, is in no sum,
    # and is sent to DHIS2 as nothing, so the figures an earlier system sent for that month stand.
    recording: bool = True

    def __post_init__(self) -> None:
        self.org_unit = self.org_unit or self.slug

    def figure(self, indicator_id: str) -> Published | None:
        """Its published figure, or None where its appliance did not count the indicator (not reported)."""
        return self.figures.get(indicator_id)


def records_in(since: Period | None, period: Period) -> bool:
    """Whether a facility recording from the month `since` (None: not known, so always) recorded in `period`:
    the one rule by which the national figures leave a facility's months before it out, rather than count
    them as zeros."""
    return since is None or period >= since


def recording(facilities: Iterable[Facility]) -> list[Facility]:
    """The facilities that recorded in the month they were gathered for."""
    return [facility for facility in facilities if facility.recording]


@dataclass
class Sum:
    """A sum of published figures, and how many facility figures it could not include: withheld by the
    disclosure rule, not reported (the facility's appliance does not count the indicator), or, in a sum
    by age band, published under earlier age bands (the facility's figure has no cell in this band).
    `recording` counts the facilities it is over; those not recording yet in the month are in none of it
    (`not_recording`), so a district of only such facilities has no sum, not a zero."""

    value: int = 0
    withheld: int = 0
    not_reported: int = 0
    earlier_bands: int = 0
    recording: int = field(default=0, compare=False)  # how many facilities it is over, not what it says of them
    not_recording: int = 0

    def add(self, figure: int | None) -> None:
        if figure is None:
            self.withheld += 1
        else:
            self.value += figure


def gather(db: Database, period: Period, definitions: Definitions, *,
           progress: Callable[[str], None] | None = None) -> list[Facility]:
    """Every active facility's published figures for the month, facility by facility; one that did not record
    in it yet (`records_in`) is listed without figures and not counted."""
    facilities = []
    for tenant in list_tenants(db):
        if tenant["status"] != "active":
            continue
        since = Period.containing(tenant["recording_since"])
        facility = Facility(tenant["slug"], tenant["name"], tenant["facility_type"], tenant["district"],
                            tenant["region"], org_unit=tenant["dhis2_org_unit"] or "", recording_since=since,
                            recording=records_in(since, period))
        if facility.recording:
            counts = count_facility(db, tenant["slug"], tenant["timezone"], period, definitions)
            for indicator in definitions.indicators:
                facility.figures[indicator.id] = withhold(counts[indicator.id], definitions.cells,
                                                          definitions.threshold)
        facilities.append(facility)
        if progress is not None:
            progress(tenant["slug"])
    return facilities


def _counted_into(into: Sum, facility: Facility) -> bool:
    """Whether the facility counts into a sum of its month, noted on the sum either way."""
    if facility.recording:
        into.recording += 1
    else:
        into.not_recording += 1
    return facility.recording


def total(facilities: Iterable[Facility], indicator_id: str) -> Sum:
    result = Sum()
    for facility in facilities:
        if not _counted_into(result, facility):
            continue
        figure = facility.figure(indicator_id)
        if figure is None:
            result.not_reported += 1
        else:
            result.add(figure.total)
    return result


def breakdown(facilities: Iterable[Facility], indicator_id: str, definitions: Definitions) -> dict[Cell, Sum]:
    sums = {cell: Sum() for cell in definitions.cells}
    for facility in facilities:
        figure = facility.figure(indicator_id)
        for cell, cell_sum in sums.items():
            if not _counted_into(cell_sum, facility):
                continue
            if figure is None:
                cell_sum.not_reported += 1
            elif cell in figure.cells:
                cell_sum.add(figure.cells[cell])
            else:
                cell_sum.earlier_bands += 1
    return sums


def by_sex(facilities: Iterable[Facility], indicator_id: str) -> dict[str, Sum]:
    """Sums by sex, all ages: a figure published under earlier age bands counts here as any other."""
    sums = {sex: Sum() for sex, _ in SEXES}
    for facility in facilities:
        figure = facility.figure(indicator_id)
        for sex, sex_sum in sums.items():
            if not _counted_into(sex_sum, facility):
                continue
            if figure is None:
                sex_sum.not_reported += 1
            else:
                sex_sum.add(figure.sex_total(sex))
    return sums


def districts(facilities: Iterable[Facility]) -> dict[tuple[str, str], list[Facility]]:
    """Facilities by (region, district), in order."""
    grouped: dict[tuple[str, str], list[Facility]] = {}
    for facility in facilities:
        grouped.setdefault((facility.region, facility.district), []).append(facility)
    return dict(sorted(grouped.items()))


def regions(facilities: Iterable[Facility]) -> dict[str, dict[str, list[Facility]]]:
    """Facilities by region, then by district within it, in order."""
    grouped: dict[str, dict[str, list[Facility]]] = {}
    for (region, district), members in districts(facilities).items():
        grouped.setdefault(region, {})[district] = members
    return grouped


# -- exports --------------------------------------------------------------------------------------

CSV_COLUMNS = ["period", "indicator", "dhis2_data_element", "facility", "facility_name", "district", "region",
               "sex", "age_band", "value", "withheld", "dhis2_org_unit", "reported_by", "reported",
               "earlier_age_bands"]


def to_csv(facilities: list[Facility], period: Period, definitions: Definitions) -> str:
    """One row per facility, indicator and cell (and its total, sex and age band "all"); a withheld
    figure has an empty value and withheld = yes; `reported_by` names the appliance a facility's figures
    came from, empty for this appliance's own. An indicator a facility's appliance did not count has
    reported = no, an empty value and an empty withheld (it was neither published nor withheld).
    A figure published under earlier age bands has earlier_age_bands = yes on the rows of its cells in
    bands no longer defined (their values as published, under their own band codes) and on the rows of
    this appliance's bands it has no cell in (empty value, empty withheld); every other row says no.
    A facility not recording yet in the month has no row, as it has no value in the DHIS2 file."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for facility in recording(facilities):
        for indicator in definitions.indicators:
            figure = facility.figure(indicator.id)
            head = [period.value, indicator.id, indicator.dhis2, facility.slug, facility.name, facility.district,
                    facility.region]
            if figure is None:
                for sex, band in [("all", "all"), *definitions.cells]:
                    writer.writerow([*head, sex, band, "", "", facility.org_unit, facility.source, "no", ""])
                continue
            rows = [(("all", "all"), figure.total, "no"),
                    *((cell, figure.cells[cell], "no") for cell in definitions.cells if cell in figure.cells),
                    *((cell, figure.earlier[cell], "yes") for cell in figure.earlier)]
            for (sex, band), value, earlier in rows:
                writer.writerow([*head, sex, band, "" if value is None else value, "yes" if value is None else "no",
                                 facility.org_unit, facility.source, "yes", earlier])
            for cell in (cell for cell in definitions.cells if cell not in figure.cells):
                writer.writerow([*head, *cell, "", "", facility.org_unit, facility.source, "yes", "yes"])
    return out.getvalue()


def to_dhis2(facilities: list[Facility], period: Period, definitions: Definitions) -> dict:
    """A DHIS2 `dataValueSet` naming everything by its code (idScheme CODE, said in the file): a data value
    per facility, indicator and published cell; withheld cells, and indicators a facility's appliance did
    not count, are left out, so DHIS2 shows them as missing, never as zero. So are the cells of a figure
    published under earlier age bands in bands no longer defined here: their category option combos are not
    the data set's now, and DHIS2 would report each as a conflict, or refuse the whole import over them
    (atomicMode=ALL). A facility not recording yet in the month sends nothing, not zeros, so DHIS2 keeps what
    the system it recorded in then sent for it."""
    values = []
    for facility in recording(facilities):
        for indicator in definitions.indicators:
            figure = facility.figure(indicator.id)
            for (sex, band), value in (figure.cells.items() if figure is not None else ()):
                if value is not None:
                    values.append({"dataElement": indicator.dhis2, "period": period.dhis2, "orgUnit": facility.org_unit,
                                   "categoryOptionCombo": f"{sex}_{band}", "value": str(value)})
    # DHIS2 reads identifiers as its own UIDs unless told otherwise, and would refuse every value of a file of
    # codes as naming no data element or organisation unit; the file says so itself, so an import from the
    # Import/Export app or the API needs no option chosen (a scheme in the payload takes precedence).
    return {"idScheme": "CODE", "dataElementIdScheme": "CODE", "orgUnitIdScheme": "CODE",
            "categoryOptionComboIdScheme": "CODE", "period": period.dhis2, "dataValues": values}


def record_use(db: Database, principal: Principal | None, action: str, period: Period, facilities: int,
               export_format: str | None = None) -> None:
    """The appliance's audit log: who looked at or took away which month's national figures."""
    detail = {"period": period.value, "facilities": facilities}
    if export_format:
        detail["format"] = export_format
    with db.control() as conn:
        audit.append(conn, tenant=None, principal=principal,
                     event_type="national.indicators.export" if export_format else "national.indicators.read",
                     action=action, detail=detail)
