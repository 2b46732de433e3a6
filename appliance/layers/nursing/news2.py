"""NEWS2, the National Early Warning Score 2 (Royal College of Physicians, 2017), as a pure function.

Seven parameters each score 0–3 by the bands of the RCP chart; their sum is the score. Escalation:

- 0–4 **low** (ward-based response), except that 3 in any single parameter is **low-medium**
  (an urgent ward-based review: the "red score");
- 5–6 **medium** (urgent response: a clinician competent in acute illness reviews the patient);
- 7 or more **high** (emergency response: the critical-care outreach team).

SpO2 has two scales. Scale 1 is for everyone unless a clinician has prescribed the hypercapnic target
range (88–92 %, usually in COPD with type II respiratory failure): then Scale 2 is used, where 88–92 %
scores 0 and high saturations on oxygen score again (oxygen toxicity is the risk).

A parameter that was not measured scores nothing and is named in `missing`: a partial score is a lower
bound of the real one, so its escalation still stands, while a "low" partial score is shown as
incomplete rather than reassuring.

The monitoring frequencies are the RCP's minimums for each response band; the layer turns them into
the due time of the next observations.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

Risk = Literal["low", "low_medium", "medium", "high"]
PARAMETERS = ("respiration", "spo2", "air_or_oxygen", "systolic", "pulse", "consciousness", "temperature")
ACVPU = ("A", "C", "V", "P", "U")  # alert, new confusion, responds to voice, to pain, unresponsive

RESPONSES: dict[Risk, str] = {
    "low": "Ward-based response: registered nurse to assess; continue routine monitoring.",
    "low_medium": "Urgent ward-based response: registered nurse to inform the medical team caring for the "
                  "patient, who will decide whether escalation is needed.",
    "medium": "Key threshold for urgent response: inform the medical team urgently; assessment by a clinician "
              "with competences in the assessment of acutely ill patients.",
    "high": "Emergency response: inform the medical team immediately; emergency assessment by a critical-care "
            "outreach team; consider transfer to a higher level of care.",
}
# The RCP chart's clinical risk bands, as a nurse reads them off the chart: what put the score in its band.
BANDS: dict[Risk, str] = {
    "low": "low clinical risk (total 0–4)",
    "low_medium": "low–medium clinical risk (3 in a single parameter)",
    "medium": "medium clinical risk (total 5–6)",
    "high": "high clinical risk (total 7 or more)",
}
# RCP minimum frequency of monitoring for each band (a score of 0 is 12-hourly, 1–4 is 4–6-hourly: the
# stricter bound is used).
MONITORING: dict[str, dt.timedelta] = {
    "zero": dt.timedelta(hours=12),
    "low": dt.timedelta(hours=4),
    "low_medium": dt.timedelta(hours=1),
    "medium": dt.timedelta(hours=1),
    "high": dt.timedelta(minutes=15),  # "continuous monitoring of vital signs": a quarter-hourly check at most
}


@dataclass(frozen=True)
class Observations:
    respiratory_rate: int | None = None
    spo2_percent: int | None = None
    supplemental_oxygen: bool | None = None
    systolic_mmhg: int | None = None
    heart_rate_bpm: int | None = None
    consciousness: str | None = None  # one of ACVPU
    temperature_c: Decimal | float | None = None
    spo2_scale: int = 1  # 2 on a prescribed hypercapnic target (88–92 %)


@dataclass(frozen=True)
class Score:
    total: int
    scores: dict[str, int]  # per parameter that was measured
    missing: list[str] = field(default_factory=list)
    spo2_scale: int = 1

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def red(self) -> bool:
        """3 in any single parameter."""
        return any(value == 3 for value in self.scores.values())

    @property
    def scored(self) -> list[tuple[str, int]]:
        """The parameters that scored, most points first (chart order among equals): what drove the total."""
        return sorted(((name, points) for name, points in self.scores.items() if points),
                      key=lambda item: (-item[1], PARAMETERS.index(item[0])))

    @property
    def risk(self) -> Risk:
        if self.total >= 7:
            return "high"
        if self.total >= 5:
            return "medium"
        if self.red:
            return "low_medium"
        return "low"

    @property
    def escalation(self) -> bool:
        """Anything beyond a routine ward-based response."""
        return self.risk != "low"

    @property
    def response(self) -> str:
        return RESPONSES[self.risk]

    @property
    def next_observation_in(self) -> dt.timedelta:
        if self.risk == "low":
            return MONITORING["zero"] if self.total == 0 and self.complete else MONITORING["low"]
        return MONITORING[self.risk]


def respiration(rate: int) -> int:
    if rate <= 8:
        return 3
    if rate <= 11:
        return 1
    if rate <= 20:
        return 0
    if rate <= 24:
        return 2
    return 3


def spo2_scale_1(saturation: int) -> int:
    if saturation <= 91:
        return 3
    if saturation <= 93:
        return 2
    if saturation <= 95:
        return 1
    return 0


def spo2_scale_2(saturation: int, on_oxygen: bool | None) -> int:
    if saturation <= 83:
        return 3
    if saturation <= 85:
        return 2
    if saturation <= 87:
        return 1
    if saturation <= 92 or not on_oxygen:  # 88–92 %, or ≥ 93 % breathing air
        return 0
    if saturation <= 94:
        return 1
    if saturation <= 96:
        return 2
    return 3


def air_or_oxygen(on_oxygen: bool) -> int:
    return 2 if on_oxygen else 0


def systolic(pressure: int) -> int:
    if pressure <= 90:
        return 3
    if pressure <= 100:
        return 2
    if pressure <= 110:
        return 1
    if pressure <= 219:
        return 0
    return 3


def pulse(rate: int) -> int:
    if rate <= 40:
        return 3
    if rate <= 50:
        return 1
    if rate <= 90:
        return 0
    if rate <= 110:
        return 1
    if rate <= 130:
        return 2
    return 3


def consciousness(level: str) -> int:
    if level not in ACVPU:
        raise ValueError(f"consciousness is one of {', '.join(ACVPU)} (ACVPU), got {level!r}")
    return 0 if level == "A" else 3


def temperature(celsius: Decimal | float) -> int:
    # Charted to one decimal: the RCP bands are ≤35.0, 35.1–36.0, 36.1–38.0, 38.1–39.0, ≥39.1.
    value = Decimal(str(celsius)).quantize(Decimal("0.1"))
    if value <= Decimal("35.0"):
        return 3
    if value <= Decimal("36.0"):
        return 1
    if value <= Decimal("38.0"):
        return 0
    if value <= Decimal("39.0"):
        return 1
    return 2


def score(observed: Observations) -> Score:
    """The NEWS2 of one set of observations."""
    if observed.spo2_scale not in (1, 2):
        raise ValueError(f"the SpO2 scale is 1 or 2, got {observed.spo2_scale!r}")
    scores: dict[str, int] = {}
    if observed.respiratory_rate is not None:
        scores["respiration"] = respiration(observed.respiratory_rate)
    if observed.spo2_percent is not None:
        scores["spo2"] = (spo2_scale_2(observed.spo2_percent, observed.supplemental_oxygen)
                          if observed.spo2_scale == 2 else spo2_scale_1(observed.spo2_percent))
    if observed.supplemental_oxygen is not None:
        scores["air_or_oxygen"] = air_or_oxygen(observed.supplemental_oxygen)
    if observed.systolic_mmhg is not None:
        scores["systolic"] = systolic(observed.systolic_mmhg)
    if observed.heart_rate_bpm is not None:
        scores["pulse"] = pulse(observed.heart_rate_bpm)
    if observed.consciousness is not None:
        scores["consciousness"] = consciousness(observed.consciousness)
    if observed.temperature_c is not None:
        scores["temperature"] = temperature(observed.temperature_c)
    missing = [name for name in PARAMETERS if name not in scores]
    return Score(total=sum(scores.values()), scores=scores, missing=missing, spo2_scale=observed.spo2_scale)


def measured_any(observed: Observations) -> bool:
    """At least one NEWS2 parameter was measured (a weight alone is no early-warning observation)."""
    return any(value is not None for value in (
        observed.respiratory_rate, observed.spo2_percent, observed.supplemental_oxygen, observed.systolic_mmhg,
        observed.heart_rate_bpm, observed.consciousness, observed.temperature_c))
