"""The clinical layer's read services for a clinician's day: today's encounters at the facility, the list
a clinician starts from ("Today's patients" in the portal, `GET /api/t/{tenant}/encounters/today`), and the
results waiting for their review.

Today is the facility's day, in its own time zone. An encounter is today's when it is open now (arrived
or in progress, whenever it began: last night's emergency still being seen, an inpatient on the ward),
planned for today, or finished today. Cancelled encounters are left out.

"Mine" is what the record can say about a clinician and an encounter: they opened it, or they wrote
something in it (a note, an order, a prescription, vital signs, a step of its progress). The data model
names no attending clinician, so an encounter assigned to someone who has not yet written in it is in
"all" only.

Results waiting for review are those not yet signed off that answer an order the clinician placed, and
every critical result at the facility (service.CRITICAL_FLAGS: a lab value's HH or LL, an imaging report's
critical finding AA) whoever ordered it: a
result reaches the chart whether or not the patient is there, and one for a patient who went home
yesterday is otherwise seen by nobody until their next visit.

Listing a patient reads their record, so each patient listed gets their own audit event (the list shows
up in their access log as a look at a visit), as the ward's worklist does.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.clinical.errors import Invalid
from appliance.layers.clinical.models import encounter, patient, result, result_signoff
from appliance.layers.clinical.service import CRITICAL_FLAGS
from appliance.substrate.principal import Principal
from appliance.substrate.record import current_clause, entry, note_list_read

Whose = Literal["mine", "all"]
WHOSE: tuple[Whose, ...] = ("all", "mine")
# The classes of encounter the list can keep to, in the order a page offers them.
VISITS = ("outpatient", "emergency", "inpatient")
# A facility's busiest day stays well under this; past it the list says it is cut short rather than
# render (and audit) thousands of rows nobody reads.
LIMIT = 500
# Those being seen first, then those waiting, those expected, and those already done.
# Critical results (service.CRITICAL_FLAGS: beyond the catalogue's critical limits, flagged so by the
# laboratory, an imaging report's critical finding) come first.
RESULTS_LIMIT = 100
_STATUS_ORDER = sa.case({"in_progress": 0, "arrived": 1, "planned": 2, "finished": 3}, value=encounter.c.status,
                        else_=4)


def facility_day(tz: zoneinfo.ZoneInfo, now: dt.datetime | None = None) -> tuple[dt.date, dt.datetime, dt.datetime]:
    """The facility's today and the instants it begins and ends (a day of 23 or 25 hours across a
    change of clock is still one day)."""
    today = (now or dt.datetime.now(dt.UTC)).astimezone(tz).date()
    begins = dt.datetime.combine(today, dt.time(0), tzinfo=tz)
    ends = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(0), tzinfo=tz)
    return today, begins, ends


def todays_encounters(conn: Connection, principal: Principal, *, tz: zoneinfo.ZoneInfo, whose: str = "all",
                      visit: str | None = None, now: dt.datetime | None = None) -> dict:
    """Today's encounters at this facility, those being seen first, each with its patient and whether it
    is the asking clinician's; `whose="mine"` keeps only theirs, `visit` only one class of encounter (an
    outpatient clinic's list is otherwise under every inpatient on the wards). How many each filter holds
    is returned too (`counts` for whose, `visits` for each class within it), so a page can say what the
    others hold without listing (or auditing) their patients: a count names nobody."""
    if whose not in WHOSE:
        raise Invalid(f"whose is 'mine' or 'all', not {whose!r}", field="whose")
    if visit is not None and visit not in VISITS:
        raise Invalid(f"visit is one of {', '.join(VISITS)}, not {visit!r}", field="visit")
    today, begins, ends = facility_day(tz, now)
    written_in = entry.alias("written_in")
    opened = entry.alias("opened")
    mine = sa.or_(
        opened.c.author_id == principal.account_id,
        sa.exists().where(written_in.c.encounter_id == encounter.c.id,
                          written_in.c.author_id == principal.account_id),
    )
    todays = sa.or_(
        encounter.c.status.in_(("arrived", "in_progress")),
        sa.and_(encounter.c.status == "planned", encounter.c.planned_for >= begins, encounter.c.planned_for < ends),
        sa.and_(encounter.c.status == "finished", encounter.c.ended_at >= begins, encounter.c.ended_at < ends),
    )
    joined = (encounter.join(patient, patient.c.id == encounter.c.patient_id)
              .join(opened, opened.c.id == encounter.c.entry_id))
    counted = conn.execute(sa.select(sa.func.count(), sa.func.count().filter(mine)).select_from(joined)
                           .where(todays)).one()
    by_visit = dict(conn.execute(sa.select(encounter.c.encounter_class, sa.func.count()).select_from(joined)
                                 .where(todays, *([mine] if whose == "mine" else []))
                                 .group_by(encounter.c.encounter_class)).all())
    when = sa.func.coalesce(encounter.c.started_at, encounter.c.planned_for)
    listed = [dict(r) for r in conn.execute(
        sa.select(encounter.c.id, encounter.c.patient_id, encounter.c.encounter_class, encounter.c.status,
                  encounter.c.reason, encounter.c.ward_code, encounter.c.planned_for, encounter.c.started_at,
                  encounter.c.ended_at, opened.c.author_id.label("opened_by"), patient.c.mrn,
                  patient.c.family_name, patient.c.given_names, patient.c.birth_date, patient.c.sex,
                  mine.label("mine"))
        .select_from(joined)
        .where(todays, *([mine] if whose == "mine" else []),
               *([encounter.c.encounter_class == visit] if visit else []))
        .order_by(_STATUS_ORDER, when.asc().nulls_last(), patient.c.family_name, encounter.c.id)
        .limit(LIMIT + 1)
    ).mappings()]
    cut_short = len(listed) > LIMIT
    listed = listed[:LIMIT]
    note_list_read(conn, principal, "encounter", listed, detail={"list": "today"})
    return {"date": today, "timezone": tz.key, "whose": whose, "visit": visit, "encounters": listed,
            "cut_short": cut_short, "counts": {"all": counted[0], "mine": counted[1]},
            "visits": {v: by_visit.get(v, 0) for v in VISITS}}


def results_to_review(conn: Connection, principal: Principal, *, limit: int = RESULTS_LIMIT) -> dict:
    """Results not yet signed off that wait for this clinician: those answering an order they placed, and
    every critical result at the facility whoever ordered it (`ordered_by`, whom to tell); critical first, then
    other abnormal ones, newest first within each, a corrected one saying so. Each patient listed is audited as a
    read of those results."""
    ordered = entry.alias("ordered")
    by_me = sa.exists().where(ordered.c.id == result.c.service_request_id,
                              ordered.c.author_id == principal.account_id)
    # Another's order's critical result only for a patient seen here: a patient known to the laboratory
    # alone is in no clinician's care, and their name and result are not for everyone's list.
    critical = sa.and_(result.c.flag.in_(CRITICAL_FLAGS),
                       sa.exists().where(encounter.c.patient_id == entry.c.patient_id))
    signed = sa.exists().where(result_signoff.c.result_id == entry.c.id)  # as the chart's "to review" counts
    rank = sa.case((result.c.flag.in_(CRITICAL_FLAGS), 0), (result.c.flag.is_not(None) & (result.c.flag != "N"), 1),
                   else_=2)
    listed = [dict(r) for r in conn.execute(
        sa.select(entry.c.id, entry.c.patient_id, entry.c.occurred_at, result.c.code, result.c.display,
                  result.c.value_numeric, result.c.value_text, result.c.unit, result.c.flag,
                  result.c.reference_low, result.c.reference_high, patient.c.mrn, patient.c.family_name,
                  patient.c.given_names, by_me.label("ordered_by_me"),
                  # Who to tell of another's critical result: the order's author (none for a result of no order).
                  sa.select(ordered.c.author_id).where(ordered.c.id == result.c.service_request_id)
                  .scalar_subquery().label("ordered_by"),
                  # A correction is the result's next version: its reviewer is told the value changed.
                  (entry.c.id != entry.c.root_id).label("corrected"))
        .select_from(entry.join(result, result.c.entry_id == entry.c.id)
                     .join(patient, patient.c.id == entry.c.patient_id))
        .where(entry.c.status != "entered_in_error", current_clause(), ~signed, sa.or_(by_me, critical))
        .order_by(rank, entry.c.occurred_at.desc(), entry.c.id)
        .limit(limit + 1)
    ).mappings()]
    cut_short = len(listed) > limit
    listed = listed[:limit]
    note_list_read(conn, principal, "result", listed, detail={"list": "to review"})
    return {"results": listed, "cut_short": cut_short,
            "critical": sum(1 for r in listed if r["flag"] in CRITICAL_FLAGS)}


def critical_unreviewed(conn: Connection, principal: Principal, patient_ids: list) -> list[dict]:
    """The critical results (service.CRITICAL_FLAGS) of these patients that no clinician has signed off yet, newest
    first: what a ward's nurses are to tell the doctor of, as the ward's own alarms (an early warning score,
    oliguria) are. Each patient listed is audited as a read of those results."""
    if not patient_ids:
        return []
    signed = sa.exists().where(result_signoff.c.result_id == entry.c.id)
    listed = [dict(r) for r in conn.execute(
        sa.select(entry.c.id, entry.c.patient_id, entry.c.occurred_at, result.c.display, result.c.value_numeric,
                  result.c.value_text, result.c.unit, result.c.flag)
        .select_from(entry.join(result, result.c.entry_id == entry.c.id))
        .where(entry.c.patient_id.in_(patient_ids), entry.c.status != "entered_in_error", current_clause(), ~signed,
               result.c.flag.in_(CRITICAL_FLAGS))
        .order_by(entry.c.occurred_at.desc(), entry.c.id)
    ).mappings()]
    note_list_read(conn, principal, "result", listed, detail={"list": "ward critical"})
    return listed
