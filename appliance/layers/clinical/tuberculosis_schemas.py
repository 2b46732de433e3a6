"""Request and response models of the TB treatment register (appliance/layers/clinical/tuberculosis.py): explicit
allow-lists, as appliance/layers/clinical/schemas.py's are, kept beside the room they serve."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field

from appliance.layers.clinical.schemas import EntryOut, Reason, _In, _Out

Site = Literal["pulmonary", "extrapulmonary"]
Bacteriology = Literal["bacteriologically_confirmed", "clinically_diagnosed"]
History = Literal["new", "relapse", "after_failure", "after_loss_to_follow_up", "other_previously_treated", "unknown"]
HivStatus = Literal["positive", "negative", "unknown"]
Outcome = Literal["cured", "treatment_completed", "treatment_failed", "died", "lost_to_follow_up", "not_evaluated"]
Smear = Literal["negative", "positive", "not_done"]
Xpert = Literal["mtb_not_detected", "mtb_detected", "not_done"]
Weight = Annotated[Decimal, Field(gt=0, lt=400, max_digits=5, decimal_places=1, description="kilograms",
                                  examples=["54.5"])]
Note = Annotated[str, Field(max_length=2000)] | None


class TbRegistrationIn(_In):
    started_on: dt.date = Field(description="the day treatment started (the facility's calendar); its year is the "
                                            "register the case is numbered in")
    site: Site = Field(description="pulmonary (lungs or tracheobronchial tree, with or without other sites) or "
                                   "extrapulmonary")
    bacteriology: Bacteriology = Field(description="confirmed by smear, culture or a WHO-approved rapid test "
                                                   "(Xpert MTB/RIF), or diagnosed clinically")
    history: History = Field(description="previous TB treatment, as WHO classifies it")
    regimen: Annotated[str, Field(min_length=1, max_length=40)] = Field(
        description="a regimen code of policies/tuberculosis.toml", examples=["2HRZE/4HR"])
    hiv_status: HivStatus = Field(description="at the start of treatment")
    weight_kg: Weight
    note: Note = None
    encounter_id: uuid.UUID | None = Field(default=None, description="the visit the case was registered at")


class TbOutcomeIn(_In):
    outcome: Outcome = Field(description="the WHO treatment outcome")
    outcome_on: dt.date = Field(description="the day the outcome was reached (treatment ended, died, last seen)")
    version_id: uuid.UUID | None = Field(default=None, description="the treatment's `id` you loaded, to be refused "
                                                                   "(409) if it changed since")


class TbCorrection(TbRegistrationIn):
    outcome: Outcome | None = Field(default=None, description="the outcome as it should read; none reopens the "
                                                              "treatment")
    outcome_on: dt.date | None = None
    reason: Reason
    version_id: uuid.UUID = Field(description="the treatment's `id` you loaded; one changed since is refused (409)")


class TbFollowUpIn(_In):
    month: Annotated[int, Field(ge=0, le=24)] = Field(description="the month of treatment examined (2, 5, 6...: "
                                                                   "the regimen's follow-up months; 0 at the start)")
    examined_on: dt.date = Field(description="the day the sputum was collected or the patient weighed")
    smear: Smear = "not_done"
    culture: Smear = "not_done"
    xpert: Xpert = Field(default="not_done", description="recorded, but judges no outcome: WHO monitors treatment "
                                                         "by smear and culture")
    weight_kg: Weight | None = None
    note: Note = None
    encounter_id: uuid.UUID | None = None


class TbFollowUpCorrection(TbFollowUpIn):
    reason: Reason


class TbFollowUpOut(EntryOut):
    patient_id: uuid.UUID
    treatment_id: uuid.UUID = Field(description="the treatment's record (its root_id)")
    month: int
    examined_on: dt.date
    smear: Smear
    culture: Smear
    xpert: Xpert
    weight_kg: Decimal | None
    note: str | None


class TbDueOut(_Out):
    month: int
    due_on: dt.date
    state: Literal["done", "due", "overdue", "not_yet_due", "not_needed"]
    end_of_treatment: bool


class TbDeathOut(_Out):
    certified: bool = Field(description="whether a death certificate for this person is in force (at any facility)")
    died_on: dt.date | None = Field(description="the certified day of death, as the certifying facility counts it")
    facility: str | None = Field(description="the facility that certified it")
    says: str = Field(description="the sentence for the clinician: the certified death, or that none is recorded "
                                  "and where to certify it")


class TbTreatmentOut(EntryOut):
    patient_id: uuid.UUID
    register_number: str = Field(description="the facility's register number, in sequence in the year treatment "
                                             "started", examples=["2026/0001"])
    register_year: int
    started_on: dt.date
    site: Site
    bacteriology: Bacteriology
    history: History
    regimen: str
    regimen_name: str | None
    months: int | None = Field(description="how long the regimen lasts")
    ends_on: dt.date | None = Field(description="the day its months have run")
    hiv_status: HivStatus
    weight_kg: Decimal
    outcome: Outcome | None
    outcome_on: dt.date | None
    death: TbDeathOut | None = Field(default=None, description="on a died outcome: the person's death certificate, "
                                                               "or that none is recorded (certify it: GET/POST "
                                                               "/api/t/{tenant}/patients/{patient_id}/death)")
    note: str | None
    follow_ups: list[TbFollowUpOut]
    due: list[TbDueOut] = Field(description="each follow-up month of the regimen: done, due, overdue, not yet due, "
                                            "or not needed once an outcome is recorded")


class TbWithdrawnOut(_Out):
    id: uuid.UUID
    root_id: uuid.UUID
    withdrawn_by: uuid.UUID
    withdrawn_at: dt.datetime
    withdrawn_reason: str | None
    register_number: str | None = None
    month: int | None = None


class TbCardOut(_Out):
    patient_id: uuid.UUID
    today: dt.date
    treatments: list[TbTreatmentOut]
    withdrawn: list[TbWithdrawnOut]


class TbRegisterPatient(_Out):
    id: uuid.UUID
    mrn: str
    family_name: str
    given_names: str
    sex: str
    birth_date: dt.date


class TbRegisterCase(TbTreatmentOut):
    hiv_status: HivStatus | None = Field(description="withheld (null) unless you may read the ART register "
                                                     "(`clinical.hiv.register`)")
    patient: TbRegisterPatient
    overdue: list[int] = Field(description="the follow-up months overdue (none for a patient certified dead)")
    died_on: dt.date | None = Field(default=None, description="on a case with no outcome yet, the day of the "
                                                              "patient's death certificate (at any facility): its "
                                                              "outcome, died, is still to record")


class TbTally(_Out):
    registered: int
    outcomes: dict[str, int]
    no_outcome: int
    success: int = Field(description="cured plus treatment completed")
    success_rate: Decimal | None = Field(description="treatment success as a percentage of those registered")


class TbCohortRow(TbTally):
    row: str
    label: str
    # The HIV-positive row, to those who may not read the ART register, under the national disclosure rule.
    registered: int | None = Field(description="null where withheld (the HIV-positive row, under `withheld_under`)")
    outcomes: dict[str, int | None] = Field(description="each WHO outcome's count; null where withheld")
    no_outcome: int | None
    success: int | None = Field(description="cured plus treatment completed; null where either is withheld")


class TbCohortOut(_Out):
    quarter: int
    starts_on: dt.date
    ends_on: dt.date
    reported_from: dt.date = Field(description="12 months after the quarter: the cohort's outcomes are reported "
                                               "from then")
    provisional: bool
    rows: list[TbCohortRow]
    new_relapse: TbTally
    all: TbTally


class TbRegisterOut(_Out):
    year: int
    today: dt.date
    cases: list[TbRegisterCase]
    cohorts: list[TbCohortOut]
    hiv_status_shown: bool = Field(description="whether each case's HIV status is shown: only to those who may read "
                                               "the ART register; the cohort's HIV-positive row counts for everyone")
    withheld_under: int | None = Field(description="to those who may not read the ART register, the disclosure "
                                                   "threshold their cohorts' HIV-positive row is under: a count from 1 "
                                                   "to this less one is null, and so is one that would reveal it; null "
                                                   "where every count is exact")
    overdue: int = Field(description="cases with a follow-up overdue")
    died_without_outcome: int = Field(default=0, description="cases with no outcome whose patient is certified dead")
