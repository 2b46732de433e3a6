"""HTTP routes of the duty roster (appliance/layers/operations/roster.py): /api/t/{tenant}/roster (read by every
facility role, `operations.ward.read`; added to and withdrawn from with `operations.roster.write`, ACC-034),
/api/t/{tenant}/roster/mine (the asker's own shifts, for a phone; read as the roster is, not audited: no patient
data, and the roster's reads are not) and /api/t/{tenant}/staffing (nurses against census). Withdrawing appends a
withdrawal: the entry stays. Refusals are the operations API's: 422 with the field, 409 for a clash of shifts, 403
for a ward outside a nurse's own, 404 for an entry that is not here."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import sqlalchemy as sa
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from appliance.layers.operations import roster
from appliance.layers.operations.roster_schemas import (
    RosterEntryIn,
    RosterEntryOut,
    StaffingOut,
    WithdrawalIn,
    WithdrawalOut,
)
from appliance.layers.operations.routes import OperationsController
from appliance.substrate import identity
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_timezone

Asking = Request[Principal, Any, Any]


def staff_of(db: Database, tenant: str) -> roster.StaffDirectory:
    """The facility's staff as the control schema holds them (read in its own transaction: a tenant transaction
    sees only its schema)."""
    with db.control() as conn:
        return roster.staff_directory(identity.staff_of(conn, tenant))


def _opt(permission: str) -> dict:
    return {"permission": permission}


class RosterController(Controller):
    path = "/api/t/{tenant:str}"
    tags = ["roster"]
    exception_handlers = OperationsController.exception_handlers

    @get("/roster", operation_id="OperationsListRoster", opt=_opt(roster.READ_PERMISSION), sync_to_thread=True)
    def list_roster(self, tenant: FromPath[str], state: State, ward: FromQuery[str | None] = None,
                    from_: Annotated[dt.date | None, QueryParameter(name="from")] = None,
                    to: FromQuery[dt.date | None] = None,
                    withdrawn: FromQuery[bool] = False) -> list[RosterEntryOut]:
        """The roster of a ward (`ward`, else every ward) from `from` to `to` (dates; this week, Monday to Sunday,
        when not given; at most 62 days); `withdrawn=true` lists those taken off too, with why."""
        tz = facility_timezone(state.db, tenant)
        staff = staff_of(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            today = conn.execute(sa.select(sa.func.now())).scalar_one().astimezone(tz).date()
            first, last = roster.date_range(from_, to, today)
            rows = roster.listing(conn, staff=staff, first=first, last=last, ward_code=ward, withdrawn=withdrawn)
        return [RosterEntryOut.model_validate(row) for row in rows]

    @get("/roster/mine", operation_id="OperationsMyShifts", opt=_opt(roster.READ_PERMISSION), sync_to_thread=True)
    def my_shifts(self, tenant: FromPath[str], state: State, request: Asking,
                  from_: Annotated[dt.date | None, QueryParameter(name="from")] = None,
                  days: FromQuery[int] = 14) -> list[RosterEntryOut]:
        """Your own shifts here, for a phone: from `from` (a date, facility time; yesterday when not given, so a
        night shift still running shows) for `days` days (1 to 62, 14 when not given), soonest first, none taken
        off. Nobody else's entries. Refused (422): `days` out of bounds, `from` more than a year from today."""
        tz = facility_timezone(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            today = conn.execute(sa.select(sa.func.now())).scalar_one().astimezone(tz).date()
            rows = roster.my_shifts(conn, request.user, today=today, days=days, first=from_)
        return [RosterEntryOut.model_validate(row) for row in rows]

    @post("/roster", operation_id="OperationsAddRosterEntry", opt=_opt(roster.WRITE_PERMISSION),
          sync_to_thread=True)
    def add(self, tenant: FromPath[str], state: State, request: Asking, data: JSONBody[RosterEntryIn],
            ) -> RosterEntryOut:
        """Put a member of staff on a shift (201). Refused: not a member or not of a ward-working role (422), on
        another ward that shift, overlapping another shift, or with less rest than the facility's minimum (409), a
        date beyond the correction window (422), another ward than a ward-scoped nurse's own (403)."""
        tz = facility_timezone(state.db, tenant)
        staff = staff_of(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return RosterEntryOut.model_validate(roster.add(conn, request.user, data, staff=staff, tz=tz))

    @post("/roster/{entry_id:uuid}/withdrawal", operation_id="OperationsWithdrawRosterEntry",
          opt=_opt(roster.WRITE_PERMISSION), sync_to_thread=True)
    def withdraw(self, tenant: FromPath[str], state: State, request: Asking, entry_id: FromPath[uuid.UUID],
                 data: JSONBody[WithdrawalIn]) -> WithdrawalOut:
        """Take an entry off the roster with a reason (201): a withdrawal appended, the entry kept for the trail."""
        tz = facility_timezone(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return WithdrawalOut.model_validate(roster.withdraw(conn, request.user, entry_id, data.reason, tz=tz))

    @get("/staffing", operation_id="OperationsStaffing", opt=_opt(roster.READ_PERMISSION), sync_to_thread=True)
    def staffing(self, tenant: FromPath[str], state: State, date: FromQuery[dt.date | None] = None,
                 ) -> list[StaffingOut]:
        """Each inpatient ward's shifts of `date` (today when not given, facility time): nurses rostered, the
        census at the shift's start (now, for one not begun), patients per nurse against the shift's threshold."""
        tz = facility_timezone(state.db, tenant)
        staff = staff_of(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            day = date or conn.execute(sa.select(sa.func.now())).scalar_one().astimezone(tz).date()
            return [StaffingOut.model_validate(row)
                    for row in roster.staffing(conn, staff=staff, first=day, last=day, tz=tz)]
