"""Request and response shapes of the clinical layer.

Requests refuse unknown fields (a misspelt field is an error, not silently ignored). Responses are
explicit allow-lists: a column added to a table never reaches a client until it is named here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from appliance.substrate.body_weight import kept_to_the_gram

Sex = Literal["female", "male", "other", "unknown"]
EncounterClass = Literal["outpatient", "emergency", "inpatient"]
EncounterStatus = Literal["planned", "arrived", "in_progress", "finished", "cancelled"]
Text = Annotated[str, Field(min_length=1, max_length=200)]
LongText = Annotated[str, Field(min_length=1, max_length=20_000)]
Reason = Annotated[str, Field(min_length=3, max_length=1000)]
# A figure a result reports, or its reference limit: at most 18 digits (a viral load's copies, a level to a millionth),
# so a slip like 1e999999 is not taken as a number, which the record's numeric column could not hold.
Measurement = Annotated[Decimal, Field(max_digits=18)]
# Kilograms to the gram, no finer (appliance/substrate/body_weight.py).
BodyWeight = Annotated[Decimal, AfterValidator(kept_to_the_gram)]


def aware_datetime(what: str, example: str = "2026-03-01T04:30+03:00") -> Any:
    """A datetime that must carry its UTC offset: a naive one is refused with "give <what> with its UTC offset
    (e.g. <example>)". A time without its offset would be read in the server's zone, not the facility's, and
    land hours off; one that is not in a year 1 to 9999 in UTC (0001-01-01T00:30+01:00) could not be read in UTC
    to be judged or named."""

    def aware(value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError(f"give {what} with its UTC offset (e.g. {example})")
        try:
            value.astimezone(dt.UTC)
        except OverflowError:
            raise ValueError(f"give {what} in a year from 1 to 9999 in UTC (e.g. {example})") from None
        return value

    return Annotated[dt.datetime, AfterValidator(aware)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- patients ----------------------------------------------------------------------------------------


class Identifier(_In):
    system: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,30}$", examples=["national_id"])]
    value: Annotated[str, Field(min_length=1, max_length=64)]


class Address(_In):
    line: str | None = Field(default=None, max_length=200)
    village: str | None = Field(default=None, max_length=120)
    district: str | None = Field(default=None, max_length=120)
    region: str | None = Field(default=None, max_length=120)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")


class Contact(_In):
    kind: Literal["phone", "email", "sms"] = "phone"
    value: Annotated[str, Field(min_length=3, max_length=120)]


class NextOfKin(_In):
    name: Text
    relationship: Annotated[str, Field(min_length=1, max_length=60, examples=["mother", "spouse"])]
    phone: str | None = Field(default=None, max_length=40)


class PatientIn(_In):
    family_name: Text
    given_names: Text
    birth_date: dt.date
    birth_date_estimated: bool = False
    sex: Sex
    phone: str | None = Field(default=None, max_length=40)
    address: Address = Field(default_factory=Address)
    identifiers: list[Identifier] = Field(default_factory=list, max_length=10)
    contacts: list[Contact] = Field(default_factory=list, max_length=10)
    next_of_kin: list[NextOfKin] = Field(default_factory=list, max_length=10)
    subject_id: uuid.UUID | None = Field(default=None, description="the one-identity subject, when known")
    national_id_confirmed: bool = Field(default=False, description=(
        "true once the national ID was checked on the card and is right. A national ID held at another facility "
        "by a person born on another day or of another sex is asked about first: 409 with "
        "`requires_national_id_confirmation` and `differs` (birth date, sex), nothing written. Not kept."))
    # The id the new chart takes, chosen by `service.link_registration` when it records, before the chart is written,
    # that the link was made over a differing answer (the record names the chart). Never read from a request.
    _chart_id: uuid.UUID | None = PrivateAttr(default=None)

    @property
    def chart_id(self) -> uuid.UUID | None:
        return self._chart_id

    @field_validator("birth_date")
    @classmethod
    def _not_in_future(cls, value: dt.date) -> dt.date:
        if value > dt.date.today() + dt.timedelta(days=1):
            raise ValueError("birth date is in the future")
        if value.year < 1880:
            raise ValueError("birth date is before 1880")
        return value

    @field_validator("identifiers")
    @classmethod
    def _one_per_system(cls, value: list[Identifier]) -> list[Identifier]:
        systems = [i.system for i in value]
        if len(set(systems)) != len(systems):
            raise ValueError("at most one identifier per system")
        return value


class IdentityConfirmationIn(_In):
    documents: Annotated[str, Field(min_length=3, max_length=300)] = Field(description=(
        "the documents the patient's identity was checked on, e.g. 'national ID card and birth certificate'"))


class PatientUpdate(PatientIn):
    reason: Reason = Field(description="why the registration is being corrected")
    version_id: uuid.UUID | None = Field(default=None, description="the version you loaded; 409 if it is stale")


class PatientOut(_Out):
    id: uuid.UUID
    mrn: str
    subject_id: uuid.UUID | None
    family_name: str
    given_names: str
    birth_date: dt.date
    birth_date_estimated: bool
    sex: str
    phone: str | None
    address: dict[str, Any]
    identifiers: list[dict[str, str]]
    contacts: list[dict[str, Any]]
    next_of_kin: list[dict[str, Any]]
    version_id: uuid.UUID = Field(description="the demographics entry in force; name it to correct it")
    registered_at: dt.datetime
    updated_at: dt.datetime


class RegistrationRefused(_Out):
    """A registration or a correction of one refused (409): what `ClinicalRegisterPatient` and
    `ClinicalCorrectPatient` answer when a person must look again before it is written."""

    status_code: int
    detail: str = Field(description="what to check, in a sentence to show the person at the desk")
    field: str | None = Field(default=None, description="the field at fault, or the one that answers the question")
    requires_national_id_confirmation: bool = Field(default=False, description=(
        "true when the national ID is held at another facility by a person born on another day or of another sex: "
        "check the number on the ID card, and send the registration again with `national_id_confirmed: true` if "
        "it is right (the chart is then that person's); nothing was written"))
    differs: list[Literal["birth date", "sex"]] = Field(default_factory=list, description=(
        "what the holder of the national ID differs in; never their values"))


class PatientMatch(_Out):
    id: uuid.UUID
    mrn: str
    family_name: str
    given_names: str
    birth_date: dt.date
    sex: str
    score: float = Field(description="1.0 for an identifier or exact match; name similarity otherwise")


# -- entries -----------------------------------------------------------------------------------------


class EntryOut(_Out):
    """What every entry-backed response carries."""

    id: uuid.UUID = Field(description="this version's entry id")
    root_id: uuid.UUID = Field(description="the record's id: the same across all its versions")
    entry_status: str = Field(description="final, amended (a correction) or entered_in_error")
    encounter_id: uuid.UUID | None
    author_id: uuid.UUID = Field(description="who wrote this version: for a correction, who corrected it")
    record_author_id: uuid.UUID = Field(description="who wrote the record's first version (the prescriber, the "
                                                    "clinician who diagnosed), kept when it is corrected")
    occurred_at: dt.datetime = Field(description="when the record's act happened (a drug prescribed, a test "
                                                 "ordered): its first version's time, kept when it is corrected")
    recorded_at: dt.datetime = Field(description="when this version was written: for a correction (entry_status "
                                                 "amended), when it was corrected")


class Retraction(_In):
    reason: Reason


class EntryVersion(EntryOut):
    occurred_at: dt.datetime = Field(description="this version's own time: a correction's is when it was made")
    kind: str
    supersedes: uuid.UUID | None
    reason: str | None
    detail: dict[str, Any]


# -- death certificates (clinical/death.py) ---------------------------------------------------------

DeathPlace = Literal["this_facility", "home", "other", "en_route"]
MannerOfDeath = Literal["disease", "accident", "intentional_self_harm", "assault", "legal_intervention", "war",
                        "pending_investigation", "could_not_be_determined"]
PregnancyAtDeath = Literal["not_pregnant", "pregnant", "within_42_days", "43_days_to_1_year", "unknown"]


class CauseIn(_In):
    """One condition of the certificate: an ICD-10 code and the interval from its onset to death, as the
    certifier writes it ('3 days', 'about 2 years'; free text, as on the paper form)."""

    code: Annotated[str, Field(min_length=1, max_length=10, examples=["J18.9"], description="ICD-10")]
    interval: Annotated[str, Field(max_length=60)] | None = None


class DeathIn(_In):
    """A death certificate on the WHO form. `part1` is lines a to d in order: a, the disease or condition
    leading directly to death, each line due to (or a consequence of) the next; the lowest line used is
    the underlying cause as certified. Empty lines are left out, not sent blank."""

    died_at: aware_datetime("the time of death") = Field(description="date and time of death, with its UTC offset")
    place: DeathPlace
    place_other: Annotated[str, Field(max_length=200)] | None = None
    part1: Annotated[list[CauseIn], Field(min_length=1, max_length=4)]
    part2: Annotated[list[CauseIn], Field(max_length=8)] = []
    manner: MannerOfDeath
    pregnancy: PregnancyAtDeath | None = Field(
        None, description="for a woman of 10 to 54 years at death: was she pregnant, or within 42 days (or a year) "
                          "of the end of a pregnancy; refused for a man")
    encounter_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _place_named(self) -> DeathIn:
        if self.place == "other" and not self.place_other:
            raise ValueError("say where the death happened when the place is 'other' (place_other)")
        return self


class DeathCorrection(DeathIn):
    reason: Reason
    version_id: uuid.UUID = Field(description="the version corrected: the certificate's `id` as you loaded it")


class CauseOut(_Out):
    line: str | None = None  # a-d in Part 1; none in Part 2
    code: str
    display: str
    interval: str | None


class DeathOut(_Out):
    id: uuid.UUID  # this version
    root_id: uuid.UUID  # the certificate
    patient_id: uuid.UUID
    encounter_id: uuid.UUID | None
    certifier_id: uuid.UUID  # the account that wrote (or last corrected) it
    recorded_at: dt.datetime
    entry_status: str
    died_at: dt.datetime
    place: str
    place_other: str | None
    part1: list[CauseOut]
    part2: list[CauseOut]
    underlying_code: str
    underlying_display: str
    underlying_chapter: str
    manner: str
    pregnancy: str | None
    kept_to_this_chart: str | None = Field(None, description=(
        "why the death is not shown at the person's other facilities: this chart's link to them is in dispute "
        "(linked over a differing national-ID answer), until its identity is confirmed or its national ID corrected"))


class ClosedAppointmentOut(_Out):
    """An appointment the certificate cancelled (still cancelled: a clerk rebooks it)."""

    id: uuid.UUID
    starts_at: dt.datetime
    clinic_code: str
    clinic: str = Field(description="the clinic's name")


class ClosedEncounterOut(_Out):
    """A visit the certificate cancelled (planned) or ended (an open outpatient or emergency visit)."""

    id: uuid.UUID
    encounter_class: str
    reason: str | None
    ward_code: str | None
    on: dt.datetime | None = Field(description="when it started, or was planned for")
    from_status: str
    to_status: str = Field(description="cancelled or finished, by the certificate")


class ClosedByDeathOut(_Out):
    appointments: list[ClosedAppointmentOut] = Field(description="soonest first")
    encounters: list[ClosedEncounterOut]


class DeathWithdrawalOut(_Out):
    """A certificate marked entered in error, and what it had closed when written: nothing of it is reopened, so
    a clerk rebooks what still stands."""

    id: uuid.UUID  # the version marking it entered in error
    root_id: uuid.UUID  # the certificate
    patient_id: uuid.UUID
    reason: str | None
    withdrawn_by: uuid.UUID = Field(description="who marked it entered in error")
    withdrawn_at: dt.datetime
    died_at: dt.datetime = Field(description="the time of death the withdrawn certificate gave")
    closed: ClosedByDeathOut


class DeathState(_Out):
    """The person's death as this facility knows it: its own certificate, if any, and the mark every facility
    reads (which may be another facility's certificate); with no certificate here, the last one withdrawn here and
    what it had closed."""

    certificate: DeathOut | None
    deceased: bool
    died_at: dt.datetime | None
    certified_at_facility: str | None  # the facility whose certificate it is
    withdrawn: DeathWithdrawalOut | None = None
    kept_to_this_chart: str | None = None  # as DeathOut's: the death is this facility's alone for now


# -- deliveries (appliance/layers/clinical/delivery.py) ----------------------------------------------

DeliveryMode = Literal["spontaneous_vaginal", "assisted_vaginal", "caesarean", "breech_vaginal"]
BirthOutcome = Literal["live_birth", "fresh_stillbirth", "macerated_stillbirth"]
Resuscitation = Literal["none", "stimulation", "bag_and_mask", "advanced"]
Uterotonic = Literal["oxytocin", "carbetocin", "misoprostol", "ergometrine", "none"]


class BabyIn(_In):
    """One baby of a delivery, in birth order. The ranges a person can get wrong (a weight in kilograms, an
    Apgar on a stillborn baby) are judged by the service, which answers in a sentence."""

    outcome: BirthOutcome
    sex: Literal["female", "male", "unknown"] = Field(description="'unknown' where the sex cannot be told at birth")
    weight_g: int = Field(description="birth weight in grams")
    apgar_1: int | None = Field(default=None, description="Apgar score at 1 minute (a live birth's)")
    apgar_5: int | None = Field(default=None, description="Apgar score at 5 minutes (a live birth's)")
    resuscitation: Resuscitation = "none"
    patient_id: uuid.UUID | None = Field(default=None, description=(
        "a live-born baby's chart already here, left born to no one when a delivery recorded on the wrong mother "
        "was marked entered in error: linked, not registered again (only on recording a delivery)"))


class DeliveryIn(_In):
    """A delivery on the mother's record: each live-born baby is registered as a patient in the same transaction."""

    born_at: aware_datetime("the time of birth") = Field(
        description="date and time of birth (of the first baby), with its UTC offset")
    gestation_weeks: int = Field(description="gestational age at birth, completed weeks")
    gestation_days: int = Field(default=0, description="and days (0-6)")
    mode: DeliveryMode
    babies: Annotated[list[BabyIn], Field(min_length=1, max_length=4)]
    blood_loss_ml: int = Field(description="the mother's estimated blood loss, ml")
    uterotonic: Uterotonic = Field(description="the uterotonic given in the third stage of labour, or none")
    encounter_id: uuid.UUID | None = Field(default=None,
                                           description="the mother's stay; her open admission if left out")


class DeliveryCorrection(DeliveryIn):
    reason: Reason
    version_id: uuid.UUID = Field(description="the version corrected: the delivery's `id` as you loaded it")


class BabyOut(_Out):
    number: int
    outcome: str
    sex: str
    weight_g: int
    apgar_1: int | None
    apgar_5: int | None
    resuscitation: str
    patient_id: uuid.UUID | None  # the live-born baby's chart at this facility
    low_birth_weight: bool


class DeliveryEnteredInError(_In):
    reason: Reason = Field(description="why the delivery is withdrawn: recorded on the wrong mother, recorded twice")


class DeliveryWithdrawn(_Out):
    id: uuid.UUID  # the entered-in-error version
    root_id: uuid.UUID  # the delivery
    patient_id: uuid.UUID  # the woman it was recorded on
    entry_status: str
    reason: str
    babies: list[uuid.UUID]  # the live-born babies' charts, kept, now born to no one at this facility
    next_steps: str  # what the staff must do next, in a sentence


class DeliveryOut(_Out):
    id: uuid.UUID  # this version
    root_id: uuid.UUID  # the delivery
    patient_id: uuid.UUID  # the mother
    encounter_id: uuid.UUID | None
    author_id: uuid.UUID  # who recorded (or last corrected) it
    recorded_at: dt.datetime
    entry_status: str
    born_at: dt.datetime
    gestation_weeks: int
    gestation_days: int
    preterm: bool
    mode: str
    babies: list[BabyOut]
    blood_loss_ml: int
    postpartum_haemorrhage: bool
    uterotonic: str


class BornTo(_Out):
    """A baby's chart's link to its mother: the delivery it was born of."""

    delivery_id: uuid.UUID
    mother_id: uuid.UUID
    mother_name: str
    born_at: dt.datetime
    number: int


class Deliveries(_Out):
    deliveries: list[DeliveryOut]
    born_to: BornTo | None


# -- encounters --------------------------------------------------------------------------------------


class VitalSignsIn(_In):
    systolic_mmhg: int | None = Field(default=None, ge=40, le=300)
    diastolic_mmhg: int | None = Field(default=None, ge=20, le=200)
    heart_rate_bpm: int | None = Field(default=None, ge=20, le=300)
    respiratory_rate: int | None = Field(default=None, ge=4, le=90)
    temperature_c: Decimal | None = Field(default=None, ge=25, le=45, decimal_places=1)
    spo2_percent: int | None = Field(default=None, ge=40, le=100)
    weight_kg: BodyWeight | None = Field(default=None, gt=0, le=400, description=(
        "kilograms to the gram (at most three decimals: 1.450 for a 1450 g baby)"))
    height_cm: Decimal | None = Field(default=None, ge=20, le=250, decimal_places=1)
    # For NEWS2 (nursing layer): ACVPU, air or oxygen (with its flow), and the SpO2 scale — 2 only on a
    # prescribed hypercapnic target of 88–92 %.
    consciousness: Literal["A", "C", "V", "P", "U"] | None = None
    supplemental_oxygen: bool | None = None
    oxygen_l_min: Decimal | None = Field(default=None, gt=0, le=60, decimal_places=1)
    spo2_scale: Literal[1, 2] | None = None
    # For malnutrition screening of children (clinical/growth.py): mid-upper-arm circumference in mm
    # (a tape's range, newborn to adult), and bilateral pitting oedema, present or looked for and absent,
    # with its WHO grade where it was graded (1 +, 2 ++, 3 +++; clinical/growth.py says what each covers).
    # A child's only: the nursing layer's reaction refuses them of a patient 16 or older when the set was taken.
    muac_mm: int | None = Field(default=None, ge=50, le=500, description=(
        "mid-upper-arm circumference in whole millimetres, as the tape reads: a child's (under 16 when the set "
        "was taken) screening for acute malnutrition; of anyone older the set is refused (422)"))
    oedema: bool | None = Field(default=None, description=(
        "bilateral pitting oedema: true present, false looked for and absent, left out not examined; a child's "
        "only, as muac_mm"))
    oedema_grade: Literal[1, 2, 3] | None = Field(default=None, description=(
        "the WHO grade of oedema present (with oedema true only): 1 (+) both feet, 2 (++) both feet and the lower "
        "legs, hands or lower arms, 3 (+++) generalised, including the face"))
    encounter_id: uuid.UUID | None = None

    @field_validator("oedema_grade", mode="before")
    @classmethod
    def _grade_is_a_number(cls, grade: Any) -> Any:
        # Python's True is 1, so a literal of 1 would take JSON's `true` as the grade +.
        if isinstance(grade, bool):
            raise ValueError("the grade of oedema is 1 (+), 2 (++) or 3 (+++), not true or false")
        return grade

    @field_validator("oedema_grade")
    @classmethod
    def _graded_oedema_is_present(cls, grade: int | None, info: ValidationInfo) -> int | None:
        # A grade says how far present oedema extends: with oedema absent or not examined it contradicts the
        # finding (the table's CHECK vital_signs_oedema_grade_is_present says so too).
        if grade is not None and info.data.get("oedema") is not True:
            raise ValueError("a grade of oedema (+, ++ or +++) is recorded with oedema present; here oedema "
                             "is recorded as " + ("absent" if info.data.get("oedema") is False else "not examined"))
        return grade

    @model_validator(mode="after")
    def _something(self) -> VitalSignsIn:
        measured = self.model_dump(exclude={"encounter_id", "spo2_scale"}, exclude_none=True)
        if not measured:
            raise ValueError("record at least one vital sign")
        if self.systolic_mmhg and self.diastolic_mmhg and self.diastolic_mmhg >= self.systolic_mmhg:
            raise ValueError("diastolic pressure must be below systolic")
        if self.oxygen_l_min is not None and self.supplemental_oxygen is False:
            raise ValueError("an oxygen flow was given for a patient breathing air")
        if self.oxygen_l_min is not None:
            self.supplemental_oxygen = True
        return self


class VitalSignsOut(EntryOut):
    systolic_mmhg: int | None
    diastolic_mmhg: int | None
    heart_rate_bpm: int | None
    respiratory_rate: int | None
    temperature_c: Decimal | None
    spo2_percent: int | None
    weight_kg: Decimal | None
    height_cm: Decimal | None
    consciousness: str | None = None
    supplemental_oxygen: bool | None = None
    oxygen_l_min: Decimal | None = None
    spo2_scale: int | None = None
    muac_mm: int | None = None
    oedema: bool | None = None
    oedema_grade: int | None = None


class EncounterIn(_In):
    encounter_class: EncounterClass
    status: Literal["planned", "arrived", "in_progress"] = "arrived"
    reason: str | None = Field(default=None, max_length=500)
    ward_code: str | None = Field(default=None, max_length=16)
    planned_for: dt.datetime | None = None
    vitals: VitalSignsIn | None = None


class EncounterTransition(_In):
    status: EncounterStatus


class EncounterOut(_Out):
    id: uuid.UUID
    patient_id: uuid.UUID
    encounter_class: str
    status: str
    reason: str | None
    ward_code: str | None
    planned_for: dt.datetime | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    vitals: VitalSignsOut | None = None


class TodaysEncounter(_Out):
    """One of today's encounters with the patient it is for (patient data: name, birth date, reason)."""
    id: uuid.UUID
    patient_id: uuid.UUID
    mrn: str
    family_name: str
    given_names: str
    birth_date: dt.date
    sex: str
    encounter_class: str
    status: str
    reason: str | None
    ward_code: str | None
    planned_for: dt.datetime | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    opened_by: uuid.UUID = Field(description="The account that opened the encounter.")
    mine: bool = Field(description="The caller opened the encounter or wrote something in it.")


class TodaysEncounters(_Out):
    date: dt.date = Field(description="The facility's today, in its own time zone.")
    timezone: str = Field(examples=["Africa/Nairobi"])
    whose: Literal["mine", "all"]
    encounters: list[TodaysEncounter]
    counts: dict[str, int] = Field(description="How many encounters each filter holds: `all` and `mine`.")
    cut_short: bool = Field(description="More encounters than one list holds (500): the first are listed.")


# -- problems and allergies --------------------------------------------------------------------------


class ConditionIn(_In):
    code: Annotated[str, Field(min_length=1, max_length=10, examples=["B50.9"], description="ICD-10")]
    clinical_status: Literal["active", "resolved", "inactive"] = "active"
    verification: Literal["confirmed", "provisional", "differential"] = "confirmed"
    onset_date: dt.date | None = None
    resolved_date: dt.date | None = None
    note: str | None = Field(default=None, max_length=2000)
    encounter_id: uuid.UUID | None = None

    @field_validator("onset_date", "resolved_date")
    @classmethod
    def _not_in_future(cls, value: dt.date | None, info: ValidationInfo) -> dt.date | None:
        # A day's grace, as for a birth date: the server's UTC date trails a facility east of Greenwich.
        if value is not None and value > dt.date.today() + dt.timedelta(days=1):
            raise ValueError(f"{info.field_name.replace('_date', '')} date is in the future")
        return value


class ConditionAmend(ConditionIn):
    reason: Reason


class ConditionOut(EntryOut):
    code: str
    display: str
    clinical_status: str
    verification: str
    onset_date: dt.date | None
    resolved_date: dt.date | None
    note: str | None


class AllergyIn(_In):
    substance: Text
    category: Literal["medication", "food", "environment", "other"] = "medication"
    reaction: str | None = Field(default=None, max_length=200)
    severity: Literal["mild", "moderate", "severe"] | None = None
    criticality: Literal["low", "high", "unable_to_assess"] = "unable_to_assess"
    clinical_status: Literal["active", "inactive", "resolved"] = "active"
    note: str | None = Field(default=None, max_length=2000)
    encounter_id: uuid.UUID | None = None


class AllergyAmend(AllergyIn):
    reason: Reason


class AllergyOut(EntryOut):
    substance: str
    category: str
    reaction: str | None
    severity: str | None
    criticality: str
    clinical_status: str
    note: str | None


# -- medications -------------------------------------------------------------------------------------


class MedicationIn(_In):
    drug: Text
    dose: Decimal = Field(gt=0, le=100_000)
    dose_unit: Annotated[str, Field(min_length=1, max_length=20, examples=["mg"])]
    route: Annotated[str, Field(min_length=1, max_length=40, examples=["oral"])]
    frequency: Annotated[str, Field(min_length=1, max_length=60, examples=["every 8 hours"])]
    duration_days: int | None = Field(default=None, ge=1, le=365)
    instructions: str | None = Field(default=None, max_length=1000)
    allergy_override_reason: str | None = Field(
        default=None, min_length=3, max_length=1000,
        description="required when the drug matches a recorded allergy: why it is given anyway",
    )
    encounter_id: uuid.UUID | None = None

    @field_validator("dose")
    @classmethod
    def _without_trailing_zero(cls, dose: Decimal) -> Decimal:
        # A dose is never written with a trailing zero: "1.0 mg" is given as 10 mg (the Joint Commission's "do not
        # use" list, ISMP's error-prone notations). An order set's `dose = 1000` comes from the tenant file as a float
        # and was prescribed, and printed on every page after, as "1000.0 mg".
        return dose.quantize(Decimal(1)) if dose == dose.to_integral_value() else dose.normalize()


class MedicationStatusIn(_In):
    status: Literal["completed", "stopped"]
    reason: Reason


class MedicationOut(EntryOut):
    drug: str
    dose: Decimal
    dose_unit: str
    route: str
    frequency: str
    duration_days: int | None
    status: str
    instructions: str | None
    allergy_override_reason: str | None
    order_set: str | None


class AllergyMatchOut(BaseModel):
    allergy_id: str
    substance: str
    why: str


# -- orders, results ---------------------------------------------------------------------------------


class ServiceRequestIn(_In):
    code: Annotated[str, Field(pattern=r"^[0-9]{1,7}-[0-9]$", description="LOINC code from the catalogue")]
    priority: Literal["routine", "urgent", "stat"] = "routine"
    clinical_info: str | None = Field(default=None, max_length=1000)
    encounter_id: uuid.UUID | None = None
    occurred_at: aware_datetime("the time the order was placed") | None = Field(default=None, description=(
        "when the order was placed (a ward's system sending it after its link came back), with its UTC offset; when "
        "it arrived if left out. Not in the future, not before the patient was born nor before the visit it is "
        "ordered on began. Turnaround counts from it; the record keeps the arrival too (recorded_at)"))


class ServiceRequestOut(EntryOut):
    category: str
    code: str
    display: str
    priority: str
    status: str
    clinical_info: str | None
    order_set: str | None


class OrderSetIn(_In):
    encounter_id: uuid.UUID | None = None
    priority: Literal["routine", "urgent", "stat"] = "routine"
    clinical_info: str | None = Field(default=None, max_length=1000)
    allergy_override_reason: str | None = Field(default=None, min_length=3, max_length=1000)
    leave_out: list[Text] = Field(default_factory=list, max_length=20, description=(
        "drugs of the set not to order (one the patient is allergic to, say); the rest of the set is ordered"))
    occurred_at: aware_datetime("the time the order set was placed") | None = Field(default=None, description=(
        "when the set was ordered (written up after a verbal order, or sent late by another system), with its UTC "
        "offset; when it arrived if left out. Every order of the set takes it. Not in the future, not before the "
        "patient was born nor before the visit it is ordered on began; the record keeps the arrival too "
        "(recorded_at)"))


class OrderSetPlaced(BaseModel):
    order_set: str
    service_requests: list[ServiceRequestOut]
    medication_requests: list[MedicationOut]


class ResultIn(_In):
    code: Annotated[str, Field(pattern=r"^[0-9]{1,7}-[0-9]$", description="LOINC code of the analyte")]
    service_request_id: uuid.UUID | None = Field(default=None, description="id or root id of the order")
    value: Measurement | str = Field(union_mode="left_to_right")
    unit: str | None = Field(default=None, max_length=30)
    reference_low: Measurement | None = None
    reference_high: Measurement | None = None
    flag: Literal["N", "L", "H", "LL", "HH", "A", "AA"] | None = None
    note: str | None = Field(default=None, max_length=2000)
    encounter_id: uuid.UUID | None = None
    occurred_at: aware_datetime("the time the result was observed") | None = Field(default=None, description=(
        "when the result was observed (an analyser's run, the specimen's collection), with its UTC offset; when it "
        "arrived if left out. Not in the future, not before its order. The record keeps the arrival too "
        "(recorded_at)"))

    @field_validator("value")
    @classmethod
    def _not_blank(cls, value: Decimal | str) -> Decimal | str:
        if isinstance(value, str) and not value.strip():
            raise ValueError("a result needs a value")
        return value


class SignOffIn(_In):
    comment: str | None = Field(default=None, max_length=2000)


class DisclosureIn(_In):
    note: str | None = Field(default=None, max_length=2000)


class ChartResultOut(EntryOut):
    """A result as the chart summary carries it. `chart.py` composes the summary's SQL from these fields
    and a tenant migration freezes it, so a field added here needs a revision replacing the function."""

    service_request_id: uuid.UUID | None
    code: str
    display: str
    value_numeric: Decimal | None
    value_text: str | None
    unit: str | None
    reference_low: Decimal | None
    reference_high: Decimal | None
    flag: str | None
    note: str | None
    signed_by: uuid.UUID | None = None
    signed_at: dt.datetime | None = None


class ResultOut(ChartResultOut):
    """A result as the results API returns it: who reviewed it and, once a clinician has given it to the
    patient in person (a result the release rules keep off the portal until then), who and when."""

    disclosure_id: uuid.UUID | None = None  # the entry recording it, which may be marked entered in error
    disclosed_by: uuid.UUID | None = None
    disclosed_at: dt.datetime | None = None


class RecordedResultOut(ResultOut):
    """A result just recorded, with whom the range it was judged by is for."""

    reference_band: str | None = Field(default=None, description=(
        "whom the range the result was judged by is for when it is a band of the patient's age and sex ('6 months "
        "to 5 years', 'male, 15 years and over'); null: the test's own range, or a range the sender gave"))


# -- notes and templates -----------------------------------------------------------------------------


class NoteIn(_In):
    template_code: str | None = Field(default=None, max_length=16)
    title: str | None = Field(default=None, max_length=200)
    fields: dict[str, Any] = Field(default_factory=dict)
    text: str | None = Field(default=None, max_length=20_000)
    encounter_id: uuid.UUID | None = None


class NoteOut(EntryOut):
    template_code: str | None
    title: str
    fields: dict[str, Any]
    text: str | None


# -- discharge summaries -----------------------------------------------------------------------------

_DISCHARGE_FIELDS = (
    "The discharge summary template's fields, by key. Required: diagnoses, hospital_course, medications, "
    "allergies, condition (recovered, improved, unchanged or deteriorated), instructions, follow_up; optional: "
    "results, follow_up_date (YYYY-MM-DD). The draft (GET .../discharge-summaries/draft) gives them with their "
    "labels, the first four pre-filled from the record. A required field missing is a 422 naming it "
    "(`fields.<key>`).")


class DischargeSummaryIn(_In):
    encounter_id: uuid.UUID = Field(description="the inpatient stay (encounter) the summary closes")
    fields: dict[str, Any] = Field(default_factory=dict, description=_DISCHARGE_FIELDS)


class DischargeSummaryAmend(_In):
    fields: dict[str, Any] = Field(default_factory=dict, description=_DISCHARGE_FIELDS + " Send every field: the "
                                   "correction replaces the summary's fields.")
    reason: Reason


class DischargeStay(_Out):
    id: uuid.UUID = Field(description="the inpatient encounter")
    status: str
    reason: str | None
    ward_code: str | None = Field(description="the ward the patient is in, or was discharged from")
    started_at: dt.datetime | None = Field(description="admitted")
    ended_at: dt.datetime | None = Field(description="discharged; None while the patient is still in")


class DischargeHeldBack(_Out):
    id: uuid.UUID = Field(description="the result entry")
    test: str
    taken_at: dt.datetime
    rule_id: str = Field(description="the release rule (REL-001...) keeping it to be given to the patient in person")


class DischargeDraft(_Out):
    stay: DischargeStay
    template: dict[str, Any] = Field(description="the discharge summary template: its fields' keys, labels, types")
    fields: dict[str, str] = Field(description="diagnoses, results, medicines and allergies as the record has them")
    held_back: list[DischargeHeldBack] = Field(description="results of the stay left out of `fields.results`: a "
                                               "release rule keeps each to be given in person, and none was recorded "
                                               "as given; give it first (the summary is the patient's to read)")
    summary_id: uuid.UUID | None = Field(description="the summary in force for this stay, if one was signed")


class DischargeSummaryOut(NoteOut):
    reason: str | None = Field(description="why this version corrected the one before it; None for the first")
    stay: DischargeStay


# -- medicines reconciliation on admission ----------------------------------------------------------


class ReconciliationDecisionIn(_In):
    medication_request_id: uuid.UUID = Field(description="a prescription the patient came in on (any version's id)")
    decision: Literal["continue", "stop", "hold"] = Field(
        description="continue: given in hospital from now, as a new prescription of the stay; stop: stopped; "
                    "hold: not given in hospital, kept for discharge")
    reason: str | None = Field(default=None, max_length=1000,
                               description="why it is stopped or held (required for those); a note otherwise")
    allergy_override_reason: str | None = Field(
        default=None, min_length=3, max_length=1000,
        description="continuing a drug that matches a recorded allergy: why it is given anyway")


class ReconciliationIn(_In):
    decisions: list[ReconciliationDecisionIn] = Field(min_length=1, max_length=50)


class ReconciliationDecisionOut(_Out):
    id: uuid.UUID = Field(description="the decision's entry (this version)")
    decision: Literal["continue", "stop", "hold"]
    continued_as: uuid.UUID | None = Field(description="continued: the stay's prescription that gives it (root id)")
    reason: str | None
    author_id: uuid.UUID
    recorded_at: dt.datetime


class CameInOnOut(MedicationOut):
    """A medicine the patient came in on: a prescription written before the stay."""

    decision: ReconciliationDecisionOut | None = Field(description="the decision in force; None: to reconcile")


class ReconciliationStay(_Out):
    id: uuid.UUID = Field(description="the stay's inpatient encounter")
    started_at: dt.datetime | None
    ward_code: str | None


class ReconciliationOut(_Out):
    stay: ReconciliationStay | None = Field(description="None: the patient is not admitted")
    medicines: list[CameInOnOut]
    to_reconcile: int = Field(description="medicines still waiting for a decision")


class ReconciledDecision(_Out):
    id: uuid.UUID
    medication_request_id: uuid.UUID
    drug: str
    decision: Literal["continue", "stop", "hold"]
    continued_as: uuid.UUID | None
    reason: str | None
    recorded_at: dt.datetime


class ReconciledOut(ReconciliationOut):
    decided: list[ReconciledDecision] = Field(description="the decisions this reconciliation wrote")


class CatalogueItem(BaseModel):
    code: str
    name: str
    category: str
    definition: dict[str, Any]


class TemplateOut(BaseModel):
    code: str
    name: str
    specialty: str
    definition: dict[str, Any]


class OrderSetOut(BaseModel):
    code: str
    name: str
    definition: dict[str, Any]


# -- growth (clinical/growth.py) ---------------------------------------------------------------------


class GrowthIndexOut(_Out):
    """One anthropometric index of a set of measurements against the WHO standard (patient data)."""
    value: float
    z: float | None
    centile: float | None
    band: str | None


class GrowthPointOut(_Out):
    """One set of vital signs read against the WHO standards (patient data)."""
    entry_id: uuid.UUID
    occurred_at: dt.datetime
    age_days: int
    # Born preterm here and under two: the age the standards read it at, corrected for prematurity (negative
    # before term, where the standards have no reading); None where the age is not corrected.
    corrected_age_days: int | None
    age_months: int  # completed months, as appliance.substrate.age counts them
    weight_kg: Decimal | None
    height_cm: Decimal | None
    muac_mm: int | None
    oedema: bool | None
    oedema_grade: int | None
    weight_for_age: GrowthIndexOut | None
    height_for_age: GrowthIndexOut | None
    bmi_for_age: GrowthIndexOut | None
    acute_malnutrition: Literal["severe", "moderate", "none"] | None
    criteria: list[str]


class GrowthPretermOut(_Out):
    """A baby born preterm here: its gestation at birth, the day it reaches term and the day its age is no longer
    corrected (patient data)."""
    gestation_weeks: int
    gestation_days: int
    term_on: dt.date
    corrected_until: dt.date


class GrowthOut(_Out):
    """A child's growth, computed on read from the vital signs and the birth date (patient data)."""
    patient_id: uuid.UUID
    sex: str
    birth_date: dt.date
    birth_date_estimated: bool
    age_months: int
    standards: str
    wasting_index: str
    points: list[GrowthPointOut]
    latest: GrowthPointOut | None
    summary: str | None
    preterm: GrowthPretermOut | None


# -- immunizations (clinical/immunization.py, clinical/immunization_schedule.py) ------------------------

NotDoneReason = Literal["refused", "contraindicated", "out_of_stock", "child_unwell", "already_immune", "other"]
VaccineRoute = Literal["intramuscular", "subcutaneous", "intradermal", "oral"]
VaccineSite = Literal["left_thigh", "right_thigh", "left_upper_arm", "right_upper_arm", "mouth"]
DoseState = Literal["given", "due", "overdue", "not_yet_due", "no_longer_given"]


class ImmunizationIn(_In):
    vaccine: str = Field(min_length=1, max_length=20, description="a vaccine code of policies/immunization.toml",
                         examples=["PENTA"])
    dose_number: int | None = Field(default=None, ge=1, le=10, description=(
        "its place in the vaccine's series; none for a campaign or extra dose, which counts for no dose"))
    given_on: dt.date | None = Field(default=None, description="the day it was given (or was due and not given); "
                                                               "today if left out")
    status: Literal["completed", "not_done"] = "completed"
    not_done_reason: NotDoneReason | None = Field(default=None, description="why a dose due was not given")
    lot_number: str | None = Field(default=None, max_length=40)
    expiry_date: dt.date | None = Field(default=None, description="of the lot")
    site: VaccineSite | None = None
    route: VaccineRoute | None = None
    source: Literal["administered", "historical"] = Field(default="administered", description=(
        "administered: given here; historical: recorded from the patient's card or another facility"))
    note: str | None = Field(default=None, max_length=1000)
    encounter_id: uuid.UUID | None = None

    @field_validator("vaccine", "lot_number", "note", mode="before")
    @classmethod
    def _without_nul(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold NUL and no person types one: dropped, not a 500.
        return value.replace("\x00", "") if isinstance(value, str) else value

    @model_validator(mode="after")
    def _reason_only_when_not_given(self) -> ImmunizationIn:
        if self.status == "not_done" and self.not_done_reason is None:
            raise ValueError("a dose not given needs its reason, not_done_reason: refused, contraindicated, "
                             "out_of_stock, child_unwell, already_immune or other")
        if self.status == "completed" and self.not_done_reason is not None:
            raise ValueError("not_done_reason is for a dose not given; a dose given has none")
        return self


class ImmunizationAmend(ImmunizationIn):
    reason: Reason


class ImmunizationOut(EntryOut):
    occurred_at: dt.datetime = Field(description="when the dose was given: this version's own time, since a "
                                                 "correction may correct the day")
    given_on: dt.date = Field(description="the dose's day at the facility")
    vaccine: str
    vaccine_name: str | None = Field(description="the schedule's name for the code; none if no longer in it")
    dose_number: int | None
    status: str
    not_done_reason: str | None
    lot_number: str | None
    expiry_date: dt.date | None
    site: str | None
    route: str | None
    source: str
    note: str | None


class WithdrawnImmunizationOut(_Out):
    id: uuid.UUID = Field(description="the version marked entered in error")
    root_id: uuid.UUID
    vaccine: str
    vaccine_name: str | None
    dose_number: int | None
    status: str
    withdrawn_by: uuid.UUID
    withdrawn_at: dt.datetime
    withdrawn_reason: str | None


class DoseAttemptOut(_Out):
    entry_id: uuid.UUID
    given_on: dt.date
    counts: bool
    why: str | None = Field(description="why it does not count: too early (minimum age or interval), from an expired "
                                        "lot, or a repeat")


class DoseStatusOut(_Out):
    vaccine: str
    vaccine_name: str
    dose_number: int
    doses: int = Field(description="doses in the vaccine's series")
    label: str
    state: DoseState
    given_on: dt.date | None = Field(description="the dose that counts")
    due_from: dt.date | None = Field(description="the first day it may be given and count")
    recommended_on: dt.date | None
    overdue_since: dt.date | None
    no_later_than: dt.date | None = Field(description="the day the vaccine is no longer given, if it has an age limit")
    waiting_for: int | None = Field(description="not yet due until this dose of the series is given")
    attempts: list[DoseAttemptOut] = Field(description="doses recorded against it, each counted or not and why")
    not_done_reason: str | None = Field(description="the latest time it was due and not given: why")
    not_done_on: dt.date | None


class ImmunizationsOut(_Out):
    patient_id: uuid.UUID
    birth_date: dt.date
    today: dt.date
    schedule: list[DoseStatusOut]
    doses: list[ImmunizationOut] = Field(description="the doses in force, newest first")
    withdrawn: list[WithdrawnImmunizationOut] = Field(description="doses marked entered in error")


class ImmunizationRecorded(_Out):
    immunization: ImmunizationOut
    counts: bool | None = Field(description="whether the dose counts for its dose of the series; none for a dose "
                                            "not given or one without a dose number")
    detail: str = Field(description="the outcome in a sentence: counts, or too early and why, the dose still due")
    schedule: list[DoseStatusOut] = Field(description="the vaccine's doses on the schedule now")


class NextOfKinOut(_Out):
    name: str
    relationship: str
    phone: str | None = None


class DueChildOut(_Out):
    patient_id: uuid.UUID
    mrn: str
    family_name: str
    given_names: str
    birth_date: dt.date
    sex: str
    age: str
    phone: str | None = Field(description="the phone on the child's registration (often a parent's)")
    next_of_kin: list[NextOfKinOut] = Field(description="as registered: the parents or carers to trace the child by")
    overdue_since: dt.date | None
    doses: list[DoseStatusOut]


class DueListOut(_Out):
    today: dt.date
    trace_until: str = Field(description="children younger than this are listed")
    children: list[DueChildOut]
    counts: dict[str, int]
    truncated: bool


# -- chart -------------------------------------------------------------------------------------------


class ChartSummary(BaseModel):
    patient: PatientOut
    problems: list[ConditionOut]
    allergies: list[AllergyOut]
    medications: list[MedicationOut]
    vitals: VitalSignsOut | None
    results: list[ChartResultOut]
    open_orders: list[ServiceRequestOut]
    encounters: list[EncounterOut]


# -- the laboratory bench ----------------------------------------------------------------------------

# The bench's three states, and done with: every result of it signed off (listed apart, for corrections).
LabState = Literal["awaiting_specimen", "specimen_received", "resulted", "signed_off"]


class SpecimenReceiptIn(_In):
    note: str | None = Field(default=None, max_length=500, description="the specimen's state: haemolysed, clotted")


class SpecimenRejectionIn(_In):
    reason: Reason = Field(description="why the specimen cannot be tested: haemolysed, clotted, unlabelled, too little")


class BenchValueIn(_In):
    code: Annotated[str, Field(pattern=r"^[0-9]{1,7}-[0-9]$", description="LOINC code of the component")]
    value: Measurement | str = Field(union_mode="left_to_right")


class BenchResultsIn(_In):
    """The results of one order, every component entered in one act: all are recorded, or (one refused)
    none. A component left out was not done."""

    results: list[BenchValueIn] = Field(min_length=1, max_length=60)
    note: str | None = Field(default=None, max_length=2000)


class ResultCorrectionIn(_In):
    value: Measurement | str = Field(union_mode="left_to_right")
    reason: Reason
    note: str | None = Field(default=None, max_length=2000)


class BenchAnalyteOut(_Out):
    """A component of the test as the catalogue defines it: what the bench enters a value for."""

    code: str
    name: str
    unit: str | None
    low: float | None
    high: float | None
    choices: list[str]
    band: str | None = Field(default=None, description=(
        "whom the range is for when it is a band of the patient's age and sex ('6 months to 5 years', 'male, 15 "
        "years and over'); null: the test's own range"))


class BenchResultOut(_Out):
    id: uuid.UUID
    root_id: uuid.UUID
    code: str
    display: str
    value_numeric: Decimal | None
    value_text: str | None
    unit: str | None
    reference_low: Decimal | None
    reference_high: Decimal | None
    flag: str | None
    recorded_at: dt.datetime
    corrected: bool
    signed: bool
    reference_band: str | None = Field(default=None, description=(
        "whom the range the result was judged by is for, when it is a band of the patient's age and sex; null: the "
        "test's own range, or a range the sender gave"))


class LabOrderOut(_Out):
    """An order as the laboratory sees it: the patient named enough to match the specimen's label (name,
    MRN, sex, age), the test and who asked for it, and where it stands. Nothing else of the chart."""

    id: uuid.UUID  # the order's root id
    patient_id: uuid.UUID
    mrn: str
    family_name: str
    given_names: str
    sex: str
    age: str
    code: str
    display: str
    priority: str
    ordered_at: dt.datetime
    ordered_by: uuid.UUID
    location: str | None  # the ward, else the kind of visit
    state: LabState
    received_at: dt.datetime | None
    received_by: uuid.UUID | None
    specimen_note: str | None
    results: list[BenchResultOut]
    analytes: list[BenchAnalyteOut] = Field(default_factory=list)


class LabWorklistOut(_Out):
    state: LabState | None
    orders: list[LabOrderOut]
    counts: dict[str, int]
    cut_short: bool


# -- the imaging department's bench -------------------------------------------------------------------

# The bench's three states, and done with: its report signed off (listed apart, for corrections).
ImagingState = Literal["awaiting_study", "performed", "reported", "signed_off"]
ReportText = Annotated[str, Field(min_length=1, max_length=2000)]
# A CT or MRI report's findings run to several thousand characters; result.note is text, so the cap is only a
# schema's. 20,000 is the chart's other long text (LongText: a note, a discharge summary).
FINDINGS_MAX = 20_000


class StudyPerformedIn(_In):
    note: str | None = Field(default=None, max_length=500, description=(
        "how the study was done: the views taken, contrast given, the patient's cooperation"))
    performed_at: aware_datetime("the time the study was performed") | None = Field(default=None, description=(
        "when the study was performed, with its UTC offset; now if left out. Not in the future, not before the "
        "order"))


class StudyPerformedInErrorIn(_In):
    reason: Reason = Field(description="why 'performed' is withdrawn: recorded on the wrong order, the study not "
                                       "done after all")


class ImagingReportIn(_In):
    """A study's report. Kept as the order's `result`, as an HL7 ORU's report is: the impression is its value
    (what the review list and the chart show first), the findings its note."""

    findings: str = Field(min_length=1, max_length=FINDINGS_MAX, description=(
        "what the images show, in free text (up to 20,000 characters: a CT report's length)"))
    impression: ReportText = Field(description="the conclusion: what the findings mean for this patient")
    critical: bool = Field(default=False, description=(
        "a critical finding, one the clinician must act on now (a tension pneumothorax): the report is flagged "
        "critical (AA) and is a critical result as a lab value beyond its critical limits is, first on every "
        "clinician's results to review and on its ward's worklist until a doctor signs it off; telephone the "
        "ordering clinician or the ward as well"))
    unexpected: bool = Field(default=False, description=(
        "an unexpected finding that is not urgent (a renal cyst on a chest film): the report is flagged abnormal "
        "(A) on the ordering clinician's results to review, as an abnormal lab result is. Critical outranks it"))


class ImagingReportResultIn(ResultIn):
    """An imaging report as the order's result it is kept as: its findings are the result's note, which may be a
    CT report's length. A lab result's note keeps ResultIn's 2,000 characters (the HL7 feed and the lab bench
    send ResultIn)."""

    note: str | None = Field(default=None, max_length=FINDINGS_MAX)


class ImagingReportCorrectionIn(ImagingReportIn):
    reason: Reason


class ImagingReportOut(_Out):
    id: uuid.UUID
    root_id: uuid.UUID
    findings: str | None
    impression: str | None
    critical: bool  # flagged critical (AA, or a sender's HH or LL): a critical result
    unexpected: bool  # flagged abnormal (A): an unexpected finding, not urgent
    flag: str | None
    recorded_at: dt.datetime
    reported_by: uuid.UUID  # who wrote (signed) this version of the report
    corrected: bool
    signed: bool  # reviewed by a clinician


class ImagingOrderOut(_Out):
    """An order as the imaging department sees it: the patient named enough to match them at the door (name,
    MRN, sex, age), the study, who asked for it and why, and where it stands. Nothing else of the chart."""

    id: uuid.UUID  # the order's root id
    patient_id: uuid.UUID
    mrn: str
    family_name: str
    given_names: str
    sex: str
    age: str
    code: str
    display: str
    priority: str
    clinical_info: str | None  # the indication the ordering clinician gave: what the study is to answer
    ordered_at: dt.datetime
    ordered_by: uuid.UUID
    location: str | None  # the ward, else the kind of visit
    state: ImagingState
    performed_at: dt.datetime | None
    performed_by: uuid.UUID | None
    performed_note: str | None
    reports: list[ImagingReportOut]


class ImagingWorklistOut(_Out):
    state: ImagingState | None
    orders: list[ImagingOrderOut]
    counts: dict[str, int]
    cut_short: bool


# -- referrals (referral.py) -------------------------------------------------------------------------

Urgency = Literal["routine", "urgent", "emergency"]
ChosenItems = Annotated[list[uuid.UUID], Field(default_factory=list, max_length=50)]


class ReferralIn(_In):
    """A referral to another facility of the appliance, and its letter: the summary the clinician writes and the
    chart's items they choose to send (ids of the chart's current records), copied as they stand at sending."""

    to_tenant: Annotated[str, Field(min_length=1, max_length=63, description="the facility referred to (its slug)")]
    clinic: str | None = Field(default=None, max_length=32,
                               description="a clinic of that facility's tenant file; none: the facility decides")
    urgency: Urgency
    reason: Reason
    summary: Annotated[str, Field(min_length=3, max_length=8000, description="the letter's clinical summary")]
    problem_ids: ChosenItems
    allergy_ids: ChosenItems
    medication_ids: ChosenItems
    result_ids: ChosenItems


class ReferralFeedbackIn(_In):
    """The counter-referral the receiving facility writes once the patient was seen."""

    findings: Annotated[str, Field(min_length=3, max_length=8000)]
    treatment: str = Field(default="", max_length=8000, description="what was done")
    advice: str = Field(default="", max_length=8000, description="advice for the referring facility")


class ReferralOut(_Out):
    """A referral as this facility reads it: `side` says whether it sent or received it, `patient_id` is this
    facility's own chart of the person (none yet for a referral received and not accepted). The letter is what the
    referring facility sent: the person (name, birth date, sex, national ID), the summary and the chosen items."""

    id: uuid.UUID
    side: Literal["sent", "received"]
    patient_id: uuid.UUID | None
    from_tenant: str
    from_facility: str | None
    to_tenant: str
    to_facility: str | None
    clinic: str | None
    urgency: Urgency
    reason: str
    letter: dict[str, Any]
    status: Literal["sent", "accepted", "declined", "withdrawn", "completed"]
    sent_at: dt.datetime
    sent_by: uuid.UUID
    answered_at: dt.datetime | None
    answered_by: uuid.UUID | None
    declined_reason: str | None
    feedback: dict[str, Any] | None
    completed_at: dt.datetime | None
    completed_by: uuid.UUID | None
    withdrawn_at: dt.datetime | None
    withdrawn_reason: str | None
    kept_apart: str | None = Field(None, description=(
        "on sending or accepting: why the referral reaches no chart of the person at the receiving facility (the "
        "referring chart's link to them is in dispute, linked over a differing national-ID answer)"))


class ReferralAcceptIn(_In):
    slot_id: uuid.UUID | None = Field(default=None, description=(
        "a free slot to book the visit in (of the referral's clinic when it names one; the operations API's "
        "GET /clinics/<code>/slots lists them), in the acceptance's transaction"))


class ReferralAppointment(_Out):
    """The visit booked on accepting: where and when (its reason names the referral)."""

    id: uuid.UUID
    clinic_code: str
    starts_at: dt.datetime
    reason: str | None


class ReferralDestination(_Out):
    tenant: str
    name: str
    facility_type: str
    clinics: list[dict[str, str]]
