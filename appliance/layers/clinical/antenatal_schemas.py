"""Request and response models of antenatal care (appliance/layers/clinical/antenatal.py): explicit allow-lists, as
appliance/layers/clinical/schemas.py's are, kept beside the room they serve. The ranges a person can get wrong (a
pressure the wrong way round, a weight in pounds) are judged by the service, which answers in a sentence naming
the field; these models refuse only what is not of the right type or choice."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field

from appliance.layers.clinical.schemas import Reason, _In, _Out

DangerSign = Literal["vaginal_bleeding", "severe_headache", "blurred_vision", "convulsions", "fever",
                     "reduced_fetal_movements", "leaking_fluid", "severe_abdominal_pain"]
UrineProtein = Literal["negative", "trace", "1+", "2+", "3+"]


class AntenatalIn(_In):
    """One antenatal care contact. The first contact of a pregnancy dates it: the LMP, or an ultrasound's
    gestational age on the day of the scan (which wins when both are given); later contacts may leave the dating
    out and belong to the open pregnancy."""

    seen_on: dt.date | None = Field(default=None, description="the day of the contact on the facility's calendar; "
                                                               "today if left out")
    lmp: dt.date | None = Field(default=None, description="first day of the last menstrual period")
    ultrasound_on: dt.date | None = Field(default=None, description="the day of the dating ultrasound")
    ultrasound_weeks: int | None = Field(default=None, description="gestational age the ultrasound measured, weeks")
    ultrasound_days: int | None = Field(default=None, description="and days (0-6)")
    gravida: int | None = Field(default=None, description="pregnancies including this one (at the first contact)")
    para: int | None = Field(default=None, description="births from 22 weeks before this pregnancy")
    systolic_mmhg: int | None = None
    diastolic_mmhg: int | None = None
    weight_kg: Decimal | None = Field(default=None, decimal_places=1)
    fundal_height_cm: int | None = None
    fetal_heart_rate: int | None = Field(default=None, description="beats per minute")
    fetal_movements: Literal["present", "reduced", "absent"] | None = None
    presentation: Literal["cephalic", "breech", "transverse"] | None = Field(
        default=None, description="from 36 weeks; earlier it is not recorded")
    urine_protein: UrineProtein | None = Field(default=None, description="dipstick")
    haemoglobin_g_dl: Decimal | None = Field(default=None, decimal_places=1)
    syphilis_test: Literal["not_done", "negative", "positive"] = "not_done"
    syphilis_treated: bool = Field(default=False, description="benzathine penicillin given for a positive test")
    hiv_test: Literal["not_done", "negative", "positive", "known_positive"] = "not_done"
    td_dose: int | None = Field(default=None, description=(
        "tetanus-diphtheria (Td) dose number given at this contact: recorded here, as the national immunization "
        "schedule (policies/immunization.toml) is the children's and has no Td for a pregnant woman"))
    iptp_dose: int | None = Field(default=None, description="IPTp-SP dose number given (from 13 weeks)")
    iron_folic_acid: bool = False
    danger_signs: Annotated[list[DangerSign], Field(max_length=8)] = []
    next_visit_on: dt.date | None = None
    note: Annotated[str, Field(max_length=4000)] | None = None
    encounter_id: uuid.UUID | None = None


class AntenatalCorrection(AntenatalIn):
    reason: Reason


class ContactOut(_Out):
    id: uuid.UUID  # this version
    root_id: uuid.UUID  # the contact
    pregnancy_id: uuid.UUID
    entry_status: str
    author_id: uuid.UUID
    recorded_at: dt.datetime
    seen_on: dt.date
    number: int  # the contact's number in its pregnancy
    gestation_days: int
    gestation: str  # weeks+days
    lmp: dt.date | None
    ultrasound_on: dt.date | None
    ultrasound_weeks: int | None
    ultrasound_days: int | None
    edd: dt.date
    dated_by: str
    gravida: int | None
    para: int | None
    systolic_mmhg: int | None
    diastolic_mmhg: int | None
    weight_kg: Decimal | None
    fundal_height_cm: int | None
    fetal_heart_rate: int | None
    fetal_movements: str | None
    presentation: str | None
    urine_protein: str | None
    haemoglobin_g_dl: Decimal | None
    syphilis_test: str
    syphilis_treated: bool
    hiv_test: str
    td_dose: int | None
    iptp_dose: int | None
    iron_folic_acid: bool
    danger_signs: list[str]
    next_visit_on: dt.date | None
    note: str | None
    flags: list[str]


class ScheduledContactOut(_Out):
    number: int
    week: int
    due_on: dt.date
    state: str  # kept, missed, due, upcoming
    kept_on: dt.date | None


class PregnancyEnd(_Out):
    delivery_id: uuid.UUID
    born_at: dt.datetime
    gestation_weeks: int
    gestation_days: int


class PregnancyOut(_Out):
    id: uuid.UUID  # the first contact's record id
    status: str  # open, delivered, closed (past 45 weeks with no delivery recorded here)
    edd: dt.date
    dated_by: str
    lmp: dt.date | None
    gestation_today: str | None  # weeks+days, while open
    gestation_days_today: int | None
    gravida: int | None
    para: int | None
    flags: list[str]
    contacts: list[ContactOut]  # oldest first
    schedule: list[ScheduledContactOut]
    next_contact_on: dt.date | None  # the next visit booked at the latest contact, else the schedule's next
    overdue: bool
    ended_by: PregnancyEnd | None  # the delivery that ended it


class AntenatalCard(_Out):
    patient_id: uuid.UUID
    today: dt.date
    pregnancies: list[PregnancyOut]  # latest first


class ClinicWoman(_Out):
    patient_id: uuid.UUID
    mrn: str
    given_names: str
    family_name: str
    pregnancy_id: uuid.UUID
    edd: dt.date
    gestation_today: str
    contacts: int
    next_contact_on: dt.date | None
    overdue: bool
    flags: list[str]


class AntenatalClinic(_Out):
    today: dt.date
    women: list[ClinicWoman]
