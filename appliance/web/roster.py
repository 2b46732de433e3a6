"""Duty roster pages of the tenant portal (appliance/layers/operations/roster.py): a ward's week as a grid of shifts
by days with the names on each, where the nurse in charge and the bed manager add and take people off
(`operations.roster.write`, ACC-034); "My shifts", each member of staff's own fortnight; and the staffing view, each
inpatient ward's nurses against its census by shift, understaffed shifts flagged (the bed manager's and the command
center's). Every facility role reads them (`operations.ward.read`).

The portal's rules hold: server-rendered, no script, forms carry the CSRF token and Post/Redirect/Get, a refusal is
the grid again with the sentence beside the form (422, 409, 403). The grid prints on one page (static/roster.css).
"""

from __future__ import annotations

import datetime as dt

from litestar import Response, Router, get, post
from litestar.response import Template
from pydantic import ValidationError

from appliance.layers.operations import roster
from appliance.layers.operations.errors import Invalid, NotFound
from appliance.layers.operations.roster_routes import staff_of
from appliance.layers.operations.roster_schemas import RosterEntryIn
from appliance.substrate.record import RecordError
from appliance.substrate.tenancy import facility_timezone
from appliance.web import portal
from appliance.web.portal import Asking, FormData, Id, Query, Tenant, field_errors, form_values, page, see_other

portal.NAV.extend([
    portal.NavItem("Operations", "roster", "Duty roster", "/roster", roster.READ_PERMISSION, lands=False),
    portal.NavItem("Operations", "staffing", "Staffing", "/staffing", roster.READ_PERMISSION, lands=False),
    portal.NavItem("Operations", "my-shifts", "My shifts", "/roster/mine", roster.READ_PERMISSION, lands=False),
])
portal.NOTICES.update({
    "roster-added": "Added to the roster.",
    "roster-withdrawn": "Taken off the shift; the roster keeps who was taken off, when and why.",
})
OPTS = {"care_relationship": False}


def _opts(permission: str) -> dict:
    return {"permission": permission, **OPTS}


def _sentence(detail: str) -> str:
    detail = detail[0].upper() + detail[1:]
    return detail if detail.endswith(".") else detail + "."


def _date(value: str, field: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise Invalid("give the date as YYYY-MM-DD", field=field) from None


def _week_page(request: Asking, tenant: str, ward_code: str, week: str, *, status: int = 200,
               values: dict | None = None, errors: dict | None = None) -> Template:
    db = request.app.state.db
    tz = facility_timezone(db, tenant)
    clock = portal.Clock(tz)
    asked = _date(week, "week") or clock.today
    monday = asked - dt.timedelta(days=asked.weekday())
    days = [monday + dt.timedelta(days=n) for n in range(7)]
    staff = staff_of(db, tenant)
    with db.tenant(tenant) as conn:
        wards = roster.wards(conn)
        ward_code = ward_code or (wards[0]["code"] if wards else "")
        chosen = next((w for w in wards if w["code"] == ward_code), None)
        if chosen is None:
            raise NotFound(f"no ward {ward_code} here", field="ward")
        pattern = roster.shifts(conn)
        entries = roster.listing(conn, staff=staff, first=days[0], last=days[-1], ward_code=ward_code)
        staffing = {(row["date"], row["shift_code"]): row
                    for row in roster.staffing(conn, staff=staff, first=days[0], last=days[-1], tz=tz)
                    if row["ward_code"] == ward_code}
    grid = {(e["shift_date"], e["shift_code"]): [] for e in entries}
    for entry in entries:
        grid[(entry["shift_date"], entry["shift_code"])].append(entry)
    writer = request.user.can(roster.WRITE_PERMISSION) and not (
        request.user.ward_scoped and request.user.ward and request.user.ward != ward_code)
    people = sorted(((str(m.account_id), m.name) for m in staff.values()
                     if set(m.roles) & set(roster.MEMBERSHIP_FOR.values())
                     and all(ward in (None, ward_code) for role, ward in m.roles.items()
                             if role in roster.MEMBERSHIP_FOR.values())), key=lambda p: p[1].lower())
    names = {"account_id": "Who", "shift_date": "Date", "shift_code": "Shift", "role_on_shift": "Role on the shift",
             "ward_code": "Ward", **{f"withdraw-{e['id']}": f"Taking {e['name']} off" for e in entries}}
    return page(request, "operations/roster.html", status=status, active="roster", ward=chosen, wards=wards,
                error_names=names,
                days=days, shifts=pattern, grid=grid, staffing=staffing, writer=writer, people=people,
                roles=roster.ROLES_ON_SHIFT, values=values or {"shift_date": clock.today.isoformat()},
                errors=errors or {}, previous=(monday - dt.timedelta(days=7)).isoformat(),
                following=(monday + dt.timedelta(days=7)).isoformat(), monday=monday.isoformat())


@get("/roster", operation_id="PortalRoster", opt=_opts(roster.READ_PERMISSION), sync_to_thread=True,
     include_in_schema=False)
def week(request: Asking, tenant: Tenant, ward: Query = "", week: Query = "") -> Template:
    """A ward's week: its shifts by the days Monday to Sunday, the names on each with their role, the staffing of
    each shift; the add form and each name's withdrawal to those who keep this ward's roster."""
    return _week_page(request, tenant, ward.strip(), week.strip())


@post("/roster", operation_id="PortalAddToRoster", opt=_opts(roster.WRITE_PERMISSION), sync_to_thread=True,
      include_in_schema=False)
def add(request: Asking, tenant: Tenant, data: FormData) -> Response:
    """Put someone on a shift of the ward the form names; refused, the week again with the sentence."""
    values = form_values(data)
    ward_code = values.get("ward_code") or ""
    week_of = values.get("week") or ""
    try:
        asked = RosterEntryIn.model_validate({key: values.get(key) for key in
                                              ("ward_code", "shift_date", "shift_code", "account_id",
                                               "role_on_shift")})
        db = request.app.state.db
        staff = staff_of(db, tenant)
        with db.tenant(tenant) as conn:
            roster.add(conn, request.user, asked, staff=staff, tz=facility_timezone(db, tenant))
    except ValidationError as exc:
        return _week_page(request, tenant, ward_code, week_of, status=422, values=values, errors=field_errors(exc))
    except RecordError as exc:
        if exc.status not in (403, 409, 422):
            raise
        return _week_page(request, tenant, ward_code, week_of, status=exc.status, values=values,
                          errors={exc.extra.get("field") or "form": _sentence(exc.detail)})
    return see_other(request, f"/t/{tenant}/roster?ward={ward_code}&week={asked.shift_date}&done=roster-added")


@post("/roster/{entry_id:uuid}/withdraw", operation_id="PortalWithdrawFromRoster",
      opt=_opts(roster.WRITE_PERMISSION), sync_to_thread=True, include_in_schema=False)
def withdraw(request: Asking, tenant: Tenant, entry_id: Id, data: FormData) -> Response:
    """Take one name off a shift, with why (the entry is kept, a withdrawal appended)."""
    values = form_values(data)
    ward_code = values.get("ward_code") or ""
    week_of = values.get("week") or ""
    db = request.app.state.db
    try:
        with db.tenant(tenant) as conn:
            roster.withdraw(conn, request.user, entry_id, values.get("reason") or "",
                            tz=facility_timezone(db, tenant))
    except RecordError as exc:
        if exc.status not in (403, 409, 422):
            raise
        return _week_page(request, tenant, ward_code, week_of, status=exc.status, values=values,
                          errors={f"withdraw-{entry_id}": _sentence(exc.detail)})
    return see_other(request, f"/t/{tenant}/roster?ward={ward_code}&week={week_of}&done=roster-withdrawn")


@get("/roster/mine", operation_id="PortalMyShifts", opt=_opts(roster.READ_PERMISSION), sync_to_thread=True,
     include_in_schema=False)
def mine(request: Asking, tenant: Tenant) -> Template:
    """The asker's own shifts: from a night shift still running to a fortnight ahead, with the ward and role."""
    clock = portal.facility_clock(request, tenant)
    with request.app.state.db.tenant(tenant) as conn:
        shifts = roster.my_shifts(conn, request.user, today=clock.today)
    return page(request, "operations/my_shifts.html", active="my-shifts", shifts=shifts, roles=roster.ROLES_ON_SHIFT)


@get("/staffing", operation_id="PortalStaffing", opt=_opts(roster.READ_PERMISSION), sync_to_thread=True,
     include_in_schema=False)
def staffing(request: Asking, tenant: Tenant, date: Query = "") -> Template:
    """Each inpatient ward's shifts of a day: nurses against the census, patients per nurse against the shift's
    threshold, understaffed ones flagged; and this week's understaffed shifts so far."""
    db = request.app.state.db
    tz = facility_timezone(db, tenant)
    clock = portal.Clock(tz)
    day = _date(date.strip(), "date") or clock.today
    staff = staff_of(db, tenant)
    with db.tenant(tenant) as conn:
        rows = roster.staffing(conn, staff=staff, first=day, last=day, tz=tz)
        week_summary = roster.week_summary(conn, staff=staff, tz=tz)
    return page(request, "operations/staffing.html", active="staffing", rows=rows, day=day, week=week_summary,
                previous=(day - dt.timedelta(days=1)).isoformat(), following=(day + dt.timedelta(days=1)).isoformat())


ROUTES = [week, add, withdraw, mine, staffing]

roster_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES, exception_handlers=portal.EXCEPTION_HANDLERS,
                       tags=["portal"], include_in_schema=False)
