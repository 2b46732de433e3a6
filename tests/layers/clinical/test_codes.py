"""The pure parts of the clinical layer: ICD-10 lookup against the WHO list and the drug–allergy
matcher (same substance, same class, plural class names; no false alarm for unrelated drugs)."""

import re

import pytest
from hypothesis import given, settings
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


def test_search_finds_diagnoses_by_title_words_never_a_chapter_or_block():
    malaria = [found.code for found in icd10.search("malaria")]
    assert {"B50", "B50.9", "B54"} <= set(malaria) and "B50-B64" not in malaria and "I" not in malaria
    assert "T37.2" not in malaria  # "Antimalarials": a word must start with what was typed
    assert all(icd10.lookup(code).code == code for code in malaria)  # each one a code a problem may carry
    assert [found.code for found in icd10.search("DIAB mell type 2", limit=2)] == ["E11", "E11.0"]
    assert len(icd10.search("a", limit=5)) == 5


@pytest.mark.parametrize(("typed", "first", "meant"), [
    ("pneumonia", 5, "J18.9"),  # not 25 codes of Streptococcus pneumoniae and varicella before it
    ("malaria", 3, "B54"),
    ("fever", 3, "R50.9"),
    ("anaemia", 3, "D64.9"),
    ("hypertension", 10, "I10"),
])
def test_search_offers_the_diagnosis_a_clinician_means_near_the_top(typed, first, meant):
    found = icd10.search(typed)
    assert meant in [f.code for f in found[:first]]
    whole = [typed in re.findall(r"[^\W_]+", f.display.casefold()) for f in found]
    assert whole == sorted(whole, reverse=True)  # titles with the whole word before those it only begins


@pytest.mark.parametrize(("typed", "codes"), [
    ("b50", ["B50", "B50.0", "B50.8", "B50.9"]), ("B50.9", ["B50.9"]), ("e119", ["E11.9"]),
    ("zzqx", []), ("A00-A09", []), ("  ", []), ("", []), ("X99.99", []),
])
def test_search_by_code_prefix_and_no_match(typed, codes):
    assert [found.code for found in icd10.search(typed)] == codes


# Each example scans the whole list, and the first loads it: a few dozen examples, without hypothesis's
# per-example deadline (timings on a shared machine would make it flaky, not the search).
@settings(max_examples=30, deadline=None)
@given(st.text(max_size=20))
def test_search_never_fails_and_offers_only_diagnosis_codes(text):
    for found in icd10.search(text, limit=3):
        assert icd10.lookup(found.code) == found


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


# A brand on the pack or an older spelling still printed on labels is the drug it names: each of these went
# through the check unremarked, and a patient allergic to penicillin got Augmentin.
@pytest.mark.parametrize(("drug", "allergy", "why"), [
    ("Augmentin 625 mg tablets", "Penicillin", "penicillins"),
    ("Amoxil 500 mg capsules", "Amoxicillin", "Amoxil 500 mg capsules is Amoxicillin"),
    ("amoxycillin", "Penicillin", "penicillins"),
    ("Penicillin V 250 mg", "Amoxicillin", "penicillins"),
    ("Septrin 960 mg", "Sulphonamides", "sulfonamides"),
    ("Fansidar", "co-trimoxazole", "sulfonamides"),
    ("Brufen 400 mg", "Aspirin", "nsaids"),
    ("Coartem", "Artemether-lumefantrine", "is"),
])
def test_a_brand_or_an_older_spelling_is_checked_as_the_drug_it_names(drug, allergy, why):
    matches = drugs.check(drug, [("a1", allergy)])
    assert [m.allergy_id for m in matches] == ["a1"] and why in matches[0].why


def test_a_brand_and_its_generic_read_as_one_drug():
    """What the portal compares to tell a second prescription of the same drug (`_already_prescribed`)."""
    assert drugs.normalise("Amoxil") == drugs.normalise("amoxycillin 500 mg caps") == drugs.normalise("Amoxicillin")
    assert drugs.normalise("Augmentin") == drugs.normalise("Amoxicillin / clavulanic acid") == "co-amoxiclav"
    assert drugs.normalise("Amoxicillin") != drugs.normalise("Augmentin")


@pytest.mark.parametrize(("drug", "allergy"), [
    ("Paracetamol", "Penicillin"), ("Artemether-lumefantrine", "Sulfonamides"), ("Metformin", "Peanuts"),
    ("Amlodipine", "Latex"), ("Azithromycin", "Penicillin"),
    ("Augmentin", "Sulfonamides"), ("Septrin", "Penicillin"), ("Amoxil", "Aspirin"),
])
def test_no_false_alarm_for_unrelated_drugs(drug, allergy):
    assert drugs.check(drug, [("a1", allergy)]) == []
