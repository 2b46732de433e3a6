"""Three pages in a real browser (Debian's chromium, headless) against the appliance served over HTTP:
the facility admin's Interfaces page after an HL7 v2 feed sent messages, the ministry's page with a
month another appliance reported (and one that has not), and the patient portal holding back what the
release rules keep for later or for a clinician to give in person (until the clinician records it given).

Each journey asserts what a person sees, saves a screenshot per step to test-artifacts/<journey>/, and
fails on a CSP violation, a script error, an error response it did not provoke, any request to
somewhere other than the appliance, or an inline script on the page."""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import uuid
from pathlib import Path

import pytest

from appliance.interop.hl7v2 import feed
from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import ResultIn
from appliance.national import federation
from appliance.national import indicators as national
from appliance.substrate import identity, keys
from appliance.substrate.principal import Principal
from tests.e2e.conftest import Journey, Watch
from tests.e2e.history import CLINICAL_CONFIG, HB, XRAY
from tests.e2e.test_journeys import DESKTOP, new_page, sign_in
from tests.interop.hl7v2.conftest import FEED_PERMISSIONS, adt, control_id, oru
from tests.layers.clinical.conftest import new_patient
from tests.national.test_federation import _facility

pytestmark = pytest.mark.slow

HIV = {"loinc": "68961-2", "name": "HIV rapid test", "specimen": "blood", "choices": ["non-reactive", "reactive"],
       "abnormal": ["reactive"]}
XRAY_REPORT = "Right lower lobe consolidation"


def watch_origin(page, base: str) -> list[str]:
    """Every request the page makes that is not to the appliance itself (a CDN, a font, a tracker)."""
    elsewhere: list[str] = []
    page.on("request", lambda request: request.url.startswith((base + "/", "data:")) or elsewhere.append(request.url))
    return elsewhere


def assert_self_contained(page, elsewhere: list[str]) -> None:
    assert elsewhere == [], f"requests outside the appliance: {elsewhere}"
    assert page.locator("script:not([src])").count() == 0, "an inline script on the page"


# -- the facility admin: Interfaces ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fed(db, policy, clinic) -> dict:
    """Messages a registration system and a laboratory sent this facility's feed today, applied as the
    listener applies them (`feed.handle`): three applied, one test code the facility does not offer and
    one result for a patient nobody registered."""
    with db.control() as conn:
        token = identity.issue_machine_token(conn, policy, tenant=clinic.slug, name="Lab and registration feed",
                                             permissions=FEED_PERMISSIONS)
    known, stranger = "RG" + secrets.token_hex(4).upper(), "RG" + secrets.token_hex(4).upper()
    unknown_test, unknown_patient = control_id(), control_id()
    sent = [
        (adt(clinic.slug, "A04", known, family="Wanjiru", given="Esther^Njeri", birth="19840917"), "AA"),
        (oru(clinic.slug, known, ["OBX|1|NM|718-7^Haemoglobin^LN||11.4|g/dL|12.0-16.0|L|||F",
                                  "OBX|2|NM|6690-2^White cell count^LN||6.8|10*3/uL|4.0-11.0|N|||F"]), "AA"),
        (oru(clinic.slug, known, ["OBX|1|ST|70569-9^Malaria RDT^LN||Negative||||||F"],
             panel="70569-9^Malaria RDT^LN"), "AA"),
        (oru(clinic.slug, known, ["OBX|1|NM|1234-5^Ferritin^LN||18|ug/L||||F"], control=unknown_test), "AE"),
        (oru(clinic.slug, stranger, ["OBX|1|NM|718-7^Haemoglobin^LN||9.9|g/dL||||F"], control=unknown_patient), "AE"),
    ]
    sentences = {}
    for text, expected in sent:
        ack = feed.handle(db, clinic.slug, token, text)
        assert ack.code == expected, ack.text
        if ack.error is not None:  # what the log keeps of it, and so what the page says was wrong
            sentences[ack.error.code] = ack.error.text(for_storage=True)
    return {"unknown_test": unknown_test, "unknown_patient": unknown_patient, "sentences": sentences,
            "private": ["Wanjiru", "WANJIRU", "Esther", "19840917", known, stranger], "token": token,
            "stranger": stranger}


def test_facility_admin_sees_todays_feed_and_what_was_wrong(browser, live_server, clinic, person_factory, fed):
    journey, watch = Journey("facility-admin-interfaces"), Watch()
    context, page = new_page(browser, watch)
    elsewhere = watch_origin(page, live_server)
    sign_in(page, live_server, person_factory("facility_admin", clinic.slug))
    page.get_by_role("link", name=re.compile("Open the portal")).click()
    page.get_by_role("link", name="Interfaces").click()
    page.wait_for_url(f"{live_server}/t/{clinic.slug}/admin/interfaces")

    assert page.get_by_role("heading", name="Interfaces").count() == 1
    today = page.get_by_role("list", name="Today's messages")
    assert today.locator("#count-AA").inner_text() == "3"
    assert today.locator("#count-AE").inner_text() == "2"
    assert today.locator("#count-AR").inner_text() == "0"
    assert "Applied today (AA)" in today.inner_text()
    latest = page.locator("table.list")
    assert latest.locator("tbody tr").count() == 5
    wrong_test = latest.locator(f'tr[data-control-id="{fed["unknown_test"]}"]')
    assert "LABSYS" in wrong_test.inner_text() and "ORU^R01" in wrong_test.inner_text()
    assert wrong_test.locator(".badge").inner_text() == "AE"
    assert fed["sentences"]["103"] in wrong_test.inner_text()
    assert "analyte 1234-5 is not in this facility's catalogue" in wrong_test.inner_text()
    nobody = latest.locator(f'tr[data-control-id="{fed["unknown_patient"]}"]')
    assert nobody.locator(".badge").inner_text() == "AE"
    assert fed["sentences"]["204"] in nobody.inner_text()
    assert "match no patient of this facility: register the patient first" in nobody.inner_text()
    registered = latest.locator("tr").filter(has=page.get_by_role("cell", name="ADT^A04", exact=True))
    assert "REGSYS" in registered.inner_text() and registered.locator(".badge").inner_text() == "AA"
    journey.shot(page, "interfaces")

    shown = page.locator("body").inner_text()
    for private in fed["private"]:  # the message log keeps no demographics, so the page shows none
        assert private not in shown and private not in page.content()
    assert_self_contained(page, elsewhere)
    context.close()
    watch.assert_clean()


def test_the_analyst_reads_a_refused_result_and_replays_it_once_the_patient_is_registered(
        browser, live_server, db, clinic, person_factory, fed):
    journey, watch = Journey("facility-admin-replays-a-message"), Watch()
    context, page = new_page(browser, watch)
    elsewhere = watch_origin(page, live_server)
    sign_in(page, live_server, person_factory("facility_admin", clinic.slug))
    page.goto(f"{live_server}/t/{clinic.slug}/admin/interfaces?show=not-applied")
    page.locator(f'tr[data-control-id="{fed["unknown_patient"]}"]').get_by_role(
        "link", name=fed["unknown_patient"]).click()
    text = page.locator("#message-text")
    assert text.inner_text().splitlines()[1].startswith(f"PID|1||{fed['stranger']}")
    assert "your reading it is recorded" in page.locator("body").inner_text()
    journey.shot(page, "message-as-received")

    # The registration system registers the patient; the analyst replays the laboratory's result.
    registered = feed.handle(db, clinic.slug, fed["token"], adt(clinic.slug, "A04", fed["stranger"]))
    assert registered.code == "AA", registered.text
    page.get_by_role("button", name="Replay").click()
    page.wait_for_url(re.compile(r".*[?]done=hl7-replay-applied$"))
    assert "Replayed and applied (AA)" in page.get_by_role("status").inner_text()
    replayed = page.locator('tr[data-later="replay"]')
    assert replayed.count() == 1 and replayed.locator(".badge").inner_text() == "AA"
    assert page.get_by_role("button", name="Replay").count() == 0  # applied: nothing more to replay
    journey.shot(page, "replayed")
    page.goto(f"{live_server}/t/{clinic.slug}/admin/interfaces?show=not-applied")
    assert page.locator(f'tr[data-control-id="{fed["unknown_patient"]}"]').count() == 0
    assert_self_contained(page, elsewhere)
    context.close()
    watch.assert_clean()


# -- the ministry: who reported the month -----------------------------------------------------------------


@pytest.fixture(scope="module")
def reported(db, tmp_path_factory) -> dict:
    """Last month (the month the ministry's page opens on), reported by one registered appliance and not
    by another. Names of their own: other modules register appliances in the same database."""
    definitions = national.load_definitions(Path(__file__).resolve().parents[2] / "policies" / "indicators.toml")
    month = national.Period.containing(dt.datetime.now(dt.UTC).date()).previous()
    western = keys.Keyring(tmp_path_factory.mktemp("western-appliance"))
    frontier = keys.Keyring(tmp_path_factory.mktemp("frontier-appliance"))
    federation.register_peer(db, "Western Region Appliance", western.public_key_pem())
    silent = federation.register_peer(db, "Northern Frontier Appliance", frontier.public_key_pem())
    package = federation.make_package([_facility(definitions, "KE-WST-014", "Kakamega County Referral")], month,
                                      definitions, western)
    federation.receive_package(db, json.dumps(package).encode(), definitions)
    return {"month": month, "silent_key": silent.key_id}


def test_ministry_analyst_sees_who_reported_the_month_and_who_has_not(browser, live_server, clinic,
                                                                      person_factory, reported):
    journey, watch = Journey("ministry-reporting-appliances"), Watch()
    context, page = new_page(browser, watch)
    elsewhere = watch_origin(page, live_server)
    sign_in(page, live_server, person_factory("ministry_analyst", kind="ministry_analyst"))
    page.get_by_role("link", name="Open the national indicators").click()
    page.wait_for_url(f"{live_server}/national")

    section = page.locator("section[aria-labelledby=reporting-title]")
    heading = section.get_by_role("heading", name=re.compile("Reporting appliances")).inner_text()
    assert reported["month"].label in heading
    missing = section.locator("#not-reported").inner_text()
    assert "Northern Frontier Appliance" in missing and "Western Region Appliance" not in missing
    assert "Their facilities are missing from every figure" in missing
    western = section.locator("tr", has_text="Western Region Appliance")
    assert "not received" not in western.inner_text() and "UTC" in western.inner_text()
    assert "not received" in section.locator(f'tr[data-peer="{reported["silent_key"]}"]').inner_text()
    journey.shot(page, "reporting-appliances")

    facilities = page.locator("#facilities")
    assert facilities.get_by_role("columnheader", name="Reported by").count() == 1
    theirs = facilities.locator("tr", has_text="Kakamega County Referral")
    assert theirs.locator("td.source").inner_text() == "Western Region Appliance"
    assert theirs.locator("td.total").inner_text() == "52"
    ours = facilities.locator(f'tr[data-facility="{clinic.slug}"]')
    assert ours.locator("td.source").inner_text() == "this appliance"
    theirs.scroll_into_view_if_needed()
    journey.shot(page, "reported-by")
    assert_self_contained(page, elsewhere)
    context.close()
    watch.assert_clean()


# -- the patient: what the release rules keep back ---------------------------------------------------------


@pytest.fixture(scope="module")
def patient_with_results(db, policy, tenant_factory) -> dict:
    """A patient whose clinician reviewed, today, a blood count (shown at once), an HIV test (given in
    person) and a chest X-ray report (shown three days after review); and a glucose not yet reviewed."""
    facility = tenant_factory(name="Kisumu Road Clinic",
                              **{**CLINICAL_CONFIG, "catalogue": [*CLINICAL_CONFIG["catalogue"], HIV]})
    clinician = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Release", tenant=facility.slug,
                          role="clinician")
    with db.tenant(facility.slug) as conn:
        chart = new_patient(conn, clinician, family_name="Atieno", given_names="Rose Akoth")
        reviewed = {}
        for code, value in ((HB, "13.1"), (HIV["loinc"], "reactive"), (XRAY, XRAY_REPORT)):
            result = service.record_result(conn, clinician, chart["id"], ResultIn(code=code, value=value))
            service.sign_result(conn, clinician, chart["id"], result["id"], None)
            reviewed[code] = result["id"]
        service.record_result(conn, clinician, chart["id"], ResultIn(code="2345-7", value="5.2"))
    email, password = f"rose-{uuid.uuid4().hex[:6]}@example.org", "a long enough passphrase"
    with db.control() as conn:
        subject = identity.match_or_create_subject(conn, family_name="Atieno", given_names="Rose Akoth",
                                                   national_id=f"E2E-{uuid.uuid4().hex[:8]}").subject_id
        identity.note_facility(conn, subject, facility.slug)
        account = identity.create_account(conn, policy, kind="patient", email=email, display_name="Rose Atieno",
                                          role="patient", subject_id=subject)
        identity.set_credentials(conn, account.account_id, password=password, mfa_secret=None)
    with db.tenant(facility.slug) as conn:
        conn.exec_driver_sql("UPDATE patient SET subject_id = %s WHERE id = %s", (subject, chart["id"]))
    return {"facility": facility, "email": email, "password": password, "clinician": clinician,
            "patient_id": chart["id"], "hiv": reviewed[HIV["loinc"]]}


def test_patient_sees_the_blood_count_not_the_hiv_test_and_the_xray_later(browser, live_server, db,
                                                                         patient_with_results):
    journey, watch = Journey("patient-release-rules"), Watch()
    facility = patient_with_results["facility"]
    context, page = new_page(browser, watch)
    elsewhere = watch_origin(page, live_server)
    page.goto(f"{live_server}/signin")
    page.get_by_label("E-mail").fill(patient_with_results["email"])
    page.get_by_label("Password").fill(patient_with_results["password"])
    page.get_by_role("button", name="Continue").click()  # no authenticator for patients
    page.wait_for_url(f"{live_server}/")
    page.get_by_role("link", name="Open your record").click()
    page.wait_for_url(f"{live_server}/me")

    record = page.locator(f'section[data-facility="{facility.slug}"]')
    results = record.locator("table.results")
    haemoglobin = results.locator("tr", has_text="Haemoglobin")
    assert "13.1" in haemoglobin.inner_text()
    assert "Glucose" not in results.inner_text()  # not reviewed yet
    notice = record.locator(".info.in-person").inner_text()
    assert f"1 result from {facility.name} is given to you in person" in notice
    assert "ask about it at your next visit" in notice
    later = record.locator("ul.later").inner_text()
    assert "Chest X-ray, 2 views" in later and "reviewed, shows here from" in later
    shown = page.locator("body").inner_text()
    assert "HIV" not in shown and "reactive" not in shown.lower() and XRAY_REPORT not in shown
    assert "HIV" not in page.content()  # not even in the markup
    journey.shot(page, "record")
    # On a phone the results and bills fit the screen, each result's day beside its name, none pushed off.
    page.set_viewport_size({"width": 390, "height": 844})
    for table in ("table.results", "table.bills"):
        width, room = record.locator(table).evaluate("t => [t.scrollWidth, t.parentElement.clientWidth]")
        assert width <= room, (table, width, room)
    taken = haemoglobin.locator(".taken").bounding_box()
    assert taken is not None and taken["x"] + taken["width"] <= 390
    journey.shot(page, "record-on-a-phone")
    page.set_viewport_size(DESKTOP)

    # The clinician gives the HIV result in person and records it: from then on it is the patient's to see.
    with db.tenant(facility.slug) as conn:
        service.disclose_result(conn, patient_with_results["clinician"], patient_with_results["patient_id"],
                                patient_with_results["hiv"], "Post-test counselling given")
    page.reload()
    hiv = record.locator("table.results tr", has_text="HIV rapid test")
    assert "reactive" in hiv.inner_text()
    assert record.locator(".info.in-person").count() == 0  # nothing left to be given in person
    journey.shot(page, "record-after-given")
    assert_self_contained(page, elsewhere)
    context.close()
    watch.assert_clean()
