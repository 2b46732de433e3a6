"""Bed-days: one charge per admission present at the facility's census time, per day.

Read from the operations layer's entries by SQL (layers never import each other): an admission
(`admission`, current version, not entered in error) that happened before the census and has no
discharge (`discharge` of the same encounter) before it is present; its ward at the census is the
last `transfer` before it, else the admission's; the ward's kind (inpatient, icu, maternity...) is the
fee item's code. `bed_day_accrual` keys each (admission, census day), so running the accrual twice,
or from two places at once (they take turns under an advisory lock), charges each bed-day once.

Run by the billing clerk's "accrue bed-days" action, the API, or a scheduler calling the same route;
each run accrues the censuses of the last `LOOKBACK_DAYS` days that have passed and are not accrued.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.financial import schedule
from appliance.layers.financial.charges import Billable, post_charge
from appliance.layers.financial.models import bed_day_accrual
from appliance.substrate import record
from appliance.substrate.principal import Principal

LOOKBACK_DAYS = 31
# Current versions only, never one entered in error (the same rule every layer's reads keep).
_PRESENT_AT_CENSUS = sa.text("""
    SELECT cur.id AS entry_id, cur.root_id, a.encounter_id, w.code AS ward_code, w.kind AS ward_kind,
           w.name AS ward_name
    FROM entry cur JOIN admission a ON a.entry_id = cur.id
    CROSS JOIN LATERAL (
        SELECT COALESCE((
            SELECT t.to_ward_code FROM entry te JOIN transfer t ON t.entry_id = te.id
            WHERE t.encounter_id = a.encounter_id AND te.occurred_at <= :census AND te.status <> 'entered_in_error'
              AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = te.id)
            ORDER BY te.occurred_at DESC LIMIT 1), a.ward_code) AS ward_code
    ) here
    JOIN ward w ON w.code = here.ward_code
    WHERE cur.kind = 'admission' AND cur.status <> 'entered_in_error'
      AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = cur.id)
      AND (SELECT r.occurred_at FROM entry r WHERE r.id = cur.root_id) <= :census
      AND NOT EXISTS (
          SELECT 1 FROM entry de JOIN discharge d ON d.entry_id = de.id
          WHERE d.encounter_id = a.encounter_id AND de.occurred_at <= :census AND de.status <> 'entered_in_error'
            AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = de.id))
      AND NOT EXISTS (SELECT 1 FROM bed_day_accrual b WHERE b.admission_root_id = cur.root_id
                                                         AND b.census_date = :census_date)
""")



def _has_adt(conn: Connection) -> bool:
    return conn.execute(sa.text("SELECT to_regclass('admission') IS NOT NULL AND to_regclass('discharge') IS NOT NULL "
                                "AND to_regclass('transfer') IS NOT NULL")).scalar_one()


def accrue_bed_days(conn: Connection, principal: Principal, until: dt.datetime | None = None, *,
                    lookback_days: int = LOOKBACK_DAYS) -> int:
    """Charge the bed-days of every census of the last `lookback_days` up to `until` (now) not yet
    charged; returns how many."""
    if not _has_adt(conn):
        return 0
    # One accrual at a time per facility: a second run waits, then finds every bed-day already charged
    # (and the key on bed_day_accrual refuses a double charge even without the lock).
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('healthos.financial.bed_days'))"))
    setting = schedule.setting(conn)
    zone = zoneinfo.ZoneInfo(setting.timezone)
    until = (until or dt.datetime.now(dt.UTC)).astimezone(zone)
    census_day = until.date() if until.time() >= setting.census_time else until.date() - dt.timedelta(days=1)
    charged = 0
    for back in range(lookback_days - 1, -1, -1):
        day = census_day - dt.timedelta(days=back)
        census = dt.datetime.combine(day, setting.census_time, zone)
        for stay in conn.execute(_PRESENT_AT_CENSUS, {"census": census, "census_date": day}).mappings().all():
            admission = record.get_entry(conn, stay["entry_id"])
            posted = post_charge(conn, principal, admission, Billable(
                item_kind="bed_day", item_code=stay["ward_kind"], description=f"Bed-day, {stay['ward_name']}",
                department=stay["ward_code"], service_at=census))
            conn.execute(bed_day_accrual.insert().values(admission_root_id=stay["root_id"], census_date=day,
                                                         charge_entry_id=posted.id))
            charged += 1
    return charged
