"""The Operations Command Center: the facility's KPIs now, against its targets, with a 14-day trend and
the entries behind each number — assembled from the KPI definitions (policies/kpis.toml), the targets
(tenant file → `kpi_target`) and the computations layers registered (appliance/substrate/kpis.py).

Nothing is cached: every call computes from the live tables, so an admission shows in occupancy on
the next request. The JSON API and the pages call the same functions, so they show the same figures.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.operations.errors import Invalid, NotFound
from appliance.layers.operations.models import kpi_target
from appliance.substrate import kpis
from appliance.substrate.kpis import KpiDefinition, Window
from appliance.substrate.principal import Principal
from appliance.substrate.record import note_list_read

TREND_DAYS = 14
DRILL_LIMIT = 200
# A "target" KPI (better = target, e.g. occupancy) is met within this fraction of its target.
TARGET_BAND = 0.10


def window_now(definition: KpiDefinition, now: dt.datetime, tz: zoneinfo.ZoneInfo) -> Window:
    return Window(now - dt.timedelta(days=definition.window_days), now, tz)


def daily_windows(now: dt.datetime, tz: zoneinfo.ZoneInfo, days: int = TREND_DAYS) -> list[Window]:
    """The last `days` facility-local calendar days, today's up to now."""
    today = now.astimezone(tz).date()
    windows = []
    for back in range(days - 1, -1, -1):
        day = today - dt.timedelta(days=back)
        start = dt.datetime.combine(day, dt.time(0), tzinfo=tz)
        end = min(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=tz), now)
        if end > start:
            windows.append(Window(start, end, tz))
    return windows


def day_window(day: dt.date, now: dt.datetime, tz: zoneinfo.ZoneInfo) -> Window:
    start = dt.datetime.combine(day, dt.time(0), tzinfo=tz)
    end = min(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=tz), now)
    if end <= start:
        raise Invalid("that day has not begun yet", field="day")
    return Window(start, end, tz)


def targets(conn: Connection) -> dict[str, float]:
    return {row.kpi_id: float(row.target) for row in conn.execute(sa.select(kpi_target))}


def _status(definition: KpiDefinition, value: float | None, target: float | None) -> str | None:
    if value is None or target is None:
        return None
    if definition.better == "higher":
        return "met" if value >= target else "missed"
    if definition.better == "lower":
        return "met" if value <= target else "missed"
    return "met" if abs(value - target) <= abs(target) * TARGET_BAND else "missed"


def figures(conn: Connection, definitions: Sequence[KpiDefinition], *, tz: zoneinfo.ZoneInfo,
            now: dt.datetime | None = None, trend: bool = True) -> list[dict]:
    """Every KPI of `definitions`: value now, numerator/denominator, target and whether it is met, and
    (with `trend`) the 14 daily values. Aggregates only: no patient is named, nothing to audit."""
    now = now or conn.execute(sa.select(sa.func.now())).scalar_one()
    goals = targets(conn)
    days = daily_windows(now, tz) if trend else []
    out = []
    for definition in definitions:
        computation = kpis.computation_of(definition.id)
        item = {"id": definition.id, "number": definition.number, "name": definition.name,
                "unit": definition.unit, "better": definition.better, "formula": definition.formula,
                "standard": definition.standard, "window_days": definition.window_days,
                "companion": definition.companion, "second_reading": definition.second_reading,
                "measure": definition.measure,
                "target": goals.get(definition.id),
                "available": computation is not None, "unavailable": None, "layer": None,
                "value": None, "numerator": None, "denominator": None, "secondary": None, "status": None,
                "trend": []}
        if computation is None:
            item["unavailable"] = definition.unavailable or "not computed by any layer of this appliance"
            out.append(item)
            continue
        windows = [window_now(definition, now, tz), *days]
        computed = computation.compute(conn, windows)
        first = computed[0]
        item.update(layer=computation.layer, value=first.value, numerator=first.numerator,
                    denominator=first.denominator, secondary=first.secondary,
                    status=_status(definition, first.value, item["target"]),
                    trend=[{"day": w.start.astimezone(tz).date(), "value": f.value}
                           for w, f in zip(windows[1:], computed[1:], strict=True)])
        out.append(item)
    return out


def definition_of(definitions: Sequence[KpiDefinition], kpi_id: str) -> KpiDefinition:
    for definition in definitions:
        if definition.id == kpi_id:
            return definition
    raise NotFound(f"no KPI {kpi_id!r} in the command center", kpi_id=kpi_id)


def drilldown(conn: Connection, principal: Principal, definition: KpiDefinition, *, tz: zoneinfo.ZoneInfo,
              day: dt.date | None = None, now: dt.datetime | None = None, limit: int = DRILL_LIMIT) -> dict:
    """The entries behind the figure now (or behind one day's trend point): patient data, so every
    patient whose entries are listed has the read on their access log."""
    computation = kpis.computation_of(definition.id)
    if computation is None:
        raise NotFound(f"{definition.name}: {definition.unavailable or 'not computed by any layer'}",
                       kpi_id=definition.id)
    now = now or conn.execute(sa.select(sa.func.now())).scalar_one()
    window = day_window(day, now, tz) if day else window_now(definition, now, tz)
    rows = computation.entries(conn, window, max(1, min(limit, DRILL_LIMIT)))
    note_list_read(conn, principal, f"kpi.{definition.id}", rows, id_key="entry_id")
    mrns = {}
    patient_ids = list({row["patient_id"] for row in rows if row.get("patient_id") is not None})
    if patient_ids:
        patient = sa.table("patient", sa.column("id", sa.Uuid), sa.column("mrn", sa.Text))
        mrns = dict(conn.execute(sa.select(patient.c.id, patient.c.mrn).where(patient.c.id.in_(patient_ids))).all())
    return {"id": definition.id, "start": window.start, "end": window.end,
            "entries": [{**row, "measure": None if row.get("measure") is None else float(row["measure"]),
                         "mrn": mrns.get(row.get("patient_id"))} for row in rows]}
