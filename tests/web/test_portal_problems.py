"""The chart's "Problems & allergies" page (appliance/web/problems.py) over in-process HTTP: a clinician
records, resolves and withdraws problems and allergies on the page, finds ICD-10 codes without knowing
them, sees the history of each record; what the service refuses comes back next to the field with what
was typed, and roles without the write permission get no form and a 403. Refusals from another facility
and for guessed patient ids are in tests/web/test_portal.py (its FORMS and PAGES list these routes)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import shutil
import uuid
from dataclasses import dataclass

import pytest

from appliance.layers.clinical import icd10, service
from appliance.layers.clinical.schemas import ConditionIn, EncounterIn, PatientIn
from appliance.substrate import audit
from tests.web.test_portal import post_form, principal_of, withdrawn_listed, withdrawn_on_tab


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Hillside Problems Clinic")


@pytest.fixture(scope="module")
def author(person_factory, facility):
    return person_factory("clinician", facility.slug)


@dataclass(frozen=True)
class Seen:
    id: uuid.UUID
    encounter_id: uuid.UUID


@pytest.fixture(scope="module")
def patients(db, facility, author) -> list[Seen]:
    """Four patients each in a visit today: a care relationship for the facility's clinicians and nurses."""
    principal = principal_of(author, facility.slug)
    seen = []
    with db.tenant(facility.slug) as conn:
        for family, given in (("Njoroge", "Peter Kamau"), ("Akinyi", "Ruth Atieno"), ("Chebet", "Mercy"),
                              ("Wafula", "Tom")):
            registered = service.register_patient(conn, principal, PatientIn(
                family_name=family, given_names=given, birth_date=dt.date(1979, 5, 1), sex="female"))
            opened = service.open_encounter(conn, principal, registered["id"], EncounterIn(
                encounter_class="outpatient", status="in_progress", reason="Fever"))
            seen.append(Seen(registered["id"], opened["id"]))
    return seen


def tab(facility, patient: Seen) -> str:
    return f"/t/{facility.slug}/patients/{patient.id}/problems"


def current(db, facility, author, patient: Seen, kind: str) -> list[dict]:
    principal = principal_of(author, facility.slug)
    with db.tenant(facility.slug) as conn:
        if kind == "condition":
            return service.list_conditions(conn, principal, patient.id)
        return service.list_allergies(conn, principal, patient.id)


def versions(db, facility, author, patient: Seen, entry_id) -> list[dict]:
    with db.tenant(facility.slug) as conn:
        return service.entry_history(conn, principal_of(author, facility.slug), patient.id, entry_id)


def test_the_finder_lists_diagnosis_codes_and_picking_one_fills_the_form(signed_in, facility, patients):
    client = signed_in("clinician", facility.slug)
    found = client.get(tab(facility, patients[0]), params={"find": "malaria"})
    assert found.status_code == 200, found.text
    matches = found.text.split('class="rows icd-matches"')[1].split("</ul>")[0]
    assert '<span class="code">B54</span> Unspecified malaria' in matches
    assert "B50-B64" not in matches and "Antimalarials" not in matches  # no block, no word inside a word
    picked = re.search(r'href="([^"]*code=B54[^"]*)"', matches)[1].replace("&amp;", "&")
    filled = client.get(picked)
    assert 'name="code" type="text" value="B54"' in filled.text and "B54 — Unspecified malaria" in filled.text
    nothing = client.get(tab(facility, patients[0]), params={"find": "zzqx"})
    assert "No diagnosis code matches" in nothing.text
    # The words said on the ward (policies/icd10_words.toml) and a typo find the code meant, first.
    for typed, first in (("high blood pressure", "I10"), ("malria", "B54")):
        said = client.get(tab(facility, patients[0]), params={"find": typed}).text
        assert said.split('class="rows icd-matches"')[1].split('<span class="code">')[1].startswith(f"{first}<")


def test_a_term_of_the_finders_table_that_no_title_says_stops_the_start_naming_it(db, settings, tmp_path):
    """A ministry adds its clinicians' words to policies/icd10_words.toml; a meaning misspelt is refused at start."""
    from appliance.web.app import create_app

    policies = tmp_path / "policies"
    shutil.copytree(settings.policies_dir, policies)
    table = policies / "icd10_words.toml"
    table.write_text(table.read_text(encoding="utf-8").replace('means = "hypertension"', 'means = "hypertenshun"', 1),
                     encoding="utf-8")
    with pytest.raises(icd10.EverydayWordsError, match=r"term number 1, means: 'hypertenshun' must be words"):
        create_app(db, dataclasses.replace(settings, policies_dir=policies))


def test_add_a_problem_by_code_then_it_is_on_the_tab_and_the_chart_and_audited(signed_in, db, facility, patients,
                                                                              author):
    client = signed_in("clinician", facility.slug)
    patient = patients[0]
    before = len([e for e in audit.patient_access_log(db, facility.slug, patient.id)
                  if e.event_type == "record.condition.create"])
    added = post_form(client, tab(facility, patient), tab(facility, patient), {
        "code": "b54", "verification": "provisional", "onset_date": "2026-01-02", "note": "RDT pending",
        "encounter_id": str(patient.encounter_id)})
    assert added.status_code == 303 and added.headers["location"].endswith("/problems?done=problem-added")
    landed = client.get(added.headers["location"])
    assert "Problem recorded." in landed.text
    assert '<span class="code">B54</span> Unspecified malaria' in landed.text and "RDT pending" in landed.text
    chart = client.get(f"/t/{facility.slug}/patients/{patient.id}/chart")
    assert "Unspecified malaria" in chart.text.split('id="problems-title"')[1].split("</section>")[0]
    assert "Add / correct" in chart.text
    created = [e for e in audit.patient_access_log(db, facility.slug, patient.id)
               if e.event_type == "record.condition.create"]
    assert len(created) == before + 1 and created[-1].who["account"] == str(client.person.account_id)
    [row] = current(db, facility, author, patient, "condition")
    assert (row["code"], row["verification"], row["encounter_id"]) == ("B54", "provisional", patient.encounter_id)


def test_a_problem_already_active_is_asked_about_before_it_is_listed_twice(signed_in, db, facility, author):
    """Pneumonia written again at the next visit: the clinician is told it is already active (since when),
    nothing is written, what was typed stays; told it is a separate episode, it is recorded."""
    client = signed_in("clinician", facility.slug)
    principal = principal_of(author, facility.slug)
    with db.tenant(facility.slug) as conn:  # a patient of its own: the others' problem lists are asserted elsewhere
        registered = service.register_patient(conn, principal, PatientIn(
            family_name="Mutai", given_names="Kiprotich", birth_date=dt.date(1970, 2, 2), sex="male"))
        visit = service.open_encounter(conn, principal, registered["id"], EncounterIn(
            encounter_class="outpatient", status="in_progress", reason="Cough"))
    patient = Seen(registered["id"], visit["id"])
    first = post_form(client, tab(facility, patient), tab(facility, patient), {"code": "J18.9",
                                                                                 "onset_date": "2026-01-05"})
    assert first.status_code == 303
    again = post_form(client, tab(facility, patient), tab(facility, patient), {"code": "j189", "note": "worse"})
    assert again.status_code == 409
    assert re.search(r'id="code-error">J18.9 Pneumonia, unspecified is already an active problem since 05 Jan 2026',
                     again.text)
    assert 'name="also_active"' in again.text and 'value="worse"' in again.text
    assert [p["code"] for p in current(db, facility, author, patient, "condition")] == ["J18.9"]
    told = post_form(client, tab(facility, patient), tab(facility, patient),
                     {"code": "j189", "note": "worse", "also_active": "true"})
    assert told.status_code == 303
    assert [p["code"] for p in current(db, facility, author, patient, "condition")] == ["J18.9", "J18.9"]


def test_a_code_not_in_the_who_list_is_named_by_the_field_and_nothing_is_written(signed_in, db, facility, patients,
                                                                                author):
    client = signed_in("clinician", facility.slug)
    patient = patients[1]
    refused = post_form(client, tab(facility, patient), tab(facility, patient),
                        {"code": "X99.9", "note": "typed by hand", "onset_date": "2026-02-03"})
    assert refused.status_code == 422
    assert re.search(r'id="code-error">ICD-10 code &#39;X99.9&#39; is not in the WHO ICD-10 code list\.</p>',
                     refused.text), refused.text
    assert 'value="X99.9"' in refused.text and 'value="typed by hand"' in refused.text  # what was typed stays
    assert current(db, facility, author, patient, "condition") == []


def test_resolve_a_problem_with_a_reason_and_its_history_keeps_both_versions(signed_in, db, facility, patients,
                                                                             author):
    client = signed_in("clinician", facility.slug)
    patient = patients[1]
    post_form(client, tab(facility, patient), tab(facility, patient), {"code": "J06.9"})
    [problem] = current(db, facility, author, patient, "condition")
    action = f"{tab(facility, patient)}/{problem['id']}"
    missing = post_form(client, tab(facility, patient), action, {"form": "resolve", "clinical_status": "resolved"})
    assert missing.status_code == 422 and 'id="reason-error">This is required.' in missing.text
    assert len(versions(db, facility, author, patient, problem["id"])) == 1  # nothing written
    resolved = post_form(client, tab(facility, patient), action, {
        "form": "resolve", "clinical_status": "resolved", "reason": "Symptoms gone after five days"})
    assert resolved.status_code == 303 and resolved.headers["location"].endswith("?done=problem-amended")
    [now] = current(db, facility, author, patient, "condition")
    assert now["clinical_status"] == "resolved" and now["resolved_date"] is not None
    chart = client.get(f"/t/{facility.slug}/patients/{patient.id}/chart")
    assert "Acute upper respiratory infection" not in chart.text.split('id="problems-title"')[1].split("</section>")[0]
    history = client.get(f"/t/{facility.slug}/patients/{patient.id}/entries/{now['id']}/history")
    assert history.status_code == 200
    assert history.text.count('<li id="version-') == 2
    assert "Symptoms gone after five days" in history.text and "Amended" in history.text
    stale = post_form(client, tab(facility, patient), action, {"form": "resolve", "clinical_status": "resolved",
                                                               "reason": "Again, from an old page"})
    assert stale.status_code == 409 and "reload the page" in stale.text
    # Withdrawn, it is listed under the problems with its code first, as the problems show theirs.
    withdrawn_on_tab(client, tab(facility, patient), now["id"], "Another patient's diagnosis",
                     what=f'<span class="code">J06.9</span> {now["display"]}',
                     action=f"/t/{facility.slug}/patients/{patient.id}/entries/{now['id']}/entered-in-error")


def test_an_allergy_recorded_on_the_page_stops_a_prescription_then_is_withdrawn_with_its_history(
        signed_in, db, facility, patients, author):
    client = signed_in("clinician", facility.slug)
    patient = patients[2]
    added = post_form(client, tab(facility, patient), f"/t/{facility.slug}/patients/{patient.id}/allergies", {
        "substance": "Sulfonamides", "category": "medication", "reaction": "Stevens-Johnson syndrome",
        "severity": "severe", "criticality": "high"})
    assert added.status_code == 303 and added.headers["location"].endswith("?done=allergy-added")
    orders = f"/t/{facility.slug}/patients/{patient.id}/orders"
    blocked = post_form(client, orders, f"/t/{facility.slug}/patients/{patient.id}/medications", {
        "drug": "Co-trimoxazole", "dose": "960", "dose_unit": "mg", "route": "oral", "frequency": "every 12 hours"})
    assert blocked.status_code == 409 and "Drug–allergy check" in blocked.text and "Sulfonamides" in blocked.text

    [allergy] = current(db, facility, author, patient, "allergy")
    action = f"/t/{facility.slug}/patients/{patient.id}/entries/{allergy['id']}/entered-in-error"
    missing = post_form(client, tab(facility, patient), action, {"reason": ""})
    assert missing.status_code == 422 and 'id="reason-error">This is required.' in missing.text
    assert len(versions(db, facility, author, patient, allergy["id"])) == 1
    withdrawn = post_form(client, tab(facility, patient), action, {"reason": "Recorded on the wrong patient"})
    assert withdrawn.status_code == 303 and withdrawn.headers["location"].endswith("?done=retracted")
    assert current(db, facility, author, patient, "allergy") == []
    chart = client.get(f"/t/{facility.slug}/patients/{patient.id}/chart")
    assert "Sulfonamides" not in chart.text and "No allergies recorded" in chart.text
    history = client.get(f"/t/{facility.slug}/patients/{patient.id}/entries/{allergy['id']}/history")
    assert history.text.count('<li id="version-') == 2
    assert "Entered in error" in history.text and "Recorded on the wrong patient" in history.text
    assert "Sulfonamides" in history.text  # the mistaken version stays readable
    # The tab still says what was withdrawn, by whom and why, and leads to its history.
    page = client.get(tab(facility, patient)).text
    withdrawn_listed(page, allergy["id"], what="Sulfonamides", by="Test clinician", why="Recorded on the wrong patient")
    assert "1 allergy marked entered in error" in page


def test_an_allergy_status_is_changed_with_a_reason(signed_in, db, facility, patients, author):
    client = signed_in("clinician", facility.slug)
    patient = patients[0]
    post_form(client, tab(facility, patient), f"/t/{facility.slug}/patients/{patient.id}/allergies",
              {"substance": "Peanuts", "category": "food"})
    [allergy] = current(db, facility, author, patient, "allergy")
    changed = post_form(client, tab(facility, patient), f"/t/{facility.slug}/patients/{patient.id}/allergies/"
                        f"{allergy['id']}", {"clinical_status": "inactive", "criticality": "low",
                                             "reason": "Tolerated peanuts at challenge"})
    assert changed.status_code == 303 and changed.headers["location"].endswith("?done=allergy-amended")
    [now] = current(db, facility, author, patient, "allergy")
    assert (now["substance"], now["category"], now["clinical_status"]) == ("Peanuts", "food", "inactive")


def test_roles_without_the_write_permission_get_no_form_and_a_403(signed_in, db, facility, patients, author):
    patient = patients[3]
    with db.tenant(facility.slug) as conn:
        problem = service.add_condition(conn, principal_of(author, facility.slug), patient.id,
                                        ConditionIn(code="B54"))
    nurse = signed_in("nurse", facility.slug)  # records allergies, as by API; neither problems nor corrections
    page = nurse.get(tab(facility, patient))
    assert page.status_code == 200 and "Unspecified malaria" in page.text
    assert 'id="problem-form"' not in page.text and 'name="find"' not in page.text
    assert "entered-in-error" not in page.text and "Save correction" not in page.text
    assert 'id="allergy-form"' in page.text
    for action, data in ((tab(facility, patient), {"code": "B54"}),
                         (f"{tab(facility, patient)}/{problem['id']}", {"clinical_status": "resolved",
                                                                        "reason": "Not the nurse's to resolve"}),
                         (f"/t/{facility.slug}/patients/{patient.id}/entries/{problem['id']}/entered-in-error",
                          {"reason": "Not the nurse's to withdraw"})):
        assert post_form(nurse, tab(facility, patient), action, data).status_code == 403, action

    registrar = signed_in("registrar", facility.slug)
    assert registrar.get(tab(facility, patient)).status_code == 403
    refused = post_form(registrar, f"/t/{facility.slug}/patients",
                        f"/t/{facility.slug}/patients/{patient.id}/allergies", {"substance": "Latex"})
    assert refused.status_code == 403
    assert [p["code"] for p in current(db, facility, author, patient, "condition")] == ["B54"]
    assert current(db, facility, author, patient, "allergy") == []
