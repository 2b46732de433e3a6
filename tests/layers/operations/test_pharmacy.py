"""The outpatient pharmacy: stock received and adjusted per batch, the queue of outpatient prescriptions,
dispensing that moves the record and the stock ledger together (a refused dispense writes nothing), the
quantity proposed when none is given, a dispense reversed on its day (stock back, charge credited, both
versions kept) and not after it, medicine brought back against a dispense (fit: back into its batch; not fit:
quarantined; never more than is still out), two pharmacists racing for the last units with real threads,
and every route refused to another facility's credentials and to guessed ids."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.schemas import EncounterIn, MedicationIn
from appliance.layers.operations import pharmacy
from appliance.layers.operations.errors import Conflict, Invalid
from appliance.substrate import record
from appliance.substrate.principal import Principal
from tests.conftest import FACILITY_ZONE, facility_today
from tests.layers.operations.conftest import new_patient

GUESS = str(uuid.uuid4())


def soon() -> dt.date:
    """An expiry two months off, by the facility's day."""
    return facility_today() + dt.timedelta(days=60)


def _day_start() -> dt.datetime:
    """The facility's midnight today, from which a dispense is of today."""
    return dt.datetime.combine(facility_today(), dt.time(), tzinfo=FACILITY_ZONE)


def later() -> dt.date:
    """An expiry past a year off, by the facility's day."""
    return facility_today() + dt.timedelta(days=400)


@pytest.fixture(scope="module")
def pharmacist(facility) -> Principal:
    return Principal(account_id=uuid.uuid4(), kind="staff", display_name="Pharmacist", tenant=facility.slug,
                     role="pharmacist")


@pytest.fixture(scope="module")
def clinician(facility) -> Principal:
    return Principal(account_id=uuid.uuid4(), kind="staff", display_name="Clinician", tenant=facility.slug,
                     role="clinician")


def _item(conn, pharmacist, drug: str, **fields) -> uuid.UUID:
    values = {"form": "capsule", "strength": Decimal(500), "strength_unit": "mg", "unit": "capsule",
              "reorder_level": Decimal(10)} | fields
    return pharmacy.create_item(conn, pharmacist, drug=drug, **values)["id"]


def _prescription(conn, clinician, drug: str, encounter_class: str | None = "outpatient",
                  frequency: str = "three times daily") -> tuple[uuid.UUID, uuid.UUID]:
    patient_id = new_patient(conn, clinician)
    visit = clinical.open_encounter(conn, clinician, patient_id, EncounterIn(encounter_class=encounter_class)) \
        if encounter_class else None
    placed = clinical.request_medication(conn, clinician, patient_id, MedicationIn(
        drug=drug, dose=Decimal(500), dose_unit="mg", route="oral", frequency=frequency,
        duration_days=5, encounter_id=visit["id"] if visit else None))
    return patient_id, placed.placed[0]["id"]


def _ledger(conn, item_id) -> int:
    return conn.execute(sa.text("SELECT count(*) FROM stock_movement WHERE item_id = :i"), {"i": item_id}).scalar()


def _dispenses(conn) -> int:
    return conn.execute(sa.text("SELECT count(*) FROM entry WHERE kind = 'dispense'")).scalar()


def test_stock_is_received_and_adjusted_per_batch_and_read_earliest_expiry_first(db, facility, pharmacist):
    with db.tenant(facility.slug) as conn:
        item = _item(conn, pharmacist, "Cotrimoxazole", reorder_level=Decimal(30))
        pharmacy.receive(conn, pharmacist, item, batch="LATE-1", expires_on=later(), quantity=Decimal(40),
                         reference="GRN-7", today=facility_today())
        pharmacy.receive(conn, pharmacist, item, batch="SOON-1", expires_on=soon(), quantity=Decimal(20),
                         reference="GRN-8", today=facility_today())
        pharmacy.adjust(conn, pharmacist, item, batch="SOON-1", quantity=Decimal(-2), reason="damaged", note=None)
        pharmacy.adjust(conn, pharmacist, item, batch="LATE-1", quantity=Decimal(1), reason="counted", note=None)
        found = pharmacy.item_stock(conn, item, facility_today())
        assert [(b["batch"], b["on_hand"]) for b in found["batches"]] == [("SOON-1", 18), ("LATE-1", 41)]
        assert found["on_hand"] == 59 and found["status"] == "ok"
        with pytest.raises(Invalid, match="expired on"):
            pharmacy.receive(conn, pharmacist, item, batch="OLD", expires_on=facility_today() - dt.timedelta(days=1),
                             quantity=Decimal(5), reference=None, today=facility_today())
        with pytest.raises(Conflict, match="received with expiry"):
            pharmacy.receive(conn, pharmacist, item, batch="SOON-1", expires_on=later(), quantity=Decimal(5),
                             reference=None, today=facility_today())
        with pytest.raises(Conflict, match="only 18 left in batch SOON-1") as short:
            pharmacy.adjust(conn, pharmacist, item, batch="SOON-1", quantity=Decimal(-19), reason="expired",
                            note=None)
        assert short.value.extra["on_hand"] == 18
        with pytest.raises(Invalid) as unknown:
            pharmacy.adjust(conn, pharmacist, item, batch="NOPE", quantity=Decimal(-1), reason="damaged", note=None)
        assert unknown.value.extra["field"] == "batch"
        assert _ledger(conn, item) == 4  # the four refusals wrote nothing
        pharmacy.adjust(conn, pharmacist, item, batch="LATE-1", quantity=Decimal(-41), reason="counted", note=None)
        assert pharmacy.item_stock(conn, item, facility_today())["status"] == "low"  # 18 left, reorder at 30
        empty = _item(conn, pharmacist, "Cotrimoxazole", form="oral suspension", strength=None, strength_unit=None,
                      unit="bottle")
        assert empty in {i["id"] for i in pharmacy.stock(conn, facility_today(), "out")}
        assert item in {i["id"] for i in pharmacy.stock(conn, facility_today(), "low")}
        with pytest.raises(Conflict, match="already stocks"):
            _item(conn, pharmacist, "cotrimoxazole", reorder_level=Decimal(5))


def test_the_queue_and_a_partial_then_a_full_dispense_over_http(token_client, db, facility, pharmacist, clinician):
    with db.tenant(facility.slug) as conn:
        item = _item(conn, pharmacist, "Amoxicillin")
        patient_id, rx = _prescription(conn, clinician, "amoxicillin")
        _, inpatient_rx = _prescription(conn, clinician, "Amoxicillin", encounter_class="inpatient")
        _, unlinked_rx = _prescription(conn, clinician, "Amoxicillin", encounter_class=None)  # after the visit
    api = token_client(facility.slug, role="pharmacist")
    base = f"/api/t/{facility.slug}/pharmacy"
    received = api.post(f"{base}/items/{item}/receipts", json={"batch": "B-LATE", "expires_on": later().isoformat(),
                                                                "quantity": 30, "reference": "GRN-1"})
    assert received.status_code == 201, received.text
    api.post(f"{base}/items/{item}/receipts", json={"batch": "B-SOON", "expires_on": soon().isoformat(),
                                                    "quantity": 10})
    waiting = {q["id"]: q for q in api.get(f"{base}/queue").json()}
    assert str(rx) in waiting and str(inpatient_rx) not in waiting  # the ward gives an inpatient's medicines
    assert waiting[str(unlinked_rx)]["encounter_id"] is None
    assert waiting[str(rx)]["items"][0]["on_hand"] == 40 and waiting[str(rx)]["today"] is True

    partial = api.post(f"{base}/dispenses", json={"medication_request_id": str(rx), "item_id": str(item),
                                                  "quantity": 6, "partial": True})
    assert partial.status_code == 201, partial.text
    assert partial.json()["batch"] == "B-SOON" and partial.json()["on_hand_after"] == 34  # earliest expiry first
    assert next(q for q in api.get(f"{base}/queue").json() if q["id"] == str(rx))["dispensed"] == 6

    with db.tenant(facility.slug) as conn:
        before = (_dispenses(conn), _ledger(conn, item))
    short = api.post(f"{base}/dispenses", json={"medication_request_id": str(rx), "item_id": str(item),
                                                "quantity": 9})
    assert short.status_code == 409 and short.json()["field"] == "quantity"
    assert "only 4 capsule" in short.json()["detail"] and short.json()["on_hand"] == 34
    beyond = api.post(f"{base}/dispenses", json={"medication_request_id": str(rx), "item_id": str(item),
                                                 "batch": "B-LATE", "quantity": 31})
    assert beyond.status_code == 409 and beyond.json()["batch_on_hand"] == 30
    with db.tenant(facility.slug) as conn:
        assert (_dispenses(conn), _ledger(conn, item)) == before  # refused whole: no entry, no ledger row

    full = api.post(f"{base}/dispenses", json={"medication_request_id": str(rx), "item_id": str(item),
                                               "batch": "B-LATE", "quantity": 9})
    assert full.status_code == 201 and full.json()["on_hand_after"] == 25
    assert str(rx) not in {q["id"] for q in api.get(f"{base}/queue").json()}
    again = api.post(f"{base}/dispenses", json={"medication_request_id": str(rx), "item_id": str(item),
                                                "quantity": 1})
    assert again.status_code == 409 and "in full" in again.json()["detail"]
    ward = api.post(f"{base}/dispenses", json={"medication_request_id": str(inpatient_rx), "item_id": str(item),
                                               "quantity": 1})
    assert ward.status_code == 409
    history = api.get(f"/api/t/{facility.slug}/patients/{patient_id}/dispenses").json()
    assert [(h["quantity"], h["batch"], h["partial"]) for h in history] == [(9, "B-LATE", False), (6, "B-SOON", True)]
    assert history[0]["item"] == "Amoxicillin 500 mg capsule"
    stock = api.get(f"{base}/items/{item}").json()
    assert [(b["batch"], b["on_hand"]) for b in stock["batches"]] == [("B-SOON", 4), ("B-LATE", 21)]
    with db.tenant(facility.slug) as conn:
        events = conn.execute(sa.text("SELECT event_type FROM audit_event WHERE patient_ref IS NOT NULL "
                                      "AND event_type LIKE 'record.dispense.%'")).scalars().all()
    assert {"record.dispense.create", "record.dispense.read"} <= set(events)


def test_the_api_proposes_the_rest_of_the_course_when_no_quantity_is_given(token_client, db, facility, pharmacist,
                                                                           clinician):
    """500 mg three times daily for 5 days, from 500 mg capsules, is 15 capsules: a quantity given is kept (6,
    part), none given hands over the rest (9); a course that cannot be counted (as needed) asks for one."""
    with db.tenant(facility.slug) as conn:
        item = _item(conn, pharmacist, "Cloxacillin")
        pharmacy.receive(conn, pharmacist, item, batch="CX1", expires_on=soon(), quantity=Decimal(40), reference=None,
                         today=facility_today())
        _, rx = _prescription(conn, clinician, "Cloxacillin")
        _, when_needed = _prescription(conn, clinician, "Cloxacillin", frequency="as needed")
    api = token_client(facility.slug, role="pharmacist")
    dispenses = f"/api/t/{facility.slug}/pharmacy/dispenses"
    given = api.post(dispenses, json={"medication_request_id": str(rx), "item_id": str(item), "quantity": 6,
                                      "partial": True})
    assert given.status_code == 201, given.text
    assert (given.json()["quantity"], given.json()["quantity_proposed"]) == (6, False)
    proposed = api.post(dispenses, json={"medication_request_id": str(rx), "item_id": str(item)})
    assert proposed.status_code == 201, proposed.text
    assert (proposed.json()["quantity"], proposed.json()["quantity_proposed"]) == (9, True)
    asked = api.post(dispenses, json={"medication_request_id": str(when_needed), "item_id": str(item)})
    assert asked.status_code == 422 and asked.json()["field"] == "quantity"
    assert asked.json()["detail"].startswith("give the quantity: the course of Cloxacillin 500 mg, as needed")
    with db.tenant(facility.slug) as conn:
        recorded = conn.execute(sa.text("SELECT quantity FROM dispense WHERE medication_request_id = :rx "
                                        "ORDER BY quantity"), {"rx": rx}).scalars().all()
        assert recorded == [6, 9] and pharmacy.item_stock(conn, item, facility_today())["on_hand"] == 25


def test_a_dispense_reversed_puts_the_stock_back_credits_the_charge_and_keeps_both_versions(
        token_client, db, facility, other_facility, pharmacist, clinician):
    with db.tenant(facility.slug) as conn:
        item = _item(conn, pharmacist, "Erythromycin")
        pharmacy.receive(conn, pharmacist, item, batch="E1", expires_on=soon(), quantity=Decimal(30), reference=None,
                         today=facility_today())
        patient_id, rx = _prescription(conn, clinician, "Erythromycin")
    api = token_client(facility.slug, role="pharmacist")
    base = f"/api/t/{facility.slug}/pharmacy"
    handed = api.post(f"{base}/dispenses", json={"medication_request_id": str(rx), "item_id": str(item),
                                                 "quantity": 15}).json()
    reversal = f"{base}/dispenses/{handed['id']}/reversal"
    for no_reason in ({}, {"reason": "   "}):
        refused = api.post(reversal, json=no_reason)
        assert refused.status_code == 422 and "reason" in refused.json()["detail"], refused.text
    assert api.post(f"{base}/dispenses/{GUESS}/reversal", json={"reason": "wrong patient"}).status_code == 404
    assert token_client(other_facility.slug, role="pharmacist").post(
        reversal, json={"reason": "wrong patient"}).status_code == 403
    theirs = token_client(other_facility.slug, role="pharmacist").post(
        f"/api/t/{other_facility.slug}/pharmacy/dispenses/{handed['id']}/reversal", json={"reason": "wrong patient"})
    assert theirs.status_code == 404
    assert token_client(facility.slug, role="clinician").post(reversal, json={"reason": "x"}).status_code == 403
    with db.tenant(facility.slug) as conn:
        assert record.is_current(conn, handed["id"]) and _ledger(conn, item) == 2  # the refusals wrote nothing

    done = api.post(reversal, json={"reason": "handed to the wrong patient"})
    assert done.status_code == 201, done.text
    assert (done.json()["quantity"], done.json()["batch"], done.json()["batch_on_hand_after"]) == (15, "E1", 30)
    assert api.get(f"{base}/items/{item}").json()["on_hand"] == 30
    assert str(rx) in {q["id"] for q in api.get(f"{base}/queue").json()}  # to be handed over again
    assert api.get(f"/api/t/{facility.slug}/patients/{patient_id}/dispenses").json() == []
    again = api.post(reversal, json={"reason": "twice"})
    assert again.status_code == 409 and "already been reversed" in again.json()["detail"]
    with db.tenant(facility.slug) as conn:
        versions = record.history(conn, uuid.UUID(handed["id"]))
        assert [(v.status, v.reason) for v in versions] == [("final", None),
                                                             ("entered_in_error", "handed to the wrong patient")]
        assert versions[0].detail["quantity"] == 15 and versions[1].id == uuid.UUID(done.json()["id"])
        ledger = conn.execute(sa.text("SELECT kind, quantity FROM stock_movement WHERE dispense_entry_id = :d "
                                      "ORDER BY recorded_at, kind"), {"d": handed["id"]}).all()
        assert sorted(ledger) == [("dispensed", -15), ("reversed", 15)]
        charges = conn.execute(sa.text("SELECT source_entry_id, quantity, reverses IS NOT NULL FROM charge "
                                       "WHERE source_root_id = :d ORDER BY quantity DESC"),
                               {"d": handed["id"]}).all()
        assert [(c[1], c[2]) for c in charges] == [(15, False), (-15, True)]  # billed, then credited
        assert charges[1][0] == versions[1].id  # the credit names the version that undid the dispense
        events = conn.execute(sa.text("SELECT count(*) FROM audit_event WHERE event_type = 'record.dispense.retract' "
                                      "AND patient_ref IS NOT NULL")).scalar()
        assert events == 1


def test_refusals_are_structured_and_name_the_field(token_client, db, facility, pharmacist, clinician):
    with db.tenant(facility.slug) as conn:
        item = _item(conn, pharmacist, "Metronidazole", form="tablet", strength=Decimal(400), unit="tablet")
        _, rx = _prescription(conn, clinician, "Paracetamol")
    api = token_client(facility.slug, role="pharmacist")
    base = f"/api/t/{facility.slug}/pharmacy"
    wrong_drug = api.post(f"{base}/dispenses", json={"medication_request_id": str(rx), "item_id": str(item),
                                                     "quantity": 1})
    assert wrong_drug.status_code == 422 and wrong_drug.json()["field"] == "item_id"
    assert "not Paracetamol" in wrong_drug.json()["detail"]
    assert api.post(f"{base}/dispenses", json={"medication_request_id": str(rx), "item_id": str(item),
                                               "quantity": 0}).status_code == 422
    assert api.post(f"{base}/items/{item}/adjustments", json={"batch": "X", "quantity": 0,
                                                              "reason": "counted"}).status_code == 422
    other = api.post(f"{base}/items/{item}/adjustments", json={"batch": "X", "quantity": -1, "reason": "other"})
    assert other.status_code == 422 and other.json()["field"] == "note"
    assert api.post(f"{base}/items", json={"drug": "Zinc", "form": "tablet", "unit": "tablet",
                                           "strength": 20}).json()["field"] == "strength_unit"
    assert api.get(f"{base}/items", params={"status": "gone"}).status_code in {400, 422}
    with db.tenant(facility.slug) as conn:
        assert _ledger(conn, item) == 0


def test_two_pharmacists_dispensing_the_last_units_at_once_one_lands(db, facility, pharmacist, clinician):
    """Each in its own thread and transaction; the item's row lock makes the second wait for the first's
    commit and then see the stock it left."""
    with db.tenant(facility.slug) as conn:
        item = _item(conn, pharmacist, "Fluconazole", strength=Decimal(150))
        pharmacy.receive(conn, pharmacist, item, batch="LAST", expires_on=soon(), quantity=Decimal(5), reference=None,
                         today=facility_today())
        prescriptions = [_prescription(conn, clinician, "Fluconazole")[1] for _ in range(2)]
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def dispense(rx):
        start.wait()
        try:
            with db.tenant(facility.slug) as conn:
                outcomes.append(pharmacy.dispense_medicine(conn, pharmacist, medication_request_id=rx, item_id=item,
                                                           quantity=Decimal(4), today=facility_today()))
        except Conflict as refused:
            outcomes.append(refused)

    threads = [threading.Thread(target=dispense, args=(rx,)) for rx in prescriptions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    landed = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(landed) == 1 and len(refused) == 1
    assert "only 1 capsule" in refused[0].detail
    with db.tenant(facility.slug) as conn:
        assert pharmacy.item_stock(conn, item, facility_today())["on_hand"] == 1
        assert conn.execute(sa.text("SELECT count(*) FROM dispense WHERE item_id = :i"), {"i": item}).scalar() == 1


def test_one_prescription_dispensed_from_two_items_at_once_is_handed_over_once(db, facility, pharmacist, clinician):
    """Two pharmacists fill the same prescription at once from two items of the drug (capsules and tablets):
    the item locks do not meet, the prescription's does, and the second finds it dispensed in full."""
    with db.tenant(facility.slug) as conn:
        items = [_item(conn, pharmacist, "Doxycycline", form=form, strength=Decimal(100), unit=form)
                 for form in ("capsule", "tablet")]
        for item in items:
            pharmacy.receive(conn, pharmacist, item, batch="D1", expires_on=soon(), quantity=Decimal(20),
                             reference=None, today=facility_today())
        _, rx = _prescription(conn, clinician, "Doxycycline")
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def dispense(item):
        start.wait()
        try:
            with db.tenant(facility.slug) as conn:
                outcomes.append(pharmacy.dispense_medicine(conn, pharmacist, medication_request_id=rx, item_id=item,
                                                           quantity=Decimal(10), today=facility_today()))
        except Conflict as refused:
            outcomes.append(refused)

    threads = [threading.Thread(target=dispense, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "dict"]
    assert "in full" in next(o for o in outcomes if isinstance(o, Conflict)).detail
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM dispense WHERE medication_request_id = :r"),
                            {"r": rx}).scalar() == 1


def test_another_facility_and_guessed_ids_are_refused_on_every_route(token_client, db, facility, other_facility,
                                                                     pharmacist, clinician):
    with db.tenant(facility.slug) as conn:
        item = _item(conn, pharmacist, "Ciprofloxacin")
        patient_id, rx = _prescription(conn, clinician, "Ciprofloxacin")
        pharmacy.receive(conn, pharmacist, item, batch="C1", expires_on=soon(), quantity=Decimal(10), reference=None,
                         today=facility_today())
    receipt = {"batch": "C2", "expires_on": soon().isoformat(), "quantity": 1}
    routes = [("GET", "/pharmacy/items", None), ("POST", "/pharmacy/items", {"drug": "X", "form": "tablet",
                                                                            "unit": "tablet"}),
              ("GET", f"/pharmacy/items/{item}", None), ("POST", f"/pharmacy/items/{item}/receipts", receipt),
              ("POST", f"/pharmacy/items/{item}/adjustments", {"batch": "C1", "quantity": -1, "reason": "damaged"}),
              ("GET", "/pharmacy/queue", None),
              ("POST", "/pharmacy/dispenses", {"medication_request_id": str(rx), "item_id": str(item), "quantity": 1}),
              ("GET", f"/patients/{patient_id}/dispenses", None),
              ("POST", f"/pharmacy/dispenses/{GUESS}/reversal", {"reason": "wrong patient"}),
              ("POST", f"/pharmacy/dispenses/{GUESS}/returns", {"quantity": 1, "condition": "fit",
                                                                "reason": "not needed"})]
    attacker = token_client(other_facility.slug, role="pharmacist")
    nobody = token_client(facility.slug, role="registrar")
    for method, path, body in routes:
        answer = attacker.request(method, f"/api/t/{facility.slug}{path}", json=body)
        assert answer.status_code == 403 and "not working in this facility" in answer.json()["detail"], path
        assert nobody.request(method, f"/api/t/{facility.slug}{path}", json=body).status_code == 403, path
    api = token_client(facility.slug, role="pharmacist")
    base = f"/api/t/{facility.slug}"
    assert api.get(f"{base}/pharmacy/items/{GUESS}").status_code == 404
    assert api.post(f"{base}/pharmacy/items/{GUESS}/receipts", json=receipt).status_code == 404
    assert api.post(f"{base}/pharmacy/items/{GUESS}/adjustments",
                    json={"batch": "C1", "quantity": -1, "reason": "damaged"}).status_code == 404
    assert api.post(f"{base}/pharmacy/dispenses", json={"medication_request_id": GUESS, "item_id": str(item),
                                                        "quantity": 1}).status_code == 404
    assert api.post(f"{base}/pharmacy/dispenses", json={"medication_request_id": str(rx), "item_id": GUESS,
                                                        "quantity": 1}).status_code == 404
    assert api.get(f"{base}/patients/{GUESS}/dispenses").status_code == 404
    assert api.post(f"{base}/pharmacy/dispenses/{GUESS}/returns", json={
        "quantity": 1, "condition": "fit", "reason": "not needed"}).status_code == 404
    with db.tenant(other_facility.slug) as conn:  # this facility's ids mean nothing there
        assert conn.execute(sa.text("SELECT count(*) FROM pharmacy_item")).scalar() == 0
    theirs = token_client(other_facility.slug, role="pharmacist")
    assert theirs.get(f"/api/t/{other_facility.slug}/pharmacy/items/{item}").status_code == 404
    assert theirs.post(f"/api/t/{other_facility.slug}/pharmacy/dispenses", json={
        "medication_request_id": str(rx), "item_id": str(item), "quantity": 1}).status_code == 404
    assert theirs.get(f"/api/t/{other_facility.slug}/patients/{patient_id}/dispenses").status_code == 404
    with db.tenant(facility.slug) as conn:
        assert _ledger(conn, item) == 1  # only the receipt


def test_the_pharmacys_log_lines_name_the_facility_outside_a_request(db, facility, pharmacist, clinician):
    """The demo generator receives and dispenses outside any request, where nothing binds the tenant: its lines
    said which item moved but not at which facility (CONVENTIONS: logs carry the tenant)."""
    from structlog.testing import capture_logs

    with capture_logs() as logged, db.tenant(facility.slug) as conn:
        item = _item(conn, pharmacist, "Nitrofurantoin")
        pharmacy.receive(conn, pharmacist, item, batch="N1", expires_on=soon(), quantity=Decimal(30), reference=None,
                         today=facility_today())
        _, rx = _prescription(conn, clinician, "Nitrofurantoin")
        handed = pharmacy.dispense_medicine(conn, pharmacist, medication_request_id=rx, item_id=item,
                                            quantity=Decimal(10), today=facility_today())
        pharmacy.reverse_dispense(conn, pharmacist, handed["id"], reason="wrong patient", today_start=_day_start())
    lines = {line["event"]: line for line in logged if line["event"].startswith("pharmacy_")}
    assert set(lines) == {"pharmacy_stock_received", "pharmacy_dispensed", "pharmacy_dispense_reversed"}
    assert all(line["tenant"] == facility.slug for line in lines.values()), lines


def _returns(conn) -> int:
    return conn.execute(sa.text("SELECT count(*) FROM entry WHERE kind = 'dispense_return'")).scalar()


def test_medicine_brought_back_goes_back_into_its_batch_only_when_fit_and_never_more_than_was_handed_over(
        token_client, db, facility, other_facility, pharmacist, clinician):
    """A patient brings back part of a dispense of three days ago: a return of more than is still out is a 422
    saying how much is, writing nothing; 4 fit capsules go back into their batch (ledger `returned`), 3 not fit
    are quarantined (`returned` then `quarantined`: out of stock); the last 3 brought back, nothing is left to
    return (409). The dispense of an earlier day is not reversed (409, naming the return), nor once some of it
    came back; the history lists each return. Another facility's pharmacist and a guessed id are refused."""
    with db.tenant(facility.slug) as conn:
        item = _item(conn, pharmacist, "Cefalexin")
        pharmacy.receive(conn, pharmacist, item, batch="CX1", expires_on=soon(), quantity=Decimal(40), reference=None,
                         today=facility_today())
        patient_id, rx = _prescription(conn, clinician, "Cefalexin")
        three_days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
        handed = pharmacy.dispense_medicine(conn, pharmacist, medication_request_id=rx, item_id=item,
                                            quantity=Decimal(10), today=facility_today(), at=three_days_ago)
    api = token_client(facility.slug, role="pharmacist")
    base = f"/api/t/{facility.slug}/pharmacy"
    returns = f"{base}/dispenses/{handed['id']}/returns"

    late = api.post(f"{base}/dispenses/{handed['id']}/reversal", json={"reason": "wrong patient"})
    assert late.status_code == 409, late.text
    assert "only a dispense of today is reversed" in late.json()["detail"]
    assert "return of its whole quantity with the reason 'wrong patient'" in late.json()["detail"]

    too_many = api.post(returns, json={"quantity": 11, "condition": "fit", "reason": "not needed"})
    assert too_many.status_code == 422 and too_many.json()["field"] == "quantity", too_many.text
    assert too_many.json()["detail"].startswith("only 10 capsules of this dispense are still with the patient")
    for refused in ({"quantity": 1, "condition": "fit", "reason": " "},
                    {"quantity": 1, "condition": "broken", "reason": "x"}, {"quantity": 0, "condition": "fit",
                                                                             "reason": "x"}):
        assert api.post(returns, json=refused).status_code == 422, refused
    assert token_client(other_facility.slug, role="pharmacist").post(
        returns, json={"quantity": 1, "condition": "fit", "reason": "x"}).status_code == 403
    assert token_client(other_facility.slug, role="pharmacist").post(
        f"/api/t/{other_facility.slug}/pharmacy/dispenses/{handed['id']}/returns",
        json={"quantity": 1, "condition": "fit", "reason": "x"}).status_code == 404
    assert token_client(facility.slug, role="clinician").post(
        returns, json={"quantity": 1, "condition": "fit", "reason": "x"}).status_code == 403
    with db.tenant(facility.slug) as conn:
        assert _returns(conn) == 0 and _ledger(conn, item) == 2  # the refusals wrote nothing
        assert record.is_current(conn, handed["id"])

    fit = api.post(returns, json={"quantity": 4, "condition": "fit", "reason": "course stopped by the doctor"})
    assert fit.status_code == 201, fit.text
    assert (fit.json()["quantity"], fit.json()["still_out"], fit.json()["batch_on_hand_after"]) == (4, 6, 34)
    assert api.get(f"{base}/items/{item}").json()["on_hand"] == 34
    spoilt = api.post(returns, json={"quantity": 3, "condition": "not_fit", "reason": "blister opened"})
    assert spoilt.status_code == 201 and spoilt.json()["still_out"] == 3, spoilt.text
    assert api.get(f"{base}/items/{item}").json()["on_hand"] == 34  # quarantined, not back in stock
    over = api.post(returns, json={"quantity": 4, "condition": "fit", "reason": "not needed"})
    assert over.status_code == 422 and "only 3 capsules" in over.json()["detail"]
    assert "4 brought back before" not in over.json()["detail"] and "7 brought back before" in over.json()["detail"]
    partly = api.post(f"{base}/dispenses/{handed['id']}/reversal", json={"reason": "x"})
    assert partly.status_code == 409
    assert api.post(returns, json={"quantity": 3, "condition": "fit", "reason": "not needed"}).status_code == 201
    none_left = api.post(returns, json={"quantity": 1, "condition": "fit", "reason": "not needed"})
    assert none_left.status_code == 409 and "brought back already" in none_left.json()["detail"]
    assert api.get(f"{base}/items/{item}").json()["on_hand"] == 37

    [history] = api.get(f"/api/t/{facility.slug}/patients/{patient_id}/dispenses").json()
    assert history["still_out"] == 0
    assert [(r["quantity"], r["condition"], r["reason"]) for r in history["returns"]] == [
        (4, "fit", "course stopped by the doctor"), (3, "not_fit", "blister opened"), (3, "fit", "not needed")]
    with db.tenant(facility.slug) as conn:
        ledger = conn.execute(sa.text("SELECT kind, quantity FROM stock_movement WHERE dispense_entry_id = :d "
                                      "ORDER BY recorded_at, kind DESC"), {"d": handed["id"]}).all()
        assert sorted(ledger) == sorted([("dispensed", -10), ("returned", 4), ("returned", 3), ("quarantined", -3),
                                         ("returned", 3)])
        assert record.is_current(conn, handed["id"])  # the dispense is never rewritten
        events = conn.execute(sa.text("SELECT count(*) FROM audit_event WHERE event_type = "
                                      "'record.dispense_return.create' AND patient_ref IS NOT NULL")).scalar()
        assert events == 3


def test_a_batch_expired_since_the_dispense_is_not_restocked(db, facility, pharmacist, clinician):
    """Medicine of a batch that has expired since it was handed over cannot go back on the shelf: returned as fit
    it is refused (422, saying to record it as not fit), and as not fit it is quarantined."""
    with db.tenant(facility.slug) as conn:
        item = _item(conn, pharmacist, "Clarithromycin")
        pharmacy.receive(conn, pharmacist, item, batch="CL1", expires_on=soon(), quantity=Decimal(10), reference=None,
                         today=facility_today())
        _, rx = _prescription(conn, clinician, "Clarithromycin")
        handed = pharmacy.dispense_medicine(conn, pharmacist, medication_request_id=rx, item_id=item,
                                            quantity=Decimal(5), today=facility_today())
        after_expiry = soon() + dt.timedelta(days=1)
        with pytest.raises(Invalid, match=r"expired on .*record the return as not fit"):
            pharmacy.return_dispense(conn, pharmacist, handed["id"], quantity=Decimal(5), condition="fit",
                                     reason="not needed", today=after_expiry)
        kept = pharmacy.return_dispense(conn, pharmacist, handed["id"], quantity=Decimal(5), condition="not_fit",
                                        reason="not needed", today=after_expiry)
        assert kept["batch_on_hand_after"] == 5
        assert pharmacy.item_stock(conn, item, facility_today())["on_hand"] == 5
        with pytest.raises(Conflict, match="brought back already, which a reversal would count twice"):
            pharmacy.reverse_dispense(conn, pharmacist, handed["id"], reason="x", today_start=_day_start())
