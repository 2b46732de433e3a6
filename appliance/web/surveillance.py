"""The ministry's Alerts page, `/national/alerts`: notifiable diseases (policies/surveillance.toml) from every
facility's diagnoses the day they are recorded — open alerts newest first (facility, disease, cases, since),
those of earlier weeks nobody has acknowledged (back a year: `idsr.OPEN_HORIZON_WEEKS`), the weekly table
(diseases by ISO week, for one facility or all), acknowledging an alert with a note — and the
same as JSON (`/api/national/alerts`, read with the analyst's session: the ministry holds no API token, so
acknowledging is the page's form, CSRF-checked) and one week as a DHIS2 dataValueSet. Cases are shown as they
leave a facility (`appliance.national.surveillance`): sex, age band, date of diagnosis, ICD-10 code, never a
name, record number or id. Each read, export and acknowledgement is in the appliance's audit log; each facility's
log says the ministry read its cases.
"""

from __future__ import annotations

import json
from typing import Annotated

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery, QueryParameter
from litestar.response import Redirect, Template
from pydantic import BaseModel

from appliance.national import indicators
from appliance.national import surveillance as idsr
from appliance.web.errors import error_page, problem

WEEKS_SHOWN = 8  # two months of weeks: the run a rising weekly disease is read against


class AcknowledgeForm(BaseModel):
    facility: str = ""
    disease: str = ""
    week: str = ""
    note: str = ""
    last: str = ""  # the last week the page showed, to come back to it


def _week_asked(last: str, week: str) -> str:
    """The week the page and API were asked for: `last`, or `week` as the export and acknowledgements name it;
    an unknown parameter would be dropped and the current week shown as if it were the one asked for."""
    if last and week and last.strip().upper() != week.strip().upper():
        raise idsr.SurveillanceError(f"last={last[:40]!r} and week={week[:40]!r} name different weeks; give one")
    return last or week


def _read(state: State, last: str, facility: str, look_back: bool = True) -> tuple[idsr.Report, idsr.Week]:
    """The weeks asked for (up to `last`, else this week) at every facility, and unless `look_back` is false the
    open alerts of the year before them; `facility`, if given, must be one."""
    diseases = idsr.load_diseases(state.settings.policies_dir / "surveillance.toml")
    definitions = indicators.load_definitions(state.settings.policies_dir / "indicators.toml")
    current = idsr.this_week(state.db)
    end = idsr.Week.parse(last) if last else current
    if end > current:
        raise idsr.SurveillanceError(f"{end.label} has not begun; choose this week or an earlier one")
    found = idsr.report(state.db, diseases, definitions, idsr.weeks_ending(end, WEEKS_SHOWN), look_back)
    if facility and facility not in found.facilities:
        raise LookupError(f"no facility {facility[:80]!r} is on this appliance; choose one from the list")
    return found, current


def _table(found: idsr.Report, facility: str) -> list[dict]:
    counts = idsr.weekly_counts(c for c in found.cases if not facility or c.facility == facility)
    return [{"disease": d, "weeks": [counts.get((d.id, week), 0) for week in found.weeks]} for d in found.diseases]


@get("/national/alerts", operation_id="NationalSurveillanceAlerts", tags=["national"],
     opt={"permission": "national.surveillance.read"}, sync_to_thread=True, include_in_schema=False)
def alerts_page(request: Request, state: State, last: FromQuery[str] = "", week: FromQuery[str] = "",
                facility: FromQuery[str] = "") -> Template | Response:
    """Open alerts newest first, those acknowledged below them, the open ones of earlier weeks, and the weekly
    table for one facility or all."""
    try:
        asked = _week_asked(last, week)
    except idsr.SurveillanceError as refused:
        return error_page(request, 422, str(refused))
    return _page(request, state, asked, facility)


def _page(request: Request, state: State, last: str, facility: str, refusal: str = "",
          status_code: int = 200) -> Template | Response:
    try:
        found, current = _read(state, last, facility)
    except idsr.SurveillanceError as refused:
        return error_page(request, 422, str(refused))
    except LookupError as unknown:
        return error_page(request, 404, str(unknown.args[0]))
    idsr.record_read(state.db, request.user, found.weeks, len(found.facilities), since=found.since)
    return Template("national_alerts.html", status_code=status_code, context={
        "principal": request.user, "found": found, "current": current, "facility": facility,
        "open": [a for a in found.alerts if a.open], "acknowledged": [a for a in found.alerts if not a.open],
        "table": _table(found, facility), "refusal": refusal,
        "facilities": sorted(found.facilities.values(), key=lambda f: f.name)})


@post("/national/alerts/acknowledge", operation_id="NationalSurveillanceAcknowledge", tags=["national"],
      opt={"permission": "national.alert.acknowledge"}, sync_to_thread=True, include_in_schema=False)
def acknowledge(request: Request, state: State,
                data: Annotated[AcknowledgeForm, Body(media_type=RequestEncodingType.URL_ENCODED)]) -> Response:
    """Acknowledge one alert with a note; refused (nothing kept) without a note or for an alert not open."""
    try:
        week = idsr.Week.parse(data.week)
        found, _ = _read(state, data.last or week.value, "")
    except idsr.SurveillanceError as refused:
        return error_page(request, 422, str(refused))
    alert = found.find(data.facility, data.disease, week)
    if alert is None:
        reach = f"back to {found.since.label}" if found.since else "in the weeks shown"
        return error_page(request, 404, f"there is no alert of {data.disease[:60]!r} at {data.facility[:80]!r} in "
                                        f"{week.label}; the page looks for alerts {reach}")
    if not alert.open:
        return error_page(request, 409, f"that alert was acknowledged already at its {len(alert.cases)} cases; it "
                                        "opens again if more are diagnosed")
    try:
        idsr.acknowledge(state.db, request.user, alert, data.note)
    except idsr.SurveillanceError as refused:
        return _page(request, state, data.last, "", refusal=str(refused), status_code=422)
    return Redirect(f"/national/alerts?last={data.last}" if data.last else "/national/alerts")


def _alert_json(alert: idsr.Alert) -> dict:
    return {"facility": alert.facility.slug, "facility_name": alert.facility.name,
            "district": alert.facility.district, "disease": alert.disease.id, "disease_name": alert.disease.name,
            "reporting": alert.disease.reporting, "threshold": alert.disease.threshold, "week": alert.week.value,
            "since": alert.since.isoformat(), "open": alert.open,
            "acknowledged": None if alert.acknowledged is None else {
                "at": alert.acknowledged["acknowledged_at"].isoformat(), "cases": alert.acknowledged["cases"],
                "note": alert.acknowledged["note"]},
            "cases": [idsr.case_json(case) for case in alert.cases]}


@get("/api/national/alerts", operation_id="NationalSurveillanceAlertsApi", tags=["national"],
     opt={"permission": "national.surveillance.read"}, sync_to_thread=True,
     summary="Notifiable-disease alerts and weekly counts, from every facility's diagnoses",
     description="The weeks up to `last` (YYYY-Www, default this week; `week` is the same), eight of them: "
                 "every alert, open ones "
                 "first (newest first), each with its de-identified cases (sex, age band, date of diagnosis, "
                 "ICD-10 code); `open_from_earlier`, the alerts of the weeks before them back to `looks_back_to` "
                 "(a year) nobody has acknowledged; and the weekly counts by disease for `facility` or all. 422 "
                 "for a week that is not one or has not begun, 404 for a facility not on this appliance.")
def alerts_api(request: Request, state: State, last: FromQuery[str] = "", week: FromQuery[str] = "",
               facility: FromQuery[str] = "") -> Response:
    try:
        found, _ = _read(state, _week_asked(last, week), facility)
    except idsr.SurveillanceError as refused:
        return problem(422, str(refused))
    except LookupError as unknown:
        return problem(404, str(unknown.args[0]))
    idsr.record_read(state.db, request.user, found.weeks, len(found.facilities), since=found.since)
    ordered = [a for a in found.alerts if a.open] + [a for a in found.alerts if not a.open]
    return Response({"weeks": [w.value for w in found.weeks], "facility": facility or None,
                     "alerts": [_alert_json(a) for a in ordered],
                     "looks_back_to": found.since.value if found.since else None,
                     "open_from_earlier": [_alert_json(a) for a in found.open_earlier],
                     "weekly": [{"disease": row["disease"].id, "cases": dict(zip([w.value for w in found.weeks],
                                                                                 row["weeks"], strict=True))}
                                for row in _table(found, facility)]})


@get("/national/alerts/export", operation_id="NationalSurveillanceExport", tags=["national"],
     opt={"permission": "national.surveillance.export"}, sync_to_thread=True, include_in_schema=False)
def export(request: Request, state: State, week: FromQuery[str] = "",
           export_format: Annotated[str, QueryParameter(name="format")] = "dhis2") -> Response:
    """One week's cases of every notifiable disease at every facility as a DHIS2 dataValueSet."""
    if export_format != "dhis2":
        return error_page(request, 422, f"format {export_format[:20]!r} is not dhis2, the weekly report's format")
    try:
        found, _ = _read(state, week, "", look_back=False)  # one week's counts: no alert is listed
    except idsr.SurveillanceError as refused:
        return error_page(request, 422, str(refused))
    chosen = found.weeks[-1]
    definitions = indicators.load_definitions(state.settings.policies_dir / "indicators.toml")
    idsr.record_read(state.db, request.user, [chosen], len(found.facilities), export_format="dhis2")
    body = json.dumps(idsr.to_dhis2(found, chosen, definitions), indent=1).encode()
    return Response(body, media_type="application/json",
                    headers={"content-disposition": f'attachment; filename="healthos-idsr-{chosen.value}.json"'})


ROUTES = [alerts_page, acknowledge, alerts_api, export]
