"""The nursing layer on a private embedded cluster, over in-process HTTP:

- what scoring costs a write: p50 of appending one set of vital signs with the nursing reactions
  (the `news2` entry, the next observations task, the previous one done — all in the same transaction)
  and without them, so the difference is the price of NEWS2 on save;
- a full ward: 30 inpatients, each with three days of four-hourly observations (18 scored sets),
  three prescriptions (six-hourly, twice daily, as needed) with doses recorded, and a laboratory order;
  p50 of the ward worklist (API and page, escalations first, every listed patient's read audited), the
  shift handover (API), one patient's MAR page and observations page, as a ward-scoped nurse's session.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import statistics
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

from litestar.testing import TestClient

import appliance.layers  # noqa: F401  (registers the layers' tables, appliers and reactions)
from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.schemas import EncounterIn, PatientIn, ServiceRequestIn
from appliance.layers.nursing import reactions
from appliance.substrate import identity, record
from appliance.substrate.config import Settings
from appliance.substrate.db import Database
from appliance.substrate.migrate import migrate_control
from appliance.substrate.policy import load_policy
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import apply_config
from appliance.substrate.tenant_config import TenantConfig
from appliance.web.app import create_app
from appliance.web.auth import SESSION_COOKIE

SLUG = "bench_nursing"
PATIENTS = 30
SETS_PER_PATIENT = 18  # three days, four-hourly
WRITES = 200
REQUESTS = 60
CONFIG = {
    "slug": SLUG, "name": "Bench Ward Hospital", "facility_type": "district_hospital", "country_code": "KE",
    "region": "Central Region", "district": "Bench", "timezone": "Africa/Nairobi", "currency": "KES",
    "wards": [{"code": "GEN", "name": "General ward", "kind": "inpatient", "beds": 40}],
    "catalogue": [{"loinc": "58410-2", "name": "Full blood count", "specimen": "blood", "components": [
        {"loinc": "718-7", "name": "Haemoglobin", "unit": "g/dL", "low": 12.0, "high": 16.0}]}],
}


def _vitals(rng: random.Random) -> dict:
    sick = rng.random() < 0.15
    return {"respiratory_rate": rng.randint(22, 28) if sick else rng.randint(12, 20),
            "spo2_percent": rng.randint(89, 94) if sick else rng.randint(95, 99),
            "supplemental_oxygen": sick, "systolic_mmhg": rng.randint(95, 150), "diastolic_mmhg": rng.randint(55, 90),
            "heart_rate_bpm": rng.randint(95, 125) if sick else rng.randint(60, 95), "consciousness": "A",
            "temperature_c": Decimal(f"{rng.uniform(36.2, 38.9):.1f}"), "weight_kg": None, "height_cm": None,
            "oxygen_l_min": None, "spo2_scale": None}


def _prescription(frequency: str, drug: str) -> dict:
    return {"drug": drug, "dose": Decimal(500), "dose_unit": "mg", "route": "oral", "frequency": frequency,
            "duration_days": 5, "status": "active", "instructions": None, "allergy_override_reason": None,
            "order_set": None}


def _populate(db: Database, nurse: Principal, doctor: Principal) -> list[uuid.UUID]:
    rng = random.Random(7)
    now = dt.datetime.now(dt.UTC)
    ids = []
    for index in range(PATIENTS):
        with db.tenant(SLUG) as conn:
            patient = clinical.register_patient(conn, doctor, PatientIn.model_validate({
                "family_name": f"Ward{index:02d}", "given_names": "Bench Patient", "birth_date": "1955-03-01",
                "sex": "female" if index % 2 else "male",
                "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}))
            encounter = clinical.open_encounter(conn, doctor, patient["id"], EncounterIn(
                encounter_class="inpatient", status="in_progress", ward_code="GEN", reason="Bench admission"))
            start = now - dt.timedelta(hours=4 * SETS_PER_PATIENT)
            for frequency, drug in (("every 6 hours", "Amoxicillin"), ("twice daily", "Metformin"),
                                    ("every 6 hours as needed", "Paracetamol")):
                record.append(conn, doctor, "medication_request", patient_id=patient["id"], occurred_at=start,
                              encounter_id=encounter["id"], detail=_prescription(frequency, drug))
            for n in range(SETS_PER_PATIENT):
                record.append(conn, nurse, "vital_signs", patient_id=patient["id"], encounter_id=encounter["id"],
                              occurred_at=start + dt.timedelta(hours=4 * n, minutes=5), detail=_vitals(rng))
            clinical.order_test(conn, doctor, patient["id"], ServiceRequestIn(code="58410-2",
                                                                              encounter_id=encounter["id"]))
            ids.append(patient["id"])
    return ids


def _write_timings(db: Database, nurse: Principal, patient_id: uuid.UUID, n: int) -> list[float]:
    rng = random.Random(11)
    timings = []
    for _ in range(n):
        started = time.perf_counter()
        with db.tenant(SLUG) as conn:
            record.append(conn, nurse, "vital_signs", patient_id=patient_id, detail=_vitals(rng))
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def _timings(client: TestClient, path: str, n: int) -> list[float]:
    for _ in range(5):
        client.get(path)
    timings = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(path)
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code} {response.text[:500]}")
    return timings


def run(console) -> list[dict]:
    home = Path(tempfile.mkdtemp(prefix="healthos-bench-"))
    settings = Settings.from_env({"HEALTHOS_HOME": str(home)})
    db = Database.open(settings)
    try:
        migrate_control(db)
        policy = load_policy(settings.policies_dir / "access.toml")
        apply_config(db, TenantConfig.model_validate(CONFIG))
        with db.control() as conn:
            account = identity.create_account(conn, policy, kind="staff", email="bench-nurse@bench.invalid",
                                              display_name="Nurse Bench", role="nurse", tenant=SLUG, ward="GEN")
            token = identity.start_session(conn, account.account_id, mfa_passed=True)
        nurse = Principal(account_id=account.account_id, kind="staff", display_name="Nurse Bench", tenant=SLUG,
                          role="nurse", ward="GEN", ward_scoped=True)
        doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Bench", tenant=SLUG,
                           role="clinician")
        console.print(f"  a ward of {PATIENTS} patients, {SETS_PER_PATIENT} observation sets each")
        started = time.perf_counter()
        ids = _populate(db, nurse, doctor)
        build_s = time.perf_counter() - started
        # Statistics as autovacuum would have them after such a load: without them the planner takes the
        # freshly filled tables for empty and nests loops over them.
        with db.control_autocommit() as conn:
            conn.exec_driver_sql("ANALYZE")

        with_reactions = _write_timings(db, nurse, ids[0], WRITES)
        for kind, registered in reactions.REACTIONS.items():
            for reaction in registered:
                record.unregister_reaction(kind, reaction)
        try:
            without = _write_timings(db, nurse, ids[1], WRITES)
        finally:
            for kind, registered in reactions.REACTIONS.items():
                for reaction in registered:
                    record.register_reaction(kind, reaction)

        client = TestClient(app=create_app(db, settings))
        client.cookies.set(SESSION_COOKIE, token)
        api = f"/api/t/{SLUG}/nursing/wards/GEN"
        worklist_api = _timings(client, f"{api}/worklist", REQUESTS)
        worklist_page = _timings(client, f"/t/{SLUG}/ward", REQUESTS)
        handover_api = _timings(client, f"{api}/handover", REQUESTS // 2)
        mar_page = _timings(client, f"/t/{SLUG}/patients/{ids[2]}/mar", REQUESTS)
        observations_page = _timings(client, f"/t/{SLUG}/patients/{ids[2]}/observations", REQUESTS)
        p50_with, p50_without = statistics.median(with_reactions), statistics.median(without)
        listed = len(client.get(f"{api}/worklist").json()["patients"])
        console.print(f"  built in {build_s:.1f} s; worklist lists {listed} patients")
        return [
            {"name": "vitals write p50 with NEWS2 + task reactions (one transaction)", "value": p50_with,
             "unit": "ms"},
            {"name": "vitals write p50 without the nursing reactions", "value": p50_without, "unit": "ms"},
            {"name": "NEWS2 on save: added p50", "value": p50_with - p50_without, "unit": "ms"},
            {"name": f"ward worklist API p50 ({listed} patients, each read audited)",
             "value": statistics.median(worklist_api), "unit": "ms"},
            {"name": "ward worklist page p50 (server-rendered)", "value": statistics.median(worklist_page),
             "unit": "ms", "target": "≤ 300", "met": statistics.median(worklist_page) <= 300},
            {"name": "shift handover API p50", "value": statistics.median(handover_api), "unit": "ms"},
            {"name": "MAR page p50 (one day, three prescriptions)", "value": statistics.median(mar_page),
             "unit": "ms"},
            {"name": "observations page p50 (NEWS2 + 6 charts)", "value": statistics.median(observations_page),
             "unit": "ms"},
        ]
    finally:
        db.close()
        shutil.rmtree(home, ignore_errors=True)
