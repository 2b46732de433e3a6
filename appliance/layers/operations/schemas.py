"""Request and response shapes of the operations layer: explicit allow-lists of what enters and what
leaves the appliance (a new column never leaks into a response unnoticed)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class WardCensus(BaseModel):
    code: str
    name: str
    kind: str
    beds: int
    available: int
    occupied: int
    cleaning: int = 0
    blocked: int = 0


class BedOut(BaseModel):
    code: str
    ward_code: str
    state: str
    stay_id: uuid.UUID | None = None
    patient_id: uuid.UUID | None = None
    encounter_id: uuid.UUID | None = None
    mrn: str | None = None
    family_name: str | None = None
    given_names: str | None = None
    admitted_at: dt.datetime | None = None
    expected_discharge_on: dt.date | None = None  # the day the ward expects the patient home, if set


class WardBoard(WardCensus):
    bed_list: list[BedOut]


class BedStateIn(_In):
    state: Literal["available", "cleaning", "blocked"]


class BedStateOut(BaseModel):
    code: str
    ward_code: str
    state: str


class AdmissionIn(_In):
    patient_id: uuid.UUID
    ward_code: str = Field(min_length=1, max_length=16)
    bed_code: str | None = Field(default=None, min_length=1, max_length=16)
    source: Literal["direct", "elective", "transfer_in", "emergency"] = "direct"
    ed_encounter_id: uuid.UUID | None = None
    encounter_id: uuid.UUID | None = None
    reason: str | None = Field(default=None, max_length=500)
    at: AwareDatetime | None = None


class TransferIn(_In):
    ward_code: str = Field(min_length=1, max_length=16)
    bed_code: str | None = Field(default=None, min_length=1, max_length=16)
    reason: str | None = Field(default=None, max_length=500)
    at: AwareDatetime | None = None


class DischargeIn(_In):
    disposition: Literal["home", "transfer_out", "died", "left_against_advice", "other"]
    destination: str | None = Field(default=None, max_length=200)
    at: AwareDatetime | None = None


class StayOut(BaseModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    encounter_id: uuid.UUID
    ward_code: str
    bed_code: str
    source: str
    admitted_at: dt.datetime
    discharged_at: dt.datetime | None
    disposition: str | None


class ExpectedDischargeIn(_In):
    """The day the ward expects the admitted patient home (not before the admission's day, at most a year ahead), and
    optionally what it waits on."""

    expected_on: dt.date
    note: str | None = Field(default=None, max_length=500)


Expectation = Literal["today", "tomorrow", "overdue", "not_set", "later"]


class _StayExpectedHome(BaseModel):
    """The open stay whose expected discharge date an answer is about, and where that date stands."""

    stay_id: uuid.UUID
    patient_id: uuid.UUID
    encounter_id: uuid.UUID
    ward_code: str
    bed_code: str
    admitted_at: dt.datetime
    note: str | None
    expectation: Expectation  # on the facility's today


class ExpectedDischargeOut(_StayExpectedHome):
    entry_id: uuid.UUID  # this version: GET .../patients/<id>/entries/<entry_id>/history shows the ones before
    expected_on: dt.date


class ExpectedDischargeVersion(BaseModel):
    entry_id: uuid.UUID
    expected_on: dt.date
    note: str | None
    status: str  # final (the first), amended (each change)
    author_id: uuid.UUID
    recorded_at: dt.datetime


class ExpectedDischargeHistory(_StayExpectedHome):
    expected_on: dt.date | None  # none set yet
    versions: list[ExpectedDischargeVersion]  # oldest first


class WardDischargeOutlook(BaseModel):
    code: str
    name: str
    admitted: int
    today: int
    tomorrow: int
    overdue: int
    not_set: int


class DischargeOutlook(BaseModel):
    """Admitted patients expected home today, tomorrow, overdue (their day gone by) and with no date, on the
    facility's `day`: per inpatient ward, and the facility's totals, which are the wards' sums."""

    day: dt.date
    admitted: int
    today: int
    tomorrow: int
    overdue: int
    not_set: int
    wards: list[WardDischargeOutlook]


class ArrivalIn(_In):
    patient_id: uuid.UUID
    arrival_mode: Literal["walk_in", "ambulance", "referral", "police", "other"] = "walk_in"
    complaint: str | None = Field(default=None, max_length=500)
    at: AwareDatetime | None = None


class TriageIn(_In):
    acuity: int = Field(ge=1, le=5)
    at: AwareDatetime | None = None


class SeenIn(_In):
    at: AwareDatetime | None = None


class DecisionIn(_In):
    decision: Literal["admit", "discharge", "transfer"]
    at: AwareDatetime | None = None


class DepartureIn(_In):
    disposition: Literal["discharged", "transferred", "left_without_being_seen", "left_against_advice", "died"]
    at: AwareDatetime | None = None


class EdVisitOut(BaseModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    arrived_at: dt.datetime
    acuity: int | None
    triaged_at: dt.datetime | None
    seen_at: dt.datetime | None
    decision: str | None
    decided_at: dt.datetime | None
    departed_at: dt.datetime | None
    disposition: str | None
    admitted_encounter_id: uuid.UUID | None
    arrival_mode: str | None = None
    complaint: str | None = None
    mrn: str | None = None
    family_name: str | None = None
    given_names: str | None = None


class ClinicOut(BaseModel):
    code: str
    name: str
    slot_minutes: int


class SlotOut(BaseModel):
    id: uuid.UUID
    clinic_code: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    free: bool


class BookingIn(_In):
    patient_id: uuid.UUID
    slot_id: uuid.UUID
    reason: str | None = Field(default=None, max_length=500)


class RescheduleIn(_In):
    slot_id: uuid.UUID
    reason: str | None = Field(default=None, max_length=500)


class AppointmentChangeIn(_In):
    action: Literal["cancelled", "checked_in", "no_show"]
    reason: str | None = Field(default=None, max_length=500)


class AppointmentOut(BaseModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    slot_id: uuid.UUID
    clinic_code: str
    starts_at: dt.datetime
    status: str
    reason: str | None
    encounter_id: uuid.UUID | None = Field(
        default=None, description="The outpatient visit (encounter) the check-in opened or joined")
    mrn: str | None = None
    family_name: str | None = None
    given_names: str | None = None


class TrendPoint(BaseModel):
    day: dt.date
    value: float | None


class KpiOut(BaseModel):
    id: str
    number: int
    name: str
    unit: str
    better: str
    formula: str
    standard: str
    window_days: int
    companion: bool
    available: bool
    unavailable: str | None
    value: float | None
    numerator: float | None
    denominator: float | None
    secondary: float | None
    second_reading: str  # what `secondary` measures, in words ("" where the KPI has one reading)
    target: float | None
    status: str | None
    trend: list[TrendPoint]


class CommandCenterOut(BaseModel):
    facility: str
    computed_at: dt.datetime
    timezone: str
    kpis: list[KpiOut]
    expected_discharges: DischargeOutlook


class DrillEntry(BaseModel):
    entry_id: uuid.UUID
    kind: str
    patient_id: uuid.UUID | None
    mrn: str | None
    occurred_at: dt.datetime
    measure: float | None
    label: str | None


class DrillDownOut(BaseModel):
    id: str
    start: dt.datetime
    end: dt.datetime
    entries: list[DrillEntry]


# -- the pharmacy ----------------------------------------------------------------------------------------

# A count of units as JSON reads it: 20, or 2.5 for millilitres.
Quantity = int | float
PositiveQuantity = Annotated[Decimal, Field(gt=0, le=1_000_000, decimal_places=3)]


class PharmacyItemIn(_In):
    drug: str = Field(min_length=1, max_length=200)
    form: str = Field(min_length=1, max_length=80)
    strength: Annotated[Decimal, Field(gt=0, le=1_000_000, decimal_places=3)] | None = None
    strength_unit: str | None = Field(default=None, min_length=1, max_length=20)
    unit: str = Field(min_length=1, max_length=40)
    reorder_level: Annotated[Decimal, Field(ge=0, le=1_000_000, decimal_places=3)] = Decimal(0)


class BatchOut(BaseModel):
    batch: str
    expires_on: dt.date
    on_hand: Quantity
    expired: bool


class PharmacyItemOut(BaseModel):
    id: uuid.UUID
    drug: str
    form: str
    strength: Quantity | None
    strength_unit: str | None
    unit: str
    reorder_level: Quantity
    on_hand: Quantity  # in batches not yet expired
    expired: Quantity  # still on the shelf past its expiry, to adjust out
    status: Literal["ok", "low", "out"]
    batches: list[BatchOut]


class ReceiptIn(_In):
    batch: str = Field(min_length=1, max_length=60)
    expires_on: dt.date
    quantity: PositiveQuantity
    reference: str | None = Field(default=None, max_length=200)


class AdjustmentIn(_In):
    batch: str = Field(min_length=1, max_length=60)
    quantity: Annotated[Decimal, Field(ge=-1_000_000, le=1_000_000, decimal_places=3)]
    reason: Literal["expired", "damaged", "counted", "other"]
    note: str | None = Field(default=None, max_length=500)


class StockMovementOut(BaseModel):
    id: uuid.UUID
    item_id: uuid.UUID
    batch: str
    expires_on: dt.date
    kind: str
    quantity: Quantity
    reason: str | None
    reference: str | None
    recorded_at: dt.datetime


class DispenseIn(_In):
    medication_request_id: uuid.UUID
    item_id: uuid.UUID
    quantity: PositiveQuantity | None = None  # none: the rest of the course (pharmacy.course_quantity)
    batch: str | None = Field(default=None, min_length=1, max_length=60)
    partial: bool = False


class DispenseOut(BaseModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    medication_request_id: uuid.UUID
    item_id: uuid.UUID
    item: str
    batch: str
    expires_on: dt.date
    quantity: Quantity
    quantity_proposed: bool  # the request gave no quantity: the rest of the course was handed over
    unit: str
    partial: bool
    dispensed_at: dt.datetime
    on_hand_after: Quantity


class DispenseReversalIn(_In):
    reason: str = Field(min_length=1, max_length=500)  # patient data: why the dispense was a mistake


class _DispenseComingBackOut(BaseModel):
    """What a reversal and a return both say: the dispense, its medicine and batch, how much came back and why."""

    dispense_id: uuid.UUID
    patient_id: uuid.UUID
    medication_request_id: uuid.UUID
    item_id: uuid.UUID
    item: str
    batch: str
    quantity: Quantity
    unit: str
    reason: str
    batch_on_hand_after: Quantity


class DispenseReversalOut(_DispenseComingBackOut):
    id: uuid.UUID  # the "entered in error" version of the dispense; its whole quantity back into the batch
    reversed_at: dt.datetime


class DispenseReturnIn(_In):
    quantity: PositiveQuantity  # in the dispense's unit, at most what is still with the patient
    condition: Literal["fit", "not_fit"]  # fit: back into its batch; not_fit: quarantined, out of stock
    reason: str = Field(min_length=1, max_length=500)  # patient data: not needed, stopped, the wrong patient


class DispenseReturnOut(_DispenseComingBackOut):
    id: uuid.UUID  # the `dispense_return` entry
    condition: Literal["fit", "not_fit"]
    returned_at: dt.datetime
    still_out: Quantity  # what of the dispense the patient still has


class ReturnOut(BaseModel):
    id: uuid.UUID
    returned_at: dt.datetime
    quantity: Quantity
    unit: str
    condition: Literal["fit", "not_fit"]
    reason: str


class QueueItemOut(BaseModel):
    id: uuid.UUID  # the prescription's root id
    patient_id: uuid.UUID
    encounter_id: uuid.UUID | None  # none: written after the visit ended
    mrn: str
    family_name: str
    given_names: str
    prescribed_at: dt.datetime
    today: bool
    drug: str
    dose: Quantity
    dose_unit: str
    route: str
    frequency: str
    duration_days: int | None
    instructions: str | None
    dispensed: Quantity
    items: list[PharmacyItemOut]


class DispenseHistoryOut(BaseModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    dispensed_at: dt.datetime
    medication_request_id: uuid.UUID
    prescribed: str
    item_id: uuid.UUID
    item: str
    batch: str
    quantity: Quantity
    unit: str
    partial: bool
    returns: list[ReturnOut]  # what was brought back of it, oldest first
    still_out: Quantity  # handed over less brought back


class DeathToCertify(BaseModel):
    """A stay or an ED visit here that ended with disposition `died` whose person has no death certificate yet
    (appliance/layers/operations/deaths.py)."""

    patient_id: uuid.UUID
    encounter_id: uuid.UUID
    mrn: str
    family_name: str
    given_names: str
    sex: str
    birth_date: dt.date
    place: str  # the ward of the stay, or the emergency department
    ended_at: dt.datetime


class DiedDepartureCorrectionIn(_In):
    """How the patient whose departure was recorded as died by mistake did leave, and why it is corrected: one of
    deaths.CORRECTED_DISCHARGE for a stay, of deaths.CORRECTED_ED_DEPARTURE for an ED visit (the layer says which)."""

    patient_id: uuid.UUID
    disposition: str = Field(max_length=40)
    reason: str = Field(max_length=2000)


class DiedDepartureCorrected(BaseModel):
    entry_id: uuid.UUID  # the departure's new version: GET .../patients/<id>/entries/<entry_id>/history shows both
    encounter_id: uuid.UUID
    disposition: str


# -- patient safety incidents (incidents.py) --------------------------------------------------------------

IncidentType = Literal["fall", "medication", "pressure_injury", "clinical_process", "infection", "blood",
                       "medical_device", "documentation", "patient_identification", "behaviour", "other"]
IncidentOutcome = Literal["near_miss", "none", "mild", "moderate", "severe", "death"]
ContributingFactor = Literal["staff", "communication", "patient", "environment", "organisation", "external", "other"]
IncidentStatus = Literal["open", "under_review", "closed"]


class IncidentIn(_In):
    """A patient safety incident as its reporter tells it. `outcome`: near_miss (it did not reach the patient) or
    the harm to the patient (ICPS degree of harm). `patient_id`: optional, a patient in the reporter's care."""

    occurred_at: AwareDatetime
    ward_code: str = Field(min_length=1, max_length=40)
    incident_type: IncidentType
    description: str = Field(min_length=1, max_length=4000)
    outcome: IncidentOutcome
    immediate_action: str = Field(min_length=1, max_length=2000)
    patient_id: uuid.UUID | None = None
    anonymous: bool = False


class ReviewEventIn(_In):
    """One event of the review. `note`: a note's text, or a closing's learning summary; `factors` for
    contributing_factors; `action`, `action_owner`, `action_due` for an action; `harm` for severity_confirmed."""

    kind: Literal["note", "contributing_factors", "action", "severity_confirmed", "closed"]
    note: str | None = Field(default=None, max_length=4000)
    factors: list[ContributingFactor] | None = Field(default=None, max_length=7)
    action: str | None = Field(default=None, max_length=1000)
    action_owner: str | None = Field(default=None, max_length=200)
    action_due: dt.date | None = None
    harm: IncidentOutcome | None = None


class ReviewEventOut(BaseModel):
    id: uuid.UUID
    kind: str
    note: str | None
    factors: list[str] | None
    action: str | None
    action_owner: str | None
    action_due: dt.date | None
    harm: str | None
    by_name: str
    at: dt.datetime


class IncidentOut(BaseModel):
    """An incident as lists show it: no patient named (only whether one is), no free text."""

    id: uuid.UUID
    number: int | None = Field(description="The facility's running number of its named reports; null for an "
                                           "anonymous report, whose place among the named reports would say when it "
                                           "was filed (the named reports' numbers run on without a gap for it).")
    occurred_at: dt.datetime
    ward_code: str
    incident_type: str
    outcome: str
    anonymous: bool
    reporter_name: str | None  # none for an anonymous report
    reported_at: dt.datetime = Field(description="When it was reported. An anonymous report's is to the hour only "
                                                 "(UTC; minutes, seconds and microseconds zero), so that set beside "
                                                 "the audit log's times it cannot single out who filed it; a named "
                                                 "report's is as recorded.")
    names_patient: bool
    status: IncidentStatus
    confirmed_harm: str | None
    closed_at: dt.datetime | None
    immediate_review: bool


class IncidentPatientOut(BaseModel):
    id: uuid.UUID
    mrn: str
    family_name: str
    given_names: str


class IncidentDetailOut(IncidentOut):
    """One incident: the report whole; the review's events to the quality manager (empty to the reporter); the
    learning summary once closed."""

    description: str
    immediate_action: str
    patient: IncidentPatientOut | None
    review: list[ReviewEventOut]
    learning_summary: str | None


class IncidentTypeCounts(BaseModel):
    incident_type: str
    label: str
    total: int
    by_outcome: dict[str, int]


class IncidentMonthOut(BaseModel):
    """Incidents reported in one calendar month (facility time), by type and by harm: counts only."""

    month: str
    total: int
    by_type: list[IncidentTypeCounts]
    by_outcome: dict[str, int]
