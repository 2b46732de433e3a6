"""NEWS2 against the Royal College of Physicians' 2017 chart: every band edge of every parameter, both
SpO2 scales, the aggregate thresholds and the single-parameter red score."""

from __future__ import annotations

from decimal import Decimal

import pytest

from appliance.layers.nursing import news2
from appliance.layers.nursing.news2 import Observations

# (value, score) on each side of every band edge of the RCP chart.
RESPIRATION = [(4, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (60, 3)]
SPO2_SCALE_1 = [(40, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
SYSTOLIC = [(50, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3), (280, 3)]
PULSE = [(25, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2), (131, 3)]
TEMPERATURE = [("33.0", 3), ("35.0", 3), ("35.1", 1), ("36.0", 1), ("36.1", 0), ("38.0", 0), ("38.1", 1),
               ("39.0", 1), ("39.1", 2), ("41.5", 2)]


@pytest.mark.parametrize(("rate", "expected"), RESPIRATION)
def test_respiration_bands(rate, expected):
    assert news2.respiration(rate) == expected
    assert news2.score(Observations(respiratory_rate=rate)).scores == {"respiration": expected}


@pytest.mark.parametrize(("saturation", "expected"), SPO2_SCALE_1)
def test_spo2_scale_1_bands_ignore_oxygen(saturation, expected):
    for on_oxygen in (False, True):
        scored = news2.score(Observations(spo2_percent=saturation, supplemental_oxygen=on_oxygen))
        assert scored.scores["spo2"] == expected
        assert scored.scores["air_or_oxygen"] == (2 if on_oxygen else 0)


# Scale 2 (hypercapnic target 88–92 %): the same below 88, 0 for 88–92 and for ≥93 on air, and rising
# again at 93–94, 95–96 and ≥97 on oxygen.
SPO2_SCALE_2 = [(70, None, 3), (83, None, 3), (84, None, 2), (85, None, 2), (86, None, 1), (87, None, 1),
                (88, None, 0), (92, None, 0), (93, False, 0), (100, False, 0), (93, True, 1), (94, True, 1),
                (95, True, 2), (96, True, 2), (97, True, 3), (100, True, 3)]


@pytest.mark.parametrize(("saturation", "on_oxygen", "expected"), SPO2_SCALE_2)
def test_spo2_scale_2_bands(saturation, on_oxygen, expected):
    cases = [on_oxygen] if on_oxygen is not None else [False, True]
    for oxygen in cases:
        scored = news2.score(Observations(spo2_percent=saturation, supplemental_oxygen=oxygen, spo2_scale=2))
        assert scored.scores["spo2"] == expected, (saturation, oxygen)
        assert scored.spo2_scale == 2


def test_the_two_scales_differ_where_the_rcp_says_they_do():
    on_air_88 = Observations(spo2_percent=88, supplemental_oxygen=False)
    assert news2.score(on_air_88).scores["spo2"] == 3
    assert news2.score(Observations(spo2_percent=88, supplemental_oxygen=False, spo2_scale=2)).scores["spo2"] == 0
    assert news2.score(Observations(spo2_percent=98, supplemental_oxygen=True)).scores["spo2"] == 0
    assert news2.score(Observations(spo2_percent=98, supplemental_oxygen=True, spo2_scale=2)).scores["spo2"] == 3


@pytest.mark.parametrize(("pressure", "expected"), SYSTOLIC)
def test_systolic_bands(pressure, expected):
    assert news2.systolic(pressure) == expected


@pytest.mark.parametrize(("rate", "expected"), PULSE)
def test_pulse_bands(rate, expected):
    assert news2.pulse(rate) == expected


@pytest.mark.parametrize(("celsius", "expected"), TEMPERATURE)
def test_temperature_bands(celsius, expected):
    assert news2.temperature(Decimal(celsius)) == expected
    assert news2.temperature(float(celsius)) == expected


@pytest.mark.parametrize(("level", "expected"), [("A", 0), ("C", 3), ("V", 3), ("P", 3), ("U", 3)])
def test_consciousness_acvpu(level, expected):
    assert news2.consciousness(level) == expected


def test_unknown_consciousness_and_scale_are_refused():
    with pytest.raises(ValueError, match="ACVPU"):
        news2.consciousness("X")
    with pytest.raises(ValueError, match="scale"):
        news2.score(Observations(spo2_percent=95, spo2_scale=3))


def _full(**changes) -> Observations:
    normal = {"respiratory_rate": 16, "spo2_percent": 97, "supplemental_oxygen": False, "systolic_mmhg": 120,
              "heart_rate_bpm": 70, "consciousness": "A", "temperature_c": Decimal("36.8")}
    return Observations(**(normal | changes))


def test_a_normal_complete_set_scores_zero_and_is_seen_twelve_hourly():
    scored = news2.score(_full())
    assert (scored.total, scored.risk, scored.complete, scored.escalation) == (0, "low", True, False)
    assert scored.next_observation_in.total_seconds() == 12 * 3600


@pytest.mark.parametrize(("changes", "total", "risk"), [
    ({"heart_rate_bpm": 95}, 1, "low"),
    ({"heart_rate_bpm": 95, "respiratory_rate": 22, "temperature_c": Decimal("38.5")}, 4, "low"),
    ({"consciousness": "C"}, 3, "low_medium"),  # 3 in one parameter: urgent ward-based review
    ({"systolic_mmhg": 88, "heart_rate_bpm": 95}, 4, "low_medium"),
    ({"respiratory_rate": 22, "heart_rate_bpm": 115, "temperature_c": Decimal("38.5")}, 5, "medium"),
    ({"respiratory_rate": 22, "heart_rate_bpm": 115, "spo2_percent": 95, "temperature_c": Decimal("38.5")}, 6,
     "medium"),
    ({"respiratory_rate": 26, "spo2_percent": 93, "supplemental_oxygen": True}, 7, "high"),
    ({"respiratory_rate": 30, "spo2_percent": 85, "supplemental_oxygen": True, "systolic_mmhg": 85,
      "heart_rate_bpm": 135, "consciousness": "U", "temperature_c": Decimal("34.5")}, 20, "high"),
])
def test_aggregate_thresholds(changes, total, risk):
    scored = news2.score(_full(**changes))
    assert (scored.total, scored.risk) == (total, risk)
    assert scored.escalation == (risk != "low")
    assert scored.response == news2.RESPONSES[risk]


def test_monitoring_frequency_follows_the_response_band():
    hours = {risk: news2.score(_full(**changes)).next_observation_in.total_seconds() / 3600 for risk, changes in {
        "low": {"heart_rate_bpm": 95}, "low_medium": {"consciousness": "V"},
        "medium": {"respiratory_rate": 22, "heart_rate_bpm": 115, "temperature_c": Decimal("38.5")},
        "high": {"respiratory_rate": 26, "spo2_percent": 93, "supplemental_oxygen": True}}.items()}
    assert hours == {"low": 4, "low_medium": 1, "medium": 1, "high": 0.25}


def test_a_partial_set_is_a_lower_bound_named_incomplete():
    scored = news2.score(Observations(systolic_mmhg=85, heart_rate_bpm=120))
    assert scored.total == 5 and scored.risk == "medium" and not scored.complete
    assert scored.missing == ["respiration", "spo2", "air_or_oxygen", "consciousness", "temperature"]
    zero = news2.score(Observations(systolic_mmhg=120))
    assert zero.total == 0 and zero.next_observation_in.total_seconds() == 4 * 3600  # not reassured to 12 h
    assert not news2.measured_any(Observations())
