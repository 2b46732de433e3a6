"""Documents on the record: the clinical layer's scanned and uploaded files (the `document` entry, tenant revision
t0038) — a referral letter from a private clinic, a signed consent form, an ECG strip, an outside laboratory
report or imaging, an identity document, a photograph of a wound — uploaded, corrected by a new version (a better
scan, a wrong title), withdrawn when on the wrong patient, listed and served.

What is taken: PDF, JPEG or PNG, as the file's first bytes say (a name ending .pdf around a page of HTML is refused,
whatever the client claims its type is), at most `DOCUMENT_MAX_BYTES`. The bytes are stored once per facility under
their SHA-256 (`document_content`), which the answer and the list give back so a sender can check what was kept.

Who sees what: `clinical.document.read` / `.write` let a person list, open and upload; without
`clinical.document.any_category` (registrars at the desk, ACC-031) only identity documents and referral letters,
the paper the desk takes in: a registrar sees no ECG or consent form.

Withdrawn (entered in error: the wrong patient's paper): the bytes stay, as every version of the record does, for
the audit trail and the regulator, but the content is no longer served (410): a clinician must not read another
person's letter on this chart. A superseded version (the earlier scan) is still served, as a record's history is.

The patient's own (the portal, /me): `released_documents` and `released_content` give a patient the documents in
force on their own chart of the categories the release rules show them, from when they do (`shown_from`, computed by
the caller from `policies/release.toml`: the layer reads no other layer's rules), and a file only of those; anything
else is not found (404) and a withdrawn one gone (410), as for staff.

Every upload is a write through `record.append`; every list and every opening of a file is a read on the audit
seam naming the document, never its content. Logs carry neither titles nor bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from appliance.layers.clinical import service
from appliance.layers.clinical.errors import ClinicalError, Invalid, NotFound
from appliance.layers.clinical.models import (
    DOCUMENT_CATEGORIES,
    DOCUMENT_MAX_BYTES,
    document,
    document_content,
)
from appliance.substrate import record
from appliance.substrate.principal import Principal
from appliance.substrate.record import current_clause, entry, note_access

KIND = "document"
CONTENT = "document_content"  # how opening a file reads on the patient's access log
ANY_CATEGORY = "clinical.document.any_category"
# The paper a registration desk takes in; the rest is clinical and not the desk's to read.
DESK_CATEGORIES = ("identity_document", "referral_letter")
CATEGORY_WORDS = {"referral_letter": "Referral letter", "consent_form": "Consent form", "ecg": "ECG",
                  "outside_result": "Result from elsewhere", "outside_imaging": "Imaging from elsewhere",
                  "identity_document": "Identity document", "clinical_photograph": "Clinical photograph",
                  "other": "Other"}
# The signatures the types taken begin with (PDF 1.7 / ISO 32000 section 7.5.2, JFIF/Exif SOI marker, PNG section 5.2).
MAGIC = (("application/pdf", b"%PDF-"), ("image/jpeg", b"\xff\xd8\xff"), ("image/png", b"\x89PNG\r\n\x1a\n"))
SUFFIX = {"application/pdf": "pdf", "image/jpeg": "jpg", "image/png": "png"}
MAX_MIB = DOCUMENT_MAX_BYTES // (1024 * 1024)


class TooLarge(Invalid):
    status = 413


class NotForYou(ClinicalError):
    status = 403


class Withdrawn(ClinicalError):
    status = 410


@dataclass(frozen=True)
class Checked:
    """An upload's bytes once taken: their type by their first bytes, size and SHA-256 (hex)."""

    content: bytes
    media_type: str
    size: int
    sha256: str
    sha1_base64: str


def sniff(content: bytes) -> str | None:
    """The media type the bytes begin with, of those taken; None for anything else."""
    return next((media_type for media_type, magic in MAGIC if content.startswith(magic)), None)


def check_file(content: bytes) -> Checked:
    """The bytes if they are a PDF, JPEG or PNG no larger than the limit; refused otherwise, naming `file`."""
    if not content:
        raise Invalid("the file is empty: choose the scan or photograph to upload", field="file")
    if len(content) > DOCUMENT_MAX_BYTES:
        raise TooLarge(f"the file is {len(content) / 1024 / 1024:.1f} MiB, more than the {MAX_MIB} MiB a document may "
                       "be: scan it at a lower resolution or in black and white", field="file")
    media_type = sniff(content)
    if media_type is None:
        raise Invalid("the file is not a PDF, JPEG or PNG (its first bytes say so, whatever its name): save or scan "
                      "it as one of those", field="file")
    return Checked(content, media_type, len(content), hashlib.sha256(content).hexdigest(),
                   base64.b64encode(hashlib.sha1(content, usedforsecurity=False).digest()).decode())


def may_see(principal: Principal, category: str) -> bool:
    return category in DESK_CATEGORIES or principal.can(ANY_CATEGORY)


def _category_allowed(principal: Principal, category: str) -> None:
    if not may_see(principal, category):
        raise NotForYou(f"your role takes in only {' and '.join(CATEGORY_WORDS[c].lower() for c in DESK_CATEGORIES)}"
                        f"; a {CATEGORY_WORDS.get(category, category).lower()} is a clinician's or nurse's to file",
                        field="category")


_COLUMNS = (entry.c.id, entry.c.root_id, entry.c.patient_id, entry.c.status.label("entry_status"),
            entry.c.encounter_id, entry.c.author_id, service.RECORD_AUTHOR_ID.label("record_author_id"),
            entry.c.occurred_at, entry.c.recorded_at, document.c.category, document.c.title,
            document.c.document_date, document.c.content_sha256.label("sha256"), document_content.c.media_type,
            document_content.c.size)
_JOINED = entry.join(document, document.c.entry_id == entry.c.id).join(
    document_content, document_content.c.sha256 == document.c.content_sha256)


def _shaped(row: dict) -> dict:
    return {**row, "category_words": CATEGORY_WORDS.get(row["category"], row["category"])}


def content_path(tenant: str, patient_id: uuid.UUID, entry_id: uuid.UUID) -> str:
    """Where the API serves a version's file (appliance/layers/clinical/document_routes.py), audited there."""
    return f"/api/t/{tenant}/patients/{patient_id}/documents/{entry_id}/content"


def for_interop(row: dict, tenant: str) -> dict:
    """A document row read by another room (the FHIR facade) with its category's words and its file's address."""
    return {**_shaped(row), "url": content_path(tenant, row["patient_id"], row["id"])}


def _in_force(patient_id: uuid.UUID) -> sa.Select:
    """The patient's documents in force, newest first (a withdrawal has no detail row: the join leaves it out)."""
    return (sa.select(*_COLUMNS).select_from(_JOINED)
            .where(entry.c.patient_id == patient_id, entry.c.kind == KIND, current_clause())
            .order_by(entry.c.recorded_at.desc()))


def current_documents(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> list[dict]:
    """The patient's documents in force this person may see, newest first (withdrawn ones left out). Not audited
    here: the caller notes the read of what it shows."""
    query = _in_force(patient_id)
    if not principal.can(ANY_CATEGORY):
        query = query.where(document.c.category.in_(DESK_CATEGORIES))
    return [_shaped(dict(r)) for r in conn.execute(query).mappings()]


def patient_documents(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> dict:
    """A patient's documents in force (newest first) and those marked entered in error (their titles, not their
    content). The read is audited."""
    service.patient_of(conn, patient_id)
    rows = current_documents(conn, principal, patient_id)
    note_access(conn, principal, "read", patient_id, KIND, [r["id"] for r in rows])
    withdrawn = [_shaped(w) for w in service.list_withdrawn(conn, principal, patient_id, document, KIND)
                 if may_see(principal, w["category"])]
    return {"patient_id": patient_id, "documents": rows, "withdrawn": withdrawn,
            "may_file": list(DOCUMENT_CATEGORIES if principal.can(ANY_CATEGORY) else DESK_CATEGORIES)}


def _store(conn: Connection, checked: Checked) -> None:
    """The bytes, unless the facility holds them already (the same scan on a second version or chart)."""
    conn.execute(pg_insert(document_content).values(sha256=checked.sha256, sha1_base64=checked.sha1_base64,
                                                    media_type=checked.media_type, size=checked.size,
                                                    content=checked.content)
                 .on_conflict_do_nothing(index_elements=["sha256"]))


def _check_day(day: dt.date | None, today: dt.date) -> None:
    if day is not None and day > today:
        raise Invalid(f"the document's date, {day.isoformat()}, is in the future: give the date written on it",
                      field="document_date")


def _written(conn: Connection, appended: record.Entry) -> dict:
    row = conn.execute(sa.select(*_COLUMNS).select_from(_JOINED).where(entry.c.id == appended.id)).mappings().one()
    return _shaped(dict(row))


def upload(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, category: str, title: str,
           document_date: dt.date | None, content: bytes, today: dt.date,
           encounter_id: uuid.UUID | None = None) -> dict:
    """File one document on the patient's chart. Refused before anything is written: a type or size not taken
    (422, 413), a category not this person's (403), a date in the future (422)."""
    _category_allowed(principal, category)
    service.require_chart(conn, patient_id, encounter_id)
    _check_day(document_date, today)
    checked = check_file(content)
    _store(conn, checked)
    appended = record.append(conn, principal, KIND, patient_id=patient_id, encounter_id=encounter_id,
                             detail={"category": category, "title": title, "document_date": document_date,
                                     "content_sha256": checked.sha256})
    return _written(conn, appended)


def _document_of(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID) -> dict:
    """The version `entry_id` of a document on this patient's chart that this person may see; 404 otherwise (a
    guessed id, another patient's document, or one of a category not theirs: nothing says it exists)."""
    row = conn.execute(sa.select(*_COLUMNS).select_from(_JOINED)
                       .where(entry.c.id == entry_id, entry.c.patient_id == patient_id, entry.c.kind == KIND)
                       ).mappings().first()
    if row is None or not may_see(principal, row["category"]):
        raise NotFound(f"no document {entry_id} on this patient's chart", entry_id=str(entry_id))
    return dict(row)


def correct(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID, *, category: str,
            title: str, document_date: dt.date | None, content: bytes | None, reason: str, today: dt.date) -> dict:
    """The next version of a document, with the reason: a better scan (new bytes) or its category, title or date
    put right (no file: the same bytes). The earlier version stays in its history. A version corrected since: 409."""
    service.patient_of(conn, patient_id)
    earlier = _document_of(conn, principal, patient_id, entry_id)
    _category_allowed(principal, category)
    _check_day(document_date, today)
    sha256 = earlier["sha256"]
    if content:
        checked = check_file(content)
        _store(conn, checked)
        sha256 = checked.sha256
    appended = record.append(conn, principal, KIND, patient_id=patient_id, supersedes=entry_id, reason=reason,
                             detail={"category": category, "title": title, "document_date": document_date,
                                     "content_sha256": sha256})
    return _written(conn, appended)


def withdraw(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID, reason: str) -> dict:
    """Mark a document entered in error (the wrong patient's paper): it leaves the list and its file is no longer
    served; the bytes and every version stay in the record's history for the audit trail."""
    service.patient_of(conn, patient_id)
    _document_of(conn, principal, patient_id, entry_id)
    return service.retraction_of(conn, record.retract(conn, principal, entry_id, reason))


def content(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID) -> dict:
    """One version's file to serve (its bytes, checked type, size, SHA-256, title), the opening audited naming the
    document. Refused: a document not on this chart or not this person's to see (404), one withdrawn (410)."""
    service.patient_of(conn, patient_id)
    return _opened(conn, principal, patient_id, _document_of(conn, principal, patient_id, entry_id))


# When a document reaches its patient's portal, from its category and when it was filed; None: never.
ShownFrom = Callable[[str, dt.datetime], dt.datetime | None]


def _released(row: Mapping, shown_from: ShownFrom, now: dt.datetime) -> bool:
    at = shown_from(row["category"], row["recorded_at"])
    return at is not None and at <= now


def released_documents(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, shown_from: ShownFrom,
                       now: dt.datetime) -> list[dict]:
    """The patient's own documents in force that the release rules show them now, newest first; the read audited as
    theirs, naming the documents shown (none: nothing noted, as the portal's other pages do)."""
    rows = [_shaped(dict(r)) for r in conn.execute(_in_force(patient_id)).mappings()
            if _released(r, shown_from, now)]
    if rows:
        note_access(conn, principal, "read", patient_id, KIND, [r["id"] for r in rows])
    return rows


def released_content(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID, *,
                     shown_from: ShownFrom, now: dt.datetime) -> dict:
    """A version's file for its patient, if the release rules show its category by now; the opening audited as
    theirs. Refused: not on this chart, or not released to them (404: nothing says it exists), withdrawn (410)."""
    row = conn.execute(sa.select(*_COLUMNS).select_from(_JOINED)
                       .where(entry.c.id == entry_id, entry.c.patient_id == patient_id, entry.c.kind == KIND)
                       ).mappings().first()
    if row is None or not _released(row, shown_from, now):
        raise NotFound(f"no document {entry_id} in your record", entry_id=str(entry_id))
    return _opened(conn, principal, patient_id, dict(row))


def _opened(conn: Connection, principal: Principal, patient_id: uuid.UUID, found: dict) -> dict:
    """A version found on the chart, with its bytes, unless its document was withdrawn (410); the opening audited."""
    entry_id = found["id"]
    latest = conn.execute(sa.select(entry.c.status).where(entry.c.root_id == found["root_id"], current_clause())
                          ).scalar_one()
    if latest == "entered_in_error":
        raise Withdrawn(f"document {entry_id} was marked entered in error (filed on the wrong chart, or not this "
                        "patient's): it is kept for the audit trail and no longer shown", entry_id=str(entry_id))
    found["content"] = conn.execute(sa.select(document_content.c.content)
                                    .where(document_content.c.sha256 == found["sha256"])).scalar_one()
    note_access(conn, principal, "read", patient_id, CONTENT, [entry_id])
    return found
