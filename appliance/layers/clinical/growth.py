"""Child growth and acute malnutrition screening: the clinical layer's reading of a child's weight,
length/height, mid-upper-arm circumference (MUAC) and bilateral pitting oedema against the WHO Child
Growth Standards, as district hospitals and nutrition programmes screen every child under five.

Computed on read, from the vital signs in the record and the birth date on the registration: nothing is
stored and nothing is added to the write path of vital signs, so a corrected birth date or a corrected
weight corrects every z-score at the next read. A child's age at a measurement is counted on the facility's
calendar (its time zone), as the national indicators count it: a MUAC taken at 01:00 in Nairobi is taken
on that day, not on the evening before in UTC, which at a band's edge is another age.

Sources:

- **WHO Child Growth Standards** (WHO Multicentre Growth Reference Study Group, 2006): weight-for-age,
  length/height-for-age and BMI-for-age, birth to five years (length lying to 2 years, height standing
  after), and the **WHO Growth Reference 2007** (de Onis et al., Bull WHO 2007;85:660-7) from 5 to 19
  years (weight-for-age to 10 years only). The LMS tables are those shipped by `rcpchgrowth` (RCPCH) in
  its wheel, which also applies WHO's restricted computation beyond ±3 SD; nothing is downloaded.
- **Bands**: WHO 2006 cut-offs — z < -3 severely underweight / severely stunted / severely wasted,
  z < -2 underweight / stunted / wasted; BMI-for-age z > +1 possible risk of overweight, > +2 overweight,
  > +3 obese under five; from five years the WHO 2007 reference's thinness (< -2, severe < -3),
  overweight (> +1) and obesity (> +2).
- **Acute malnutrition**, 6-59 months: the WHO/UNICEF joint statement *WHO child growth standards and the
  identification of severe acute malnutrition in infants and children* (2009): severe (SAM) when MUAC
  < 115 mm, or the wasting z-score < -3, or bilateral pitting oedema; moderate (MAM, WHO 2012 technical
  note) when MUAC is 115-124 mm or the wasting z-score lies in [-3, -2).
- **Grade of bilateral pitting oedema**, where it was graded: + both feet, ++ both feet and the lower legs,
  hands or lower arms, +++ generalised, including the face (the grades as WHO's guidance teaches them, e.g.
  the MaLEn course, University of Southampton and WHO, module 2 unit 1). Any grade is severe acute
  malnutrition, as oedema present is in the 2009 statement, so the status does not change with the grade.
  The WHO guideline *Updates on the management of severe acute malnutrition in infants and children* (2013,
  its recommendations carried into the 2023 guideline on wasting and nutritional oedema) treats a child of
  6-59 months with severe oedema (+++) as an inpatient (WHO eLENA, "Identification of severe acute
  malnutrition requiring inpatient care"); the criterion of a +++ finding says so. What else decides inpatient
  care there (medical complications, the appetite test, IMCI danger signs) the record does not hold, so no
  inpatient or outpatient status is computed; nor is a rule some national protocols add for ++ with severe
  wasting, which the WHO texts consulted do not state.

- **A baby born preterm** (before 37 completed weeks, WHO's preterm) is read at its age corrected for
  prematurity, its chronological age less the weeks it was born short of 40, until it is two years old: the WHO
  standards describe babies born at term, and "the WHO Child Growth Standards should be used with corrected age
  for preterm infants up to 24 months" (WHO/UNICEF, *Recommendations for data collection, analysis and reporting
  on anthropometric indicators in children under 5 years old*, 2019, as RCPCH's charts also correct to 2 years).
  Until its corrected age reaches term the standards have no reading for it (a 1450 g baby of 30 weeks, well
  grown for its gestation, read "severely underweight", WAZ -4.8, against babies born at 40 weeks). The
  gestation at birth is the delivery's that registered the baby here (clinical/delivery.py), read on the
  mother's record and noted there; a baby born elsewhere has none and is read at its chronological age.

What `rcpchgrowth` does not cover: weight-for-length/height (WHZ), which is not age-based, has no table in
it (only weight, height, BMI and head circumference against age). BMI-for-age (BAZ), which the WHO 2006
standards publish for the same children and WHO accepts as the wasting index, stands in for WHZ here; the
answer says so (`wasting_index`). A set of vital signs gives a BMI only when it holds both weight and
height: measurements from different sets are not combined.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import uuid
import zoneinfo
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.clinical import delivery
from appliance.layers.clinical.errors import Invalid, NotFound
from appliance.layers.clinical.models import patient, vital_signs
from appliance.layers.clinical.service import RECORD_OCCURRED_AT, current_rows
from appliance.substrate.age import months_on, years_on
from appliance.substrate.principal import Principal
from appliance.substrate.record import note_access

STANDARDS = ("WHO Child Growth Standards 2006 (0-5 years), WHO Growth Reference 2007 (5-19 years), "
             "WHO/UNICEF 2009 joint statement on severe acute malnutrition")
WASTING_INDEX = "BMI-for-age"  # WHZ has no table in rcpchgrowth; see the module docstring
DAYS_A_YEAR = 365.25  # rcpchgrowth's decimal age, which its daily WHO tables are indexed by
UNDER_FIVE_MONTHS = 60
ACUTE_FROM_MONTHS, ACUTE_TO_MONTHS = 6, 59  # the joint statement's age range
OLDEST_YEARS = 19  # the WHO 2007 reference ends at 19 years
MUAC_SEVERE_BELOW_MM, MUAC_MODERATE_BELOW_MM = 115, 125
UTC = zoneinfo.ZoneInfo("UTC")  # for a caller that does not know the facility's zone
POINTS = 500  # a child's sets of measurements read, newest first: years of monthly visits
MEASURES = {"weight_for_age": ("weight", "WAZ"), "height_for_age": ("height", "HAZ"),
            "bmi_for_age": ("bmi", "BAZ")}
ACUTE_STATUS_WORDS = {"severe": "severe acute malnutrition", "moderate": "moderate acute malnutrition",
                      "none": "no acute malnutrition"}
# The record's oedema_grade: its sign and how far the oedema extends (see the module docstring).
OEDEMA_GRADES = {1: ("+", "both feet"), 2: ("++", "both feet and the lower legs, hands or lower arms"),
                 3: ("+++", "generalised, including the face")}
SEVERE_OEDEMA_GRADE = 3  # WHO 2013: severe oedema (+++) is treated as an inpatient
TERM_DAYS = 280  # 40 weeks: the gestation the WHO standards' babies were born at, from which an age is corrected
CORRECTED_UNTIL_MONTHS = 24  # WHO/UNICEF 2019: corrected age for preterm infants up to 24 months


class NotApplicable(Invalid):
    """The WHO standards cannot be applied to this patient (adult, or sex not recorded as female/male)."""


@dataclass(frozen=True)
class Subject:
    patient_id: uuid.UUID
    birth_date: dt.date
    birth_date_estimated: bool
    sex: str
    born_at_gestation_days: int | None = None  # born preterm here: the gestation at birth, in days

    def corrected_age_days(self, age_days: int, age_months: int) -> int | None:
        """The age the standards read a measurement at, corrected for prematurity, or None where no correction
        applies (born at term or elsewhere, or two years old)."""
        if self.born_at_gestation_days is None or age_months >= CORRECTED_UNTIL_MONTHS:
            return None
        return age_days - (TERM_DAYS - self.born_at_gestation_days)


def _reference():
    # Imported on first use, not with the clinical layer: the library loads its WHO tables (about 2 MB
    # of JSON) and scipy as it is imported, which every process would otherwise pay at start.
    from rcpchgrowth import global_functions

    return global_functions


def age_in_days(birth_date: dt.date, on: dt.date) -> int:
    return (on - birth_date).days


def z_score(measure: str, sex: str, age_days: int, value: float) -> float | None:
    """The z-score of `value` for a child of `sex` ("female"/"male") `age_days` old, on the WHO standard
    (to 5 years) or reference (5-19 years) for `measure` ("weight", "height", "bmi"); None where WHO has no
    table (weight after 10 years, before birth, after 19 years)."""
    if age_days < 0 or value <= 0:
        return None
    try:
        return float(_reference().sds_for_measurement(reference="who", age=age_days / DAYS_A_YEAR,
                                                      measurement_method=measure, observation_value=value,
                                                      sex=sex))
    except LookupError:
        return None


def centile(z: float) -> float:
    return float(_reference().centile(z))


@functools.cache
def reference_curve(measure: str, sex: str, z: float, months_to: int) -> tuple[tuple[float, float], ...]:
    """The WHO line at `z` SD for `measure` from birth to `months_to` months, a point a month (a point a
    day would be no truer at a chart's scale): (age in months, value) pairs."""
    points = []
    for month in range(months_to + 1):
        age_years = round(month * 30.4375) / DAYS_A_YEAR  # the daily table's row for that month
        try:
            value = _reference().measurement_from_sds(reference="who", requested_sds=z, measurement_method=measure,
                                                      sex=sex, age=age_years)
        except LookupError:
            continue
        if value is not None:
            points.append((month, float(value)))
    return tuple(points)


def band(index: str, z: float | None, age_months: int) -> str | None:
    """WHO's word for a z-score of one index (see the module docstring for the cut-offs)."""
    if z is None:
        return None
    if index == "weight_for_age":
        return "severely underweight" if z < -3 else "underweight" if z < -2 else "normal"
    if index == "height_for_age":
        return "severely stunted" if z < -3 else "stunted" if z < -2 else "normal"
    if age_months < UNDER_FIVE_MONTHS:
        return ("severely wasted" if z < -3 else "wasted" if z < -2 else "obese" if z > 3 else
                "overweight" if z > 2 else "possible risk of overweight" if z > 1 else "normal")
    return ("severe thinness" if z < -3 else "thinness" if z < -2 else "obesity" if z > 2 else
            "overweight" if z > 1 else "normal")


def oedema_words(oedema: bool | None, grade: int | None = None) -> str:
    """A finding of bilateral pitting oedema as a chart shows it: "none", "bilateral", "bilateral ++" (graded);
    "" when it was not examined."""
    if oedema is None:
        return ""
    if not oedema:
        return "none"
    return f"bilateral {OEDEMA_GRADES[grade][0]}" if grade in OEDEMA_GRADES else "bilateral"


def acute_malnutrition(age_months: int, muac_mm: int | None, wasting_z: float | None,
                       oedema: bool | None, oedema_grade: int | None = None) -> tuple[str | None, list[str]]:
    """The WHO/UNICEF (2009) status of a child 6-59 months old (completed months) from one set of
    measurements, with the criteria met: ("severe" | "moderate" | "none", [...]), or (None, [why not])
    when it cannot be said. Oedema of any grade is severe; its criterion names the grade, and for +++ WHO's
    (2013) inpatient care."""
    if not ACUTE_FROM_MONTHS <= age_months <= ACUTE_TO_MONTHS:
        return None, ["acute malnutrition cut-offs apply from 6 to 59 months"]
    severe, moderate = [], []
    if oedema:
        criterion = "bilateral pitting oedema"
        if oedema_grade in OEDEMA_GRADES:
            criterion += f" {OEDEMA_GRADES[oedema_grade][0]}"
        if oedema_grade == SEVERE_OEDEMA_GRADE:
            criterion += " (severe oedema: WHO treats the child as an inpatient)"
        severe.append(criterion)
    if muac_mm is not None and muac_mm < MUAC_SEVERE_BELOW_MM:
        severe.append(f"MUAC {muac_mm} mm < {MUAC_SEVERE_BELOW_MM} mm")
    elif muac_mm is not None and muac_mm < MUAC_MODERATE_BELOW_MM:
        moderate.append(f"MUAC {muac_mm} mm, {MUAC_SEVERE_BELOW_MM}-{MUAC_MODERATE_BELOW_MM - 1} mm")
    if wasting_z is not None and wasting_z < -3:
        severe.append(f"BAZ {wasting_z:.1f} < -3")
    elif wasting_z is not None and wasting_z < -2:
        moderate.append(f"BAZ {wasting_z:.1f}, -3 to -2")
    if severe:
        return "severe", severe
    if moderate:
        return "moderate", moderate
    if muac_mm is None and wasting_z is None:
        return None, ["neither MUAC nor weight with height measured"]
    return "none", []


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _index(measure: str, subject: Subject, age_days: int, age_months: int, value: float | None) -> dict | None:
    if value is None:
        return None
    method, _ = MEASURES[measure]
    z = z_score(method, subject.sex, age_days, value)
    if z is None:
        return {"value": round(value, 2), "z": None, "centile": None, "band": None}
    return {"value": round(value, 2), "z": round(z, 2), "centile": round(centile(z), 1),
            "band": band(measure, z, age_months)}


def assess_point(subject: Subject, row: dict, tz: zoneinfo.ZoneInfo) -> dict:
    """One set of measurements read against the standards: the three indices, MUAC, oedema and the acute
    malnutrition status, the child's age taken on the day it was measured in the facility's zone `tz`."""
    measured_on = row["occurred_at"].astimezone(tz).date()
    age_days = age_in_days(subject.birth_date, measured_on)
    age_months = months_on(subject.birth_date, measured_on)
    weight, height = _number(row["weight_kg"]), _number(row["height_cm"])
    bmi = weight / (height / 100) ** 2 if weight and height else None
    corrected = subject.corrected_age_days(age_days, age_months)
    read_at = age_days if corrected is None else corrected
    indices = {measure: _index(measure, subject, read_at, age_months, value)
               for measure, value in (("weight_for_age", weight), ("height_for_age", height), ("bmi_for_age", bmi))}
    if age_days < 0:
        status, criteria = None, ["measured before the recorded birth date"]
    else:
        wasting = indices["bmi_for_age"]["z"] if indices["bmi_for_age"] else None
        status, criteria = acute_malnutrition(age_months, row["muac_mm"], wasting, row["oedema"], row["oedema_grade"])
    return {"entry_id": row["id"], "occurred_at": row["occurred_at"], "age_days": age_days,
            "corrected_age_days": corrected, "age_months": age_months, "weight_kg": row["weight_kg"],
            "height_cm": row["height_cm"], "muac_mm": row["muac_mm"], "oedema": row["oedema"],
            "oedema_grade": row["oedema_grade"], **indices, "acute_malnutrition": status, "criteria": criteria}


def measurements_line(point: dict) -> str:
    """One set of measurements in words, each index with its WHO band: "WAZ -2.4 (underweight), HAZ -1.1
    (normal), MUAC 112 mm"."""
    parts = []
    for measure, (_, abbreviation) in MEASURES.items():
        index = point[measure]
        if index and index["z"] is not None:
            parts.append(f"{abbreviation} {index['z']:.1f} ({index['band']})")
    if point["muac_mm"] is not None:
        parts.append(f"MUAC {point['muac_mm']} mm")
    if point["oedema"]:
        grade = OEDEMA_GRADES.get(point["oedema_grade"])
        parts.append(f"bilateral oedema {grade[0]}" if grade else "bilateral oedema")
    before_term = point["corrected_age_days"] is not None and point["corrected_age_days"] < 0
    return ", ".join(parts) or ("Born preterm: the WHO standards read a baby from term, at its corrected age"
                                if before_term and point["weight_kg"] is not None
                                else "No weight, height or MUAC in the latest measurements")


def summary_line(point: dict) -> str:
    """The chart summary's line for a child under five, e.g. "WAZ -2.4 (underweight), HAZ -1.1 (normal),
    MUAC 112 mm: severe acute malnutrition"."""
    line = measurements_line(point)
    if point["acute_malnutrition"]:
        line += f": {ACUTE_STATUS_WORDS[point['acute_malnutrition']]}"
    return line


def _subject(conn: Connection, patient_id: uuid.UUID, today: dt.date) -> Subject:
    found = conn.execute(sa.select(patient.c.birth_date, patient.c.birth_date_estimated, patient.c.sex)
                         .where(patient.c.id == patient_id)).first()
    if found is None:
        raise NotFound(f"no patient {patient_id} at this facility", patient_id=str(patient_id))
    years = years_on(found.birth_date, today)
    if years >= OLDEST_YEARS:
        raise NotApplicable(f"The WHO growth standards and reference cover children to {OLDEST_YEARS} years; "
                            f"this patient is {years} years old.", field="birth_date")
    if found.sex not in ("female", "male"):
        raise NotApplicable("The WHO growth standards are drawn apart for girls and boys, and this patient's sex "
                            f"is recorded as {found.sex}: correct the registration to read their growth.",
                            field="sex")
    return Subject(patient_id, found.birth_date, bool(found.birth_date_estimated), found.sex)


def _born_preterm(conn: Connection, principal: Principal, subject: Subject) -> Subject:
    """The child with its gestation at birth where the delivery that registered it here says it was born preterm;
    that delivery is on the mother's record, so its read is noted there, as the chart's 'born to' notes it."""
    born = delivery.born_to(conn, subject.patient_id)
    if born is None or subject.birth_date_estimated:
        return subject
    note_access(conn, principal, "read", born["mother_id"], "delivery", [born["version_id"]],
                detail={"newborn_chart": str(subject.patient_id)})
    days = born["gestation_weeks"] * 7 + born["gestation_days"]
    if born["gestation_weeks"] >= delivery.PRETERM_BELOW_WEEKS:
        return subject
    return dataclasses.replace(subject, born_at_gestation_days=days)


def growth(conn: Connection, principal: Principal, patient_id: uuid.UUID, today: dt.date | None = None,
           tz: zoneinfo.ZoneInfo = UTC) -> dict:
    """A child's growth: each set of vital signs holding a weight, length/height, MUAC or oedema finding,
    oldest first, read against the WHO standards, and the latest; ages on the calendar of the facility's
    time zone `tz` (see the module docstring). The read of those vital signs is audited.
    Refused (422, `NotApplicable`) for a patient 19 or older, or whose sex is not recorded as female/male."""
    today = today or dt.datetime.now(tz).date()
    subject = _subject(conn, patient_id, today)
    if months_on(subject.birth_date, today) < CORRECTED_UNTIL_MONTHS:
        subject = _born_preterm(conn, principal, subject)
    anthropometric = sa.or_(vital_signs.c.weight_kg.is_not(None), vital_signs.c.height_cm.is_not(None),
                            vital_signs.c.muac_mm.is_not(None), vital_signs.c.oedema.is_not(None))
    rows = current_rows(conn, vital_signs, patient_id, anthropometric, order_by=RECORD_OCCURRED_AT.desc(),
                        limit=POINTS)
    note_access(conn, principal, "read", patient_id, "vital_signs", [r["id"] for r in rows])
    points = [assess_point(subject, row, tz) for row in reversed(rows)]
    latest = points[-1] if points else None
    age_months = months_on(subject.birth_date, today)
    return {"patient_id": patient_id, "sex": subject.sex, "birth_date": subject.birth_date,
            "birth_date_estimated": subject.birth_date_estimated, "age_months": age_months,
            "standards": STANDARDS, "wasting_index": WASTING_INDEX, "points": points, "latest": latest,
            "summary": summary_line(latest) if latest and 0 <= age_months < UNDER_FIVE_MONTHS else None,
            "preterm": _preterm(subject)}


def _preterm(subject: Subject) -> dict | None:
    """A baby born preterm: its gestation at birth, the day it reaches term (from which the standards read it) and
    the day its age stops being corrected."""
    days = subject.born_at_gestation_days
    if days is None:
        return None
    return {"gestation_weeks": days // 7, "gestation_days": days % 7,
            "term_on": subject.birth_date + dt.timedelta(days=TERM_DAYS - days),
            "corrected_until": _birthday(subject.birth_date, CORRECTED_UNTIL_MONTHS // 12)}


def _birthday(born: dt.date, years: int) -> dt.date:
    """The day a child born on `born` turns `years` (one born on 29 February, on 1 March of a common year)."""
    try:
        return born.replace(year=born.year + years)
    except ValueError:
        return dt.date(born.year + years, 3, 1)


def under_five(conn: Connection, patient_id: uuid.UUID, today: dt.date) -> bool:
    """Whether the patient is a child under five on `today` (the facility's): the chart shows a growth line
    only for them."""
    born = conn.execute(sa.select(patient.c.birth_date).where(patient.c.id == patient_id)).scalar()
    return born is not None and 0 <= months_on(born, today) < UNDER_FIVE_MONTHS
