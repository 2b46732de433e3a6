"""Request and response models of the blood bank (appliance/layers/clinical/blood.py): explicit allow-lists, kept
beside the room they serve as the theatre's are (surgery_schemas.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from appliance.layers.clinical.schemas import Reason, _In, _Out
from appliance.substrate.unit_numbers import SHAPE, canonical_unit_number

Component = Literal["whole_blood", "red_cells", "plasma", "platelets"]
Abo = Literal["O", "A", "B", "AB"]
RhD = Literal["positive", "negative"]
UnitNumber = Annotated[str, Field(min_length=3, max_length=40, pattern=SHAPE, examples=["G1234 26 123456"],
                                  description="the number on the bag's label, typed or scanned (kept in its canonical "
                                              "form: upper case, no spaces, an ISBT 128 number without its flags)"),
                       AfterValidator(canonical_unit_number)]


class BloodUnitIn(_In):
    unit_number: UnitNumber
    component: Component
    abo: Abo
    rhd: RhD
    volume_ml: int = Field(ge=1, le=1000, description="the bag's volume in millilitres")
    collected_on: dt.date
    expires_on: dt.date = Field(description="the last day the unit may be transfused")


class DiscardIn(_In):
    reason: Reason = Field(description="why the unit leaves stock: expired, bag damaged, failed inspection")


class ReleaseIn(_In):
    reason: Reason = Field(description="why the unit goes back to stock: the patient no longer needs it, or the ward "
                                       "returned it unused")


class CancelRequestIn(_In):
    reason: Reason = Field(description="why the patient no longer needs the blood: the operation called off, the "
                                       "bleeding stopped", examples=["Operation cancelled, Hb 9.8 g/dl"])


class BloodRequestIn(_In):
    component: Component
    units: int = Field(ge=1, le=10)
    indication: Annotated[str, Field(min_length=3, max_length=500)] = Field(
        description="why the patient needs it (the haemoglobin, the bleeding)", examples=["Hb 5.2 g/dl, PPH"])
    urgency: Literal["routine", "urgent", "emergency"]
    encounter_id: uuid.UUID | None = None


class ReservationIn(_In):
    unit_number: UnitNumber
    emergency_reason: Reason | None = Field(default=None, description=(
        "only for a patient with no recorded blood group: why a unit any group may receive (group O RhD-negative "
        "red cells, group AB plasma, group AB RhD-negative platelets) is issued uncrossmatched"))


class PatientLabel(_Out):
    mrn: str
    name: str
    sex: str
    age: str


class BloodUnitOut(_Out):
    id: uuid.UUID
    unit_number: str
    component: Component
    abo: Abo
    rhd: RhD
    group: str
    volume_ml: int
    collected_on: dt.date
    expires_on: dt.date
    received_at: dt.datetime
    status: Literal["available", "reserved", "issued", "transfused", "discarded", "expired"]
    expiring: bool = Field(description="expires within 3 days and still in stock")
    emergency: bool = Field(description="reserved or issued uncrossmatched, for a patient with no recorded group")
    reason: str | None
    patient_id: uuid.UUID | None
    request_id: uuid.UUID | None
    patient: PatientLabel | None
    moved_at: dt.datetime | None


class StockOut(_Out):
    units: list[BloodUnitOut]
    grid: dict[str, dict[str, int]] = Field(description="available, unexpired units by component and group")
    expiring: int
    expired: int


class BloodGroupOut(_Out):
    abo: Abo | None
    rhd: RhD | None
    words: str | None
    conflict: str | None


class BloodRequestOut(_Out):
    id: uuid.UUID
    patient_id: uuid.UUID
    mrn: str
    family_name: str
    given_names: str
    sex: str
    age: str
    requested_at: dt.datetime
    requested_by: uuid.UUID
    component: Component
    units: int
    indication: str
    urgency: str
    outstanding: int = Field(description="units still to issue (none once cancelled)")
    cancel_reason: str | None = Field(description="why it was cancelled; None: still open")
    cancelled_at: dt.datetime | None
    cancelled_by: uuid.UUID | None
    group: BloodGroupOut
    units_given: list[BloodUnitOut]


class NewBloodRequestOut(_Out):
    id: uuid.UUID
    patient_id: uuid.UUID
    requested_at: dt.datetime
    component: Component
    units: int
    indication: str
    urgency: str


class PatientBloodOut(_Out):
    patient_id: uuid.UUID
    group: BloodGroupOut
    requests: list[BloodRequestOut]
