"""Documents in the tenant portal: the chart's "Documents" tab (the list, the upload form with its CSRF token and no
script), a file filed by the form and opened through the audited route, a refusal beside the file with nothing
written (HTML named .pdf, a body past the limit), a better scan, entered in error, the desk's categories, and the
refusals on every route: another facility's session, a guessed patient or document, another patient's document.

And the patient's own documents on /me (appliance/web/me_documents.py), on the same two facilities: the files on her
record at both, as the release rules' `[documents]` let them show (a referral letter at once; a result from elsewhere
three days after filing; an identity scan never; one entered in error never); each download served as the staff route
serves it and audited as her own read; and, from the attacker's side, another patient's document by its id, a
category not released, a withdrawn file, a facility not hers and staff credentials all refused."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import documents, service
from appliance.layers.clinical.document_demo import tiny_pdf, tiny_png
from appliance.layers.clinical.models import DOCUMENT_CATEGORIES, DOCUMENT_MAX_BYTES
from appliance.layers.clinical.schemas import EncounterIn, PatientIn
from appliance.layers.patient import release
from appliance.layers.patient.release import ReleasePolicyError, load_release_rules
from appliance.substrate import audit, identity
from appliance.substrate.db import tenant_schema
from appliance.substrate.principal import Principal
from tests.layers.clinical.conftest import new_patient
from tests.web.test_me import _patient_client
from tests.web.test_portal import csrf_token, withdrawn_listed

SCAN = tiny_png(20, 20, (40, 90, 200))
LETTER = tiny_pdf(["Consent to surgery", "Signed"])


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Documents Hospital")


@pytest.fixture(scope="module")
def elsewhere(tenant_factory):
    return tenant_factory(name="Elsewhere Documents Hospital")


def _register(db, facility, author, family: str) -> uuid.UUID:
    with db.tenant(facility.slug) as conn:
        found = service.register_patient(conn, author, PatientIn.model_validate(
            {"family_name": family, "given_names": "Wanjiru", "birth_date": dt.date(1985, 3, 3), "sex": "female",
             "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}))
        service.open_encounter(conn, author, found["id"], EncounterIn(encounter_class="outpatient"))
    return found["id"]


@pytest.fixture(scope="module")
def charts(db, facility, person_factory) -> dict:
    author = person_factory("clinician", facility.slug)
    principal = Principal(account_id=author.account_id, kind="staff", display_name="Dr Docs", tenant=facility.slug,
                          role="clinician")
    return {"main": _register(db, facility, principal, "Kamau"), "other": _register(db, facility, principal, "Otieno")}


def _path(facility, patient_id) -> str:
    return f"/t/{facility.slug}/patients/{patient_id}/documents"


def _upload(client, page_path, action, content, *, name="scan.png", **fields):
    page = client.get(page_path)
    form = {"category": "clinical_photograph", "title": "Pressure sore, sacrum", "document_date": "",
            "_csrf_token": csrf_token(page.text), **fields}
    return client.post(action, data=form, files={"file": (name, content, "application/pdf")}, follow_redirects=False)


def _count(db, facility) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM entry WHERE kind = 'document'")).scalar()


def test_the_tab_files_opens_corrects_and_withdraws_a_document_and_refuses_beside_the_file(signed_in, db, facility,
                                                                                         charts):
    clinician = signed_in("clinician", facility.slug)
    path = _path(facility, charts["main"])
    assert f'href="{path}"' in clinician.get(f"/t/{facility.slug}/patients/{charts['main']}/chart").text
    page = clinician.get(path)
    assert page.status_code == 200 and 'id="no-documents"' in page.text and 'enctype="multipart/form-data"' in page.text
    assert 'name="_csrf_token"' in page.text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) and not re.search(r"\son\w+=", page.text)
    html = b"<!doctype html><script>fetch('/api')</script>"
    refused = _upload(clinician, path, path, html, name="letter.pdf")
    assert refused.status_code == 422 and 'id="file-error"' in refused.text and "not a PDF, JPEG or PNG" in refused.text
    huge = _upload(clinician, path, path, b"%PDF-" + b"0" * (DOCUMENT_MAX_BYTES + 100_000), name="big.pdf")
    assert huge.status_code == 413 and 'id="file-error"' in huge.text and "10 MiB" in huge.text
    assert _count(db, facility) == 0
    filed = _upload(clinician, path, path, SCAN)
    assert filed.status_code == 303 and filed.headers["location"].endswith("?done=document-filed"), filed.text
    shown = clinician.get(filed.headers["location"])
    doc_id = re.search(r'id="document-([0-9a-f-]{36})"', shown.text).group(1)
    assert "Pressure sore, sacrum" in shown.text and "Clinical photograph" in shown.text
    opened = clinician.get(f"{path}/{doc_id}/content")
    assert opened.content == SCAN and opened.headers["content-type"] == "image/png"
    assert opened.headers["x-content-type-options"] == "nosniff" and opened.headers["cache-control"] == "no-store"
    better = _upload(clinician, path, f"{path}/{doc_id}", LETTER, name="better.pdf", category="consent_form",
                     title="Consent to surgery", reason="the consent form, not the photograph")
    assert better.status_code == 303 and better.headers["location"].endswith("document-corrected"), better.text
    page = clinician.get(path)
    new_id = re.search(r'id="document-([0-9a-f-]{36})"', page.text).group(1)
    assert clinician.get(f"{path}/{new_id}/content").headers["content-disposition"].startswith("attachment;")
    withdrawn = clinician.post(f"{path}/{new_id}/entered-in-error", follow_redirects=False,
                               data={"reason": "another patient's form", "_csrf_token": csrf_token(page.text)})
    assert withdrawn.status_code == 303, withdrawn.text
    after = clinician.get(path)
    assert 'id="no-documents"' in after.text
    withdrawn_listed(after.text, new_id, what="Consent form: Consent to surgery", by="Test clinician",
                     why="another patient's form")
    assert clinician.get(f"{path}/{new_id}/content").status_code == 410


def test_the_desk_is_offered_its_two_categories_and_refused_the_rest(signed_in, db, facility, charts):
    desk = signed_in("registrar", facility.slug)
    path = _path(facility, charts["other"])
    page = desk.get(path)
    assert page.status_code == 200, page.text
    offered = re.findall(r'<option value="([a-z_]+)"', page.text)
    assert offered == ["identity_document", "referral_letter"]
    before = _count(db, facility)
    refused = _upload(desk, path, path, SCAN, category="ecg", title="ECG")
    assert refused.status_code == 403 and 'id="category-error"' in refused.text
    assert _count(db, facility) == before
    filed = _upload(desk, path, path, SCAN, category="identity_document", title="National ID")
    assert filed.status_code == 303, filed.text


def _every_route(client, base, doc, token, *, naming_a_document_only):
    upload = {"data": {"category": "other", "title": "x", "reason": "a guess", "_csrf_token": token},
              "files": {"file": ("x.png", SCAN, "image/png")}, "follow_redirects": False}
    yield client.get(f"{base}/{doc}/content")
    yield client.post(f"{base}/{doc}/entered-in-error", data={"reason": "a guess", "_csrf_token": token},
                      follow_redirects=False)
    yield client.post(f"{base}/{doc}", **upload)
    if not naming_a_document_only:
        yield client.get(base)
        yield client.post(base, **upload)


def test_every_route_refuses_another_facility_a_guessed_id_and_another_patients_document(signed_in, db, facility,
                                                                                       elsewhere, charts):
    clinician = signed_in("clinician", facility.slug)
    path = _path(facility, charts["other"])
    doc_id = re.search(r'id="document-([0-9a-f-]{36})"', clinician.get(path).text).group(1)
    before = _count(db, facility)
    intruder = signed_in("clinician", elsewhere.slug)
    token = csrf_token(intruder.get(f"/t/{elsewhere.slug}/patients").text)
    guessed_patient = _path(facility, uuid.uuid4())
    misplaced = _path(facility, charts["main"])  # the other chart's document under this chart's address
    for client, base, doc, status in [(intruder, path, doc_id, 403), (clinician, guessed_patient, doc_id, 404),
                                      (clinician, path, uuid.uuid4(), 404), (clinician, misplaced, doc_id, 404)]:
        if client is clinician:
            token = csrf_token(clinician.get(f"/t/{facility.slug}/patients").text)
        # A guessed or misplaced document: only the routes naming one (that chart's list and upload are its own).
        only_named = status == 404 and base != guessed_patient
        for answer in _every_route(client, base, doc, token, naming_a_document_only=only_named):
            assert answer.status_code == status, (answer.request.url, answer.text[:300])
            assert "National ID" not in answer.text
    assert _count(db, facility) == before


REFERRAL = tiny_pdf(["Referral to the diabetes clinic"])


# -- the patient's own documents on /me (appliance/web/me_documents.py), on this module's two facilities ---------


@pytest.fixture(scope="module")
def two_facilities(facility, elsewhere):
    return facility, elsewhere


def _clinician(policy, tenant: str) -> Principal:
    return Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Njeri", tenant=tenant, role="clinician",
                     permissions=frozenset(policy.permissions_of("clinician")))


def _file(conn, policy, tenant, patient_id, category: str, title: str, content: bytes) -> uuid.UUID:
    return documents.upload(conn, _clinician(policy, tenant), patient_id, category=category, title=title,
                            document_date=None, content=content, today=dt.date.today())["id"]


def _person(db, policy, facilities, family: str) -> tuple[str, dict]:
    """A person registered at `facilities` as one subject, with a portal account: (email, chart id by facility)."""
    charts = {}
    for facility in facilities:
        with db.tenant(facility.slug) as conn:
            charts[facility.slug] = new_patient(conn, _clinician(policy, facility.slug), family_name=family,
                                                given_names="Amina", sex="female")["id"]
    with db.control() as conn:
        subject = identity.match_or_create_subject(conn, family_name=family, given_names="Amina",
                                                   national_id=f"DOC-{uuid.uuid4().hex[:8]}").subject_id
        email = f"{family.lower()}-{uuid.uuid4().hex[:6]}@example.org"
        identity.create_account(conn, policy, kind="patient", email=email, display_name=f"Amina {family}",
                                role="patient", subject_id=subject)
        for facility in facilities:
            identity.note_facility(conn, subject, facility.slug)
    for facility in facilities:
        with db.tenant(facility.slug) as conn:
            conn.exec_driver_sql("UPDATE patient SET subject_id = %s WHERE id = %s", (subject, charts[facility.slug]))
    return email, charts


@pytest.fixture(scope="module")
def filed(db, policy, two_facilities) -> dict:
    hospital, centre = two_facilities
    email, charts = _person(db, policy, (hospital, centre), "Hassan")
    other_email, other_charts = _person(db, policy, (hospital,), "Chebet")
    ids = {}
    with db.tenant(hospital.slug) as conn:
        here = charts[hospital.slug]
        ids["letter"] = _file(conn, policy, hospital.slug, here, "referral_letter", "Referral to diabetes clinic",
                              REFERRAL)
        ids["identity"] = _file(conn, policy, hospital.slug, here, "identity_document", "National ID card",
                                tiny_png(2, 2, (1, 2, 3)))
        ids["result"] = _file(conn, policy, hospital.slug, here, "outside_result", "HbA1c from Lancet lab",
                              tiny_png(2, 2, (4, 5, 6)))
        ids["wrong"] = _file(conn, policy, hospital.slug, here, "referral_letter", "Someone else's letter",
                             tiny_png(2, 2, (7, 8, 9)))
        documents.withdraw(conn, _clinician(policy, hospital.slug), here, ids["wrong"], "filed on the wrong chart")
        ids["theirs"] = _file(conn, policy, hospital.slug, other_charts[hospital.slug], "referral_letter",
                              "Chebet's referral", tiny_png(2, 2, (9, 9, 9)))
    with db.tenant(centre.slug) as conn:
        ids["centre_letter"] = _file(conn, policy, centre.slug, charts[centre.slug], "referral_letter",
                                     "Referral back to the hospital", tiny_png(3, 3, (200, 10, 10)))
    return {"email": email, "other_email": other_email, "charts": charts, "ids": ids}


def test_her_released_documents_from_both_facilities_and_a_download_as_staff_get_it(db, app, two_facilities, filed):
    hospital, centre = two_facilities
    patient = _patient_client(db, app, filed["email"])
    listed = patient.get("/api/me/documents")
    assert listed.status_code == 200, listed.text
    body = listed.json()
    # Both referral letters; not the identity scan (never), the outside result (72 hours after filing), the withdrawn.
    assert [(d["title"], d["facility_name"]) for d in body["documents"]] == [
        ("Referral back to the hospital", centre.name), ("Referral to diabetes clinic", hospital.name)]
    letter = body["documents"][1]
    assert letter["url"] == f"/api/me/documents/{hospital.slug}/{filed['ids']['letter']}"
    got = patient.get(letter["url"])
    assert got.status_code == 200 and got.content == REFERRAL
    assert got.headers["content-type"].startswith("application/pdf")
    assert got.headers["content-disposition"].startswith("attachment")
    assert "sandbox" in got.headers["content-security-policy"]
    assert (got.headers["x-content-type-options"], got.headers["cache-control"]) == ("nosniff", "no-store")
    # Each facility noted the list as her own read; the hospital, the opening of the file too.
    for facility in (hospital, centre):
        events = {e.event_type: e for e in audit.patient_access_log(db, facility.slug, filed["charts"][facility.slug])}
        assert events["record.document.read"].who["kind"] == "patient"
    opened = [e for e in audit.patient_access_log(db, hospital.slug, filed["charts"][hospital.slug])
              if e.event_type == "record.document_content.read"]
    assert opened and opened[-1].who["kind"] == "patient"


def test_the_patients_documents_page(db, app, filed):
    page = _patient_client(db, app, filed["email"]).get("/me/documents")
    assert page.status_code == 200 and 'aria-current="page">Documents' in page.text
    rows = page.text.split('class="list documents"')[1].split("</table>")[0]
    assert "Referral to diabetes clinic" in rows and "Download PDF" in rows and "National ID card" not in rows
    assert 'href="/api/me/documents/' in rows
    assert "<script" not in page.text.split("<main")[1]  # CSP: no inline script


def test_the_day_a_document_was_filed_is_the_facilitys(db, app, policy, two_facilities):
    """Filed at 01:30 in Nairobi on 2 March is filed on 2 March: the page said 1 March, the day in UTC."""
    hospital, _ = two_facilities
    email, charts = _person(db, policy, (hospital,), "Wambui")
    with db.tenant(hospital.slug) as conn:
        letter = _file(conn, policy, hospital.slug, charts[hospital.slug], "referral_letter",
                       "Referral to the eye clinic", REFERRAL)
    with db.control() as conn:  # the record is append-only to a facility's role: the filing moved back by its owner
        conn.exec_driver_sql(f"UPDATE {tenant_schema(hospital.slug)}.entry SET recorded_at = '2026-03-01 22:30+00' "
                             "WHERE id = %s", (letter,))
    patient = _patient_client(db, app, email)
    [listed] = patient.get("/api/me/documents").json()["documents"]
    assert listed["filed_at"] == "2026-03-02T01:30:00+03:00"
    row = patient.get("/me/documents").text.split(f'data-document="{letter}"')[1].split("</tr>")[0]
    assert "02 Mar 2026" in row and "01 Mar 2026" not in row


def test_what_is_not_hers_or_not_released_is_refused(db, app, signed_in, two_facilities, filed):
    hospital, _ = two_facilities
    patient = _patient_client(db, app, filed["email"])
    ids = filed["ids"]

    def at(facility, entry_id) -> str:
        return f"/api/me/documents/{facility.slug}/{entry_id}"

    # Another patient's document, its id guessed or leaked: not found, nothing said of it.
    assert patient.get(at(hospital, ids["theirs"])).status_code == 404
    assert patient.get(at(hospital, uuid.uuid4())).status_code == 404
    # Her own, of a category not released, or not yet: not found.
    assert patient.get(at(hospital, ids["identity"])).status_code == 404
    assert patient.get(at(hospital, ids["result"])).status_code == 404
    # Entered in error: gone, in words.
    gone = patient.get(at(hospital, ids["wrong"]))
    assert gone.status_code == 410 and "entered in error" in gone.json()["detail"]
    # Her centre's letter asked for at the hospital; and a facility that holds no chart of hers.
    assert patient.get(at(hospital, ids["centre_letter"])).status_code == 404
    assert patient.get(f"/api/me/documents/no-such-place/{ids['letter']}").status_code == 404
    # The other patient sees only her own.
    other = _patient_client(db, app, filed["other_email"]).get("/api/me/documents").json()
    assert [d["title"] for d in other["documents"]] == ["Chebet's referral"]
    # Staff are not patients, on any of the three routes.
    nurse = signed_in("clinician", hospital.slug)
    for url in ("/api/me/documents", "/me/documents", at(hospital, ids["letter"])):
        assert nurse.get(url).status_code == 403, url


def test_the_release_rules_decide_by_category_and_hours_after_filing(db, app, filed, tmp_path):
    shipped = app.state.release_rules
    assert dict(shipped.documents) == {"referral_letter": 0, "outside_result": 72, "outside_imaging": 72}
    assert release.DOCUMENT_CATEGORIES == DOCUMENT_CATEGORIES  # the file's categories are the record's
    patient = _patient_client(db, app, filed["email"])
    app.state.release_rules = dataclasses.replace(shipped, documents={"outside_result": 0})
    try:
        titles = [d["title"] for d in patient.get("/api/me/documents").json()["documents"]]
        assert titles == ["HbA1c from Lancet lab"]
        app.state.release_rules = dataclasses.replace(shipped, documents={})
        none = patient.get("/api/me/documents").json()
        assert (none["shown"], none["documents"]) == (False, []) and "not shown on this portal" in none["note"]
    finally:
        app.state.release_rules = shipped
    wrong = tmp_path / "release.toml"
    wrong.write_text('[documents]\nreferal_letter = { release = "at_once" }\n\n[default]\nrelease = "after_review"\n')
    with pytest.raises(ReleasePolicyError, match="'referal_letter' is not a document category"):
        load_release_rules(wrong)
    wrong.write_text('[documents]\necg = { release = "after_review" }\n\n[default]\nrelease = "after_review"\n')
    with pytest.raises(ReleasePolicyError, match="release is one of at_once, after_filing"):
        load_release_rules(wrong)
