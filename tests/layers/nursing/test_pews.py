"""PEWS against the Bedside PEWS table (Parshuram et al., Crit Care 2009;13:R135): the age band of every
age at its edges, every sub-score edge of every item in every band, the trigger at 8, and what a set that
is on oxygen without its flow, or measures one item, scores."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.layers.nursing import pews
from appliance.layers.nursing.pews import Observations

BAND = pews.BANDS_BY_KEY

AGES = [(0, "0-3m"), (2, "0-3m"), (3, "3-12m"), (11, "3-12m"), (12, "1-4y"), (47, "1-4y"), (48, "4-12y"),
        (143, "4-12y"), (144, "12y+"), (191, "12y+")]


@pytest.mark.parametrize(("months", "key"), AGES)
def test_age_bands_at_their_edges(months, key):
    assert pews.age_band(months).key == key


def test_a_negative_age_is_refused():
    with pytest.raises(ValueError, match="not negative"):
        pews.age_band(-1)


# (band, value, sub-score) on each side of every edge of the paper's table: the last value of one sub-score
# and the first of the next, below and above the normal range.
PULSE = {
    "0-3m": [(79, 4), (80, 4), (81, 2), (90, 2), (91, 1), (110, 1), (111, 0), (149, 0), (150, 1), (179, 1),
             (180, 2), (189, 2), (190, 4)],
    "3-12m": [(70, 4), (71, 2), (80, 2), (81, 1), (100, 1), (101, 0), (149, 0), (150, 1), (169, 1), (170, 2),
              (179, 2), (180, 4)],
    "1-4y": [(60, 4), (61, 2), (70, 2), (71, 1), (90, 1), (91, 0), (119, 0), (120, 1), (149, 1), (150, 2),
             (169, 2), (170, 4)],
    "4-12y": [(50, 4), (51, 2), (60, 2), (61, 1), (70, 1), (71, 0), (109, 0), (110, 1), (129, 1), (130, 2),
              (150, 2), (151, 4)],
    "12y+": [(40, 4), (41, 2), (49, 2), (50, 1), (60, 1), (61, 0), (99, 0), (100, 1), (119, 1), (120, 2),
             (139, 2), (140, 4)],
}
SYSTOLIC = {
    "0-3m": [(45, 4), (46, 2), (50, 2), (51, 1), (60, 1), (61, 0), (79, 0), (80, 1), (99, 1), (100, 2), (129, 2),
             (130, 4)],
    "3-12m": [(60, 4), (61, 2), (70, 2), (71, 1), (80, 1), (81, 0), (99, 0), (100, 1), (119, 1), (120, 2),
              (149, 2), (150, 4)],
    "1-4y": [(65, 4), (66, 2), (75, 2), (76, 1), (90, 1), (91, 0), (109, 0), (110, 1), (124, 1), (125, 2),
             (159, 2), (160, 4)],
    "4-12y": [(70, 4), (71, 2), (80, 2), (81, 1), (90, 1), (91, 0), (119, 0), (120, 1), (139, 1), (140, 2),
              (169, 2), (170, 4)],
    "12y+": [(75, 4), (76, 2), (85, 2), (86, 1), (100, 1), (101, 0), (129, 0), (130, 1), (149, 1), (150, 2),
             (189, 2), (190, 4)],
}
RESPIRATION = {
    "0-3m": [(15, 4), (16, 2), (19, 2), (20, 1), (29, 1), (30, 0), (60, 0), (61, 1), (80, 1), (81, 2), (90, 2),
             (91, 4)],
    "3-12m": [(15, 4), (16, 2), (19, 2), (20, 1), (24, 1), (25, 0), (50, 0), (51, 1), (70, 1), (71, 2), (80, 2),
              (81, 4)],
    "1-4y": [(12, 4), (13, 2), (15, 2), (16, 1), (19, 1), (20, 0), (40, 0), (41, 1), (60, 1), (61, 2), (70, 2),
             (71, 4)],
    "4-12y": [(10, 4), (11, 2), (14, 2), (15, 1), (19, 1), (20, 0), (30, 0), (31, 1), (40, 1), (41, 2), (50, 2),
              (51, 4)],
    "12y+": [(9, 4), (10, 2), (11, 1), (12, 0), (16, 0), (17, 1), (22, 1), (23, 2), (29, 2), (30, 4)],
}
ITEMS = [("pulse", "heart_rate_bpm", PULSE), ("systolic", "systolic_mmhg", SYSTOLIC),
         ("respiration", "respiratory_rate", RESPIRATION)]


@pytest.mark.parametrize(("item", "attribute", "table"), ITEMS, ids=[item for item, _, _ in ITEMS])
def test_every_sub_score_edge_in_every_age_band(item, attribute, table):
    assert set(table) == set(BAND)
    for key, edges in table.items():
        for value, expected in edges:
            assert getattr(pews, item)(BAND[key], value) == expected, (item, key, value)
            scored = pews.score(Observations(**{attribute: value}), BAND[key])
            assert (scored.scores, scored.total, scored.band) == ({item: expected}, expected, key), (item, key, value)


@pytest.mark.parametrize(("saturation", "expected"), [(40, 2), (90, 2), (91, 1), (94, 1), (95, 0), (100, 0)])
def test_saturation_is_scored_the_same_at_every_age(saturation, expected):
    for band in pews.AGE_BANDS:
        assert pews.score(Observations(spo2_percent=saturation), band).scores == {"spo2": expected}


def test_oxygen_therapy_by_its_flow():
    band = BAND["1-4y"]
    assert pews.score(Observations(supplemental_oxygen=False), band).scores == {"oxygen_therapy": 0}
    assert pews.score(Observations(supplemental_oxygen=True, oxygen_l_min=Decimal("3.9")), band).scores == {
        "oxygen_therapy": 2}
    assert pews.score(Observations(supplemental_oxygen=True, oxygen_l_min=Decimal("4.0")), band).scores == {
        "oxygen_therapy": 4}
    # On oxygen with no flow written down: the item's lower sub-score, not a guess at the higher one.
    assert pews.score(Observations(supplemental_oxygen=True), band).scores == {"oxygen_therapy": 2}


# A child of 2 years, every item recorded within its normal range.
CALM = Observations(heart_rate_bpm=110, systolic_mmhg=100, respiratory_rate=28, spo2_percent=98,
                    supplemental_oxygen=False)


def test_eight_or_more_triggers_an_urgent_review():
    calm = pews.score(CALM, BAND["1-4y"])
    assert (calm.total, calm.risk, calm.escalation, calm.complete, calm.missing) == (0, "low", False, True, [])
    assert calm.next_observation_in == dt.timedelta(hours=4)
    assert calm.response.startswith("Routine observations: PEWS below 8")
    # Pulse 150 (2), respiration 61 (2), SpO2 92 (1), oxygen at 2 L/min (2): 7, one short of the trigger.
    seven = pews.score(Observations(heart_rate_bpm=150, systolic_mmhg=100, respiratory_rate=61, spo2_percent=92,
                                    supplemental_oxygen=True, oxygen_l_min=Decimal("2")), BAND["1-4y"])
    assert (seven.total, seven.risk, seven.escalation) == (7, "low", False)
    assert seven.scored == [("pulse", 2), ("respiration", 2), ("oxygen_therapy", 2), ("spo2", 1)]
    # The same child at 4 L/min: 9.
    nine = pews.score(Observations(heart_rate_bpm=150, systolic_mmhg=100, respiratory_rate=61, spo2_percent=92,
                                   supplemental_oxygen=True, oxygen_l_min=Decimal("4")), BAND["1-4y"])
    assert (nine.total, nine.risk, nine.escalation) == (9, "triggered", True)
    assert nine.next_observation_in == dt.timedelta(minutes=15)
    assert nine.response.startswith("Urgent paediatric review: PEWS 8 or more")


def test_the_same_set_scores_by_the_child_s_age_band():
    # A heart rate of 150 is 1 for an infant, 2 for a toddler, 2 for a schoolchild and 4 over 12.
    assert [pews.pulse(band, 150) for band in pews.AGE_BANDS] == [1, 1, 2, 2, 4]


def test_an_item_not_measured_is_named_missing():
    partial = pews.score(Observations(heart_rate_bpm=110), BAND["1-4y"])
    assert partial.missing == ["systolic", "respiration", "spo2", "oxygen_therapy"] and not partial.complete
    assert pews.measured_any(Observations(spo2_percent=97)) and not pews.measured_any(Observations())
    assert pews.NOT_RECORDED == ("capillary_refill", "respiratory_effort")


@given(st.sampled_from(pews.AGE_BANDS), st.sampled_from(["pulse", "systolic", "respiration"]),
       st.integers(min_value=1, max_value=300), st.integers(min_value=1, max_value=300))
def test_further_from_normal_never_scores_less(band, item, one, other):
    """Within an age band, of two values on the same side of the normal range the further scores at least
    as much; every sub-score is one of 0, 1, 2, 4."""
    low_limit, high_limit = getattr(band, item)[0]
    score = getattr(pews, item)
    first, second = sorted((one, other))
    assert {score(band, first), score(band, second)} <= {0, 1, 2, 4}
    if second <= low_limit:
        assert score(band, first) >= score(band, second)
    if first >= high_limit:
        assert score(band, second) >= score(band, first)
    if low_limit < first <= second < high_limit:
        assert score(band, first) == score(band, second) == 0
