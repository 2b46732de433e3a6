"""Medicines reconciliation on admission over the clinical API: the medicines an admitted patient came in on,
continued (a new prescription of the stay), stopped or held, all or nothing, each refusal naming its field;
every read and write audited; nurses read, clinicians decide; another facility's token and guessed ids
refused."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import AllergyIn, EncounterIn, MedicationIn
from appliance.substrate import audit, record
from tests.layers.clinical.conftest import new_patient
from tests.layers.clinical.test_chart_in_care import _last_seq
from tests.layers.clinical.test_routes import BASE


def _from_the_clinic(conn, principal, patient_id, visit_id, drug: str, days_ago: int) -> record.Entry:
    """A clinic's prescription of `days_ago`, with no duration and still active."""
    return record.append(conn, principal, "medication_request", patient_id=patient_id, encounter_id=visit_id,
                         occurred_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago), detail={
                             "drug": drug, "dose": Decimal(5), "dose_unit": "mg", "route": "oral",
                             "frequency": "once daily", "duration_days": None, "status": "active",
                             "instructions": None, "allergy_override_reason": None, "order_set": None})


@pytest.fixture(scope="module")
def admitted(db, facility, clinician) -> dict:
    """On amlodipine, amoxicillin and omeprazole from a clinic visit; allergic to penicillin since; now
    admitted, with ceftriaxone prescribed in the stay (the check asks why, a cephalosporin cross-reacting)."""
    with db.tenant(facility.slug) as conn:
        patient = new_patient(conn, clinician, family_name="Wekesa", given_names="Tom")
        pid = patient["id"]
        visit = service.open_encounter(conn, clinician, pid, EncounterIn(encounter_class="outpatient"))
        came_in = {drug: _from_the_clinic(conn, clinician, pid, visit["id"], drug, days)
                   for drug, days in (("Amlodipine", 90), ("Amoxicillin", 20), ("Omeprazole", 60))}
        service.add_allergy(conn, clinician, pid, AllergyIn(substance="Penicillin", reaction="rash"))
        stay = service.open_encounter(conn, clinician, pid, EncounterIn(
            encounter_class="inpatient", status="in_progress", ward_code="GEN", reason="Pneumonia"))
        in_stay = service.request_medication(conn, clinician, pid, MedicationIn(
            drug="Ceftriaxone", dose=1, dose_unit="g", route="IV", frequency="once daily", duration_days=5,
            allergy_override_reason="a rash, not anaphylaxis", encounter_id=stay["id"])).placed[0]
    return {"base": f"{BASE.format(tenant=facility.slug)}/patients/{pid}", "stay": str(stay["id"]),
            "came_in": {drug: str(e.id) for drug, e in came_in.items()}, "in_stay": str(in_stay["id"])}


def test_a_clinician_reconciles_what_the_patient_came_in_on(api, db, facility, admitted):
    base, came_in = admitted["base"], admitted["came_in"]
    before = _last_seq(db, facility.slug)
    shown = api.get(f"{base}/medication-reconciliation")
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["stay"]["id"] == admitted["stay"] and body["to_reconcile"] == 3
    assert [(m["drug"], m["decision"]) for m in body["medicines"]] == [
        ("Amlodipine", None), ("Omeprazole", None), ("Amoxicillin", None)]  # oldest first; not the stay's own
    read = {e["type"] for e in audit.read_events(db, facility.slug, first_seq=before + 1)}
    assert {"record.encounter.read", "record.medication_request.read"} <= read

    def refused(decisions: list[dict], status: int, field: str) -> dict:
        answer = api.post(f"{base}/medication-reconciliation", json={"decisions": decisions})
        assert answer.status_code == status, answer.text
        assert answer.json().get("field") == field or field in answer.text, answer.text
        return answer.json()

    amlodipine = {"medication_request_id": came_in["Amlodipine"], "decision": "continue"}
    held = refused([amlodipine, {"medication_request_id": came_in["Omeprazole"], "decision": "hold"}], 422,
                   "decisions[1].reason")
    assert "say why Omeprazole is held" in held["detail"]
    refused([amlodipine, {"medication_request_id": admitted["in_stay"], "decision": "stop", "reason": "no"}], 422,
            "decisions[1].medication_request_id")
    refused([amlodipine, {**amlodipine, "decision": "hold", "reason": "twice"}], 422,
            "decisions[1].medication_request_id")
    refused([{"medication_request_id": str(uuid.uuid4()), "decision": "hold", "reason": "guess"}], 422,
            "decisions[0].medication_request_id")
    refused([{"medication_request_id": came_in["Amlodipine"], "decision": "double"}], 422, "decision")
    refused([], 422, "decisions")
    blocked = refused([amlodipine, {"medication_request_id": came_in["Amoxicillin"], "decision": "continue"}], 409,
                      "decisions[1].allergy_override_reason")
    assert "Penicillin" in str(blocked["conflicts"])
    # All or nothing: the continuation of amlodipine sent with each refused decision was not written.
    medications = api.get(f"{base}/medications").json()
    assert sorted(m["drug"] for m in medications) == ["Amlodipine", "Amoxicillin", "Ceftriaxone", "Omeprazole"]
    assert api.get(f"{base}/medication-reconciliation").json()["to_reconcile"] == 3

    before = _last_seq(db, facility.slug)
    done = api.post(f"{base}/medication-reconciliation", json={"decisions": [
        amlodipine,
        {"medication_request_id": came_in["Amoxicillin"], "decision": "stop", "reason": "penicillin allergy"},
        {"medication_request_id": came_in["Omeprazole"], "decision": "hold", "reason": "restart at discharge"}]})
    assert done.status_code == 200, done.text
    decided = {d["drug"]: d for d in done.json()["decided"]}
    assert done.json()["to_reconcile"] == 0
    written = [e["type"] for e in audit.read_events(db, facility.slug, first_seq=before + 1)]
    assert written.count("record.medication_reconciliation.create") == 3
    assert {"record.medication_request.create", "record.medication_request.amend"} <= set(written)
    medications = {(m["drug"], m["encounter_id"]): m for m in api.get(f"{base}/medications").json()}
    continuation = medications[("Amlodipine", admitted["stay"])]
    assert continuation["root_id"] == decided["Amlodipine"]["continued_as"] and continuation["status"] == "active"
    assert next(m for (drug, _), m in medications.items() if drug == "Amoxicillin")["status"] == "stopped"
    shown = {m["drug"]: m["decision"] for m in api.get(f"{base}/medication-reconciliation").json()["medicines"]}
    assert (shown["Amlodipine"]["decision"], shown["Amoxicillin"]["decision"], shown["Omeprazole"]["decision"]) == (
        "continue", "stop", "hold")
    assert shown["Omeprazole"]["reason"] == "restart at discharge"

    again = refused([amlodipine], 409, "decisions[0].decision")
    assert "already continued" in again["detail"]
    continued = api.post(f"{base}/medication-reconciliation", json={"decisions": [
        {"medication_request_id": came_in["Omeprazole"], "decision": "continue", "reason": "eating again"}]})
    assert continued.status_code == 200, continued.text
    assert continued.json()["decided"][0]["continued_as"] is not None
    # On discharge a continued medicine is one line (the stay's prescription), not two; the stopped one is gone.
    going_home = api.get(f"{base}/discharge-summaries/draft").json()["fields"]["medications"].splitlines()
    assert sorted(line.split()[0] for line in going_home) == ["Amlodipine", "Ceftriaxone", "Omeprazole"]


def test_nurses_read_and_a_patient_not_admitted_has_nothing_to_reconcile(api, token_client, facility, admitted):
    nurse = token_client(facility.slug, role="nurse")
    assert nurse.get(f"{admitted['base']}/medication-reconciliation").status_code == 200
    decided = nurse.post(f"{admitted['base']}/medication-reconciliation", json={"decisions": [
        {"medication_request_id": admitted["came_in"]["Amlodipine"], "decision": "hold", "reason": "nurse"}]})
    assert decided.status_code == 403
    outpatient = api.post(f"{BASE.format(tenant=facility.slug)}/patients", json={
        "family_name": "Nyambura", "given_names": "Jane", "birth_date": "1980-01-01", "sex": "female"}).json()
    base = f"{BASE.format(tenant=facility.slug)}/patients/{outpatient['id']}"
    api.post(f"{base}/encounters", json={"encounter_class": "outpatient"})
    assert api.get(f"{base}/medication-reconciliation").json() == {"stay": None, "medicines": [], "to_reconcile": 0}
    answer = api.post(f"{base}/medication-reconciliation", json={"decisions": [
        {"medication_request_id": str(uuid.uuid4()), "decision": "hold", "reason": "not admitted"}]})
    assert answer.status_code == 409 and answer.json()["field"] == "patient_id"


def test_another_facilitys_token_and_guessed_ids_are_refused(api, token_client, facility, other_facility, admitted):
    intruder = token_client(other_facility.slug, role="clinician")
    body = {"decisions": [{"medication_request_id": admitted["came_in"]["Amlodipine"], "decision": "hold",
                           "reason": "mine now"}]}
    for base in (admitted["base"], f"{BASE.format(tenant=facility.slug)}/patients/{uuid.uuid4()}"):
        for client, expected in ((intruder, 403), (api, 404)):
            if base == admitted["base"] and client is api:
                continue
            read = client.get(f"{base}/medication-reconciliation")
            written = client.post(f"{base}/medication-reconciliation", json=body)
            assert (read.status_code, written.status_code) == (expected, expected), (read.text, written.text)
            assert "Amlodipine" not in read.text + written.text
    own = token_client(other_facility.slug, role="clinician")  # the other facility's own patient ids are its own
    assert own.get(f"{BASE.format(tenant=other_facility.slug)}/patients/"
                   f"{admitted['base'].rsplit('/', 1)[1]}/medication-reconciliation").status_code == 404
