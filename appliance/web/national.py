"""The ministry's page, `/national`: a month's national indicators — national, by district and by
facility, with one indicator broken down by sex and age band — and the same month as CSV or as a DHIS2
`dataValueSet` to import. Only counts that passed each facility's disclosure rule reach it
(`appliance.national.indicators`); facilities other appliances reported by signed package
(`appliance.national.federation`) are shown and exported beside this appliance's own, and the page says
which registered appliances have not yet reported the month. Viewing and exporting are recorded in the
appliance's audit log.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import FromQuery, QueryParameter
from litestar.response import Template

from appliance.national import federation
from appliance.national import indicators as national
from appliance.web.errors import error_page

MONTHS_OFFERED = 24


def _definitions(state: State) -> national.Definitions:
    return national.load_definitions(state.settings.policies_dir / "indicators.toml")


def _months() -> list[national.Period]:
    months = [national.Period.containing(dt.datetime.now(dt.UTC).date())]
    while len(months) < MONTHS_OFFERED:
        months.append(months[-1].previous())
    return months


@get("/national", operation_id="NationalIndicators", tags=["national"], opt={"permission": "national.indicator.read"},
     sync_to_thread=True, include_in_schema=False)
def indicators_page(request: Request, state: State, period: FromQuery[str] = "",
                    indicator: FromQuery[str] = "") -> Template | Response:
    try:
        definitions = _definitions(state)
        month = national.month_asked(period, dt.datetime.now(dt.UTC).date())
        chosen = definitions.indicator(indicator) if indicator else definitions.indicators[0]
    except national.IndicatorError as refused:
        return error_page(request, 422, str(refused))
    facilities = federation.national_facilities(state.db, month, definitions)
    national.record_use(state.db, request.user, "R", month, len(facilities))
    groups = national.districts(facilities)
    rows = [{"indicator": i, "national": national.total(facilities, i.id),
             "districts": [national.total(members, i.id) for members in groups.values()]}
            for i in definitions.indicators]
    return Template("national.html", context={
        "principal": request.user, "period": month, "months": _months(), "definitions": definitions,
        "to_date": month == national.Period.containing(dt.datetime.now(dt.UTC).date()),
        "chosen": chosen, "rows": rows, "groups": groups, "facilities": facilities,
        "breakdown": national.breakdown(facilities, chosen.id, definitions), "sexes": national.SEXES,
        "reports": federation.reports(state.db, month),
        "withheld_any": any(f.figures[i.id].withheld or f.figures[i.id].total is None
                            for f in facilities for i in definitions.indicators),
    })


@get("/national/export", operation_id="NationalIndicatorsExport", tags=["national"],
     opt={"permission": "national.indicator.export"}, sync_to_thread=True, include_in_schema=False)
def export(request: Request, state: State, period: FromQuery[str] = "",
           export_format: Annotated[str, QueryParameter(name="format")] = "csv") -> Response:
    """A month's published figures of every facility: `format=csv` (a row per figure, withheld ones
    marked) or `format=dhis2` (a dataValueSet, withheld cells left out)."""
    if export_format not in ("csv", "dhis2"):
        return error_page(request, 422, f"format {export_format!r} is not csv or dhis2")
    try:
        definitions = _definitions(state)
        month = national.month_asked(period, dt.datetime.now(dt.UTC).date())
    except national.IndicatorError as refused:
        return error_page(request, 422, str(refused))
    facilities = federation.national_facilities(state.db, month, definitions)
    national.record_use(state.db, request.user, "E", month, len(facilities), export_format=export_format)
    if export_format == "csv":
        body, media_type, suffix = national.to_csv(facilities, month, definitions).encode(), "text/csv", "csv"
    else:
        body = json.dumps(national.to_dhis2(facilities, month, definitions), indent=1).encode()
        media_type, suffix = "application/json", "json"
    name = f"healthos-national-{month.value}.{suffix}"
    return Response(body, media_type=media_type, headers={"content-disposition": f'attachment; filename="{name}"'})


ROUTES = [indicators_page, export]
