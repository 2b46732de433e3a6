"""MEOWS against the CEMACH chart: every trigger edge of every parameter, and what one red, one yellow
and two yellow triggers call for."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal

import pytest

from appliance.layers.nursing import meows
from appliance.layers.nursing.meows import Observations

# (value, trigger) on each side of every band edge of the chart.
TEMPERATURE = [("34.9", "red"), ("35.0", "yellow"), ("36.0", "yellow"), ("36.1", None), ("38.0", None),
               ("38.1", "red")]
SYSTOLIC = [(89, "red"), (90, "yellow"), (100, "yellow"), (101, None), (149, None), (150, "yellow"),
            (160, "yellow"), (161, "red")]
DIASTOLIC = [(50, None), (89, None), (90, "yellow"), (100, "yellow"), (101, "red")]
PULSE = [(39, "red"), (40, "yellow"), (50, "yellow"), (51, None), (99, None), (100, "yellow"), (120, "yellow"),
         (121, "red")]
RESPIRATION = [(9, "red"), (10, None), (20, None), (21, "yellow"), (30, "yellow"), (31, "red")]
SPO2 = [(80, "red"), (94, "red"), (95, None), (100, None)]
CONSCIOUSNESS = [("A", None), ("V", "yellow"), ("C", "red"), ("P", "red"), ("U", "red")]


@pytest.mark.parametrize(("band", "attribute", "edges"), [
    (meows.temperature, "temperature_c", TEMPERATURE), (meows.systolic, "systolic_mmhg", SYSTOLIC),
    (meows.diastolic, "diastolic_mmhg", DIASTOLIC), (meows.pulse, "heart_rate_bpm", PULSE),
    (meows.respiration, "respiratory_rate", RESPIRATION), (meows.spo2, "spo2_percent", SPO2),
    (meows.consciousness, "consciousness", CONSCIOUSNESS),
])
def test_every_band_edge(band, attribute, edges):
    for value, expected in edges:
        observed = Decimal(value) if attribute == "temperature_c" else value
        assert band(observed) == expected, (attribute, value)
        triggers = meows.score(Observations(**{attribute: observed})).triggers
        assert triggers == ({} if expected is None else {band.__name__: expected}), (attribute, value)


def test_temperature_is_read_as_charted_to_one_decimal():
    assert meows.temperature(38.04) is None and meows.temperature(38.06) == "red"
    assert meows.temperature(36.04) == "yellow" and meows.temperature(36.06) is None


NORMAL = Observations(temperature_c=Decimal("36.8"), systolic_mmhg=118, diastolic_mmhg=72, heart_rate_bpm=84,
                      respiratory_rate=16, spo2_percent=98, consciousness="A")


def test_one_red_or_two_yellow_trigger_an_urgent_review():
    calm = meows.score(NORMAL)
    assert (calm.risk, calm.escalation, calm.summary, calm.complete) == ("clear", False, "no trigger", True)
    assert calm.next_observation_in == dt.timedelta(hours=4)

    one_yellow = meows.score(replace(NORMAL, heart_rate_bpm=104))
    assert (one_yellow.risk, one_yellow.escalation, one_yellow.summary) == ("yellow", False, "1 yellow")
    assert one_yellow.next_observation_in == dt.timedelta(hours=1)
    assert one_yellow.response.startswith("Closer observation: one yellow trigger; repeat the observations within")

    two_yellow = meows.score(replace(NORMAL, heart_rate_bpm=104, respiratory_rate=22))
    one_red = meows.score(replace(NORMAL, systolic_mmhg=164))
    for triggered, summary in ((two_yellow, "2 yellow"), (one_red, "1 red")):
        assert (triggered.risk, triggered.escalation, triggered.summary) == ("triggered", True, summary)
        assert triggered.next_observation_in == dt.timedelta(minutes=15)
        assert triggered.response.startswith("Urgent obstetric review: one red or two yellow")


def test_a_parameter_not_measured_is_named_missing():
    partial = meows.score(Observations(systolic_mmhg=118, heart_rate_bpm=84))
    assert partial.risk == "clear" and not partial.complete
    assert partial.missing == ["temperature", "diastolic", "respiration", "spo2", "consciousness"]
    assert meows.measured_any(Observations(diastolic_mmhg=70)) and not meows.measured_any(Observations())


def test_an_unknown_consciousness_level_is_refused():
    with pytest.raises(ValueError, match="ACVPU"):
        meows.consciousness("Z")
