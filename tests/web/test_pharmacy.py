"""The pharmacy pages over real HTTP: a pharmacist lands on the queue, receives and adjusts stock on the stock
page, dispenses from the queue with the course's quantity proposed, is refused as a page when the stock is
short (nothing written), and the dispense shows on the patient's chart; a dispense recorded by mistake is
reversed from the day's list under the queue, with a reason, and one of an earlier day is corrected by a
return found by the patient's MRN (the page says so); another facility's session and guessed ids are
refused."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.schemas import AllergyIn, EncounterIn, MedicationIn
from appliance.layers.operations import pharmacy
from appliance.substrate import audit
from appliance.substrate.principal import Principal
from tests.layers.operations.conftest import OPERATIONS_CONFIG, new_patient
from tests.web.test_operations import post_form

SOON = dt.date.today() + dt.timedelta(days=90)


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Pharmacy Pages Facility", **OPERATIONS_CONFIG)


@pytest.fixture(scope="module")
def other_facility(tenant_factory):
    return tenant_factory(name="Another Pharmacy", **OPERATIONS_CONFIG)


def _prescribed(db, facility, clinician, drug: str = "Amoxicillin", *,
                in_visit: bool = True) -> tuple[uuid.UUID, uuid.UUID]:
    acting = Principal(account_id=clinician.person.account_id, kind="staff", display_name="Doctor",
                       tenant=facility.slug, role="clinician")
    with db.tenant(facility.slug) as conn:
        patient_id = new_patient(conn, acting, family_name="Njeri", given_names="Wanjiku")
        visit = clinical.open_encounter(conn, acting, patient_id, EncounterIn(encounter_class="outpatient"))
        placed = clinical.request_medication(conn, acting, patient_id, MedicationIn(
            drug=drug, dose=Decimal(500), dose_unit="mg", route="oral", frequency="three times daily",
            duration_days=5, encounter_id=visit["id"] if in_visit else None))
    return patient_id, placed.placed[0]["id"]


def test_a_pharmacist_stocks_dispenses_and_the_chart_shows_it(signed_in, db, facility):
    pharmacist, clinician = signed_in("pharmacist", facility.slug), signed_in("clinician", facility.slug)
    base = f"/t/{facility.slug}"
    assert pharmacist.get(base, follow_redirects=False).headers["location"] == f"{base}/pharmacy"
    stock = f"{base}/pharmacy/stock"
    added = post_form(pharmacist, stock, f"{base}/pharmacy/items", {
        "drug": "Amoxicillin", "form": "capsule", "strength": "500", "strength_unit": "mg", "unit": "capsule",
        "reorder_level": "20"})
    assert added.status_code == 303 and added.headers["location"] == f"{stock}?done=item-added"
    with db.tenant(facility.slug) as conn:
        item_id = conn.execute(sa.text("SELECT id FROM pharmacy_item WHERE drug = 'Amoxicillin'")).scalar()
    received = post_form(pharmacist, stock, f"{base}/pharmacy/items/{item_id}/receipts", {
        "batch": "AMX-1", "expires_on": SOON.isoformat(), "quantity": "20", "reference": "GRN-44"})
    assert received.status_code == 303
    adjusted = post_form(pharmacist, stock, f"{base}/pharmacy/items/{item_id}/adjustments", {
        "batch": "AMX-1", "quantity": "-2", "reason": "damaged"})
    assert adjusted.status_code == 303
    page = pharmacist.get(stock)
    assert "18 capsule" in page.text and "Low: reorder" in page.text and 'id="low-list"' in page.text

    patient_id, rx = _prescribed(db, facility, clinician)
    queue = pharmacist.get(f"{base}/pharmacy")
    assert "NJERI" in queue.text and f'id="queue-{rx}"' in queue.text
    assert 'name="quantity" type="number" min="0.001" step="any" required\n             value="15"' in queue.text
    with db.tenant(facility.slug) as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM stock_movement")).scalar()
    short = post_form(pharmacist, f"{base}/pharmacy", f"{base}/pharmacy/dispenses", {
        "medication_request_id": str(rx), "item_id": str(item_id), "quantity": "30"})
    assert short.status_code == 409 and "only 18 capsule" in short.text.lower()
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM stock_movement")).scalar() == before
    junk = post_form(pharmacist, f"{base}/pharmacy", f"{base}/pharmacy/dispenses", {
        "medication_request_id": str(rx), "item_id": str(item_id), "quantity": "lots"})
    assert junk.status_code == 422 and "Quantity" in junk.text
    done = post_form(pharmacist, f"{base}/pharmacy", f"{base}/pharmacy/dispenses", {
        "medication_request_id": str(rx), "item_id": str(item_id), "quantity": "15"})
    assert done.status_code == 303 and done.headers["location"] == f"{base}/pharmacy?done=dispensed"
    assert f'id="queue-{rx}"' not in pharmacist.get(f"{base}/pharmacy").text

    chart = clinician.get(f"{base}/patients/{patient_id}/chart")
    assert f"/patients/{patient_id}/dispensing" in chart.text  # the chart's tab
    history = clinician.get(f"{base}/patients/{patient_id}/dispensing")
    assert history.status_code == 200
    assert "15 capsule of Amoxicillin 500 mg capsule" in history.text and "AMX-1" in history.text
    assert "Dispensed 15 capsule of Amoxicillin 500 mg capsule" in clinician.get(
        f"{base}/patients/{patient_id}/timeline").text
    assert pharmacist.get(f"{base}/patients/{patient_id}/dispensing").status_code == 403  # not the pharmacist's


def test_short_of_the_course_the_queue_proposes_what_is_on_hand_as_part_of_it(signed_in, db, facility):
    """15 tablets make the course, 10 are on hand: the form proposes 10 with 'part only' ticked and says why,
    instead of proposing 15 for the dispense to refuse; handed over, the prescription stays on the queue, saying
    how to go on with none on hand."""
    pharmacist, clinician = signed_in("pharmacist", facility.slug), signed_in("clinician", facility.slug)
    base = f"/t/{facility.slug}"
    stock = f"{base}/pharmacy/stock"
    post_form(pharmacist, stock, f"{base}/pharmacy/items", {
        "drug": "Paracetamol", "form": "tablet", "strength": "500", "strength_unit": "mg", "unit": "tablet",
        "reorder_level": "5"})
    with db.tenant(facility.slug) as conn:
        item_id = conn.execute(sa.text("SELECT id FROM pharmacy_item WHERE drug = 'Paracetamol'")).scalar()
    post_form(pharmacist, stock, f"{base}/pharmacy/items/{item_id}/receipts", {
        "batch": "PCM-1", "expires_on": SOON.isoformat(), "quantity": "10", "reference": "GRN-45"})
    _, rx = _prescribed(db, facility, clinician, drug="Paracetamol")
    queue = pharmacist.get(f"{base}/pharmacy").text
    form = queue.split(f'id="dispense-{rx}-{item_id}"')[1].split("</form>")[0]
    assert 'required\n             value="10"' in form
    assert "The rest of the course is 15 tablets; only 10 on hand" in form
    assert 'name="partial" value="yes" checked' in form
    done = post_form(pharmacist, f"{base}/pharmacy", f"{base}/pharmacy/dispenses", {
        "medication_request_id": str(rx), "item_id": str(item_id), "quantity": "10", "partial": "yes"})
    assert done.status_code == 303, done.text
    after = pharmacist.get(f"{base}/pharmacy").text
    assert f'id="queue-{rx}"' in after  # 5 still to come
    # The count says its unit, in the plural, and of what course: "Dispensed so far: 10" said neither.
    assert f'<p class="muted" id="dispensed-{rx}">Dispensed so far: 10 of 15 tablets</p>' in after
    # None left to give: the row says what to do instead of showing a count alone and no form.
    assert f'id="none-on-hand-{rx}-{item_id}"' in after and f'id="dispense-{rx}-{item_id}"' not in after


def test_a_prescription_written_after_the_visit_ended_reaches_the_queue_and_is_dispensed(signed_in, db, facility):
    """A prescription linked to no encounter (written once the visit had ended) was left off the queue, which
    read outpatient visits' prescriptions only, and the patient at the window was not on it."""
    pharmacist, clinician = signed_in("pharmacist", facility.slug), signed_in("clinician", facility.slug)
    base = f"/t/{facility.slug}"
    _, rx = _prescribed(db, facility, clinician, drug="Cefalexin", in_visit=False)
    with db.tenant(facility.slug) as conn:
        acting = Principal(account_id=pharmacist.person.account_id, kind="staff", display_name="Pharmacist",
                           tenant=facility.slug, role="pharmacist")
        item_id = pharmacy.create_item(conn, acting, drug="Cefalexin", form="capsule", strength=Decimal(500),
                                       strength_unit="mg", unit="capsule")["id"]
        pharmacy.receive(conn, acting, item_id, batch="CFX-1", expires_on=SOON, quantity=Decimal(20), reference=None,
                         today=dt.date.today())
    assert f'id="dispense-{rx}-{item_id}"' in pharmacist.get(f"{base}/pharmacy").text
    handed = post_form(pharmacist, f"{base}/pharmacy", f"{base}/pharmacy/dispenses", {
        "medication_request_id": str(rx), "item_id": str(item_id), "quantity": "15"})
    assert handed.status_code == 303 and handed.headers["location"] == f"{base}/pharmacy?done=dispensed"
    assert f'id="queue-{rx}"' not in pharmacist.get(f"{base}/pharmacy").text


def test_a_dispense_recorded_by_mistake_is_reversed_from_the_queue_page(signed_in, db, facility):
    pharmacist, clinician = signed_in("pharmacist", facility.slug), signed_in("clinician", facility.slug)
    base = f"/t/{facility.slug}"
    patient_id, rx = _prescribed(db, facility, clinician, drug="Flucloxacillin")
    with db.tenant(facility.slug) as conn:
        acting = Principal(account_id=pharmacist.person.account_id, kind="staff", display_name="Pharmacist",
                           tenant=facility.slug, role="pharmacist")
        item_id = pharmacy.create_item(conn, acting, drug="Flucloxacillin", form="capsule", strength=Decimal(500),
                                       strength_unit="mg", unit="capsule")["id"]
        pharmacy.receive(conn, acting, item_id, batch="FLX-1", expires_on=SOON, quantity=Decimal(20), reference=None,
                         today=dt.date.today())
    handed = post_form(pharmacist, f"{base}/pharmacy", f"{base}/pharmacy/dispenses", {
        "medication_request_id": str(rx), "item_id": str(item_id), "quantity": "15"})
    assert handed.status_code == 303
    with db.tenant(facility.slug) as conn:
        dispense_id = conn.execute(sa.text("SELECT entry_id FROM dispense WHERE medication_request_id = :rx"),
                                   {"rx": rx}).scalar()
    queue = pharmacist.get(f"{base}/pharmacy")
    assert f'id="handed-{dispense_id}"' in queue.text and "15 capsules of Flucloxacillin 500 mg capsule" in queue.text
    assert f'action="{base}/pharmacy/dispenses/{dispense_id}/reversal"' in queue.text
    reversal = f"{base}/pharmacy/dispenses/{dispense_id}/reversal"
    unsaid = post_form(pharmacist, f"{base}/pharmacy", reversal, {"reason": ""})
    assert unsaid.status_code == 422 and "Reason" in unsaid.text
    done = post_form(pharmacist, f"{base}/pharmacy", reversal, {"reason": "the patient left without it"})
    assert done.status_code == 303 and done.headers["location"] == f"{base}/pharmacy?done=reversed"
    after = pharmacist.get(done.headers["location"])
    assert "Dispense reversed" in after.text and f'id="queue-{rx}"' in after.text  # back on the queue
    assert f'id="handed-{dispense_id}"' not in after.text
    twice = post_form(pharmacist, f"{base}/pharmacy", reversal, {"reason": "again"})
    assert twice.status_code == 409 and "already been reversed" in twice.text
    with db.tenant(facility.slug) as conn:
        assert pharmacy.item_stock(conn, item_id, dt.date.today())["on_hand"] == 20
    assert "Flucloxacillin" not in clinician.get(f"{base}/patients/{patient_id}/dispensing").text


def test_a_prescription_matching_an_allergy_recorded_after_it_is_flagged_on_the_queue(signed_in, db, facility):
    """The allergy check runs at prescribing: a penicillin allergy recorded after amoxicillin was written reached the
    counter with nothing said. The queue now names the match beside the drug, and the pharmacist's read of the
    patient's allergies is on the patient's audit trail; a prescription matching nothing says nothing."""
    pharmacist, clinician = signed_in("pharmacist", facility.slug), signed_in("clinician", facility.slug)
    patient_id, rx = _prescribed(db, facility, clinician, drug="Amoxicillin")
    _, unmatched = _prescribed(db, facility, clinician, drug="Metformin")
    doctor = Principal(account_id=clinician.person.account_id, kind="staff", display_name="Doctor",
                       tenant=facility.slug, role="clinician")
    with db.tenant(facility.slug) as conn:
        clinical.add_allergy(conn, doctor, patient_id, AllergyIn(substance="Penicillin", reaction="rash"))
    since = dt.datetime.now(dt.UTC)
    queue = pharmacist.get(f"/t/{facility.slug}/pharmacy")
    assert queue.status_code == 200
    flagged = queue.text.split(f'id="queue-{rx}"')[1].split("</section>")[0]
    assert f'id="allergy-{rx}"' in flagged and "Penicillin" in flagged
    assert "Check with the prescriber before handing it over." in flagged
    assert f'id="allergy-{unmatched}"' not in queue.text
    read = [e["event"] for e in audit.read_events(db, facility.slug, event_type="record.allergy.read", since=since)]
    assert any(f"Patient/{patient_id}" in str(e["entity"]) for e in read)


def test_another_facility_and_guessed_ids_are_refused(signed_in, db, facility, other_facility):
    intruder = signed_in("pharmacist", other_facility.slug)
    own = intruder.get(f"/t/{other_facility.slug}/pharmacy/stock")
    assert own.status_code == 200
    from tests.web.test_auth import csrf_token

    token = csrf_token(own.text)
    base = f"/t/{facility.slug}"
    for path in ["/pharmacy", "/pharmacy/stock", "/pharmacy/returns?mrn=1"]:
        assert intruder.get(base + path).status_code == 403
    guess = uuid.uuid4()
    for path in ["/pharmacy/dispenses", "/pharmacy/items", f"/pharmacy/items/{guess}/receipts",
                 f"/pharmacy/items/{guess}/adjustments", f"/pharmacy/dispenses/{guess}/reversal",
                 f"/pharmacy/dispenses/{guess}/returns"]:
        assert intruder.post(base + path, data={"_csrf_token": token}, follow_redirects=False).status_code == 403
    pharmacist = signed_in("pharmacist", facility.slug)
    stock = f"{base}/pharmacy/stock"
    missing = post_form(pharmacist, stock, f"{base}/pharmacy/items/{guess}/receipts", {
        "batch": "X", "expires_on": SOON.isoformat(), "quantity": "1"})
    assert missing.status_code == 404
    assert post_form(pharmacist, f"{base}/pharmacy", f"{base}/pharmacy/dispenses/{guess}/reversal",
                     {"reason": "wrong patient"}).status_code == 404
    assert post_form(pharmacist, f"{base}/pharmacy", f"{base}/pharmacy/dispenses/{guess}/returns",
                     {"quantity": "1", "condition": "fit", "reason": "not needed"}).status_code == 404
    clinician = signed_in("clinician", facility.slug)
    assert clinician.get(f"{base}/patients/{guess}/dispensing").status_code == 404
    assert clinician.get(f"{base}/pharmacy").status_code == 403
    bed_manager = signed_in("bed_manager", facility.slug)  # operations staff, but not the pharmacy's
    assert bed_manager.get(f"{base}/pharmacy").status_code == 403
    assert bed_manager.get(f"{base}/beds").status_code == 200


def test_medicine_brought_back_days_later_is_recorded_from_the_returns_page(signed_in, db, facility):
    """A dispense of three days ago is not on the day's list: the queue says a dispense is reversed only on its
    day and how one recorded on the wrong patient is corrected; the pharmacist finds it by the patient's MRN,
    is refused (422, the sentence on the page, nothing written) returning more than is still out, records 5 fit
    capsules back, and the return shows on the returns page and on the patient's chart."""
    pharmacist, clinician = signed_in("pharmacist", facility.slug), signed_in("clinician", facility.slug)
    base = f"/t/{facility.slug}"
    patient_id, rx = _prescribed(db, facility, clinician, drug="Doxycycline")
    with db.tenant(facility.slug) as conn:
        acting = Principal(account_id=pharmacist.person.account_id, kind="staff", display_name="Pharmacist",
                           tenant=facility.slug, role="pharmacist")
        item_id = pharmacy.create_item(conn, acting, drug="Doxycycline", form="capsule", strength=Decimal(100),
                                       strength_unit="mg", unit="capsule")["id"]
        pharmacy.receive(conn, acting, item_id, batch="DOX-1", expires_on=SOON, quantity=Decimal(30), reference=None,
                         today=dt.date.today())
        handed = pharmacy.dispense_medicine(conn, acting, medication_request_id=rx, item_id=item_id,
                                            quantity=Decimal(14), today=dt.date.today(),
                                            at=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
        mrn = conn.execute(sa.text("SELECT mrn FROM patient WHERE id = :p"), {"p": patient_id}).scalar()
    queue = pharmacist.get(f"{base}/pharmacy")
    assert f'id="handed-{handed["id"]}"' not in queue.text
    assert 'id="reversal-rule"' in queue.text and "reversed only on its day" in queue.text
    assert "return of its whole quantity with the reason “wrong patient”" in queue.text
    assert f'action="{base}/pharmacy/returns"' in queue.text

    found = pharmacist.get(f"{base}/pharmacy/returns", params={"mrn": mrn})
    assert found.status_code == 200 and f'id="dispense-{handed["id"]}"' in found.text
    assert "14 capsules of Doxycycline 100 mg capsule" in found.text and 'id="wrong-patient-rule"' in found.text
    returns = f"{base}/pharmacy/dispenses/{handed['id']}/returns"
    page_of = f"{base}/pharmacy/returns?mrn={mrn}"
    too_many = post_form(pharmacist, page_of, returns, {"mrn": mrn, "quantity": "15", "condition": "fit",
                                                        "reason": "not needed"})
    assert too_many.status_code == 422 and "Only 14 capsules of this dispense are still with the patient" in \
        too_many.text and f'id="dispense-{handed["id"]}"' in too_many.text
    with db.tenant(facility.slug) as conn:
        assert pharmacy.item_stock(conn, item_id, dt.date.today())["on_hand"] == 16
    done = post_form(pharmacist, page_of, returns, {"mrn": mrn, "quantity": "5", "condition": "fit",
                                                    "reason": "course stopped by the doctor"})
    assert done.status_code == 303 and done.headers["location"] == f"{page_of}&done=returned"
    after = pharmacist.get(done.headers["location"])
    assert "Return recorded" in after.text and "Brought back 5 capsules" in after.text
    assert "9 still out" in after.text
    with db.tenant(facility.slug) as conn:
        assert pharmacy.item_stock(conn, item_id, dt.date.today())["on_hand"] == 21
    chart = clinician.get(f"{base}/patients/{patient_id}/dispensing")
    assert "Brought back 5 capsule" in chart.text and "course stopped by the doctor" in chart.text
    nobody = pharmacist.get(f"{base}/pharmacy/returns", params={"mrn": "no-such-mrn"})
    assert nobody.status_code == 200 and 'id="nothing-to-return"' in nobody.text
