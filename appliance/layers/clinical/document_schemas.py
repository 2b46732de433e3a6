"""Request and response models of documents on the record (appliance/layers/clinical/documents.py): explicit
allow-lists, as appliance/layers/clinical/schemas.py's are. An upload comes as a multipart form (`DocumentForm`, the
file and its fields as sent), read into `DocumentIn` for its rules; nothing here carries a file's bytes back."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from litestar.datastructures import UploadFile
from pydantic import Field, ValidationError, field_validator

from appliance.layers.clinical.errors import Invalid
from appliance.layers.clinical.schemas import EntryOut, Reason, Retraction, _In, _Out
from appliance.substrate.problems import validator_message

Category = Literal["referral_letter", "consent_form", "ecg", "outside_result", "outside_imaging", "identity_document",
                   "clinical_photograph", "other"]


@dataclass
class DocumentForm:
    """The multipart form of an upload or a correction, as sent: its text fields are read by `DocumentIn`."""

    category: str = ""
    title: str = ""
    document_date: str = ""
    reason: str = ""
    file: UploadFile | None = None


class DocumentIn(_In):
    category: Category = Field(description="referral_letter, consent_form, ecg, outside_result, outside_imaging, "
                                           "identity_document, clinical_photograph or other")
    title: str = Field(min_length=1, max_length=200, description="what the document is, as a clinician would file it",
                       examples=["Referral letter from Mercy Clinic"])
    document_date: dt.date | None = Field(default=None, description="the date written on the document, if any")

    @field_validator("title", mode="before")
    @classmethod
    def _without_nul(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold NUL and no person types one: dropped, not a 500.
        return value.replace("\x00", "") if isinstance(value, str) else value


class DocumentAmend(DocumentIn):
    reason: Reason


Read = TypeVar("Read", bound=DocumentIn)


def read_form(form: DocumentForm, model: type[Read]) -> Read:
    """The form's text fields as `model`, or a 422 naming the first field at fault."""
    sent = {k: v for k, v in (("category", form.category), ("title", form.title),
                              ("document_date", form.document_date), ("reason", form.reason)) if v}
    if model is DocumentIn:
        sent.pop("reason", None)
    try:
        return model.model_validate(sent)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][-1]) if first["loc"] else None
        raise Invalid(f"invalid {field}: {validator_message(first['msg'])}" if field else
                      validator_message(first["msg"]), field=field) from None


def read_reason(text: str | None) -> str:
    """A withdrawal's reason as a form sends it, or a 422 on `reason`."""
    try:
        return Retraction.model_validate({"reason": text or ""}).reason
    except ValidationError as exc:
        raise Invalid(f"invalid reason: {validator_message(exc.errors()[0]['msg'])}", field="reason") from None


class DocumentOut(EntryOut):
    occurred_at: dt.datetime = Field(description="when this version was filed")
    category: str
    category_words: str = Field(description="the category as a person reads it")
    title: str
    document_date: dt.date | None
    media_type: str = Field(description="the type the file's first bytes say it is: application/pdf, image/jpeg or "
                                        "image/png")
    size: int = Field(description="the file's size in bytes")
    sha256: str = Field(description="the file's SHA-256, hexadecimal: what was kept, byte for byte")


class WithdrawnDocumentOut(_Out):
    id: uuid.UUID
    root_id: uuid.UUID
    category: str
    category_words: str
    title: str
    withdrawn_by: uuid.UUID
    withdrawn_at: dt.datetime
    withdrawn_reason: str | None


class DocumentListOut(_Out):
    patient_id: uuid.UUID
    documents: list[DocumentOut] = Field(description="the documents in force, newest first")
    withdrawn: list[WithdrawnDocumentOut] = Field(description="those marked entered in error: no longer served")
    may_file: list[str] = Field(description="the categories the caller may upload and see")
