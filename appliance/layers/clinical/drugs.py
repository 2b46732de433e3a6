"""The drug–allergy check: does a drug about to be prescribed match an allergy on the chart?

A match is of one of three kinds: the same substance (amoxicillin ~ "Amoxicillin 500 mg caps"), the same drug
class (an allergy to "penicillin" matches amoxicillin, cloxacillin, co-amoxiclav...; an allergy to amoxicillin
matches other penicillins, because cross-reactivity within a class is the rule the prescriber has to weigh), or
a class known to cross-react with the allergy's (`CROSS_REACTIONS`: a penicillin allergy and ceftriaxone). Each
asks the prescriber for a reason to prescribe anyway. The classes below are the ones that matter most often in
the facilities we serve; a formulary-backed table can replace them without changing the interface.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

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
# How a sentence names one member of a class and the class ("ceftriaxone is a cephalosporin, which can cross-react
# with penicillins").
CLASS_WORDS: dict[str, tuple[str, str]] = {
    "penicillins": ("a penicillin", "penicillins"), "cephalosporins": ("a cephalosporin", "cephalosporins"),
    "sulfonamides": ("a sulfonamide", "sulfonamides"), "nsaids": ("an NSAID", "NSAIDs"),
    "macrolides": ("a macrolide", "macrolides"), "fluoroquinolones": ("a fluoroquinolone", "fluoroquinolones"),
    "tetracyclines": ("a tetracycline", "tetracyclines"), "opioids": ("an opioid", "opioids"),
    "artemisinins": ("an artemisinin", "artemisinins"), "quinine": ("a cinchona alkaloid", "cinchona alkaloids"),
    "anticonvulsants_aromatic": ("an aromatic anticonvulsant", "aromatic anticonvulsants"),
}


@dataclass(frozen=True)
class CrossReaction:
    """Two classes an allergy to either of which warns of the other, and why (the evidence relied on)."""

    classes: frozenset[str]
    why: str


# Read both ways: an allergy to either class warns of the other. The check does not weigh the reaction recorded; the
# prescriber does, with the reason asked (the 2022 parameter gives most penicillin-allergic patients a cephalosporin
# without testing, and after anaphylaxis one of a dissimilar side chain). Carbapenems are not here, nor a class above:
# the same parameter finds their cross-reactivity with penicillins under 1% and gives them without precautions, so a
# stop asking for a reason would be an alert prescribers learn to click through.
PRACTICE_PARAMETER_2022 = ("Khan DA et al., Drug allergy: a 2022 practice parameter update (AAAAI/ACAAI), "
                           "J Allergy Clin Immunol 2022;150:1333-93")
CROSS_REACTIONS = (
    CrossReaction(frozenset({"penicillins", "cephalosporins"}),
                  "both beta-lactams, early cephalosporins sharing R1 side chains with aminopenicillins; about 2% of "
                  f"penicillin-allergic patients react to a cephalosporin ({PRACTICE_PARAMETER_2022})"),
)


def cross_reacting(drug_class: str, allergy_class: str) -> CrossReaction | None:
    """The cross-reaction between a drug's class and an allergy's, if the table knows one."""
    return next((c for c in CROSS_REACTIONS if c.classes == {drug_class, allergy_class}), None)


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


def _spellings(name: str) -> set[str]:
    text = normalise(name)
    # "Sulfonamides", "NSAIDs", "Penicillins": an allergy is often written as the plural class name.
    return {text, re.sub(r"s\b", "", text)}


def _names_a_class(name: str) -> bool:
    return any(c in CLASS_NAMES for c in _spellings(name))


def classes_of(name: str) -> set[str]:
    candidates = _spellings(name)
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
    kind: Literal["substance", "class", "cross-reactivity"] = "substance"
    classes: tuple[str, ...] = ()  # the class shared; for cross-reactivity, the drug's then the allergy's

    def as_dict(self) -> dict:
        return {"allergy_id": self.allergy_id, "substance": self.substance, "kind": self.kind,
                "classes": list(self.classes), "why": self.why}


def _cross_reactivity(drug: str, drug_classes: set[str], allergy_id: str, substance: str,
                      allergy_classes: set[str]) -> AllergyMatch | None:
    for drug_class in sorted(drug_classes):
        for allergy_class in sorted(allergy_classes):
            if cross_reacting(drug_class, allergy_class) is None:
                continue
            # "Penicillin allergy" names the class already; "amoxicillin allergy" is said to be one of it.
            allergen = CLASS_WORDS[allergy_class][1] if _names_a_class(substance) else \
                f"{substance}, {CLASS_WORDS[allergy_class][0]}"
            return AllergyMatch(allergy_id, substance, f"{drug} is {CLASS_WORDS[drug_class][0]}, which can "
                                f"cross-react with {allergen}", "cross-reactivity", (drug_class, allergy_class))
    return None


def check(drug: str, allergies: Iterable[tuple[str, str]]) -> list[AllergyMatch]:
    """Allergies (root id, substance) that `drug` matches, with why each matched: the same substance first, else
    the same class, else a class that cross-reacts with the allergy's."""
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
        allergy_classes = classes_of(substance)
        shared = drug_classes & allergy_classes
        if shared:
            cls = sorted(shared)[0]
            matches.append(AllergyMatch(str(allergy_id), substance, f"{drug} and {substance} are both {cls}", "class",
                                        (cls,)))
            continue
        crossing = _cross_reactivity(drug, drug_classes, str(allergy_id), substance, allergy_classes)
        if crossing is not None:
            matches.append(crossing)
    return matches


def allergy_refusal(blocked: list[dict]) -> str:
    """What the check found for the drugs it stopped (`{drug, matches: [AllergyMatch.as_dict()...]}`), as the clause
    a refusal's sentence gives: each match's why and the allergy recorded."""
    return "; ".join(f"{m['why']} (recorded allergy to {m['substance']})" for b in blocked for m in b["matches"])
