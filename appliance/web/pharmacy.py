"""The outpatient pharmacy's pages in the tenant portal, under `/t/{tenant}/`: the queue of prescriptions to
hand over with a dispense form on each (`/pharmacy`), the stock on hand with what is low and what is out and
the forms to add an item, receive goods and adjust a batch (`/pharmacy/stock`), and the dispensing history
on the patient's chart (a chart tab, a line per dispense, and the chart's timeline).

They keep the portal's rules (appliance/web/portal.py): server-rendered, no script, each route declares its
permission, forms carry the CSRF token and Post/Redirect/Get, a refusal is the page again with its sentence
at the top (409, 422), never a traceback. Everything is read and written through the operations layer's
`pharmacy` service, which audits it; the chart tab is read under `clinical.medication.read` (what was
dispensed against a prescription is part of the medicines a clinician or nurse reads) and passes the
care-relationship guard as every chart page does.

The quantity the dispense form proposes is the prescription's whole course in the item's unit
(`pharmacy.course_quantity`: dose × doses a day × days, as the API proposes it), less what was dispensed,
where the frequency is one the ward's drug round reads and the dose is in the item's strength unit or its
own unit. Otherwise the pharmacist types it. A prescription matching one of the patient's active allergies (the
prescriber's check, `clinical.drugs.check`, asked again at the counter) carries the match beside the drug. Under the
queue, the day's dispenses each carry a form to reverse one recorded by mistake, with the reason; a dispense of
an earlier day is not reversed (the medicine has left the pharmacy). Medicine a patient brings back is found
by the patient's MRN (`/pharmacy/returns`: their dispenses of the queue's days, each with what is still out)
and recorded as a return against its dispense: the quantity, fit to restock or not, and why; a dispense
recorded on the wrong patient after its day is corrected by a return of its whole quantity, reason "wrong
patient", as the pages say.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

from anyio import to_thread
from litestar import Response, Router, get, post
from litestar.response import Template
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from appliance.layers.clinical import drugs
from appliance.layers.clinical import service as clinical
from appliance.layers.operations import pharmacy
from appliance.layers.operations.errors import Invalid
from appliance.layers.operations.models import ADJUSTMENT_REASONS
from appliance.layers.operations.schemas import (
    AdjustmentIn,
    DispenseIn,
    DispenseReturnIn,
    DispenseReversalIn,
    PharmacyItemIn,
    ReceiptIn,
)
from appliance.substrate.record import RecordError
from appliance.substrate.tenancy import facility_today, facility_today_and_start
from appliance.web import portal
from appliance.web.portal import (
    HELPERS,
    PATIENT,
    Asking,
    FormData,
    Id,
    Query,
    Tenant,
    banner,
    form_values,
    page,
    see_other,
)

portal.NAV.extend([
    portal.NavItem("Pharmacy", "pharmacy", "Pharmacy queue", "/pharmacy", "operations.pharmacy.dispense.read"),
    portal.NavItem("Pharmacy", "pharmacy-stock", "Pharmacy stock", "/pharmacy/stock", "operations.pharmacy.stock.read"),
])
portal.CHART_TABS.insert(-1, portal.ChartTab("dispensing", "Dispensing", "/dispensing", "clinical.medication.read"))
portal.NOTICES.update({
    "dispensed": "Dispensed; the stock on hand is down by what was handed over.",
    "dispensed-partial": "Dispensed in part; the prescription stays on the queue for the rest.",
    "item-added": "Item added to the pharmacy's stock list.",
    "received": "Goods received into stock.",
    "adjusted": "Stock adjusted, with the reason on the ledger.",
    "reversed": "Dispense reversed: its quantity is back in stock, its charge credited, and the prescription "
                "back on the queue.",
    "returned": "Return recorded: what came back is credited on the patient's account, and back in stock if it "
                "was fit to restock.",
    "returned-quarantined": "Return recorded: what came back is credited on the patient's account and "
                            "quarantined, out of stock, to be destroyed.",
})
portal.TIMELINE_SOURCES.append(portal.TimelineSource(
    "operations", "dispense", "Dispensed", "clinical.medication.read", pharmacy.dispensing_history,
    lambda r: (f"Dispensed {pharmacy.amount(r['quantity'])} {r['unit']} of {r['item']}",
               f"batch {r['batch']}" + ("; part, more to collect" if r["partial"] else "")
               + "".join(f"; {pharmacy.amount(b['quantity'])} {b['unit']} brought back" for b in r["returns"])),
    lambda r: r["dispensed_at"]))
STATUS_WORDS = {"ok": "In stock", "low": "Low: reorder", "out": "Out of stock"}


def _in_tenant(request: Asking, tenant: str, work) -> Any:
    with request.app.state.db.tenant(tenant) as conn:
        return work(conn)


def _queue_page(request: Asking, tenant: str, *, status: int = 200, refusal: str | None = None) -> Template:
    today, start = facility_today_and_start(request.app.state.db, tenant)
    def read(conn: Connection) -> tuple[list[dict], list[dict], dict]:
        waiting = pharmacy.queue(conn, request.user, start)
        # The drug–allergy check runs when a drug is prescribed, so a prescription written before the allergy was
        # recorded (or over it, with the prescriber's reason) reaches the counter unchecked: the pharmacist
        # handing it over is the last who can stop it, and sees the match beside the drug (each read audited).
        allergies = {patient_id: [(a["root_id"], a["substance"]) for a in clinical.list_allergies(
            conn, request.user, patient_id, active_only=True)] for patient_id in {row["patient_id"] for row in waiting}}
        return waiting, pharmacy.handed_over(conn, request.user, start), allergies

    waiting, handed, allergies = _in_tenant(request, tenant, read)
    for row in waiting:
        row["allergy_matches"] = drugs.check(row["drug"], allergies[row["patient_id"]])
        # "stocked", not "items" (a template reads rx.items as the dict's method); a copy of each item, since
        # an item is listed under each of its prescriptions with a quantity proposed for that one.
        row["stocked"] = [dict(item) for item in row["items"]]
        for item in row["stocked"]:
            course = pharmacy.course_quantity(row, item)
            rest = max(course - pharmacy.amount(row["dispensed"]), 0) if course is not None else None
            # Short of the rest of the course: propose what is on hand, as part of it (the patient comes back),
            # rather than a quantity the dispense can only refuse.
            item["short_of"] = rest if rest is not None and rest > item["on_hand"] > 0 else None
            item["proposed"] = pharmacy.amount(item["on_hand"]) if item["short_of"] else rest
            item["label"] = pharmacy.label(item)
        row["dispensed_text"] = _dispensed_so_far(row)
    return page(request, "pharmacy/queue.html", status=status, active="pharmacy", waiting=waiting, today=today,
                handed=handed, refusal=refusal, amount=pharmacy.amount, counted=pharmacy.counted,
                status_words=STATUS_WORDS)


def _dispensed_so_far(row: dict) -> str | None:
    """"10 of 15 capsules": what was handed over of the course, in the unit of the item last dispensed from
    (the course read in it); the count alone where the course cannot be worked out from the prescription."""
    if not row["dispensed"]:
        return None
    item = next((i for i in row["stocked"] if i["id"] == row["dispensed_item_id"]), None)
    course = pharmacy.course_quantity(row, item) if item is not None else None
    if course is None:
        return pharmacy.counted(row["dispensed"], row["dispensed_unit"])
    return f"{pharmacy.amount(row['dispensed'])} of {pharmacy.counted(course, row['dispensed_unit'])}"


@get("/pharmacy", operation_id="PortalPharmacyQueue", opt={"permission": "operations.pharmacy.dispense.read"},
     include_in_schema=False)
async def queue_page(request: Asking, tenant: Tenant) -> Template:
    """Outpatient prescriptions to hand over, today's first, each with a dispense form."""
    return await to_thread.run_sync(_queue_page, request, tenant)


def _refusal(exc: RecordError | ValidationError) -> tuple[str, int]:
    if isinstance(exc, ValidationError):
        named = portal.field_errors(exc)
        return " ".join(f"{name.replace('_', ' ').capitalize()}: {message}" for name, message in named.items()), 422
    return exc.detail[0].upper() + exc.detail[1:] + ".", exc.status


async def _act(request: Asking, tenant: str, act, done: str, again, to: str | None = None) -> Response:
    """A pharmacy form's act; refused (409, 422), the same page again with the sentence at its top. Done, the
    queue or the stock page (as `again` is), or the page `to` (a path under the tenant, its query included)."""
    try:
        outcome = await to_thread.run_sync(_in_tenant, request, tenant, act)
    except (RecordError, ValidationError) as exc:
        if isinstance(exc, RecordError) and exc.status not in {409, 422}:
            raise
        refusal, status = _refusal(exc)
        return await to_thread.run_sync(lambda: again(request, tenant, status=status, refusal=refusal))
    path = to or ("/pharmacy" if again is _queue_page else "/pharmacy/stock")
    return see_other(request, f"/t/{tenant}{path}{'&' if '?' in path else '?'}done={done(outcome)}")


@post("/pharmacy/dispenses", operation_id="PortalPharmacyDispense",
      opt={"permission": "operations.pharmacy.dispense.create"}, include_in_schema=False)
async def dispense(request: Asking, tenant: Tenant, data: FormData) -> Response:
    values = form_values(data)
    today = facility_today(request.app.state.db, tenant)

    def act(conn: Connection) -> dict:
        asked = DispenseIn.model_validate({"medication_request_id": values.get("medication_request_id"),
                                           "item_id": values.get("item_id"), "quantity": values.get("quantity"),
                                           "batch": values.get("batch"), "partial": values.get("partial") == "yes"})
        return pharmacy.dispense_medicine(conn, request.user, today=today, **asked.model_dump())

    return await _act(request, tenant, act, lambda done: "dispensed-partial" if done["partial"] else "dispensed",
                      _queue_page)


@post("/pharmacy/dispenses/{dispense_id:uuid}/reversal", operation_id="PortalPharmacyReverseDispense",
      opt={"permission": "operations.pharmacy.dispense.reverse"}, include_in_schema=False)
async def reverse_dispense(request: Asking, tenant: Tenant, dispense_id: Id, data: FormData) -> Response:
    values = form_values(data)

    _, start = facility_today_and_start(request.app.state.db, tenant)

    def act(conn: Connection) -> dict:
        asked = DispenseReversalIn.model_validate({"reason": values.get("reason")})
        return pharmacy.reverse_dispense(conn, request.user, dispense_id, reason=asked.reason, today_start=start)

    return await _act(request, tenant, act, lambda _: "reversed", _queue_page)


def _returns_page(request: Asking, tenant: str, mrn: str, *, status: int = 200, refusal: str | None = None) -> Template:
    _, start = facility_today_and_start(request.app.state.db, tenant)
    since = start - dt.timedelta(days=pharmacy.QUEUE_DAYS)
    dispenses = _in_tenant(request, tenant, lambda conn: pharmacy.handed_over(conn, request.user, since, mrn=mrn)) \
        if mrn else []
    return page(request, "pharmacy/returns.html", status=status, active="pharmacy", mrn=mrn, dispenses=dispenses,
                days=pharmacy.QUEUE_DAYS, refusal=refusal, amount=pharmacy.amount,
                counted=pharmacy.counted)


@get("/pharmacy/returns", operation_id="PortalPharmacyReturns", opt={"permission": "operations.pharmacy.dispense.read"},
     include_in_schema=False)
async def returns_page(request: Asking, tenant: Tenant, mrn: Query = "") -> Template:
    """Medicine brought back: the patient's dispenses of the queue's days, found by MRN, each with a return form."""
    return await to_thread.run_sync(_returns_page, request, tenant, mrn.strip())


@post("/pharmacy/dispenses/{dispense_id:uuid}/returns", operation_id="PortalPharmacyReturnDispense",
      opt={"permission": "operations.pharmacy.dispense.return"}, include_in_schema=False)
async def return_dispense(request: Asking, tenant: Tenant, dispense_id: Id, data: FormData) -> Response:
    values = form_values(data)
    mrn = (values.get("mrn") or "").strip()
    today = facility_today(request.app.state.db, tenant)

    def act(conn: Connection) -> dict:
        asked = DispenseReturnIn.model_validate({k: values.get(k) for k in ("quantity", "condition", "reason")})
        return pharmacy.return_dispense(conn, request.user, dispense_id, today=today, **asked.model_dump())

    def again(request: Asking, tenant: str, *, status: int, refusal: str) -> Template:
        return _returns_page(request, tenant, mrn, status=status, refusal=refusal)

    return await _act(request, tenant, act, lambda done: "returned" if done["condition"] == "fit"
                      else "returned-quarantined", again, to=f"/pharmacy/returns?mrn={quote(mrn)}")


def _stock_page(request: Asking, tenant: str, *, status: int = 200, refusal: str | None = None) -> Template:
    today = facility_today(request.app.state.db, tenant)
    items = _in_tenant(request, tenant, lambda conn: pharmacy.stock(conn, today))
    for item in items:
        item["label"] = pharmacy.label(item)
    return page(request, "pharmacy/stock.html", status=status, active="pharmacy-stock", items=items, today=today,
                low=[i for i in items if i["status"] == "low"], out=[i for i in items if i["status"] == "out"],
                refusal=refusal, amount=pharmacy.amount, status_words=STATUS_WORDS, reasons=ADJUSTMENT_REASONS)


@get("/pharmacy/stock", operation_id="PortalPharmacyStock", opt={"permission": "operations.pharmacy.stock.read"},
     include_in_schema=False)
async def stock_page(request: Asking, tenant: Tenant) -> Template:
    """Stock on hand by item and batch (earliest expiry first), what is low and what is out, and the forms."""
    return await to_thread.run_sync(_stock_page, request, tenant)


@post("/pharmacy/items", operation_id="PortalPharmacyCreateItem", opt={"permission": "operations.pharmacy.item.create"},
      include_in_schema=False)
async def create_item(request: Asking, tenant: Tenant, data: FormData) -> Response:
    values = form_values(data)

    def act(conn: Connection) -> dict:
        asked = PharmacyItemIn.model_validate({k: values.get(k) for k in ("drug", "form", "strength", "strength_unit",
                                                                          "unit")}
                                              | {"reorder_level": values.get("reorder_level") or 0})
        return pharmacy.create_item(conn, request.user, **asked.model_dump())

    return await _act(request, tenant, act, lambda _: "item-added", _stock_page)


@post("/pharmacy/items/{item_id:uuid}/receipts", operation_id="PortalPharmacyReceive",
      opt={"permission": "operations.pharmacy.stock.create"}, include_in_schema=False)
async def receive(request: Asking, tenant: Tenant, item_id: Id, data: FormData) -> Response:
    values = form_values(data)
    today = facility_today(request.app.state.db, tenant)

    def act(conn: Connection) -> dict:
        asked = ReceiptIn.model_validate({k: values.get(k) for k in ("batch", "expires_on", "quantity", "reference")})
        return pharmacy.receive(conn, request.user, item_id, today=today, **asked.model_dump())

    return await _act(request, tenant, act, lambda _: "received", _stock_page)


@post("/pharmacy/items/{item_id:uuid}/adjustments", operation_id="PortalPharmacyAdjust",
      opt={"permission": "operations.pharmacy.stock.update"}, include_in_schema=False)
async def adjust(request: Asking, tenant: Tenant, item_id: Id, data: FormData) -> Response:
    values = form_values(data)

    def act(conn: Connection) -> dict:
        asked = AdjustmentIn.model_validate({k: values.get(k) for k in ("batch", "quantity", "reason", "note")})
        if asked.quantity == 0:
            raise Invalid("an adjustment changes the stock: give a quantity other than 0", field="quantity")
        return pharmacy.adjust(conn, request.user, item_id, **asked.model_dump())

    return await _act(request, tenant, act, lambda _: "adjusted", _stock_page)


@get(PATIENT + "/dispensing", operation_id="PortalDispensingHistory", opt={"permission": "clinical.medication.read"},
     sync_to_thread=True, include_in_schema=False)
def dispensing_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """What the pharmacy handed this patient, a line per dispense, latest first."""
    with request.app.state.db.tenant(tenant) as conn:
        top = banner(conn, request.user, patient_id)
        history = pharmacy.dispensing_history(conn, request.user, patient_id)
    return page(request, "pharmacy/history.html", active="patients", patient_id=patient_id, tab="dispensing",
                history=history, amount=pharmacy.amount, **top, **HELPERS)


ROUTES = [queue_page, dispense, reverse_dispense, returns_page, return_dispense, stock_page,
          create_item, receive, adjust, dispensing_page]

pharmacy_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES, exception_handlers=portal.EXCEPTION_HANDLERS,
                         guards=[portal.care_relationship_guard], tags=["portal"], include_in_schema=False)
