"""The patient portal, `/me`: a patient's own record from every facility that holds one (allergies,
problems, medicines, results a clinician has reviewed as the release rules let them show — some later,
some only once a clinician has given them in person, `policies/release.toml` — visits, appointments to
come, bills), and who opened it — each access from the facilities' audit trails, break-the-glass
marked with its stated reason.

A patient signs in to an account linked to their one-identity subject; the pages take no patient id,
so there is nothing to guess: the subject comes from the session alone. Each facility's part is read in
that facility's transaction and audited there as the patient's own read. A patient's account is made
by the facility's front desk or clinician (`portal.invite_patient`, on the patient's registration
page), with a one-time enrolment link for the patient, as staff accounts are.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from litestar import Request, get
from litestar.datastructures import State
from litestar.response import Template

from appliance.layers.clinical import chart
from appliance.layers.clinical import service as clinical
from appliance.layers.financial import service as financial
from appliance.layers.financial.money import format_money
from appliance.layers.operations import scheduling
from appliance.layers.patient import portal as patient_portal
from appliance.layers.patient.release import release
from appliance.web.portal import ENCOUNTER_CLASSES, FLAGS, Clock, is_abnormal, number, reference_range, result_value

RESULTS_SHOWN = 20
VISITS_SHOWN = 10
ACCESS_SHOWN = 300


def _facility_records(state: State, request: Request) -> list[dict]:
    records = []
    for holding in patient_portal.records_of(state.db, request.user.subject_id):
        with state.db.tenant(holding.tenant) as conn:
            summary = chart.chart_summary(conn, request.user, holding.patient_id)
            # The summary's results do not carry when one was given in person (its SQL is a frozen
            # function); the release rules need it, so it is asked for here, in one query.
            given = clinical.disclosed_at_of(conn, holding.patient_id, [r["id"] for r in summary["results"]])
            for result in summary["results"]:
                result["disclosed_at"] = given.get(result["id"])
            appointments = scheduling.upcoming_of_patient(conn, request.user, holding.patient_id)
            bills = financial.bills_of_patient(conn, request.user, holding.patient_id)
        released = release(summary["results"], state.release_rules, dt.datetime.now(dt.UTC))
        summary["results"] = released.shown[:RESULTS_SHOWN]
        summary["encounters"] = summary["encounters"][:VISITS_SHOWN]
        # Dates as the patient lived them, at the facility: a result taken at 01:30 in Nairobi is of that
        # day there (the staff's pages say so too), not of the day before in UTC.
        clock = Clock(zoneinfo.ZoneInfo(holding.timezone))
        records.append({"holding": holding, "summary": summary, "appointments": appointments, "bills": bills,
                        "later": [(result, clock.local(at)) for result, at in released.later],
                        "in_person": released.in_person, "clock": clock})
    return records


@get("/me", operation_id="PatientRecord", tags=["patient"], opt={"permission": "patient.record.read"},
     sync_to_thread=True, include_in_schema=False)
def record_page(request: Request, state: State) -> Template:
    return Template("me.html", context={
        "principal": request.user, "records": _facility_records(state, request), "tab": "record", "flags": FLAGS,
        "encounter_classes": ENCOUNTER_CLASSES, "result_value": result_value, "reference_range": reference_range,
        "is_abnormal": is_abnormal, "number": number, "money": format_money})


@get("/me/access", operation_id="PatientAccessLog", tags=["patient"], opt={"permission": "patient.access_log.read"},
     sync_to_thread=True, include_in_schema=False)
def access_page(request: Request, state: State) -> Template:
    holdings = patient_portal.records_of(state.db, request.user.subject_id)
    entries = patient_portal.access_log(state.db, request.user, holdings)
    me = str(request.user.account_id)
    clocks = {h.tenant: Clock(zoneinfo.ZoneInfo(h.timezone)) for h in holdings}
    return Template("me_access.html", context={
        "principal": request.user, "tab": "access", "holdings": holdings, "entries": entries[:ACCESS_SHOWN],
        "clocks": clocks, "zones": sorted({h.timezone for h in holdings}),
        "total": len(entries), "me": me, "describe": patient_portal.describe,
        "break_glass": [e for e in entries if e.break_the_glass],
        "by_facility": {h.tenant: sum(1 for e in entries if e.facility["tenant"] == h.tenant) for h in holdings},
    })


ROUTES = [record_page, access_page]
