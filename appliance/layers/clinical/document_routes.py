"""HTTP routes of documents on the record (appliance/layers/clinical/documents.py), under
/api/t/{tenant}/patients/{patient_id}/documents: the list, an upload (multipart), a document's file, a correction
(a better scan, or its fields put right) and entered in error.

Uploads are multipart forms, the one body these routes take; the route's body limit is set here, a little above
the largest file a document may be (`DOCUMENT_MAX_BYTES`) to leave room for the form's fields, so a larger file is
refused with 413 and a sentence before it is read whole, and the rest of the API keeps Litestar's default.

A file is served with the type its first bytes were checked to be, never what the uploader claimed; an image is
shown inline, a PDF downloaded (`Content-Disposition: attachment`): the app's Content-Security-Policy
(`object-src 'none'`, `frame-ancestors 'none'`) and the sandbox this route adds keep a browser's PDF viewer from
running inside the appliance's origin, and a PDF can carry script. `nosniff` and `no-store` come with every answer
(appliance/web/auth.py's security headers).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post, put
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException
from litestar.params import Body, FromPath, JSONBody
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_400_BAD_REQUEST,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
)

from appliance.layers.clinical import documents
from appliance.layers.clinical.document_schemas import (
    DocumentAmend,
    DocumentForm,
    DocumentIn,
    DocumentListOut,
    DocumentOut,
    read_form,
)
from appliance.layers.clinical.models import DOCUMENT_MAX_BYTES
from appliance.layers.clinical.routes import PATIENT, ClinicalController, care_relationship_guard

# The chart's transaction opened with the care decision the guard asked for: the one way every chart route opens.
from appliance.layers.clinical.routes import _tenant as opened_chart
from appliance.layers.clinical.schemas import EntryVersion, Retraction
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_today

Asking = Request[Principal, Any, Any]
Id = FromPath[uuid.UUID]
READ, WRITE = "clinical.document.read", "clinical.document.write"
# The file and the form's few short fields (category, title, date, reason) and their boundaries.
MAX_FORM_BYTES = DOCUMENT_MAX_BYTES + 64 * 1024
Multipart = Annotated[DocumentForm, Body(media_type=RequestEncodingType.MULTI_PART)]
# Added to the app's policy for a served file (both apply, so the stricter wins): nothing in it runs, loads or frames.
FILE_POLICY = "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"
TOO_LARGE = (f"the upload is larger than the {documents.MAX_MIB} MiB a document may be: scan it at a lower "
             "resolution or in black and white; nothing was filed")


def _opt(permission: str) -> dict:
    return {"permission": permission, "care_relationship": True}


NOT_A_FORM = ("send the document as a multipart/form-data form: the file in `file`, with `category`, `title` and "
              "optionally `document_date` (and `reason` for a correction)")


def _too_large(_: Request, exc: HTTPException) -> Response:
    return Response({"status_code": exc.status_code, "detail": TOO_LARGE, "field": "file"},
                    status_code=exc.status_code)


def _not_a_form(_: Request, exc: HTTPException) -> Response:
    # The only 400 the upload routes give: a body Litestar could not read as a multipart form (JSON, urlencoded...).
    return Response({"status_code": exc.status_code, "detail": NOT_A_FORM, "received": exc.detail},
                    status_code=exc.status_code)


# The upload routes' own: a withdrawal is JSON, and its refusals are the clinical API's.
FORM_REFUSALS = {HTTP_413_REQUEST_ENTITY_TOO_LARGE: _too_large, HTTP_400_BAD_REQUEST: _not_a_form}


def read_upload(form: DocumentForm) -> bytes:
    """The uploaded file's bytes (none if no file was sent), the spooled file closed."""
    if form.file is None:
        return b""
    try:
        return form.file.file.read(DOCUMENT_MAX_BYTES + 1)
    finally:
        form.file.file.close()


def file_response(found: dict) -> Response:
    """A document's file: its checked type, inline if an image, a download if a PDF."""
    disposition = "inline" if found["media_type"].startswith("image/") else "attachment"
    name = f"document-{found['id']}.{documents.SUFFIX[found['media_type']]}"
    return Response(found["content"], media_type=found["media_type"], headers={
        "content-disposition": f'{disposition}; filename="{name}"', "content-security-policy": FILE_POLICY,
        "x-content-sha256": found["sha256"]})


class DocumentController(Controller):
    path = "/api/t/{tenant:str}" + PATIENT + "/documents"
    tags = ["clinical", "documents"]
    guards = [care_relationship_guard]
    exception_handlers = ClinicalController.exception_handlers

    @get("", operation_id="ClinicalListDocuments", opt=_opt(READ), sync_to_thread=True)
    def list_documents(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id) -> DocumentListOut:
        """The patient's documents in force, newest first (category, title, the date on it, who filed it, type,
        size, SHA-256), and those marked entered in error. Without `clinical.document.any_category` (the desk),
        only identity documents and referral letters. The read is audited."""
        with opened_chart(state, request, tenant) as conn:
            return DocumentListOut.model_validate(documents.patient_documents(conn, request.user, patient_id))

    @post("", operation_id="ClinicalUploadDocument", opt=_opt(WRITE), sync_to_thread=True,
          status_code=HTTP_201_CREATED, request_max_body_size=MAX_FORM_BYTES, exception_handlers=FORM_REFUSALS)
    def upload_document(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                        data: Multipart) -> DocumentOut:
        """File a document: a multipart form with `file` (PDF, JPEG or PNG, at most 10 MiB), `category`, `title` and
        `document_date` (optional, the date written on it). The type is read from the file's first bytes, never its
        name or Content-Type. Refused with nothing written: another type or an empty file (422 on `file`), too
        large (413), a category not the caller's (403), a date in the future (422)."""
        content = read_upload(data)
        fields = read_form(data, DocumentIn)
        with opened_chart(state, request, tenant) as conn:
            return DocumentOut.model_validate(documents.upload(
                conn, request.user, patient_id, category=fields.category, title=fields.title,
                document_date=fields.document_date, content=content, today=facility_today(state.db, tenant)))

    @get("/{entry_id:uuid}/content", operation_id="ClinicalReadDocumentContent", opt=_opt(READ),
         sync_to_thread=True, media_type="application/octet-stream")
    def document_content(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                         entry_id: Id) -> Response:
        """The file of one version of a document, byte for byte as filed, with the type its first bytes were
        checked to be: an image inline, a PDF as a download. Every opening is audited on the patient's record
        (naming the document, never its content). A document marked entered in error is no longer served (410)."""
        with opened_chart(state, request, tenant) as conn:
            found = documents.content(conn, request.user, patient_id, entry_id)
        return file_response(found)

    @put("/{entry_id:uuid}", operation_id="ClinicalCorrectDocument", opt=_opt(WRITE), sync_to_thread=True,
         request_max_body_size=MAX_FORM_BYTES, exception_handlers=FORM_REFUSALS)
    def correct_document(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id, entry_id: Id,
                         data: Multipart) -> DocumentOut:
        """A corrected version of a document, with `reason`: a better scan (send `file`) or its category, title or
        date put right (no file: the same bytes are kept). The earlier version stays in its history and is still
        served. A version corrected since: 409."""
        content = read_upload(data)
        fields = read_form(data, DocumentAmend)
        with opened_chart(state, request, tenant) as conn:
            return DocumentOut.model_validate(documents.correct(
                conn, request.user, patient_id, entry_id, category=fields.category, title=fields.title,
                document_date=fields.document_date, content=content or None, reason=fields.reason,
                today=facility_today(state.db, tenant)))

    @post("/{entry_id:uuid}/entered-in-error", operation_id="ClinicalWithdrawDocument", opt=_opt(WRITE),
          sync_to_thread=True, status_code=HTTP_200_OK)
    def withdraw_document(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                          entry_id: Id, data: JSONBody[Retraction]) -> EntryVersion:
        """Mark a document entered in error (another patient's paper), with the reason: it leaves the list and its
        file is no longer served; it stays in the record's history for the audit trail."""
        with opened_chart(state, request, tenant) as conn:
            return EntryVersion.model_validate(
                documents.withdraw(conn, request.user, patient_id, entry_id, data.reason))
