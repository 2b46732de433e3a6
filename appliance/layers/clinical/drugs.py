"""The drug–allergy check: does a drug about to be prescribed match an allergy on the chart?

A match is either the same substance (amoxicillin ~ "Amoxicillin 500 mg caps") or the same drug class
(an allergy to "penicillin" matches amoxicillin, cloxacillin, co-amoxiclav...; an allergy to
amoxicillin matches other penicillins, because cross-reactivity within a class is the rule the
prescriber has to weigh). The classes below are the ones that matter most often in the facilities we
serve; a formulary-backed table can replace them without changing the interface.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DRUG_CLASSES: dict[str, frozenset[str]] = {
    "penicillins": frozenset({
        "penicillin", "amoxicillin", "ampicillin", "benzylpenicillin", "phenoxymethylpenicillin", "cloxacillin",
        "flucloxacillin", "piperacillin", "co-amoxiclav", "amoxicillin-clavulanate", "benzathine benzylpenicillin",
        "procaine penicillin",
    }),
    "cephalosporins": frozenset({
        "cephalosporin", "ceftriaxone", "cefalexin", "cephalexin", "cefuroxime", "cefixime", "cefotaxime",
        "ceftazidime", "cefazolin", "cefadroxil", "cefepime",
    }),
    "sulfonamides": frozenset({
        "sulfonamide", "sulfa", "sulphonamide", "cotrimoxazole", "co-trimoxazole", "sulfamethoxazole",
        "sulfadoxine-pyrimethamine", "sulfadiazine", "trimethoprim-sulfamethoxazole",
    }),
    "nsaids": frozenset({
        "nsaid", "ibuprofen", "diclofenac", "naproxen", "aspirin", "acetylsalicylic acid", "indometacin",
        "indomethacin", "ketorolac", "meloxicam", "piroxicam", "mefenamic acid",
    }),
    "macrolides": frozenset({"macrolide", "erythromycin", "azithromycin", "clarithromycin"}),
    "fluoroquinolones": frozenset({"fluoroquinolone", "quinolone", "ciprofloxacin", "levofloxacin",
                                   "moxifloxacin", "ofloxacin", "norfloxacin"}),
    "tetracyclines": frozenset({"tetracycline", "doxycycline", "minocycline"}),
    "opioids": frozenset({"opioid", "opiate", "morphine", "codeine", "tramadol", "pethidine", "fentanyl",
                          "oxycodone"}),
    "artemisinins": frozenset({"artemisinin", "artemether-lumefantrine", "artemether", "artesunate",
                               "dihydroartemisinin-piperaquine", "artesunate-amodiaquine"}),
    "quinine": frozenset({"quinine", "quinidine"}),
    "anticonvulsants_aromatic": frozenset({"carbamazepine", "phenytoin", "phenobarbital", "lamotrigine"}),
}
# Names that denote a whole class, so "penicillin allergy" matches every member.
CLASS_NAMES = {"penicillin": "penicillins", "penicillins": "penicillins", "cephalosporin": "cephalosporins",
               "sulfa": "sulfonamides", "sulfonamide": "sulfonamides", "sulphonamide": "sulfonamides",
               "nsaid": "nsaids", "nsaids": "nsaids", "macrolide": "macrolides", "quinolone": "fluoroquinolones",
               "fluoroquinolone": "fluoroquinolones", "opioid": "opioids", "opiate": "opioids",
               "artemisinin": "artemisinins"}

# What a prescriber or a patient writes for a drug besides the name the classes above use: a brand on the pack
# (Augmentin, Septrin, Coartem), an older British spelling still printed on labels (amoxycillin, sulphamethoxazole),
# a salt or a letter (penicillin V). Each is read as its generic name, so "Augmentin" written for a patient allergic
# to penicillin is stopped as co-amoxiclav would be, and "Amoxil" is seen to be the amoxicillin already prescribed.
SYNONYMS: dict[str, str] = {
    "amoxil": "amoxicillin", "amoxycillin": "amoxicillin", "augmentin": "co-amoxiclav", "clavulin": "co-amoxiclav",
    "amoxicillin-clavulanic acid": "co-amoxiclav", "amoxycillin-clavulanic acid": "co-amoxiclav",
    "ampiclox": "ampicillin-cloxacillin", "penicillin v": "phenoxymethylpenicillin",
    "penicillin g": "benzylpenicillin", "crystalline penicillin": "benzylpenicillin",
    "benzathine penicillin": "benzathine benzylpenicillin", "rocephin": "ceftriaxone", "zinnat": "cefuroxime",
    "keflex": "cefalexin", "septrin": "co-trimoxazole", "bactrim": "co-trimoxazole",
    "sulphamethoxazole": "sulfamethoxazole", "sulphadiazine": "sulfadiazine", "fansidar": "sulfadoxine-pyrimethamine",
    "sulphadoxine-pyrimethamine": "sulfadoxine-pyrimethamine", "brufen": "ibuprofen", "voltaren": "diclofenac",
    "voltarol": "diclofenac", "ponstan": "mefenamic acid", "disprin": "aspirin", "zithromax": "azithromycin",
    "ciproxin": "ciprofloxacin", "tramal": "tramadol", "coartem": "artemether-lumefantrine",
    "duo-cotecxin": "dihydroartemisinin-piperaquine", "tegretol": "carbamazepine", "epanutin": "phenytoin",
    "dilantin": "phenytoin",
}
_SYNONYM = re.compile(r"(?<![\w-])(" + "|".join(re.escape(name) for name in sorted(SYNONYMS, key=len, reverse=True))
                      + r")(?![\w-])")

_NOISE = re.compile(r"\b\d+(\.\d+)?\s*(mg|g|mcg|µg|ml|iu|units?|%)\b|\b(tabs?|tablets?|caps?|capsules?|syrup|"
                    r"suspension|injection|inj|oral|iv|im|allergy|intolerance|dispersible)\b")


def normalise(name: str) -> str:
    """The drug's generic name as the tables above spell it, without strength, form or route: "Augmentin 625 mg
    tablets" and "amoxicillin/clavulanic acid" both read "co-amoxiclav"."""
    text = _NOISE.sub(" ", name.lower().replace("/", "-"))
    text = re.sub(r"\s+", " ", text).strip(" -,.")
    return _SYNONYM.sub(lambda found: SYNONYMS[found[1]], re.sub(r"\s*-\s*", "-", text))


def classes_of(name: str) -> set[str]:
    text = normalise(name)
    # "Sulfonamides", "NSAIDs", "Penicillins": an allergy is often written as the plural class name.
    candidates = {text, re.sub(r"s\b", "", text)}
    found = {CLASS_NAMES[c] for c in candidates if c in CLASS_NAMES}
    for cls, members in DRUG_CLASSES.items():
        for candidate in candidates:
            if candidate in members or any(re.search(rf"\b{re.escape(m)}\b", candidate) for m in members):
                found.add(cls)
    return found


@dataclass(frozen=True)
class AllergyMatch:
    allergy_id: str  # the allergy record's root id
    substance: str
    why: str

    def as_dict(self) -> dict:
        return {"allergy_id": self.allergy_id, "substance": self.substance, "why": self.why}


def check(drug: str, allergies: Iterable[tuple[str, str]]) -> list[AllergyMatch]:
    """Allergies (root id, substance) that `drug` matches, with why each matched."""
    drug_text = normalise(drug)
    drug_classes = classes_of(drug)
    matches: list[AllergyMatch] = []
    for allergy_id, substance in allergies:
        allergen = normalise(substance)
        if not allergen:
            continue
        if allergen == drug_text or re.search(rf"\b{re.escape(allergen)}\b", drug_text) or \
                re.search(rf"\b{re.escape(drug_text)}\b", allergen):
            matches.append(AllergyMatch(str(allergy_id), substance, f"{drug} is {substance}"))
            continue
        shared = drug_classes & classes_of(substance)
        if shared:
            cls = sorted(shared)[0]
            matches.append(AllergyMatch(str(allergy_id), substance,
                                        f"{drug} and {substance} are both {cls}"))
    return matches
