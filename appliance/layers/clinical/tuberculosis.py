"""Tuberculosis: the clinical layer's TB treatment register (tenant revision t0034) — a TB case registered on
treatment (`tb_treatment`: its register number, the WHO classification, regimen, HIV status and weight at start),
its monitoring examinations (`tb_follow_up`: sputum smear, culture and Xpert, weight, in a month of treatment),
its treatment outcome, their correction and withdrawal — and the facility's register of a year with its quarterly
cohorts' outcome table, the report a national TB programme asks of each basic management unit.

The definitions are WHO's, "Definitions and reporting framework for tuberculosis – 2013 revision" (updated December
2014 and January 2020; WHO/HTM/TB/2013.2, ISBN 978-92-4-150534-5), sections 2 (case definitions) and 2.4
(treatment outcomes for drug-susceptible TB):

- a case is **bacteriologically confirmed** (a positive smear, culture or WHO-approved rapid test such as Xpert
  MTB/RIF) or **clinically diagnosed**; **pulmonary** (lung parenchyma or tracheobronchial tree) or
  **extrapulmonary**; by history of previous treatment **new**, **relapse**, **treatment after failure**, **treatment
  after loss to follow-up**, **other previously treated**, or with an **unknown** history;
- **cured**: a pulmonary case bacteriologically confirmed at the start of treatment, smear- or culture-negative in
  the last month of treatment and on at least one previous occasion;
- **treatment completed**: completed without evidence of failure, but without the negative results cured asks for;
- **treatment failed**: a sputum smear or culture positive at month 5 or later during treatment;
- **died**: died for any reason before starting or during treatment;
- **lost to follow-up**: did not start treatment, or treatment was interrupted for 2 consecutive months or more;
- **not evaluated**: no outcome assigned (transferred out, or the outcome unknown to the unit);
- **treatment success**: cured plus treatment completed.

What can be checked against the record is checked when an outcome is recorded (`outcome_refusal`): cured asks for
the confirmation at start, a pulmonary case and the negative results; completed and cured are refused where a
positive result at month 5 or later is failure; failed asks for that result. Xpert is recorded at a follow-up but
judges no outcome: the definitions count smear and culture for monitoring (Xpert detects the DNA of dead bacilli
too). The January 2020 update widened what confirms a case at diagnosis (LF-LAM), not the outcomes.

The register number is the facility's, given in sequence in the year treatment started ("2026/0001"), from
`tb_register_sequence` moved on under its row lock in the registration's transaction: two registrations at once
wait for each other and never share a number, and a refused registration gives none back. One treatment open
(no outcome yet) per patient: a second registration waits on the first (an advisory lock on the patient) and is
refused. The quarterly cohort is the cases whose treatment started in the quarter, reported once 12 months have
passed since the quarter ended (every outcome should be assigned by then); before that the table is provisional.

HIV status is the more sensitive fact: the facility's register shows each case's HIV status only to those who may
read the ART register (`clinical.hiv.register`); others see the cohort's counts under the ministry's disclosure rule
(`withhold_small`: its HIV-positive row's counts from 1 to the threshold less one withheld, as the national figures'
are), since beside the cases the register names, a quarter's one HIV-positive case at a small health centre would be
someone. The patient's card shows it under the chart's own rule (a care relationship, or break-the-glass).

A died outcome and a death certificate (clinical/death.py, the mark every facility reads) must agree: died is not
dated before the certified day of death, and once a certificate is in force no other outcome but not evaluated is
dated after that day. In the other order, a certificate (or its correction) dating the death after a died outcome of
this facility's register is refused (`refuse_certificate_after_tb_death`, the record's reaction to `death`); a
register at another facility is that facility's schema, out of reach here. A died outcome with no certificate is
answered with the pointer to certify it (the certificate needs a certifier's cause of death, so it is never made
here).

Writes go through `record.append` (audited as writes of the patient's record); every read of a patient's card is
noted on the audit seam, and the register notes each case it lists on its patient's access log.
"""

from __future__ import annotations

import datetime as dt
import functools
import tomllib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.engine import Connection

from appliance.layers.clinical import service
from appliance.layers.clinical.errors import Conflict, Invalid, NotFound
from appliance.layers.clinical.immunization_schedule import Span
from appliance.layers.clinical.models import TB_OUTCOMES, patient, tb_follow_up, tb_register_sequence, tb_treatment
from appliance.layers.clinical.registers import (
    RegimenFile,
    lock_patient,
    next_number,
    refuse_tb_hiv_status_against_hiv_care,
)
from appliance.substrate import age, deaths, disclosure, record
from appliance.substrate.principal import Principal
from appliance.substrate.problems import validator_message
from appliance.substrate.record import Entry, current_clause, entry, note_access, note_list_read

KIND, FOLLOW_UP = "tb_treatment", "tb_follow_up"
REGISTER = "tb_register"  # how the facility's register reads on each listed patient's access log
# ... and how it reads when it showed the patient's HIV status too: to those who may read the ART register.
REGISTER_WITH_HIV = "tb_register_hiv_status"
# HIV status is the more sensitive fact: the facility-wide TB register shows who is HIV-positive only to those who
# may read the facility's ART register, which names every person in HIV care (ACC-032 keeps it from ward nurses).
# The chart's TB card follows the chart's care relationship, as the HIV card does.
HIV_REGISTER = "clinical.hiv.register"
OUTCOME_WORDS = {"cured": "Cured", "treatment_completed": "Treatment completed", "treatment_failed": "Treatment failed",
                 "died": "Died", "lost_to_follow_up": "Lost to follow-up", "not_evaluated": "Not evaluated"}
SITE_WORDS = {"pulmonary": "Pulmonary", "extrapulmonary": "Extrapulmonary"}
BACTERIOLOGY_WORDS = {"bacteriologically_confirmed": "Bacteriologically confirmed",
                      "clinically_diagnosed": "Clinically diagnosed"}
HISTORY_WORDS = {"new": "New", "relapse": "Relapse", "after_failure": "Treatment after failure",
                 "after_loss_to_follow_up": "Treatment after loss to follow-up",
                 "other_previously_treated": "Other previously treated",
                 "unknown": "Unknown previous treatment history"}
HIV_WORDS = {"positive": "HIV-positive", "negative": "HIV-negative", "unknown": "HIV status unknown"}
RESULT_WORDS = {"negative": "negative", "positive": "positive", "not_done": "not done",
                "mtb_not_detected": "MTB not detected", "mtb_detected": "MTB detected"}
# A smear or culture positive from this month of treatment on is failure (WHO 2013, 2.4).
FAILURE_FROM_MONTH = 5
# A follow-up is due from a week before its day and overdue two weeks after it: sputum is collected at the visit
# nearest the month's end, and a week late is not yet a defaulter.
DUE_BEFORE, OVERDUE_AFTER = dt.timedelta(days=7), dt.timedelta(days=14)
# Treatment is not completed (nor cured) more than two weeks before its regimen's months have run.
COMPLETED_EARLIEST = dt.timedelta(days=14)
# A cohort is reported once this many months have passed since its quarter ended.
COHORT_REPORTED_AFTER_MONTHS = 12
REGISTER_LIMIT = 2000  # a year's register at one facility; a busy district hospital registers a few hundred


# -- the regimens (policies/tuberculosis.toml) ------------------------------------------------------------------


class RegimenError(ValueError):
    """policies/tuberculosis.toml cannot be used; the message names the file and what is wrong."""


class Regimen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: Annotated[str, Field(min_length=2, max_length=40)]
    name: Annotated[str, Field(min_length=2, max_length=200)]
    months: Annotated[int, Field(ge=1, le=24)]
    follow_up_months: tuple[Annotated[int, Field(ge=1, le=24)], ...]
    # The intensive phase's months (the 2 of 2HRZE/4HR), the continuation phase the rest: what the patient's own
    # record says of where they are. None: the regimen is not said in phases.
    intensive_months: Annotated[int, Field(ge=1, le=23)] | None = None
    # The four-month rifapentine-moxifloxacin regimen is for patients of 12 and over (WHO consolidated guidelines on
    # tuberculosis, Module 4: treatment, 2022): none is registered on a regimen for a child younger.
    min_age_years: Annotated[int, Field(ge=1, le=120)] | None = None

    @model_validator(mode="after")
    def _ends_at_the_end(self) -> Regimen:
        months = self.follow_up_months
        if not months or list(months) != sorted(set(months)) or months[-1] != self.months:
            raise ValueError(f"regimen {self.code}: follow_up_months must rise, without repeats, to its last month "
                             f"of treatment ({self.months})")
        if self.intensive_months is not None and self.intensive_months >= self.months:
            raise ValueError(f"regimen {self.code}: intensive_months ({self.intensive_months}) must end before "
                             f"its treatment does ({self.months} months): the continuation phase is the rest")
        return self


class Regimens(RegimenFile):
    regimen: tuple[Regimen, ...] = Field(min_length=1)


@functools.lru_cache(maxsize=4)
def _load(path: Path, modified: float) -> Regimens:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return Regimens.model_validate(raw)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RegimenError(f"{path}: {exc}") from exc
    except ValidationError as exc:
        raise RegimenError(f"{path}: " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {validator_message(e['msg'])}" for e in exc.errors())) from exc


def load_regimens(path: Path) -> Regimens:
    """The regimens of `path`, read again when the file changes."""
    try:
        modified = path.stat().st_mtime
    except OSError as exc:
        raise RegimenError(f"{path}: {exc}") from exc
    return _load(path, modified)


def months_after(start: dt.date, months: int) -> dt.date:
    return Span(months, "m").after(start)


# -- the rules, without the database ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Examination:
    """A follow-up in force as the rules read it."""

    month: int
    smear: str
    culture: str

    @property
    def negative(self) -> bool:
        """Smear- or culture-negative, and neither positive."""
        return "negative" in (self.smear, self.culture) and not self.positive

    @property
    def positive(self) -> bool:
        return "positive" in (self.smear, self.culture)


def outcome_refusal(outcome: str, *, site: str, bacteriology: str, regimen: Regimen,
                    examinations: Sequence[Examination]) -> str | None:
    """Why the record cannot bear `outcome` under the WHO definitions (a sentence naming the rule), or None."""
    failure = [e.month for e in examinations if e.positive and e.month >= FAILURE_FROM_MONTH]
    if outcome == "treatment_failed":
        if not failure:
            return ("treatment failed means a sputum smear or culture positive at month 5 or later of treatment "
                    "(WHO 2013): no such result is recorded; record the follow-up first")
        return None
    if outcome in ("cured", "treatment_completed") and failure:
        return (f"a smear or culture was positive at month {failure[0]} of treatment: that is treatment failed, "
                f"not {OUTCOME_WORDS[outcome].lower()} (WHO 2013)")
    if outcome != "cured":
        return None
    if bacteriology != "bacteriologically_confirmed":
        return ("cured is only for a case bacteriologically confirmed at the start of treatment; this case was "
                "clinically diagnosed: record treatment completed (WHO 2013)")
    if site != "pulmonary":
        return ("cured is only for a pulmonary case, whose sputum is examined; this case is extrapulmonary: record "
                "treatment completed (WHO 2013)")
    last = [e for e in examinations if e.month >= regimen.months and e.negative]
    if not last:
        return (f"cured needs a negative smear or culture in the last month of treatment (month {regimen.months} "
                f"of {regimen.code}); none is recorded: record it, or record treatment completed (WHO 2013)")
    if not any(e.negative and e.month < regimen.months for e in examinations):
        return ("cured needs a negative smear or culture on at least one occasion before the last month of treatment "
                "as well; none is recorded: record it, or record treatment completed (WHO 2013)")
    return None


def death_refusal(outcome: str, outcome_on: dt.date, death: deaths.Death | None) -> tuple[str, str] | None:
    """Why an outcome cannot stand beside the person's death certificate (the sentence, the field), or None: died is
    not dated before the certified day of death; after that day nothing but died or not evaluated (transferred out,
    outcome unknown to the unit) is. Without a certificate nothing is refused: died is answered with the pointer to
    certify the death instead (`death_pointer`)."""
    if death is None:
        return None
    died_on = deaths.day_of(death)
    if outcome == "died" and outcome_on < died_on:
        return (f"this person was {deaths.sentence(death)}: a died outcome cannot be dated before it; record "
                f"{died_on.isoformat()}, or correct the death certificate if its day is wrong", "outcome_on")
    if outcome not in ("died", "not_evaluated") and outcome_on > died_on:
        return (f"this person was {deaths.sentence(death)}: {OUTCOME_WORDS[outcome].lower()} on "
                f"{outcome_on.isoformat()} is after it; the outcome is died", "outcome")
    return None


def death_pointer(death: deaths.Death | None) -> dict:
    """What a died outcome tells the clinician about the death certificate: the certified death (when, where), or
    that none is recorded and where to write one (the chart's death certificate; it needs a certifier's cause of
    death, so it is never made from the TB outcome)."""
    if death is None:
        return {"certified": False, "died_on": None, "facility": None,
                "says": "No death certificate is recorded for this person: a clinician who can state the cause of "
                        "death certifies it on the chart's death certificate (the API's patients/{id}/death); until "
                        "then the person is alive at every other service"}
    return {"certified": True, "died_on": deaths.day_of(death), "facility": death.facility,
            "says": f"This person was {deaths.sentence(death)}"}


def follow_ups_due(started_on: dt.date, regimen: Regimen | None, done_months: Iterable[int], today: dt.date,
                   *, open_: bool = True) -> list[dict]:
    """Each follow-up month of the regimen, its day (that many months after the start) and where it stands:
    done (a follow-up of that month or later is recorded), due, overdue, or not yet due; an outcome recorded
    closes what was still owed ("not_needed")."""
    if regimen is None:
        return []
    done = set(done_months)
    shown = []
    for month in regimen.follow_up_months:
        due_on = months_after(started_on, month)
        if month in done:
            state = "done"
        elif not open_:
            state = "not_needed"
        elif today >= due_on + OVERDUE_AFTER:
            state = "overdue"
        elif today >= due_on - DUE_BEFORE:
            state = "due"
        else:
            state = "not_yet_due"
        shown.append({"month": month, "due_on": due_on, "state": state,
                      "end_of_treatment": month == regimen.months})
    return shown


# The cohort table's rows (WHO 2013, "Quarterly report on TB treatment outcomes in the basic management unit",
# block 1): new and relapse cases by bacteriological status and site, cases previously treated other than
# relapses, those of unknown history, and (the December 2014 update) HIV-positive new and relapse cases.
COHORT_ROWS = {
    "new_relapse_confirmed": "New and relapse: pulmonary, bacteriologically confirmed",
    "new_relapse_clinical": "New and relapse: pulmonary, clinically diagnosed",
    "new_relapse_extrapulmonary": "New and relapse: extrapulmonary",
    "previously_treated": "Previously treated, excluding relapse",
    "unknown_history": "Unknown previous treatment history",
    "hiv_positive": "HIV-positive, new and relapse (all forms)",
}


def cohort_rows_of(case: dict) -> list[str]:
    """The rows of the cohort table a case counts in (an HIV-positive new case counts in two)."""
    if case["history"] in ("new", "relapse"):
        if case["site"] == "extrapulmonary":
            rows = ["new_relapse_extrapulmonary"]
        elif case["bacteriology"] == "bacteriologically_confirmed":
            rows = ["new_relapse_confirmed"]
        else:
            rows = ["new_relapse_clinical"]
        return rows + (["hiv_positive"] if case["hiv_status"] == "positive" else [])
    return ["unknown_history"] if case["history"] == "unknown" else ["previously_treated"]


def _rate(part: int, whole: int) -> Decimal | None:
    return None if whole == 0 else (Decimal(100 * part) / whole).quantize(Decimal("0.1"))


def cohort_table(cases: Sequence[dict]) -> dict:
    """The outcome table of a cohort: for each row, the cases registered, each outcome's count, those with none
    yet, and treatment success (cured + completed) as a percentage of those registered; and the total of new and
    relapse cases, the figure a programme's success rate is quoted on."""
    def tally(members: list[dict]) -> dict:
        counts = {o: sum(1 for c in members if c["outcome"] == o) for o in TB_OUTCOMES}
        success = counts["cured"] + counts["treatment_completed"]
        return {"registered": len(members), "outcomes": counts,
                "no_outcome": sum(1 for c in members if c["outcome"] is None),
                "success": success, "success_rate": _rate(success, len(members))}

    by_row: dict[str, list[dict]] = {row: [] for row in COHORT_ROWS}
    for case in cases:
        for row in cohort_rows_of(case):
            by_row[row].append(case)
    new_relapse = [c for c in cases if c["history"] in ("new", "relapse")]
    return {"rows": [{"row": row, "label": label, **tally(by_row[row])} for row, label in COHORT_ROWS.items()],
            "new_relapse": tally(new_relapse), "all": tally(list(cases))}


def withhold_small(row: dict, threshold: int) -> dict:
    """A cohort row under the national disclosure rule (appliance/substrate/disclosure.py): its outcome counts and
    those with no outcome yet are one breakdown of those registered, withheld (None) where small or where they would
    reveal a small one; treatment success, a sum of two of them, and its rate with them."""
    cells = {**row["outcomes"], "no_outcome": row["no_outcome"]}
    registered, shown = disclosure.withhold(cells, threshold)
    success = (None if shown["cured"] is None or shown["treatment_completed"] is None
               else shown["cured"] + shown["treatment_completed"])
    return {**row, "registered": registered, "outcomes": {o: shown[o] for o in row["outcomes"]},
            "no_outcome": shown["no_outcome"], "success": success,
            "success_rate": row["success_rate"] if success is not None and registered is not None else None}


def quarter_of(day: dt.date) -> int:
    return (day.month - 1) // 3 + 1


def quarter_bounds(year: int, quarter: int) -> tuple[dt.date, dt.date]:
    """The quarter's first day and the first day after it."""
    start = dt.date(year, 3 * quarter - 2, 1)
    return start, months_after(start, 3)


# -- reading the record ----------------------------------------------------------------------------------------

_TREATMENT = (*service.ENTRY_COLUMNS, entry.c.patient_id, *(c for c in tb_treatment.c if c.name != "entry_id"))
_FOLLOW_UP = (*service.ENTRY_COLUMNS, entry.c.patient_id, *(c for c in tb_follow_up.c if c.name != "entry_id"))


def _treatments(conn: Connection, *where: Any) -> list[dict]:
    query = (sa.select(*_TREATMENT).select_from(entry.join(tb_treatment, tb_treatment.c.entry_id == entry.c.id))
             .where(entry.c.kind == KIND, entry.c.status != "entered_in_error", current_clause(), *where)
             .order_by(tb_treatment.c.started_on.desc(), tb_treatment.c.register_number.desc()))
    return [dict(r) for r in conn.execute(query).mappings()]


def _follow_ups(conn: Connection, treatment_ids: Sequence[uuid.UUID]) -> list[dict]:
    if not treatment_ids:
        return []
    query = (sa.select(*_FOLLOW_UP).select_from(entry.join(tb_follow_up, tb_follow_up.c.entry_id == entry.c.id))
             .where(entry.c.kind == FOLLOW_UP, entry.c.status != "entered_in_error", current_clause(),
                    tb_follow_up.c.treatment_id.in_(list(treatment_ids)))
             .order_by(tb_follow_up.c.month, tb_follow_up.c.examined_on))
    return [dict(r) for r in conn.execute(query).mappings()]


def _examinations(rows: Iterable[dict]) -> list[Examination]:
    return [Examination(r["month"], r["smear"], r["culture"]) for r in rows]


def _shaped(row: dict, follow_ups: list[dict], regimens: Regimens, today: dt.date, *,
            death: dict | None = None) -> dict:
    """The treatment as answered; `death`, the death certificate's pointer, on a died outcome."""
    regimen = regimens.by_code.get(row["regimen"])
    return {**row, "regimen_name": regimen.name if regimen else None,
            "death": death if row["outcome"] == "died" else None,
            "months": regimen.months if regimen else None,
            "ends_on": months_after(row["started_on"], regimen.months) if regimen else None,
            "follow_ups": follow_ups,
            "due": follow_ups_due(row["started_on"], regimen, (f["month"] for f in follow_ups), today,
                                  open_=row["outcome"] is None)}


def card(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, regimens: Regimens,
         today: dt.date) -> dict:
    """The patient's TB treatment card: each treatment registered here (newest first) with its follow-ups and
    those due, and the treatments and follow-ups marked entered in error. The read is audited."""
    service.require_patient(conn, patient_id)
    treatments = _treatments(conn, entry.c.patient_id == patient_id)
    follow_ups = _follow_ups(conn, [t["root_id"] for t in treatments])
    note_access(conn, principal, "read", patient_id, KIND, [t["id"] for t in treatments])
    if follow_ups:
        note_access(conn, principal, "read", patient_id, FOLLOW_UP, [f["id"] for f in follow_ups])
    by_treatment: dict[uuid.UUID, list[dict]] = {}
    for f in follow_ups:
        by_treatment.setdefault(f["treatment_id"], []).append(f)
    withdrawn = [*service.list_withdrawn(conn, principal, patient_id, tb_treatment, KIND),
                 *service.list_withdrawn(conn, principal, patient_id, tb_follow_up, FOLLOW_UP)]
    death = _death_pointer_of(conn, patient_id, treatments)
    return {"patient_id": patient_id, "today": today,
            "treatments": [_shaped(t, by_treatment.get(t["root_id"], []), regimens, today, death=death)
                           for t in treatments],
            "withdrawn": withdrawn}


def own_record(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, regimens: Regimens,
               today: dt.date) -> dict | None:
    """What the patient's own portal shows of their latest TB treatment here (appliance/web/me.py): its register
    number, when it started and ends, the regimen, the phase they are in and until when, and the next sputum check
    due; once an outcome is recorded, the outcome and its day. Never a follow-up's findings (a smear, culture or
    Xpert: policies/release.toml names no rule for them) nor the HIV status at the start, which is the HIV care card's
    to show. None where no treatment is registered here, and then nothing is noted (a log naming TB treatment of
    someone never on it would itself say something)."""
    treatments = _treatments(conn, entry.c.patient_id == patient_id)
    if not treatments:
        return None
    latest = treatments[0]
    follow_ups = _follow_ups(conn, [latest["root_id"]])
    note_access(conn, principal, "read", patient_id, KIND, [latest["id"]])
    if follow_ups:
        note_access(conn, principal, "read", patient_id, FOLLOW_UP, [f["id"] for f in follow_ups])
    shaped = _shaped(latest, follow_ups, regimens, today)
    regimen = regimens.by_code.get(latest["regimen"])
    open_ = latest["outcome"] is None
    phase = phase_on(latest["started_on"], regimen, today) if open_ else None
    next_check = next((d for d in shaped["due"] if d["state"] in ("due", "overdue", "not_yet_due")), None)
    return {"register_number": latest["register_number"], "started_on": latest["started_on"],
            "regimen": latest["regimen"], "regimen_name": shaped["regimen_name"], "ends_on": shaped["ends_on"],
            "phase": phase[0] if phase else None, "phase_until": phase[1] if phase else None,
            "next_sputum_on": next_check["due_on"] if next_check else None,
            "next_sputum_overdue": bool(next_check and next_check["state"] == "overdue"),
            "outcome": OUTCOME_WORDS.get(latest["outcome"]) if latest["outcome"] else None,
            "outcome_on": latest["outcome_on"]}


def phase_on(started_on: dt.date, regimen: Regimen | None, today: dt.date) -> tuple[str, dt.date] | None:
    """The phase of treatment `today` ("intensive" or "continuation") and the day it ends; None where the regimen
    is not said in phases (or is no longer in the file) or its months have run."""
    if regimen is None or regimen.intensive_months is None:
        return None
    intensive_until = months_after(started_on, regimen.intensive_months)
    if today < intensive_until:
        return "intensive", intensive_until
    ends_on = months_after(started_on, regimen.months)
    return ("continuation", ends_on) if today < ends_on else None


def _death_pointer_of(conn: Connection, patient_id: uuid.UUID, treatments: Iterable[dict]) -> dict | None:
    """The death certificate's pointer when a treatment's outcome is died (the mark read only then)."""
    if not any(t["outcome"] == "died" for t in treatments):
        return None
    return death_pointer(deaths.death_of(conn, patient_id))


def _treatment(conn: Connection, patient_id: uuid.UUID, treatment_id: uuid.UUID, *, lock: bool = False) -> dict:
    """The treatment in force of the record `treatment_id` names (any of its versions) on this patient's chart,
    or 404."""
    root = conn.execute(sa.select(entry.c.root_id).where(entry.c.id == treatment_id,
                                                         entry.c.patient_id == patient_id,
                                                         entry.c.kind == KIND)).scalar()
    if root is not None and lock:
        _lock_patient(conn, patient_id)
    found = _treatments(conn, entry.c.root_id == root) if root is not None else []
    if not found:
        raise NotFound(f"no TB treatment {treatment_id} in force on this patient's chart",
                       entry_id=str(treatment_id))
    return found[0]


def _lock_patient(conn: Connection, patient_id: uuid.UUID) -> None:
    """Registrations, outcomes and corrections of one patient's treatments one at a time (and with the person's
    writes on the ART register, registers.py)."""
    lock_patient(conn, patient_id)


def _open_other(conn: Connection, patient_id: uuid.UUID, except_root: uuid.UUID | None) -> dict | None:
    return next((t for t in _treatments(conn, entry.c.patient_id == patient_id)
                 if t["outcome"] is None and t["root_id"] != except_root), None)


# -- writing ----------------------------------------------------------------------------------------------------


def _check_registration(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: Any,
                        regimens: Regimens, today: dt.date) -> Regimen:
    regimen = regimens.by_code.get(data.regimen)
    if regimen is None:
        raise Invalid(f"{data.regimen!r} is not a regimen of this appliance's TB programme; it has "
                      f"{', '.join(regimens.by_code)}", field="regimen")
    if data.started_on > today:
        raise Invalid(f"treatment cannot start in the future ({data.started_on.isoformat()}): register the case "
                      "on the day it starts", field="started_on")
    born = conn.execute(sa.select(patient.c.birth_date).where(patient.c.id == patient_id)).scalar()
    if born is not None and data.started_on < born:
        raise Invalid(f"treatment cannot start before the patient's birth on {born.isoformat()}", field="started_on")
    if born is not None and regimen.min_age_years is not None and (
            years := age.years_on(born, data.started_on)) < regimen.min_age_years:
        raise Invalid(f"{regimen.code} is for patients of {regimen.min_age_years} years and over; this patient is "
                      f"{years} on {data.started_on.isoformat()}, the day treatment starts: choose another regimen",
                      field="regimen")
    refuse_tb_hiv_status_against_hiv_care(conn, principal, patient_id, data.started_on, data.hiv_status)
    return regimen


def _check_outcome(conn: Connection, patient_id: uuid.UUID, treatment: dict, outcome: str | None,
                   outcome_on: dt.date | None, regimen: Regimen, today: dt.date) -> None:
    """Refuse (422, naming the field) an outcome the record or the calendar cannot bear."""
    if outcome is None:
        if outcome_on is not None:
            raise Invalid("give the outcome the day is for", field="outcome")
        return
    if outcome_on is None:
        raise Invalid("give the day of the outcome", field="outcome_on")
    if outcome_on > today:
        raise Invalid(f"the outcome's day, {outcome_on.isoformat()}, is in the future", field="outcome_on")
    if outcome_on < treatment["started_on"]:
        raise Invalid(f"the outcome's day, {outcome_on.isoformat()}, is before treatment started on "
                      f"{treatment['started_on'].isoformat()}", field="outcome_on")
    if outcome in ("cured", "treatment_completed"):
        earliest = months_after(treatment["started_on"], regimen.months) - COMPLETED_EARLIEST
        if outcome_on < earliest:
            raise Invalid(f"{regimen.code} lasts {regimen.months} months from {treatment['started_on'].isoformat()}: "
                          f"treatment is not {OUTCOME_WORDS[outcome].lower()} before {earliest.isoformat()}",
                          field="outcome_on")
    refusal = death_refusal(outcome, outcome_on, deaths.death_of(conn, patient_id))
    if refusal is not None:
        raise Invalid(refusal[0], field=refusal[1])
    refusal = outcome_refusal(outcome, site=treatment["site"], bacteriology=treatment["bacteriology"],
                              regimen=regimen,
                              examinations=_examinations(_follow_ups(conn, [treatment["root_id"]])))
    if refusal is not None:
        raise Invalid(refusal[0].upper() + refusal[1:], field="outcome")


def refuse_certificate_after_tb_death(conn: Connection, principal: Principal, certified: Entry) -> None:
    """The other order of "must agree": a death certificate, new or corrected, whose day of death is after a died
    outcome on this facility's TB register is refused (422 on died_at; the certificate's transaction, mark
    included, is undone), naming the case and the outcome's day, for the certifier to certify the day the person
    died or have the TB outcome corrected first. A died outcome on or after the certified day stands, as
    `death_refusal` lets it.

    A reaction to the `death` entry rather than a guard: a guard is asked before the certificate exists, without
    its time of death, and not on a correction. It runs after the certificate's own reaction (`death.on_death`,
    registered when the clinical package is imported, before this module is), so the mark every facility reads is
    this certificate's and the day of death is counted as `death_refusal` counts it: the certifying facility's."""
    if certified.status == "entered_in_error":
        return
    # An outcome recorded at this moment waits for this certificate, then is checked against it (and the reverse).
    _lock_patient(conn, certified.patient_id)
    died = _treatments(conn, entry.c.patient_id == certified.patient_id, tb_treatment.c.outcome == "died")
    if not died:
        return
    mark = deaths.death_of(conn, certified.patient_id)
    if mark is None or mark.entry_id != certified.root_id:
        raise RuntimeError("the TB register's check ran before the death certificate's own reaction recorded it")
    died_on = deaths.day_of(mark)
    earliest = min(died, key=lambda t: t["outcome_on"])
    if earliest["outcome_on"] < died_on:
        raise Invalid(f"this facility's TB register records case {earliest['register_number']} with the outcome died "
                      f"on {earliest['outcome_on'].isoformat()}, before the day of death certified here "
                      f"({died_on.isoformat()}): certify the day the person died, or correct the TB outcome's day on "
                      "the TB card if it is wrong", field="died_at")


def _allocate_number(conn: Connection, year: int) -> str:
    """The next number of the year's register."""
    return f"{year}/{next_number(conn, tb_register_sequence, year=year):04d}"


_REGISTRATION = ("started_on", "site", "bacteriology", "history", "regimen", "hiv_status", "weight_kg", "note")


def register(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: Any, *, regimens: Regimens,
             today: dt.date) -> dict:
    """Register a TB case on treatment: the next number of the year's register. Refused (409) while the patient
    has a treatment here with no outcome; (422) a regimen not in the programme's list, a start in the future, an HIV
    status other than positive for a person enrolled in HIV care here with HIV confirmed by the start (registers.py)."""
    service.require_chart(conn, patient_id, data.encounter_id)
    _check_registration(conn, principal, patient_id, data, regimens, today)
    deaths.refuse_if_deceased(conn, patient_id, "a TB registration")
    _lock_patient(conn, patient_id)
    if (open_ := _open_other(conn, patient_id, None)) is not None:
        raise Conflict(f"this patient is on TB treatment already (register number {open_['register_number']}, "
                       f"started {open_['started_on'].isoformat()}): record its outcome before registering a new "
                       "treatment", field="patient_id", treatment_id=str(open_["root_id"]))
    detail = {**data.model_dump(include=set(_REGISTRATION)), "register_year": data.started_on.year,
              "register_number": _allocate_number(conn, data.started_on.year), "outcome": None, "outcome_on": None}
    appended = record.append(conn, principal, KIND, patient_id=patient_id, encounter_id=data.encounter_id,
                             detail=detail)
    return _answer(conn, principal, patient_id, appended.root_id, regimens, today)


def _answer(conn: Connection, principal: Principal, patient_id: uuid.UUID, root_id: uuid.UUID, regimens: Regimens,
            today: dt.date) -> dict:
    """The treatment as it now stands, with its follow-ups (a read of them, noted)."""
    treatment = _treatment(conn, patient_id, root_id)
    follow_ups = _follow_ups(conn, [root_id])
    if follow_ups:
        note_access(conn, principal, "read", patient_id, FOLLOW_UP, [f["id"] for f in follow_ups])
    return _shaped(treatment, follow_ups, regimens, today, death=_death_pointer_of(conn, patient_id, [treatment]))


def _next_version(conn: Connection, principal: Principal, treatment: dict, version_id: uuid.UUID | None,
                  detail: dict, reason: str | None) -> None:
    if version_id is not None and version_id != treatment["id"]:
        raise Conflict("this treatment was changed since you loaded it; reload it and try again",
                       field="version_id", current=str(treatment["id"]))
    record.append(conn, principal, KIND, patient_id=treatment["patient_id"], supersedes=treatment["id"],
                  detail=detail, reason=reason)


def record_outcome(conn: Connection, principal: Principal, patient_id: uuid.UUID, treatment_id: uuid.UUID,
                   data: Any, *, regimens: Regimens, today: dt.date) -> dict:
    """Assign the treatment's outcome (a new version of its record). Refused (409) once one is assigned (correct
    it instead); (422, naming the WHO rule) an outcome the record cannot bear."""
    treatment = _treatment(conn, patient_id, treatment_id, lock=True)
    if treatment["outcome"] is not None:
        raise Conflict(f"this treatment's outcome is recorded already ({OUTCOME_WORDS[treatment['outcome']].lower()}, "
                       f"{treatment['outcome_on'].isoformat()}): correct it instead", field="outcome")
    regimen = _regimen_of(treatment, regimens)
    _check_outcome(conn, patient_id, treatment, data.outcome, data.outcome_on, regimen, today)
    detail = {k: treatment[k] for k in (*_REGISTRATION, "register_number", "register_year")}
    _next_version(conn, principal, treatment, data.version_id, {**detail, "outcome": data.outcome,
                                                                 "outcome_on": data.outcome_on}, None)
    return _answer(conn, principal, patient_id, treatment["root_id"], regimens, today)


def _regimen_of(treatment: dict, regimens: Regimens) -> Regimen:
    regimen = regimens.by_code.get(treatment["regimen"])
    if regimen is None:
        raise Invalid(f"the treatment's regimen {treatment['regimen']!r} is no longer in the programme's list: "
                      "correct the regimen first", field="regimen")
    return regimen


def correct_treatment(conn: Connection, principal: Principal, patient_id: uuid.UUID, treatment_id: uuid.UUID,
                      data: Any, *, regimens: Regimens, today: dt.date) -> dict:
    """A corrected version of the registration and its outcome (a wrong classification, regimen, weight, outcome
    or day; an outcome taken away reopens the treatment), with the reason. The register number stays the case's
    (the year it started stays too: a number is not moved to another year's register)."""
    treatment = _treatment(conn, patient_id, treatment_id, lock=True)
    regimen = _check_registration(conn, principal, patient_id, data, regimens, today)
    if data.started_on.year != treatment["register_year"]:
        raise Invalid(f"the case is number {treatment['register_number']} of {treatment['register_year']}'s "
                      f"register: a start in {data.started_on.year} is another registration (mark this one entered "
                      "in error and register it again)", field="started_on")
    corrected = {**treatment, **data.model_dump(include=set(_REGISTRATION))}
    _check_outcome(conn, patient_id, corrected, data.outcome, data.outcome_on, regimen, today)
    if data.outcome is None and (open_ := _open_other(conn, patient_id, treatment["root_id"])) is not None:
        raise Conflict(f"the patient is on another TB treatment ({open_['register_number']}): this one cannot be "
                       "reopened", field="outcome")
    detail = {**data.model_dump(include={*_REGISTRATION, "outcome", "outcome_on"}),
              "register_number": treatment["register_number"], "register_year": treatment["register_year"]}
    _next_version(conn, principal, treatment, data.version_id, detail, data.reason)
    return _answer(conn, principal, patient_id, treatment["root_id"], regimens, today)


def _check_follow_up(treatment: dict, data: Any, today: dt.date) -> None:
    if data.examined_on > today:
        raise Invalid(f"the examination's day, {data.examined_on.isoformat()}, is in the future", field="examined_on")
    if data.examined_on < treatment["started_on"]:
        raise Invalid(f"the examination's day, {data.examined_on.isoformat()}, is before treatment started on "
                      f"{treatment['started_on'].isoformat()}", field="examined_on")
    # A result is judged by its month (a positive one from month 5 on is failure), so the month must have come: a
    # month's examination is taken from a week before its day, as it falls due.
    month_from = months_after(treatment["started_on"], data.month) - DUE_BEFORE
    if data.month and data.examined_on < month_from:
        raise Invalid(f"month {data.month}'s examination is taken from {month_from.isoformat()}, a week before "
                      f"{data.month} months of treatment have run (started {treatment['started_on'].isoformat()}); "
                      f"this one, on {data.examined_on.isoformat()}, is earlier: record the month it was taken in",
                      field="month")
    if data.smear == data.culture == data.xpert == "not_done" and data.weight_kg is None:
        raise Invalid("record at least one result or the weight", field="smear")


_FOLLOW_UP_FIELDS = {"month", "examined_on", "smear", "culture", "xpert", "weight_kg", "note"}


def record_follow_up(conn: Connection, principal: Principal, patient_id: uuid.UUID, treatment_id: uuid.UUID,
                     data: Any, *, regimens: Regimens, today: dt.date) -> dict:
    """Record a monitoring examination of the treatment (a month's sputum results, the weight). Refused (422) a day
    in the future or before the start, or before its month of treatment falls due, or a visit not this patient's,
    nothing recorded at all; (404) a treatment not in force on this chart."""
    treatment = _treatment(conn, patient_id, treatment_id)
    service.require_chart(conn, patient_id, data.encounter_id)
    _check_follow_up(treatment, data, today)
    record.append(conn, principal, FOLLOW_UP, patient_id=patient_id, encounter_id=data.encounter_id,
                  detail={**data.model_dump(include=_FOLLOW_UP_FIELDS), "treatment_id": treatment["root_id"]})
    return _answer(conn, principal, patient_id, treatment["root_id"], regimens, today)


def correct_follow_up(conn: Connection, principal: Principal, patient_id: uuid.UUID, follow_up_id: uuid.UUID,
                      data: Any, *, regimens: Regimens, today: dt.date) -> dict:
    """A corrected version of a follow-up (a result or weight mistyped), with the reason. A version corrected
    since: 409."""
    found = conn.execute(
        sa.select(tb_follow_up.c.treatment_id).select_from(entry.join(tb_follow_up,
                                                                      tb_follow_up.c.entry_id == entry.c.id))
        .where(entry.c.id == follow_up_id, entry.c.patient_id == patient_id, entry.c.kind == FOLLOW_UP)).scalar()
    if found is None:
        raise NotFound(f"no TB follow-up {follow_up_id} on this patient's chart", entry_id=str(follow_up_id))
    treatment = _treatment(conn, patient_id, found)
    _check_follow_up(treatment, data, today)
    record.append(conn, principal, FOLLOW_UP, patient_id=patient_id, supersedes=follow_up_id, reason=data.reason,
                  detail={**data.model_dump(include=_FOLLOW_UP_FIELDS), "treatment_id": treatment["root_id"]})
    return _answer(conn, principal, patient_id, treatment["root_id"], regimens, today)


def withdraw(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
             reason: str) -> dict:
    """Mark a treatment's registration or a follow-up entered in error (the wrong patient, never examined): nothing
    is deleted; the register, the card and the cohort no longer count it. A treatment's register number is not
    given again."""
    kind = conn.execute(sa.select(entry.c.kind).where(entry.c.id == entry_id, entry.c.patient_id == patient_id)
                        ).scalar()
    if kind not in (KIND, FOLLOW_UP):
        raise NotFound(f"no TB treatment or follow-up {entry_id} on this patient's chart", entry_id=str(entry_id))
    appended = record.retract(conn, principal, entry_id, reason)
    first = conn.execute(sa.select(entry.c.author_id).where(entry.c.id == appended.root_id)).scalar_one()
    return {"id": appended.id, "root_id": appended.root_id, "kind": appended.kind, "entry_status": appended.status,
            "encounter_id": appended.encounter_id, "author_id": appended.author_id, "record_author_id": first,
            "occurred_at": appended.occurred_at, "recorded_at": appended.recorded_at,
            "supersedes": appended.supersedes, "reason": appended.reason, "detail": {}}


# -- the facility's register ---------------------------------------------------------------------------------------


def cohort_reported_from(year: int, quarter: int) -> dt.date:
    return months_after(quarter_bounds(year, quarter)[1], COHORT_REPORTED_AFTER_MONTHS)


def register_of_year(conn: Connection, principal: Principal, year: int, *, regimens: Regimens,
                     today: dt.date, threshold: int) -> dict:
    """The year's register (every case whose treatment started in the year, by register number): each case's
    patient, classification, follow-ups done and overdue, and outcome (or, with none, the day of a death certified
    since, the outcome to record); and each quarter's cohort table, marked
    provisional until 12 months after the quarter. Each case's HIV status only to a principal who may read the ART
    register; to anyone else the cohort's HIV-positive row under the national disclosure rule at `threshold` (the
    ministry's, policies/indicators.toml): beside the named cases of a small health centre's quarter, one
    HIV-positive case with its outcome would say who. Each case listed is audited on its patient's access log,
    saying whether it showed their HIV status."""
    rows = _treatments(conn, tb_treatment.c.register_year == year)[:REGISTER_LIMIT]
    rows.sort(key=lambda r: r["register_number"])
    people = {r["id"]: dict(r) for r in conn.execute(
        sa.select(patient.c.id, patient.c.mrn, patient.c.family_name, patient.c.given_names, patient.c.sex,
                  patient.c.birth_date).where(patient.c.id.in_({r["patient_id"] for r in rows}))).mappings()}
    follow_ups: dict[uuid.UUID, list[dict]] = {}
    for f in _follow_ups(conn, [r["root_id"] for r in rows]):
        follow_ups.setdefault(f["treatment_id"], []).append(f)
    shows_hiv = principal.can(HIV_REGISTER)
    died = deaths.days_of_death(conn, list(people))
    note_list_read(conn, principal, REGISTER_WITH_HIV if shows_hiv else REGISTER, rows)
    cases = []
    for row in rows:
        shaped = _shaped(row, follow_ups.get(row["root_id"], []), regimens, today)
        shaped["patient"] = people[row["patient_id"]]
        # A patient certified dead owes no follow-up: what the case waits for is its outcome, died.
        shaped["died_on"] = died.get(row["patient_id"]) if row["outcome"] is None else None
        shaped["overdue"] = [] if shaped["died_on"] else [d["month"] for d in shaped["due"] if d["state"] == "overdue"]
        cases.append(shaped)
    cohorts = []
    for quarter in range(1, 5):
        start, end = quarter_bounds(year, quarter)
        if start > today:
            break
        members = [c for c in cases if start <= c["started_on"] < end]
        reported_from = cohort_reported_from(year, quarter)
        cohorts.append({"quarter": quarter, "starts_on": start, "ends_on": end - dt.timedelta(days=1),
                        "reported_from": reported_from, "provisional": today < reported_from,
                        **cohort_table(members)})
    if not shows_hiv:  # after the cohorts are counted: their HIV-positive row counts everyone, small counts withheld
        for case in cases:
            case["hiv_status"] = None
        for cohort in cohorts:
            cohort["rows"] = [withhold_small(r, threshold) if r["row"] == "hiv_positive" else r for r in cohort["rows"]]
    return {"year": year, "today": today, "cases": cases, "cohorts": cohorts, "hiv_status_shown": shows_hiv,
            "withheld_under": None if shows_hiv else threshold, "overdue": sum(1 for c in cases if c["overdue"]),
            "died_without_outcome": sum(1 for c in cases if c["died_on"])}


record.register_reaction("death", refuse_certificate_after_tb_death)
