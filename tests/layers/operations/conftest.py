"""Fixtures of the operations layer's tests: a facility with a 10-bed general ward, a 2-bed maternity
ward, an emergency department, an outpatient clinic and KPI targets; people acting in it; patients
registered through the clinical layer's own service (the record's front door)."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.schemas import PatientIn
from appliance.substrate.kpis import load_definitions
from appliance.substrate.principal import Principal

REPO = Path(__file__).resolve().parents[3]

OPERATIONS_CONFIG = {
    "wards": [
        {"code": "GEN", "name": "General ward", "kind": "inpatient", "beds": 10},
        {"code": "MAT", "name": "Maternity", "kind": "maternity", "beds": 2},
        {"code": "ED", "name": "Emergency department", "kind": "emergency", "beds": 4},
    ],
    "clinics": [
        {"code": "MOPC", "name": "Medical outpatient clinic", "slot_minutes": 30,
         "sessions": [{"weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "08:00",
                       "end": "12:00"}]},
    ],
    "catalogue": [
        {"loinc": "2345-7", "name": "Glucose", "specimen": "serum", "unit": "mmol/L", "low": 3.9, "high": 7.8},
        {"loinc": "36643-5", "name": "Chest X-ray, 2 views", "category": "imaging"},
    ],
    "kpi_targets": {"bed_occupancy": 85, "average_length_of_stay": 4.5, "ed_length_of_stay": 240,
                    "ed_left_without_being_seen": 2, "discharges_before_noon": 40, "readmission_30_day": 10,
                    "lab_turnaround": 60, "same_day_charge_capture": 95},
}


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Operations Test Facility", **OPERATIONS_CONFIG)


@pytest.fixture(scope="module")
def other_facility(tenant_factory):
    return tenant_factory(name="Other Facility", **OPERATIONS_CONFIG)


@pytest.fixture(scope="module")
def bed_manager(facility) -> Principal:
    return Principal(account_id=uuid.uuid4(), kind="staff", display_name="Bed Manager", tenant=facility.slug,
                     role="bed_manager")


@pytest.fixture(scope="session")
def definitions():
    return load_definitions(REPO / "policies" / "kpis.toml")


def new_patient(conn, principal: Principal, **overrides) -> uuid.UUID:
    fields = {"family_name": "Otieno", "given_names": "Achieng", "birth_date": dt.date(1980, 1, 1), "sex": "female",
              "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}
    fields.update(overrides)
    return clinical.register_patient(conn, principal, PatientIn.model_validate(fields))["id"]
