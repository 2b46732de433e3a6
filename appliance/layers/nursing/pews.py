"""PEWS, a paediatric early warning score, as a pure function: the early warning a ward charts for a child
under 16, where NEWS2 is not validated (`service.news2_exclusions`).

The items, age bands and sub-scores are those of the **Bedside Paediatric Early Warning System score**
(Bedside PEWS): Parshuram CS, Hutchison J, Middaugh K. *Development and initial validation of the Bedside
Paediatric Early Warning System score.* Critical Care 2009;13:R135 (doi:10.1186/cc7998; open access), its
Table 1, restricted to the seven items the paper kept. Each item scores 0, 1, 2 or 4; the total runs 0–26.
The paper's age groups are "0–3 months, 3–12 months, 1–4 years, 4–12 years, >12 years"; a child is in
the group of their completed age on the day the set was taken (3 months exactly is the second group,
4 years the fourth, 12 years the fifth).

Heart rate (/min), systolic blood pressure (mmHg) and respiratory rate (/min) score by age group; the
value scores the highest sub-score whose limit it reaches, low (≤) or high (≥):

| item | age group | 1: ≤ or ≥ | 2: ≤ or ≥ | 4: ≤ or ≥ |
|---|---|---|---|---|
| heart rate | 0–3 months | 110, 150 | 90, 180 | 80, 190 |
| | 3–12 months | 100, 150 | 80, 170 | 70, 180 |
| | 1–4 years | 90, 120 | 70, 150 | 60, 170 |
| | 4–12 years | 70, 110 | 60, 130 | 50, > 150 |
| | > 12 years | 60, 100 | < 50, 120 | 40, 140 |
| systolic BP | 0–3 months | 60, 80 | 50, 100 | 45, 130 |
| | 3–12 months | 80, 100 | 70, 120 | 60, 150 |
| | 1–4 years | 90, 110 | 75, 125 | 65, 160 |
| | 4–12 years | 90, 120 | 80, 140 | 70, 170 |
| | > 12 years | 100, 130 | 85, 150 | 75, 190 |
| respiratory rate | 0–3 months | 29, 61 | 19, 81 | 15, 91 |
| | 3–12 months | 24, 51 | 19, 71 | 15, 81 |
| | 1–4 years | 19, 41 | 15, 61 | 12, 71 |
| | 4–12 years | 19, 31 | 14, 41 | 10, 51 |
| | > 12 years | 11, 17 | 10, 23 | 9, 30 |

(the two strict limits, "> 150" and "< 50", are as the paper prints them). SpO2 scores 0 above 94 %, 1 at
91–94 % and 2 at 90 % or less. Oxygen therapy scores 0 on room air, 2 on any oxygen below 4 L/min (or 50 %)
and 4 at 4 L/min (or 50 %) or more. Capillary refill (4 at 3 seconds or more) and respiratory effort (1 mild,
2 moderate, 4 severe or any apnoea) are items of the score the record's vital signs do not hold: they are
always named in `NOT_RECORDED`, so every total here is a lower bound, at most 8 below the full score. A set
on oxygen whose flow was not recorded scores the item's lower sub-score (2), and the record has no FiO2:
the 50 % limit cannot be applied. Temperature and level of consciousness were candidate items the paper
dropped; they are charted, not scored.

The paper found the score at **8 or more** the threshold best separating children urgently admitted to
intensive care (sensitivity 82 %, specificity 93 %): a total of 8 or more is **triggered** and raises an
escalation; the paper sets no other band, and neither does this module. It prescribes no response or
frequency of observation either: the responses in `RESPONSES` and the minimums in `MONITORING` are the
appliance's defaults (those MEOWS uses), for local policy to stand behind.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

Risk = Literal["low", "triggered"]
PARAMETERS = ("pulse", "systolic", "respiration", "spo2", "oxygen_therapy")
NOT_RECORDED = ("capillary_refill", "respiratory_effort")  # Bedside PEWS items the vital signs do not hold
TRIGGER = 8
MAXIMUM = 26
CHILD_UNDER_YEARS = 16  # NEWS2 from 16; the Bedside PEWS' last age group (> 12 years) covers the years between

# Each begins with the response in a few words, before the colon: task titles use that part.
RESPONSES: dict[Risk, str] = {
    "low": "Routine observations: PEWS below 8; the nurse caring for the child watches the trend and tells the "
           "nurse in charge of any concern, a parent's included.",
    "triggered": "Urgent paediatric review: PEWS 8 or more; the nurse in charge and the child's doctor are told "
                 "now, the doctor reviews the child and decides on calling the critical care team, and the "
                 "observations are repeated at least every 15 minutes until the child is seen.",
}
MONITORING: dict[Risk, dt.timedelta] = {
    "low": dt.timedelta(hours=4),
    "triggered": dt.timedelta(minutes=15),
}

Limits = tuple[int, int]  # a sub-score's (low, high): a value at or below low, or at or above high, reaches it


@dataclass(frozen=True)
class AgeBand:
    key: str
    label: str
    from_months: int  # the band starts at this completed age in months
    pulse: tuple[Limits, Limits, Limits]  # the limits of sub-scores 1, 2 and 4
    systolic: tuple[Limits, Limits, Limits]
    respiration: tuple[Limits, Limits, Limits]


# The paper's strict limits as the integers they mean: heart rate "> 150" is ≥ 151, "< 50" is ≤ 49.
AGE_BANDS = (
    AgeBand("0-3m", "0–3 months", 0, pulse=((110, 150), (90, 180), (80, 190)),
            systolic=((60, 80), (50, 100), (45, 130)), respiration=((29, 61), (19, 81), (15, 91))),
    AgeBand("3-12m", "3–12 months", 3, pulse=((100, 150), (80, 170), (70, 180)),
            systolic=((80, 100), (70, 120), (60, 150)), respiration=((24, 51), (19, 71), (15, 81))),
    AgeBand("1-4y", "1–4 years", 12, pulse=((90, 120), (70, 150), (60, 170)),
            systolic=((90, 110), (75, 125), (65, 160)), respiration=((19, 41), (15, 61), (12, 71))),
    AgeBand("4-12y", "4–12 years", 48, pulse=((70, 110), (60, 130), (50, 151)),
            systolic=((90, 120), (80, 140), (70, 170)), respiration=((19, 31), (14, 41), (10, 51))),
    AgeBand("12y+", "over 12 years", 144, pulse=((60, 100), (49, 120), (40, 140)),
            systolic=((100, 130), (85, 150), (75, 190)), respiration=((11, 17), (10, 23), (9, 30))),
)
BANDS_BY_KEY = {band.key: band for band in AGE_BANDS}
_SUB_SCORES = (1, 2, 4)


def age_band(months: int) -> AgeBand:
    """The Bedside PEWS age group of a child of `months` completed months."""
    if months < 0:
        raise ValueError(f"an age is not negative, got {months} months")
    return next(band for band in reversed(AGE_BANDS) if months >= band.from_months)


@dataclass(frozen=True)
class Observations:
    heart_rate_bpm: int | None = None
    systolic_mmhg: int | None = None
    respiratory_rate: int | None = None
    spo2_percent: int | None = None
    supplemental_oxygen: bool | None = None
    oxygen_l_min: Decimal | float | None = None


@dataclass(frozen=True)
class Score:
    band: str  # the age band's key
    total: int
    scores: dict[str, int]  # per item measured: 0, 1, 2 or 4
    missing: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every item the record can hold was measured (capillary refill and respiratory effort never are)."""
        return not self.missing

    @property
    def risk(self) -> Risk:
        return "triggered" if self.total >= TRIGGER else "low"

    @property
    def escalation(self) -> bool:
        return self.risk == "triggered"

    @property
    def response(self) -> str:
        return RESPONSES[self.risk]

    @property
    def next_observation_in(self) -> dt.timedelta:
        return MONITORING[self.risk]

    @property
    def age_label(self) -> str:
        return BANDS_BY_KEY[self.band].label

    @property
    def scored(self) -> list[tuple[str, int]]:
        """The items that scored, most points first (chart order among equals): what drove the total."""
        return sorted(((name, points) for name, points in self.scores.items() if points),
                      key=lambda item: (-item[1], PARAMETERS.index(item[0])))


def _by_limits(value: int, limits: tuple[Limits, Limits, Limits]) -> int:
    for points, (low, high) in reversed(list(zip(_SUB_SCORES, limits, strict=True))):
        if value <= low or value >= high:
            return points
    return 0


def pulse(band: AgeBand, rate: int) -> int:
    return _by_limits(rate, band.pulse)


def systolic(band: AgeBand, pressure: int) -> int:
    return _by_limits(pressure, band.systolic)


def respiration(band: AgeBand, rate: int) -> int:
    return _by_limits(rate, band.respiration)


def spo2(saturation: int) -> int:
    if saturation > 94:
        return 0
    return 1 if saturation >= 91 else 2


def oxygen_therapy(on_oxygen: bool, litres_per_minute: Decimal | float | None) -> int:
    if not on_oxygen:
        return 0
    return 4 if litres_per_minute is not None and Decimal(str(litres_per_minute)) >= 4 else 2


def score(observed: Observations, band: AgeBand) -> Score:
    """The Bedside PEWS of one set of observations of a child in `band`."""
    scores: dict[str, int] = {}
    if observed.heart_rate_bpm is not None:
        scores["pulse"] = pulse(band, observed.heart_rate_bpm)
    if observed.systolic_mmhg is not None:
        scores["systolic"] = systolic(band, observed.systolic_mmhg)
    if observed.respiratory_rate is not None:
        scores["respiration"] = respiration(band, observed.respiratory_rate)
    if observed.spo2_percent is not None:
        scores["spo2"] = spo2(observed.spo2_percent)
    if observed.supplemental_oxygen is not None or observed.oxygen_l_min is not None:
        scores["oxygen_therapy"] = oxygen_therapy(bool(observed.supplemental_oxygen or observed.oxygen_l_min),
                                                  observed.oxygen_l_min)
    missing = [name for name in PARAMETERS if name not in scores]
    return Score(band=band.key, total=sum(scores.values()), scores=scores, missing=missing)


def measured_any(observed: Observations) -> bool:
    """At least one PEWS item was measured (a temperature or a weight alone is no PEWS)."""
    return any(value is not None for value in (
        observed.heart_rate_bpm, observed.systolic_mmhg, observed.respiratory_rate, observed.spo2_percent,
        observed.supplemental_oxygen, observed.oxygen_l_min))
