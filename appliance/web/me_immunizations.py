"""The patient's vaccination card, `/me/immunizations` (page) and `/api/me/immunizations` (JSON, for an app):
every dose recorded at every facility that holds a record of this person (one identity), what is due now and
what is overdue, and what comes next and from when — read-only.

The doses of all the facilities are judged together against the national schedule
(`immunization_schedule.evaluate`, `policies/immunization.toml`), so a first pentavalent dose given at a
dispensary makes the second due at the hospital; each facility's part is read in its own transaction through
`immunization.patient_immunizations`, which notes the read on that facility's audit trail as the patient's own.
A dose entered in error never shows. Whether vaccinations reach the portal at all is the release rules'
(`policies/release.toml`, `[immunization]`). Due and overdue are said only while the child is within the
schedule's tracing age (`trace_until`) and alive: a grown patient's card lists their doses, never a baby's dose
overdue or no longer given, and a parent whose child died is never told a dose is late.

The portal has no guardian accounts: a card is the signed-in person's own.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from litestar import Request, get
from litestar.datastructures import State
from litestar.response import Template
from pydantic import BaseModel, ConfigDict, Field

from appliance.layers.clinical import immunization
from appliance.layers.clinical.immunization_schedule import (
    DoseStatus,
    RecordedDose,
    Schedule,
    counted,
    evaluate,
    load_schedule,
)
from appliance.layers.clinical.schemas import DoseStatusOut
from appliance.layers.patient import portal as patient_portal
from appliance.substrate import deaths

PERMISSION = "patient.immunization.read"
NOT_SHOWN = ("Vaccinations are not shown on this portal: the facilities that vaccinated you keep them, and their "
             "nurses can tell you which you have had and which are due.")


class CardDoseOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    facility: str = Field(description="where it was recorded")
    vaccine: str
    vaccine_name: str | None
    dose_number: int | None = Field(description="its place in the vaccine's series; none for a campaign dose")
    given_on: dt.date = Field(description="the day it was given, or was due and not given")
    given: bool = Field(description="false: due and not given (see not_given_because)")
    not_given_because: str | None
    from_card: bool = Field(description="recorded from a vaccination card or another facility's record")
    lot_number: str | None
    counts: bool | None = Field(description="whether it counts for its dose of the series; none for a dose not "
                                            "given or a campaign dose")
    why_not: str | None = Field(description="why a dose given does not count (too early, a repeat)")


class VaccinationCardOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shown: bool = Field(description="false: the release rules keep vaccinations off the portal (see `note`)")
    born: dt.date | None
    today: dt.date
    traced: bool = Field(description="whether the card says what is due: the child is under the schedule's "
                                     "tracing age and alive")
    note: str | None
    doses: list[CardDoseOut] = Field(description="newest first, every facility")
    due: list[DoseStatusOut] = Field(description="due now or overdue, the longest overdue first")
    coming: list[DoseStatusOut] = Field(description="not yet due, the soonest first, with the day each may be given")
    no_longer_given: list[DoseStatusOut] = Field(description="doses missed that are past the age they are given at, "
                                                            "while the child is traced; none once not")


def _schedule(state: State) -> Schedule:
    return load_schedule(state.settings.policies_dir / "immunization.toml")


def vaccination_card(state: State, request: Request) -> VaccinationCardOut:
    """The card across the patient's facilities (see the module docstring); each facility's read audited there."""
    holdings = patient_portal.records_of(state.db, request.user)
    today = max((dt.datetime.now(zoneinfo.ZoneInfo(h.timezone)).date() for h in holdings),
                default=dt.datetime.now(dt.UTC).date())
    empty = {"doses": [], "due": [], "coming": [], "no_longer_given": [], "born": None, "traced": False}
    if not state.release_rules.immunizations_shown:
        return VaccinationCardOut(shown=False, today=today, note=NOT_SHOWN, **empty)
    if not holdings:
        return VaccinationCardOut(shown=True, today=today, note="No facility on this appliance holds a record linked "
                                                               "to your account yet.", **empty)
    schedule = _schedule(state)
    doses, births, deceased = [], {}, False
    for holding in holdings:
        tz = zoneinfo.ZoneInfo(holding.timezone)
        with state.db.tenant(holding.tenant) as conn:
            part = immunization.patient_immunizations(conn, request.user, holding.patient_id, schedule=schedule,
                                                      today=dt.datetime.now(tz).date(), tz=tz)
            # One identity: a death certified at any facility reads the same from each.
            deceased = deceased or deaths.death_of(conn, holding.patient_id) is not None
        births.setdefault(part["birth_date"], holding.facility)
        doses += [{**dose, "facility": holding.facility} for dose in part["doses"]]
    # One person, one birth date; where the facilities' registrations disagree the card counts from the earliest
    # (no dose is called too early that one of them would count) and says so.
    born = min(births)
    note = None
    if len(births) > 1:
        note = ("The facilities hold different birth dates for you (" + "; ".join(
            f"{day:%d %B %Y} at {facility}" for day, facility in sorted(births.items())) +
            f"): this card counts from {born:%d %B %Y}. Ask the front desk to correct the wrong one.")
    statuses = evaluate(schedule, born, [RecordedDose(d["id"], d["vaccine"], d["dose_number"], d["given_on"],
                                                      d["status"], d["not_done_reason"], d["expiry_date"])
                                         for d in doses], today)
    traced = today < schedule.trace_until.after(born) and not deceased
    return VaccinationCardOut(
        shown=True, born=born, today=today, traced=traced, note=note,
        doses=[_dose(d, statuses) for d in sorted(doses, key=lambda d: (d["given_on"], d["recorded_at"]),
                                                   reverse=True)],
        due=sorted((_status(s) for s in statuses if traced and s.outstanding),
                   key=lambda s: (s.overdue_since or dt.date.max, s.due_from or dt.date.max)),
        coming=sorted((_status(s) for s in statuses if traced and s.state == "not_yet_due"),
                      key=lambda s: (s.due_from is None, s.due_from or dt.date.max)),
        # Said of a child still traced only: to a grown person, every childhood dose not recorded here read as
        # missed, and a parent whose child died is not told what can no longer be given.
        no_longer_given=[_status(s) for s in statuses if traced and s.state == "no_longer_given"])


def _dose(row: dict, statuses: list[DoseStatus]) -> CardDoseOut:
    given = row["status"] == "completed"
    attempt = counted(statuses, row["id"]) if given else None
    return CardDoseOut(facility=row["facility"], vaccine=row["vaccine"], vaccine_name=row["vaccine_name"],
                       dose_number=row["dose_number"], given_on=row["given_on"], given=given,
                       not_given_because=None if given else immunization.NOT_DONE_WORDS[row["not_done_reason"]],
                       from_card=row["source"] == "historical", lot_number=row["lot_number"],
                       counts=attempt.counts if attempt else None, why_not=attempt.why if attempt else None)


def _status(status: DoseStatus) -> DoseStatusOut:
    return DoseStatusOut.model_validate(immunization.status_dict(status))


@get("/api/me/immunizations", operation_id="PatientVaccinationCard", tags=["patient"],
     opt={"permission": PERMISSION}, sync_to_thread=True)
def card_api(request: Request, state: State) -> VaccinationCardOut:
    """Your vaccination card: the doses recorded at every facility that holds your record, newest first; what is
    due now or overdue; what comes next and from when. Read only; each facility notes that you read it."""
    return vaccination_card(state, request)


@get("/me/immunizations", operation_id="PatientVaccinationCardPage", tags=["patient"],
     opt={"permission": PERMISSION}, sync_to_thread=True, include_in_schema=False)
def card_page(request: Request, state: State) -> Template:
    card = vaccination_card(state, request)
    aged_out = card.born is not None and card.today >= _schedule(state).trace_until.after(card.born)
    return Template("me_immunizations.html", context={
        "principal": request.user, "tab": "immunizations", "card": card, "aged_out": aged_out})


ROUTES = [card_api, card_page]
