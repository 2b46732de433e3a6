"""The clinician's first page of the tenant portal, "Today's patients": today's encounters at the facility
in its own time zone (open now, planned for today, finished today), each linked to the patient's chart,
with "mine" (encounters the clinician opened or wrote in) and "all" as filters, and one class of visit
(an outpatient clinic's list apart from the inpatients on the wards), the patient search above them, and
the results waiting for the clinician's review (critical ones first, whoever ordered them), and those booked
at the facility's clinics for today who have not yet been checked in (operations' appointments, which the
clinician may read under ACC-018).

It keeps the portal's rules (see `portal.py`): it declares the permission the clinical API declares for
the same list (`clinical.worklist.read`, which clinicians hold), reads the record only through the
clinical layer's service (`worklist.todays_encounters`, which audits each patient listed), and is the
page a clinician lands on (it is first in the navigation they may open).
"""

from __future__ import annotations

import datetime as dt

from litestar import Router, get
from litestar.response import Template

from appliance.layers.clinical import worklist
from appliance.layers.operations import scheduling
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_timezone
from appliance.web import portal
from appliance.web.errors import error_page
from appliance.web.portal import Asking, Clock, Query, Tenant, page, patient_home

# What a status reads as on the list: where the patient is in their visit.
STATUS_LABELS = {"in_progress": "Being seen", "arrived": "Waiting", "planned": "Expected", "finished": "Done"}


def _time_of_day(clock: Clock, at: dt.datetime | None, today: dt.date) -> str:
    """A time on the facility's clock: the hour alone today, with its day before (last night's arrival)."""
    if at is None:
        return ""
    local = clock.local(at)
    return local.strftime("%H:%M" if local.date() == today else "%d %b %H:%M")


@get("/today", operation_id="PortalTodaysPatients", opt={"permission": "clinical.worklist.read"},
     sync_to_thread=True, include_in_schema=False)
def todays_patients(request: Asking, tenant: Tenant, whose: Query = "all", visit: Query = "") -> Template:
    """Today's encounters, those being seen first; `?whose=mine` keeps the clinician's own, `?visit=` one
    class of encounter (outpatient, emergency, inpatient)."""
    principal: Principal = request.user
    whose = whose.strip() or "all"
    if whose not in worklist.WHOSE:
        return error_page(request, 400, "show 'mine' or 'all' of today's patients; the address asked for "
                                        f"{whose[:40]!r}")
    visit = visit.strip()
    if visit and visit not in worklist.VISITS:
        return error_page(request, 400, f"show today's {', '.join(worklist.VISITS)} or all visits; the address "
                                        f"asked for {visit[:40]!r}")
    zone = facility_timezone(request.app.state.db, tenant)
    with request.app.state.db.tenant(tenant) as conn:
        today = worklist.todays_encounters(conn, principal, tz=zone, whose=whose, visit=visit or None)
        review = worklist.results_to_review(conn, principal) if principal.can("clinical.result.read") else None
        # Booked at a clinic and not yet checked in: expected, with no encounter yet for the list above to show.
        # Whose they are the record cannot say, so "mine" leaves them out, as it does encounters nobody wrote in.
        expected = (scheduling.expected_on(conn, principal, today["date"], zone)
                    if principal.can("operations.appointment.read") and whose == "all"
                    and visit in ("", "outpatient") else None)
    clock = Clock(zone)
    for row in today["encounters"]:
        row["href"] = patient_home(principal, tenant, row["patient_id"])
        row["time"] = _time_of_day(clock, row["started_at"] or row["planned_for"], today["date"])
        row["ended"] = _time_of_day(clock, row["ended_at"], today["date"])
    for row in expected or []:
        row["href"] = patient_home(principal, tenant, row["patient_id"])
        row["time"] = _time_of_day(clock, row["starts_at"], today["date"])
    for row in (review or {}).get("results", []):
        row["href"] = f"/t/{tenant}/patients/{row['patient_id']}/results#result-{row['id']}"
    orderers = portal.people_named(request.app.state.db, {r["ordered_by"] for r in (review or {}).get("results", [])})
    return page(request, "today.html", active="today", today=today, whose=whose, visit=visit,
                visits=worklist.VISITS, orderers=orderers,
                day=today["date"].strftime("%A %d %B %Y"), status_labels=STATUS_LABELS, review=review,
                expected=expected, **portal.HELPERS)


todays_router = Router(path="/t/{tenant:str}", route_handlers=[todays_patients],
                       exception_handlers=portal.EXCEPTION_HANDLERS, tags=["portal"], include_in_schema=False)
