"""The billing clerk's pages, under `/t/{tenant}/billing/`: the worklist (unpriced charges and the day's
same-day variance by department, with the entries behind each figure), accounts, an encounter's
account and invoice (discounts and exemptions, finalising, claiming, credit notes correcting a final
invoice), payment entry with a printable receipt, a printable credit note, a refund of what was overpaid with
its printable slip, the claim's history, the day's takings (the cashier's cash-up, refunds as money out) and
the A/R aging chart.

The portal's rules hold here too (appliance/web/portal.py): each page declares its permission, data is
read and written only through the financial layer's services (which audit every access), bad input
comes back on the same page beside its field (422), and a successful post redirects (303) to a page
that says what happened. Pages render on the server and work with JavaScript off; the aging chart is
server-side SVG (plots.bar_chart).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from anyio import to_thread
from litestar import Response, Router, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Template
from sqlalchemy.engine import Connection

from appliance.layers.financial import accrual, credits, refunds, reports, schedule, service
from appliance.layers.financial.errors import Invalid, NotFound
from appliance.layers.financial.money import AGING_BUCKETS, aging_bucket, format_amount, format_money
from appliance.substrate.principal import Principal
from appliance.substrate.record import RecordError
from appliance.substrate.tenancy import facility_today
from appliance.web import plots, portal
from appliance.web.portal import Asking, FormData, NavItem, form_values, page, see_other

Tenant = FromPath[str]
Id = FromPath[uuid.UUID]
BASE = "/t/{tenant}/billing"

# The financial layer's entries in the portal's navigation (portal.NAV lists it by layer).
portal.NAV.extend([
    NavItem("Financial", "billing", "Billing worklist", "/billing", "financial.charge.read", worklist=True),
    NavItem("Financial", "accounts", "Accounts", "/billing/accounts", "financial.account.read"),
    NavItem("Financial", "takings", "Day's takings", "/billing/takings", "financial.payment.read"),
    NavItem("Financial", "aging", "A/R aging", "/billing/aging", "financial.report.read"),
])
portal.NOTICES.update({
    "priced": "Charge priced; it has left the unpriced worklist.",
    "accrued": "Bed-days accrued to the last census: each stay present at a census not yet charged has its bed-day.",
    "accrued-none": "No bed-day to accrue: every stay present at the last census is already charged.",
    "drafted": "Draft invoice ready: its lines follow the account's charges until it is finalised.",
    "adjusted": "Adjustment recorded with its reason and approver.",
    "finalised": "Invoice finalised.",
    "paid": "Payment recorded.",
    "claimed": "Claim submitted to the insurer.",
    "claim-updated": "Claim updated.",
    "coverage": "Insurance recorded.",
    "credited": "Credit note issued: what it credits is no longer owed on the invoice.",
    "written-off": "Shortfall written off: it is no longer owed on the insurer's invoice.",
    "transferred": "Shortfall transferred: the patient's invoice below bills it; the insurer's no longer owes it.",
    "refunded": "Refund recorded: print this slip for whoever the money was given back to.",
})
METHODS = {"cash": "Cash", "mobile_money": "Mobile money", "card": "Card", "insurer_remittance": "Insurer remittance"}
REFUND_METHODS = {"cash": "Cash", "mobile_money": "Mobile money", "card": "Card (reversal)",
                  "bank_transfer": "Bank transfer"}
OUTCOME_LABELS = {"same_day": "Charged the same day", "late": "Charged late", "unpriced": "Unpriced",
                  "missing": "No charge"}
CREDIT_KINDS = {"credit_note": "Credit note", "write_off": "Shortfall written off",
                "transfer": "Shortfall transferred to the patient"}
KIND_LABELS = {"service_request": "Order", "medication_administration": "Dose given",
               "encounter_status": "Consultation", "dispense": "Pharmacy"}


def _opts(permission: str) -> dict:
    return {"permission": permission}


def _money(amount: Decimal | None, currency: str) -> str:
    return format_money(amount, currency)


HELPERS = {"money": _money, "methods": METHODS, "outcome_labels": OUTCOME_LABELS, "kind_labels": KIND_LABELS,
           "claim_next": service.CLAIM_TRANSITIONS, "credit_kinds": CREDIT_KINDS, "refund_methods": REFUND_METHODS}


async def _in_thread(request: Asking, tenant: str, work: Callable[[Connection], Any]) -> Any:
    """Run the page's database work and rendering off the event loop, in one tenant transaction."""
    def run() -> Any:
        with request.app.state.db.tenant(tenant) as conn:
            return work(conn)

    return await to_thread.run_sync(run)


def _page(request: Asking, template: str, *, status: int = 200, active: str = "billing", **context: Any) -> Template:
    return page(request, f"billing/{template}", status=status, active=active, **HELPERS, **context)


# An amount as a cashier types it: digits, commas only between thousands, one decimal point. Anything else is
# refused rather than guessed at: "1,50" (a decimal comma) would read as 150, and "1e3" as 1000.
TYPED_AMOUNT = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|[+-]?\.\d+")


def _decimal(value: Any) -> Decimal | None:
    typed = str(value if value is not None else "").strip()
    return Decimal(typed.replace(",", "")) if TYPED_AMOUNT.fullmatch(typed) else None


def _refusal(exc: RecordError) -> dict[str, str]:
    return {exc.extra.get("field") or "form": exc.detail[:1].upper() + exc.detail[1:]}


# -- the worklist --------------------------------------------------------------------------------------


def _worklist(request: Asking, conn: Connection, tenant: str, day: dt.date, *, status: int = 200,
              errors: dict | None = None, values: dict | None = None) -> Template:
    principal: Principal = request.user
    variance = reports.variance(conn, principal, day) if principal.can("financial.report.read") else None
    late = reports.late_charge_rate(conn, day.replace(day=1), day) if variance else None
    names = service.patients_named(conn, {e["patient_id"] for d in (variance or {}).get("departments", [])
                                          for rows in d["entries"].values() for e in rows})
    return _page(request, "worklist.html", status=status, day=day, variance=variance, late=late, names=names,
                 unpriced=service.unpriced_charges(conn, principal), errors=errors or {}, values=values or {},
                 previous_day=day - dt.timedelta(days=1), next_day=day + dt.timedelta(days=1))


def _day(value: str, today: dt.date) -> dt.date | None:
    if not value:
        return today
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


@get("/", operation_id="BillingWorklist", opt=_opts("financial.charge.read"), include_in_schema=False)
async def worklist(request: Asking, tenant: Tenant, day: FromQuery[str] = "") -> Template:
    """Unpriced charges to price, and the day's same-day variance by department."""
    def work(conn: Connection) -> Template:
        today = facility_today(request.app.state.db, tenant)
        chosen = _day(day, today)
        if chosen is None:
            return _worklist(request, conn, tenant, today, status=422,
                             errors={"day": "Give a date as YYYY-MM-DD."})
        return _worklist(request, conn, tenant, chosen)

    return await _in_thread(request, tenant, work)


@post("/charges/{charge_id:uuid}/price", operation_id="BillingPriceCharge",
      opt=_opts("financial.charge.price"), include_in_schema=False)
async def price_charge(request: Asking, tenant: Tenant, charge_id: Id, data: FormData) -> Response:
    values = form_values(data)

    def work(conn: Connection) -> Response:
        today = facility_today(request.app.state.db, tenant)
        price = _decimal(values.get("unit_price"))
        key = f"price-{charge_id}"
        if price is None:
            return _worklist(request, conn, tenant, today, status=422, values={key: values},
                             errors={key: "Give the unit price as a number, e.g. 450.00."})
        try:
            service.price_charge(conn, request.user, charge_id, price, values.get("reason") or "")
        except RecordError as exc:
            if exc.status == 404:
                raise
            return _worklist(request, conn, tenant, today, status=422, values={key: values},
                             errors={key: _refusal(exc).popitem()[1]})
        return see_other(request, f"{BASE.format(tenant=tenant)}?done=priced")

    return await _in_thread(request, tenant, work)


@post("/bed-days", operation_id="BillingAccrueBedDays", opt=_opts("financial.charge.accrue"), include_in_schema=False)
async def accrue_bed_days(request: Asking, tenant: Tenant) -> Response:
    charged = await _in_thread(request, tenant, lambda conn: accrual.accrue_bed_days(conn, request.user))
    return see_other(request, f"{BASE.format(tenant=tenant)}?done={'accrued' if charged else 'accrued-none'}")


# -- accounts and invoices -----------------------------------------------------------------------------


ACCOUNTS_SHOWN = 100


def _accounts_found(conn: Connection, principal: Principal, typed: str) -> list[dict]:
    """The accounts of what the cashier typed: an account number or an MRN as written, else the accounts of the
    patients the portal's search box finds for it (a name, an MRN without its leading zeros), as the patient at
    the counter without their card or bill is found."""
    found = service.list_accounts(conn, principal, number_or_mrn=typed, limit=ACCOUNTS_SHOWN)
    if found or not principal.can("clinical.patient.search"):
        return found
    try:
        people = portal.search_typed(conn, principal, typed)
    except RecordError:  # a single letter: nobody is found by it
        return []
    return service.list_accounts(conn, principal, patient_ids=[p["id"] for p in people],
                                 limit=ACCOUNTS_SHOWN) if people else []


@get("/accounts", operation_id="BillingAccounts", opt=_opts("financial.account.read"), include_in_schema=False)
async def accounts(request: Asking, tenant: Tenant, q: FromQuery[str] = "", unbilled: FromQuery[str] = "") -> Template:
    """The most recent accounts, or those found by account number, the patient's MRN or name (older accounts are
    reached only so); with `unbilled`, only the recent accounts with charges and no final invoice."""
    typed, only_unbilled = q.strip()[:64], bool(unbilled) and not q.strip()
    return await _in_thread(request, tenant, lambda conn: _page(
        request, "accounts.html", active="accounts", searched=typed, shown=ACCOUNTS_SHOWN, unbilled=only_unbilled,
        accounts=_accounts_found(conn, request.user, typed) if typed else service.list_accounts(
            conn, request.user, not_invoiced=only_unbilled, limit=ACCOUNTS_SHOWN),
        currency=schedule.setting(conn).currency))


def _account_page(request: Asking, conn: Connection, account_id: uuid.UUID, *, status: int = 200,
                  errors: dict | None = None, values: dict | None = None,
                  recorded_cover: uuid.UUID | None = None) -> Template:
    found = service.get_account(conn, request.user, account_id)
    coverage = service.list_coverage(conn, request.user, found["patient_id"]) \
        if request.user.can("financial.coverage.read") else []
    balance = reports.patient_balance(conn, request.user, found["patient_id"]) \
        if request.user.can("financial.report.read") else None
    # After recording insurance: what it did to the patient's accounts, read back from the record (never
    # text from the request; a cover of another patient, or a guessed id, says nothing).
    cover_outcome = service.coverage_outcome(conn, request.user, recorded_cover, found["patient_id"]) \
        if recorded_cover is not None and request.user.can("financial.coverage.read") else []
    # A cover of this patient's that changed none of their accounts says so, with its dates (a start typed
    # after the care leaves the care at self-pay prices, and the clerk should see why).
    cover_idle = next((c for c in coverage if c["id"] == recorded_cover), None) if not cover_outcome else None
    return _page(request, "account.html", status=status, active="accounts", account=found, coverage=coverage,
                 balance=balance, payers=service.list_payers(conn), errors=errors or {}, values=values or {},
                 cover_outcome=cover_outcome, cover_idle=cover_idle)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        return None


@get("/accounts/{account_id:uuid}", operation_id="BillingAccount",
     opt=_opts("financial.account.read"), include_in_schema=False)
async def account_page(request: Asking, tenant: Tenant, account_id: Id, cover: FromQuery[str] = "") -> Template:
    """An encounter's account: its charges and credits, the patient's insurance, its invoices; with `cover`
    (after recording insurance), what that cover did to the patient's accounts."""
    return await _in_thread(request, tenant, lambda conn: _account_page(
        request, conn, account_id, recorded_cover=_uuid(cover[:64]) if cover else None))


@post("/accounts/{account_id:uuid}/invoices", operation_id="BillingDraftInvoice",
      opt=_opts("financial.invoice.create"), include_in_schema=False)
async def draft_invoice(request: Asking, tenant: Tenant, account_id: Id) -> Response:
    def work(conn: Connection) -> Response:
        try:
            drafted = service.draft_invoice(conn, request.user, account_id)
        except RecordError as exc:
            if exc.status == 404:
                raise
            return _account_page(request, conn, account_id, status=409, errors=_refusal(exc))
        return see_other(request, f"{BASE.format(tenant=tenant)}/invoices/{drafted['id']}?done=drafted")

    return await _in_thread(request, tenant, work)


@post("/accounts/{account_id:uuid}/coverage", operation_id="BillingAddCoverage",
      opt=_opts("financial.coverage.create"), include_in_schema=False)
async def add_coverage(request: Asking, tenant: Tenant, account_id: Id, data: FormData) -> Response:
    """The patient's insurance membership, recorded from their account page."""
    values = form_values(data)

    def work(conn: Connection) -> Response:
        found = service.get_account(conn, request.user, account_id)
        errors: dict[str, str] = {}
        today = facility_today(request.app.state.db, tenant)
        # The start is asked for, never assumed: taken as today, a cover recorded for past care missed it.
        valid_from = _day(values.get("valid_from"), today) if values.get("valid_from") else None
        valid_to = _day(values.get("valid_to") or "", today) if values.get("valid_to") else None
        if not values.get("valid_from"):
            errors["valid_from"] = "Give the date the membership starts, as YYYY-MM-DD (the card shows it)."
        elif valid_from is None:
            errors["valid_from"] = "Give a date as YYYY-MM-DD."
        if values.get("valid_to") and valid_to is None:
            errors["valid_to"] = "Give a date as YYYY-MM-DD."
        if not errors:
            try:
                recorded = service.add_coverage(
                    conn, request.user, found["patient_id"], payer_code=values.get("payer_code") or "",
                    member_number=values.get("member_number") or "", valid_from=valid_from, valid_to=valid_to)
            except RecordError as exc:
                if exc.status == 404:
                    raise
                errors = _refusal(exc)
        if errors:
            return _account_page(request, conn, account_id, status=422, errors=errors, values=values)
        return see_other(request,
                         f"{BASE.format(tenant=tenant)}/accounts/{account_id}?done=coverage&cover={recorded['id']}")

    return await _in_thread(request, tenant, work)


def _invoice_page(request: Asking, conn: Connection, invoice_id: uuid.UUID, *, status: int = 200,
                  errors: dict | None = None, values: dict | None = None) -> Template:
    found = service.get_invoice(conn, request.user, invoice_id)
    payer_kind = next((p["kind"] for p in service.list_payers(conn) if p["code"] == found["payer_code"]), "self_pay")
    return _page(request, "invoice.html", status=status, active="accounts", invoice=found, payer_kind=payer_kind,
                 errors=errors or {}, values=values or {})


@get("/invoices/{invoice_id:uuid}", operation_id="BillingInvoice",
     opt=_opts("financial.invoice.read"), include_in_schema=False)
async def invoice_page(request: Asking, tenant: Tenant, invoice_id: Id) -> Template:
    return await _in_thread(request, tenant, lambda conn: _invoice_page(request, conn, invoice_id))


def _invoice_action(request: Asking, tenant: str, invoice_id: uuid.UUID, act: Callable[[Connection], Any],
                    done: str, *, values: dict | None = None, status: int = 409, fields: dict[str, str] | None = None,
                    to: str | None = None) -> Callable[[Connection], Response]:
    """An invoice page's form: a refusal comes back on the invoice beside its field (`fields` renames the
    service's field to the form's own, where the page holds several forms asking for a reason or an amount);
    success goes to the invoice, or with `to` to that page of what the act returned (its credit note, refund)."""
    def work(conn: Connection) -> Response:
        try:
            result = act(conn)
        except RecordError as exc:
            if exc.status == 404:
                raise
            renamed = (fields or {}).get(exc.extra.get("field") or "")
            if renamed:
                exc.extra["field"] = renamed
            return _invoice_page(request, conn, invoice_id, status=422 if exc.status == 422 else status,
                                 errors=_refusal(exc), values=values)
        shown = f"{to}/{result['id']}" if to else f"invoices/{invoice_id}"
        return see_other(request, f"{BASE.format(tenant=tenant)}/{shown}?done={done}")

    return work


@post("/invoices/{invoice_id:uuid}/adjustments", operation_id="BillingAdjustInvoice",
      opt=_opts("financial.invoice.adjust"), include_in_schema=False)
async def adjust_invoice(request: Asking, tenant: Tenant, invoice_id: Id, data: FormData) -> Response:
    """A discount or exemption: a percentage or an amount, the reason, and who approved it."""
    values = form_values(data)
    kind = values.get("kind") or "discount"
    size = _decimal(values.get("size"))

    def act(conn: Connection) -> None:
        if size is None:
            raise Invalid("give the percentage or the amount as a number", field="size")
        by_percent = values.get("by") == "percent"
        try:
            service.add_adjustment(conn, request.user, invoice_id, kind=kind, percent=size if by_percent else None,
                                   amount=None if by_percent else size, reason=values.get("reason") or "",
                                   approved_by=values.get("approved_by") or "")
        except RecordError as exc:
            if exc.extra.get("field") in {"percent", "amount"}:
                exc.extra["field"] = "size"  # the form's one box holds either: the sentence goes beside it
            raise

    return await _in_thread(request, tenant, _invoice_action(request, tenant, invoice_id, act, "adjusted",
                                                             values=values))


@post("/invoices/{invoice_id:uuid}/finalise", operation_id="BillingFinaliseInvoice",
      opt=_opts("financial.invoice.finalise"), include_in_schema=False)
async def finalise_invoice(request: Asking, tenant: Tenant, invoice_id: Id) -> Response:
    return await _in_thread(request, tenant, _invoice_action(
        request, tenant, invoice_id, lambda conn: service.finalise_invoice(conn, request.user, invoice_id),
        "finalised"))


@post("/invoices/{invoice_id:uuid}/payments", operation_id="BillingRecordPayment",
      opt=_opts("financial.payment.create"), include_in_schema=False)
async def record_payment(request: Asking, tenant: Tenant, invoice_id: Id, data: FormData) -> Response:
    """Take a payment; on success, go to its printable receipt."""
    values = form_values(data)
    amount = _decimal(values.get("amount"))

    def work(conn: Connection) -> Response:
        try:
            if amount is None:
                raise Invalid("give the amount received as a number, e.g. 1500 or 1,500.00", field="amount")
            receipt = service.record_payment(conn, request.user, invoice_id, method=values.get("method") or "",
                                             amount=amount, reference=values.get("reference"),
                                             transaction_code_reused_confirmed=bool(
                                                 values.get("transaction_code_reused_confirmed")))
        except RecordError as exc:
            if exc.status == 404:
                raise
            return _invoice_page(request, conn, invoice_id, status=422 if exc.status == 422 else 409,
                                 errors=_refusal(exc), values=values)
        return see_other(request, f"{BASE.format(tenant=tenant)}/receipts/{receipt['id']}?done=paid")

    return await _in_thread(request, tenant, work)


def _credit_lines(values: dict) -> list[tuple[uuid.UUID, Decimal | None]] | None:
    """The lines ticked on the credit-note form (`line-<id>`), each with the amount typed beside it
    (`amount-<id>`; blank: all that is left of the line; an amount alone ticks its line). None when an amount is
    not a number."""
    chosen: dict[uuid.UUID, Decimal | None] = {}
    for key, value in values.items():
        prefix, _, rest = key.partition("-")
        line_id = _uuid(rest) if prefix in ("line", "amount") and value else None
        if line_id is None:  # an unticked line sends no `line-`, and a blank amount box says nothing
            continue
        chosen.setdefault(line_id, None)
        if prefix == "amount":
            amount = _decimal(value)
            if amount is None:
                return None
            chosen[line_id] = amount
    return list(chosen.items())


@post("/invoices/{invoice_id:uuid}/credit-notes", operation_id="BillingIssueCreditNote",
      opt=_opts("financial.credit_note.create"), include_in_schema=False)
async def issue_credit_note(request: Asking, tenant: Tenant, invoice_id: Id, data: FormData) -> Response:
    """Correct a final invoice: credit the lines ticked, whole or in part, with the reason; on success, go to
    the printable credit note."""
    values = form_values(data)

    def act(conn: Connection) -> dict:
        chosen = _credit_lines(values)
        if chosen is None:
            raise Invalid("give the amount to credit on a line as a number, e.g. 150.00", field="lines")
        return credits.issue_credit_note(conn, request.user, invoice_id, lines=chosen,
                                         reason=values.get("credit_reason") or "")

    # The claim's form on the same page has a reason of its own.
    return await _in_thread(request, tenant, _invoice_action(request, tenant, invoice_id, act, "credited",
                                                             values=values, fields={"reason": "credit_reason"},
                                                             to="credit-notes"))


def _shortfall(request: Asking, tenant: str, invoice_id: uuid.UUID, values: dict, kind: str,
               done: str) -> Callable[[Connection], Response]:
    """Write off or transfer an insurer's shortfall from the invoice page's form (its own `shortfall_` fields:
    the payment and claim forms on the same page have an amount and a reason of their own)."""
    def act(conn: Connection) -> dict:
        typed = values.get("shortfall_amount")
        amount = _decimal(typed) if typed else None
        if typed and amount is None:
            raise Invalid("give the amount as a number, or leave it blank for the whole shortfall", field="amount")
        return credits.settle_shortfall(conn, request.user, invoice_id, kind=kind, amount=amount,
                                        reason=values.get("shortfall_reason") or "")

    return _invoice_action(request, tenant, invoice_id, act, done, values=values, to="credit-notes",
                           fields={"amount": "shortfall_amount", "reason": "shortfall_reason"})


@post("/invoices/{invoice_id:uuid}/write-off", operation_id="BillingWriteOffShortfall",
      opt=_opts("financial.invoice.write_off"), include_in_schema=False)
async def write_off(request: Asking, tenant: Tenant, invoice_id: Id, data: FormData) -> Response:
    """Write off what the insurer left unpaid, with the reason."""
    return await _in_thread(request, tenant, _shortfall(request, tenant, invoice_id, form_values(data),
                                                        "write_off", "written-off"))


@post("/invoices/{invoice_id:uuid}/transfer-to-patient", operation_id="BillingTransferShortfall",
      opt=_opts("financial.invoice.transfer"), include_in_schema=False)
async def transfer_to_patient(request: Asking, tenant: Tenant, invoice_id: Id, data: FormData) -> Response:
    """Bill the patient for what the insurer left unpaid, on a new self-pay invoice."""
    return await _in_thread(request, tenant, _shortfall(request, tenant, invoice_id, form_values(data),
                                                        "transfer", "transferred"))


@get("/credit-notes/{credit_id:uuid}", operation_id="BillingCreditNote",
     opt=_opts("financial.credit_note.read"), include_in_schema=False)
async def credit_note_page(request: Asking, tenant: Tenant, credit_id: Id) -> Template:
    """A credit note (or a write-off or transfer of an insurer's shortfall) laid out for printing."""
    return await _printed(request, tenant, "credit_note.html", "credit",
                          lambda conn: credits.get_credit(conn, request.user, credit_id))


async def _printed(request: Asking, tenant: str, template: str, name: str, read: Callable[[Connection], dict]
                   ) -> Template:
    """A numbered slip laid out for printing (a credit note, a refund): what `read` returns, as `name`, and who
    recorded it by their name (`recorded_by_name`)."""
    def work(conn: Connection) -> Template:
        found = read(conn)
        person = portal.people_named(request.app.state.db, {found["recorded_by"]}).get(found["recorded_by"])
        return _page(request, template, active="accounts", recorded_by_name=person or "—", **{name: found})

    return await _in_thread(request, tenant, work)


@post("/invoices/{invoice_id:uuid}/refunds", operation_id="BillingRecordRefund",
      opt=_opts("financial.refund.create"), include_in_schema=False)
async def record_refund(request: Asking, tenant: Tenant, invoice_id: Id, data: FormData) -> Response:
    """Give back what was overpaid (its own `refund_` fields: the payment form on the same page has a method, an
    amount and a reference of its own); on success, go to the printable slip."""
    values = form_values(data)
    amount = _decimal(values.get("refund_amount"))

    def act(conn: Connection) -> dict:
        if amount is None:
            raise Invalid("give the amount given back as a number, e.g. 1500 or 1,500.00", field="amount")
        return refunds.record_refund(conn, request.user, invoice_id, method=values.get("refund_method") or "",
                                     amount=amount, reason=values.get("refund_reason") or "",
                                     reference=values.get("refund_reference"), to=values.get("refund_to") or None)

    return await _in_thread(request, tenant, _invoice_action(
        request, tenant, invoice_id, act, "refunded", values=values, to="refunds",
        fields={"amount": "refund_amount", "reason": "refund_reason", "method": "refund_method",
                "reference": "refund_reference", "to": "refund_to"}))


@get("/refunds/{refund_id:uuid}", operation_id="BillingRefund",
     opt=_opts("financial.refund.read"), include_in_schema=False)
async def refund_page(request: Asking, tenant: Tenant, refund_id: Id) -> Template:
    """A refund slip laid out for printing: who was given what back, how, and why."""
    return await _printed(request, tenant, "refund.html", "refund",
                          lambda conn: refunds.refund_of(conn, request.user, refund_id))


@post("/invoices/{invoice_id:uuid}/claim", operation_id="BillingCreateClaim",
      opt=_opts("financial.claim.create"), include_in_schema=False)
async def create_claim(request: Asking, tenant: Tenant, invoice_id: Id) -> Response:
    return await _in_thread(request, tenant, _invoice_action(
        request, tenant, invoice_id, lambda conn: service.create_claim(conn, request.user, invoice_id), "claimed"))


@post("/invoices/{invoice_id:uuid}/claim/status", operation_id="BillingChangeClaimStatus",
      opt=_opts("financial.claim.update"), include_in_schema=False)
async def change_claim(request: Asking, tenant: Tenant, invoice_id: Id, data: FormData) -> Response:
    values = form_values(data)

    def act(conn: Connection) -> None:
        found = service.get_invoice(conn, request.user, invoice_id)
        if found["claim"] is None:
            raise NotFound(f"invoice {invoice_id} has no claim")
        service.change_claim_status(conn, request.user, found["claim"]["id"], values.get("status") or "",
                                    values.get("reason"))

    return await _in_thread(request, tenant, _invoice_action(request, tenant, invoice_id, act, "claim-updated",
                                                             values=values))


@get("/receipts/{payment_id:uuid}", operation_id="BillingReceipt",
     opt=_opts("financial.payment.read"), include_in_schema=False)
async def receipt_page(request: Asking, tenant: Tenant, payment_id: Id) -> Template:
    """A receipt laid out for printing (the page's navigation is not printed)."""
    def work(conn: Connection) -> Template:
        receipt = service.receipt_of(conn, request.user, payment_id)
        cashier = portal.people_named(request.app.state.db, {receipt["author_id"]}).get(receipt["author_id"])
        # An insurer's remittance came from the insurer, on the patient's behalf, not from the patient.
        insurer = service.payer_name(conn, receipt["payer_code"]) if receipt["payer_code"] else None
        return _page(request, "receipt.html", active="accounts", receipt=receipt, cashier=cashier or "—",
                     insurer=insurer)

    return await _in_thread(request, tenant, work)


@get("/takings", operation_id="BillingTakings", opt=_opts("financial.payment.read"), include_in_schema=False)
async def takings_page(request: Asking, tenant: Tenant, day: FromQuery[str] = "") -> Template:
    """The payments received on a facility-local day, by method and by who took them: the cash-up."""
    def work(conn: Connection) -> Template:
        today = facility_today(request.app.state.db, tenant)
        chosen = _day(day, today)
        errors = {} if chosen is not None else {"day": "Give a date as YYYY-MM-DD."}
        found = reports.takings(conn, request.user, chosen or today)
        names = service.patients_named(conn, {r["patient_id"] for r in found["payments"] + found["credits"]})
        cashiers = portal.people_named(request.app.state.db, {p["author_id"] for p in found["by_person"]})
        names |= service.patients_named(conn, {r["patient_id"] for r in found["refunds"]})
        payers = {p["code"]: p["name"] for p in service.list_payers(conn)}
        return _page(request, "takings.html", status=422 if errors else 200, active="takings", takings=found,
                     names=names, cashiers=cashiers, payers=payers, errors=errors,
                     typed=day if errors else found["day"].isoformat(),
                     previous_day=found["day"] - dt.timedelta(days=1), next_day=found["day"] + dt.timedelta(days=1))

    return await _in_thread(request, tenant, work)


# -- receivables ---------------------------------------------------------------------------------------

BUCKET_LABELS = {"0-30": "0–30 days", "31-60": "31–60 days", "61-90": "61–90 days", "90+": "over 90 days"}


@get("/aging", operation_id="BillingAging", opt=_opts("financial.report.read"), include_in_schema=False)
async def aging_page(request: Asking, tenant: Tenant, as_of: FromQuery[str] = "") -> Template:
    """Receivables by age with the chart, by payer, the invoices behind them and net days in A/R."""
    def work(conn: Connection) -> Template:
        today = facility_today(request.app.state.db, tenant)
        chosen = _day(as_of, today)
        errors = {} if chosen is not None else {"as_of": "Give a date as YYYY-MM-DD."}
        found = reports.ar_aging(conn, request.user, chosen or today)
        currency = found["currency"]
        counts = {bucket: 0 for bucket in AGING_BUCKETS}
        for row in found["invoices"]:
            counts[aging_bucket(row["finalised_on"], found["as_of"])] += 1
        chart = plots.bar_chart(
            [plots.Bar(BUCKET_LABELS[b], float(found["buckets"][b]), css=f"s{i + 1}",
                       title=f"{BUCKET_LABELS[b]}: {_money(found['buckets'][b], currency)} in {counts[b]} invoice(s)",
                       shown=format_amount(found["buckets"][b], currency))
             for i, b in enumerate(AGING_BUCKETS)],
            ident="aging", title=f"Receivables by age on {found['as_of']:%d %b %Y}",
            description="; ".join(f"{BUCKET_LABELS[b]}: {_money(found['buckets'][b], currency)}"
                                  for b in AGING_BUCKETS), unit=currency)
        names = service.patients_named(conn, {r["patient_id"] for r in found["invoices"]})
        return _page(request, "aging.html", status=422 if errors else 200, active="aging", aging=found, chart=chart,
                     counts=counts, bucket_labels=BUCKET_LABELS, names=names, errors=errors,
                     as_of=as_of if errors else found["as_of"].isoformat())

    return await _in_thread(request, tenant, work)


ROUTES = [worklist, price_charge, accrue_bed_days, accounts, account_page, draft_invoice, add_coverage, invoice_page,
          adjust_invoice, finalise_invoice, record_payment, issue_credit_note, write_off, transfer_to_patient,
          credit_note_page, record_refund, refund_page, create_claim,
          change_claim, receipt_page, takings_page, aging_page]

billing_router = Router(path="/t/{tenant:str}/billing", route_handlers=ROUTES,
                        exception_handlers=portal.EXCEPTION_HANDLERS, tags=["portal"], include_in_schema=False)
