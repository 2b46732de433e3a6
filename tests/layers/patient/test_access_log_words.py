"""The patient's access log says in words what each event touched: every kind of record entry has its
words, so a parent never reads 'looked at pews' or 'recorded allergy alert'."""

import appliance.layers
from appliance.layers.patient import portal
from appliance.substrate import record


def test_every_kind_of_record_entry_is_named_in_words():
    assert appliance.layers  # imported for its side effect: every layer registers its kinds
    kinds = set(record._detail_tables)
    assert {"vital_signs", "news2", "pews"} <= kinds
    assert sorted(kinds - set(portal.THINGS)) == []


def test_an_early_warning_score_of_a_child_reads_as_one():
    assert portal.describe("record.pews.read", "R") == "looked at an early warning score"
    assert portal.describe("record.transfer.create", "C") == "recorded your move to another ward"
