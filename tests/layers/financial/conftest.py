"""Fixtures of the financial layer's tests: a facility with a catalogue and a fee schedule (self-pay
and national-insurance price lists, one catalogue test left unpriced on purpose), a clinician and a
billing clerk acting in it, and helpers that place the clinical acts charges react to."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.schemas import EncounterIn, PatientIn, ServiceRequestIn
from appliance.substrate.principal import Principal

FULL_BLOOD_COUNT = "58410-2"
MALARIA_SMEAR = "32700-7"
CHEST_XRAY = "36643-5"
GLUCOSE = "2345-7"  # in the catalogue, deliberately absent from the fee schedule

FINANCIAL_CONFIG = {
    "currency": "KES",
    "catalogue": [
        {"loinc": FULL_BLOOD_COUNT, "name": "Full blood count", "specimen": "blood"},
        {"loinc": MALARIA_SMEAR, "name": "Malaria blood smear", "specimen": "blood",
         "choices": ["negative", "positive"], "abnormal": ["positive"]},
        {"loinc": GLUCOSE, "name": "Glucose", "specimen": "serum", "unit": "mmol/L", "low": 3.9, "high": 7.8},
        {"loinc": CHEST_XRAY, "name": "Chest X-ray, 2 views", "category": "imaging"},
    ],
    "fee_schedule": {
        "census_time": "00:00",
        "self_pay_price_list": "CASH",
        "price_lists": [{"code": "CASH", "name": "Self-pay"}, {"code": "NHI", "name": "National health insurance"}],
        "payers": [{"code": "NHIF", "name": "National Health Insurance Fund", "kind": "national_insurance",
                    "price_list": "NHI"}],
        "items": [
            {"kind": "lab", "code": FULL_BLOOD_COUNT, "name": "Full blood count", "department": "LAB",
             "effective_from": "2020-01-01", "prices": {"CASH": "450.00", "NHI": "380.00"}},
            {"kind": "lab", "code": MALARIA_SMEAR, "name": "Malaria smear", "department": "LAB",
             "effective_from": "2020-01-01", "prices": {"CASH": "200.50", "NHI": "150.00"}},
            {"kind": "imaging", "code": CHEST_XRAY, "name": "Chest X-ray", "department": "RAD",
             "effective_from": "2020-01-01", "prices": {"CASH": "1500.00", "NHI": "1200.00"}},
            {"kind": "consultation", "code": "outpatient", "name": "Outpatient consultation", "department": "OPD",
             "effective_from": "2020-01-01", "prices": {"CASH": "300.00", "NHI": "250.00"}},
            {"kind": "bed_day", "code": "inpatient", "name": "General ward bed-day", "effective_from": "2020-01-01",
             "prices": {"CASH": "2000.00", "NHI": "1800.00"}},
            {"kind": "medication", "code": "Ceftriaxone", "name": "Ceftriaxone injection", "unit": "g", "per": "1",
             "effective_from": "2020-01-01", "prices": {"CASH": "350.00", "NHI": "300.00"}},
            {"kind": "medication", "code": "Artemether-lumefantrine", "name": "Artemether-lumefantrine 20/120 mg",
             "unit": "tablet", "per": "1", "effective_from": "2020-01-01", "prices": {"CASH": "40.00", "NHI": "30.00"}},
        ],
    },
}


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Financial Test Facility", **FINANCIAL_CONFIG)


@pytest.fixture(scope="module")
def other_facility(tenant_factory):
    return tenant_factory(name="Other Financial Facility", **FINANCIAL_CONFIG)


@pytest.fixture(scope="module")
def clinician(facility) -> Principal:
    return Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Test", tenant=facility.slug,
                     role="clinician")


@pytest.fixture(scope="module")
def clerk(facility) -> Principal:
    return Principal(account_id=uuid.uuid4(), kind="staff", display_name="Clerk Test", tenant=facility.slug,
                     role="billing_clerk")


def new_patient(conn, principal: Principal, **overrides) -> dict:
    fields = {"family_name": "Otieno", "given_names": "Achieng", "birth_date": dt.date(1990, 4, 12), "sex": "female",
              "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}
    fields.update(overrides)
    return clinical.register_patient(conn, principal, PatientIn.model_validate(fields))


def visit(conn, principal: Principal, **overrides) -> tuple[dict, dict]:
    """A new patient with an outpatient encounter in progress."""
    patient = new_patient(conn, principal, **overrides)
    encounter = clinical.open_encounter(conn, principal, patient["id"],
                                        EncounterIn(encounter_class="outpatient", reason="fever"))
    return patient, encounter


def order(conn, principal: Principal, patient: dict, encounter: dict | None, code: str) -> dict:
    return clinical.order_test(conn, principal, patient["id"], ServiceRequestIn(
        code=code, encounter_id=encounter["id"] if encounter else None))
