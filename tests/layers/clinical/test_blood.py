"""The blood bank and the bedside transfusion over real HTTP and the real record (appliance/layers/clinical/blood.py,
appliance/layers/nursing/transfusion.py): units received and discarded, the stock by component and group; a
clinician's request; the crossmatch refusing an incompatible, expired, wrong-component or unknown unit and a
patient with no group (unless O RhD-negative red cells in an emergency, flagged) or disagreeing groups, each with
nothing written; issue; the nurse's bedside record refusing a unit issued to another patient (the wrong-patient
catch), one not issued and one expired, with nothing written; the 15-minute observations, the end, a reaction
stopping it and raising the escalation task; the audit; and another facility's credentials and guessed ids refused
on every route; the unit charged once, when started, and counted by KPI 8. A request cancelled (its reserved units
back in stock, refused while a unit is out), the second checker a colleague of the facility who may check blood,
expiry judged on the facility's day."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from decimal import Decimal

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import blood, service
from appliance.layers.clinical.blood_schemas import BloodRequestIn, BloodUnitIn
from appliance.layers.clinical.schemas import EncounterIn, ResultIn
from appliance.layers.financial import reports, schedule
from appliance.layers.nursing import transfusion
from appliance.layers.nursing.schemas import TransfusionEndIn, TransfusionStartIn
from appliance.layers.patient.portal import describe
from appliance.substrate import audit
from appliance.substrate.principal import Principal
from appliance.substrate.record import RecordError
from tests.conftest import facility_today
from tests.layers.clinical.conftest import CLINICAL_CONFIG, new_patient

GROUPING = {"loinc": "882-1", "name": "Blood group and Rhesus", "specimen": "blood",
            "choices": ["A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-"]}
BLOOD_CONFIG = {
    **CLINICAL_CONFIG, "catalogue": [*CLINICAL_CONFIG["catalogue"], GROUPING],
    "fee_schedule": {
        "self_pay_price_list": "CASH", "price_lists": [{"code": "CASH", "name": "Self-pay"}],
        "items": [{"kind": "blood", "code": "red_cells", "name": "Red cells, one unit", "department": "BLOOD",
                   "effective_from": "2025-01-01", "prices": {"CASH": "2500.00"}}],
    },
}
VITALS = {"temperature_c": "36.8", "heart_rate_bpm": 82, "systolic_mmhg": 118, "respiratory_rate": 16}


@pytest.fixture(scope="module")
def hospital(tenant_factory):
    return tenant_factory(name="Blood Test Hospital", **BLOOD_CONFIG)


@pytest.fixture(scope="module")
def elsewhere(tenant_factory):
    return tenant_factory(name="Blood Elsewhere", **BLOOD_CONFIG)


@pytest.fixture(scope="module")
def clients(hospital, elsewhere, app, db, policy):
    """Token clients of each role, made once for the module."""
    from litestar.testing import TestClient

    from appliance.substrate import identity

    def make(tenant: str, role: str):
        with db.control() as conn:
            machine = identity.create_account(conn, policy, kind="machine", display_name=f"Blood {role}",
                                              role="facility_admin", tenant=tenant,
                                              email=f"bb-{uuid.uuid4().hex[:8]}@test.invalid")
            token = identity.issue_api_token(conn, account_id=machine.account_id, tenant=tenant, name="blood",
                                             permissions=sorted(policy.permissions_of(role)))
        client = TestClient(app=app, raise_server_exceptions=False)
        client.headers["authorization"] = f"Bearer {token}"
        if tenant == hospital.slug:
            accounts[role] = str(machine.account_id)
        return client

    accounts: dict[str, str] = {}
    return {"lab": make(hospital.slug, "lab_technician"), "doctor": make(hospital.slug, "clinician"),
            "nurse": make(hospital.slug, "nurse"), "other_lab": make(elsewhere.slug, "lab_technician"),
            "other_nurse": make(elsewhere.slug, "nurse"), "accounts": accounts}


@pytest.fixture(scope="module")
def staff(hospital, elsewhere, db, policy) -> dict:
    """Members of staff (never enrolled) who might be named as the bedside check's second person: a nurse and a
    clinician here (who may check), a lab technician here (who may not), a nurse of the other facility."""
    from appliance.substrate import identity

    made = {}
    with db.control() as conn:
        for key, role, tenant in (("nurse", "nurse", hospital.slug), ("doctor", "clinician", hospital.slug),
                                  ("lab", "lab_technician", hospital.slug), ("other_nurse", "nurse", elsewhere.slug)):
            made[key] = str(identity.create_account(
                conn, policy, kind="staff", email=f"check-{key}-{uuid.uuid4().hex[:6]}@test.invalid",
                display_name=f"Checker {key.replace('_', ' ').title()}", role=role, tenant=tenant).account_id)
    return made


@pytest.fixture(scope="module")
def patients(db, hospital) -> dict:
    """Amina grouped A RhD-positive, Baraka O RhD-negative, Chege never grouped, Dalia grouped twice, differently."""
    desk = Principal(account_id=uuid.uuid4(), kind="machine", display_name="Blood desk", tenant=hospital.slug,
                     role="clinician")
    groups = {"amina": ["A+"], "baraka": ["O-"], "chege": [], "dalia": ["A+", "B+"]}
    made = {}
    with db.tenant(hospital.slug) as conn:
        for name, found in groups.items():
            made[name] = new_patient(conn, desk, family_name=name.title(), sex="male" if name == "baraka"
                                     else "female")["id"]
            for value in found:
                service.record_result(conn, desk, made[name], ResultIn(code="882-1", value=value))
    return made


def _api(hospital) -> str:
    return f"/api/t/{hospital.slug}"


def _unit(number: str, component: str = "red_cells", abo: str = "O", rhd: str = "positive", days: int = 20) -> dict:
    today = facility_today()
    return {"unit_number": number, "component": component, "abo": abo, "rhd": rhd, "volume_ml": 300,
            "collected_on": str(today - dt.timedelta(days=3)), "expires_on": str(today + dt.timedelta(days=days))}


def _receive(clients, hospital, *args, **kwargs) -> dict:
    answer = clients["lab"].post(f"{_api(hospital)}/blood/units", json=_unit(*args, **kwargs))
    assert answer.status_code == 201, answer.text
    return answer.json()


def _request(clients, hospital, patient, component="red_cells", units=2, urgency="urgent") -> str:
    answer = clients["doctor"].post(f"{_api(hospital)}/patients/{patient}/blood/requests", json={
        "component": component, "units": units, "indication": "Hb 6.1 g/dl, bleeding", "urgency": urgency})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def _reserve(clients, hospital, request_id, number, **extra):
    return clients["lab"].post(f"{_api(hospital)}/blood/requests/{request_id}/reservations",
                               json={"unit_number": number, **extra})


def _expired_unit(db, hospital, number: str, *, issued_to: tuple[uuid.UUID, str] | None = None) -> uuid.UUID:
    """A unit that expired yesterday while in the bank (or after it was issued): time passing, not an act."""
    unit_id, author, today = uuid.uuid4(), uuid.uuid4(), facility_today()
    with db.tenant(hospital.slug) as conn:
        conn.execute(sa.text(
            "INSERT INTO blood_unit (id, unit_number, component, abo, rhd, volume_ml, collected_on, expires_on, "
            "received_by) VALUES (:id, :n, 'red_cells', 'O', 'negative', 300, :c, :e, :by)"),
            {"id": unit_id, "n": number, "c": today - dt.timedelta(days=40), "e": today - dt.timedelta(days=1),
             "by": author})
        if issued_to:
            for kind in ("reserved", "issued"):
                conn.execute(sa.text(
                    "INSERT INTO blood_unit_event (unit_id, kind, patient_id, request_id, recorded_by) "
                    "VALUES (:u, :k, :p, :r, :by)"), {"u": unit_id, "k": kind, "p": issued_to[0],
                                                      "r": issued_to[1], "by": author})
    return unit_id


def _counts(db, hospital) -> tuple:
    with db.tenant(hospital.slug) as conn:
        return tuple(conn.execute(sa.text(
            "SELECT (SELECT count(*) FROM entry), (SELECT count(*) FROM blood_unit), "
            "(SELECT count(*) FROM blood_unit_event)")).one())


def test_units_are_received_refused_when_wrong_and_counted_by_component_and_group(clients, db, hospital):
    base = f"{_api(hospital)}/blood/units"
    received = _receive(clients, hospital, "STOCK001", abo="A", rhd="negative")
    assert (received["status"], received["group"], received["expiring"]) == ("available", "A RhD negative", False)
    soon = _receive(clients, hospital, "STOCK002", component="plasma", abo="AB", days=2)
    assert soon["expiring"] is True
    before = _counts(db, hospital)
    twice = clients["lab"].post(base, json=_unit("STOCK001"))
    assert twice.status_code == 409 and "in this blood bank already" in twice.json()["detail"]
    expired = clients["lab"].post(base, json=_unit("STOCK003", days=-1))
    assert expired.status_code == 422 and expired.json()["field"] == "expires_on"
    tomorrow = facility_today() + dt.timedelta(days=1)  # the facility's: a day ahead of UTC's after 21:00 UTC
    future = clients["lab"].post(base, json={**_unit("STOCK004"), "collected_on": str(tomorrow)})
    assert future.status_code == 422 and future.json()["field"] == "collected_on"
    wrong_group = clients["lab"].post(base, json=_unit("STOCK005", abo="C"))
    assert wrong_group.status_code == 422 and wrong_group.json()["detail"]
    assert clients["nurse"].post(base, json=_unit("STOCK006")).status_code == 403
    assert _counts(db, hospital) == before

    stock = clients["lab"].get(base).json()
    assert stock["grid"]["red_cells"]["A RhD negative"] >= 1 and stock["grid"]["plasma"]["AB RhD positive"] >= 1
    assert stock["grid"]["platelets"]["O RhD negative"] == 0
    assert {"STOCK001", "STOCK002"} <= {u["unit_number"] for u in stock["units"]} and stock["expiring"] >= 1
    gone = clients["lab"].post(f"{base}/{soon['id']}/discard", json={"reason": "bag leaking at the seal"})
    assert gone.status_code == 200 and gone.json()["status"] == "discarded"
    again = clients["lab"].post(f"{base}/{soon['id']}/discard", json={"reason": "bag leaking at the seal"})
    assert again.status_code == 409
    assert "STOCK002" not in {u["unit_number"] for u in clients["lab"].get(base).json()["units"]}


def test_the_crossmatch_refuses_what_may_not_be_given_and_writes_nothing(clients, db, hospital, patients):
    request = _request(clients, hospital, patients["amina"])  # A RhD-positive, red cells
    for number, abo, rhd, component in (("XMB", "B", "positive", "red_cells"), ("XMAB", "AB", "negative",
                                         "red_cells"), ("XMPL", "A", "positive", "plasma")):
        _receive(clients, hospital, number, component=component, abo=abo, rhd=rhd)
    _expired_unit(db, hospital, "XMOLD")
    before = _counts(db, hospital)
    for number, words in (("XMB", "may not receive group B red cells: give group O or A red cells"),
                          ("XMAB", "may not receive group AB red cells"), ("XMPL", "the request is for red cells"),
                          ("XMOLD", "expired on"), ("XMNONE", "there is no unit XMNONE")):
        refused = _reserve(clients, hospital, request, number)
        assert refused.status_code == 422 and words in refused.json()["detail"], (number, refused.text)
        assert refused.json()["field"] == "unit_number"
    assert _counts(db, hospital) == before

    _receive(clients, hospital, "XMONEG", abo="O", rhd="negative")
    reserved = _reserve(clients, hospital, request, "XMONEG")
    assert reserved.status_code == 200, reserved.text
    body = reserved.json()
    assert body["group"]["words"] == "A RhD positive" and body["outstanding"] == 2
    assert [(u["unit_number"], u["status"], u["emergency"]) for u in body["units_given"]] == [
        ("XMONEG", "reserved", False)]
    taken = _reserve(clients, hospital, _request(clients, hospital, patients["amina"], units=1), "XMONEG")
    assert taken.status_code == 409 and "reserved, not available" in taken.json()["detail"]


def test_rhd_negative_no_group_and_disagreeing_groups(clients, db, hospital, patients):
    _receive(clients, hospital, "RHOPOS", abo="O", rhd="positive")
    _receive(clients, hospital, "RHONEG", abo="O", rhd="negative")
    _receive(clients, hospital, "RHAPOS", abo="A", rhd="positive")
    before = _counts(db, hospital)
    negative = _request(clients, hospital, patients["baraka"], units=1)
    before = _counts(db, hospital)
    refused = _reserve(clients, hospital, negative, "RHOPOS")
    assert refused.status_code == 422 and "RhD-negative patient may not receive RhD-positive" in refused.text

    ungrouped = _request(clients, hospital, patients["chege"], urgency="emergency")
    no_reason = _reserve(clients, hospital, ungrouped, "RHONEG")
    assert no_reason.status_code == 422 and "no recorded blood group" in no_reason.json()["detail"]
    not_o_negative = _reserve(clients, hospital, ungrouped, "RHAPOS", emergency_reason="Massive PPH, no time")
    assert not_o_negative.status_code == 422 and "only receive group O RhD-negative red cells" in not_o_negative.text
    conflict = _reserve(clients, hospital, _request(clients, hospital, patients["dalia"], units=1), "RHONEG")
    assert conflict.status_code == 409 and "blood groups disagree (A RhD positive, B RhD positive)" in conflict.text
    assert _counts(db, hospital)[1:] == before[1:]  # requests were written, no unit moved

    emergency = _reserve(clients, hospital, ungrouped, "RHONEG", emergency_reason="Massive PPH, no time")
    assert emergency.status_code == 200, emergency.text
    unit = emergency.json()["units_given"][0]
    assert unit["emergency"] is True and unit["reason"] == "Massive PPH, no time"


def test_an_ungrouped_patient_in_an_emergency_gets_plasma_any_group_may_receive(clients, db, hospital, patients):
    """A massive PPH, the woman not yet grouped: beside the O RhD-negative red cells, her plasma is group AB (the
    universal plasma), where the bank could answer nothing but red cells; group A plasma is refused, naming AB, and
    whole blood, which must match her own group, is never given uncrossmatched."""
    _receive(clients, hospital, "FFPA01", component="plasma", abo="A", days=300)
    _receive(clients, hospital, "FFPAB1", component="plasma", abo="AB", rhd="positive", days=300)
    _receive(clients, hospital, "WBONEG", component="whole_blood", abo="O", rhd="negative")
    plasma = _request(clients, hospital, patients["chege"], component="plasma", units=1, urgency="emergency")
    whole = _request(clients, hospital, patients["chege"], component="whole_blood", units=1, urgency="emergency")
    before = _counts(db, hospital)
    no_reason = _reserve(clients, hospital, plasma, "FFPAB1")
    assert no_reason.status_code == 422 and "issue group AB plasma uncrossmatched" in no_reason.json()["detail"]
    group_a = _reserve(clients, hospital, plasma, "FFPA01", emergency_reason="Massive PPH, no time")
    assert group_a.status_code == 422 and "may only receive group AB plasma" in group_a.json()["detail"]
    never = _reserve(clients, hospital, whole, "WBONEG", emergency_reason="Massive PPH, no time")
    assert never.status_code == 422 and "of the patient's own group" in never.json()["detail"], never.text
    assert _counts(db, hospital) == before
    given = _reserve(clients, hospital, plasma, "FFPAB1", emergency_reason="Massive PPH, no time")
    assert given.status_code == 200, given.text
    assert given.json()["units_given"][0]["emergency"] is True


def test_issue_then_the_bedside_catches_the_wrong_patient_and_records_the_transfusion(
        clients, db, hospital, patients, staff):
    api = _api(hospital)
    request = _request(clients, hospital, patients["amina"], units=1)
    unit = _receive(clients, hospital, "G1234 26 000101", abo="A", rhd="positive")
    _receive(clients, hospital, "BED002", abo="A", rhd="positive")
    early = clients["lab"].post(f"{api}/blood/units/{unit['id']}/issue")
    assert early.status_code == 409 and "reserve it for a request" in early.json()["detail"]
    assert unit["unit_number"] == "G123426000101"  # as the label prints it, kept as one string
    assert _reserve(clients, hospital, request, "g1234-26-000101").status_code == 200
    issued = clients["lab"].post(f"{api}/blood/units/{unit['id']}/issue")
    assert issued.status_code == 200 and issued.json()["status"] == "issued", issued.text
    assert _reserve(clients, hospital, _request(clients, hospital, patients["amina"], units=1),
                    "BED002").status_code == 200
    _expired_unit(db, hospital, "BEDOLD", issued_to=(patients["amina"], request))

    start = {"unit_number": "=G123426000101 00", "checked_by_account_id": staff["nurse"], "vitals": VITALS}
    before = _counts(db, hospital)
    wrong = clients["nurse"].post(f"{api}/patients/{patients['baraka']}/transfusions", json=start)
    assert wrong.status_code == 422 and wrong.json()["field"] == "unit_number"
    assert "WRONG PATIENT: unit G123426000101 is for another patient, not this one" in wrong.json()["detail"]
    assert "Amina" not in wrong.text
    for number, words in (("BED002", "was not issued to this patient (it is reserved)"),
                          ("BEDOLD", "expired on"), ("BED404", "no unit BED404")):
        refused = clients["nurse"].post(f"{api}/patients/{patients['amina']}/transfusions",
                                        json={**start, "unit_number": number})
        assert refused.status_code == 422 and words in refused.json()["detail"], (number, refused.text)
    assert _counts(db, hospital) == before  # no transfusion, no vital signs, no unit moved

    started = clients["nurse"].post(f"{api}/patients/{patients['amina']}/transfusions", json=start)
    assert started.status_code == 201, started.text
    record = started.json()
    assert (record["status"], record["unit_number"], record["checked_by"], record["checked_by_account_id"]) == (
        "in_progress", "G123426000101", "Checker Nurse", staff["nurse"])
    assert clients["lab"].get(f"{api}/blood/units/{unit['id']}").json()["status"] == "transfused"
    with db.tenant(hospital.slug) as conn:
        charged = conn.execute(sa.text("SELECT status, item_kind, item_code, amount, department FROM charge "
                                       "WHERE source_root_id = :r"), {"r": record["id"]}).all()
    assert [tuple(c) for c in charged] == [("posted", "blood", "red_cells", Decimal("2500.00"), "BLOOD")]
    twice = clients["nurse"].post(f"{api}/patients/{patients['amina']}/transfusions", json=start)
    assert twice.status_code == 422 and "transfused already" in twice.json()["detail"]
    path = f"{api}/patients/{patients['amina']}/transfusions/{record['id']}"
    observed = clients["nurse"].post(f"{path}/observations", json={"vitals": {**VITALS, "heart_rate_bpm": 90}})
    assert observed.status_code == 200 and observed.json()["vitals_15min_id"], observed.text
    assert clients["nurse"].post(f"{path}/observations", json={"vitals": VITALS}).status_code == 409
    before = _counts(db, hospital)
    overfull = clients["nurse"].post(f"{path}/end", json={"volume_ml": 450, "reaction": "none", "vitals": VITALS})
    assert overfull.status_code == 422 and overfull.json()["field"] == "volume_ml", overfull.text
    assert "held 300 ml" in overfull.json()["detail"] and "450 ml" in overfull.json()["detail"]
    assert _counts(db, hospital) == before  # not ended, no vital signs written
    unexplained = clients["nurse"].post(f"{path}/end", json={"volume_ml": 120, "reaction": "haemolytic",
                                                             "vitals": VITALS})
    assert unexplained.status_code == 422 and unexplained.json()["field"] == "reaction_note"
    stopped = clients["nurse"].post(f"{path}/end", json={
        "volume_ml": 120, "reaction": "haemolytic", "reaction_note": "Loin pain, fever 38.9, dark urine",
        "vitals": {**VITALS, "temperature_c": "38.9", "heart_rate_bpm": 124}})
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped", stopped.text
    assert clients["nurse"].post(f"{path}/end", json={"volume_ml": 1, "reaction": "none", "vitals": VITALS}
                                 ).status_code == 409
    with db.tenant(hospital.slug) as conn:
        task = conn.execute(sa.text(
            "SELECT t.title FROM entry e JOIN nursing_task t ON t.entry_id = e.id WHERE e.patient_id = :p "
            "AND t.code = 'escalation' AND t.source_kind = 'transfusion'"), {"p": patients["amina"]}).scalar()
        sets = conn.execute(sa.text("SELECT count(*) FROM entry WHERE kind = 'vital_signs' AND patient_id = :p"),
                            {"p": patients["amina"]}).scalar()
    assert task and task.startswith("Suspected haemolytic reaction to unit G123426000101: transfusion stopped")
    assert sets == 3
    with db.tenant(hospital.slug) as conn:  # observed and stopped: still the one unit charged
        assert conn.execute(sa.text("SELECT count(*) FROM charge WHERE source_root_id = :r"),
                            {"r": record["id"]}).scalar() == 1
    listed = clients["nurse"].get(f"{api}/patients/{patients['amina']}/transfusions").json()
    assert [(t["unit_number"], t["status"], t["vitals_end"]["temperature_c"]) for t in listed] == [
        ("G123426000101", "stopped", "38.9")]
    chart = clients["doctor"].get(f"{api}/patients/{patients['amina']}/blood").json()
    assert chart["group"]["words"] == "A RhD positive"
    assert "G123426000101" in {u["unit_number"] for r in chart["requests"] for u in r["units_given"]}


def test_every_read_and_write_is_on_the_patients_record(clients, db, hospital, patients):
    request = _request(clients, hospital, patients["baraka"], units=1)
    _receive(clients, hospital, "AUD001", abo="O", rhd="negative")
    assert _reserve(clients, hospital, request, "AUD001").status_code == 200
    assert clients["lab"].get(f"{_api(hospital)}/blood/units").status_code == 200
    assert clients["lab"].get(f"{_api(hospital)}/blood/requests").status_code == 200
    events = {e.event_type for e in audit.patient_access_log(db, hospital.slug, patients["baraka"])}
    assert {"record.blood_request.create", "record.blood_unit.update", "record.blood_unit.read",
            "record.blood_request.read"} <= events


def test_another_facility_and_guessed_ids_are_refused_on_every_route(clients, db, hospital, elsewhere, patients,
                                                                    staff):
    api, there = _api(hospital), _api(elsewhere)
    request = _request(clients, hospital, patients["amina"], units=1)
    unit = _receive(clients, hospital, "ATK001", abo="A")
    patient = patients["amina"]
    routes = [("get", "/blood/units", None), ("post", "/blood/units", _unit("ATK002")),
              ("get", f"/blood/units/{unit['id']}", None),
              ("post", f"/blood/units/{unit['id']}/discard", {"reason": "gone off"}),
              ("post", f"/blood/units/{unit['id']}/release", {"reason": "not needed"}),
              ("post", f"/blood/units/{unit['id']}/issue", None),
              ("get", "/blood/requests", None), ("get", f"/blood/requests/{request}", None),
              ("post", f"/blood/requests/{request}/reservations", {"unit_number": "ATK001"})]
    before = _counts(db, hospital)
    for method, path, body in routes:
        answer = getattr(clients["other_lab"], method)(api + path, **({"json": body} if body is not None else {}))
        assert answer.status_code == 403, (method, path, answer.text)
    patient_routes = [("get", f"/patients/{patient}/blood", None),
                      ("post", f"/patients/{patient}/blood/requests", {"component": "plasma", "units": 1,
                                                                        "indication": "INR 4", "urgency": "routine"}),
                      ("get", f"/patients/{patient}/transfusions", None),
                      ("post", f"/patients/{patient}/blood/requests/{request}/cancel", {"reason": "Operation off"}),
                      ("post", f"/patients/{patient}/transfusions", {"unit_number": "ATK001",
                                                                     "checked_by_account_id": staff["nurse"],
                                                                     "vitals": VITALS})]
    for method, path, body in patient_routes:
        answer = getattr(clients["other_nurse"], method)(api + path, **({"json": body} if body is not None else {}))
        assert answer.status_code == 403, (method, path, answer.text)
    # The lab holds no chart permission; the nurse no blood bank one.
    assert clients["lab"].get(f"{api}/patients/{patient}/blood").status_code == 403
    assert clients["nurse"].get(f"{api}/blood/units").status_code == 403
    # Their own facility's address with this facility's ids, and guessed ids here: not found.
    guessed = uuid.uuid4()
    for method, path, body in routes[2:6] + routes[7:]:
        answer = getattr(clients["other_lab"], method)(there + path, **({"json": body} if body is not None else {}))
        assert answer.status_code in (404, 422), (method, path, answer.text)
        if answer.status_code == 422:  # the reservation finds no request before any unit
            raise AssertionError(answer.text)
        swapped = path.replace(unit["id"], str(guessed)).replace(request, str(guessed))
        answer = getattr(clients["lab"], method)(api + swapped, **({"json": body} if body is not None else {}))
        assert answer.status_code == 404, (method, swapped, answer.text)
    assert clients["doctor"].get(f"{api}/patients/{guessed}/blood").status_code in (403, 404)
    assert clients["nurse"].post(f"{api}/patients/{patient}/transfusions/{guessed}/end", json={
        "volume_ml": 1, "reaction": "none", "vitals": VITALS}).status_code == 404
    assert _counts(db, hospital) == before


def test_a_unit_kept_longer_than_its_component_keeps_is_refused(clients, db, hospital):
    # A mistyped year on the label (2062 for 2026) made a unit that would never expire: the expiry check at the
    # crossmatch and the bedside would never catch it.
    before = _counts(db, hospital)
    for component, days in (("red_cells", 43), ("whole_blood", 36), ("platelets", 8), ("plasma", 3 * 366 + 1),
                            ("red_cells", 36 * 365)):
        answer = clients["lab"].post(f"{_api(hospital)}/blood/units", json={
            **_unit(f"LONG{days}", component=component), "expires_on": str(facility_today() - dt.timedelta(days=3) +
                                                                            dt.timedelta(days=days))})
        assert answer.status_code == 422, (component, days, answer.text)
        assert answer.json()["field"] == "expires_on" and "check the date on the label" in answer.json()["detail"]
    assert _counts(db, hospital) == before
    assert _receive(clients, hospital, "LONGOK", component="plasma", days=360)["status"] == "available"


def test_blood_is_not_asked_for_a_person_recorded_deceased(clients, db, hospital):
    from tests.layers.clinical.test_death import certificate, death_url, register

    patient = register(clients["doctor"], hospital.slug, national_id=uuid.uuid4().hex[:10])
    request = _request(clients, hospital, patient, units=1)
    certified = clients["doctor"].post(death_url(hospital.slug, patient), json=certificate())
    assert certified.status_code == 201, certified.text
    before = _counts(db, hospital)
    refused = clients["doctor"].post(f"{_api(hospital)}/patients/{patient}/blood/requests", json={
        "component": "red_cells", "units": 1, "indication": "Hb 6.1 g/dl, bleeding", "urgency": "urgent"})
    assert refused.status_code == 422 and "a request for blood cannot be recorded" in refused.json()["detail"]
    assert _counts(db, hospital) == before
    # The request made while they lived is still cancelled, its reserved units back in stock.
    cancelled = clients["doctor"].post(f"{_api(hospital)}/patients/{patient}/blood/requests/{request}/cancel",
                                       json={"reason": "patient died"})
    assert cancelled.status_code == 200, cancelled.text


def test_a_request_is_filed_only_under_this_patients_own_encounter(clients, db, hospital, patients):
    desk = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Desk", tenant=hospital.slug,
                     role="clinician")
    with db.tenant(hospital.slug) as conn:
        own, others = (service.open_encounter(conn, desk, patients[who], EncounterIn(encounter_class="outpatient"))
                       ["id"] for who in ("amina", "baraka"))
    url = f"{_api(hospital)}/patients/{patients['amina']}/blood/requests"
    body = {"component": "red_cells", "units": 1, "indication": "Hb 6.0 g/dl", "urgency": "routine"}
    before = _counts(db, hospital)
    for encounter_id in (others, uuid.uuid4()):  # another patient's visit, a guessed one
        answer = clients["doctor"].post(url, json={**body, "encounter_id": str(encounter_id)})
        assert answer.status_code == 422 and answer.json()["field"] == "encounter_id", answer.text
    assert _counts(db, hospital) == before
    assert clients["doctor"].post(url, json={**body, "encounter_id": str(own)}).status_code == 201


def _issued(clients, hospital, patient, number: str, abo: str, rhd: str) -> tuple[str, dict]:
    """A request of one unit for `patient`, the unit received, reserved and issued to the ward."""
    request = _request(clients, hospital, patient, units=1)
    unit = _receive(clients, hospital, number, abo=abo, rhd=rhd)
    assert _reserve(clients, hospital, request, number).status_code == 200
    assert clients["lab"].post(f"{_api(hospital)}/blood/units/{unit['id']}/issue").status_code == 200
    return request, unit


def test_a_request_is_cancelled_its_reserved_units_back_in_stock_not_while_a_unit_is_out(
        clients, db, hospital, patients, staff):
    api, baraka = _api(hospital), patients["baraka"]
    cancel = f"{api}/patients/{baraka}/blood/requests"
    request = _request(clients, hospital, baraka, units=2)
    held, out = (_receive(clients, hospital, number, abo="O", rhd="negative") for number in ("CAN001", "CAN002"))
    for number in ("CAN001", "CAN002"):
        assert _reserve(clients, hospital, request, number).status_code == 200
    assert clients["lab"].post(f"{api}/blood/units/{out['id']}/issue").status_code == 200
    before = _counts(db, hospital)
    issued = clients["doctor"].post(f"{cancel}/{request}/cancel", json={"reason": "Operation cancelled"})
    assert issued.status_code == 409 and "unit CAN002 of this request is issued to the ward: return it to the " \
        "blood bank first" in issued.json()["detail"]
    # Whose request it is and who may cancel it: the lab and the ward do not; another patient's path, a guessed id.
    assert clients["lab"].post(f"{cancel}/{request}/cancel", json={"reason": "Not needed"}).status_code == 403
    assert clients["nurse"].post(f"{cancel}/{request}/cancel", json={"reason": "Not needed"}).status_code == 403
    other = clients["doctor"].post(f"{api}/patients/{patients['amina']}/blood/requests/{request}/cancel",
                                   json={"reason": "Not needed"})
    assert other.status_code == 404 and "on this patient's record" in other.json()["detail"]
    assert clients["doctor"].post(f"{cancel}/{uuid.uuid4()}/cancel", json={"reason": "Not needed"}).status_code == 404
    unexplained = clients["doctor"].post(f"{cancel}/{request}/cancel", json={"reason": ""})
    assert unexplained.status_code == 422 and unexplained.json()["detail"]
    assert _counts(db, hospital) == before

    # The ward returns the bag unused; the request is cancelled and the unit still reserved goes back with it.
    returned = clients["lab"].post(f"{api}/blood/units/{out['id']}/release", json={"reason": "Returned unused"})
    assert returned.status_code == 200 and returned.json()["status"] == "available", returned.text
    done = clients["doctor"].post(f"{cancel}/{request}/cancel", json={"reason": "Operation cancelled, Hb 9.8"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["cancel_reason"], body["outstanding"], body["units_given"]) == ("Operation cancelled, Hb 9.8", 0, [])
    assert body["cancelled_at"] and body["cancelled_by"]
    assert clients["lab"].get(f"{api}/blood/units/{held['id']}").json()["status"] == "available"
    with db.tenant(hospital.slug) as conn:
        history = conn.execute(sa.text(
            "SELECT kind, reason FROM blood_unit_event WHERE unit_id = :u ORDER BY seq"), {"u": held["id"]}).all()
    assert [tuple(h) for h in history] == [("reserved", None), ("released", "request cancelled: Operation "
                                                                           "cancelled, Hb 9.8")]
    again = clients["doctor"].post(f"{cancel}/{request}/cancel", json={"reason": "Operation cancelled"})
    assert again.status_code == 409 and "cancelled already" in again.json()["detail"]
    assert request not in {r["id"] for r in clients["lab"].get(f"{api}/blood/requests").json()}
    late = _reserve(clients, hospital, request, "CAN001")
    assert late.status_code == 409 and "this request was cancelled" in late.json()["detail"]
    events = {e.event_type for e in audit.patient_access_log(db, hospital.slug, baraka)}
    assert "record.blood_request_cancellation.amend" in events
    assert describe("record.blood_request_cancellation.amend", "U") == "cancelled a request for blood for you"

    # A request whose unit was given stays on the record.
    given, _ = _issued(clients, hospital, baraka, "CAN003", "O", "negative")
    assert clients["nurse"].post(f"{api}/patients/{baraka}/transfusions", json={
        "unit_number": "CAN003", "checked_by_account_id": staff["doctor"], "vitals": VITALS}).status_code == 201
    transfused = clients["doctor"].post(f"{cancel}/{given}/cancel", json={"reason": "Not needed"})
    assert transfused.status_code == 409 and "unit CAN003 of this request was transfused" in transfused.text


def test_the_second_checker_is_a_colleague_here_who_may_check_blood(clients, db, hospital, patients, staff):
    api, amina = _api(hospital), patients["amina"]
    _issued(clients, hospital, amina, "CHK001", "A", "positive")
    start = {"unit_number": "CHK001", "vitals": VITALS}
    url = f"{api}/patients/{amina}/transfusions"
    before = _counts(db, hospital)
    nurse_itself = clients["accounts"]["nurse"]
    for checker, words in ((nurse_itself, "not yourself"),
                           (staff["other_nurse"], "no member of this facility's staff has the account"),
                           (str(uuid.uuid4()), "no member of this facility's staff has the account"),
                           (staff["lab"], "Checker Lab holds no role that checks blood")):
        refused = clients["nurse"].post(url, json={**start, "checked_by_account_id": checker})
        assert refused.status_code == 422, (checker, refused.text)
        assert refused.json()["field"] == "checked_by_account_id" and words in refused.json()["detail"]
    assert clients["nurse"].post(url, json={**start, "checked_by": "Nurse Wekesa"}).status_code == 422
    assert _counts(db, hospital) == before

    started = clients["nurse"].post(url, json={**start, "checked_by_account_id": staff["doctor"]})
    assert started.status_code == 201, started.text
    assert (started.json()["checked_by"], started.json()["checked_by_account_id"]) == ("Checker Doctor",
                                                                                      staff["doctor"])
    with db.tenant(hospital.slug) as conn:
        kept = conn.execute(sa.text("SELECT checked_by_account FROM transfusion WHERE entry_id = :e"),
                            {"e": started.json()["version_id"]}).scalar()
    assert str(kept) == staff["doctor"]
    hung = [e for e in audit.patient_access_log(db, hospital.slug, amina)
            if e.event_type == "record.blood_unit.update" and (e.detail or {}).get("unit_number") == "CHK001"
            and e.detail["event"] == "transfused"]
    assert hung and hung[0].detail["second_checker"] == staff["doctor"]


def test_the_bedside_judges_expiry_on_the_facilitys_day(db, hospital, patients, staff, policy):
    """A unit expiring on the 28th: at 01:00 on the 29th in Nairobi (22:00 on the 28th in UTC) it is refused; at
    23:00 on the 28th at a facility west of UTC (04:00 on the 29th in UTC) it is still given."""
    last_day = dt.date(2026, 3, 28)
    lab = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Bench", tenant=hospital.slug,
                    role="lab_technician")
    nurse = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Ward", tenant=hospital.slug, role="nurse")
    colleagues = transfusion.colleagues(db, policy, hospital.slug)
    baraka = patients["baraka"]
    with db.tenant(hospital.slug) as conn:
        for number in ("EXP028", "EXP029"):
            blood.receive_unit(conn, lab, BloodUnitIn(
                unit_number=number, component="red_cells", abo="O", rhd="negative", volume_ml=280,
                collected_on=last_day - dt.timedelta(days=30), expires_on=last_day), today=last_day)
            request = blood.request_blood(conn, lab, baraka, BloodRequestIn(
                component="red_cells", units=1, indication="Hb 6.2 g/dl", urgency="urgent"))["id"]
            reserved = blood.reserve(conn, lab, request, number, None, today=last_day)
            blood.issue(conn, lab, reserved["units_given"][0]["id"], today=last_day)
    before = _counts(db, hospital)

    def hang(number: str, now: dt.datetime, zone: str) -> dict:
        with db.tenant(hospital.slug) as conn:
            return transfusion.start(conn, nurse, baraka, TransfusionStartIn(
                unit_number=number, checked_by_account_id=staff["nurse"], vitals=VITALS), now=now,
                zone=zoneinfo.ZoneInfo(zone), staff=colleagues)

    with pytest.raises(RecordError, match="unit EXP028 expired on 2026-03-28") as refused:
        hang("EXP028", dt.datetime(2026, 3, 28, 22, 0, tzinfo=dt.UTC), "Africa/Nairobi")
    assert refused.value.status == 422 and _counts(db, hospital) == before
    given = hang("EXP029", dt.datetime(2026, 3, 29, 4, 0, tzinfo=dt.UTC), "America/Lima")
    assert (given["status"], given["started_on"]) == ("in_progress", last_day)


def test_a_time_refused_at_the_bedside_is_said_on_the_wards_clock(clients, db, hospital, patients, staff, policy):
    """A unit hung at 05:05 in Nairobi (02:05 UTC): an end typed for 04:50 is refused naming both times as the ward's
    clock reads them, not UTC's; an end left for now, seven hours on, says how long in hours and minutes (it said
    '7:00:00.250000'), and a start six hours back likewise."""
    _issued(clients, hospital, patients["baraka"], "CLOCK01", "O", "negative")
    nairobi = zoneinfo.ZoneInfo("Africa/Nairobi")
    hung = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=30)
    nurse = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Ward", tenant=hospital.slug, role="nurse")
    with db.tenant(hospital.slug) as conn:
        started = transfusion.start(conn, nurse, patients["baraka"], TransfusionStartIn(
            unit_number="CLOCK01", checked_by_account_id=staff["nurse"], started_at=hung, vitals=VITALS),
            now=hung, zone=nairobi, staff=transfusion.colleagues(db, policy, hospital.slug))
    local = hung.astimezone(nairobi)

    def end(now: dt.datetime, ended_at: dt.datetime | None) -> str:
        with pytest.raises(RecordError) as refused, db.tenant(hospital.slug) as conn:
            transfusion.end(conn, nurse, patients["baraka"], started["id"], TransfusionEndIn(
                ended_at=ended_at, volume_ml=280, reaction="none", vitals=VITALS), now=now, zone=nairobi)
        assert refused.value.status == 422 and refused.value.extra["field"] == "ended_at"
        return refused.value.detail

    early = end(hung + dt.timedelta(minutes=20), hung - dt.timedelta(minutes=15))
    assert early == (f"{local - dt.timedelta(minutes=15):%d %b %Y %H:%M} is before the transfusion started "
                     f"({local:%d %b %Y %H:%M})"), early
    late = end(hung + dt.timedelta(hours=7, microseconds=250000), None)
    assert f"is 7 h 00 min after the transfusion started ({local:%d %b %Y %H:%M})" in late, late
    assert "UTC" not in early + late
    with pytest.raises(RecordError, match="is 6 h 30 min ago") as old, db.tenant(hospital.slug) as conn:
        transfusion.start(conn, nurse, patients["baraka"], TransfusionStartIn(
            unit_number="CLOCK01", checked_by_account_id=staff["nurse"], started_at=hung, vitals=VITALS),
            now=hung + dt.timedelta(hours=6, minutes=30), zone=nairobi,
            staff=transfusion.colleagues(db, policy, hospital.slug))
    assert old.value.extra["field"] == "started_at"


def test_a_unit_started_counts_in_kpi_8_as_charged_the_same_day(clients, db, hospital, patients, staff):
    _issued(clients, hospital, patients["baraka"], "KPI001", "O", "negative")
    started = clients["nurse"].post(f"{_api(hospital)}/patients/{patients['baraka']}/transfusions", json={
        "unit_number": "KPI001", "checked_by_account_id": staff["nurse"], "vitals": VITALS})
    assert started.status_code == 201, started.text
    root = uuid.UUID(started.json()["id"])
    path = f"{_api(hospital)}/patients/{patients['baraka']}/transfusions/{root}"
    assert clients["nurse"].post(f"{path}/observations", json={"vitals": VITALS}).status_code == 200
    now = dt.datetime.now(dt.UTC)
    with db.tenant(hospital.slug) as conn:
        kept = conn.execute(sa.text("SELECT kind, department, what, charge_id IS NOT NULL FROM charge_capture "
                                    "WHERE root_id = :r"), {"r": root}).one()
        reported = [b for b in reports.billable_entries(conn, now - dt.timedelta(hours=1), now + dt.timedelta(hours=1),
                                                        schedule.setting(conn).timezone) if b.root_id == root]
    assert tuple(kept) == ("transfusion", "BLOOD", "Blood transfusion (unit KPI001)", True)
    assert [(b.kind, b.outcome) for b in reported] == [("transfusion", "same_day")]


def test_a_reaction_noticed_after_the_unit_finished_is_recorded_escalated_and_listed_for_the_blood_bank(
        clients, db, hospital, elsewhere, patients, staff):
    api, patient = _api(hospital), patients["baraka"]
    request = _request(clients, hospital, patient, units=1)
    unit = _receive(clients, hospital, "LATE01", abo="O", rhd="negative")
    assert _reserve(clients, hospital, request, "LATE01").status_code == 200
    assert clients["lab"].post(f"{api}/blood/units/{unit['id']}/issue").status_code == 200
    now = dt.datetime.now(dt.UTC)
    started = clients["nurse"].post(f"{api}/patients/{patient}/transfusions", json={
        "unit_number": "LATE01", "checked_by_account_id": staff["doctor"], "vitals": VITALS,
        "started_at": (now - dt.timedelta(hours=4)).isoformat()})
    assert started.status_code == 201, started.text
    path = f"{api}/patients/{patient}/transfusions/{started.json()['id']}"
    late = {"reaction": "taco", "onset_at": (now - dt.timedelta(minutes=20)).isoformat(), "severity": "severe",
            "reaction_note": "Breathless, SpO2 88 %, crackles at both bases: furosemide 40 mg IV, sat up"}
    running = clients["nurse"].post(f"{path}/reactions", json=late)
    assert running.status_code == 409 and "still running" in running.json()["detail"], running.text
    ended = clients["nurse"].post(f"{path}/end", json={"volume_ml": 280, "reaction": "none", "vitals": VITALS,
                                                       "ended_at": (now - dt.timedelta(hours=2)).isoformat()})
    assert ended.status_code == 200 and ended.json()["status"] == "completed", ended.text

    before = _counts(db, hospital)
    for moment, words in ((now + dt.timedelta(hours=2), "still to come"),
                          (now - dt.timedelta(hours=5), "before the transfusion started")):
        refused = clients["nurse"].post(f"{path}/reactions", json={**late, "onset_at": moment.isoformat()})
        assert refused.status_code == 422 and refused.json()["field"] == "onset_at", refused.text
        assert words in refused.json()["detail"]
    for bad in ({"reaction": "none"}, {"severity": "mild"}, {"reaction_note": ""},
                {"onset_at": (now - dt.timedelta(minutes=20)).replace(tzinfo=None).isoformat()}):
        assert clients["nurse"].post(f"{path}/reactions", json={**late, **bad}).status_code == 422, bad
    # Another facility's nurse, on this facility's address or her own with this id; a guessed id: refused.
    assert clients["other_nurse"].post(f"{path}/reactions", json=late).status_code == 403
    there = path.replace(api, _api(elsewhere)).replace(str(patient), str(uuid.uuid4()))
    assert clients["other_nurse"].post(there, json=late).status_code in (403, 404)
    guessed = clients["nurse"].post(f"{api}/patients/{patient}/transfusions/{uuid.uuid4()}/reactions", json=late)
    assert guessed.status_code == 404, guessed.text
    assert clients["lab"].post(f"{path}/reactions", json=late).status_code == 403  # the bench records no reaction
    assert _counts(db, hospital) == before  # nothing written by any refusal

    recorded = clients["doctor"].post(f"{path}/reactions", json=late)
    assert recorded.status_code == 200, recorded.text
    shown = recorded.json()
    assert (shown["status"], shown["reaction"], shown["reaction_severity"], shown["volume_ml"]) == (
        "completed", "taco", "severe", 280)
    assert shown["reaction_onset_at"] and shown["severity_words"].startswith("Severe")
    twice = clients["nurse"].post(f"{path}/reactions", json={**late, "reaction": "febrile"})
    assert twice.status_code == 409 and "recorded on this transfusion already" in twice.json()["detail"]
    with db.tenant(hospital.slug) as conn:
        history = conn.execute(sa.text(
            "SELECT t.status, t.reaction FROM entry e JOIN transfusion t ON t.entry_id = e.id "
            "WHERE e.root_id = :r ORDER BY e.recorded_at, e.id"), {"r": shown["id"]}).all()
        task = conn.execute(sa.text(
            "SELECT t.title FROM entry e JOIN nursing_task t ON t.entry_id = e.id WHERE e.patient_id = :p "
            "AND t.code = 'escalation' AND t.source_kind = 'transfusion'"), {"p": patient}).scalar()
    # The completed version is kept beside the one with the reaction: superseded, never overwritten.
    assert ("completed", "none") in history and history[-1] == ("completed", "taco") and len(history) == 3
    assert task.startswith("TACO (transfusion-associated circulatory overload) after unit LATE01 was given")
    with db.tenant(hospital.slug) as conn:  # the reaction bills nothing more: the unit is charged once
        assert conn.execute(sa.text("SELECT count(*) FROM charge WHERE source_root_id = :r"),
                            {"r": shown["id"]}).scalar() == 1
    listed = clients["nurse"].get(f"{api}/patients/{patient}/transfusions").json()
    assert [(t["status"], t["reaction"]) for t in listed if t["unit_number"] == "LATE01"] == [("completed", "taco")]

    lab = Principal(account_id=uuid.UUID(clients["accounts"]["lab_technician"]), kind="machine",
                    display_name="Blood lab", tenant=hospital.slug, role="lab_technician")
    with db.tenant(hospital.slug) as conn:
        seen = transfusion.reactions(conn, lab, now=dt.datetime.now(dt.UTC))
    late_one = next(r for r in seen if r["unit_number"] == "LATE01")
    assert (late_one["status"], late_one["reaction_words"], late_one["family_name"]) == (
        "completed", "TACO (transfusion-associated circulatory overload)", "Baraka")
    logged = [e.event_type for e in audit.patient_access_log(db, hospital.slug, patient)]
    assert logged[-1] == "record.transfusion.read"  # the blood bank's list, on the patient's record
