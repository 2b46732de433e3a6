"""Request and response shapes of the nursing layer: explicit allow-lists of what comes in and what
leaves the appliance, so a new column never leaks into a response unnoticed."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from appliance.substrate.unit_numbers import SHAPE, canonical_unit_number

Outcome = Literal["given", "held", "refused", "missed"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class News2Out(_Out):
    id: uuid.UUID
    vital_signs_id: uuid.UUID
    occurred_at: dt.datetime
    total: int
    scores: dict[str, int]
    missing: list[str]
    complete: bool
    spo2_scale: int
    risk: str
    escalation: bool
    red: bool  # 3 in a single parameter
    band: str = Field(description="the RCP chart's clinical risk band, in words: low (total 0–4), low–medium (3 in "
                                  "a single parameter), medium (5–6) or high (7 or more)")
    response: str
    next_due_at: dt.datetime


class MeowsOut(_Out):
    """The maternity early warning score of one set (pregnancy and the puerperium)."""

    id: uuid.UUID
    vital_signs_id: uuid.UUID
    occurred_at: dt.datetime
    triggers: dict[str, Literal["red", "yellow"]]  # each parameter outside its clear band
    reds: int
    yellows: int
    summary: str  # "1 red, 2 yellow", "no trigger"
    missing: list[str]
    complete: bool
    risk: Literal["clear", "yellow", "triggered"]
    escalation: bool  # one red or two yellow triggers
    response: str
    next_due_at: dt.datetime


class PewsOut(_Out):
    """The paediatric early warning score (Bedside PEWS) of one set of a child under 16."""

    id: uuid.UUID
    vital_signs_id: uuid.UUID
    occurred_at: dt.datetime
    age_band: str = Field(description="the Bedside PEWS age band the child was in: 0-3m, 3-12m, 1-4y, 4-12y, 12y+")
    age_label: str  # the age band in words: "1–4 years"
    total: int
    scores: dict[str, Literal[0, 1, 2, 4]]  # per item measured
    missing: list[str]  # items the record holds that were not measured
    not_recorded: list[str]  # items of the score the vital signs never hold: the total is at least this much
    complete: bool
    risk: Literal["low", "triggered"]
    escalation: bool  # a total of 8 or more
    response: str
    next_due_at: dt.datetime


class ObservationSetOut(_Out):
    """One set of vital signs as the ward charts it: what was measured, a child's screening for acute
    malnutrition, and the early warning score that scored it (None for the scores that did not). A set is
    recorded through the clinical layer's route (ClinicalRecordVitals, `POST .../vitals`), which takes the
    same fields."""

    id: uuid.UUID
    occurred_at: dt.datetime
    author_id: uuid.UUID
    encounter_id: uuid.UUID | None
    systolic_mmhg: int | None
    diastolic_mmhg: int | None
    heart_rate_bpm: int | None
    respiratory_rate: int | None
    temperature_c: Decimal | None
    spo2_percent: int | None
    consciousness: str | None
    supplemental_oxygen: bool | None
    oxygen_l_min: Decimal | None
    spo2_scale: int | None
    muac_mm: int | None = Field(description="mid-upper-arm circumference in whole millimetres, as the tape reads; "
                                            "taken of a child under 16 to screen for acute malnutrition (a set "
                                            "holding one of an older patient is refused when recorded)")
    oedema: bool | None = Field(description="bilateral pitting oedema: true present, false looked for and absent, "
                                            "null not examined; a child's only, as muac_mm")
    oedema_grade: Literal[1, 2, 3] | None = Field(
        description="the WHO grade of oedema present, where it was graded: 1 (+) both feet, 2 (++) both feet and "
                    "the lower legs, hands or lower arms, 3 (+++) generalised, including the face; null ungraded "
                    "or no oedema")
    news2: News2Out | None
    meows: MeowsOut | None
    pews: PewsOut | None


class AdministrationIn(_In):
    medication_request_id: uuid.UUID  # the prescription (any version of it)
    scheduled_for: dt.datetime | None = None  # the dose's time on the MAR; None for an as-needed dose
    outcome: Outcome
    reason: str | None = Field(default=None, max_length=500)
    administered_at: dt.datetime | None = None  # when given; defaults to now
    dose: Decimal | None = Field(default=None, gt=0, le=100000)

    @model_validator(mode="after")
    def _reasoned(self) -> AdministrationIn:
        if self.outcome != "given" and not self.reason:
            raise ValueError(f"say why the dose was {self.outcome}")
        if self.outcome != "given" and self.administered_at is not None:
            raise ValueError(f"a dose {self.outcome} has no administration time")
        for moment in (self.scheduled_for, self.administered_at):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("give times with their UTC offset (e.g. 2026-11-26T08:00:00+03:00)")
        return self


class AdministrationOut(_Out):
    id: uuid.UUID
    root_id: uuid.UUID
    medication_request_id: uuid.UUID
    scheduled_for: dt.datetime | None
    outcome: str
    reason: str | None
    administered_at: dt.datetime | None
    drug: str
    dose: Decimal | None
    dose_unit: str | None
    route: str | None
    minutes_late: int | None
    author_id: uuid.UUID
    occurred_at: dt.datetime


class DoseOut(_Out):
    scheduled_for: dt.datetime
    state: str  # due, due_now, late, given, given_late, held, refused, missed
    late: bool
    administration: AdministrationOut | None


class MarLineOut(_Out):
    medication_request_id: uuid.UUID  # root id of the prescription
    version_id: uuid.UUID
    drug: str
    dose: Decimal
    dose_unit: str
    route: str
    frequency: str
    regimen: str  # how the frequency was read
    scheduled: bool
    duration_days: int | None
    status: str
    instructions: str | None
    allergy_override_reason: str | None = None  # the prescriber's reason for prescribing despite an allergy
    started_at: dt.datetime
    ends_at: dt.datetime | None
    doses: list[DoseOut]
    unscheduled: list[AdministrationOut]  # as-needed doses and doses given outside the schedule
    last_given_at: dt.datetime | None = None  # the latest dose given, on whatever day
    given_last_day: int = 0  # doses given in the 24 hours before now


class CameInOnOut(_Out):
    """A prescription an admitted patient came in on (written before the stay) that is not on the ward's MAR:
    awaiting a doctor's decision (`to_reconcile`) or held on admission (`hold`). No doses fall due."""

    version_id: uuid.UUID
    root_id: uuid.UUID
    drug: str
    dose: Decimal
    dose_unit: str
    route: str
    frequency: str
    duration_days: int | None
    status: str
    instructions: str | None
    started_at: dt.datetime
    came_in_on: Literal["to_reconcile", "hold"]


class MarOut(_Out):
    window_start: dt.datetime
    window_end: dt.datetime
    late: int
    late_elsewhere: int = 0  # doses late in the last 24 hours that fall outside the window
    first_late_elsewhere_at: dt.datetime | None = None  # the earliest of them: which day to open
    lines: list[MarLineOut]
    # An admitted patient's medicines from before the stay, off the MAR until a doctor continues them.
    came_in_on: list[CameInOnOut] = []
    to_reconcile: int = 0


class Retraction(_In):
    reason: str = Field(min_length=3, max_length=500)


class TaskIn(_In):
    title: str = Field(min_length=3, max_length=200)
    due_at: dt.datetime
    encounter_id: uuid.UUID | None = None


class TaskStatusIn(_In):
    status: Literal["done", "cancelled"]
    note: str | None = Field(default=None, max_length=500)


class TaskDeferIn(_In):
    until: dt.datetime  # with its zone
    note: str = Field(min_length=3, max_length=500)  # why it waits


class TaskOut(_Out):
    id: uuid.UUID
    root_id: uuid.UUID
    patient_id: uuid.UUID
    code: str
    title: str
    due_at: dt.datetime
    status: str
    overdue: bool
    ward_code: str | None
    source_id: uuid.UUID | None
    source_kind: str | None
    note: str | None
    occurred_at: dt.datetime


class CarePlanIn(_In):
    problem: str = Field(min_length=3, max_length=300)
    goal: str = Field(min_length=3, max_length=500)
    interventions: list[str] = Field(min_length=1, max_length=20)
    evaluation: str | None = Field(default=None, max_length=2000)
    status: Literal["active", "achieved", "discontinued"] = "active"
    review_due: dt.datetime | None = None
    encounter_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _interventions(self) -> CarePlanIn:
        cleaned = [" ".join(i.split()) for i in self.interventions]
        if any(not i or len(i) > 300 for i in cleaned):
            raise ValueError("each intervention is a line of 1 to 300 characters")
        self.interventions = cleaned
        return self


class CarePlanUpdate(CarePlanIn):
    reason: str = Field(default="care plan evaluated", min_length=3, max_length=500)


class CarePlanOut(_Out):
    id: uuid.UUID
    root_id: uuid.UUID
    problem: str
    goal: str
    interventions: list[str]
    evaluation: str | None
    status: str
    review_due: dt.datetime | None
    author_id: uuid.UUID
    occurred_at: dt.datetime


class ScoreExclusion(_Out):
    """Why NEWS2 does not score a patient (pregnancy or the puerperium, where MEOWS does; under 16, where PEWS
    does, unless the child's age band is not known)."""

    label: str
    reason: str
    maternity: bool
    paediatric: bool = False
    age_band: str | None = None


class FluidIn(_In):
    """One line of the fluid balance chart. Volume and route are judged by the service, which answers a wrong
    one in a sentence (a route of the other direction, a volume above what one line holds)."""

    direction: Literal["intake", "output"]
    route: str = Field(description="intake: oral, iv, enteral (NG/enteral feed), blood, other; output: urine, "
                                   "vomit, ng_aspirate, drain, stool, other")
    volume_ml: int = Field(description="millilitres, 1 to 5000")
    occurred_at: dt.datetime | None = Field(default=None, description="when it went in or came out, with its UTC "
                                                                      "offset; default now")
    note: str | None = Field(default=None, max_length=500)


class FluidCorrection(FluidIn):
    reason: str = Field(min_length=3, max_length=500)


class FluidLineOut(_Out):
    id: uuid.UUID
    root_id: uuid.UUID
    occurred_at: dt.datetime
    recorded_at: dt.datetime
    direction: str
    route: str
    volume_ml: int
    note: str | None
    running_ml: int | None = None  # the day's balance after this line (in the chart's days only)


class UrineRateOut(_Out):
    at: dt.datetime | None = Field(description="the latest urine measurement, the end of the 6 hours judged")
    judged: bool = Field(description="false without 6 hours of urine charted or without a recorded weight")
    oliguric: bool = Field(description="KDIGO: urine output below 0.5 ml/kg/h over 6 hours")
    urine_ml: int | None
    weight_kg: Decimal | None
    rate_ml_kg_h: Decimal | None
    sentence: str


class UrineHourOut(_Out):
    hour: dt.datetime
    urine_ml: int


class FluidDayOut(_Out):
    day: dt.date = Field(description="the fluid day, named by the local date it starts on")
    starts_at: dt.datetime
    ends_at: dt.datetime
    intake_ml: int
    output_ml: int
    balance_ml: int
    cumulative_ml: int = Field(description="the balance carried from the first day shown to the end of this one")
    intake_by_route: dict[str, int]
    output_by_route: dict[str, int]
    urine_by_hour: list[UrineHourOut]
    entries: list[FluidLineOut]


class FluidChartOut(_Out):
    patient_id: uuid.UUID
    day_starts: dt.time = Field(description="the hour the facility's fluid day starts (tenant file, [nursing])")
    today: dt.date
    weight_kg: Decimal | None
    urine: UrineRateOut
    days: list[FluidDayOut] = Field(description="today's fluid day first, then the days before")


class WorklistFluid(_Out):
    intake_ml: int  # today's fluid day
    output_ml: int
    balance_ml: int
    urine: UrineRateOut


class FastingOut(_Out):
    """Nil by mouth suggested by an operation booked on the record: no food from 6 hours before its planned start,
    clear fluids until 2 hours before (ASA 2017)."""

    case_id: uuid.UUID
    procedure: str
    theatre: str
    planned_at: dt.datetime
    case_status: str
    solids_stop_at: dt.datetime
    clear_fluids_stop_at: dt.datetime
    state: Literal["clear_fluids_only", "nil_by_mouth"] | None = Field(
        description="at the time asked: clear fluids only (from 6 h before), nothing by mouth (from 2 h before), or "
                    "None (not fasting yet)")


class WorklistDiet(_Out):
    diet: str | None
    label: str  # the diet in words, 'No diet ordered' for none
    iddsi_level: int | None
    nil_by_mouth: bool  # ordered nil by mouth, or fasting for theatre now
    fasting: FastingOut | None = None


class WorklistPatient(_Out):
    patient_id: uuid.UUID
    bed_code: str | None
    mrn: str
    name: str
    age: int
    sex: str
    reason: str | None
    news2: News2Out | None
    meows: MeowsOut | None = None  # in pregnancy and the puerperium, where NEWS2 is not used
    pews: PewsOut | None = None  # a child under 16, where NEWS2 is not used
    news2_exclusion: ScoreExclusion | None = None  # why `news2` is None for a patient NEWS2 does not score
    observations_due_at: dt.datetime | None
    observations_overdue: bool
    tasks: list[TaskOut]
    doses_due: int  # due within the next hour or now
    doses_late: int
    first_late_at: dt.datetime | None = None  # the earliest late dose's time: which day of the MAR to open
    to_reconcile: int = 0  # medicines the patient came in on, waiting for a doctor to continue, stop or hold
    fluid: WorklistFluid | None = None  # on a fluid balance chart (a line in the last 24 hours)
    oliguric: bool = False  # urine output below 0.5 ml/kg/h over 6 hours (KDIGO), from the fluid chart
    diet: WorklistDiet | None = None  # the diet in force now and nil by mouth (ordered, or fasting for theatre)


class WorklistOut(_Out):
    ward_code: str
    ward_name: str
    at: dt.datetime
    escalations: int
    oliguric: int = 0  # patients whose fluid chart shows oliguria
    patients: list[WorklistPatient]


class HandoverIn(_In):
    shift_start: dt.datetime | None = None
    shift_end: dt.datetime | None = None
    note: str | None = Field(default=None, max_length=4000)


class HandoverNews2(_Out):
    latest: int | None
    latest_risk: str | None
    worst_in_shift: int | None
    sets_in_shift: int
    trend: str  # rising, falling, steady, one set, no observations


class HandoverMeows(_Out):
    latest: str | None  # the latest set's triggers in words: "1 red, 1 yellow", "no trigger"
    latest_risk: str | None
    latest_triggers: dict[str, str]
    triggered_in_shift: int  # sets that triggered (one red or two yellow) during the shift
    sets_in_shift: int


class HandoverPews(_Out):
    latest: int | None
    latest_risk: str | None
    age_band: str | None  # the latest set's age band, in words
    worst_in_shift: int | None
    sets_in_shift: int
    triggered_in_shift: int  # sets of 8 or more during the shift
    trend: str  # rising, falling, steady, one set, no observations


class HandoverDose(_Out):
    drug: str
    scheduled_for: dt.datetime | None  # None: a dose given as needed
    given_at: dt.datetime | None = None  # a dose given: when (the shift it is listed in is the one it was given in)
    state: str  # given, given_late, held, refused, missed, late (due in the shift, nothing recorded)
    minutes_late: int | None = None  # given late: by how much
    reason: str | None


class HandoverTask(_Out):
    title: str
    due_at: dt.datetime
    overdue: bool
    note: str | None = None  # why it waits, when it was deferred


class HandoverCarePlan(_Out):
    problem: str
    goal: str
    evaluation: str | None


class HandoverResult(_Out):
    test: str
    value: str | None
    flag: str | None
    abnormal: bool


class HandoverPatient(_Out):
    patient_id: uuid.UUID
    bed_code: str | None
    mrn: str
    name: str
    age: int
    # Kept so a handover shows an infant's age as the chart does ("8 mo", not "0 y"); None in a handover
    # recorded before it was kept.
    birth_date: dt.date | None = None
    sex: str
    reason: str | None
    since: dt.datetime | None
    problems: list[str]
    allergies: list[str]
    news2: HandoverNews2
    meows: HandoverMeows | None = None  # in pregnancy and the puerperium, where NEWS2 is not used
    pews: HandoverPews | None = None  # a child under 16, where NEWS2 is not used
    doses: list[HandoverDose]
    open_tasks: list[HandoverTask]
    care_plans: list[HandoverCarePlan]
    results: list[HandoverResult]


class HandoverOut(_Out):
    id: uuid.UUID | None = None
    ward_code: str
    ward_name: str
    shift_start: dt.datetime
    shift_end: dt.datetime
    patients: list[HandoverPatient]
    note: str | None = None


# -- the bedside transfusion record (nursing/transfusion.py) -----------------------------------------

class TransfusionVitalsIn(_In):
    """The observations of a transfusion (WHO, BSH): temperature, pulse, blood pressure and respiratory rate, the
    saturation where a probe is at hand. Recorded as a `vital_signs` entry."""

    temperature_c: Decimal = Field(ge=25, le=45, decimal_places=1)
    heart_rate_bpm: int = Field(ge=20, le=300)
    systolic_mmhg: int = Field(ge=40, le=300)
    diastolic_mmhg: int | None = Field(default=None, ge=20, le=200)
    respiratory_rate: int = Field(ge=4, le=90)
    spo2_percent: int | None = Field(default=None, ge=40, le=100)


class TransfusionStartIn(_In):
    unit_number: Annotated[str, AfterValidator(canonical_unit_number)] = Field(
        min_length=3, max_length=40, pattern=SHAPE, description="the number on the bag, typed or scanned")
    checked_by_account_id: uuid.UUID = Field(description=(
        "the account of the second member of staff who checked the patient's identity and the unit at the bedside: "
        "a nurse or clinician of this facility, not the caller"))
    started_at: dt.datetime | None = Field(default=None, description="with its UTC offset; default now")
    vitals: TransfusionVitalsIn = Field(description="the vital signs before the unit is started")


class TransfusionObservationIn(_In):
    observed_at: dt.datetime | None = Field(default=None, description="with its UTC offset; default now")
    vitals: TransfusionVitalsIn = Field(description="the vital signs 15 minutes after the start")


class TransfusionEndIn(_In):
    ended_at: dt.datetime | None = Field(default=None, description="with its UTC offset; default now")
    volume_ml: int = Field(ge=0, le=1000, description=(
        "the volume given: at most the unit's volume as the blood bank received it (422 on volume_ml)"))
    reaction: Literal["none", "febrile", "allergic", "haemolytic", "taco", "trali", "other"] = Field(description=(
        "none, or the reaction suspected: it stops the transfusion and raises the escalation task"))
    reaction_note: str | None = Field(default=None, max_length=1000, description=(
        "what was seen and done; required with a reaction"))
    vitals: TransfusionVitalsIn = Field(description="the vital signs at the end (or when stopped)")


class TransfusionReactionIn(_In):
    """A reaction noticed after the transfusion was completed (TACO, TRALI, a febrile or a delayed haemolytic
    reaction): recorded on the completed transfusion, which stays completed."""

    reaction: Literal["febrile", "allergic", "haemolytic", "taco", "trali", "other"] = Field(
        description="the reaction suspected")
    onset_at: dt.datetime = Field(description=(
        "when it began, with its UTC offset: not before the transfusion started, not still to come (422 on "
        "onset_at)"))
    severity: Literal["non_severe", "severe", "life_threatening"] = Field(description=(
        "ISBT's grade: non_severe, severe (it needed treatment or a longer stay), life_threatening"))
    reaction_note: str = Field(min_length=3, max_length=1000, description="what was seen and what was done")


class TransfusionVitalsOut(_Out):
    temperature_c: Decimal | None
    heart_rate_bpm: int | None
    systolic_mmhg: int | None
    diastolic_mmhg: int | None
    respiratory_rate: int | None
    spo2_percent: int | None


class TransfusionOut(_Out):
    id: uuid.UUID
    version_id: uuid.UUID
    patient_id: uuid.UUID
    recorded_by: uuid.UUID
    unit_number: str
    checked_by: str = Field(description="the second checker's name at the time (before t0042: as typed, with the "
                                        "staff ID)")
    checked_by_account_id: uuid.UUID | None = Field(description="the second checker's account; None on a record "
                                                                "written before checkers were accounts")
    status: Literal["in_progress", "completed", "stopped"]
    started_at: dt.datetime
    started_on: dt.date | None = Field(description="the facility's day of the start, on which the unit's expiry was "
                                                   "judged; None on a record written before it was kept")
    ended_at: dt.datetime | None
    volume_ml: int | None
    reaction: str | None
    reaction_words: str | None
    reaction_note: str | None
    reaction_onset_at: dt.datetime | None = Field(default=None, description=(
        "when a reaction recorded after the transfusion ended began; None for none, or for one that stopped it (at "
        "ended_at)"))
    reaction_severity: Literal["non_severe", "severe", "life_threatening"] | None = None
    severity_words: str | None = None
    vitals_before_id: uuid.UUID
    vitals_15min_id: uuid.UUID | None
    vitals_end_id: uuid.UUID | None
    vitals_before: TransfusionVitalsOut | None = None
    vitals_15min: TransfusionVitalsOut | None = None
    vitals_end: TransfusionVitalsOut | None = None


# -- diet orders and the kitchen's list (appliance/layers/nursing/diet.py) -------------------------------------------


class DietOrderIn(_In):
    """A diet order for an admitted patient. The diet and its combinations are judged by the service, which answers
    a diet it does not know, or a combination that makes no sense, in a sentence."""

    diet: str = Field(description="normal, soft, clear_liquid, full_liquid, diabetic, renal, low_salt, "
                                  "high_energy_protein, gluten_free, halal, vegetarian, npo (nil by mouth), enteral "
                                  "(tube feeding), f75 or f100 (WHO therapeutic milks for severe acute malnutrition)")
    also: list[str] = Field(default_factory=list, max_length=6,
                            description="diets combined with it, e.g. diet 'diabetic' also ['halal']")
    iddsi_level: int | None = Field(default=None, description="IDDSI texture level for dysphagia, 0 (thin) to 7 "
                                                              "(regular)")
    starts_at: dt.datetime | None = Field(default=None, description="with its UTC offset; default now")
    ends_at: dt.datetime | None = Field(default=None, description="with its UTC offset; default open")
    note: str | None = Field(default=None, max_length=500)


class DietCorrection(DietOrderIn):
    reason: str = Field(min_length=3, max_length=500)


class DietOrderOut(_Out):
    id: uuid.UUID
    root_id: uuid.UUID
    status: str
    recorded_by: uuid.UUID | None
    recorded_at: dt.datetime
    reason: str | None
    diet: str | None  # None: the version that withdrew the order (entered in error)
    also: list[str]
    iddsi_level: int | None
    texture: str | None
    starts_at: dt.datetime | None
    ends_at: dt.datetime | None
    corrects: bool | None
    note: str | None
    label: str


class AllergyShown(_Out):
    substance: str
    category: str
    reaction: str | None
    severity: str | None


class PatientDietOut(_Out):
    patient_id: uuid.UUID
    admitted: bool
    label: str  # the diet in force now in words, 'No diet ordered' for none
    current: DietOrderOut | None
    upcoming: DietOrderOut | None  # a new order starting later; the current one stays in force until then
    history: list[DietOrderOut]  # every version, newest first
    allergies: list[AllergyShown]  # the record's active allergies, food first: shown, not re-entered
    fasting: FastingOut | None  # an operation booked within the next day


class KitchenRow(_Out):
    patient_id: uuid.UUID
    bed_code: str | None
    mrn: str
    name: str
    diet: str | None
    label: str
    texture: str | None
    note: str | None
    ordered: bool
    food_allergies: list[str]
    nil_by_mouth: bool
    fasting: FastingOut | None


class KitchenWard(_Out):
    ward_code: str
    ward_name: str
    patients: list[KitchenRow]
    no_order: int  # admitted without a diet order: the ward's to fix
    nil_by_mouth: int
    counts: dict[str, int]  # trays by diet


class KitchenListOut(_Out):
    meal: str
    day: dt.date
    served_at: dt.datetime
    wards: list[KitchenWard]
