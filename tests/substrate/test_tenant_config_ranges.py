"""Reference ranges by age and sex in a tenant file (`ranges` of a test or component): bands that could hold the
same patient, or disagree with themselves, fail the file with a sentence naming the analyte; a patient is placed
in a band by the age the chart counts; and a file without bands keeps the fingerprint it had before bands
existed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from appliance.substrate.tenant_config import TenantFileError, parse_tenant_file
from tests.substrate.test_tenant_config import VALID

FILE = VALID + """
[[catalogue]]
loinc = "58410-2"
name = "Full blood count"
specimen = "blood"

  [[catalogue.components]]
  loinc = "718-7"
  name = "Haemoglobin"
  unit = "g/dL"
  low = 12.0
  high = 16.0
  critical_low = 7.0

[[catalogue]]
loinc = "70569-9"
name = "Malaria rapid diagnostic test"
choices = ["negative", "positive"]
abnormal = ["positive"]

[[catalogue]]
loinc = "2345-7"
name = "Glucose"
unit = "mmol/L"
low = 3.9
high = 7.8
critical_low = 2.5
critical_high = 25
"""
# FILE's fingerprint as the model gave it before `ranges` existed (commit 5fa5296): an upgrade re-applies
# every facility's file as "unchanged".
FINGERPRINT_BEFORE_BANDS = "b240c724d6f1bba82fa0560c3a5f2be35e7ab68b43876b4c2762be187601a499"
HAEMOGLOBIN = '  critical_low = 7.0\n'


def parse(tmp_path: Path, text: str):
    path = tmp_path / "facility.toml"
    path.write_text(text)
    return parse_tenant_file(path)


def with_bands(*bands: str) -> str:
    return FILE.replace(HAEMOGLOBIN, HAEMOGLOBIN + "  ranges = [" + ", ".join(bands) + "]\n", 1)


def test_a_file_without_bands_keeps_its_fingerprint_and_stored_definitions(tmp_path):
    config = parse(tmp_path, FILE)
    assert config.fingerprint() == FINGERPRINT_BEFORE_BANDS
    assert all("ranges" not in c for item in config.catalogue for c in [item.model_dump(mode="json"),
                                                                        *item.model_dump(mode="json")["components"]])


@pytest.mark.parametrize(("bands", "says"), [
    (('{ from_age = "6M", to_age = "5Y", low = 11.0 }', '{ sex = "male", from_age = "2Y", low = 13.0 }'),
     "Haemoglobin's bands any sex from 6M to 5Y and male from 2Y overlap"),
    (('{ sex = "female", from_age = "15Y", low = 12.0 }', '{ sex = "female", from_age = "50Y", low = 11.5 }'),
     "Haemoglobin's bands female from 15Y and female from 50Y overlap"),
    (('{ from_age = "5Y", to_age = "12M", low = 11.5 }',), "ends at or before it starts"),
    (('{ from_age = "15Y", low = 17.0 }',), "Haemoglobin's band any sex from 15Y: reference range low 17.0 is above "
                                          "high 16.0"),
    (('{ from_age = "6M", critical_low = 12.5 }',), "critical low 12.5 is above the reference range's low 12.0"),
    (('{ from_age = "6 months", low = 11.0 }',), "should match pattern"),
    (('{ from_age = "6M" }',), "gives no limit"),
])
def test_bands_that_disagree_fail_the_file_naming_the_analyte(tmp_path, bands, says):
    with pytest.raises(TenantFileError) as failure:
        parse(tmp_path, with_bands(*bands))
    assert says in str(failure.value), str(failure.value)


def test_bands_by_sex_side_by_side_and_ages_end_to_end_are_one_band_each(tmp_path):
    config = parse(tmp_path, with_bands('{ from_age = "6M", to_age = "5Y", low = 11.0 }',
                                        '{ from_age = "5Y", to_age = "15Y", low = 11.5 }',
                                        '{ sex = "female", from_age = "15Y", low = 12.0 }',
                                        '{ sex = "male", from_age = "15Y", low = 13.0, high = 17.0 }'))
    haemoglobin = config.catalogue[0].components[0]
    day = dt.date(2026, 3, 10)
    judged = {who: haemoglobin.for_patient(sex, born, day) for who, (sex, born) in {
        "on their fifth birthday": ("female", dt.date(2021, 3, 10)), "the day before": ("male", dt.date(2021, 3, 11)),
        "a man": ("male", dt.date(1980, 1, 1)), "a woman": ("female", dt.date(1980, 1, 1)),
        "an infant": ("female", dt.date(2026, 1, 1)), "an adult of other sex": ("other", dt.date(1980, 1, 1))}.items()}
    assert {who: (a.low, a.high, a.critical_low) for who, a in judged.items()} == {
        "on their fifth birthday": (11.5, 16.0, 7.0), "the day before": (11.0, 16.0, 7.0),
        "a man": (13.0, 17.0, 7.0), "a woman": (12.0, 16.0, 7.0),
        "an infant": (12.0, 16.0, 7.0), "an adult of other sex": (12.0, 16.0, 7.0)}
    assert {who: a.band for who, a in judged.items()} == {
        "on their fifth birthday": "5 years to 15 years", "the day before": "6 months to 5 years",
        "a man": "male, 15 years and over", "a woman": "female, 15 years and over", "an infant": None,
        "an adult of other sex": None}


@pytest.mark.parametrize(("limits", "says"), [
    ("  possible_high = 15.0\n", "Haemoglobin: high 16.0 is above possible high 15.0: no result could reach it"),
    ("  possible_low = 8.0\n", "Haemoglobin: critical low 7.0 is below possible low 8.0"),
    ("  possible_low = 30.0\n  possible_high = 20.0\n", "possible low 30.0 is not below possible high 20.0"),
    ('  possible_high = 25.0\n  ranges = [{ from_age = "0D", to_age = "7D", high = 26.0 }]\n',
     "Haemoglobin's band any sex from 0D to 7D: high 26.0 is above possible high 25.0"),
])
def test_possible_limits_inside_a_range_fail_the_file_naming_the_analyte(tmp_path, limits, says):
    with pytest.raises(TenantFileError) as failure:
        parse(tmp_path, FILE.replace(HAEMOGLOBIN, HAEMOGLOBIN + limits, 1))
    assert says in str(failure.value), str(failure.value)


def test_a_test_read_as_choices_has_no_possible_limits(tmp_path):
    with pytest.raises(TenantFileError) as failure:
        parse(tmp_path, FILE.replace('abnormal = ["positive"]', 'abnormal = ["positive"]\npossible_high = 3', 1))
    assert "possible limits are for a number" in str(failure.value)


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[2] / "tenants").glob("*.toml")), ids=lambda p: p.stem)
def test_the_demo_files_judge_a_child_by_a_childs_range(path):
    """A child's white cells and platelets, and a newborn's haemoglobin and haematocrit, were flagged against an
    adult's range: a newborn's haemoglobin of 18.5 high, a three-year-old's white cells of 13 high. Each facility's
    full blood count now has bands for them (The Harriet Lane Handbook's, the file says), and limits no specimen
    passes."""
    blood_count = next(item for item in parse_tenant_file(path).catalogue if item.loinc == "58410-2")
    components = {c.name: c for c in blood_count.components}
    day = dt.date(2026, 3, 10)
    newborn, toddler, man = dt.date(2026, 3, 8), dt.date(2023, 1, 1), dt.date(1980, 1, 1)
    judged = {(name, who): components[name].for_patient("male", born, day) for name in components
              for who, born in {"newborn": newborn, "toddler": toddler, "man": man}.items()}
    assert (judged["Haemoglobin", "newborn"].low, judged["Haemoglobin", "newborn"].high) == (14.5, 22.0)
    assert judged["Haemoglobin", "newborn"].band == "under 7 days"
    assert (judged["White cell count", "toddler"].low, judged["White cell count", "toddler"].high) == (5.5, 15.5)
    assert judged["White cell count", "man"].band is None  # the laboratory's own range
    assert judged["Platelets", "toddler"].high == 450 and judged["Platelets", "man"].high == 400
    assert components["Platelets"].possible_high == 10000
    if "Haematocrit" in components:
        assert (judged["Haematocrit", "newborn"].low, judged["Haematocrit", "newborn"].high) == (45, 65)
        assert judged["Haematocrit", "man"].low == 41 and judged["Haematocrit", "man"].band == "male, 18 years and over"
    assert "Harriet Lane" in path.read_text()
