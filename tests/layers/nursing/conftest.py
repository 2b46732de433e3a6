"""Fixtures of the nursing layer's tests: a facility with two wards and a laboratory catalogue, a
clinician and a nurse acting in it (service-level tests), and helpers to put patients on a ward."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from decimal import Decimal

import pytest

from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.schemas import EncounterIn, PatientIn, VitalSignsIn
from appliance.substrate.principal import Principal

TZ = zoneinfo.ZoneInfo("Africa/Nairobi")
NURSING_CONFIG = {
    # Casualty sorts first by code, as emergency departments often do; nobody is admitted to it here.
    "wards": [{"code": "CAS", "name": "Casualty", "kind": "emergency", "beds": 2},
              {"code": "GEN", "name": "General ward", "kind": "inpatient", "beds": 6},
              {"code": "MAT", "name": "Maternity ward", "kind": "maternity", "beds": 4}],
    "catalogue": [
        {"loinc": "58410-2", "name": "Full blood count", "specimen": "blood", "components": [
            {"loinc": "718-7", "name": "Haemoglobin", "unit": "g/dL", "low": 12.0, "high": 16.0}]},
        {"loinc": "36643-5", "name": "Chest X-ray, 2 views", "category": "imaging"},
    ],
}
NORMAL = {"respiratory_rate": 16, "spo2_percent": 97, "supplemental_oxygen": False, "systolic_mmhg": 122,
          "diastolic_mmhg": 78, "heart_rate_bpm": 72, "consciousness": "A", "temperature_c": Decimal("36.8")}
# NEWS2 9: RR 26 (3), SpO2 92 on scale 1 (2), oxygen (2), pulse 118 (2); emergency response.
HIGH = NORMAL | {"respiratory_rate": 26, "spo2_percent": 92, "supplemental_oxygen": True, "heart_rate_bpm": 118}


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Nursing Test Facility", **NURSING_CONFIG)


@pytest.fixture(scope="module")
def other_facility(tenant_factory):
    return tenant_factory(name="Other Facility", **NURSING_CONFIG)


@pytest.fixture(scope="module")
def clinician(facility) -> Principal:
    return Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Test", tenant=facility.slug,
                     role="clinician")


@pytest.fixture(scope="module")
def nurse(facility) -> Principal:
    return Principal(account_id=uuid.uuid4(), kind="staff", display_name="Nurse Test", tenant=facility.slug,
                     role="nurse", ward="GEN", ward_scoped=True)


# HTTP clients of the module's facility (token_client: the role's permissions), for the API's tests.
@pytest.fixture
def clinician_api(token_client, facility):
    return token_client(facility.slug, role="clinician")


@pytest.fixture
def nurse_api(token_client, facility):
    return token_client(facility.slug, role="nurse")


def admit(conn, principal: Principal, *, ward: str | None = "GEN", born: dt.date = dt.date(1970, 5, 1),
          family: str = "Kamau", given: str = "Peter", encounter_class: str = "inpatient") -> dict:
    """A patient with an open encounter on `ward` (as the clinical encounter carries it)."""
    patient = clinical.register_patient(conn, principal, PatientIn.model_validate({
        "family_name": family, "given_names": given, "birth_date": born, "sex": "male",
        "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}))
    encounter = clinical.open_encounter(conn, principal, patient["id"], EncounterIn(
        encounter_class=encounter_class, status="in_progress", ward_code=ward, reason="Community-acquired pneumonia"))
    return {"id": patient["id"], "encounter_id": encounter["id"]}


def vitals(conn, principal: Principal, patient: dict, values: dict) -> dict:
    return clinical.record_vitals(conn, principal, patient["id"],
                                  VitalSignsIn.model_validate(values | {"encounter_id": patient["encounter_id"]}))
