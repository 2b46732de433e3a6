"""The FHIR facade's NutritionOrder over HTTP (appliance/interop/fhir/resources.py `nutrition_order`): an inpatient's
diet order as the ward wrote it — active, completed once ended, entered in error once withdrawn — its diets in our
code system, tube feeding as the enteral formula, the IDDSI level as food texture and drink consistency, and no food
excluded that the order does not name (the patient's allergies are not copied). Read by id, searched by patient, in
$everything only for those who read the ward's diets, in the CapabilityStatement; every read on the patient's access
log; another facility's token and order, a guessed id, another record's id and a token without `nursing.diet.read`
refused."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import AllergyIn
from appliance.layers.nursing import diet
from appliance.layers.nursing.schemas import DietOrderIn
from appliance.substrate import audit
from tests.interop.fhir.conftest import answer, base, refusal
from tests.layers.nursing.conftest import NURSING_CONFIG, admit

DIET = "urn:healthos:diet"
IDDSI = "https://iddsi.org/framework"


@pytest.fixture(scope="module")
def facility(tenant_factory):
    """A facility with wards: a diet order is an inpatient's."""
    return tenant_factory(name="FHIR Diet Facility", **NURSING_CONFIG)


@pytest.fixture(scope="module")
def other_facility(tenant_factory):
    return tenant_factory(name="Other FHIR Diet Facility", **NURSING_CONFIG)


def _ordered(conn, writer, family: str, **order) -> tuple[dict, dict]:
    patient = admit(conn, writer, family=family)
    return patient, diet.place(conn, writer, patient["id"], DietOrderIn(**order), now=dt.datetime.now(dt.UTC))


@pytest.fixture(scope="module")
def orders(db, facility, writer) -> dict:
    now = dt.datetime.now(dt.UTC)
    with db.tenant(facility.slug) as conn:
        patient, current = _ordered(conn, writer, "Wafula", diet="diabetic", also=["halal"], iddsi_level=5,
                                    note="no added sugar")
        peanut = service.add_allergy(conn, writer, patient["id"], AllergyIn(substance="Peanut", category="food"))
        _, ended = _ordered(conn, writer, "Nekesa", diet="soft", iddsi_level=3, starts_at=now - dt.timedelta(hours=20),
                            ends_at=now - dt.timedelta(hours=1))
        tube, withdrawn = _ordered(conn, writer, "Mutua", diet="enteral")
        diet.retract(conn, writer, tube["id"], withdrawn["id"], "ordered for the wrong patient")
    return {"patient": patient["id"], "encounter": patient["encounter_id"], "current": current["root_id"],
            "ended": ended["root_id"], "withdrawn": withdrawn["root_id"], "allergy": peanut["root_id"]}


def test_a_diet_order_in_force_with_its_diets_and_texture(api, facility, orders, writer):
    order = answer(api.get(f"{base(facility.slug)}/NutritionOrder/{orders['current']}"))
    assert (order["status"], order["intent"]) == ("active", "order")
    assert order["patient"] == {"reference": f"Patient/{orders['patient']}"}
    assert order["encounter"] == {"reference": f"Encounter/{orders['encounter']}"}
    assert order["orderer"]["identifier"]["value"] == str(writer.account_id)
    assert [t["coding"] for t in order["oralDiet"]["type"]] == [[{"system": DIET, "code": "diabetic",
                                                                  "display": "Diabetic"}],
                                                                [{"system": DIET, "code": "halal", "display": "Halal"}]]
    assert order["oralDiet"]["texture"] == [{"modifier": {"coding": [{"system": IDDSI, "code": "5",
                                                                      "display": "Minced and moist"}]}}]
    assert "fluidConsistencyType" not in order["oralDiet"] and "end" not in order["oralDiet"]["schedule"][0][
        "repeat"]["boundsPeriod"]
    # The patient's peanut allergy is the record's AllergyIntolerance: the order names no food to exclude.
    assert "excludeFoodModifier" not in order and "allergyIntolerance" not in order
    assert order["note"] == [{"text": "no added sugar"}]


def test_an_ended_order_and_a_withdrawn_one(api, facility, orders):
    url = base(facility.slug)
    ended = answer(api.get(f"{url}/NutritionOrder/{orders['ended']}"))
    assert ended["status"] == "completed" and ended["oralDiet"]["schedule"][0]["repeat"]["boundsPeriod"]["end"]
    # IDDSI 3 is both a drink's and a food's level.
    assert ended["oralDiet"]["texture"][0]["modifier"]["coding"][0]["code"] == "3"
    assert ended["oralDiet"]["fluidConsistencyType"][0]["coding"][0]["code"] == "3"
    withdrawn = answer(api.get(f"{url}/NutritionOrder/{orders['withdrawn']}"))
    assert withdrawn["status"] == "entered-in-error" and "oralDiet" not in withdrawn
    assert withdrawn["enteralFormula"]["baseFormulaType"]["coding"][0]["code"] == "enteral"


def test_search_everything_the_capability_statement_and_the_access_log(api, db, token_client, facility, orders):
    url, patient = base(facility.slug), str(orders["patient"])
    before = len(audit.patient_access_log(db, facility.slug, orders["patient"]))
    bundle = answer(api.get(f"{url}/NutritionOrder", params={"patient": patient}))
    assert [e["resource"]["id"] for e in bundle["entry"]] == [str(orders["current"])]
    answer(api.get(f"{url}/NutritionOrder/{orders['current']}"))
    events = audit.patient_access_log(db, facility.slug, orders["patient"])[before:]
    assert [(e.event_type, e.action) for e in events] == [("record.diet_order.read", "R")] * 2

    def ordered(client) -> set[str]:
        everything = answer(client.get(f"{url}/Patient/{patient}/$everything"))
        return {e["resource"]["id"] for e in everything["entry"] if e["resource"]["resourceType"] == "NutritionOrder"}

    assert ordered(api) == {str(orders["current"])}
    assert ordered(token_client(facility.slug, permissions=["clinical.chart.read", "clinical.patient.read"])) == set()
    statement = answer(api.get(f"{url}/metadata"))
    [served] = [r for r in statement["rest"][0]["resource"] if r["type"] == "NutritionOrder"]
    assert [i["code"] for i in served["interaction"]] == ["read", "search-type"]


def test_the_attackers_side(token_client, db, facility, other_facility, writer, api, orders):
    url, order = base(facility.slug), orders["current"]
    intruder = token_client(other_facility.slug, role="clinician")
    for path in (f"/NutritionOrder/{order}", f"/NutritionOrder?patient={orders['patient']}"):
        assert refusal(intruder.get(url + path), 403)["issue"][0]["code"] == "forbidden"
    with db.tenant(other_facility.slug) as conn:
        theirs_patient, theirs = _ordered(conn, writer, "Elsewhere", diet="renal")
    guess = uuid.uuid4()
    known = refusal(api.get(f"{url}/NutritionOrder/{theirs['root_id']}"), 404)["issue"][0]["diagnostics"]
    guessed = refusal(api.get(f"{url}/NutritionOrder/{guess}"), 404)["issue"][0]["diagnostics"]
    assert known.replace(str(theirs["root_id"]), "ID") == guessed.replace(str(guess), "ID")
    assert refusal(api.get(f"{url}/NutritionOrder", params={"patient": str(theirs_patient["id"])}), 404)
    # The patient's allergy is no diet order.
    assert refusal(api.get(f"{url}/NutritionOrder/{orders['allergy']}"), 404)
    reader = token_client(facility.slug, permissions=["clinical.patient.read", "clinical.chart.read"])
    assert "nursing.diet.read" in refusal(reader.get(f"{url}/NutritionOrder/{order}"), 403)["issue"][0][
        "diagnostics"]
    assert refusal(api.post(f"{url}/NutritionOrder", json={"resourceType": "NutritionOrder"}), 405)
