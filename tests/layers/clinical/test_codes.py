"""The pure parts of the clinical layer: ICD-10 lookup against the WHO list, the ICD-10 finder (ranking, typos,
the words clinicians say: policies/icd10_words.toml) and the drug–allergy matcher (same substance, same class,
plural class names; no false alarm for unrelated drugs)."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.layers.clinical import drugs, icd10
from appliance.substrate.config import PROJECT_ROOT

WORDS = icd10.load_everyday_words(PROJECT_ROOT / "policies" / "icd10_words.toml")


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
    # Words begun, in any order; the code recorded for the plain disease first, not the E11 heading.
    assert [found.code for found in icd10.search("mell DIAB type 2", limit=3)] == ["E11.9", "E11.8", "E11.0"]
    assert len(icd10.search("a", limit=5)) == 5


@pytest.mark.parametrize(("typed", "first", "meant"), [
    ("pneumonia", 5, "J18.9"),  # not 25 codes of Streptococcus pneumoniae and varicella before it
    ("malaria", 3, "B54"),
    ("fever", 3, "R50.9"),
    ("anaemia", 3, "D64.9"),
    ("hypertension", 1, "I10"),  # was tenth, after renovascular, portal and neonatal hypertension
])
def test_search_offers_the_diagnosis_a_clinician_means_near_the_top(typed, first, meant):
    found = icd10.search(typed)
    assert meant in [f.code for f in found[:first]]
    whole = [typed in re.findall(r"[^\W_]+", f.display.casefold()) for f in found]
    assert whole == sorted(whole, reverse=True)  # titles with the whole word before those it only begins


LUNG_TB = {"A15.0", "A15.1", "A15.2", "A15.3", "A16.0", "A16.1", "A16.2"}  # WHO says "of lung", not "pulmonary"
MALARIA = {"B50", "B51", "B52", "B53", "B54"}
DIABETES = {"E11", "E14"}


# What a clinician's walk typed, and the codes (or their beginnings) they expected among the first three: all but
# "malaria", "pneumonia", "type 2 diabetes" and "stroke" found nothing, or not the code meant in the first three,
# before the ranking, the typo reading and the table of words said ("diarrhoea" found functional diarrhoea first,
# "depression" neonatal cerebral depression).
@pytest.mark.parametrize(("typed", "meant"), [
    ("pulmonary tuberculosis", LUNG_TB), ("tuberculosis pulmonary", LUNG_TB), ("PTB", LUNG_TB),
    ("pulmonary TB", LUNG_TB),
    ("high blood pressure", {"I10"}), ("HTN", {"I10"}),
    ("malria", MALARIA), ("paludisme", MALARIA), ("malaria", {"B54"}),
    ("pnuemonia", {"J18.9"}), ("pneumonia", {"J18.9"}),
    ("diabetis", DIABETES), ("diabetes", DIABETES), ("sugar", DIABETES), ("type 2 diabetes", {"E11"}),
    ("heart attack", {"I21", "I22"}), ("stroke", {"I63", "I64"}), ("UTI", {"N39.0"}), ("URTI", {"J06.9"}),
    ("LRTI", {"J22"}), ("PID", {"N73.9"}), ("RTA", {"V"}),
    ("diarrhoea", {"A09"}), ("preeclampsia", {"O14"}), ("neonatal sepsis", {"P36"}), ("depression", {"F32"}),
])
def test_the_words_a_clinician_types_find_the_code_meant_in_the_first_three(typed, meant):
    first = [found.code for found in icd10.search(typed, everyday=WORDS)[:3]]
    assert any(code.startswith(tuple(meant)) for code in first), first
    if meant is LUNG_TB:  # and only TB of the lung: no other TB before it
        assert set(first) <= LUNG_TB


@pytest.mark.parametrize(("typed", "everyday", "first_in"), [
    # TB of the lung first (the table: what TB alone most often is), never J65, "Pneumoconiosis associated with
    # tuberculosis", which led; and by the ranking alone a title about tuberculosis before one naming it after "with".
    ("tb", WORDS, LUNG_TB), ("tuberculosis", None, ("A15", "A16", "A17", "A18", "A19")),
    # A burn (T20-T32), not "Burn-out" (Z73.0): a part of a hyphenated word is not the word alone.
    ("burn", WORDS, tuple(f"T{n}" for n in range(20, 33))), ("burn", None, tuple(f"T{n}" for n in range(20, 33))),
    # Found nothing: WHO's title for it (F53.0) says "puerperium", not "postnatal".
    ("postnatal depression", WORDS, ("F53.0",)), ("postpartum depression", WORDS, ("F53.0",)),
])
def test_the_first_code_offered_is_the_diagnosis_meant(typed, everyday, first_in):
    assert icd10.search(typed, everyday=everyday)[0].code.startswith(tuple(first_in))


def test_the_parts_of_a_hyphenated_word_typed_together_are_the_word():
    """"pre eclampsia" is the word of "Pre-eclampsia" whole, not "pre" begun by "pregnancy": "Eclampsia in
    pregnancy" does not come among the pre-eclampsias."""
    assert all(found.code[:3] in {"O14", "O11"} for found in icd10.search("preeclampsia", limit=5, everyday=WORDS))
    assert all(found.code[:3] in {"O14", "O11"} for found in icd10.search("pre eclampsia", limit=5))


def test_a_phrase_of_the_table_is_still_found_as_its_own_words():
    """"diabetes" means diabetes mellitus, but diabetes insipidus is not lost; "MI" is an acute myocardial
    infarction first, an old one when the word typed beside it says so, and titles with a word "mi" begins
    ("Migraine") come after both."""
    assert [found.code for found in icd10.search("diabetes insipidus", everyday=WORDS)][:1] == ["E23.2"]
    assert not any(found.code.startswith("E23") for found in icd10.search("diabetes", everyday=WORDS)[:10])
    assert [found.code for found in icd10.search("old MI", everyday=WORDS)][:1] == ["I25.2"]
    mi = [found.code for found in icd10.search("mi", everyday=WORDS, limit=100)]
    assert mi[0] == "I21.9" and "G43.9" in mi
    assert max(mi.index(code) for code in mi if code[:3] in {"I21", "I22", "I25"}) < mi.index("G43.9")


@pytest.mark.parametrize("typed", ["xyzzyq", "zzqx", "malria zzqx", "qwertyuiop", "hypertension xyzzyq"])
def test_an_unknown_word_finds_nothing_rather_than_a_guess(typed):
    assert icd10.search(typed, everyday=WORDS) == []


def test_a_broken_table_is_refused_naming_the_term(tmp_path):
    table = tmp_path / "icd10_words.toml"
    table.write_text('[[term]]\nmeans = "hypertension"\nsaid = ["hbp"]\n\n'
                     '[[term]]\nmeans = "hypertenshun"\nsaid = ["high bp"]\n', encoding="utf-8")
    with pytest.raises(icd10.EverydayWordsError, match=r"term number 2, means: .*'hypertenshun'"):
        icd10.load_everyday_words(table)
    table.write_text('[[term]]\nmeans = "hypertension"\nsaid = ["--"]\n', encoding="utf-8")
    with pytest.raises(icd10.EverydayWordsError, match=r"term number 1, said: '--' has no word"):
        icd10.load_everyday_words(table)


def test_the_table_is_checked_without_building_the_finders_index(tmp_path):
    """The table is checked when the appliance starts, against the titles' words only: the finder's index (a third
    of a second more at every start, for every process) waits for the first search."""
    table = tmp_path / "icd10_words.toml"
    table.write_text('[[term]]\nmeans = "hypertension"\nsaid = ["hbp"]\n', encoding="utf-8")
    before = icd10._index.cache_info()
    assert icd10.load_everyday_words(table).meanings == {("hbp",): (("hypertension",),)}
    assert icd10._index.cache_info() == before


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
    for found in icd10.search(text, limit=3, everyday=WORDS):
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


# Penicillins and cephalosporins cross-react (drugs.CROSS_REACTIONS): a match of its own kind, read both ways, naming
# both classes; the allergy written as the class reads as the class, one drug of it is named.
@pytest.mark.parametrize(("drug", "allergy", "why", "classes"), [
    ("Ceftriaxone 1 g injection", "Penicillin",
     "Ceftriaxone 1 g injection is a cephalosporin, which can cross-react with penicillins",
     ["cephalosporins", "penicillins"]),
    ("Rocephin", "Amoxicillin", "Rocephin is a cephalosporin, which can cross-react with Amoxicillin, a penicillin",
     ["cephalosporins", "penicillins"]),
    ("Amoxicillin 500 mg capsules", "Cephalosporins",
     "Amoxicillin 500 mg capsules is a penicillin, which can cross-react with cephalosporins",
     ["penicillins", "cephalosporins"]),
    ("Augmentin", "cefalexin", "Augmentin is a penicillin, which can cross-react with cefalexin, a cephalosporin",
     ["penicillins", "cephalosporins"]),
])
def test_a_class_that_cross_reacts_with_the_allergys_is_a_match_of_its_own_kind(drug, allergy, why, classes):
    [match] = drugs.check(drug, [("a1", allergy)])
    assert match.as_dict() == {"allergy_id": "a1", "substance": allergy, "kind": "cross-reactivity",
                               "classes": classes, "why": why}
    assert drugs.allergy_refusal([{"drug": drug, "matches": [match.as_dict()]}]) == \
        f"{why} (recorded allergy to {allergy})"


def test_the_same_class_is_a_class_match_not_a_cross_reaction():
    [match] = drugs.check("Ceftriaxone", [("a1", "Cefalexin")])
    assert (match.kind, match.classes) == ("class", ("cephalosporins",))


@pytest.mark.parametrize(("drug", "allergy"), [
    ("Ceftriaxone", "Sulfonamides"), ("Cefuroxime", "Aspirin"),
    ("Paracetamol", "Penicillin"), ("Artemether-lumefantrine", "Sulfonamides"), ("Metformin", "Peanuts"),
    ("Amlodipine", "Latex"), ("Azithromycin", "Penicillin"),
    ("Augmentin", "Sulfonamides"), ("Septrin", "Penicillin"), ("Amoxil", "Aspirin"),
])
def test_no_false_alarm_for_unrelated_drugs(drug, allergy):
    assert drugs.check(drug, [("a1", allergy)]) == []
