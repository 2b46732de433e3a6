"""The duty roster (operations layer): who works which shift on which ward, and whether each ward has enough nurses
for the patients in its beds.

- Shifts come from the tenant file (`[roster]`: day 07:00-19:00 and night 19:00-07:00 by default, or three 8-hour
  shifts, each with its staffing threshold), synced into `roster_shift` and `roster_setting` when the file is applied.
- An entry puts one member of staff on one shift of one ward on one date, in a role on that shift: in charge, nurse
  or student (a nurse's membership) or clinician (a clinician's). Staff are named by their account id only: who they
  are and what role they hold is the control schema's (`identity.staff_of`), passed in by the caller as a
  `StaffDirectory`, never copied here.
- Refused with nothing written (422 or 409, with the field): a ward, shift or person that is not the facility's, a
  person whose membership cannot work that role or is limited to another ward, a person already on a shift at that
  time (two wards in one shift, or overlapping shifts), less rest between two of their shifts than the facility's
  `min_rest_hours` (11 by default: the EU Working Time Directive 2003/88/EC, art. 3, 11 consecutive hours of daily
  rest in every 24), a date further back than `correction_days`. Writers limited to a ward (a ward-scoped nurse)
  write only their ward's roster (403).
- Taking someone off is a withdrawal appended with its reason (`roster_withdrawal`), never a deletion. Both writes
  are audited (`operations.roster.add`, `operations.roster.withdraw`): the roster is not patient data, but an
  auditor asks who changed it.
- Staffing: for each inpatient ward and shift, nurses rostered (in charge and nurses: students and clinicians do not
  count, as NICE's ratio is of registered nurses) against the ward's census at the shift's start (the bed board's
  inpatient stays, placed on the ward they were on at that moment; a shift not yet begun is judged on the census
  now) -> patients per nurse, flagged understaffed above the shift's threshold, or when patients have no nurse.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from appliance.layers.operations.errors import Conflict, Invalid, NotFound, Refused
from appliance.layers.operations.models import (
    INPATIENT_WARD_KINDS,
    roster_entry,
    roster_setting,
    roster_shift,
    roster_withdrawal,
    ward,
)
from appliance.substrate import audit
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import register_config_applier
from appliance.substrate.tenant_config import RosterConfig, TenantConfig

WRITE_PERMISSION = "operations.roster.write"
READ_PERMISSION = "operations.ward.read"
ROLES_ON_SHIFT = {"in_charge": "In charge", "nurse": "Nurse", "clinician": "Clinician", "student": "Student"}
# Which facility role may work each role on a shift: students are on the nurses' roster with a nurse's account.
MEMBERSHIP_FOR = {"in_charge": "nurse", "nurse": "nurse", "student": "nurse", "clinician": "clinician"}
# Whom NICE's patients-per-nurse counts: registered nurses on the ward, the one in charge among them.
COUNTED_AS_NURSES = ("in_charge", "nurse")
FURTHEST_AHEAD = dt.timedelta(days=366)
LIST_DAYS = 62


@dataclass(frozen=True)
class Member:
    """A member of the facility's staff as the control schema knows them: their name and, per role, the ward a
    ward-scoped membership is limited to (None: not limited)."""

    account_id: uuid.UUID
    name: str
    roles: Mapping[str, str | None] = field(default_factory=dict)


StaffDirectory = Mapping[uuid.UUID, Member]


def staff_directory(memberships: Iterable[Mapping[str, Any]]) -> dict[uuid.UUID, Member]:
    """The facility's working staff from `identity.staff_of`'s rows, one per person (a disabled account works no
    shift): the roster's only view of who is who."""
    people: dict[uuid.UUID, dict] = {}
    for row in memberships:
        if row["state"] == "disabled":
            continue
        person = people.setdefault(row["account_id"], {"name": row["name"], "roles": {}})
        person["roles"][row["role"]] = row["ward"]
    return {account: Member(account, p["name"], p["roles"]) for account, p in people.items()}


def _tenant(conn: Connection) -> str:
    return conn.info["healthos_tenant"]


# -- configuration ---------------------------------------------------------------------------------------


@register_config_applier
def sync_roster(conn: Connection, config: TenantConfig) -> None:
    """The file's `[roster]` (or its defaults): shifts upserted in the file's order, those it no longer names
    deactivated (entries point at them), and the one settings row replaced."""
    roster = config.roster or RosterConfig()
    for position, shift in enumerate(roster.shifts):
        values = {"name": shift.name, "starts": shift.start, "ends": shift.end,
                  "patients_per_nurse": shift.patients_per_nurse, "position": position, "active": True}
        conn.execute(postgresql.insert(roster_shift).values(code=shift.code, **values)
                     .on_conflict_do_update(index_elements=[roster_shift.c.code], set_=values))
    conn.execute(roster_shift.update().where(roster_shift.c.code.not_in([s.code for s in roster.shifts]))
                 .values(active=False))
    values = {"min_rest_hours": roster.min_rest_hours, "correction_days": roster.correction_days}
    conn.execute(postgresql.insert(roster_setting).values(id=1, **values)
                 .on_conflict_do_update(index_elements=[roster_setting.c.id], set_=values))


def shifts(conn: Connection) -> list[dict]:
    """The facility's shifts in the file's order."""
    return [dict(r) for r in conn.execute(sa.select(roster_shift).where(roster_shift.c.active)
                                          .order_by(roster_shift.c.position)).mappings()]


def settings(conn: Connection) -> dict:
    found = conn.execute(sa.select(roster_setting.c.min_rest_hours, roster_setting.c.correction_days)
                         ).mappings().first()
    defaults = RosterConfig()
    return dict(found) if found else {"min_rest_hours": defaults.min_rest_hours,
                                      "correction_days": defaults.correction_days}


def wards(conn: Connection) -> list[dict]:
    """The wards a roster is kept for: the facility's active wards, inpatient ones first."""
    rows = conn.execute(sa.select(ward.c.code, ward.c.name, ward.c.kind).where(ward.c.active)
                        .order_by(ward.c.name)).mappings()
    return sorted((dict(r) for r in rows), key=lambda w: w["kind"] not in INPATIENT_WARD_KINDS)


def shift_bounds(day: dt.date, shift: Mapping[str, Any], tz: zoneinfo.ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """When a shift of `day` starts and ends, as instants: one ending at or before its start time ends the next
    day (a night shift). Wall-clock times in the facility's zone, so a shift across a clock change is an hour
    longer or shorter, as the ward works it."""
    starts = dt.datetime.combine(day, shift["starts"], tzinfo=tz)
    end_day = day if shift["ends"] > shift["starts"] else day + dt.timedelta(days=1)
    ends = dt.datetime.combine(end_day, shift["ends"], tzinfo=tz)
    return starts.astimezone(dt.UTC), ends.astimezone(dt.UTC)


def _hours(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h" if hours == int(hours) else f"{hours:.1f} h"


# -- writing -------------------------------------------------------------------------------------------


def _may_write_ward(principal: Principal, ward_code: str) -> None:
    if principal.ward_scoped and principal.ward and principal.ward != ward_code:
        raise Refused(f"you keep the roster of {principal.ward} only: {ward_code}'s is its own nurses' or the bed "
                      "manager's", field="ward_code")


def _within_correction(conn: Connection, day: dt.date, today: dt.date, field_name: str = "shift_date") -> None:
    window = settings(conn)["correction_days"]
    if day < today - dt.timedelta(days=window):
        raise Invalid(f"{day.isoformat()} is more than {window} days ago: the roster of that day is history now and "
                      "is no longer changed", field=field_name)


def add(conn: Connection, principal: Principal, data: Any, *, staff: StaffDirectory, tz: zoneinfo.ZoneInfo,
        now: dt.datetime | None = None) -> dict:
    """Put a member of staff on a shift (`RosterEntryIn`): checked, then written and audited, or refused with
    nothing written."""
    now = now or conn.execute(sa.select(sa.func.now())).scalar_one()
    today = now.astimezone(tz).date()
    _may_write_ward(principal, data.ward_code)
    found_ward = conn.execute(sa.select(ward.c.code, ward.c.name).where(ward.c.code == data.ward_code,
                                                                         ward.c.active)).first()
    if found_ward is None:
        raise Invalid(f"{data.ward_code} is not a ward of this facility", field="ward_code")
    shift = conn.execute(sa.select(roster_shift).where(roster_shift.c.code == data.shift_code,
                                                       roster_shift.c.active)).mappings().first()
    if shift is None:
        known = ", ".join(f"{s['code']} ({s['name']})" for s in shifts(conn))
        raise Invalid(f"{data.shift_code} is not one of this facility's shifts: {known}", field="shift_code")
    _within_correction(conn, data.shift_date, today)
    if data.shift_date > today + FURTHEST_AHEAD:
        raise Invalid("the roster is planned at most a year ahead", field="shift_date")
    member = staff.get(data.account_id)
    needed = MEMBERSHIP_FOR[data.role_on_shift]
    if member is None:
        raise Invalid("that person is not a member of staff of this facility", field="account_id")
    if needed not in member.roles:
        raise Invalid(f"{member.name} does not work here as a {needed}: only a {needed} is rostered as "
                      f"{ROLES_ON_SHIFT[data.role_on_shift].lower()}", field="account_id")
    limited_to = member.roles[needed]
    if limited_to and limited_to != data.ward_code:
        raise Invalid(f"{member.name} works on {limited_to}: their membership would have to move to "
                      f"{data.ward_code} first (the facility admin)", field="account_id")
    starts_at, ends_at = shift_bounds(data.shift_date, shift, tz)
    # One person's shifts are checked against each other one writer at a time: two nurses in charge rostering the
    # same person onto two wards at once must not both pass the check.
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                 {"key": f"healthos.roster.{data.account_id}"})
    _check_free(conn, member, data, starts_at, ends_at, tz)
    row = {"id": uuid.uuid4(), "ward_code": data.ward_code, "shift_date": data.shift_date,
           "shift_code": data.shift_code, "starts_at": starts_at, "ends_at": ends_at, "account_id": data.account_id,
           "role_on_shift": data.role_on_shift, "added_by": principal.account_id}
    added_at = conn.execute(roster_entry.insert().values(**row).returning(roster_entry.c.added_at)).scalar_one()
    audit.append(conn, tenant=_tenant(conn), principal=principal, event_type="operations.roster.add", action="C",
                 entity={"kind": "roster_entry", "ids": [str(row["id"])], "count": 1},
                 detail={"ward": data.ward_code, "date": data.shift_date.isoformat(), "shift": data.shift_code,
                         "role": data.role_on_shift, "staff": str(data.account_id)})
    return {**row, "added_at": added_at, "name": member.name, "shift_name": shift["name"], "withdrawn": False}


def _check_free(conn: Connection, member: Member, data: Any, starts_at: dt.datetime, ends_at: dt.datetime,
                tz: zoneinfo.ZoneInfo) -> None:
    rest = dt.timedelta(hours=settings(conn)["min_rest_hours"])
    near = conn.execute(
        sa.select(roster_entry.c.ward_code, roster_entry.c.shift_date, roster_entry.c.shift_code,
                  roster_entry.c.starts_at, roster_entry.c.ends_at, roster_shift.c.name.label("shift_name"))
        .join(roster_shift, roster_shift.c.code == roster_entry.c.shift_code)
        .where(roster_entry.c.account_id == data.account_id,
               roster_entry.c.starts_at < ends_at + rest, roster_entry.c.ends_at > starts_at - rest,
               sa.not_(sa.exists().where(roster_withdrawal.c.entry_id == roster_entry.c.id)))
        .order_by(roster_entry.c.starts_at)).mappings().all()
    for other in near:
        when = f"the {other['shift_name'].lower()} shift of {other['shift_date']:%a %d %b}"
        if (other["shift_date"], other["shift_code"]) == (data.shift_date, data.shift_code):
            if other["ward_code"] == data.ward_code:
                raise Conflict(f"{member.name} is already on {data.ward_code} for {when}", field="account_id")
            raise Conflict(f"{member.name} is already on {other['ward_code']} for {when}: one ward per shift",
                           field="account_id")
        if other["starts_at"] < ends_at and other["ends_at"] > starts_at:
            raise Conflict(f"{member.name} works {when} on {other['ward_code']}, which overlaps this shift",
                           field="account_id")
        gap = starts_at - other["ends_at"] if other["ends_at"] <= starts_at else other["starts_at"] - ends_at
        ended = other["ends_at"].astimezone(tz)
        began = other["starts_at"].astimezone(tz)
        side = (f"after {when} ends at {ended:%H:%M} on {ended:%a %d %b}" if other["ends_at"] <= starts_at
                else f"before {when} starts at {began:%H:%M} on {began:%a %d %b}")
        raise Conflict(f"{member.name} would have only {_hours(gap)} of rest {side}: at least {_hours(rest)} are "
                       "needed between two shifts", field="shift_code")


def withdraw(conn: Connection, principal: Principal, entry_id: uuid.UUID, reason: str, *, tz: zoneinfo.ZoneInfo,
             now: dt.datetime | None = None) -> dict:
    """Take an entry off the roster, with why: appended, the entry kept. 404 for an id that is not here."""
    now = now or conn.execute(sa.select(sa.func.now())).scalar_one()
    target = conn.execute(sa.select(roster_entry.c.ward_code, roster_entry.c.shift_date, roster_entry.c.shift_code,
                                    roster_withdrawal.c.entry_id.label("withdrawn"))
                          .outerjoin(roster_withdrawal, roster_withdrawal.c.entry_id == roster_entry.c.id)
                          .where(roster_entry.c.id == entry_id)).first()
    if target is None:
        raise NotFound("no such roster entry here")
    _may_write_ward(principal, target.ward_code)
    if target.withdrawn is not None:
        raise Conflict("that shift has already been taken off the roster")
    _within_correction(conn, target.shift_date, now.astimezone(tz).date())
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("say why this person is taken off the shift (sick, swapped, leave...)", field="reason")
    if len(reason) > 500:
        raise Invalid("keep the reason under 500 characters", field="reason")
    withdrawn_at = conn.execute(roster_withdrawal.insert().values(entry_id=entry_id, reason=reason,
                                                                  withdrawn_by=principal.account_id)
                                .returning(roster_withdrawal.c.withdrawn_at)).scalar_one()
    audit.append(conn, tenant=_tenant(conn), principal=principal, event_type="operations.roster.withdraw",
                 action="D", entity={"kind": "roster_entry", "ids": [str(entry_id)], "count": 1},
                 detail={"ward": target.ward_code, "date": target.shift_date.isoformat(), "shift": target.shift_code})
    return {"entry_id": entry_id, "reason": reason, "withdrawn_by": principal.account_id, "withdrawn_at": withdrawn_at}


# -- reading -------------------------------------------------------------------------------------------


def _entries(conn: Connection, where: list, staff: StaffDirectory, *, withdrawn: bool) -> list[dict]:
    query = (sa.select(roster_entry, roster_shift.c.name.label("shift_name"), roster_shift.c.position,
                       roster_withdrawal.c.reason.label("withdrawal_reason"), roster_withdrawal.c.withdrawn_at)
             .join(roster_shift, roster_shift.c.code == roster_entry.c.shift_code)
             .outerjoin(roster_withdrawal, roster_withdrawal.c.entry_id == roster_entry.c.id)
             .where(*where).order_by(roster_entry.c.starts_at, roster_entry.c.ward_code, roster_entry.c.role_on_shift))
    if not withdrawn:
        query = query.where(roster_withdrawal.c.entry_id.is_(None))
    rows = []
    for row in conn.execute(query).mappings():
        member = staff.get(row["account_id"])
        rows.append({**row, "withdrawn": row["withdrawn_at"] is not None,
                     "name": member.name if member else "(no longer on the staff)"})
    return rows


def date_range(first: dt.date | None, last: dt.date | None, today: dt.date) -> tuple[dt.date, dt.date]:
    """The dates asked for, this week (Monday to Sunday) when not given; at most `LIST_DAYS`."""
    first = first or today - dt.timedelta(days=today.weekday())
    last = last or first + dt.timedelta(days=6)
    if last < first:
        raise Invalid("the range ends before it starts", field="to")
    if (last - first).days >= LIST_DAYS:
        raise Invalid(f"ask for at most {LIST_DAYS} days at a time", field="to")
    return first, last


def listing(conn: Connection, *, staff: StaffDirectory, first: dt.date, last: dt.date, ward_code: str | None = None,
            withdrawn: bool = False) -> list[dict]:
    """The roster of a ward (or every ward) from `first` to `last`; with `withdrawn`, those taken off as well,
    with why."""
    if ward_code is not None and conn.execute(sa.select(ward.c.code).where(ward.c.code == ward_code)).first() is None:
        raise NotFound(f"no ward {ward_code} here", field="ward")
    where = [roster_entry.c.shift_date.between(first, last)]
    if ward_code is not None:
        where.append(roster_entry.c.ward_code == ward_code)
    return _entries(conn, where, staff, withdrawn=withdrawn)


def my_shifts(conn: Connection, principal: Principal, *, today: dt.date, days: int = 14,
              first: dt.date | None = None) -> list[dict]:
    """The asker's own shifts from `first` (yesterday when not given: a night shift still running) for the next
    `days` days (1 to `LIST_DAYS`), never another's. Refused (422, naming the field): a count of days out of bounds,
    or a first day further from today than the roster is written (`FURTHEST_AHEAD`)."""
    if not 1 <= days <= LIST_DAYS:
        raise Invalid(f"days is how many days to list, from 1 to {LIST_DAYS}", field="days")
    if first is not None and abs(first - today) > FURTHEST_AHEAD:
        raise Invalid(f"from is a date within {FURTHEST_AHEAD.days} days of today ({today.isoformat()}): the roster "
                      "is written no further ahead", field="from")
    start = first if first is not None else today - dt.timedelta(days=1)
    end = today + dt.timedelta(days=days) if first is None else first + dt.timedelta(days=days - 1)
    where = [roster_entry.c.account_id == principal.account_id, roster_entry.c.shift_date.between(start, end)]
    return _entries(conn, where, {principal.account_id: Member(principal.account_id, principal.display_name)},
                    withdrawn=False)


# -- staffing against census ----------------------------------------------------------------------------------

# Patients on each ward at each moment: the stays open then, each on the ward its latest transfer before that moment
# took it to (or its admission's ward). Entered-in-error transfers do not move anyone.
_CENSUS = """
    WITH moments AS (SELECT DISTINCT unnest(CAST(:moments AS timestamptz[])) AS at)
    SELECT m.at, coalesce(
             (SELECT t.to_ward_code FROM transfer t JOIN entry e ON e.id = t.entry_id
               WHERE t.encounter_id = s.encounter_id AND e.occurred_at <= m.at AND e.status <> 'entered_in_error'
               ORDER BY e.occurred_at DESC LIMIT 1),
             a.ward_code) AS ward_code, count(*) AS census
    FROM moments m
    JOIN inpatient_stay s ON s.admitted_at <= m.at AND (s.discharged_at IS NULL OR s.discharged_at > m.at)
    JOIN admission a ON a.entry_id = s.id
    GROUP BY 1, 2
"""


def census_at(conn: Connection, moments: list[dt.datetime]) -> dict[tuple[dt.datetime, str], int]:
    """{(moment, ward): patients} for each moment asked (counts only: no patient is named, nothing to audit)."""
    if not moments:
        return {}
    rows = conn.execute(sa.text(_CENSUS), {"moments": moments}).all()
    return {(at, ward_code): census for at, ward_code, census in rows}


def _ratio_row(ward_row: Mapping, shift: Mapping, day: dt.date, starts_at: dt.datetime, ends_at: dt.datetime,
               census: int, nurses: int, census_now: bool) -> dict:
    per_nurse = round(census / nurses, 1) if nurses else None
    understaffed = census > 0 and (nurses == 0 or census > shift["patients_per_nurse"] * nurses)
    return {"ward_code": ward_row["code"], "ward_name": ward_row["name"], "date": day, "shift_code": shift["code"],
            "shift_name": shift["name"], "starts_at": starts_at, "ends_at": ends_at, "census": census,
            "census_now": census_now, "nurses": nurses, "patients_per_nurse": per_nurse,
            "threshold": shift["patients_per_nurse"], "understaffed": understaffed}


def may_work(staff: StaffDirectory, account_id: uuid.UUID, role_on_shift: str, ward_code: str) -> bool:
    """Whether a person may work this role on this ward as the staff now stand: working here (not disabled), holding
    the membership the role needs, not limited to another ward. `add` refuses an entry that fails it, saying which;
    an entry made before she left or moved ward is asked again of the shifts ahead."""
    member = staff.get(account_id)
    needed = MEMBERSHIP_FOR[role_on_shift]
    return member is not None and needed in member.roles and member.roles[needed] in (None, ward_code)


def staffing(conn: Connection, *, staff: StaffDirectory, first: dt.date, last: dt.date, tz: zoneinfo.ZoneInfo,
             now: dt.datetime | None = None) -> list[dict]:
    """For each inpatient ward, date and shift from `first` to `last`: nurses rostered, the census at the shift's
    start (now, for a shift not begun), patients per nurse and whether it is understaffed. A shift not yet begun
    counts only those of the `staff` who may work it (`may_work`): a leaver's account disabled, the shifts she was
    rostered on ahead are short of her (the grid names her 'no longer on the staff'), and so are a nurse's on the
    ward she was moved from; a shift begun keeps whoever was rostered on it."""
    now = now or conn.execute(sa.select(sa.func.now())).scalar_one()
    inpatient_wards = [w for w in wards(conn) if w["kind"] in INPATIENT_WARD_KINDS]
    pattern = shifts(conn)
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    slots = [(day, shift, *shift_bounds(day, shift, tz)) for day in days for shift in pattern]
    census = census_at(conn, [min(starts_at, now) for *_, starts_at, _ in slots])
    nurses: dict[tuple, int] = {}
    for row in conn.execute(
            sa.select(roster_entry.c.ward_code, roster_entry.c.shift_date, roster_entry.c.shift_code,
                      roster_entry.c.account_id, roster_entry.c.role_on_shift, roster_entry.c.starts_at)
            .where(roster_entry.c.shift_date.between(first, last), roster_entry.c.role_on_shift.in_(COUNTED_AS_NURSES),
                   sa.not_(sa.exists().where(roster_withdrawal.c.entry_id == roster_entry.c.id)))):
        if row.starts_at <= now or may_work(staff, row.account_id, row.role_on_shift, row.ward_code):
            key = (row.ward_code, row.shift_date, row.shift_code)
            nurses[key] = nurses.get(key, 0) + 1
    return [_ratio_row(w, shift, day, starts_at, ends_at, census.get((min(starts_at, now), w["code"]), 0),
                       nurses.get((w["code"], day, shift["code"]), 0), starts_at > now)
            for w in inpatient_wards for day, shift, starts_at, ends_at in slots]


def staffing_now(conn: Connection, *, staff: StaffDirectory, tz: zoneinfo.ZoneInfo,
                 now: dt.datetime | None = None) -> list[dict]:
    """Each inpatient ward's shift in progress: its nurses against the census now (the command center's
    'patients per nurse now')."""
    now = now or conn.execute(sa.select(sa.func.now())).scalar_one()
    today = now.astimezone(tz).date()
    running = [row for row in staffing(conn, staff=staff, first=today - dt.timedelta(days=1), last=today, tz=tz,
                                       now=now)
               if row["starts_at"] <= now < row["ends_at"]]
    census = census_at(conn, [now])
    return [_ratio_row({"code": row["ward_code"], "name": row["ward_name"]},
                       {"code": row["shift_code"], "name": row["shift_name"], "patients_per_nurse": row["threshold"]},
                       row["date"], row["starts_at"], row["ends_at"], census.get((now, row["ward_code"]), 0),
                       row["nurses"], True) for row in running]


def week_summary(conn: Connection, *, staff: StaffDirectory, tz: zoneinfo.ZoneInfo,
                 now: dt.datetime | None = None) -> dict:
    """This week's (Monday to Sunday, facility time) shifts begun so far and how many were understaffed, with the
    wards' patients per nurse now: the command center's staffing figures."""
    now = now or conn.execute(sa.select(sa.func.now())).scalar_one()
    today = now.astimezone(tz).date()
    monday = today - dt.timedelta(days=today.weekday())
    begun = [row for row in staffing(conn, staff=staff, first=monday, last=today, tz=tz, now=now)
             if row["starts_at"] <= now]
    return {"week_of": monday, "shifts": len(begun), "understaffed": sum(row["understaffed"] for row in begun),
            "understaffed_shifts": [row for row in begun if row["understaffed"]],
            "now": staffing_now(conn, staff=staff, tz=tz, now=now)}
