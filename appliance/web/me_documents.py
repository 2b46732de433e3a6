"""The patient's own documents, `/me/documents` (page) and `/api/me/documents` (JSON, for an app): the files filed on
their record at every facility that holds one (a referral letter to carry to the next clinic, a result from
elsewhere) that the release rules let them see (`policies/release.toml`, `[documents]`: by category, at once or some
hours after filing; a category not named never), each to download — read-only.

Each facility's part is read in its own transaction through the clinical layer's `documents` service, which notes the
read on that facility's audit trail as the patient's own ("a document filed on your chart"), and each opening of a
file too ("... opened or downloaded"). A file is served as the staff route serves it (`document_routes.file_response`:
its checked type, an image inline and a PDF as a download, the sandbox policy, with `nosniff` and `no-store` from the
app's security headers). The download names its facility and the version's id; a document of another patient, of a
category not released (or not yet), or at a facility that holds no chart of this person is not found, whatever id is
sent, and one entered in error is gone (410).
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath
from litestar.response import Template
from litestar.status_codes import HTTP_410_GONE
from pydantic import BaseModel, ConfigDict, Field

from appliance.layers.clinical import documents
from appliance.layers.clinical.document_routes import file_response
from appliance.layers.clinical.errors import NotFound
from appliance.layers.patient import portal as patient_portal

PERMISSION = "patient.document.read"
NOT_SHOWN = ("Documents filed on your record are not shown on this portal: the facilities keep them, and give you a "
             "copy on request.")


class MyDocumentOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    facility: str = Field(description="the facility's code, as the download's address names it")
    facility_name: str
    id: uuid.UUID = Field(description="this version of the document")
    category: str
    category_words: str
    title: str
    document_date: dt.date | None = Field(description="the date written on it")
    filed_at: dt.datetime = Field(description="when it was filed, in the facility's time")
    media_type: str
    size: int = Field(description="bytes")
    url: str = Field(description="where to download the file")


class MyDocumentsOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shown: bool = Field(description="false: the release rules show no document on the portal (see `note`)")
    note: str | None
    documents: list[MyDocumentOut] = Field(description="newest first, every facility")


def _url(facility: str, entry_id: uuid.UUID) -> str:
    return f"/api/me/documents/{facility}/{entry_id}"


def my_documents(state: State, request: Request) -> MyDocumentsOut:
    """The patient's released documents across their facilities (see the module docstring), each read audited."""
    rules = state.release_rules
    if not rules.documents:
        return MyDocumentsOut(shown=False, note=NOT_SHOWN, documents=[])
    now = dt.datetime.now(dt.UTC)
    found = []
    for holding in patient_portal.records_of(state.db, request.user):
        with state.db.tenant(holding.tenant) as conn:
            rows = documents.released_documents(conn, request.user, holding.patient_id,
                                                shown_from=rules.document_shown_from, now=now)
        # The day it was filed is the facility's: at 01:30 in Nairobi it is not yet the next day in UTC.
        zone = zoneinfo.ZoneInfo(holding.timezone)
        found += [MyDocumentOut(facility=holding.tenant, facility_name=holding.facility, id=r["id"],
                                category=r["category"], category_words=r["category_words"], title=r["title"],
                                document_date=r["document_date"], filed_at=r["recorded_at"].astimezone(zone),
                                media_type=r["media_type"], size=r["size"], url=_url(holding.tenant, r["id"]))
                  for r in rows]
    return MyDocumentsOut(shown=True, note=None if found else "No document on your record is shown here yet.",
                          documents=sorted(found, key=lambda d: d.filed_at, reverse=True))


@get("/api/me/documents", operation_id="PatientListDocuments", tags=["patient"], opt={"permission": PERMISSION},
     sync_to_thread=True)
def documents_api(request: Request, state: State) -> MyDocumentsOut:
    """Your documents: the files filed on your record at every facility that the release rules show you (a referral
    letter at once, a result from elsewhere some days after filing), newest first, each with where to download it.
    Read only; each facility notes that you read them."""
    return my_documents(state, request)


@get("/api/me/documents/{facility:str}/{entry_id:uuid}", operation_id="PatientDownloadDocument", tags=["patient"],
     opt={"permission": PERMISSION}, sync_to_thread=True, media_type="application/octet-stream")
def download(request: Request, state: State, facility: FromPath[str], entry_id: FromPath[uuid.UUID]) -> Response:
    """One of your documents' file, byte for byte as filed: an image inline, a PDF as a download. Only a document on
    your own record at that facility that the release rules show you (anything else: 404); one marked entered in
    error is gone (410). The facility notes that you opened it."""
    rules = state.release_rules
    for holding in patient_portal.records_of(state.db, request.user):
        if holding.tenant != facility:
            continue
        with state.db.tenant(facility) as conn:
            try:
                found = documents.released_content(conn, request.user, holding.patient_id, entry_id,
                                                   shown_from=rules.document_shown_from, now=dt.datetime.now(dt.UTC))
            except NotFound:
                continue  # another of this person's charts at the facility may hold it
            except documents.Withdrawn as exc:
                raise HTTPException(status_code=HTTP_410_GONE, detail=exc.detail) from None
        return file_response(found)
    raise NotFoundException("no such document in your record")


@get("/me/documents", operation_id="PatientDocumentsPage", tags=["patient"], opt={"permission": PERMISSION},
     sync_to_thread=True, include_in_schema=False)
def documents_page(request: Request, state: State) -> Template:
    return Template("me_documents.html", context={
        "principal": request.user, "tab": "documents", "listing": my_documents(state, request)})


ROUTES = [documents_api, download, documents_page]
