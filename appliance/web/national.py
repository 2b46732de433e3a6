"""The ministry's page, `/national`: a month's national indicators — national, by district and by
facility, with one indicator broken down by sex and age band — and the same month as CSV or as a DHIS2
`dataValueSet` to import. Only counts that passed each facility's disclosure rule reach it
(`appliance.national.indicators`); facilities other appliances reported by signed package
(`appliance.national.federation`) are shown and exported beside this appliance's own, and the page says
which registered appliances have not yet reported the month. A facility that did not record on an appliance
yet in the month (`indicators.records_in`) is listed as "not recording yet", in no sum and in neither export.
Viewing and exporting are recorded in the appliance's audit log.

A month held from another appliance before the ministry changed its age bands or raised its threshold
still shows its facilities, read as `federation` says: counts under the threshold now withheld; totals
and totals by sex as published; bands the package did not have read "published under earlier age
bands" (badged in sums by band, left out of the DHIS2 file, marked in the CSV); and the reporting table
says how each package was read, or why it could not be.

`POST /api/national/packages` is where a hospital's appliance delivers its package over HTTPS
(`healthos national push`). It needs no session or token: the package's signature by an appliance an
operator registered here is its credential, checked by the same `federation.receive_package` as a file
carried in. Its size is capped, it is rate-limited per client as sign-in is (`appliance.web.app`), and a
refusal is answered with receive_package's sentence and logged without the package's figures.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import structlog
from anyio import to_thread
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.params import FromQuery, QueryParameter
from litestar.response import Template

from appliance.national import federation
from appliance.national import indicators as national
from appliance.web.errors import error_page, problem

log = structlog.get_logger(__name__)

MONTHS_OFFERED = 24
# A facility's month is about 4 KiB of counts (thirteen indicators): this takes some 500 facilities.
MAX_PACKAGE_BYTES = 2 * 1024 * 1024


def _definitions(state: State) -> national.Definitions:
    return national.load_definitions(state.settings.policies_dir / "indicators.toml")


def _months(today: dt.date) -> list[national.Period]:
    months = [national.Period.containing(today)]
    while len(months) < MONTHS_OFFERED:
        months.append(months[-1].previous())
    return months


@get("/national", operation_id="NationalIndicators", tags=["national"], opt={"permission": "national.indicator.read"},
     sync_to_thread=True, include_in_schema=False)
def indicators_page(request: Request, state: State, period: FromQuery[str] = "", indicator: FromQuery[str] = "",
                    facility: FromQuery[str] = "") -> Template | Response:
    """The month's figures; `facility` (a facility's code in the facility table) adds that facility's
    every indicator, its drill-down."""
    try:
        definitions = _definitions(state)
        today = national.today(state.db)
        month = national.month_asked(period, today)
        chosen = definitions.indicator(indicator) if indicator else definitions.indicators[0]
    except national.IndicatorError as refused:
        return error_page(request, 422, str(refused))
    facilities = federation.national_facilities(state.db, month, definitions)
    focus = next((f for f in facilities if f.slug == facility), None) if facility else None
    if facility and focus is None:
        return error_page(request, 404, f"no facility {facility[:80]!r} is counted in {month.label}; choose one "
                                        "from the facility table of that month")
    national.record_use(state.db, request.user, "R", month, len(national.recording(facilities)))
    groups = national.regions(facilities)
    rows = [{"indicator": i, "national": national.total(facilities, i.id),
             "regions": [(national.total([f for members in districts.values() for f in members], i.id),
                          [national.total(members, i.id) for members in districts.values()])
                         for districts in groups.values()]}
            for i in definitions.indicators]
    return Template("national.html", context={
        "principal": request.user, "period": month, "months": _months(today), "definitions": definitions,
        "to_date": month == national.Period.containing(today),
        "chosen": chosen, "rows": rows, "groups": groups, "facilities": facilities, "focus": focus,
        "breakdown": national.breakdown(facilities, chosen.id, definitions), "sexes": national.SEXES,
        "sex_sums": national.by_sex(facilities, chosen.id),
        "reports": federation.reports(state.db, month, definitions),
        "screening_criteria": national.SCREENING_CRITERIA if any(i.source == "screenings"
                                                                 for i in definitions.indicators) else None,
        "dose_criteria": national.DOSE_CRITERIA if any(i.source == "immunizations"
                                                       for i in definitions.indicators) else None,
        "withheld_any": any(fig.withheld or fig.total is None for f in facilities for fig in f.figures.values()),
        # DHIS2 makes a facility's total by adding the sex-and-age values it receives, and neither a
        # withheld one nor one of an age band no longer defined is sent: each published total beside
        # such a cell reads lower there than here.
        "lower_in_dhis2": sum(1 for f in facilities for fig in f.figures.values()
                              if fig.total is not None and fig.total != sum(v for v in fig.cells.values() if v)),
        "earlier_bands": [f for f in facilities if any(fig.under_earlier_bands for fig in f.figures.values())],
        "not_reported_any": any(f.figure(i.id) is None for f in national.recording(facilities)
                                for i in definitions.indicators),
        "not_recording": [f for f in facilities if not f.recording],
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
        month = national.month_asked(period, national.today(state.db))
    except national.IndicatorError as refused:
        return error_page(request, 422, str(refused))
    facilities = federation.national_facilities(state.db, month, definitions)
    national.record_use(state.db, request.user, "E", month, len(national.recording(facilities)),
                        export_format=export_format)
    if export_format == "csv":
        body, media_type, suffix = national.to_csv(facilities, month, definitions).encode(), "text/csv", "csv"
    else:
        body = json.dumps(national.to_dhis2(facilities, month, definitions), indent=1).encode()
        media_type, suffix = "application/json", "json"
    name = f"healthos-national-{month.value}.{suffix}"
    return Response(body, media_type=media_type, headers={"content-disposition": f'attachment; filename="{name}"'})


@post(federation.PACKAGES_PATH, operation_id="NationalReceivePackage", tags=["national"], opt={"public": True},
      request_max_body_size=MAX_PACKAGE_BYTES, status_code=201,
      summary="Receive a registered appliance's signed package of a month's published figures",
      description="The body is the package as `healthos national package` writes it (`application/json`). "
                  "No token: the signature of an appliance registered here (`healthos national peer add`) "
                  "authenticates it. 201 with what was received, naming the indicators this appliance counts "
                  "that the package does not (`not_reported` for its facilities) and those it counts that this "
                  "appliance does not know (`ignored`). Refused with the reason: 403 when it is not "
                  "signed by a registered appliance's key, 409 when it clashes with what is held (a package "
                  "of that month produced later, or a facility another appliance counts), 422 when it is "
                  "malformed or its figures break the disclosure rules.")
async def receive_package(request: Request, state: State) -> Response:
    client = request.client.host if request.client else "unknown"
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        return problem(415, f"a package is sent as application/json, not {media_type or 'with no content type'}")
    try:
        data = await request.body()
    except RequestEntityTooLarge:
        return problem(413, f"the package is larger than {MAX_PACKAGE_BYTES // 1024 // 1024} MiB, which no month "
                            "of published figures reaches; it was not read")

    def receive() -> federation.Receipt:
        return federation.receive_package(state.db, data, _definitions(state), via=f"https from {client}")

    try:
        receipt = await to_thread.run_sync(receive)
    except federation.PackageError as refused:
        # The reason goes back to the sender; the log keeps who tried, not the figures it may quote.
        log.warning("national.package.refused", client=client, size=len(data))
        return problem(refused.status, str(refused))
    return Response({"appliance": receipt.peer, "period": receipt.period.value, "month": receipt.period.label,
                     "facilities": receipt.facilities, "replaced": receipt.replaced,
                     "not_reported": list(receipt.not_counted), "ignored": list(receipt.ignored)}, status_code=201)


ROUTES = [indicators_page, export, receive_package]
