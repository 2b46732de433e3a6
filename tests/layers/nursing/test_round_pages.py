"""The ward nurse's pages over real HTTP: the drug round (one walk down the ward, every dose due or late by bed,
overdue first, each patient's allergies beside their doses, recorded with the MAR's own form), its refusals of
another facility's nurse and of a guessed ward; and the vitals a chart shows (a height among the tiles, a
weight alone no empty row on the observation chart)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.schemas import AllergyIn, VitalSignsIn
from appliance.substrate import audit, record
from tests.layers.nursing.conftest import NORMAL, admit
from tests.layers.nursing.test_pages import post_form


def _prescribe(conn, clinician, patient: dict, drug: str, started: dt.datetime) -> None:
    record.append(conn, clinician, "medication_request", patient_id=patient["id"], occurred_at=started,
                  encounter_id=patient["encounter_id"],
                  detail={"drug": drug, "dose": Decimal(500), "dose_unit": "mg", "route": "oral",
                          "frequency": "every 5 hours", "duration_days": 5, "status": "active", "instructions": None,
                          "allergy_override_reason": None, "order_set": None})


def _section(page: str, patient: dict) -> str:
    return page.split(f'id="patient-{patient["id"]}"')[1].split("</article>")[0]


def test_the_drug_round_lists_the_wards_doses_overdue_first_and_records_them(db, signed_in, facility, clinician):
    now = dt.datetime.now(dt.UTC)
    with db.tenant(facility.slug) as conn:
        # Every five hours (from the first whole hour after prescribing) since five and a half hours ago: its first
        # dose is late, its second due now, whatever the time of day the test runs.
        allergic = admit(conn, clinician, family="Wanjiru", given="Grace")
        clinical.add_allergy(conn, clinician, allergic["id"], AllergyIn(substance="Penicillin", severity="severe"))
        _prescribe(conn, clinician, allergic, "Amoxicillin", now - dt.timedelta(hours=5, minutes=30))
        # Since half an hour ago: its first dose is due now, nothing late.
        punctual = admit(conn, clinician, family="Kiprotich", given="Ann")
        _prescribe(conn, clinician, punctual, "Paracetamol", now - dt.timedelta(minutes=30))
        elsewhere = admit(conn, clinician, ward="MAT", family="Nafula", given="Rose")
        _prescribe(conn, clinician, elsewhere, "Metronidazole", now - dt.timedelta(minutes=30))
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    round_page = f"/t/{facility.slug}/ward/round"
    shown = nurse.get(round_page)
    assert shown.status_code == 200, shown.text
    assert "NAFULA" not in shown.text  # another ward's patient
    # Overdue first: Wanjiru (a late dose) before Kiprotich, whom the alphabet and no bed would put first.
    assert shown.text.index("WANJIRU, Grace") < shown.text.index("KIPROTICH, Ann")
    mine = _section(shown.text, allergic)
    assert "<strong>⚠ Allergies:</strong> Penicillin" in mine
    assert "same class as the allergy to Penicillin: Amoxicillin and Penicillin are both penicillins" in mine
    assert mine.count("Amoxicillin 500 mg oral") == 2 and "1 late" in mine and ">due now</span>" in mine
    theirs = _section(shown.text, punctual)
    assert "No allergies recorded" in theirs and "Paracetamol 500 mg oral" in theirs and "late" not in theirs
    # Each dose carries the MAR's own form, posted to the patient's MAR and back to the round.
    assert f'action="/t/{facility.slug}/patients/{allergic["id"]}/mar"' in mine
    assert '<input type="hidden" name="round_ward" value="GEN">' in mine

    # The late dose, held from the round: a reason is asked for, beside the dose, with what was chosen kept.
    late_slot = mine.split('name="scheduled_for" value="')[1].split('"')[0]
    request_id = mine.split('name="medication_request_id" value="')[1].split('"')[0]
    dose = {"medication_request_id": request_id, "scheduled_for": late_slot, "round_ward": "GEN", "outcome": "held"}
    action = f"/t/{facility.slug}/patients/{allergic['id']}/mar"
    refused = post_form(nurse, round_page, action, dose | {"reason": ""})
    assert refused.status_code == 422 and "<h1>Drug round" in refused.text
    again = _section(refused.text, allergic)
    assert 'role="alert" id="problem-' in again and '<option value="held" selected>' in again
    held = post_form(nurse, round_page, action, dose | {"reason": "penicillin allergy: prescriber called"})
    assert held.status_code == 303 and held.headers["location"].endswith("/ward/round?ward_code=GEN&done=dose")
    after = nurse.get(held.headers["location"])
    assert "Dose recorded on the MAR." in after.text
    kept = _section(after.text, allergic)
    assert "held" in kept and "penicillin allergy: prescriber called" in kept and "late</span>" not in kept
    # Read as the MAR reads each patient listed: their prescriptions and allergies, on their access log.
    events = [e for e in audit.patient_access_log(db, facility.slug, allergic["id"])
              if e.who["account"] == str(nurse.person.account_id)]
    assert {"record.medication_request.read", "record.allergy.read",
            "record.medication_administration.read"} <= {e.event_type for e in events}


def test_a_cross_reactivity_reads_as_one_on_the_round(db, signed_in, facility, clinician):
    """The round said '⚠ matches the allergy to Penicillin' beside ceftriaxone as beside amoxicillin itself: the
    check's kind and sentence now reach the page, so the nurse reads a cephalosporin's cross-reactivity as such."""
    now = dt.datetime.now(dt.UTC)
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Chelimo", given="Ruth")
        clinical.add_allergy(conn, clinician, patient["id"], AllergyIn(substance="Penicillin", severity="severe"))
        _prescribe(conn, clinician, patient, "Ceftriaxone", now - dt.timedelta(minutes=30))
    mine = _section(signed_in("nurse", facility.slug, ward="GEN").get(f"/t/{facility.slug}/ward/round").text, patient)
    warning = mine.split('id="allergy-match-')[1].split("</strong>")[0]
    assert '<span data-kind="cross-reactivity">cross-reactivity with the allergy to Penicillin: Ceftriaxone is a ' \
           "cephalosporin, which can cross-react with penicillins</span>" in warning
    assert "matches the allergy" not in warning


def test_the_drug_round_refuses_another_facility_a_guessed_ward_and_another_ward(signed_in, facility,
                                                                                 other_facility):
    round_page = f"/t/{facility.slug}/ward/round"
    intruder = signed_in("nurse", other_facility.slug, ward="GEN")
    assert intruder.get(round_page).status_code == 403
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    assert nurse.get(f"{round_page}?ward_code=MAT").status_code == 403
    guessed = signed_in("clinician", facility.slug).get(f"{round_page}?ward_code=NOPE")
    assert guessed.status_code == 404 and "ward NOPE at this facility" in guessed.text
    assert signed_in("registrar", facility.slug).get(round_page).status_code == 403


def test_a_height_is_a_tile_and_a_weight_alone_no_empty_row(db, signed_in, facility, clinician):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Mutiso", given="John")
        clinical.record_vitals(conn, clinician, patient["id"], VitalSignsIn.model_validate(
            NORMAL | {"encounter_id": patient["encounter_id"], "weight_kg": "71.5", "height_cm": "172.5"}))
    chart = signed_in("clinician", facility.slug).get(f"/t/{facility.slug}/patients/{patient['id']}/chart")
    assert chart.status_code == 200
    assert '<span class="tile-label">Height</span> <span class="tile-value">172.5</span>' in chart.text
    with db.tenant(facility.slug) as conn:  # weighed again the next morning, nothing else taken
        clinical.record_vitals(conn, clinician, patient["id"], VitalSignsIn.model_validate(
            {"encounter_id": patient["encounter_id"], "weight_kg": "71.0"}))
    observations = signed_in("nurse", facility.slug, ward="GEN").get(
        f"/t/{facility.slug}/patients/{patient['id']}/observations")
    assert observations.status_code == 200
    rows = observations.text.split("<tbody>")[1].split("</tbody>")[0]
    assert rows.count("<tr>") == 1 and "122/78" in rows  # the set, and no empty row for the weight


def test_the_round_offers_the_worklists_ward_picker_to_whoever_is_not_held_to_one_ward(signed_in, facility):
    """The drug round and the worklist choose a ward with one picker: a GET form back to the page it is on,
    each ward with its patients, the ward shown selected; a nurse held to her ward is offered none."""
    clinician = signed_in("clinician", facility.slug)
    for page in ("/ward", "/ward/round"):
        shown = clinician.get(f"/t/{facility.slug}{page}?ward_code=MAT").text
        picker = shown.split('<form method="get" action="/t/' + facility.slug + page + '" class="inline-form wrap">')[1]
        picker = picker.split("</form>")[0]
        assert '<label for="ward_code">Ward</label>' in picker and ">Casualty · 0 patients</option>" in picker
        assert re.search(r'<option value="MAT" selected>Maternity ward · \d+ patients?</option>', picker)
        assert '<button type="submit" class="button small">Show</button>' in picker
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    assert 'id="ward_code"' not in nurse.get(f"/t/{facility.slug}/ward/round").text
