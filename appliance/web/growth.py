"""A child's growth in the tenant portal: the line on the chart summary for a child under five (WAZ, HAZ,
BAZ with their WHO bands, MUAC, oedema and the acute malnutrition status) and the growth chart page, the
WHO median and ±2, ±3 SD lines drawn on the server with the child's measurements over them (`plots.py`).

It keeps the portal's rules (see `portal.py`): the page declares the permission the clinical API declares
for the same read (`clinical.chart.read`, as the vital signs it reads), passes the care-relationship
guard, and reads through the clinical layer (`clinical/growth.py`), which audits the read of the vital
signs. The chart line is added to the portal's vital signs card when this module is imported.
"""

from __future__ import annotations

import uuid

from litestar import Router, get
from litestar.response import Template
from sqlalchemy.engine import Connection

from appliance.layers.clinical import growth
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal
from appliance.web import plots, portal
from appliance.web.portal import (
    HELPERS,
    PATIENT,
    Asking,
    Clock,
    Id,
    Tenant,
    VitalsAddition,
    banner,
    facility_clock,
    page,
)

# What each chart draws: the index in the growth answer, the reference's measure, its title and unit.
CHARTS = [("weight_for_age", "weight", "Weight-for-age", "kg", "weight_kg"),
          ("height_for_age", "height", "Length/height-for-age", "cm", "height_cm"),
          ("bmi_for_age", "bmi", "BMI-for-age", "kg/m²", None)]
SD_LINES = (-3, -2, 0, 2, 3)
LONGEST_MONTHS = growth.OLDEST_YEARS * 12


def _chart_line(conn: Connection, principal: Principal, patient_id: uuid.UUID, clock: Clock) -> dict:
    """The chart summary's growth line: for a child under five, the latest measurements read against the WHO
    standards, or the reason they cannot be; nothing for anyone older. Ages on the facility's calendar."""
    if not growth.under_five(conn, patient_id, clock.today):
        return {}
    try:
        found = growth.growth(conn, principal, patient_id, today=clock.today, tz=clock.tz)
    except growth.NotApplicable as refusal:
        return {"reason": refusal.detail}
    return {"summary": found["summary"], "latest": found["latest"]}


portal.VITALS_ADDITIONS.append(VitalsAddition("clinical.chart.read", "portal/growth/_chart_line.html", _chart_line))


def _months_shown(points: list[dict]) -> int:
    """Birth to five years for a young child; to the next year past the oldest measurement after."""
    oldest = max((p["age_months"] for p in points), default=0)
    return growth.UNDER_FIVE_MONTHS if oldest < growth.UNDER_FIVE_MONTHS else min(LONGEST_MONTHS,
                                                                                   (oldest // 12 + 1) * 12)


def growth_charts(found: dict, clock: Clock) -> list[dict]:
    """One SVG per index: the WHO lines for the child's sex and the child's values over them."""
    months = _months_shown(found["points"])
    sex = found["sex"]
    charts = []
    for index, measure, title, unit, column in CHARTS:
        plotted = []
        for point in found["points"]:
            value = point[index]
            if value is None or value["z"] is None:
                continue
            shown = portal.vital_value(column, point[column]) if column else portal.number(value["value"])
            label = (f"{clock.day(point['occurred_at'])}, {point['age_months']} months: {shown} "
                     f"{unit}, z {value['z']:.1f} ({value['band']})")
            read_at = point["age_days"] if point["corrected_age_days"] is None else point["corrected_age_days"]
            plotted.append(plots.AgePoint(read_at / growth.DAYS_A_YEAR * 12, float(value["value"]),
                                          label=label, abnormal=abs(value["z"]) > 2))
        curves = [(z, growth.reference_curve(measure, sex, z, months)) for z in SD_LINES]
        description = (f"WHO {title.lower()} for {'girls' if sex == 'female' else 'boys'} from birth to "
                       f"{months // 12} years: median, ±2 and ±3 SD. "
                       + (f"{len(plotted)} measurements of this child; latest {plotted[-1].label}."
                          if plotted else "No measurement of this child to plot."))
        charts.append({"title": title, "svg": plots.growth_chart(
            curves, plotted, ident=f"growth-{measure}", title=f"{title}, WHO", description=description,
            unit=unit)})
    return charts


@get(PATIENT + "/growth", operation_id="PortalGrowthChart", opt={"permission": "clinical.chart.read"},
     sync_to_thread=True, include_in_schema=False)
def growth_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """A child's growth charts and each measurement's z-scores, bands and acute malnutrition status. An adult,
    or a patient whose sex is not recorded as female or male, gets the reason instead (422)."""
    db: Database = request.app.state.db
    clock = facility_clock(request, tenant)
    with db.tenant(tenant) as conn:
        top = banner(conn, request.user, patient_id)
        found = growth.growth(conn, request.user, patient_id, today=clock.today, tz=clock.tz)
    return page(request, "growth/growth.html", active="patients", patient_id=patient_id, tab="summary",
                growth=found, charts=growth_charts(found, clock), status_words=growth.ACUTE_STATUS_WORDS,
                latest_measured=growth.measurements_line(found["latest"]) if found["latest"] else None,
                **top, **HELPERS)


ROUTES = [growth_page]

growth_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES, exception_handlers=portal.EXCEPTION_HANDLERS,
                       guards=[portal.care_relationship_guard], tags=["portal"], include_in_schema=False)
