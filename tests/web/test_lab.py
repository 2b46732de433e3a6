"""The laboratory bench's page over real HTTP (appliance/web/lab.py): a lab technician lands on the worklist,
receives a specimen with its button, is refused as a page beside the component at fault (nothing written)
and then records a panel's results, and corrects one; another facility's lab technician and guessed ids are
refused on the page and every form."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import EncounterIn, ServiceRequestIn
from appliance.substrate.principal import Principal
from tests.layers.clinical.conftest import CLINICAL_CONFIG, new_patient
from tests.web.test_auth import csrf_token
from tests.web.test_operations import post_form

FBC, HB, WCC, PLT = "58410-2", "718-7", "6690-2", "777-3"


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Lab Pages Facility", **CLINICAL_CONFIG)


@pytest.fixture(scope="module")
def other_facility(tenant_factory):
    return tenant_factory(name="Another Laboratory", **CLINICAL_CONFIG)


@pytest.fixture(scope="module")
def blood_count(db, facility) -> uuid.UUID:
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Orders", tenant=facility.slug,
                       role="clinician")
    with db.tenant(facility.slug) as conn:
        patient = new_patient(conn, doctor, family_name="Wafula", given_names="Esther")
        visit = service.open_encounter(conn, doctor, patient["id"], EncounterIn(encounter_class="outpatient"))
        ordered = service.order_test(conn, doctor, patient["id"], ServiceRequestIn(code=FBC, encounter_id=visit["id"]))
    return ordered["id"]


@pytest.fixture(scope="module")
def doctor(facility) -> Principal:
    return Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Orders", tenant=facility.slug,
                     role="clinician")


def _ordered(db, facility, doctor: Principal, family: str, given: str, *codes: str) -> tuple[uuid.UUID, list]:
    """A new patient with `codes` ordered, none of them received yet: the patient's id and each order's."""
    with db.tenant(facility.slug) as conn:
        patient = new_patient(conn, doctor, family_name=family, given_names=given)
        return patient["id"], [service.order_test(conn, doctor, patient["id"], ServiceRequestIn(code=code))["id"]
                               for code in codes]


def test_a_specimen_that_cannot_be_tested_is_rejected_from_the_page(signed_in, db, facility, doctor):
    """'Reject the specimen' under a received one: a blank reason refused beside its field, then the order is back
    awaiting a specimen, the page says the ward is asked for another."""
    _, (order,) = _ordered(db, facility, doctor, "Kiprop", "Ruth", FBC)
    client = signed_in("lab_technician", facility.slug)
    base = f"/t/{facility.slug}"
    assert post_form(client, f"{base}/lab", f"{base}/lab/orders/{order}/receipt", {"note": ""}).status_code == 303
    page = client.get(f"{base}/lab?state=specimen_received")
    assert f'action="{base}/lab/orders/{order}/rejection"' in page.text
    unsaid = post_form(client, f"{base}/lab", f"{base}/lab/orders/{order}/rejection", {"reason": ""})
    assert unsaid.status_code == 422 and f'id="reject-{order}-reason"' in unsaid.text
    assert "Give at least 3 characters" in unsaid.text
    rejected = post_form(client, f"{base}/lab", f"{base}/lab/orders/{order}/rejection", {"reason": "clotted"})
    assert rejected.status_code == 303 and rejected.headers["location"] == f"{base}/lab?done=specimen-rejected"
    after = client.get(rejected.headers["location"]).text
    assert "the ward is asked to collect it" in after
    assert after.split(f'id="state-{order}">')[1].startswith("Awaiting specimen")


def test_a_lab_technician_receives_a_specimen_and_records_a_panel_from_the_page(signed_in, db, facility, blood_count):
    client = signed_in("lab_technician", facility.slug)
    base = f"/t/{facility.slug}"
    assert client.get(base, follow_redirects=False).headers["location"] == f"{base}/lab"
    listed = client.get(f"{base}/lab")
    assert listed.status_code == 200 and "WAFULA, Esther" in listed.text and 'href="/t/' + facility.slug + '/patients' \
        not in listed.text  # no way into a chart from the bench
    received = post_form(client, f"{base}/lab?state=awaiting_specimen", f"{base}/lab/orders/{blood_count}/receipt",
                         {"note": "", "state": "awaiting_specimen"})
    assert received.status_code == 303  # back to the tab it was sent from, the next specimen's
    assert received.headers["location"] == f"{base}/lab?done=specimen-received&state=awaiting_specimen"
    page = client.get(f"{base}/lab?state=specimen_received")
    assert f'id="results-{blood_count}"' in page.text and "Specimen received" in page.text
    refused = client.post(f"{base}/lab/orders/{blood_count}/results", data={
        "_csrf_token": csrf_token(page.text), f"v.{HB}": "7.4", f"v.{WCC}": "9", f"v.{PLT}": "lots"},
        follow_redirects=False)
    assert refused.status_code == 422, refused.text
    assert f'id="v.{PLT}-error"' in refused.text and "Platelets is a number" in refused.text
    assert 'value="7.4"' in refused.text  # what was typed is kept
    with db.tenant(facility.slug) as conn:
        kept = conn.execute(sa.text("SELECT count(*) FROM result WHERE service_request_id = :o"),
                            {"o": blood_count}).scalar()
    assert kept == 0
    recorded = client.post(f"{base}/lab/orders/{blood_count}/results", data={
        "_csrf_token": csrf_token(page.text), f"v.{HB}": "7.4", f"v.{WCC}": "9", f"v.{PLT}": "250"},
        follow_redirects=False)
    assert recorded.status_code == 303 and recorded.headers["location"] == f"{base}/lab?done=lab-resulted"
    resulted = client.get(recorded.headers["location"])
    assert "Results recorded" in resulted.text and "Low" in resulted.text and "Awaiting sign-off" in resulted.text
    with db.tenant(facility.slug) as conn:
        haemoglobin = conn.execute(sa.text("SELECT entry_id FROM result WHERE service_request_id = :o AND code = :c"),
                                   {"o": blood_count, "c": HB}).scalar()
    unsaid = post_form(client, f"{base}/lab", f"{base}/lab/results/{haemoglobin}/correction",
                       {"value": "12.4", "reason": ""})
    assert unsaid.status_code == 422 and 'id="reason-error"' in unsaid.text  # beside the field, in words
    assert "Give at least 3 characters" in unsaid.text and "valid string" not in unsaid.text
    corrected = post_form(client, f"{base}/lab", f"{base}/lab/results/{haemoglobin}/correction",
                          {"value": "12.4", "reason": "typed from the wrong sample"})
    assert corrected.status_code == 303 and corrected.headers["location"] == f"{base}/lab?done=lab-corrected"
    with db.tenant(facility.slug) as conn:
        patient, now = conn.execute(sa.text("SELECT e.patient_id, e.id FROM entry e WHERE e.supersedes = :r"),
                                    {"r": haemoglobin}).one()
    results = signed_in("clinician", facility.slug).get(f"{base}/patients/{patient}/results")
    row = results.text.split(f'id="result-{now}"')[1].split("</tr>")[0]
    assert "12.4" in row and 'class="badge">corrected' in row  # its reviewer sees the value changed
    stale = post_form(client, f"{base}/lab", f"{base}/lab/results/{haemoglobin}/correction",
                      {"value": "12.5", "reason": "once more"})
    assert stale.status_code == 409 and "corrected since" in stale.text


def test_a_critical_result_recorded_at_the_bench_asks_the_technician_to_telephone(signed_in, db, facility,
                                                                                  doctor):
    """A glucose of 1.9 recorded at the bench was met with the routine notice that it waits for review, as a normal
    one is: nothing asked the technician to call anyone. The notice now says it is critical and to telephone the
    clinician who ordered it or the ward; results none of which is critical keep the routine one."""
    _, (low, usual) = _ordered(db, facility, doctor, "Chebet", "Mary", "2345-7", "2345-7")
    client = signed_in("lab_technician", facility.slug)
    base = f"/t/{facility.slug}"
    for order in (low, usual):
        assert post_form(client, f"{base}/lab", f"{base}/lab/orders/{order}/receipt", {"note": ""}).status_code == 303
    critical = post_form(client, f"{base}/lab", f"{base}/lab/orders/{low}/results", {"v.2345-7": "1.9"})
    assert critical.status_code == 303 and critical.headers["location"] == f"{base}/lab?done=lab-resulted-critical"
    page = client.get(critical.headers["location"]).text
    assert "at least one is critical" in page and "telephone the clinician who ordered it" in page
    assert "Critical low" in page.split(f'id="lab-{low}"')[1].split("</section>")[0]
    normal = post_form(client, f"{base}/lab", f"{base}/lab/orders/{usual}/results", {"v.2345-7": "5.1"})
    assert normal.headers["location"] == f"{base}/lab?done=lab-resulted"


def test_a_result_read_from_choices_is_corrected_by_choosing_another(signed_in, db, facility, doctor):
    """A malaria smear read 'positive' was corrected by typing into a blank box, where 'neg' or 'pos.' came
    back refused with the list of choices: the correction now offers the test's other choices to pick from."""
    _, (smear,) = _ordered(db, facility, doctor, "Onyango", "Peter", "32700-7")
    client = signed_in("lab_technician", facility.slug)
    base = f"/t/{facility.slug}"
    assert post_form(client, f"{base}/lab", f"{base}/lab/orders/{smear}/receipt", {"note": ""}).status_code == 303
    assert post_form(client, f"{base}/lab", f"{base}/lab/orders/{smear}/results",
                     {"v.32700-7": "positive"}).status_code == 303
    with db.tenant(facility.slug) as conn:
        read = conn.execute(sa.text("SELECT entry_id FROM result WHERE service_request_id = :o"), {"o": smear}).scalar()
    form = client.get(f"{base}/lab?state=resulted").text.split(f'id="correct-{read}"')[1].split("</form>")[0]
    assert f'<select id="correct-{read}-value" name="value"' in form
    assert '<option value="negative"' in form and '<option value="positive"' not in form
    corrected = post_form(client, f"{base}/lab", f"{base}/lab/results/{read}/correction",
                          {"value": "negative", "reason": "read from the neighbouring slide"})
    assert corrected.status_code == 303 and corrected.headers["location"] == f"{base}/lab?done=lab-corrected"


def test_a_result_signed_off_already_is_corrected_from_the_bench_and_goes_back_for_review(signed_in, db, facility,
                                                                                          doctor):
    """The bench offered 'Correct' only beside results still waiting for sign-off, though the API corrects a signed
    one: a haemoglobin found mistyped after the doctor signed it could not be corrected from the page while its
    white cell count still waited. It is offered beside it now, saying the correction goes back for review."""
    patient, (order,) = _ordered(db, facility, doctor, "Mutua", "Ann", FBC)
    client = signed_in("lab_technician", facility.slug)
    base = f"/t/{facility.slug}"
    assert post_form(client, f"{base}/lab", f"{base}/lab/orders/{order}/receipt", {"note": ""}).status_code == 303
    assert post_form(client, f"{base}/lab", f"{base}/lab/orders/{order}/results",
                     {f"v.{HB}": "4.7", f"v.{WCC}": "6.1"}).status_code == 303
    with db.tenant(facility.slug) as conn:
        haemoglobin = conn.execute(sa.text("SELECT entry_id FROM result WHERE service_request_id = :o AND code = :c"),
                                   {"o": order, "c": HB}).scalar()
        service.sign_result(conn, doctor, patient, haemoglobin, None)
    row = client.get(f"{base}/lab?state=resulted").text.split(f'id="result-{haemoglobin}"')[1].split("</tr>")[0]
    assert "Signed off" in row and f'id="correct-{haemoglobin}"' in row
    assert "goes back to the clinician&#39;s review" in row or "goes back to the clinician's review" in row
    corrected = post_form(client, f"{base}/lab", f"{base}/lab/results/{haemoglobin}/correction",
                          {"value": "14.7", "reason": "a digit dropped when typing"})
    assert corrected.status_code == 303
    with db.tenant(facility.slug) as conn:
        now = conn.execute(sa.text("SELECT id FROM entry WHERE supersedes = :r"), {"r": haemoglobin}).scalar()
        (again,) = service.results_of(conn, patient, entry_ids=[now])
    assert str(again["value_numeric"]) == "14.7" and again["signed_at"] is None  # back on the review list


def test_an_order_signed_off_stays_on_the_bench_under_signed_off_where_its_results_are_corrected(signed_in, db,
                                                                                               facility, doctor):
    """An order whose results were all signed off left the bench at once: an error found after the sign-off could
    not be corrected from the page. It is listed under 'Signed off' (not among the open orders) for the days a
    resulted order stays, Correct beside each result; corrected, it is back awaiting sign-off."""
    patient, (order,) = _ordered(db, facility, doctor, "Njeri", "Faith", "2345-7")
    client = signed_in("lab_technician", facility.slug)
    base = f"/t/{facility.slug}"
    assert post_form(client, f"{base}/lab", f"{base}/lab/orders/{order}/receipt", {"note": ""}).status_code == 303
    assert post_form(client, f"{base}/lab", f"{base}/lab/orders/{order}/results", {"v.2345-7": "5.1"}).status_code \
        == 303
    with db.tenant(facility.slug) as conn:
        glucose = conn.execute(sa.text("SELECT entry_id FROM result WHERE service_request_id = :o"),
                               {"o": order}).scalar()
        service.sign_result(conn, doctor, patient, glucose, None)
    open_orders = client.get(f"{base}/lab").text
    assert f'id="lab-{order}"' not in open_orders and 'id="tab-signed_off"' in open_orders
    signed = client.get(f"{base}/lab?state=signed_off").text
    card = signed.split(f'id="lab-{order}"')[1].split("</section>")[0]
    assert f'id="state-{order}">Signed off' in card and f'id="correct-{glucose}"' in card
    tab = signed.split('id="tab-signed_off"')[1].split("</a>")[0]
    assert "Signed off, last 7 days (" in tab and 'aria-current="page"' in tab
    critical = post_form(client, f"{base}/lab?state=signed_off", f"{base}/lab/results/{glucose}/correction",
                         {"value": "1.9", "reason": "typed from the neighbouring tube's slip", "state": "signed_off"})
    assert critical.status_code == 303, critical.text
    assert critical.headers["location"] == f"{base}/lab?done=lab-corrected-critical&state=signed_off"
    notice = client.get(critical.headers["location"]).text
    assert "the corrected value is critical" in notice and "telephone the clinician who ordered it" in notice
    assert f'id="lab-{order}"' not in notice  # back awaiting the clinician's sign-off
    resulted = client.get(f"{base}/lab?state=resulted").text.split(f'id="lab-{order}"')[1].split("</section>")[0]
    assert "Critical low" in resulted and "Awaiting sign-off" in resulted


def test_a_value_written_with_a_decimal_comma_is_refused_saying_to_write_a_point(signed_in, db, facility, doctor):
    """'7,4' came back as 'Haemoglobin is a number in g/dL, got '7,4'': the technician was not told the comma was
    the trouble. The sentence beside the field now says to write the point; nothing is recorded."""
    _, (order,) = _ordered(db, facility, doctor, "Auma", "Lilian", FBC)
    client = signed_in("lab_technician", facility.slug)
    base = f"/t/{facility.slug}"
    assert post_form(client, f"{base}/lab", f"{base}/lab/orders/{order}/receipt", {"note": ""}).status_code == 303
    refused = post_form(client, f"{base}/lab", f"{base}/lab/orders/{order}/results",
                        {f"v.{HB}": "7,4", f"v.{WCC}": "6.1"})
    assert refused.status_code == 422
    beside = refused.text.split(f'id="v.{HB}-error"')[1].split("</p>")[0]
    assert "written with a point for its decimals, not a comma: 7.4, not 7,4" in beside
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM result WHERE service_request_id = :o"),
                            {"o": order}).scalar() == 0


def test_another_facilitys_lab_technician_and_guessed_ids_are_refused(signed_in, facility, other_facility,
                                                                      blood_count):
    intruder = signed_in("lab_technician", other_facility.slug)
    own = intruder.get(f"/t/{other_facility.slug}/lab")
    assert own.status_code == 200 and "Wafula" not in own.text.title()
    base = f"/t/{facility.slug}"
    assert intruder.get(f"{base}/lab").status_code == 403
    assert intruder.get(f"{base}/lab?state=signed_off").status_code == 403
    theirs = intruder.get(f"/t/{other_facility.slug}/lab?state=signed_off")  # Njeri's order is signed off here
    assert theirs.status_code == 200 and "Njeri" not in theirs.text.title()
    token = csrf_token(own.text)
    for action in (f"/lab/orders/{blood_count}/receipt", f"/lab/orders/{blood_count}/results",
                   f"/lab/results/{uuid.uuid4()}/correction"):
        refused = intruder.post(base + action, data={"_csrf_token": token, f"v.{HB}": "1", "value": "1",
                                                     "reason": "not my facility"}, follow_redirects=False)
        assert refused.status_code == 403, action
    guessed = intruder.post(f"/t/{other_facility.slug}/lab/orders/{blood_count}/receipt",
                            data={"_csrf_token": token}, follow_redirects=False)
    assert guessed.status_code == 404 and "No open lab order" in guessed.text
