"""Marking an order, a prescription and a result entered in error on the chart's Orders and Results tabs, over
in-process HTTP: each current one offers the form (`ui.entered_in_error`) to those who hold the API's permission
for it, posted to the chart's one handler (problems.py `retract_entry`); a refused reason comes back beside its
form on the tab it was sent from, writing nothing; the withdrawn record leaves the tab and what it drove (the
order's place among open orders, the result's on the chart) and is listed struck through with why
(`ui.withdrawn_list`); a guessed id, another patient's record, a kind the form does not withdraw and a role
without the permission are refused. Another facility's session on this route: tests/web/test_portal.py (FORMS)
and the observations' test in tests/layers/nursing/test_pages.py."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import (
    EncounterIn,
    MedicationIn,
    NoteIn,
    PatientIn,
    ResultIn,
    ServiceRequestIn,
)
from appliance.substrate import audit
from tests.e2e.history import CLINICAL_CONFIG, FBC, GLUCOSE, HB, XRAY
from tests.web.test_portal import post_form, principal_of, withdrawn_on_tab


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Riverside Orders Clinic", **CLINICAL_CONFIG)


@pytest.fixture(scope="module")
def author(person_factory, facility):
    return person_factory("clinician", facility.slug)


@pytest.fixture(scope="module")
def chart(db, facility, author) -> dict:
    """A patient in a visit today with a blood count and a chest X-ray ordered, a glucose resulted (its order
    answered), and amoxicillin prescribed; a second patient in a visit, with a note."""
    principal = principal_of(author, facility.slug)
    with db.tenant(facility.slug) as conn:
        seen = []
        for family in ("Mutua", "Wanjiru"):
            patient = service.register_patient(conn, principal, PatientIn(
                family_name=family, given_names="Jane", birth_date=dt.date(1985, 3, 2), sex="female"))
            visit = service.open_encounter(conn, principal, patient["id"], EncounterIn(
                encounter_class="outpatient", status="in_progress", reason="Fever"))
            seen.append((patient["id"], visit["id"]))
        (patient_id, visit_id), (other_id, _) = seen
        blood = service.order_test(conn, principal, patient_id, ServiceRequestIn(code=FBC, encounter_id=visit_id))
        film = service.order_test(conn, principal, patient_id, ServiceRequestIn(code=XRAY, encounter_id=visit_id))
        sugar = service.order_test(conn, principal, patient_id, ServiceRequestIn(code=GLUCOSE, encounter_id=visit_id))
        glucose = service.record_result(conn, principal, patient_id, ResultIn(
            code=GLUCOSE, value=Decimal("19.4"), service_request_id=sugar["id"]))
        [amoxicillin] = service.request_medication(conn, principal, patient_id, MedicationIn(
            drug="Amoxicillin", dose=Decimal(500), dose_unit="mg", route="oral", frequency="three times daily",
            encounter_id=visit_id)).placed
        note = service.write_note(conn, principal, other_id, NoteIn(title="Review", text="Seen and well."))
        haemoglobin = service.record_result(conn, principal, other_id, ResultIn(code=HB, value=Decimal("12.9")))
    return {"patient": patient_id, "other": other_id, "blood": blood["id"], "film": film["id"],
            "sugar": sugar["id"], "glucose": glucose["id"], "amoxicillin": amoxicillin["id"], "note": note["id"],
            "other_result": haemoglobin["id"]}


def path(facility, patient_id, rest: str = "") -> str:
    return f"/t/{facility.slug}/patients/{patient_id}{rest}"


def action(facility, patient_id, entry_id) -> str:
    return path(facility, patient_id, f"/entries/{entry_id}/entered-in-error")


def versions(db, facility, author, patient_id, entry_id) -> list[dict]:
    with db.tenant(facility.slug) as conn:
        return service.entry_history(conn, principal_of(author, facility.slug), patient_id, entry_id)


def test_an_order_and_a_prescription_are_withdrawn_from_the_orders_tab(signed_in, db, facility, author, chart):
    clinician = signed_in("clinician", facility.slug)
    orders = path(facility, chart["patient"], "/orders")
    page = clinician.get(orders).text
    for entry_id in ("blood", "film", "amoxicillin"):
        assert f'action="{action(facility, chart["patient"], chart[entry_id])}"' in page, entry_id

    # No reason: the tab again, the sentence beside the reason of that form (opened), nothing written.
    refused = post_form(clinician, orders, action(facility, chart["patient"], chart["blood"]), {"reason": ""})
    assert refused.status_code == 422, refused.text
    form = refused.text.split(f'id="retract-{chart["blood"]}"')[1].split("</form>")[0]
    assert 'class="field-error" id="reason-error"' in form and 'aria-invalid="true"' in form
    assert "<details open>" in refused.text.split(f'id="retract-{chart["blood"]}"')[0][-400:]
    assert len(versions(db, facility, author, chart["patient"], chart["blood"])) == 1

    withdrawn_on_tab(clinician, orders, chart["blood"], "ordered on the wrong patient",
                     action=action(facility, chart["patient"], chart["blood"]),
                     what=f'<span class="code">{FBC}</span> Full blood count')
    withdrawn_on_tab(clinician, orders, chart["amoxicillin"], "prescribed on the wrong patient",
                     action=action(facility, chart["patient"], chart["amoxicillin"]),
                     what="Amoxicillin 500 mg oral, three times daily")
    page = clinician.get(orders).text
    open_orders = page.split('id="open-title"')[1].split('class="withdrawn"')[0]
    assert "Full blood count" not in open_orders and "Chest X-ray" in open_orders
    active = page.split('id="meds-title"')[1].split("</section>")[0].split('class="withdrawn"')[0]
    assert "Amoxicillin" not in active and "No active prescriptions." in active
    chart_page = clinician.get(path(facility, chart["patient"], "/chart")).text
    assert "Amoxicillin" not in chart_page and "Full blood count" not in chart_page
    retracted = {e.event_type for e in audit.patient_access_log(db, facility.slug, chart["patient"])}
    assert {"record.service_request.retract", "record.medication_request.retract"} <= retracted


def test_a_result_is_withdrawn_from_the_results_tab_and_its_order_opens_again(signed_in, db, facility, author,
                                                                              chart):
    clinician = signed_in("clinician", facility.slug)
    results = path(facility, chart["patient"], "/results")
    page = clinician.get(results).text
    assert f'action="{action(facility, chart["patient"], chart["glucose"])}"' in page
    assert "Glucose" not in clinician.get(path(facility, chart["patient"], "/orders")).text.split(
        'id="open-title"')[1].split("</section>")[0], "answered by its result"

    refused = post_form(clinician, results, action(facility, chart["patient"], chart["glucose"]), {"reason": "x"})
    assert refused.status_code == 422 and 'id="reason-error"' in refused.text.split(
        f'id="retract-{chart["glucose"]}"')[1].split("</form>")[0]
    withdrawn_on_tab(clinician, results, chart["glucose"], "another patient's sample",
                     action=action(facility, chart["patient"], chart["glucose"]), what="Glucose 19.4 mmol/L")
    page = clinician.get(results).text
    assert "19.4" not in page.split('id="withdrawn-title"')[0], "no longer to review nor the trend's latest"
    chart_page = clinician.get(path(facility, chart["patient"], "/chart")).text
    assert "19.4" not in chart_page and "abnormal result" not in chart_page
    reopened = clinician.get(path(facility, chart["patient"], "/orders")).text.split('id="open-title"')[1]
    assert "Glucose" in reopened.split("</section>")[0], "its order waits for the right result"


def test_guessed_ids_another_patients_record_other_kinds_and_other_roles_are_refused(signed_in, db, facility,
                                                                                      author, chart):
    clinician = signed_in("clinician", facility.slug)
    orders = path(facility, chart["patient"], "/orders")
    for entry_id, status in ((uuid.uuid4(), 404), (chart["other_result"], 404)):
        refused = post_form(clinician, orders, action(facility, chart["patient"], entry_id), {"reason": "a guess"})
        assert refused.status_code == status, refused.text
    # A note is withdrawn on its own form (notes tab), which says what follows; not by this one.
    note = post_form(clinician, orders, action(facility, chart["other"], chart["note"]), {"reason": "wrong one"})
    assert note.status_code == 404 and "on this patient&#39;s chart" in note.text, note.text.split("<main")[1]
    assert len(versions(db, facility, author, chart["other"], chart["note"])) == 1
    assert len(versions(db, facility, author, chart["other"], chart["other_result"])) == 1

    nurse = signed_in("nurse", facility.slug)
    for tab in ("/orders", "/results"):
        assert "entered-in-error" not in nurse.get(path(facility, chart["patient"], tab)).text, tab
    forbidden = post_form(nurse, orders, action(facility, chart["patient"], chart["film"]), {"reason": "not mine"})
    assert forbidden.status_code == 403
    assert len(versions(db, facility, author, chart["patient"], chart["film"])) == 1
