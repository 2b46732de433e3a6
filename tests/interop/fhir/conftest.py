"""Fixtures of the FHIR facade's tests: a facility with the clinical catalogue, another facility (the
attacker's side), API clients holding clinician tokens, and the R4B models every answer is checked
against."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fhir.resources.R4B import get_fhir_model_class
from litestar.testing import TestClient

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import EncounterIn, PatientIn, ResultIn, ServiceRequestIn, VitalSignsIn
from appliance.substrate.db import Database, tenant_schema
from appliance.substrate.principal import Principal
from tests.layers.clinical.conftest import CLINICAL_CONFIG

FHIR_JSON = "application/fhir+json"


def base(tenant: str) -> str:
    return f"/api/t/{tenant}/fhir"


def valid(body: dict) -> dict:
    """The body, after checking it is a valid FHIR R4B resource of its type (a Bundle's entries too)."""
    get_fhir_model_class(body["resourceType"]).model_validate(body)
    for entry in body.get("entry", []) if body["resourceType"] == "Bundle" else []:
        get_fhir_model_class(entry["resource"]["resourceType"]).model_validate(entry["resource"])
    return body


def answer(response, status: int = 200) -> dict:
    """A FHIR answer: its status, its content type, and a valid resource."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON), response.headers["content-type"]
    return valid(response.json())


def refusal(response, status: int) -> dict:
    """An OperationOutcome with the status, one issue at least, and no stack trace."""
    body = answer(response, status)
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"][0]["severity"] in ("error", "fatal") and body["issue"][0]["diagnostics"]
    assert "Traceback" not in response.text
    return body


def count(db: Database, tenant: str, table: str) -> int:
    with db.control() as conn:
        return conn.execute(sa.text(f'SELECT count(*) FROM "{tenant_schema(tenant)}".{table}')).scalar()


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="FHIR Test Facility", **CLINICAL_CONFIG)


@pytest.fixture(scope="module")
def other_facility(tenant_factory):
    return tenant_factory(name="Other FHIR Facility", **CLINICAL_CONFIG)


@pytest.fixture(scope="module")
def client(app) -> Iterator[TestClient]:
    """A client with no credentials at all."""
    with TestClient(app=app, raise_server_exceptions=False) as anonymous:
        yield anonymous


@pytest.fixture
def api(token_client, facility):
    """A clinician's API token at the facility."""
    return token_client(facility.slug, role="clinician")


@pytest.fixture(scope="module")
def writer(facility) -> Principal:
    return Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Fixture", tenant=facility.slug,
                     role="clinician")


@pytest.fixture(scope="module")
def charted(db, facility, writer) -> dict:
    """A patient with a little of everything: an encounter, vitals, two problems (one entered in error,
    one corrected), an allergy, a prescription, an order and its results."""
    with db.tenant(facility.slug) as conn:
        patient = service.register_patient(conn, writer, PatientIn.model_validate({
            "family_name": "Achieng", "given_names": "Grace Atieno", "birth_date": dt.date(1984, 2, 29),
            "sex": "female", "phone": "+254700000001",
            "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}],
            "address": {"village": "Kisumu", "district": "Kisumu East", "country": "KE"},
            "next_of_kin": [{"name": "Otieno Peter", "relationship": "spouse", "phone": "+254700000002"}]}))
        pid = patient["id"]
        visit = service.open_encounter(conn, writer, pid, EncounterIn(
            encounter_class="outpatient", reason="fever and headache",
            vitals=VitalSignsIn(temperature_c="38.6", heart_rate_bpm=104, systolic_mmhg=118, diastolic_mmhg=76,
                                spo2_percent=97)))
        from appliance.layers.clinical.schemas import AllergyIn, ConditionAmend, ConditionIn, MedicationIn
        malaria = service.add_condition(conn, writer, pid, ConditionIn(code="B50.9", encounter_id=visit["id"]))
        mistaken = service.add_condition(conn, writer, pid, ConditionIn(code="J18.9"))
        service.retract_entry(conn, writer, pid, mistaken["id"], "wrong patient's diagnosis")
        hypertension = service.add_condition(conn, writer, pid, ConditionIn(code="I10", clinical_status="active"))
        corrected = service.amend_condition(conn, writer, pid, hypertension["id"],
                                            ConditionAmend(code="I11.9", reason="hypertensive heart disease"),
                                            "hypertensive heart disease")
        allergy = service.add_allergy(conn, writer, pid, AllergyIn(substance="Penicillin", severity="severe",
                                                                   reaction="urticaria", criticality="high"))
        medication = service.request_medication(conn, writer, pid, MedicationIn(
            drug="Artemether-lumefantrine", dose=4, dose_unit="tablet", route="oral", frequency="twice daily",
            duration_days=3, encounter_id=visit["id"])).placed[0]
        order = service.order_test(conn, writer, pid, ServiceRequestIn(code="58410-2", encounter_id=visit["id"]))
        haemoglobin = service.record_result(conn, writer, pid, ResultIn(code="718-7", value="9.8",
                                                                        service_request_id=order["id"]))
        smear = service.record_result(conn, writer, pid, ResultIn(code="32700-7", value="positive"))
        glucose = service.record_result(conn, writer, pid, ResultIn(code="2345-7", value="31.0"))
        service.retract_entry(conn, writer, pid, glucose["id"], "another patient's sample")
    return {"patient": pid, "mrn": patient["mrn"], "encounter": visit["id"], "vitals": visit["vitals"]["root_id"],
            "malaria": malaria["root_id"], "mistaken": mistaken["root_id"], "hypertension": corrected["root_id"],
            "hypertension_version": corrected["id"], "allergy": allergy["root_id"],
            "medication": medication["root_id"], "order": order["root_id"], "haemoglobin": haemoglobin["root_id"],
            "smear": smear["root_id"], "glucose": glucose["root_id"], "national_id": patient["identifiers"][0]["value"]}
