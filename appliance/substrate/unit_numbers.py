"""The number on a bag of blood as one string, however it reached the appliance, for the blood bank (clinical layer)
and the bedside record (nursing layer) to compare: two layers that cannot import each other must read a label alike,
or a unit typed at the bench one way and scanned at the bedside another would be "not issued to this patient".

A label prints the ISBT 128 donation identification number in groups (`G1234 26 123456`, then two flag characters
in a box); its barcode carries `=G123426123456` and the flags. Typed, scanned or copied, it is the same unit: upper
case, without the barcode's leading `=`, spaces and hyphens, and an ISBT number's two flag characters dropped.
"""

from __future__ import annotations

import re

_ISBT_WITH_FLAGS = re.compile(r"^([A-Z][0-9A-Z]{4}[0-9]{8})[0-9A-Z]{2}$")
SHAPE = r"^=?[A-Za-z0-9][A-Za-z0-9 -]*$"  # what a field taking a unit number accepts, before it is made canonical


def canonical_unit_number(given: str) -> str:
    text = re.sub(r"[\s-]", "", given.strip().removeprefix("=")).upper()
    isbt = _ISBT_WITH_FLAGS.match(text)
    return isbt.group(1) if isbt else text
