"""The pure parts of the clinical layer: ICD-10 lookup against the WHO list and the drug–allergy
matcher (same substance, same class, plural class names; no false alarm for unrelated drugs)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.layers.clinical import drugs, icd10


@pytest.mark.parametrize(("code", "canonical", "display"), [
    ("B50.9", "B50.9", "Plasmodium falciparum malaria, unspecified"),
    ("b509", "B50.9", "Plasmodium falciparum malaria, unspecified"),
    (" E11.9 ", "E11.9", "Type 2 diabetes mellitus without complications"),
    ("O80", "O80", "Single spontaneous delivery"),
])
def test_known_codes_are_canonicalised_with_their_who_title(code, canonical, display):
    assert icd10.lookup(code) == icd10.Icd10Code(canonical, display)
    assert icd10.chapter(code) in {"I", "IV", "XV"}


@pytest.mark.parametrize("code", ["X99.99", "U99", "A00-A09", "XXI", "", "B50.99", "malaria"])
def test_codes_outside_the_list_are_refused_naming_them(code):
    with pytest.raises(icd10.InvalidIcd10) as refused:
        icd10.lookup(code)
    assert refused.value.code == code and repr(code) in str(refused.value)


@given(st.text(max_size=12))
def test_lookup_never_fails_other_than_by_refusing(text):
    try:
        found = icd10.lookup(text)
    except icd10.InvalidIcd10:
        return
    assert found.code[0].isalpha() and found.display


@pytest.mark.parametrize(("drug", "allergy", "why"), [
    ("Amoxicillin 500 mg capsules", "Penicillin", "penicillins"),
    ("Co-amoxiclav", "Amoxicillin", "penicillins"),
    ("Co-trimoxazole 960 mg", "Sulfonamides", "sulfonamides"),
    ("Diclofenac 50 mg", "NSAIDs", "nsaids"),
    ("Ceftriaxone 1 g injection", "cephalosporin", "cephalosporins"),
    ("Paracetamol 500 mg tablets", "paracetamol", "is"),
])
def test_a_drug_matches_its_substance_or_class(drug, allergy, why):
    matches = drugs.check(drug, [("a1", allergy)])
    assert [m.allergy_id for m in matches] == ["a1"] and why in matches[0].why


@pytest.mark.parametrize(("drug", "allergy"), [
    ("Paracetamol", "Penicillin"), ("Artemether-lumefantrine", "Sulfonamides"), ("Metformin", "Peanuts"),
    ("Amlodipine", "Latex"), ("Azithromycin", "Penicillin"),
])
def test_no_false_alarm_for_unrelated_drugs(drug, allergy):
    assert drugs.check(drug, [("a1", allergy)]) == []
