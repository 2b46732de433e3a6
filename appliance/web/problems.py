"""The chart's "Problems & allergies" page of the tenant portal: every current problem (ICD-10) and
allergy of a patient, the forms that record one, resolve or correct one, or mark one entered in error,
a finder for ICD-10 codes by words of their title, and each record's history.

It keeps the portal's rules (see `portal.py`): each route declares the permission the clinical API
declares for the same act, so a role does on the page what it may do by API and no more; patient pages
pass the care-relationship guard; the record is read and written only through the clinical layer's
service functions (every write is an entry through `record.append`, audited there); bad input gets the
page back with the message by the field and what was typed kept (422); Post/Redirect/Get. Its chart
tab and notices are added to the portal's lists when this module is imported.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from litestar import Response, Router, get, post
from litestar.response import Template
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from appliance.layers.clinical import icd10, service
from appliance.layers.clinical.errors import Conflict, NotFound
from appliance.layers.clinical.models import allergy, condition
from appliance.layers.clinical.schemas import AllergyAmend, AllergyIn, ConditionAmend, ConditionIn, Retraction
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal
from appliance.substrate.record import RecordError
from appliance.substrate.tenancy import facility_today
from appliance.web import portal
from appliance.web.portal import (
    HELPERS,
    PATIENT,
    Asking,
    ChartTab,
    FormData,
    Id,
    Query,
    Tenant,
    banner,
    facility_clock,
    field_errors,
    form_values,
    page,
    people_named,
    see_other,
    template_message,
)

portal.CHART_TABS.insert(1, ChartTab("problems", "Problems & allergies", "/problems", "clinical.chart.read"))
portal.NOTICES.update({
    "problem-added": "Problem recorded.",
    "problem-amended": "Problem updated; the previous version stays in its history.",
    "allergy-added": "Allergy recorded; prescriptions are checked against it from now.",
    "allergy-amended": "Allergy updated; the previous version stays in its history.",
    "retracted": "Marked entered in error, with your reason; it stays readable in the record's history.",
})

PROBLEM_FIELDS = ["code", "verification", "onset_date", "note", "encounter_id"]
ALLERGY_FIELDS = ["substance", "category", "reaction", "severity", "criticality", "note", "encounter_id"]
# What a correction carries over from the current version, and what the forms may change of it.
PROBLEM_DETAIL = ["code", "clinical_status", "verification", "onset_date", "resolved_date", "note"]
PROBLEM_CHANGES = ["clinical_status", "verification", "resolved_date", "note"]
ALLERGY_DETAIL = ["substance", "category", "reaction", "severity", "criticality", "clinical_status", "note"]
ALLERGY_CHANGES = ["reaction", "severity", "criticality", "clinical_status", "note"]
FINDER_LIMIT = 25
VERSION_STATUS = {"final": "recorded", "amended": "amended", "entered_in_error": "entered in error"}


def _everyday_words(request: Asking) -> icd10.EverydayWords:
    """The words clinicians say for a diagnosis, which the finder reads as the title words they mean."""
    return icd10.load_everyday_words(request.app.state.settings.policies_dir / "icd10_words.toml")


def _problems_page(request: Asking, tenant: str, patient_id: uuid.UUID, *, status: int = 200, form: str = "",
                   values: dict | None = None, errors: dict | None = None, find: str = "",
                   code: str = "", also_active: bool = False) -> Template:
    principal: Principal = request.user
    db: Database = request.app.state.db
    with db.tenant(tenant) as conn:
        top = banner(conn, principal, patient_id)
        problems = service.list_conditions(conn, principal, patient_id) \
            if principal.can("clinical.problem.read") else None
        allergies = service.list_allergies(conn, principal, patient_id) \
            if principal.can("clinical.allergy.read") else None
        # What was marked entered in error stays on the page, with why: nothing in the record is deleted.
        withdrawn_problems = service.list_withdrawn(conn, principal, patient_id, condition, "condition") \
            if problems is not None else []
        withdrawn_allergies = service.list_withdrawn(conn, principal, patient_id, allergy, "allergy") \
            if allergies is not None else []
    values = dict(values or {})
    chosen = None
    if code and not form:  # a code picked in the finder fills the form to add a problem
        values["code"] = code
        form = "problem"
    if form == "problem" and values.get("code"):
        try:
            chosen = icd10.lookup(values["code"])
        except icd10.InvalidIcd10:
            chosen = None
    authors = {row["author_id"] for row in [*(problems or []), *(allergies or [])]} \
        | {row["withdrawn_by"] for row in [*withdrawn_problems, *withdrawn_allergies]}
    return page(request, "problems.html", status=status, active="patients", patient_id=patient_id, tab="problems",
                **top, problems=problems, all_allergies=allergies, withdrawn_problems=withdrawn_problems,
                withdrawn_allergies=withdrawn_allergies, form=form, values=values, errors=errors or {},
                find=find, matches=icd10.search(find, FINDER_LIMIT, _everyday_words(request)) if find else None,
                chosen=chosen,
                names=people_named(db, authors), also_active=also_active, **HELPERS)


@get(PATIENT + "/problems", operation_id="PortalProblems", opt={"permission": "clinical.chart.read"},
     sync_to_thread=True, include_in_schema=False)
def problems_page(request: Asking, tenant: Tenant, patient_id: Id, find: Query = "", code: Query = "") -> Template:
    """Current problems and allergies with their forms; `find` lists ICD-10 codes matching the words typed,
    and `code` (a code picked from them) fills the form to add a problem."""
    return _problems_page(request, tenant, patient_id, find=" ".join(find.split())[:100], code=code.strip()[:10])


def _write(request: Asking, tenant: str, patient_id: uuid.UUID, values: dict, *, form: str, done: str,
           act: Callable[[Connection], Any], tab: portal.RetractionTab | None = None) -> Response:
    """Run one form's write in a tenant transaction and go back to the tab saying what happened (this one, or
    `tab`); what the schema or the clinical layer refuses of what was typed (422) comes back next to the field
    it names, with the form as it was sent. A guessed id (404) or a version replaced meanwhile (409) is not the
    form's fault and gets its refusal page."""
    tab = tab or portal.RETRACTION_TABS["condition"]
    try:
        with request.app.state.db.tenant(tenant) as conn:
            act(conn)
    except ValidationError as exc:
        errors = field_errors(exc)
    except RecordError as exc:
        if exc.status != 422:
            raise
        errors = {exc.extra.get("field") or "form": template_message(exc.detail)}
    else:
        return see_other(request, f"/t/{tenant}/patients/{patient_id}{tab.path}?done={done}")
    return tab.render(request, tenant, patient_id, status=422, form=form, values=values, errors=errors)


def _given(values: dict, fields: list[str]) -> dict:
    return {k: values[k] for k in fields if values.get(k)}


def _already_active(request: Asking, tenant: str, patient_id: uuid.UUID, values: dict) -> str | None:
    """What to say when the code typed is already an active problem of the patient (the same diagnosis
    written at each visit doubles the list a clinician reads first); None when it is not, or when the code
    is not one (the write names that)."""
    try:
        code = icd10.lookup(str(values.get("code") or "")).code
    except icd10.InvalidIcd10:
        return None
    with request.app.state.db.tenant(tenant) as conn:
        active = [p for p in service.list_conditions(conn, request.user, patient_id, active_only=True)
                  if p["code"] == code]
    if not active:
        return None
    clock = facility_clock(request, tenant)
    since = f" since {clock.day(active[0]['onset_date'])}" if active[0]["onset_date"] else ""
    return (f"{code} {active[0]['display']} is already an active problem{since}. Resolve or correct it above, or "
            "tick “Record it again” for a separate episode.")


@post(PATIENT + "/problems", operation_id="PortalAddProblem", opt={"permission": "clinical.problem.create"},
      sync_to_thread=True, include_in_schema=False)
def add_problem(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """Record a problem coded in ICD-10; a code not in the WHO list is named next to the code field, and
    one already on the active list is asked about (409) rather than listed twice."""
    values = form_values(data)
    if values.get("also_active") != "true" and (already := _already_active(request, tenant, patient_id, values)):
        return _problems_page(request, tenant, patient_id, status=409, form="problem", values=values,
                              errors={"code": already}, also_active=True)
    return _write(request, tenant, patient_id, values, form="problem", done="problem-added", act=lambda conn: (
        service.add_condition(conn, request.user, patient_id,
                              ConditionIn.model_validate(_given(values, PROBLEM_FIELDS)))))


@post(PATIENT + "/allergies", operation_id="PortalAddAllergy", opt={"permission": "clinical.allergy.create"},
      sync_to_thread=True, include_in_schema=False)
def add_allergy(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """Record an allergy: the same record the drug–allergy check reads when anyone prescribes."""
    values = form_values(data)
    return _write(request, tenant, patient_id, values, form="allergy", done="allergy-added", act=lambda conn: (
        service.add_allergy(conn, request.user, patient_id, AllergyIn.model_validate(_given(values, ALLERGY_FIELDS)))))


def _current_version(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                     kinds: tuple[str, ...]) -> dict:
    """The version `entry_id` of a record of one of `kinds` on this chart (a problem, an allergy, or for a
    retraction any kind a chart tab offers to withdraw), its detail alongside its entry fields: 404 for a guessed
    id or another kind of entry, 409 when the page showed a version since replaced."""
    versions = service.entry_history(conn, principal, patient_id, entry_id)
    found = next(v for v in versions if v["id"] == entry_id)
    nouns = {kind: portal.RETRACTION_TABS[kind].noun for kind in kinds}
    if found["kind"] not in kinds:
        what = " or ".join(dict.fromkeys(nouns.values()))
        raise NotFound(f"no {what} {entry_id} on this patient's chart", entry_id=str(entry_id))
    if found is not versions[-1] or found["entry_status"] == "entered_in_error":
        raise Conflict(f"this {nouns[found['kind']]} was changed since the page was loaded; reload the page "
                       "and correct its current version")
    return {**found, **found["detail"]}


def _amended(version: dict, fields: list[str], changeable: list[str], values: dict) -> dict:
    """The next version: the current one's `fields`, with what the form sent of the `changeable` ones over
    them (a field sent blank is cleared, one not sent is kept), and the reason."""
    detail = {k: version[k] for k in fields} | {k: values[k] for k in changeable if k in values}
    return detail | ({"reason": values["reason"]} if values.get("reason") else {})


@post(PATIENT + "/problems/{entry_id:uuid}", operation_id="PortalAmendProblem",
      opt={"permission": "clinical.problem.update"}, sync_to_thread=True, include_in_schema=False)
def amend_problem(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """Resolve a problem, or correct its status, verification or note, with a reason; a new version of the
    record, the previous one kept in its history. The code stays: a wrong code is entered in error."""
    values = form_values(data)
    if values.get("clinical_status") == "resolved" and not values.get("resolved_date"):
        values["resolved_date"] = facility_today(request.app.state.db, tenant).isoformat()
    if values.get("clinical_status") == "active":
        values["resolved_date"] = None  # an active problem has not resolved

    def act(conn: Connection) -> None:
        version = _current_version(conn, request.user, patient_id, entry_id, ("condition",))
        amend = ConditionAmend.model_validate(_amended(version, PROBLEM_DETAIL, PROBLEM_CHANGES, values))
        service.amend_condition(conn, request.user, patient_id, entry_id, amend, amend.reason)

    # Two forms post here, "Resolve" and "Correct": a message goes back to the one that was sent.
    which = "resolve" if values.get("form") == "resolve" else "problem"
    return _write(request, tenant, patient_id, values, form=f"{which}-{entry_id}", done="problem-amended", act=act)


@post(PATIENT + "/allergies/{entry_id:uuid}", operation_id="PortalAmendAllergy",
      opt={"permission": "clinical.allergy.update"}, sync_to_thread=True, include_in_schema=False)
def amend_allergy(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """Change an allergy's status (no longer active), reaction, severity, criticality or note, with a
    reason; the substance stays: a wrong substance is entered in error."""
    values = form_values(data)

    def act(conn: Connection) -> None:
        version = _current_version(conn, request.user, patient_id, entry_id, ("allergy",))
        amend = AllergyAmend.model_validate(_amended(version, ALLERGY_DETAIL, ALLERGY_CHANGES, values))
        service.amend_allergy(conn, request.user, patient_id, entry_id, amend, amend.reason)

    return _write(request, tenant, patient_id, values, form=f"allergy-{entry_id}", done="allergy-amended", act=act)


@post(PATIENT + "/entries/{entry_id:uuid}/entered-in-error", operation_id="PortalRetractEntry",
      opt={"permission": "clinical.entry.retract"}, sync_to_thread=True, include_in_schema=False)
def retract_entry(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """Mark a record entered in error from the chart tab that lists it (`portal.RETRACTION_TABS`: a problem or
    allergy, a prescription or order, a result, a set of vital signs), with a reason: it leaves the chart and
    what the record's reactions made of it (a score, its escalation, a specimen task), and stays readable in its
    history with the reason. Back to that tab, or to it with the refusal next to the reason."""
    return _retract(request, tenant, patient_id, entry_id, form_values(data), tuple(portal.RETRACTION_TABS))


@post(PATIENT + "/vitals/{entry_id:uuid}/entered-in-error", operation_id="PortalWithdrawOwnVitals",
      opt={"permission": "clinical.vitals.retract_own"}, sync_to_thread=True, include_in_schema=False)
def withdraw_own_vitals(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """The observations page's form for the nurse who charted a set (ACC-035): as `retract_entry`, for a set of
    vital signs only; whether she may (her own set, within the hours) is the substrate's one rule,
    `retraction.require`, a 403 page saying who can otherwise."""
    return _retract(request, tenant, patient_id, entry_id, form_values(data), ("vital_signs",),
                    withdraw=service.retract_own_vitals)


def _retract(request: Asking, tenant: str, patient_id: uuid.UUID, entry_id: uuid.UUID, values: dict,
             kinds: tuple[str, ...], withdraw: Callable[..., dict] = service.retract_entry) -> Response:
    """Withdraw `entry_id` (one of `kinds`, else 404) by `withdraw`, through `_write` and back to the tab that lists
    its kind."""
    with request.app.state.db.tenant(tenant) as conn:
        kind = _current_version(conn, request.user, patient_id, entry_id, kinds)["kind"]

    def act(conn: Connection) -> None:
        retraction = Retraction.model_validate(_given(values, ["reason"]))
        withdraw(conn, request.user, patient_id, entry_id, retraction.reason)

    return _write(request, tenant, patient_id, values, form=f"retract-{entry_id}", done="retracted", act=act,
                  tab=portal.RETRACTION_TABS[kind])


@get(PATIENT + "/entries/{entry_id:uuid}/history", operation_id="PortalEntryHistory",
     opt={"permission": "clinical.entry.read"}, sync_to_thread=True, include_in_schema=False)
def history_page(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id) -> Template:
    """Every version of one record, oldest first: what it said, who wrote it when, and the reason for each
    correction — entered-in-error versions included, since nothing is deleted."""
    principal: Principal = request.user
    db: Database = request.app.state.db
    with db.tenant(tenant) as conn:
        top = banner(conn, principal, patient_id)
        versions = service.entry_history(conn, principal, patient_id, entry_id)
    listed_on = portal.RETRACTION_TABS.get(versions[0]["kind"])  # the tab that lists it is the one shown open
    return page(request, "entry_history.html", active="patients", patient_id=patient_id,
                tab=listed_on.path.lstrip("/") if listed_on else "problems", **top,
                versions=versions, kind_label=listed_on.noun if listed_on else versions[0]["kind"].replace("_", " "),
                version_status=VERSION_STATUS, names=people_named(db, {v["author_id"] for v in versions}),
                **HELPERS)


portal.RETRACTION_TABS.update({"condition": portal.RetractionTab("problem", "/problems", _problems_page),
                               "allergy": portal.RetractionTab("allergy", "/problems", _problems_page)})

ROUTES = [problems_page, add_problem, add_allergy, amend_problem, amend_allergy, retract_entry, withdraw_own_vitals,
          history_page]

problems_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES, exception_handlers=portal.EXCEPTION_HANDLERS,
                         guards=[portal.care_relationship_guard], tags=["portal"], include_in_schema=False)
