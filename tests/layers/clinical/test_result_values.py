"""Values no specimen can give are refused wherever a result is written (the bench, the API, the HL7 feed: all
through service.record_result): a count or concentration below zero, a share of a whole above 100 per cent, a
figure where the test is read as one of its choices; the analytes whose ranges go there (a base excess, a
prothrombin activity) keep them."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service
from appliance.layers.clinical.errors import Invalid
from appliance.layers.clinical.schemas import EncounterIn, ResultIn, ServiceRequestIn
from tests.layers.clinical.conftest import new_patient
from tests.layers.clinical.test_lab import LAB, lab  # noqa: F401 (the bench's client, a fixture of this module)

FBC, HB, HCT, PLT = "58410-2", "718-7", "4544-3", "777-3"
BASE_EXCESS, PT_ACTIVITY, SMEAR, CRP = "1925-7", "5894-1", "32700-7", "1988-5"
CATALOGUE = [
    {"loinc": FBC, "name": "Full blood count", "specimen": "blood", "components": [
        {"loinc": HB, "name": "Haemoglobin", "unit": "g/dL", "low": 12.0, "high": 16.0, "critical_low": 7.0},
        {"loinc": PLT, "name": "Platelets", "unit": "10*3/uL", "low": 150, "high": 400, "possible_high": 10000},
        {"loinc": HCT, "name": "Haematocrit", "unit": "%", "low": 36, "high": 50, "possible_low": 3}]},
    {"loinc": BASE_EXCESS, "name": "Base excess", "specimen": "blood", "unit": "mmol/L", "low": -2, "high": 2},
    {"loinc": PT_ACTIVITY, "name": "Prothrombin activity", "specimen": "plasma", "unit": "%", "low": 70, "high": 120},
    {"loinc": CRP, "name": "C-reactive protein", "specimen": "serum", "unit": "mg/L", "low": 0, "high": 5},
    {"loinc": SMEAR, "name": "Malaria blood smear", "specimen": "blood", "choices": ["negative", "positive"],
     "abnormal": ["positive"]},
]


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Plausible Values Hospital", catalogue=CATALOGUE)


@pytest.fixture(scope="module")
def patient(db, facility, clinician) -> dict:
    with db.tenant(facility.slug) as conn:
        return new_patient(conn, clinician)


def _count(db, facility, patient) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM entry WHERE patient_id = :p AND kind = 'result'"),
                            {"p": patient["id"]}).scalar_one()


@pytest.mark.parametrize(("code", "value", "said"), [
    (HB, "-1.2", "Haemoglobin cannot be below zero, got -1.2"),  # was flagged critical low, a finding
    (CRP, "-3", "C-reactive protein cannot be below zero, got -3"),
    (HCT, "410", "Haematocrit is a share of 100 per cent: it cannot be above 100, got 410"),
    (SMEAR, "1", "Malaria blood smear is reported as one of ['negative', 'positive'], got '1'"),  # was kept as 1
    # A decimal comma was refused as not a number, with no word of the comma.
    (HB, "7,4", "Haemoglobin is a number in g/dL, written with a point for its decimals, not a comma: 7.4, not 7,4"),
    (PLT, "1,200", "Platelets is a number in 10*3/uL, written with a point for its decimals and no comma: 1.200 or "
                   "1200, not 1,200"),  # a decimal comma, or one between thousands
    (HB, "lots", "Haemoglobin is a number in g/dL, got 'lots'"),
    # Beyond the test's possible limits: a count per microlitre, a fraction for a percentage. Was flagged H.
    (PLT, "45000", "Platelets of 45000 is not possible in 10*3/uL, the unit it is reported in here: no specimen gives "
                   "more than 10000 10*3/uL (was it measured in another unit?)"),
    (HCT, "0.41", "Haematocrit of 0.41 is not possible in %, the unit it is reported in here: no specimen gives less "
                  "than 3 %"),
])
def test_a_value_no_specimen_can_give_is_refused_and_nothing_is_written(db, facility, clinician, patient, code,
                                                                        value, said):
    before = _count(db, facility, patient)
    with pytest.raises(Invalid, match=re.escape(said)) as refused, db.tenant(facility.slug) as conn:
        service.record_result(conn, clinician, patient["id"], ResultIn.model_validate({"code": code, "value": value}))
    assert refused.value.extra["field"] == "value"
    assert _count(db, facility, patient) == before


@pytest.mark.parametrize(("code", "value", "flag"), [
    (BASE_EXCESS, "-6.5", "L"),   # its range goes below zero
    (PT_ACTIVITY, "130", "H"),    # a percentage whose range goes above 100
    (HCT, "100", "H"),
    (PLT, "10000", "H"),  # at the possible limit, not past it
    (HCT, "3", "L"),
    (CRP, "0", "N"),
    (SMEAR, "Positive", "A"),
])
def test_a_value_the_analytes_range_admits_is_recorded(db, facility, clinician, patient, code, value, flag):
    with db.tenant(facility.slug) as conn:
        recorded = service.record_result(conn, clinician, patient["id"],
                                         ResultIn.model_validate({"code": code, "value": value}))
    assert recorded["flag"] == flag


def test_a_sender_whose_range_goes_below_zero_may_send_a_value_below_zero(db, facility, clinician, patient):
    with db.tenant(facility.slug) as conn:
        recorded = service.record_result(conn, clinician, patient["id"], ResultIn(
            code=CRP, value=Decimal("-0.5"), reference_low=Decimal("-1"), reference_high=Decimal("5")))
    assert recorded["value_numeric"] == Decimal("-0.5")


def _received_blood_count(lab, db, facility, clinician, patient) -> tuple[str, str]:  # noqa: F811
    """The bench's address and a blood count of the patient's whose specimen it has received."""
    with db.tenant(facility.slug) as conn:
        visit = service.open_encounter(conn, clinician, patient["id"], EncounterIn(encounter_class="outpatient"))
        order = service.order_test(conn, clinician, patient["id"], ServiceRequestIn(code=FBC,
                                                                                   encounter_id=visit["id"]))["id"]
    base = LAB.format(tenant=facility.slug)
    assert lab.post(f"{base}/orders/{order}/receipt", json={}).status_code == 200
    return base, order


def test_the_bench_refuses_a_negative_count_beside_its_component_and_writes_none_of_the_panel(
        lab, db, facility, clinician, patient):  # noqa: F811
    base, order = _received_blood_count(lab, db, facility, clinician, patient)
    before = _count(db, facility, patient)
    refused = lab.post(f"{base}/orders/{order}/results", json={"results": [
        {"code": HB, "value": 9.1}, {"code": PLT, "value": -150}]})
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["detail"] == "Platelets cannot be below zero, got -150"
    assert body["field"] == f"results.{PLT}"
    assert _count(db, facility, patient) == before


def test_the_bench_and_the_api_refuse_platelets_past_the_possible_and_write_nothing(
        lab, token_client, db, facility, clinician, patient):  # noqa: F811
    base, order = _received_blood_count(lab, db, facility, clinician, patient)
    before = _count(db, facility, patient)
    refused = lab.post(f"{base}/orders/{order}/results", json={"results": [
        {"code": HB, "value": 9.1}, {"code": PLT, "value": 45000}]})
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == f"results.{PLT}"
    assert "Platelets of 45000 is not possible in 10*3/uL" in refused.json()["detail"]
    api = token_client(facility.slug, role="clinician")
    answered = api.post(f"/api/t/{facility.slug}/patients/{patient['id']}/results",
                        json={"code": PLT, "value": 45000, "service_request_id": str(order)})
    assert answered.status_code == 422, answered.text
    assert answered.json()["detail"].startswith("Platelets of 45000 is not possible in 10*3/uL")
    assert _count(db, facility, patient) == before
