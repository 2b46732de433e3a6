"""Request and response models of the operating theatre (appliance/layers/clinical/surgery.py): explicit
allow-lists, as appliance/layers/clinical/schemas.py's are, kept beside the room they serve since that module
passed a thousand lines."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from appliance.layers.clinical.schemas import Reason, _In, _Out, aware_datetime

Urgency = Literal["elective", "urgent", "emergency"]
Anaesthesia = Literal["general", "spinal", "epidural", "regional_block", "local", "sedation"]
Phase = Literal["sign_in", "time_out", "sign_out"]
CaseStatus = Literal["scheduled", "in_theatre", "completed", "cancelled"]
Words = Annotated[str, Field(min_length=1, max_length=200)]
Prose = Annotated[str, Field(min_length=1, max_length=8000)]
OptionalProse = Annotated[str, Field(max_length=8000)] | None


def _without_nul(value: Any) -> Any:
    # PostgreSQL text cannot hold NUL and no person types one: dropped, as the other clinical bodies do.
    return value.replace("\x00", "") if isinstance(value, str) else value


class SurgeryIn(_In):
    procedure: Words = Field(description="the operation as the surgeon writes it", examples=["Appendicectomy"])
    procedure_code: Annotated[str, Field(max_length=16)] | None = Field(
        default=None, description="a code of the facility's procedure list (also its fee item's code), if any")
    planned_at: aware_datetime("the time", "2026-11-27T09:00:00+03:00") = Field(
        description="when the case is planned to start (with its UTC offset)")
    theatre: Annotated[str, Field(min_length=1, max_length=16)] = Field(description="a theatre code of the facility")
    surgeon: Words
    anaesthetist: Words | None = None
    urgency: Urgency
    anaesthesia: Anaesthesia
    encounter_id: uuid.UUID | None = Field(default=None, description="the visit or admission it belongs to")

    _nul = field_validator("procedure", "procedure_code", "theatre", "surgeon", "anaesthetist",
                           mode="before")(_without_nul)


class SurgeryCorrection(SurgeryIn):
    reason: Reason
    version_id: uuid.UUID = Field(description="the case's `id` you loaded; a case changed since is refused (409)")


class StatusChange(_In):
    to: Literal["in_theatre", "completed", "cancelled"]
    reason: Reason | None = Field(default=None, description="why the case is cancelled (required to cancel)")
    version_id: uuid.UUID | None = Field(default=None, description="the case's `id` you loaded, to be refused "
                                                                   "(409) if it changed since")

    @model_validator(mode="after")
    def _reason_to_cancel(self) -> StatusChange:
        if self.to == "cancelled" and not self.reason:
            raise ValueError("say why the case is cancelled (reason)")
        return self


class PhaseIn(_In):
    confirmed: list[Annotated[str, Field(max_length=40)]] = Field(
        max_length=20,
        description="the phase's item keys confirmed aloud (GET .../checklist lists them); every item is required")
    note: Annotated[str, Field(max_length=2000)] | None = None
    version_id: uuid.UUID | None = None

    _nul = field_validator("note", mode="before")(_without_nul)


class OperationNoteIn(_In):
    procedure_performed: Words
    findings: Prose
    complications: OptionalProse = Field(default=None, description="none: leave empty")
    blood_loss_ml: int = Field(ge=0, le=20000, description="estimated blood loss, mL")
    implants: OptionalProse = None
    specimens: OptionalProse = Field(default=None, description="what was sent, to which laboratory")
    post_op_instructions: Prose

    _nul = field_validator("procedure_performed", "findings", "complications", "implants", "specimens",
                           "post_op_instructions", mode="before")(_without_nul)


class OperationNoteCorrection(OperationNoteIn):
    reason: Reason
    version_id: uuid.UUID


class Retraction(_In):
    reason: Reason


class ChecklistItemOut(_Out):
    key: str
    text: str


class ChecklistPhaseOut(_Out):
    phase: Phase
    title: str
    when: str
    checks: list[ChecklistItemOut] = Field(description="the phase's checks, each said aloud and confirmed")
    recorded: bool
    by_name: str | None = None
    at: dt.datetime | None = None
    note: str | None = None


class OperationNoteOut(_Out):
    id: uuid.UUID
    root_id: uuid.UUID
    entry_status: str
    author_id: uuid.UUID
    recorded_at: dt.datetime
    reason: str | None
    procedure_performed: str
    findings: str
    complications: str | None
    blood_loss_ml: int
    implants: str | None
    specimens: str | None
    post_op_instructions: str


class SurgeryOut(_Out):
    id: uuid.UUID = Field(description="this version's id: send it back as version_id")
    root_id: uuid.UUID = Field(description="the case's id, the same in every version")
    patient_id: uuid.UUID
    patient_name: str
    mrn: str
    encounter_id: uuid.UUID | None
    entry_status: str
    procedure: str
    procedure_code: str | None
    procedure_name: str | None = Field(description="the procedure list's name of the code")
    planned_at: dt.datetime
    theatre: str
    theatre_name: str | None
    surgeon: str
    anaesthetist: str | None
    urgency: Urgency
    anaesthesia: Anaesthesia
    status: CaseStatus
    cancel_reason: str | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    checklist: list[ChecklistPhaseOut]
    phases_done: int
    note: OperationNoteOut | None = None
    unclosed: bool = Field(default=False, description=(
        "on today's theatre list: a case of a day before still scheduled or in theatre, which nobody closed"))


class TheatreOut(_Out):
    code: str
    name: str
    cases: list[SurgeryOut] = Field(description="the day's cases in this theatre, in time order")


class TheatreListOut(_Out):
    day: dt.date
    theatres: list[TheatreOut]
