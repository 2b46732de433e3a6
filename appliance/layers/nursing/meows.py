"""MEOWS, the Modified Early Obstetric Warning Score, as a pure function: the early warning a ward
charts for a woman in pregnancy or the puerperium, where NEWS2 is not used (`service.news2_exclusions`).

The parameters and trigger bands are those of the chart the Confidential Enquiry into Maternal and
Child Health recommended (CEMACH, *Saving Mothers' Lives*, 2007), as validated by Singh et al.
(Anaesthesia 2012;67:12–18). Each measured parameter is clear, a **yellow** trigger or a **red** one:

| parameter | red | yellow |
|---|---|---|
| temperature (°C) | < 35.0 or > 38.0 | 35.0–36.0 |
| systolic BP (mmHg) | < 90 or > 160 | 90–100 or 150–160 |
| diastolic BP (mmHg) | > 100 | 90–100 |
| heart rate (/min) | < 40 or > 120 | 40–50 or 100–120 |
| respiratory rate (/min) | < 10 or > 30 | 21–30 |
| SpO2 (%) | < 95 | |
| consciousness | responds to pain, unresponsive | responds to voice |

One red or two yellow triggers call for an urgent medical review: that is **triggered**. A single yellow
is not a trigger, but is watched: **yellow**. New confusion (the C of ACVPU, which the chart predates)
is taken as a red trigger, as NEWS2 counts it at its gravest. The chart's pain score is not among the
vital signs the record holds, so it is not scored here; a parameter not measured is named in `missing`,
and a clear set with one missing is shown as incomplete rather than reassuring.

The chart leaves the frequency of observations to local policy; the appliance's default minimums are
in `MONITORING`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from appliance.layers.nursing.news2 import ACVPU

Trigger = Literal["red", "yellow"]
Risk = Literal["clear", "yellow", "triggered"]
PARAMETERS = ("temperature", "systolic", "diastolic", "pulse", "respiration", "spo2", "consciousness")

# Each begins with the response in a few words, before the colon: task titles use that part.
RESPONSES: dict[Risk, str] = {
    "clear": "Routine observations: no trigger.",
    "yellow": "Closer observation: one yellow trigger; repeat the observations within the hour and tell the "
              "midwife or nurse in charge.",
    "triggered": "Urgent obstetric review: one red or two yellow triggers; the obstetric doctor on call reviews "
                 "her, the midwife or nurse in charge is told, and the observations are repeated at least every "
                 "15 minutes until she is seen.",
}
MONITORING: dict[Risk, dt.timedelta] = {
    "clear": dt.timedelta(hours=4),
    "yellow": dt.timedelta(hours=1),
    "triggered": dt.timedelta(minutes=15),
}


@dataclass(frozen=True)
class Observations:
    temperature_c: Decimal | float | None = None
    systolic_mmhg: int | None = None
    diastolic_mmhg: int | None = None
    heart_rate_bpm: int | None = None
    respiratory_rate: int | None = None
    spo2_percent: int | None = None
    consciousness: str | None = None  # one of ACVPU


@dataclass(frozen=True)
class Score:
    triggers: dict[str, Trigger]  # per parameter measured outside its clear band
    missing: list[str] = field(default_factory=list)

    @property
    def reds(self) -> int:
        return sum(1 for value in self.triggers.values() if value == "red")

    @property
    def yellows(self) -> int:
        return sum(1 for value in self.triggers.values() if value == "yellow")

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def risk(self) -> Risk:
        if self.reds or self.yellows >= 2:
            return "triggered"
        return "yellow" if self.yellows else "clear"

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
    def summary(self) -> str:
        """The triggers in words, for lists and task titles: "2 red, 1 yellow", "no trigger"."""
        parts = [f"{count} {colour}" for count, colour in ((self.reds, "red"), (self.yellows, "yellow")) if count]
        return ", ".join(parts) or "no trigger"


def temperature(celsius: Decimal | float) -> Trigger | None:
    value = Decimal(str(celsius)).quantize(Decimal("0.1"))  # charted to one decimal
    if value < Decimal("35.0") or value > Decimal("38.0"):
        return "red"
    if value <= Decimal("36.0"):
        return "yellow"
    return None


def systolic(pressure: int) -> Trigger | None:
    if pressure < 90 or pressure > 160:
        return "red"
    if pressure <= 100 or pressure >= 150:
        return "yellow"
    return None


def diastolic(pressure: int) -> Trigger | None:
    if pressure > 100:
        return "red"
    if pressure >= 90:
        return "yellow"
    return None


def pulse(rate: int) -> Trigger | None:
    if rate < 40 or rate > 120:
        return "red"
    if rate <= 50 or rate >= 100:
        return "yellow"
    return None


def respiration(rate: int) -> Trigger | None:
    if rate < 10 or rate > 30:
        return "red"
    if rate >= 21:
        return "yellow"
    return None


def spo2(saturation: int) -> Trigger | None:
    return "red" if saturation < 95 else None


def consciousness(level: str) -> Trigger | None:
    if level not in ACVPU:
        raise ValueError(f"consciousness is one of {', '.join(ACVPU)} (ACVPU), got {level!r}")
    if level == "A":
        return None
    return "yellow" if level == "V" else "red"


_MEASURES = (
    ("temperature", "temperature_c", temperature),
    ("systolic", "systolic_mmhg", systolic),
    ("diastolic", "diastolic_mmhg", diastolic),
    ("pulse", "heart_rate_bpm", pulse),
    ("respiration", "respiratory_rate", respiration),
    ("spo2", "spo2_percent", spo2),
    ("consciousness", "consciousness", consciousness),
)


def score(observed: Observations) -> Score:
    """The MEOWS triggers of one set of observations."""
    triggers: dict[str, Trigger] = {}
    missing = []
    for name, attribute, band in _MEASURES:
        value = getattr(observed, attribute)
        if value is None:
            missing.append(name)
        elif (trigger := band(value)) is not None:
            triggers[name] = trigger
    return Score(triggers=triggers, missing=missing)


def measured_any(observed: Observations) -> bool:
    """At least one MEOWS parameter was measured."""
    return any(getattr(observed, attribute) is not None for _, attribute, _ in _MEASURES)
