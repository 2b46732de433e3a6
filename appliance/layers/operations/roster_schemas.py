"""Request and response shapes of the duty roster (appliance/layers/operations/roster.py): explicit allow-lists, as
the operations layer's other schemas are. A roster entry names staff by account id and name, never anything more
of theirs."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, Field

from appliance.layers.operations.schemas import _In

RoleOnShift = Literal["in_charge", "nurse", "clinician", "student"]


class RosterEntryIn(_In):
    """One member of staff (`account_id`, a member of this facility) on one shift (`shift_code`, one of the tenant
    file's) of one ward on one date (the facility-local date the shift starts), in a role on that shift."""

    ward_code: str = Field(min_length=1, max_length=40)
    shift_date: dt.date
    shift_code: str = Field(min_length=1, max_length=16)
    account_id: uuid.UUID
    role_on_shift: RoleOnShift


class WithdrawalIn(_In):
    """Why the person is taken off the shift (sick, swapped, on leave)."""

    reason: str = Field(min_length=1, max_length=500)


class RosterEntryOut(BaseModel):
    id: uuid.UUID
    ward_code: str
    shift_date: dt.date
    shift_code: str
    shift_name: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    account_id: uuid.UUID
    name: str
    role_on_shift: RoleOnShift
    added_by: uuid.UUID
    added_at: dt.datetime
    withdrawn: bool
    withdrawal_reason: str | None = None
    withdrawn_at: dt.datetime | None = None


class WithdrawalOut(BaseModel):
    entry_id: uuid.UUID
    reason: str
    withdrawn_by: uuid.UUID
    withdrawn_at: dt.datetime


class StaffingOut(BaseModel):
    """One ward's shift: nurses rostered (in charge and nurses) against the census at the shift's start (`census_now`:
    the census now, the shift not having begun), patients per nurse (none without a nurse) and its threshold."""

    ward_code: str
    ward_name: str
    date: dt.date
    shift_code: str
    shift_name: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    census: int
    census_now: bool
    nurses: int
    patients_per_nurse: float | None
    threshold: int
    understaffed: bool
