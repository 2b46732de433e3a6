"""Documents in the tenant portal: a patient's "Documents" chart tab — the documents filed on the chart (category,
title, the date on it, who filed it, when, size), each opened through an audited route, the form to upload one (a
multipart form: the file, its category, title and date), a better scan or corrected title for each, marking one
entered in error, and those withdrawn.

It keeps the portal's rules (appliance/web/portal.py): server-rendered, no script, each route declares the
permission the documents API declares for the same act (`clinical.document.read` / `.write`), patient pages pass
the care-relationship guard, forms carry the CSRF token and Post/Redirect/Get, and a refusal is the page again with
its sentence beside the field (422, 413 or 403), nothing written. The upload routes take a body a little larger than
a document may be (`MAX_FORM_BYTES`), the rest of the portal Litestar's default. A file is served as the API serves
it (`file_response`): an image inline, a PDF as a download. Read and written only through the clinical layer's
`documents` service, which audits every listing and every opening of a file.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from litestar import Request, Response, Router, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException
from litestar.params import Body
from litestar.response import Template
from litestar.status_codes import HTTP_413_REQUEST_ENTITY_TOO_LARGE
from sqlalchemy.engine import Connection

from appliance.layers.clinical import documents
from appliance.layers.clinical.document_routes import MAX_FORM_BYTES, TOO_LARGE, file_response, read_upload
from appliance.layers.clinical.document_schemas import DocumentAmend, DocumentForm, DocumentIn, read_form, read_reason
from appliance.substrate.record import RecordError
from appliance.substrate.tenancy import facility_today
from appliance.web import portal
from appliance.web.errors import sentence
from appliance.web.portal import (
    HELPERS,
    PATIENT,
    Asking,
    ChartTab,
    FormData,
    Id,
    Tenant,
    banner,
    form_values,
    page,
    people_named,
    see_other,
    template_message,
)

READ, WRITE = "clinical.document.read", "clinical.document.write"
Multipart = Annotated[DocumentForm, Body(media_type=RequestEncodingType.MULTI_PART)]
# Before "Registration", the tab list's last.
portal.CHART_TABS.insert(len(portal.CHART_TABS) - 1, ChartTab("documents", "Documents", "/documents", READ))
portal.NOTICES.update({
    "document-filed": "Document filed on the chart.",
    "document-corrected": "Document corrected; the earlier version stays in its history with your reason.",
    "document-withdrawn": "Document marked entered in error, with your reason; it is no longer shown.",
})


def _page(request: Asking, tenant: str, patient_id: uuid.UUID, *, status: int = 200, values: dict | None = None,
          errors: dict | None = None, form: str = "upload") -> Template:
    with request.app.state.db.tenant(tenant) as conn:
        top = banner(conn, request.user, patient_id)
        found = documents.patient_documents(conn, request.user, patient_id)
    names = people_named(request.app.state.db, {d["author_id"] for d in found["documents"]}
                         | {w["withdrawn_by"] for w in found["withdrawn"]})
    categories = [(c, documents.CATEGORY_WORDS[c]) for c in found["may_file"]]
    return page(request, "documents/documents.html", status=status, active="patients", patient_id=patient_id,
                tab="documents", found=found, names=names, categories=categories, form=form,
                values=values or {}, errors=errors or {}, max_mib=documents.MAX_MIB, **top, **HELPERS)


@get(PATIENT + "/documents", operation_id="PortalDocuments", opt={"permission": READ}, sync_to_thread=True,
     include_in_schema=False)
def documents_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """The documents filed on the chart, the upload form and those withdrawn."""
    return _page(request, tenant, patient_id)


def _values(form: DocumentForm) -> dict:
    return {"category": form.category, "title": form.title, "document_date": form.document_date,
            "reason": form.reason}


def _write(request: Asking, tenant: str, patient_id: uuid.UUID, values: dict, act: Callable[[Connection], Any],
           done: str, *, form: str) -> Response:
    """One form's write in a tenant transaction; a refusal (422, 413, 403) comes back beside the field it names with
    the form as sent; done, the tab with what happened."""
    try:
        with request.app.state.db.tenant(tenant) as conn:
            act(conn)
    except RecordError as exc:
        if exc.status not in (403, 413, 422):
            raise
        return _page(request, tenant, patient_id, status=exc.status, values=values, form=form,
                     errors={exc.extra.get("field") or "form": template_message(sentence(exc.detail))})
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/documents?done={done}")


def _too_large(request: Request, exc: HTTPException) -> Response:
    """A body past the route's limit, refused before it is read whole: the tab again with the sentence."""
    tenant, patient_id = request.path_params["tenant"], request.path_params["patient_id"]
    return _page(request, tenant, patient_id, status=exc.status_code, errors={"file": sentence(TOO_LARGE)})


_UPLOADS = {"request_max_body_size": MAX_FORM_BYTES,
            "exception_handlers": {**portal.EXCEPTION_HANDLERS, HTTP_413_REQUEST_ENTITY_TOO_LARGE: _too_large}}


@post(PATIENT + "/documents", operation_id="PortalFileDocument", opt={"permission": WRITE}, sync_to_thread=True,
      include_in_schema=False, **_UPLOADS)
def file_document(request: Asking, tenant: Tenant, patient_id: Id, data: Multipart) -> Response:
    """File a document: the file (PDF, JPEG or PNG), its category, title and date."""
    content = read_upload(data)

    def act(conn: Connection) -> dict:
        fields = read_form(data, DocumentIn)
        return documents.upload(conn, request.user, patient_id, category=fields.category, title=fields.title,
                                document_date=fields.document_date, content=content,
                                today=facility_today(request.app.state.db, tenant))

    return _write(request, tenant, patient_id, _values(data), act, "document-filed", form="upload")


@post(PATIENT + "/documents/{entry_id:uuid}", operation_id="PortalCorrectDocument", opt={"permission": WRITE},
      sync_to_thread=True, include_in_schema=False, **_UPLOADS)
def correct_document(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: Multipart) -> Response:
    """A better scan, or the category, title or date put right (no file: the same bytes), with the reason."""
    content = read_upload(data)

    def act(conn: Connection) -> dict:
        fields = read_form(data, DocumentAmend)
        return documents.correct(conn, request.user, patient_id, entry_id, category=fields.category,
                                 title=fields.title, document_date=fields.document_date, content=content or None,
                                 reason=fields.reason, today=facility_today(request.app.state.db, tenant))

    return _write(request, tenant, patient_id, _values(data), act, "document-corrected", form=f"correct-{entry_id}")


@get(PATIENT + "/documents/{entry_id:uuid}/content", operation_id="PortalDocumentContent", opt={"permission": READ},
     sync_to_thread=True, include_in_schema=False)
def document_content(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id) -> Response:
    """The document's file, its opening audited: an image shown, a PDF downloaded."""
    with request.app.state.db.tenant(tenant) as conn:
        found = documents.content(conn, request.user, patient_id, entry_id)
    return file_response(found)


@post(PATIENT + "/documents/{entry_id:uuid}/entered-in-error", operation_id="PortalWithdrawDocument",
      opt={"permission": WRITE}, sync_to_thread=True, include_in_schema=False)
def withdraw_document(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """Mark a document entered in error, with the reason."""
    values = form_values(data)

    def act(conn: Connection) -> dict:
        return documents.withdraw(conn, request.user, patient_id, entry_id, read_reason(values.get("reason")))

    return _write(request, tenant, patient_id, values, act, "document-withdrawn", form=f"withdraw-{entry_id}")


ROUTES = [documents_page, file_document, correct_document, document_content, withdraw_document]

documents_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES, exception_handlers=portal.EXCEPTION_HANDLERS,
                          guards=[portal.care_relationship_guard], tags=["portal"], include_in_schema=False)
