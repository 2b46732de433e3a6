"""Request and response models of family planning (appliance/layers/clinical/family_planning.py): explicit
allow-lists, as appliance/layers/clinical/schemas.py's are, kept beside the room they serve as the theatre's are."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from appliance.layers.clinical.schemas import EntryOut, Reason, _In, _Out

Service = Literal["provided", "removal"]
ClientType = Literal["new_acceptor", "new_to_method", "continuing", "restart"]
RemovalReason = Literal["wants_pregnancy", "side_effects", "expired", "switching", "medical", "other"]
DueState = Literal["not_yet_due", "due", "overdue", "lost"]


class FamilyPlanningIn(_In):
    method: str = Field(min_length=1, max_length=30, description="a method code of policies/family_planning.toml",
                        examples=["DMPA_IM"])
    service: Service = Field(default="provided", description=(
        "provided: the method given, inserted or performed; removal: an implant or IUD removed"))
    quantity: int | None = Field(default=None, ge=1, le=1000, description=(
        "a provided method's quantity in its unit (cycles, doses, devices, pieces, procedures, users)"))
    client_type: ClientType | None = Field(default=None, description=(
        "a provided method's: new_acceptor (new to the programme), new_to_method, continuing or restart"))
    removal_reason: RemovalReason | None = Field(default=None, description="a removal's: why it was removed")
    counselled: bool = Field(default=False, description="whether she was counselled on the method and its options")
    given_on: dt.date | None = Field(default=None, description="the day of the visit; today if left out")
    note: str | None = Field(default=None, max_length=1000)
    encounter_id: uuid.UUID | None = None

    @field_validator("method", "note", mode="before")
    @classmethod
    def _without_nul(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold NUL and no person types one: dropped, not a 500.
        return value.replace("\x00", "") if isinstance(value, str) else value

    @model_validator(mode="after")
    def _what_each_service_carries(self) -> FamilyPlanningIn:
        if self.service == "provided":
            if self.quantity is None or self.client_type is None:
                raise ValueError("a method provided needs its quantity and client_type (new_acceptor, new_to_method, "
                                 "continuing or restart)")
            if self.removal_reason is not None:
                raise ValueError("removal_reason is for a removal; a method provided has none")
        else:
            if self.removal_reason is None:
                raise ValueError("a removal needs its removal_reason: wants_pregnancy, side_effects, expired, "
                                 "switching, medical or other")
            if self.quantity is not None or self.client_type is not None:
                raise ValueError("a removal has no quantity or client_type; record the method given next as its "
                                 "own visit")
        return self


class FamilyPlanningAmend(FamilyPlanningIn):
    reason: Reason


class FamilyPlanningOut(EntryOut):
    occurred_at: dt.datetime = Field(description="the visit's time: this version's own, since a correction may "
                                                 "correct the day")
    given_on: dt.date = Field(description="the visit's day at the facility")
    method: str
    method_name: str | None = Field(description="the programme's name for the code; none if no longer in it")
    method_class: str | None
    service: str
    quantity: int | None
    unit: str | None
    client_type: str | None
    removal_reason: str | None
    counselled: bool
    note: str | None
    cyp: float | None = Field(description="couple-years of protection the visit counts for (rounded to 0.01 here; "
                                          "the national count sums exact figures)")


class WithdrawnFamilyPlanningOut(_Out):
    id: uuid.UUID = Field(description="the version marked entered in error")
    root_id: uuid.UUID
    method: str
    method_name: str | None
    service: str
    withdrawn_by: uuid.UUID
    withdrawn_at: dt.datetime
    withdrawn_reason: str | None


class FamilyPlanningStandingOut(_Out):
    current_method: str | None = Field(description="the method she is on: her latest method provided, not removed")
    current_method_name: str | None
    current_since: dt.date | None
    in_place: list[FamilyPlanningOut] = Field(description="implants and IUDs inserted and not removed")
    due_on: dt.date | None = Field(description="her next re-supply or injection, or a device's replacement")
    due_for: Literal["resupply", "replacement"] | None
    state: DueState | None = Field(description="due (from a week before), overdue, or lost to follow-up (overdue "
                                               "for longer than the programme traces)")


class FamilyPlanningChartOut(_Out):
    patient_id: uuid.UUID
    today: dt.date
    standing: FamilyPlanningStandingOut
    visits: list[FamilyPlanningOut] = Field(description="the visits in force, newest first")
    withdrawn: list[WithdrawnFamilyPlanningOut] = Field(description="visits marked entered in error")


class FamilyPlanningRecorded(_Out):
    visit: FamilyPlanningOut
    standing: FamilyPlanningStandingOut
    detail: str = Field(description="what was recorded and when she is next due, in a sentence")


class FamilyPlanningDueClientOut(_Out):
    patient_id: uuid.UUID
    mrn: str
    family_name: str
    given_names: str
    sex: str
    phone: str | None
    method: str
    method_name: str | None
    due_on: dt.date
    due_for: Literal["resupply", "replacement"]
    state: Literal["due", "overdue"]


class FamilyPlanningDueOut(_Out):
    today: dt.date
    clients: list[FamilyPlanningDueClientOut]
    counts: dict[str, int]
    truncated: bool
