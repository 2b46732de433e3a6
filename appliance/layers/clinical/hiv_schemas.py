"""Request and response models of HIV care and treatment (appliance/layers/clinical/hiv.py): explicit allow-lists,
as appliance/layers/clinical/schemas.py's are, kept beside the room they serve."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import Field

from appliance.layers.clinical.schemas import EntryOut, Reason, _In, _Out

TbScreening = Literal["no_signs", "presumptive_tb", "on_tb_treatment", "not_screened"]
CareStatus = Literal["in_care", "transferred_out", "stopped", "died"]
Standing = Literal["active", "iit", "not_on_art", "transferred_out", "stopped", "died"]
Change = Literal["initiation", "substitution", "switch"]
Adherence = Literal["good", "fair", "poor", "not_assessed"]
Suppression = Literal["undetectable", "suppressed", "unsuppressed"]
Indication = Literal["routine", "targeted"]
Note = Annotated[str, Field(max_length=2000)] | None


class HivEnrolmentIn(_In):
    enrolled_on: dt.date = Field(description="the day the person was enrolled in HIV care here")
    diagnosed_on: dt.date = Field(description="the day HIV infection was confirmed (the confirmatory test)")
    who_stage: Annotated[int, Field(ge=1, le=4)] = Field(description="WHO clinical stage at enrolment, 1 to 4")
    cd4_baseline: Annotated[int, Field(ge=0, le=5000)] | None = Field(default=None, description="cells/mm3, if "
                                                                                                "measured")
    tb_screening: TbScreening = Field(description="TB symptom screening at enrolment (WHO four-symptom screen)")
    note: Note = None
    encounter_id: uuid.UUID | None = None


class HivRegimenIn(_In):
    change: Change = Field(description="initiation (ART started), substitution (a drug replaced within the line) or "
                                       "switch (to a later line after treatment failure)")
    started_on: dt.date = Field(description="the first day on this regimen")
    regimen: Annotated[str, Field(min_length=1, max_length=40)] = Field(
        description="a regimen code of policies/hiv.toml", examples=["TDF+3TC+DTG"])
    reason: Reason | None = Field(default=None, description="why a substitution or switch")
    encounter_id: uuid.UUID | None = None


class HivVisitIn(_In):
    visit_on: dt.date = Field(description="the day of the clinical visit or ARV pick-up")
    arv_days: Annotated[int, Field(ge=0, le=200)] = Field(description="days of ARVs dispensed (30, 90, 180 under "
                                                                      "multi-month dispensing; 0 for none)")
    adherence: Adherence = Field(default="not_assessed", description="doses taken since the last visit: good 95% or "
                                                                     "more, fair 85-94%, poor below 85%")
    next_appointment_on: dt.date = Field(description="the next clinical visit or pick-up booked")
    note: Note = None
    encounter_id: uuid.UUID | None = None


class HivViralLoadIn(_In):
    sampled_on: dt.date = Field(description="the day the sample was taken")
    copies_per_ml: Annotated[int, Field(ge=0, le=100_000_000)] = Field(description="HIV-1 RNA copies/mL; 0 for "
                                                                                   "target not detected")
    indication: Indication | None = Field(
        default=None, description="routine (the monitoring schedule's: 6 and 12 months after ART starts, then yearly, "
                                  "3 months after an unsuppressed result) or targeted (ordered for suspected treatment "
                                  "failure); when not given, routine if the schedule had one due by the sample's day, "
                                  "else targeted (PEPFAR MER TX_PVLS's split)")
    note: Note = None
    encounter_id: uuid.UUID | None = None


class HivStatusIn(_In):
    status: CareStatus = Field(description="transferred_out, stopped or died with its day; in_care for a person "
                                           "who returns")
    status_on: dt.date | None = None
    reason: Reason | None = None
    version_id: uuid.UUID | None = Field(default=None, description="the enrolment's `id` you loaded, to be refused "
                                                                   "(409) if it changed since")


class HivRegimenOut(EntryOut):
    care_id: uuid.UUID
    started_on: dt.date
    regimen: str
    change: Change
    reason: str | None


class HivVisitOut(EntryOut):
    care_id: uuid.UUID
    visit_on: dt.date
    arv_days: int
    adherence: Adherence
    next_appointment_on: dt.date
    note: str | None


class HivViralLoadOut(EntryOut):
    care_id: uuid.UUID
    sampled_on: dt.date
    copies_per_ml: int
    suppression: Suppression = Field(description="undetectable (50 or fewer), suppressed (below 1000) or "
                                                 "unsuppressed (1000 or more)")
    indication: Indication | None = Field(description="routine or targeted; null for a result recorded before the "
                                                      "indication was asked (not documented)")
    note: str | None


class HivLastViralLoad(_Out):
    sampled_on: dt.date
    copies_per_ml: int
    suppression: Suppression


class HivCareOut(EntryOut):
    patient_id: uuid.UUID
    art_number: str = Field(description="the facility's unique ART number, in sequence", examples=["ART-00001"])
    enrolled_on: dt.date
    diagnosed_on: dt.date
    who_stage: int
    cd4_baseline: int | None
    tb_screening: TbScreening
    status: Standing = Field(description="active on ART, iit (interruption in treatment: more than 28 days since the "
                                         "last expected contact), not_on_art, or the status in care")
    status_on: dt.date | None
    note: str | None
    art_started_on: dt.date | None
    regimen: str | None = Field(description="the current regimen")
    regimen_name: str | None
    line: str | None
    expected_contact_on: dt.date | None = Field(description="the later of the next appointment and the day the "
                                                            "ARVs dispensed run out")
    interrupted_from: dt.date | None
    viral_load_due_on: dt.date | None
    viral_load_due: bool
    last_viral_load: HivLastViralLoad | None
    unsuppressed: bool = Field(description="the last viral load was 1000 copies/mL or more")
    regimens: list[HivRegimenOut]
    visits: list[HivVisitOut]
    viral_loads: list[HivViralLoadOut]


class HivWithdrawnOut(_Out):
    id: uuid.UUID
    root_id: uuid.UUID
    withdrawn_by: uuid.UUID
    withdrawn_at: dt.datetime
    withdrawn_reason: str | None


class HivCardOut(_Out):
    patient_id: uuid.UUID
    today: dt.date
    care: HivCareOut | None = Field(description="the enrolment here in force, or none")
    withdrawn: list[HivWithdrawnOut]


class HivRegisterPatient(_Out):
    id: uuid.UUID
    mrn: str
    family_name: str
    given_names: str
    sex: str
    birth_date: dt.date


class HivRegisterRow(HivCareOut):
    patient: HivRegisterPatient


class HivRegisterOut(_Out):
    today: dt.date
    people: list[HivRegisterRow]
    to_trace: list[HivRegisterRow] = Field(description="interruptions in treatment, the longest first")
    counts: dict[str, int] = Field(description="people by status")
    viral_load_due: int
    unsuppressed: int = Field(description="people on ART whose last viral load was 1000 copies/mL or more")
