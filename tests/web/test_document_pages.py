"""Documents in the tenant portal: the chart's "Documents" tab (the list, the upload form with its CSRF token and no
script), a file filed by the form and opened through the audited route, a refusal beside the file with nothing
written (HTML named .pdf, a body past the limit), a better scan, entered in error, the desk's categories, and the
refusals on every route: another facility's session, a guessed patient or document, another patient's document."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service
from appliance.layers.clinical.document_demo import tiny_pdf, tiny_png
from appliance.layers.clinical.models import DOCUMENT_MAX_BYTES
from appliance.layers.clinical.schemas import EncounterIn, PatientIn
from appliance.substrate.principal import Principal
from tests.web.test_portal import csrf_token

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
    assert 'id="no-documents"' in after.text and "<s>Consent form: Consent to surgery</s>" in after.text
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
