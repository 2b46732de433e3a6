"""The fluid balance chart of a ward patient: what went in and what came out, day by day, and whether the urine
output is too low.

Each line is a `fluid` entry (intake or output, a route, a volume in ml, when), appended through
`record.append`, corrected and entered in error as any entry is. The chart adds them up by the ward's fluid
day, which starts at the hour the tenant file sets (`[nursing] fluid_day_starts`, 07:00 by default) in the
facility's zone: totals in and out, the balance, the balance running through the day and across the days
shown, and the urine passed in each hour.

Oliguria is KDIGO's urine output criterion of acute kidney injury: less than 0.5 ml/kg/h over 6 hours (KDIGO
Clinical Practice Guideline for Acute Kidney Injury, Kidney Int Suppl 2012;2(1), stage 1: "<0.5 ml/kg/h for
6-12 hours"; https://kdigo.org/guidelines/acute-kidney-injury/). It is judged as the mean over the 6 hours
ending at the latest urine measurement (not hour by hour: the guideline leaves the two readings open, and a
ward's chart measures every few hours, not every hour), against the patient's latest recorded weight, and
only when the chart holds a urine measurement at or before the window's start, so that the window's volumes
are all the urine of those 6 hours. Without a weight the rate is not guessed: the chart says it cannot be
judged. A patient found oliguric on a ward gets the nurses' escalation task ("inform the doctor"), the same
task a rising early warning score raises (`reactions.fluid_escalation`).
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from appliance.layers.nursing import service, views
from appliance.layers.nursing.errors import Invalid
from appliance.layers.nursing.models import INTAKE_ROUTES, OUTPUT_ROUTES, fluid, nursing_setting
from appliance.substrate import record, retraction
from appliance.substrate.body_weight import weight_text
from appliance.substrate.principal import Principal
from appliance.substrate.record import entry, note_access
from appliance.substrate.tenancy import register_config_applier
from appliance.substrate.tenant_config import NursingConfig, TenantConfig

DEFAULT_DAY_STARTS = NursingConfig().fluid_day_starts
MAX_VOLUME_ML = 5000  # a litre bag five times over: more than one line of the chart holds
BACKDATED_AT_MOST = dt.timedelta(days=7)
FUTURE_TOLERANCE = dt.timedelta(minutes=5)  # ward devices' clocks drift
OLIGURIA_ML_PER_KG_HOUR = Decimal("0.5")
OLIGURIA_HOURS = 6
ON_A_CHART_FOR = dt.timedelta(hours=24)  # a patient with a line this recent is "on a fluid chart"
DAYS_SHOWN = 3

ROUTES = {"intake": INTAKE_ROUTES, "output": OUTPUT_ROUTES}
ROUTE_LABELS = {"oral": "Oral", "iv": "IV", "enteral": "NG / enteral", "blood": "Blood product", "urine": "Urine",
                "vomit": "Vomit", "ng_aspirate": "NG aspirate", "drain": "Drain", "stool": "Stool", "other": "Other"}


@register_config_applier
def sync_nursing_setting(conn: Connection, config: TenantConfig) -> None:
    """The file's `[nursing]` section, or its defaults: one row, replaced whole (the meals' hours are the kitchen's,
    diet.py)."""
    nursing = config.nursing or NursingConfig()
    values = {"fluid_day_starts": nursing.fluid_day_starts, "breakfast_at": nursing.breakfast,
              "lunch_at": nursing.lunch, "supper_at": nursing.supper}
    conn.execute(postgresql.insert(nursing_setting).values(id=1, **values)
                 .on_conflict_do_update(index_elements=[nursing_setting.c.id], set_=values))


def day_starts(conn: Connection) -> dt.time:
    """The hour the facility's fluid day starts (07:00 where the tenant file was last applied before it said)."""
    return conn.execute(sa.select(nursing_setting.c.fluid_day_starts)).scalar() or DEFAULT_DAY_STARTS


def fluid_day(moment: dt.datetime, tz: zoneinfo.ZoneInfo, starts: dt.time) -> dt.date:
    """The fluid day `moment` belongs to: the local date whose `starts` it is at or after; 03:00 on the 27th
    is the 26th's chart when the day starts at 07:00."""
    local = moment.astimezone(tz)
    return local.date() if local.time() >= starts else local.date() - dt.timedelta(days=1)


def day_bounds(day: dt.date, tz: zoneinfo.ZoneInfo, starts: dt.time) -> tuple[dt.datetime, dt.datetime]:
    """When the fluid day `day` starts and ends, in UTC."""
    start = dt.datetime.combine(day, starts, tzinfo=tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), starts, tzinfo=tz)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


# -- oliguria ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UrineRate:
    """The urine output over the 6 hours ending `at`: `judged` when it can be said whether it is oliguria
    (`oliguric`), with the rate in ml/kg/h; else `sentence` says why not."""

    at: dt.datetime | None
    judged: bool
    oliguric: bool
    urine_ml: int | None
    weight_kg: Decimal | None
    rate_ml_kg_h: Decimal | None
    sentence: str


def urine_rate(urine: Sequence[tuple[dt.datetime, int]], at: dt.datetime | None,
               weight_kg: Decimal | None) -> UrineRate:
    """KDIGO's urine output criterion over the 6 hours ending `at` (the latest urine measurement), from the
    urine measured (`(when, ml)` each, the volume passed since the measurement before) and the weight. The
    window is (at - 6 h, at]; it is judged only if a measurement at or before its start shows the chart
    covered it. Oliguric: urine_ml < 0.5 × weight × 6."""
    if at is None:
        return UrineRate(None, False, False, None, weight_kg, None, "no urine output charted")
    window_start = at - dt.timedelta(hours=OLIGURIA_HOURS)
    covered = any(when <= window_start for when, _ in urine)
    passed = sum(ml for when, ml in urine if window_start < when <= at)
    if not covered:
        return UrineRate(at, False, False, passed, weight_kg, None,
                         f"less than {OLIGURIA_HOURS} hours of urine output charted: whether it is too low cannot be "
                         f"judged yet")
    if weight_kg is None or weight_kg <= 0:
        return UrineRate(at, False, False, passed, None, None,
                         f"{passed} ml of urine in {OLIGURIA_HOURS} hours; no weight is recorded, so the rate in "
                         f"ml/kg/h cannot be judged: record the patient's weight")
    rate = (Decimal(passed) / weight_kg / OLIGURIA_HOURS).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    oliguric = Decimal(passed) < OLIGURIA_ML_PER_KG_HOUR * weight_kg * OLIGURIA_HOURS
    words = (f"{passed} ml of urine in {OLIGURIA_HOURS} hours at {weight_text(weight_kg)} kg: {rate} ml/kg/h, "
             + (f"below {OLIGURIA_ML_PER_KG_HOUR} ml/kg/h — oliguria: inform the doctor" if oliguric
                else f"not below {OLIGURIA_ML_PER_KG_HOUR} ml/kg/h"))
    return UrineRate(at, True, oliguric, passed, weight_kg, rate, words)


# -- reading the chart -------------------------------------------------------------------------------

_vital_weight = sa.table("vital_signs", sa.column("entry_id"), sa.column("weight_kg"))


def latest_weights(conn: Connection, patient_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Decimal]:
    """Each patient's latest recorded weight (the current version of their latest set of vital signs with
    one); not audited: callers are."""
    if not patient_ids:
        return {}
    query = (views.current_of_kind(_vital_weight, "vital_signs", entry.c.patient_id.in_(patient_ids),
                                   _vital_weight.c.weight_kg.is_not(None))
             .order_by(entry.c.patient_id, entry.c.occurred_at.desc())
             .ext(postgresql.distinct_on(entry.c.patient_id)))
    return {row.patient_id: row.weight_kg for row in conn.execute(query)}


def lines_of(conn: Connection, patient_ids: Sequence[uuid.UUID], since: dt.datetime,
             until: dt.datetime | None = None) -> list[dict]:
    """The chart's lines in force of these patients from `since` (to `until`), oldest first; not audited."""
    if not patient_ids:
        return []
    query = views.current_of_kind(fluid, "fluid", entry.c.patient_id.in_(patient_ids), entry.c.occurred_at >= since)
    if until is not None:
        query = query.where(entry.c.occurred_at < until)
    return [dict(r) for r in conn.execute(query.order_by(entry.c.occurred_at, entry.c.recorded_at)).mappings()]


def _urine(lines: Sequence[dict]) -> list[tuple[dt.datetime, int]]:
    return [(line["occurred_at"], line["volume_ml"]) for line in lines
            if line["direction"] == "output" and line["route"] == "urine"]


def rate_now(lines: Sequence[dict], weight_kg: Decimal | None) -> UrineRate:
    """The urine output rate at the latest urine measurement of these lines."""
    urine = _urine(lines)
    return urine_rate(urine, max((when for when, _ in urine), default=None), weight_kg)


def _day_view(day: dt.date, lines: list[dict], bounds: tuple[dt.datetime, dt.datetime], carried: int,
              tz: zoneinfo.ZoneInfo) -> dict:
    running = 0
    entries = []
    for line in lines:
        running += line["volume_ml"] if line["direction"] == "intake" else -line["volume_ml"]
        entries.append({**line, "running_ml": running})
    intake = sum(line["volume_ml"] for line in lines if line["direction"] == "intake")
    output = sum(line["volume_ml"] for line in lines if line["direction"] == "output")
    by_route: dict[str, dict[str, int]] = {"intake": defaultdict(int), "output": defaultdict(int)}
    for line in lines:
        by_route[line["direction"]][line["route"]] += line["volume_ml"]
    hourly: dict[dt.datetime, int] = defaultdict(int)
    for when, ml in _urine(lines):
        hourly[when.astimezone(tz).replace(minute=0, second=0, microsecond=0)] += ml
    return {"day": day, "starts_at": bounds[0], "ends_at": bounds[1], "intake_ml": intake, "output_ml": output,
            "balance_ml": intake - output, "cumulative_ml": carried + intake - output,
            "intake_by_route": dict(by_route["intake"]), "output_by_route": dict(by_route["output"]),
            "urine_by_hour": [{"hour": hour, "urine_ml": ml} for hour, ml in sorted(hourly.items())],
            "entries": entries}


def chart(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, now: dt.datetime,
          tz: zoneinfo.ZoneInfo, days: int = DAYS_SHOWN) -> dict:
    """The patient's fluid balance chart: today's fluid day and the `days - 1` before it, newest first, each
    with its totals, the balance carried across the days shown (`cumulative_ml`), its lines with the balance
    running through the day, and the urine of each hour; the urine output rate at the latest measurement.
    The read is audited."""
    service._require_patient(conn, patient_id)
    starts = day_starts(conn)
    today = fluid_day(now, tz, starts)
    first_day = today - dt.timedelta(days=days - 1)
    since = day_bounds(first_day, tz, starts)[0]
    # The 6 hours before the first day's start judge the urine output at its first measurements.
    lines = lines_of(conn, [patient_id], since - dt.timedelta(hours=OLIGURIA_HOURS))
    weight = latest_weights(conn, [patient_id]).get(patient_id)
    shown, carried = [], 0
    for offset in range(days):
        day = first_day + dt.timedelta(days=offset)
        bounds = day_bounds(day, tz, starts)
        view = _day_view(day, [line for line in lines if bounds[0] <= line["occurred_at"] < bounds[1]], bounds,
                         carried, tz)
        carried = view["cumulative_ml"]
        shown.append(view)
    shown.reverse()
    note_access(conn, principal, "read", patient_id, "fluid", [line["id"] for line in lines])
    return {"patient_id": patient_id, "day_starts": starts, "today": today, "weight_kg": weight,
            "urine": rate_now(lines, weight), "days": shown}


def ward_summary(conn: Connection, patient_ids: Sequence[uuid.UUID], *, now: dt.datetime,
                 tz: zoneinfo.ZoneInfo) -> dict[uuid.UUID, dict]:
    """For the ward's worklist: each of these patients on a fluid chart (a line in the last 24 hours), with
    today's totals and balance and the urine output rate (the oliguria flag). Not audited: the worklist notes
    each patient it lists."""
    if not patient_ids:
        return {}
    starts = day_starts(conn)
    today_starts = day_bounds(fluid_day(now, tz, starts), tz, starts)[0]
    since = min(today_starts, now - ON_A_CHART_FOR) - dt.timedelta(hours=OLIGURIA_HOURS)
    lines: dict[uuid.UUID, list[dict]] = defaultdict(list)
    for line in lines_of(conn, patient_ids, since):
        lines[line["patient_id"]].append(line)
    charted = [pid for pid, found in lines.items() if found[-1]["occurred_at"] >= now - ON_A_CHART_FOR]
    weights = latest_weights(conn, charted)
    summary = {}
    for pid in charted:
        today = [line for line in lines[pid] if line["occurred_at"] >= today_starts]
        intake = sum(line["volume_ml"] for line in today if line["direction"] == "intake")
        output = sum(line["volume_ml"] for line in today if line["direction"] == "output")
        summary[pid] = {"intake_ml": intake, "output_ml": output, "balance_ml": intake - output,
                        "urine": rate_now(lines[pid], weights.get(pid))}
    return summary


# -- writing a line ----------------------------------------------------------------------------------


def _checked(direction: str, route: str, volume_ml: int, occurred_at: dt.datetime | None,
             now: dt.datetime) -> dt.datetime:
    """Refuses (422, naming the field) a line the chart cannot hold; returns when it happened."""
    if direction not in ROUTES:
        raise Invalid("say whether the fluid went in (intake) or came out (output)", field="direction")
    if route not in ROUTES[direction]:
        other = "output" if direction == "intake" else "intake"
        if route in ROUTES[other]:
            raise Invalid(f"{ROUTE_LABELS[route].lower()} is an {other} route, not an {direction} one",
                          field="route")
        raise Invalid(f"choose the route: {', '.join(ROUTE_LABELS[r] for r in ROUTES[direction])}", field="route")
    if volume_ml <= 0:
        raise Invalid("the volume is a number of millilitres above 0", field="volume_ml")
    if volume_ml > MAX_VOLUME_ML:
        raise Invalid(f"{volume_ml} ml is more than one line of the chart holds ({MAX_VOLUME_ML} ml): check the "
                      f"volume, or chart it as the separate amounts it came in", field="volume_ml")
    at = (occurred_at or now).astimezone(dt.UTC)
    if at > now + FUTURE_TOLERANCE:
        raise Invalid("that time is still to come: chart fluid when it has gone in or come out",
                      field="occurred_at")
    if at < now - BACKDATED_AT_MOST:
        raise Invalid("that time is more than 7 days ago: the chart is kept as the days go", field="occurred_at")
    return at


def _open_encounter(conn: Connection, patient_id: uuid.UUID) -> uuid.UUID | None:
    encounter = views.encounter
    return conn.execute(
        sa.select(encounter.c.id).where(encounter.c.patient_id == patient_id, encounter.c.status.in_(views.OPEN))
        .order_by(encounter.c.ward_code.is_(None), encounter.c.started_at.desc().nulls_last()).limit(1)).scalar()


def record_line(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, direction: str, route: str,
                volume_ml: int, occurred_at: dt.datetime | None, note: str | None, now: dt.datetime) -> dict:
    """One line of the chart, a `fluid` entry on the patient's open encounter (if any)."""
    service._require_patient(conn, patient_id)
    at = _checked(direction, route, volume_ml, occurred_at, now)
    appended = record.append(conn, principal, "fluid", patient_id=patient_id,
                             encounter_id=_open_encounter(conn, patient_id), occurred_at=at,
                             detail={"direction": direction, "route": route, "volume_ml": volume_ml,
                                     "note": note or None})
    return service._entry_row(appended)


def correct_line(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID, *,
                 direction: str, route: str, volume_ml: int, occurred_at: dt.datetime | None, note: str | None,
                 reason: str, now: dt.datetime) -> dict:
    """A line corrected: its next version, with why (the one it corrects stays in the history)."""
    service.require_version(conn, patient_id, entry_id, "fluid")
    if not (reason or "").strip():
        raise Invalid("say why the line is corrected", field="reason")
    at = _checked(direction, route, volume_ml, occurred_at, now)
    appended = record.append(conn, principal, "fluid", patient_id=patient_id, supersedes=entry_id, occurred_at=at,
                             reason=reason.strip(),
                             detail={"direction": direction, "route": route, "volume_ml": volume_ml,
                                     "note": note or None})
    return service._entry_row(appended)


# A line charted on the wrong patient is withdrawn by the nurse who charted it, within a shift, or by a clinician
# at any time (ACC-035, the substrate's one rule): another's line, or an older one, has been added into a balance
# the ward handed over and the doctor read.
retraction.register_own("fluid", "nursing.fluid.retract_own", "fluid balance line")


def retract_line(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                 reason: str) -> dict:
    """A line charted in error: it leaves the totals and stays in the history. Only its author within the hours,
    or a clinician (`retraction.require`: 403 saying who can)."""
    service.require_version(conn, patient_id, entry_id, "fluid")
    retraction.require(conn, principal, entry_id)
    retracted = record.retract(conn, principal, entry_id, reason)
    return {"id": retracted.id, "root_id": retracted.root_id, "status": retracted.status,
            "reason": retracted.reason, "occurred_at": retracted.occurred_at}


def urine_rate_at(conn: Connection, patient_id: uuid.UUID, at: dt.datetime) -> UrineRate:
    """The urine output rate judged at `at` from the lines in force then; not audited (a reaction's read)."""
    window = at - dt.timedelta(hours=OLIGURIA_HOURS)
    lines = lines_of(conn, [patient_id], window - dt.timedelta(days=1), at + dt.timedelta(microseconds=1))
    urine = _urine(lines)
    return urine_rate(urine, at, latest_weights(conn, [patient_id]).get(patient_id))
