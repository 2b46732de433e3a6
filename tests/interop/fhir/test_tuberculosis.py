"""The FHIR facade's EpisodeOfCare over HTTP (appliance/interop/fhir/resources.py `episode_of_care`): a TB treatment
on the facility's register, finished once its outcome is recorded, with the case it treats as a contained Condition
(ICD-10 A15/A16 for a pulmonary case by its bacteriology, an extrapulmonary one as text); never the HIV status
recorded at its start. Read by id, searched by patient, in $everything only for those who read the TB card, in the
CapabilityStatement; every read on the patient's access log; another facility's token, a guessed id, another
facility's treatment and a token without `clinical.tb.read` refused."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from appliance.layers.clinical import service, tuberculosis
from appliance.layers.clinical.schemas import ConditionIn, EncounterIn, PatientIn
from appliance.layers.clinical.tuberculosis import load_regimens
from appliance.layers.clinical.tuberculosis_schemas import TbOutcomeIn, TbRegistrationIn
from appliance.substrate import audit
from tests.interop.fhir.conftest import answer, base, refusal

ICD10 = "http://hl7.org/fhir/sid/icd-10"


def _case(db, settings, tenant: str, writer, family: str) -> dict:
    """A patient seen here, treated for confirmed pulmonary TB (HIV-positive at the start) to completion, and now on
    treatment again for extrapulmonary TB diagnosed clinically."""
    today = dt.date.today()
    regimens = load_regimens(settings.policies_dir / "tuberculosis.toml")
    with db.tenant(tenant) as conn:
        patient = service.register_patient(conn, writer, PatientIn(
            family_name=family, given_names="Juma", birth_date=dt.date(1990, 5, 1), sex="male"))
        pid = patient["id"]
        service.open_encounter(conn, writer, pid, EncounterIn(encounter_class="outpatient", reason="cough"))
        asthma = service.add_condition(conn, writer, pid, ConditionIn(code="J45.9"))

        def registered(days_ago: int, site: str, bacteriology: str) -> dict:
            return tuberculosis.register(conn, writer, pid, TbRegistrationIn(
                started_on=today - dt.timedelta(days=days_ago), site=site, bacteriology=bacteriology, history="new",
                regimen="2HRZE/4HR", hiv_status="positive", weight_kg="52.5"), regimens=regimens, today=today)

        first = registered(200, "pulmonary", "bacteriologically_confirmed")
        completed_on = today - dt.timedelta(days=10)
        tuberculosis.record_outcome(conn, writer, pid, first["root_id"], TbOutcomeIn(
            outcome="treatment_completed", outcome_on=completed_on), regimens=regimens, today=today)
        second = registered(5, "extrapulmonary", "clinically_diagnosed")
    return {"patient": pid, "asthma": asthma["root_id"], "completed": first["root_id"],
            "completed_number": first["register_number"], "completed_on": completed_on.isoformat(),
            "open": second["root_id"],
            "started": [(today - dt.timedelta(days=d)).isoformat() for d in (200, 5)]}


@pytest.fixture(scope="module")
def treated(db, settings, facility, writer) -> dict:
    return _case(db, settings, facility.slug, writer, "Kamau")


def test_a_completed_treatment_is_a_finished_episode_with_its_resolved_condition(api, facility, treated):
    response = api.get(f"{base(facility.slug)}/EpisodeOfCare/{treated['completed']}")
    episode = answer(response)
    assert "hiv" not in response.text.lower() and "positive" not in response.text.lower()
    assert episode["identifier"] == [{"system": f"urn:healthos:tb-register:{facility.slug}",
                                      "value": treated["completed_number"]}]
    assert episode["status"] == "finished"
    assert episode["period"] == {"start": treated["started"][0], "end": treated["completed_on"]}
    assert episode["patient"] == {"reference": f"Patient/{treated['patient']}"}
    [condition] = episode["contained"]
    assert episode["diagnosis"] == [{"condition": {"reference": f"#{condition['id']}"}, "rank": 1}]
    assert condition["code"]["coding"] == [{"system": ICD10, "code": "A15", "display": (
        "Respiratory tuberculosis, bacteriologically and histologically confirmed")}]
    assert condition["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert condition["clinicalStatus"]["coding"][0]["code"] == "resolved"
    assert (condition["onsetDateTime"], condition["abatementDateTime"]) == (treated["started"][0],
                                                                            treated["completed_on"])


def test_search_by_patient_the_capability_statement_and_everything(api, token_client, facility, treated):
    url = base(facility.slug)
    bundle = answer(api.get(f"{url}/EpisodeOfCare", params={"patient": str(treated["patient"])}))
    found = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}
    assert set(found) == {str(treated["open"]), str(treated["completed"])} and bundle["total"] == 2
    current = found[str(treated["open"])]
    assert current["status"] == "active" and "end" not in current["period"]
    [condition] = current["contained"]
    # Extrapulmonary: no one of A17-A19 names an organ the register does not keep, so the case is in words.
    assert condition["code"] == {"text": "Extrapulmonary tuberculosis, clinically diagnosed"}
    assert condition["verificationStatus"]["coding"][0]["code"] == "provisional"
    assert condition["clinicalStatus"]["coding"][0]["code"] == "active" and "abatementDateTime" not in condition
    assert refusal(api.get(f"{url}/EpisodeOfCare", params={"patient": str(treated["patient"]), "status": "active"}),
                   400)
    statement = answer(api.get(f"{url}/metadata"))
    [served] = [r for r in statement["rest"][0]["resource"] if r["type"] == "EpisodeOfCare"]
    assert [i["code"] for i in served["interaction"]] == ["read", "search-type"]
    # $everything: the treatments for a clinician (who reads the TB card), none for a reader of the chart without it.
    def episodes(client) -> set[str]:
        everything = answer(client.get(f"{url}/Patient/{treated['patient']}/$everything"))
        return {e["resource"]["id"] for e in everything["entry"] if e["resource"]["resourceType"] == "EpisodeOfCare"}

    assert episodes(api) == {str(treated["open"]), str(treated["completed"])}
    chart_reader = token_client(facility.slug, permissions=["clinical.chart.read", "clinical.patient.read"])
    assert episodes(chart_reader) == set()


def test_every_read_is_on_the_patients_access_log(api, db, facility, treated):
    before = len(audit.patient_access_log(db, facility.slug, treated["patient"]))
    answer(api.get(f"{base(facility.slug)}/EpisodeOfCare/{treated['open']}"))
    answer(api.get(f"{base(facility.slug)}/EpisodeOfCare", params={"patient": str(treated["patient"])}))
    events = audit.patient_access_log(db, facility.slug, treated["patient"])[before:]
    assert [(e.event_type, e.action) for e in events] == [("record.tb_treatment.read", "R")] * 2


def test_the_attackers_side(token_client, db, settings, facility, other_facility, writer, api, treated):
    url = base(facility.slug)
    episode, patient = treated["completed"], treated["patient"]
    intruder = token_client(other_facility.slug, role="clinician")
    for path in (f"/EpisodeOfCare/{episode}", f"/EpisodeOfCare?patient={patient}"):
        assert refusal(intruder.get(url + path), 403)["issue"][0]["code"] == "forbidden"
    # Another facility's treatment and a guessed id read the same: not found here.
    theirs = _case(db, settings, other_facility.slug, writer, "Elsewhere")
    guess = uuid.uuid4()
    known = refusal(api.get(f"{url}/EpisodeOfCare/{theirs['open']}"), 404)["issue"][0]["diagnostics"]
    guessed = refusal(api.get(f"{url}/EpisodeOfCare/{guess}"), 404)["issue"][0]["diagnostics"]
    assert known.replace(str(theirs["open"]), "ID") == guessed.replace(str(guess), "ID")
    assert refusal(api.get(f"{url}/EpisodeOfCare", params={"patient": str(theirs["patient"])}), 404)
    # A problem on the list is no TB treatment, nor is a treatment a Condition of the list.
    assert refusal(api.get(f"{url}/EpisodeOfCare/{treated['asthma']}"), 404)
    assert refusal(api.get(f"{url}/Condition/{episode}"), 404)
    # A token that reads charts but not the TB card.
    reader = token_client(facility.slug, permissions=["clinical.patient.read", "clinical.chart.read",
                                                      "clinical.problem.read"])
    assert "clinical.tb.read" in refusal(reader.get(f"{url}/EpisodeOfCare/{episode}"), 403)["issue"][0]["diagnostics"]
    # Read only: a TB treatment is registered on the chart, with its checks.
    assert refusal(api.post(f"{url}/EpisodeOfCare", json={"resourceType": "EpisodeOfCare"}), 405)
