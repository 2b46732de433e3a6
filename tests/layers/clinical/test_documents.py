"""Documents on the record over real HTTP and the real record (appliance/layers/clinical/documents.py): a file filed
and served byte for byte with its SHA-256 and the headers that keep a browser from running it, the refusals (a
.pdf name around HTML, an empty or too large file, a category or date not taken) writing nothing, a better scan
superseding, entered in error no longer served, the desk's two categories, every read and opening on the access
log naming the document, another facility's credentials and guessed or misplaced ids refused on every route, and
the bytes gone with a dropped facility."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical.demo import demo_principal
from appliance.layers.clinical.document_demo import generate_document_demo, tiny_pdf, tiny_png
from appliance.layers.clinical.document_schemas import Category
from appliance.layers.clinical.documents import CATEGORY_WORDS
from appliance.layers.clinical.models import DOCUMENT_CATEGORIES, DOCUMENT_MAX_BYTES
from appliance.substrate import audit
from appliance.substrate.db import tenant_schema
from appliance.substrate.tenancy import drop_tenant
from tests.interop.fhir.conftest import valid
from tests.layers.clinical.conftest import new_patient

API = "/api/t/{tenant}"
LETTER = tiny_pdf(["Mercy Clinic", "Referral: chest pain on exertion, please assess"])
WOUND = tiny_png(24, 16, (180, 60, 60))


@pytest.fixture(scope="module")
def person(db, facility, clinician) -> dict:
    with db.tenant(facility.slug) as conn:
        return new_patient(conn, clinician, family_name="Chebet", given_names="Ruth", sex="female",
                           birth_date=dt.date(1979, 2, 3))


def _base(facility, patient_id) -> str:
    return f"{API.format(tenant=facility.slug)}/patients/{patient_id}/documents"


def _file(client, url, content, *, name="letter.pdf", sent_type="application/pdf", method="post", **fields):
    form = {"category": "referral_letter", "title": "Referral from Mercy Clinic", **fields}
    return client.request(method.upper(), url, data=form, files={"file": (name, content, sent_type)})


def _written(db, facility) -> tuple[int, int]:
    with db.tenant(facility.slug) as conn:
        return (conn.execute(sa.text("SELECT count(*) FROM entry WHERE kind = 'document'")).scalar(),
                conn.execute(sa.text("SELECT count(*) FROM document_content")).scalar())


def test_the_categories_are_one_list():
    assert tuple(CATEGORY_WORDS) == DOCUMENT_CATEGORIES == Category.__args__


def test_a_file_is_kept_byte_for_byte_with_its_hash_and_served_so_no_browser_runs_it(api, db, facility, person):
    base = _base(facility, person["id"])
    # The client says HTML; the bytes say PDF: the bytes decide.
    filed = _file(api, base, LETTER, sent_type="text/html", document_date="2026-11-20")
    assert filed.status_code == 201, filed.text
    letter = filed.json()
    assert (letter["media_type"], letter["size"], letter["sha256"]) == (
        "application/pdf", len(LETTER), hashlib.sha256(LETTER).hexdigest())
    assert (letter["category_words"], letter["document_date"]) == ("Referral letter", "2026-11-20")
    served = api.get(f"{base}/{letter['id']}/content")
    assert served.status_code == 200 and served.content == LETTER
    assert served.headers["content-type"] == "application/pdf"
    assert served.headers["content-disposition"] == f'attachment; filename="document-{letter["id"]}.pdf"'
    assert served.headers["x-content-type-options"] == "nosniff"
    assert served.headers["cache-control"] == "no-store"
    assert "sandbox" in served.headers["content-security-policy"]
    photo = _file(api, base, WOUND, name="wound.png", sent_type="application/octet-stream",
                  category="clinical_photograph", title="Left foot ulcer, day 3").json()
    shown = api.get(f"{base}/{photo['id']}/content")
    assert shown.content == WOUND and shown.headers["content-type"] == "image/png"
    assert shown.headers["content-disposition"].startswith("inline;")
    listed = api.get(base).json()
    assert [d["title"] for d in listed["documents"]] == ["Left foot ulcer, day 3", "Referral from Mercy Clinic"]
    logged = {e.event_type for e in audit.patient_access_log(db, facility.slug, person["id"])}
    assert {"record.document.create", "record.document.read", "record.document_content.read"} <= logged
    opened = audit.read_events(db, facility.slug, event_type="record.document_content.read")
    assert [e["event"]["entity"][-1]["ids"] for e in opened] == [[letter["id"]], [photo["id"]]]
    events = audit.read_events(db, facility.slug)
    assert all("Mercy" not in repr(e) for e in events)  # the title, let alone the bytes, is never in the trail


def test_what_is_not_a_document_is_refused_and_nothing_is_written(api, db, facility, person):
    base = _base(facility, person["id"])
    before = _written(db, facility)
    page = b"<html><body><script>alert(1)</script></body></html>"
    for content, fields, status, field, said in [
        (page, {}, 422, "file", "not a PDF, JPEG or PNG"),
        (b"", {}, 422, "file", "the file is empty"),
        (b"%PDF-" + b"0" * DOCUMENT_MAX_BYTES, {}, 413, "file", "more than the 10 MiB a document may be"),
        (b"%PDF-" + b"0" * (DOCUMENT_MAX_BYTES + 200_000), {}, 413, "file", "larger than the 10 MiB"),
        (LETTER, {"category": "x_ray"}, 422, "category", "invalid category"),
        (LETTER, {"title": ""}, 422, "title", "invalid title"),
        (LETTER, {"document_date": "2999-01-01"}, 422, "document_date", "is in the future"),
    ]:
        refused = _file(api, base, content, **fields)
        assert (refused.status_code, refused.json().get("field")) == (status, field), refused.text[:300]
        assert said in refused.json()["detail"]
    sent_as_json = api.post(base, json={"category": "ecg", "title": "ECG", "file": "JVBERi0="})
    assert sent_as_json.status_code == 400 and "the file in `file`" in sent_as_json.json()["detail"]
    assert _written(db, facility) == before


def test_a_better_scan_supersedes_and_entered_in_error_is_no_longer_served(api, db, facility, person):
    base = _base(facility, person["id"])
    first = _file(api, base, tiny_pdf(["ECG, blurred"]), category="ecg", title="ECG").json()
    better = _file(api, f"{base}/{first['id']}", WOUND, method="put", category="ecg", title="ECG 12-lead",
                   reason="a sharper scan").json()
    assert (better["entry_status"], better["root_id"], better["sha256"]) == (
        "amended", first["id"], hashlib.sha256(WOUND).hexdigest())
    assert api.get(f"{base}/{first['id']}/content").content == tiny_pdf(["ECG, blurred"])  # its history is served
    again = _file(api, f"{base}/{first['id']}", WOUND, method="put", category="ecg", title="late", reason="stale")
    assert again.status_code == 409, again.text
    # No file chosen (a browser sends the part empty): the same bytes, retitled.
    retitled = _file(api, f"{base}/{better['id']}", b"", name="", method="put", category="ecg",
                     title="ECG 12-lead, at rest", reason="the title said too little")
    assert retitled.status_code == 200 and retitled.json()["sha256"] == better["sha256"], retitled.text
    # A withdrawal is JSON: a body that is not is told what is wrong with it, not how to send a multipart form.
    for body in ({"content": b"{not json", "headers": {"content-type": "application/json"}}, {"json": []}):
        garbled = api.post(f"{base}/{retitled.json()['id']}/entered-in-error", **body)
        assert garbled.status_code in (400, 422) and "multipart" not in garbled.json()["detail"], garbled.text
    withdrawn = api.post(f"{base}/{retitled.json()['id']}/entered-in-error", json={"reason": "another patient's ECG"})
    assert withdrawn.status_code == 200, withdrawn.text
    for version in (first, better):
        gone = api.get(f"{base}/{version['id']}/content")
        assert gone.status_code == 410 and "entered in error" in gone.json()["detail"]
    listed = api.get(base).json()
    assert first["id"] not in {d["root_id"] for d in listed["documents"]}
    assert [w["title"] for w in listed["withdrawn"]] == ["ECG 12-lead, at rest"]
    with db.tenant(facility.slug) as conn:  # the bytes stay for the audit trail
        assert conn.execute(sa.text("SELECT count(*) FROM document_content WHERE sha256 = :h"),
                            {"h": better["sha256"]}).scalar() == 1


def test_the_desk_files_and_reads_identity_documents_and_referral_letters_only(token_client, api, db, facility,
                                                                                person):
    base = _base(facility, person["id"])
    desk = token_client(facility.slug, role="registrar")
    card = _file(desk, base, WOUND, name="id.png", category="identity_document", title="National ID card")
    assert card.status_code == 201, card.text
    before = _written(db, facility)
    refused = _file(desk, base, LETTER, category="consent_form", title="Consent")
    assert refused.status_code == 403 and refused.json()["field"] == "category", refused.text
    assert _written(db, facility) == before
    listed = desk.get(base).json()
    assert {d["category"] for d in listed["documents"]} == {"identity_document", "referral_letter"}
    assert listed["may_file"] == ["identity_document", "referral_letter"]
    photo = next(d for d in api.get(base).json()["documents"] if d["category"] == "clinical_photograph")
    assert desk.get(f"{base}/{photo['id']}/content").status_code == 404
    nurse = token_client(facility.slug, role="nurse")
    assert nurse.get(f"{base}/{photo['id']}/content").content == WOUND


def _every_route(client, base, doc, *, naming_a_document_only=False):
    yield client.get(f"{base}/{doc}/content")
    yield _file(client, f"{base}/{doc}", LETTER, method="put", reason="not mine to correct")
    yield client.post(f"{base}/{doc}/entered-in-error", json={"reason": "not mine to withdraw"})
    if not naming_a_document_only:
        yield client.get(base)
        yield _file(client, base, LETTER)


def test_another_facility_and_guessed_or_misplaced_ids_are_refused_on_every_route(api, token_client, db, facility,
                                                                                 other_facility, person, clinician):
    base = _base(facility, person["id"])
    some = api.get(base).json()["documents"][0]["id"]
    intruder = token_client(other_facility.slug, role="clinician")
    before = _written(db, facility)
    for client, path_base, doc, status in [(intruder, base, some, 403), (api, _base(facility, uuid.uuid4()), some, 404),
                                           (api, base, uuid.uuid4(), 404)]:
        # A guessed document: only the routes naming one (the list and the upload name none).
        for answer in _every_route(client, path_base, doc, naming_a_document_only=status == 404 and path_base == base):
            assert answer.status_code == status, (answer.request.url, answer.text[:200])
            assert "Mercy" not in answer.text and "Chebet" not in answer.text
    assert intruder.get(_base(other_facility, person["id"])).status_code == 404
    with db.tenant(facility.slug) as conn:
        sibling = new_patient(conn, clinician, family_name="Chebet", given_names="Joy", sex="female",
                              birth_date=dt.date(1983, 6, 1))["id"]
    misplaced = _base(facility, sibling)  # this chart's document under another patient's address
    assert api.get(f"{misplaced}/{some}/content").status_code == 404
    assert _file(api, f"{misplaced}/{some}", LETTER, method="put", reason="another's document").status_code == 404
    assert api.post(f"{misplaced}/{some}/entered-in-error", json={"reason": "another's"}).status_code == 404
    assert _written(db, facility) == before


def test_fhir_serves_each_document_as_a_document_reference_pointing_at_its_audited_file(api, token_client, db,
                                                                                      facility, other_facility,
                                                                                      person):
    """The FHIR facade here rather than under tests/interop: it reuses this module's facilities and documents."""
    fhir = f"/api/t/{facility.slug}/fhir"
    photo = next(d for d in api.get(_base(facility, person["id"])).json()["documents"]
                 if d["category"] == "clinical_photograph")
    found = valid(api.get(f"{fhir}/DocumentReference", params={"patient": str(person["id"]),
                                                               "category": "clinical_photograph"}).json())
    assert [e["resource"]["id"] for e in found["entry"]] == [str(photo["root_id"])]
    reference = valid(api.get(f"{fhir}/DocumentReference/{photo['root_id']}").json())
    attachment = reference["content"][0]["attachment"]
    assert (reference["status"], reference["description"], reference["category"][0]["coding"][0]["code"]) == (
        "current", "Left foot ulcer, day 3", "clinical_photograph")
    assert (attachment["contentType"], attachment["size"], attachment["hash"]) == (
        "image/png", len(WOUND), base64.b64encode(hashlib.sha1(WOUND).digest()).decode())  # noqa: S324 -- FHIR's
    assert api.get(attachment["url"]).content == WOUND  # the url is the audited route
    everything = valid(api.get(f"{fhir}/Patient/{person['id']}/$everything").json())
    assert str(photo["root_id"]) in {e["resource"]["id"] for e in everything["entry"]
                                     if e["resource"]["resourceType"] == "DocumentReference"}
    withdrawn = api.get(f"{fhir}/DocumentReference", params={"patient": str(person["id"]), "category": "ecg"})
    assert valid(withdrawn.json()).get("entry", []) == []  # the ECG entered in error is no current document
    statement = valid(api.get(f"{fhir}/metadata").json())
    [served] = [r for r in statement["rest"][0]["resource"] if r["type"] == "DocumentReference"]
    assert {p["name"] for p in served["searchParam"]} == {"patient", "category", "date", "_count"}
    desk = token_client(facility.slug, role="registrar")  # the desk sees only its categories, through the API
    chart_only = token_client(facility.slug, permissions=["clinical.chart.read"])
    kinds = {e["resource"]["resourceType"] for e in chart_only.get(f"{fhir}/Patient/{person['id']}/$everything"
                                                                   ).json()["entry"]}
    assert "Patient" in kinds and "DocumentReference" not in kinds
    assert desk.get(f"{fhir}/DocumentReference/{photo['root_id']}").status_code == 403
    intruder = token_client(other_facility.slug, role="clinician")
    assert intruder.get(f"{fhir}/DocumentReference/{photo['root_id']}").status_code == 403
    assert api.get(f"{fhir}/DocumentReference/{uuid.uuid4()}").status_code == 404
    logged = {e.event_type for e in audit.patient_access_log(db, facility.slug, person["id"])}
    assert "record.document.read" in logged


def test_the_demo_files_a_letter_a_consent_form_and_a_photograph_once(api, db, facility, person, clinician):
    with db.tenant(facility.slug) as conn:  # a third adult: the demo files on three charts
        new_patient(conn, clinician, family_name="Mutua", given_names="Paul", sex="male",
                    birth_date=dt.date(1960, 5, 5))
    assert generate_document_demo(db, [facility.slug]) == 3
    assert generate_document_demo(db, [facility.slug]) == 0
    with db.tenant(facility.slug) as conn:
        filed = conn.execute(sa.text(
            "SELECT e.patient_id, e.id, d.category FROM entry e JOIN document d ON d.entry_id = e.id "
            "WHERE e.author_id = :demo ORDER BY d.category"), {"demo": demo_principal(facility.slug).account_id}).all()
    assert [f.category for f in filed] == ["clinical_photograph", "consent_form", "referral_letter"]
    for patient_id, doc_id, category in filed:
        served = api.get(f"{_base(facility, patient_id)}/{doc_id}/content")
        assert served.status_code == 200 and served.content[:5] == (
            b"\x89PNG\r" if category == "clinical_photograph" else b"%PDF-"), served.text[:200]


def test_a_dropped_facility_takes_its_documents_bytes_with_it(token_client, db, other_facility, clinician):
    """The bytes live in the facility's schema (their TOAST table too), so DROP SCHEMA takes them: no file is left
    anywhere. Last in the module: it drops the other facility."""
    with db.tenant(other_facility.slug) as conn:
        someone = new_patient(conn, clinician, family_name="Kiprop", given_names="Amos", sex="male",
                              birth_date=dt.date(1970, 1, 1))
    filed = _file(token_client(other_facility.slug, role="clinician"), _base(other_facility, someone["id"]), LETTER)
    assert filed.status_code == 201, filed.text
    schema = tenant_schema(other_facility.slug)
    held = sa.text("SELECT c.oid, c.reltoastrelid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                   "WHERE n.nspname = :s AND c.relname = 'document_content'")
    with db.control() as conn:
        table, toast = conn.execute(held, {"s": schema}).one()
        storage = conn.execute(sa.text("SELECT attstorage FROM pg_attribute WHERE attrelid = :t AND "
                                       "attname = 'content'"), {"t": table}).scalar()
    assert toast != 0 and storage == "e"  # out of line, uncompressed (t0038)
    drop_tenant(db, other_facility.slug)
    with db.control() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM pg_class WHERE oid IN (:t, :x)"),
                            {"t": table, "x": toast}).scalar()
    assert left == 0
