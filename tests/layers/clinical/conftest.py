"""Fixtures of the clinical layer's tests: a facility with a catalogue, templates and order sets, a
clinician acting in it (for service-level tests) and API clients holding clinician tokens."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import PatientIn
from appliance.substrate.principal import Principal

CLINICAL_CONFIG = {
    "catalogue": [
        {"loinc": "58410-2", "name": "Full blood count", "specimen": "blood", "components": [
            {"loinc": "718-7", "name": "Haemoglobin", "unit": "g/dL", "low": 12.0, "high": 16.0},
            {"loinc": "6690-2", "name": "White cell count", "unit": "10*3/uL", "low": 4.0, "high": 11.0},
            {"loinc": "777-3", "name": "Platelets", "unit": "10*3/uL", "low": 150, "high": 400},
        ]},
        {"loinc": "32700-7", "name": "Malaria blood smear", "specimen": "blood",
         "choices": ["negative", "positive"], "abnormal": ["positive"]},
        {"loinc": "70569-9", "name": "Malaria rapid diagnostic test", "specimen": "blood",
         "choices": ["negative", "positive"], "abnormal": ["positive"]},
        {"loinc": "2345-7", "name": "Glucose", "specimen": "serum", "unit": "mmol/L", "low": 3.9, "high": 7.8,
         "critical_low": 2.5, "critical_high": 25},
        {"loinc": "36643-5", "name": "Chest X-ray, 2 views", "category": "imaging"},
    ],
    "note_templates": [
        {"code": "ANC", "name": "Antenatal visit", "specialty": "maternity", "fields": [
            {"key": "gestational_age", "label": "Gestational age", "type": "integer", "unit": "weeks",
             "required": True, "min": 4, "max": 44},
            {"key": "fundal_height", "label": "Fundal height", "type": "number", "unit": "cm"},
            {"key": "presentation", "label": "Presentation", "type": "choice",
             "choices": ["cephalic", "breech", "transverse"]},
            {"key": "danger_signs", "label": "Danger signs", "type": "multichoice",
             "choices": ["bleeding", "headache", "reduced fetal movement"]},
            {"key": "next_visit", "label": "Next visit", "type": "date"},
        ]},
    ],
    "order_sets": [
        {"code": "MALARIA", "name": "Suspected malaria", "tests": ["32700-7", "70569-9", "58410-2"],
         "medications": [{"drug": "Paracetamol", "dose": 1000, "dose_unit": "mg", "route": "oral",
                          "frequency": "every 6 hours as needed", "duration_days": 3}]},
    ],
}
# A general ward and a maternity ward: for a nurse of the other ward (an account names only wards its facility has).
GENERAL_AND_MATERNITY = [{"code": "GEN", "name": "General ward", "kind": "inpatient", "beds": 3},
                         {"code": "MAT", "name": "Maternity", "kind": "maternity", "beds": 2}]


@pytest.fixture(scope="module")
def facility(tenant_factory):
    """A facility with the clinical configuration above."""
    return tenant_factory(name="Clinical Test Facility", **CLINICAL_CONFIG)


@pytest.fixture(scope="module")
def other_facility(tenant_factory):
    return tenant_factory(name="Other Facility", **CLINICAL_CONFIG)


@pytest.fixture(scope="module")
def clinician(facility) -> Principal:
    return Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Test", tenant=facility.slug,
                     role="clinician")


def new_patient(conn, principal: Principal, **overrides) -> dict:
    fields = {"family_name": "Otieno", "given_names": "Achieng Mary", "birth_date": dt.date(1990, 4, 12),
              "sex": "female", "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}
    fields.update(overrides)
    return service.register_patient(conn, principal, PatientIn.model_validate(fields))


def second_writer_waits(db, second) -> threading.Thread:
    """`second` started in a thread, returned once its transaction is waiting on a lock (the first writer's, which
    the caller holds in its open transaction), or after four seconds; the caller joins it once the first commits."""
    waiting = threading.Thread(target=second)
    waiting.start()
    with db.control() as conn:
        for _ in range(200):
            if conn.execute(sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar():
                break
            threading.Event().wait(0.02)
    return waiting


def born_years_ago(years: int, days: int = 40) -> dt.date:
    """A birth date that makes a patient `years` old today, the birthday `days` days past. On 29 February
    the anniversary in a common year is the 28th (`date.replace` raises there, failing a run once in four
    years)."""
    today = dt.date.today()
    anniversary = today.replace(year=today.year - years, day=28 if (today.month, today.day) == (2, 29) else today.day)
    return anniversary - dt.timedelta(days=days)


@pytest.fixture
def api(token_client, facility):
    """A clinician's API client at the facility."""
    return token_client(facility.slug, role="clinician")
