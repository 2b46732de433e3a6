"""The arithmetic and the rules of antenatal care, as pure functions (no database): dating a pregnancy, the flags a
contact raises, and where a woman stands on the WHO's eight-contact schedule. `antenatal.py` applies them to the
record; the tests work them by hand.

Dating. Naegele's rule: the estimated due date (EDD) is the first day of the last menstrual period (LMP) plus 280
days (40 weeks); an ultrasound's measured gestational age on the day of the scan gives EDD = scan day + (280 - the
days measured). When a contact gives both, the ultrasound wins (it dates better than a remembered LMP), and once a
pregnancy is dated by ultrasound a later LMP does not re-date it. The gestational age on any day is 280 days less
the days left to the EDD.

Flags, each the rule of the source named beside it:
- Hypertension in pregnancy: systolic >= 140 mmHg or diastolic >= 90 mmHg at 20 weeks or more (WHO
  recommendations for prevention and treatment of pre-eclampsia and eclampsia, 2011; the definition as stated in
  https://www.rcemlearning.co.uk/modules/hypertensive-disorders-in-pregnancy-hellp/lessons/definition-51/).
- Chronic hypertension: the same pressures before 20 weeks, hypertension that was there before the pregnancy
  (WHO 2011, as above, defines it so: "hypertension detected before 20 weeks of gestation"); not pre-eclampsia,
  which is not diagnosed before 20 weeks, but a pregnancy for a clinician's care and, at the next contacts, the
  watch for pre-eclampsia superimposed on it. A woman booked at 10 weeks with 150/95 was flagged nothing.
- Pre-eclampsia suspected: that hypertension with proteinuria of 1+ or more on a dipstick, where no quantitative
  measure is to hand (http://emedicine.com/med/topic1905.htm: "a urine dipstick protein of 1+ (if a quantitative
  measurement is unavailable)"); a trace is not proteinuria.
- Severe features: systolic >= 160 or diastolic >= 110 mmHg, or headache, visual disturbance or convulsions
  (the severe pre-eclampsia criteria, https://www.notion.so/Pre-eclampsia-25c5b97294c68014b7d4ecc39fade04e and
  https://qammunity.org/19077141 as summaries of WHO 2011). Flagged at any gestation: a pressure that high, or a
  fit, needs a clinician the same day whatever the weeks.
- Anaemia in pregnancy: haemoglobin < 11 g/dL; severe < 7 g/dL (WHO's haemoglobin cut-offs for pregnant women:
  https://pmc.ncbi.nlm.nih.gov/articles/PMC7478908/table/pone.0238323.t004).
- Syphilis positive without treatment recorded (at that contact, or on the card: at any contact of the pregnancy).
- Danger signs: any of DANGER_SIGNS reported at the contact.

Schedule. WHO 2016 recommends a minimum of eight contacts (https://extranet.who.int/rhl/topics/
improving-health-system-performance/who-recommendation-antenatal-care-contact-schedules), the model's contacts at
12, 20, 26, 30, 34, 36, 38 and 40 weeks. Contact k of the schedule is kept by a contact whose gestational age (in
completed weeks) is after the previous scheduled week and no later than its own (the first: up to 12 weeks); once
that week is past without one it is missed. The next contact due is the first scheduled week not yet past.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

TERM_DAYS = 280  # Naegele: 40 weeks from the LMP
MAX_GESTATION_DAYS = 45 * 7  # past 45 weeks from the LMP no pregnancy is still going on
CONTACT_WEEKS = (12, 20, 26, 30, 34, 36, 38, 40)  # WHO 2016 ANC model
HYPERTENSION_FROM_WEEKS = 20
HYPERTENSIVE_SYSTOLIC, HYPERTENSIVE_DIASTOLIC = 140, 90
SEVERE_SYSTOLIC, SEVERE_DIASTOLIC = 160, 110
PROTEINURIA = ("1+", "2+", "3+")  # a dipstick of 1+ or more; a trace is not
ANAEMIA_BELOW_G_DL, SEVERE_ANAEMIA_BELOW_G_DL = Decimal("11"), Decimal("7")
DANGER_SIGNS = {"vaginal_bleeding": "Vaginal bleeding", "severe_headache": "Severe headache",
                "blurred_vision": "Blurred vision", "convulsions": "Convulsions", "fever": "Fever",
                "reduced_fetal_movements": "Reduced fetal movements", "leaking_fluid": "Leaking fluid",
                "severe_abdominal_pain": "Severe abdominal pain"}
SEVERE_SIGNS = ("severe_headache", "blurred_vision", "convulsions")  # pre-eclampsia's severe features
FLAGS = {"chronic_hypertension": "Chronic hypertension (≥140/90 before 20 weeks): a clinician to review",
         "hypertension": "Hypertension in pregnancy (≥140/90 after 20 weeks)",
         "pre_eclampsia": "Pre-eclampsia suspected (hypertension with proteinuria ≥1+)",
         "severe_features": "Severe features (≥160/110, or headache, blurred vision or convulsions): "
                            "a clinician today",
         "anaemia": "Anaemia (haemoglobin under 11 g/dL)",
         "severe_anaemia": "Severe anaemia (haemoglobin under 7 g/dL)",
         "syphilis_untreated": "Syphilis positive, no treatment recorded", "danger_signs": "Danger signs reported"}


@dataclass(frozen=True)
class Dating:
    edd: dt.date
    dated_by: str  # lmp or ultrasound


def edd_from_lmp(lmp: dt.date) -> dt.date:
    return lmp + dt.timedelta(days=TERM_DAYS)


def edd_from_ultrasound(scanned_on: dt.date, weeks: int, days: int = 0) -> dt.date:
    return scanned_on + dt.timedelta(days=TERM_DAYS - (weeks * 7 + days))


def date_pregnancy(lmp: dt.date | None, ultrasound: tuple[dt.date, int, int] | None,
                   earlier: Dating | None = None) -> Dating | None:
    """The pregnancy's dating after this contact: its own ultrasound; else the earlier dating if it was by
    ultrasound; else its own LMP; else the earlier one (None if there is none at all)."""
    if ultrasound is not None:
        return Dating(edd_from_ultrasound(*ultrasound), "ultrasound")
    if earlier is not None and earlier.dated_by == "ultrasound":
        return earlier
    if lmp is not None:
        return Dating(edd_from_lmp(lmp), "lmp")
    return earlier


def gestation_days(edd: dt.date, on: dt.date) -> int:
    return TERM_DAYS - (edd - on).days


def weeks_and_days(days: int) -> str:
    return f"{days // 7}+{days % 7}"


def contact_flags(*, gestation_days: int, systolic: int | None, diastolic: int | None, urine_protein: str | None,
                  haemoglobin: Decimal | None, syphilis_test: str, syphilis_treated: bool,
                  danger_signs: Iterable[str]) -> list[str]:
    """The flags one contact raises, codes of FLAGS in their order."""
    signs = set(danger_signs)
    raised: set[str] = set()
    sbp, dbp = systolic or 0, diastolic or 0
    hypertensive = sbp >= HYPERTENSIVE_SYSTOLIC or dbp >= HYPERTENSIVE_DIASTOLIC
    if gestation_days >= HYPERTENSION_FROM_WEEKS * 7 and hypertensive:
        raised.add("hypertension")
        if urine_protein in PROTEINURIA:
            raised.add("pre_eclampsia")
    elif hypertensive:
        raised.add("chronic_hypertension")
    if sbp >= SEVERE_SYSTOLIC or dbp >= SEVERE_DIASTOLIC or signs & set(SEVERE_SIGNS):
        raised.add("severe_features")
    if haemoglobin is not None and haemoglobin < ANAEMIA_BELOW_G_DL:
        raised.add("anaemia")
        if haemoglobin < SEVERE_ANAEMIA_BELOW_G_DL:
            raised.add("severe_anaemia")
    if syphilis_test == "positive" and not syphilis_treated:
        raised.add("syphilis_untreated")
    if signs:
        raised.add("danger_signs")
    return [flag for flag in FLAGS if flag in raised]


def pregnancy_flags(contacts: list[dict]) -> list[str]:
    """The card's flags of a pregnancy whose contacts (oldest first, each with its `flags`, `syphilis_test` and
    `syphilis_treated`) are given: the latest contact's, except that syphilis found positive at any contact stays
    flagged until a contact records its treatment."""
    if not contacts:
        return []
    raised = {f for f in contacts[-1]["flags"] if f != "syphilis_untreated"}
    positive = any(c["syphilis_test"] == "positive" for c in contacts)
    if positive and not any(c["syphilis_treated"] for c in contacts):
        raised.add("syphilis_untreated")
    return [flag for flag in FLAGS if flag in raised]


@dataclass(frozen=True)
class ScheduledContact:
    number: int  # 1-8
    week: int
    due_on: dt.date  # the day the pregnancy reaches that week
    state: str  # kept, missed, due (the next one), upcoming
    kept_on: dt.date | None = None


def schedule(edd: dt.date, contacts: Iterable[tuple[int, dt.date]], today: dt.date) -> list[ScheduledContact]:
    """The eight contacts of the WHO model for a pregnancy due on `edd` whose contacts were (gestational age in
    days, day of the contact) `contacts`, as they stand `today` (see the module docstring)."""
    lmp = edd - dt.timedelta(days=TERM_DAYS)
    seen = sorted(contacts)
    weeks_today = gestation_days(edd, today) // 7
    out: list[ScheduledContact] = []
    previous, due_given = -1, False
    for number, week in enumerate(CONTACT_WEEKS, start=1):
        kept = next((on for days, on in seen if previous < days // 7 <= week), None)
        if kept is not None:
            state = "kept"
        elif weeks_today > week:
            state = "missed"
        elif not due_given:
            state, due_given = "due", True
        else:
            state = "upcoming"
        out.append(ScheduledContact(number, week, lmp + dt.timedelta(weeks=week), state, kept))
        previous = week
    return out
