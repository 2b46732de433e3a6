"""The patient's access log says in words what each event touched: every kind of record entry has its
words, so a parent never reads 'looked at pews' or 'recorded allergy alert'."""

import re
import subprocess
import sys
from pathlib import Path

from appliance.layers.clinical import discharge
from appliance.layers.patient import portal
from appliance.substrate import kpis, record

# note_access(conn, principal, "<action>", <patient>, "<kind>", ...) with a patient: an event of their log.
_NOTED = re.compile(r'note_access\(\s*\w+,\s*[\w.]+,\s*"\w+",\s*([^,]+),\s*"(\w+)"')


def test_every_kind_of_record_entry_is_named_in_words():
    # The kinds the layers register, read in a fresh interpreter: tests register kinds of their own.
    listed = subprocess.run([sys.executable, "-c", "import appliance.layers; from appliance.substrate import record; "
                             "print(' '.join(record._detail_tables))"], capture_output=True, text=True, check=True)
    kinds = set(listed.stdout.split())
    assert {"vital_signs", "news2", "pews"} <= kinds
    assert sorted(kinds - set(portal.THINGS)) == []


def test_an_early_warning_score_of_a_child_reads_as_one():
    assert portal.describe("record.pews.read", "R") == "looked at an early warning score"
    assert portal.describe("record.transfer.create", "C") == "recorded your move to another ward"


def test_every_kind_noted_on_a_patients_record_is_named_in_words():
    """What the layers note on the audit seam about a patient beyond record entries (a bill's credit, a
    refund, an insurance claim, a ward worklist naming them) reaches the patient's access log too."""
    noted = {match.group(2) for path in Path(portal.__file__).parents[2].rglob("*.py")
             for match in _NOTED.finditer(path.read_text()) if match.group(1).strip() != "None"}
    assert {"invoice_credit", "claim", "medication_request"} <= noted
    assert sorted(noted - set(portal.THINGS)) == []


def test_a_command_center_drill_down_names_the_figure_not_kpi():
    """A manager opening the entries behind a command center figure reads the patient's record (`kpi.<id>` on the
    seam): the log said 'looked at kpi'. It names the figure, as policies/kpis.toml names it."""
    definitions = kpis.load_definitions(Path(portal.__file__).parents[3] / "policies" / "kpis.toml")
    names = {d.id: d.name for d in definitions}
    assert "bed_occupancy" in names
    for definition in definitions:
        event_type = record.access_event("read", None, f"kpi.{definition.id}")["event_type"]
        said = portal.describe(event_type, "R", names)
        assert said == f"looked at your record in the list behind a facility's figure: {definition.name}"
    # Without the policy's names (a figure since removed from it), its id in words, never "kpi".
    assert portal.describe("record.kpi.ed_boarding.read", "R") == \
        "looked at your record in the list behind a facility's figure: ed boarding"


def test_a_discharge_summary_reads_as_one_not_as_a_note():
    """A discharge summary is stored as a note; its reads and writes are audited as what they are."""
    assert portal.describe(f"record.{discharge.AUDITED_AS}.read", "R") == "looked at your discharge summary"
    assert portal.describe(f"record.{discharge.AUDITED_AS}.create", "C") == "recorded your discharge summary"
