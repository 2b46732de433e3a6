"""The FHIR R4 REST facade's routes, under /api/t/{tenant}/fhir: read, search, create, `$everything`,
transaction bundles and the CapabilityStatement.

Under /api/ on purpose: bearer tokens, the permission guard and the CSRF exclusion apply exactly as
for the clinical JSON API, and browser sessions only read. One table (`RESOURCE_ROUTES`) says what is
served — each resource type's interactions and the permission each needs — and both the routes and
the CapabilityStatement are made from it, so the statement cannot claim what is not there. Every
answer is `application/fhir+json`, and every refusal an OperationOutcome.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
import structlog
from litestar import Request, Response, Router, get, post
from litestar import route as any_method
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, JSONBody

from appliance import __version__
from appliance.interop.fhir import elements, paging, store, writes
from appliance.interop.fhir.errors import FhirError, of_fhir_error, of_record_error, outcome
from appliance.layers.clinical.immunization_routes import schedule_of
from appliance.substrate import keys
from appliance.substrate.db import InvalidSlug, UnknownTenant
from appliance.substrate.principal import Principal
from appliance.substrate.problems import NUL_IN_TEXT, nul_in_text
from appliance.substrate.record import RecordError
from appliance.substrate.tenancy import facility_timezone

log = structlog.get_logger(__name__)
FHIR_JSON = "application/fhir+json"
BASE = "/api/t/{tenant:str}/fhir"
BREAK_GLASS_HEADER = "x-break-glass-reason"
Asking = Request[Principal, Any, Any]  # request.user is the Principal the authentication middleware resolved


@dataclass(frozen=True)
class ResourceRoute:
    """One resource type the facade serves, and the clinical permission each interaction needs."""

    type: str
    read: str
    search: str
    create: str | None = None  # POST /{type}, and the entries of this type in a transaction
    in_transaction: str | None = None  # created only inside a transaction bundle (an Encounter)


RESOURCE_ROUTES = [
    ResourceRoute("Patient", read="clinical.patient.read", search="clinical.patient.search",
                  create="clinical.patient.create"),
    ResourceRoute("Encounter", read="clinical.encounter.read", search="clinical.encounter.read",
                  in_transaction="clinical.encounter.create"),
    ResourceRoute("Condition", read="clinical.problem.read", search="clinical.problem.read",
                  create="clinical.problem.create"),
    ResourceRoute("AllergyIntolerance", read="clinical.allergy.read", search="clinical.allergy.read",
                  create="clinical.allergy.create"),
    ResourceRoute("MedicationRequest", read="clinical.medication.read", search="clinical.medication.read"),
    ResourceRoute("Observation", read="clinical.result.read", search="clinical.result.read",
                  create="clinical.vitals.create"),
    ResourceRoute("ServiceRequest", read="clinical.order.read", search="clinical.order.read"),
    ResourceRoute("Immunization", read="clinical.immunization.read", search="clinical.immunization.read",
                  create="clinical.immunization.write"),
    ResourceRoute("Procedure", read="clinical.surgery.read", search="clinical.surgery.read"),
    # Every category: the desk's narrower view of documents (ACC-031) is the documents API's, not the facade's.
    ResourceRoute("DocumentReference", read="clinical.document.any_category",
                  search="clinical.document.any_category"),
    # A TB treatment on the register, read as the TB card is read (never with the HIV status at its start).
    ResourceRoute("EpisodeOfCare", read="clinical.tb.read", search="clinical.tb.read"),
    # An inpatient's diet order, read as the ward reads it.
    ResourceRoute("NutritionOrder", read=store.DIET_READ, search=store.DIET_READ),
]
BY_TYPE = {route.type: route for route in RESOURCE_ROUTES}
EVERYTHING_PERMISSION = "clinical.chart.read"
TRANSACTION_PERMISSION = "clinical.patient.create"
# The statement describes no patient; any client that may read a patient may read it.
METADATA_PERMISSION = "clinical.patient.read"


# -- answers -----------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def fhir(body: dict, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, default=_json_default, separators=(",", ":")).encode(), status_code=status,
                    media_type=FHIR_JSON, headers=headers)


def _outcome(status: int, diagnostics: str, **kwargs: Any) -> Response:
    return fhir(outcome(status, diagnostics, **kwargs), status)


def _fhir_error(_: Request, exc: FhirError) -> Response:
    return fhir(of_fhir_error(exc), exc.status)


def _record_error(_: Request, exc: RecordError) -> Response:
    return _fhir_error(_, of_record_error(exc))


def _http_error(_: Request, exc: HTTPException) -> Response:
    # The guard's 401/403, a body that is not JSON (400), a method the route does not take (405).
    detail = exc.detail if exc.status_code != 404 else "there is nothing at this address"
    return _outcome(exc.status_code, detail)


def _unknown_tenant(_: Request, exc: Exception) -> Response:
    return _outcome(404, f"no facility by that name: {exc}")


def _integrity(_: Request, exc: sa.exc.IntegrityError) -> Response:
    return _outcome(409, "another write got there first (a duplicate or a concurrent change); nothing was "
                         "written: reload and try again")


def _data_error(request: Request, exc: sa.exc.DataError) -> Response:
    return _outcome(422, NUL_IN_TEXT) if nul_in_text(exc) else _unexpected(request, exc)


def _unexpected(request: Request, exc: Exception) -> Response:
    # Logged with its traceback for the operator; the client learns only that it was our fault.
    log.error("unhandled_error", path=request.scope.get("path_template", ""), exc_info=exc)
    return _outcome(500, "the appliance could not complete this request; the error was logged with its request id")


EXCEPTION_HANDLERS: dict[Any, Callable] = {
    FhirError: _fhir_error,
    RecordError: _record_error,
    HTTPException: _http_error,
    UnknownTenant: _unknown_tenant,
    InvalidSlug: _unknown_tenant,
    sa.exc.IntegrityError: _integrity,
    sa.exc.DataError: _data_error,
    Exception: _unexpected,
}


def _base_url(request: Request, tenant: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/api/t/{tenant}/fhir"


def _reason(request: Request) -> str | None:
    return request.headers.get(BREAK_GLASS_HEADER)


def searchset(resources: list[dict], base: str, total: int, links: list[dict]) -> dict:
    """A page of a search (or of `$everything`): `total` is every match, not the page's rows."""
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "searchset",
            "timestamp": dt.datetime.now(dt.UTC).isoformat(), "total": total, "link": links,
            "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in resources]}


def _written(resource: dict) -> dict[str, str]:
    headers = {}
    meta = resource.get("meta") or {}
    if meta.get("versionId"):
        headers["etag"] = f'W/"{meta["versionId"]}"'
    return headers


# -- handlers, made from the table -------------------------------------------------------------------


def _opt(permission: str, resource_type: str | None = None) -> dict:
    return {"permission": permission, "fhir_type": resource_type}


def _read_handler(route: ResourceRoute) -> HTTPRouteHandler:
    def read(tenant: FromPath[str], resource_id: FromPath[str], state: State, request: Asking) -> Response:
        with state.db.tenant(tenant) as conn:
            found = store.read(conn, request.user, route.type, resource_id, _reason(request),
                               schedule=schedule_of(state))
        return fhir(found, headers=_written(found))

    return get(f"/{route.type}/{{resource_id:str}}", operation_id=f"FhirRead{route.type}",
               name=f"fhir-read-{route.type}", opt=_opt(route.read, route.type), sync_to_thread=True,
               summary=f"Read a {route.type} by its id")(read)


def _search_handler(route: ResourceRoute) -> HTTPRouteHandler:
    def search(tenant: FromPath[str], state: State, request: Asking) -> Response:
        query, paging_params = paging.split(request.query_params.multi_items())
        params = store.parse_query(route.type, query)
        keyring = keys.keyring_for(state.db)
        path = f"/{route.type}"
        page = paging.page_of(keyring, tenant, path, query, paging_params)
        with state.db.tenant(tenant) as conn:
            paged = store.search(conn, request.user, route.type, params, _reason(request), page,
                                 schedule=schedule_of(state))
        base = _base_url(request, tenant)
        return fhir(searchset(paged.resources, base, paged.total,
                              paging.links(keyring, tenant, base, path, query, page, paged)))

    names = ", ".join([*store.SEARCH_PARAMETERS[route.type], *paging.PAGING_PARAMETERS])
    return get(f"/{route.type}", operation_id=f"FhirSearch{route.type}", name=f"fhir-search-{route.type}",
               opt=_opt(route.search, route.type), sync_to_thread=True,
               summary=f"Search {route.type} ({names}); a searchset Bundle, a page at a time")(search)


def _create_handler(route: ResourceRoute) -> HTTPRouteHandler:
    def create(tenant: FromPath[str], state: State, request: Asking, data: JSONBody[Any]) -> Response:
        resource = writes.validate(data, route.type, route.type)
        rules = writes.DoseRules(schedule_of(state), facility_timezone(state.db, tenant))
        try:
            write = writes.plan(resource, route.type, rules=rules)
        except writes.Unsupported as exc:
            raise FhirError(422, "not-supported", str(exc), expression=route.type) from None
        writes.refuse_not_kept([write])
        with state.db.tenant(tenant) as conn:
            writes.link_subjects(state.db, tenant, request.user, [write], conn)
            [created] = writes.apply(conn, request.user, [write], _reason(request), rules=rules)
        headers = _written(created) | {"location": f"{_base_url(request, tenant)}/{writes.location(created)}"}
        return fhir(created, 201, headers)

    return post(f"/{route.type}", operation_id=f"FhirCreate{route.type}", name=f"fhir-create-{route.type}",
                opt=_opt(route.create or "", route.type), sync_to_thread=True,
                summary=f"Create a {route.type}; 201 with its Location")(create)


EVERYTHING_PARAMETERS = {
    "_since": "only resources last updated at or after this instant (with its time zone)",
    paging.COUNT: f"resources a page (1 to {paging.MAX_COUNT}; 0, the total alone); without it, the whole chart",
}


def _since(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        instant = dt.datetime.fromisoformat(value)
    except ValueError:
        instant = None
    if instant is None or instant.tzinfo is None:
        raise FhirError(400, "invalid", f"_since={value!r} is not an instant: give a date, a time and a time zone "
                                        "(2024-05-01T08:00:00Z)", expression="_since")
    return instant


@get("/Patient/{resource_id:str}/$everything", operation_id="FhirPatientEverything", name="fhir-everything",
     opt=_opt(EVERYTHING_PERMISSION, "Patient"), sync_to_thread=True)
def patient_everything(tenant: FromPath[str], resource_id: FromPath[str], state: State, request: Asking) -> Response:
    """The patient and every Encounter, Condition, AllergyIntolerance, MedicationRequest, ServiceRequest,
    Observation, Immunization, Procedure, DocumentReference (for those who read every category of document),
    EpisodeOfCare (a TB treatment, for those who read the TB card) and NutritionOrder (a diet order, for those who
    read the ward's diets) of
    theirs (`_since`: those updated since), as a searchset Bundle, paged by `_count`."""
    query, paging_params = paging.split(request.query_params.multi_items())
    given: dict[str, str] = {}
    for name, value in query:
        if name not in EVERYTHING_PARAMETERS:
            raise FhirError(400, "not-supported", f"$everything takes {', '.join(EVERYTHING_PARAMETERS)}, not "
                                                  f"{name!r}", expression=name)
        if name in given:
            raise FhirError(400, "invalid", f"give {name} once", expression=name)
        given[name] = value.strip()
    since = _since(given.get("_since"))
    keyring = keys.keyring_for(state.db)
    path = f"/Patient/{resource_id}/$everything"
    page = paging.page_of(keyring, tenant, path, query, paging_params)
    if paging.COUNT not in paging_params:
        page = paging.Page(store.EVERYTHING_PAGE, page.key, page.backwards)
    patient_id = store.patient_of_reference(resource_id)
    with state.db.tenant(tenant) as conn:
        paged = store.everything(conn, request.user, patient_id, _reason(request), page, since,
                                 schedule=schedule_of(state))
    base = _base_url(request, tenant)
    return fhir(searchset(paged.resources, base, paged.total, paging.links(
        keyring, tenant, base, path, query, page, paged, count_in_links=paging.COUNT in paging_params)))


@post("/", operation_id="FhirTransaction", name="fhir-transaction", opt=_opt(TRANSACTION_PERMISSION),
      sync_to_thread=True)
def transaction(tenant: FromPath[str], state: State, request: Asking, data: JSONBody[Any]) -> Response:
    """A transaction Bundle: every entry written in one tenant transaction, `urn:uuid:` references
    resolved between entries, its vaccine doses judged by the schedule as POST Immunization judges one, all or
    nothing; answered with a transaction-response Bundle."""
    rules = writes.DoseRules(schedule_of(state), facility_timezone(state.db, tenant))
    planned = writes.plan_bundle(data, strict=True, rules=rules)
    for write in planned.writes:
        route = BY_TYPE[write.resource_type]
        needed = route.create or route.in_transaction
        if needed is None or not request.user.can(needed):
            raise FhirError(403, "forbidden", f"your role may not create a {write.resource_type} ({needed})",
                            expression=write.where)
    with state.db.tenant(tenant) as conn:
        writes.link_subjects(state.db, tenant, request.user, planned.writes, conn)
        created = writes.apply(conn, request.user, planned.writes, _reason(request), rules=rules)
    base = _base_url(request, tenant)
    response = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "transaction-response",
                "timestamp": dt.datetime.now(dt.UTC).isoformat(),
                "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                           "response": {"status": "201 Created", "location": writes.location(r),
                                        **({"etag": _written(r)["etag"]} if _written(r) else {}),
                                        **({"lastModified": r["meta"]["lastUpdated"]}
                                           if r.get("meta", {}).get("lastUpdated") else {})}}
                          for r in created]}
    return fhir(response)


@get("/metadata", operation_id="FhirCapabilities", name="fhir-metadata", opt=_opt(METADATA_PERMISSION))
async def metadata(tenant: FromPath[str], request: Asking) -> Response:
    """The CapabilityStatement: exactly the resources, interactions and search parameters served."""
    return fhir(capability_statement(_base_url(request, tenant)))


@get(["/{resource_type:str}", "/{resource_type:str}/{resource_id:str}"], operation_id="FhirUnsupportedType",
     name="fhir-unsupported", opt=_opt(METADATA_PERMISSION), include_in_schema=False)
async def unsupported_type(resource_type: FromPath[str]) -> Response:
    """Anything else under the base: an OperationOutcome saying what is served, not a bare 404."""
    return _outcome(404, f"{resource_type} is not served here; this facade serves "
                         f"{', '.join(BY_TYPE)} (see metadata)", code="not-supported")


WRITES = ["POST", "PUT", "PATCH", "DELETE"]


def _not_served(path: str, methods: list[str], name: str) -> HTTPRouteHandler:
    """The methods an address does not take, answered as an OperationOutcome (the router's own 405
    is the JSON API's shape)."""
    async def refuse(request: Request) -> Response:
        return _outcome(405, f"{request.method} {request.scope.get('path_template', '').split('/fhir', 1)[-1]} is "
                             "not served here: this facade reads, searches and creates (see metadata)",
                        code="not-supported")

    return any_method(path, http_method=methods, name=name, opt=_opt(METADATA_PERMISSION), status_code=405,
                      include_in_schema=False)(refuse)


HANDLERS: list[HTTPRouteHandler] = [
    *(_search_handler(r) for r in RESOURCE_ROUTES),
    *(_read_handler(r) for r in RESOURCE_ROUTES),
    *(_create_handler(r) for r in RESOURCE_ROUTES if r.create),
    patient_everything, transaction, metadata, unsupported_type,
    *(_not_served(f"/{r.type}", [m for m in WRITES if m != "POST" or not r.create], f"fhir-not-served-{r.type}")
      for r in RESOURCE_ROUTES),
    *(_not_served(f"/{r.type}/{{resource_id:str}}", WRITES, f"fhir-not-served-{r.type}-id") for r in RESOURCE_ROUTES),
    _not_served("/{resource_type:str}", WRITES, "fhir-not-served-type"),
    _not_served("/{resource_type:str}/{resource_id:str}", WRITES, "fhir-not-served-type-id"),
]


def interactions(route: ResourceRoute) -> list[str]:
    """What the handlers above serve for this type, in CapabilityStatement terms."""
    names = {h.name for h in HANDLERS if h.opt.get("fhir_type") == route.type}
    found = []
    if f"fhir-read-{route.type}" in names:
        found.append("read")
    if f"fhir-search-{route.type}" in names:
        found.append("search-type")
    if f"fhir-create-{route.type}" in names:
        found.append("create")
    return found


# Every search pages (see `paging`): its page size is a parameter of each, and listed with each.
COUNT_PARAMETER = {"name": paging.COUNT, "type": "number",
                   "documentation": f"matches a page (default {paging.DEFAULT_COUNT}, at most {paging.MAX_COUNT}; "
                                    "0, the total alone); follow the Bundle's next link for the rest"}


def capability_statement(base: str) -> dict:
    resources = []
    for route in RESOURCE_ROUTES:
        entry: dict[str, Any] = {
            "type": route.type,
            "interaction": [{"code": code} for code in interactions(route)],
        }
        if route.create or route.in_transaction:
            entry["documentation"] = (f"A create keeps {elements.describe(writes.KEPT[route.type])}, besides id, "
                                      "meta and text; any other element is refused (422 naming it), nothing written")
        if "search-type" in interactions(route):
            entry["searchParam"] = [*({"name": p.name, "type": p.type, "documentation": p.description}
                                      for p in store.SEARCH_PARAMETERS[route.type].values()), COUNT_PARAMETER]
        if route.type == "Patient" and any(h is patient_everything for h in HANDLERS):
            entry["operation"] = [{"name": "everything",
                                   "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                                   "documentation": "; ".join(f"{name}: {what}"
                                                              for name, what in EVERYTHING_PARAMETERS.items())}]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": dt.date.today().isoformat(),
        "kind": "instance",
        "software": {"name": "HealthOS appliance", "version": __version__},
        "implementation": {"description": "FHIR R4 facade over the facility's record", "url": base},
        "fhirVersion": "4.0.1",
        "format": [FHIR_JSON, "json"],
        "rest": [{
            "mode": "server",
            "security": {"description": "A bearer API token of this facility (or a signed-in session, reading "
                                        "only); each interaction needs the permission the OpenAPI "
                                        "document names. A chart outside the caller's care opens only with "
                                        "the header X-Break-Glass-Reason."},
            "resource": resources,
            "interaction": [{"code": "transaction"}],
        }],
    }


fhir_router = Router(path=BASE, route_handlers=HANDLERS, tags=["fhir"], exception_handlers=EXCEPTION_HANDLERS)
