"""The blood bank's compatibility rules (appliance/layers/clinical/blood.py), hand-worked: every recipient x donor
ABO group for red cells, whole blood, plasma and platelets, and RhD, written out as a person checks them against
the ANZSBT/Lifeblood tables, not derived from the module's own sets."""

from __future__ import annotations

import pytest

from appliance.layers.clinical.blood import incompatibility, parse_group
from appliance.substrate.unit_numbers import canonical_unit_number

# recipient -> the donor groups that may be given ("." refused), in the order O, A, B, AB.
RED_CELLS = {"O": "O . . .", "A": "O A . .", "B": "O . B .", "AB": "O A B AB"}
WHOLE_BLOOD = {"O": "O . . .", "A": ". A . .", "B": ". . B .", "AB": ". . . AB"}
PLASMA = {"O": "O A B AB", "A": ". A . AB", "B": ". . B AB", "AB": ". . . AB"}
GROUPS = ("O", "A", "B", "AB")
TABLES = {"red_cells": RED_CELLS, "whole_blood": WHOLE_BLOOD, "plasma": PLASMA, "platelets": PLASMA}


@pytest.mark.parametrize("component", sorted(TABLES))
def test_every_recipient_and_donor_abo_group(component):
    for recipient, row in TABLES[component].items():
        allowed = {g for g in row.split() if g != "."}
        for donor in GROUPS:
            refused = incompatibility(component, recipient, "positive", donor, "positive")
            assert (refused is None) == (donor in allowed), (component, recipient, donor, refused)
            if refused:
                assert f"group {recipient} patient may not receive group {donor}" in refused


def test_rhd_negative_recipients_get_rhd_negative_cells_and_platelets_but_any_plasma():
    for component in ("red_cells", "whole_blood", "platelets"):
        refused = incompatibility(component, "O", "negative", "O", "positive")
        assert refused is not None and "RhD-negative patient may not receive RhD-positive" in refused
        assert incompatibility(component, "O", "negative", "O", "negative") is None
        assert incompatibility(component, "O", "positive", "O", "negative") is None
    assert incompatibility("plasma", "A", "negative", "AB", "positive") is None


def test_the_catalogue_answer_reads_as_a_group():
    assert parse_group("AB-") == ("AB", "negative")
    assert parse_group("O+") == ("O", "positive")
    assert parse_group("C+") is None and parse_group("A") is None and parse_group(None) is None


def test_a_unit_number_typed_or_scanned_is_one_string():
    label, scanned = "G1234 26 123456", "=G123426123456 00"  # the label's groups; the ISBT 128 barcode's data
    assert canonical_unit_number(label) == canonical_unit_number(scanned) == "G123426123456"
    assert canonical_unit_number(" ld26-000001 ") == "LD26000001"
    assert canonical_unit_number("G123426123456") == "G123426123456"  # no flags: kept whole
