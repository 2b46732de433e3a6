"""HTTP routes of the financial layer, under /api/t/{tenant}/billing/.

Each route opens one tenant transaction (the unit of work), calls one service and shapes the answer
through an explicit response model; it declares its permission (`financial.<resource>.<action>`,
granted to billing clerks by ACC-006). Handlers are async and run the database work in a worker
thread. Refusals are structured: `{"status_code", "detail", ...}` naming the field at fault (422), the
state in the way (409) or what was not found (404) — another facility's ids are simply not found.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from anyio import to_thread
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_422_UNPROCESSABLE_ENTITY
from sqlalchemy.engine import Connection

from appliance.layers.financial import accrual, credits, refunds, reports, service
from appliance.layers.financial.schemas import (
    AccountDetail,
    AccountOut,
    AccrualOut,
    AdjustmentIn,
    AgingOut,
    BalanceOut,
    ChargeOut,
    ClaimOut,
    ClaimStatusIn,
    CoverageIn,
    CoverageOut,
    CoverageRecordedOut,
    CreditNoteIn,
    CreditOut,
    InvoiceOut,
    PaymentIn,
    PriceIn,
    ReceiptOut,
    RefundIn,
    RefundOut,
    ShortfallIn,
    TakingsOut,
    VarianceOut,
)
from appliance.substrate.principal import Principal
from appliance.substrate.problems import invalid_request_detail
from appliance.substrate.record import RecordError

Id = FromPath[uuid.UUID]
Asking = Request[Principal, Any, Any]
T = TypeVar("T")


def _problem(status: int, detail: str, **extra: Any) -> Response:
    return Response({"status_code": status, "detail": detail, **extra}, status_code=status)


def _record_error(_: Request, exc: RecordError) -> Response:
    return _problem(exc.status, exc.detail, **exc.extra)


def _invalid_request(_: Request, exc: ValidationException) -> Response:
    errors = exc.extra if isinstance(exc.extra, list) else []
    detail = invalid_request_detail(errors, exc.detail)
    return _problem(HTTP_422_UNPROCESSABLE_ENTITY, detail, errors=errors)


def _opt(permission: str) -> dict:
    return {"permission": permission}


async def _in_tenant(state: State, tenant: str, work: Callable[[Connection], T]) -> T:
    def run() -> T:
        with state.db.tenant(tenant) as conn:
            return work(conn)

    return await to_thread.run_sync(run)


def _account_detail(found: dict) -> AccountDetail:
    return AccountDetail.model_validate(found | {"invoice_ids": [i["id"] for i in found["invoices"]]})


class FinancialController(Controller):
    path = "/api/t/{tenant:str}/billing"
    tags = ["financial"]
    exception_handlers = {RecordError: _record_error, ValidationException: _invalid_request}

    # -- the worklist: unpriced charges and same-day variance --------------------------------------------

    @get("/worklist", operation_id="FinancialListUnpricedCharges", opt=_opt("financial.charge.read"))
    async def worklist(self, tenant: FromPath[str], state: State, request: Asking) -> list[ChargeOut]:
        """Charges captured without a price (the fee schedule had none), oldest first."""
        rows = await _in_tenant(state, tenant, lambda conn: service.unpriced_charges(conn, request.user))
        return [ChargeOut.model_validate(r) for r in rows]

    @post("/charges/{charge_id:uuid}/price", operation_id="FinancialPriceCharge", opt=_opt("financial.charge.price"),
          status_code=HTTP_200_OK)
    async def price_charge(self, tenant: FromPath[str], state: State, request: Asking, charge_id: Id,
                           data: JSONBody[PriceIn]) -> ChargeOut:
        """Give an unpriced charge its price (a new version of the charge; the unpriced one stays in its history)."""
        priced = await _in_tenant(state, tenant, lambda conn: service.price_charge(
            conn, request.user, charge_id, data.unit_price, data.reason))
        return ChargeOut.model_validate(priced)

    @get("/variance", operation_id="FinancialSameDayVariance", opt=_opt("financial.report.read"))
    async def variance(self, tenant: FromPath[str], state: State, request: Asking,
                       day: FromQuery[dt.date]) -> VarianceOut:
        """For one facility-local day: billable entries against charges posted the same day, late,
        unpriced and missing, by department, with the entries behind each figure; and the month's
        late-charge rate (HFMA)."""
        def work(conn: Connection) -> dict:
            found = reports.variance(conn, request.user, day)
            found["late_charge_rate"] = reports.late_charge_rate(conn, day.replace(day=1), day)
            return found

        return VarianceOut.model_validate(await _in_tenant(state, tenant, work))

    @post("/bed-days/accrue", operation_id="FinancialAccrueBedDays", opt=_opt("financial.charge.accrue"),
          status_code=HTTP_200_OK)
    async def accrue(self, tenant: FromPath[str], state: State, request: Asking) -> AccrualOut:
        """Charge the bed-days of every census passed and not yet charged (a second call charges nothing)."""
        count = await _in_tenant(state, tenant, lambda conn: accrual.accrue_bed_days(conn, request.user))
        return AccrualOut(bed_days=count)

    # -- accounts and invoices --------------------------------------------------------------------------

    @get("/accounts", operation_id="FinancialListAccounts", opt=_opt("financial.account.read"))
    async def list_accounts(self, tenant: FromPath[str], state: State, request: Asking,
                            patient_id: FromQuery[uuid.UUID | None] = None) -> list[AccountOut]:
        rows = await _in_tenant(state, tenant, lambda conn: service.list_accounts(conn, request.user,
                                                                                  patient_id=patient_id))
        return [AccountOut.model_validate(r) for r in rows]

    @get("/accounts/{account_id:uuid}", operation_id="FinancialGetAccount", opt=_opt("financial.account.read"))
    async def get_account(self, tenant: FromPath[str], state: State, request: Asking, account_id: Id) -> AccountDetail:
        """An encounter's account: every charge and credit, what is unpriced, and its invoices."""
        found = await _in_tenant(state, tenant, lambda conn: service.get_account(conn, request.user, account_id))
        return _account_detail(found)

    @post("/accounts/{account_id:uuid}/invoices", operation_id="FinancialDraftInvoice",
          opt=_opt("financial.invoice.create"), status_code=HTTP_200_OK)
    async def draft_invoice(self, tenant: FromPath[str], state: State, request: Asking, account_id: Id) -> InvoiceOut:
        """The account's draft invoice (made if there is none): its lines follow the charges until it is final."""
        found = await _in_tenant(state, tenant, lambda conn: service.draft_invoice(conn, request.user, account_id))
        return InvoiceOut.model_validate(found)

    @get("/invoices/{invoice_id:uuid}", operation_id="FinancialGetInvoice", opt=_opt("financial.invoice.read"))
    async def get_invoice(self, tenant: FromPath[str], state: State, request: Asking, invoice_id: Id) -> InvoiceOut:
        found = await _in_tenant(state, tenant, lambda conn: service.get_invoice(conn, request.user, invoice_id))
        return InvoiceOut.model_validate(found)

    @post("/invoices/{invoice_id:uuid}/adjustments", operation_id="FinancialAdjustInvoice",
          opt=_opt("financial.invoice.adjust"), status_code=HTTP_200_OK)
    async def adjust_invoice(self, tenant: FromPath[str], state: State, request: Asking, invoice_id: Id,
                             data: JSONBody[AdjustmentIn]) -> InvoiceOut:
        """A discount or exemption on a draft invoice: a percentage or an amount, why, and who approved it."""
        found = await _in_tenant(state, tenant, lambda conn: service.add_adjustment(
            conn, request.user, invoice_id, kind=data.kind, percent=data.percent, amount=data.amount,
            reason=data.reason, approved_by=data.approved_by))
        return InvoiceOut.model_validate(found)

    @post("/invoices/{invoice_id:uuid}/finalise", operation_id="FinancialFinaliseInvoice",
          opt=_opt("financial.invoice.finalise"), status_code=HTTP_200_OK)
    async def finalise_invoice(self, tenant: FromPath[str], state: State, request: Asking,
                               invoice_id: Id) -> InvoiceOut:
        """Freeze the draft (refused while the account has unpriced items)."""
        found = await _in_tenant(state, tenant, lambda conn: service.finalise_invoice(conn, request.user, invoice_id))
        return InvoiceOut.model_validate(found)

    @post("/invoices/{invoice_id:uuid}/credit-notes", operation_id="FinancialIssueCreditNote",
          opt=_opt("financial.credit_note.create"))
    async def issue_credit_note(self, tenant: FromPath[str], state: State, request: Asking, invoice_id: Id,
                                data: JSONBody[CreditNoteIn]) -> CreditOut:
        """Correct a final invoice (it is never edited): credit lines billed in error, whole or in part (a wrong
        price), with the reason. Never more than a line's amount, nor in all more than is still owed (422)."""
        found = await _in_tenant(state, tenant, lambda conn: credits.issue_credit_note(
            conn, request.user, invoice_id, lines=[(line.line_id, line.amount) for line in data.lines],
            reason=data.reason))
        return CreditOut.model_validate(found)

    @post("/invoices/{invoice_id:uuid}/write-off", operation_id="FinancialWriteOffShortfall",
          opt=_opt("financial.invoice.write_off"))
    async def write_off(self, tenant: FromPath[str], state: State, request: Asking, invoice_id: Id,
                        data: JSONBody[ShortfallIn]) -> CreditOut:
        """Write off what an insurer left unpaid on its final invoice (all of it, or `amount`), with the reason."""
        found = await _in_tenant(state, tenant, lambda conn: credits.settle_shortfall(
            conn, request.user, invoice_id, kind="write_off", amount=data.amount, reason=data.reason))
        return CreditOut.model_validate(found)

    @post("/invoices/{invoice_id:uuid}/transfer-to-patient", operation_id="FinancialTransferShortfall",
          opt=_opt("financial.invoice.transfer"))
    async def transfer_to_patient(self, tenant: FromPath[str], state: State, request: Asking, invoice_id: Id,
                                  data: JSONBody[ShortfallIn]) -> CreditOut:
        """Bill the patient for what an insurer left unpaid (all of it, or `amount`): taken off the insurer's
        invoice and put on a new final self-pay invoice (`transfer_invoice_id`)."""
        found = await _in_tenant(state, tenant, lambda conn: credits.settle_shortfall(
            conn, request.user, invoice_id, kind="transfer", amount=data.amount, reason=data.reason))
        return CreditOut.model_validate(found)

    @get("/credit-notes/{credit_id:uuid}", operation_id="FinancialGetCreditNote",
         opt=_opt("financial.credit_note.read"))
    async def get_credit_note(self, tenant: FromPath[str], state: State, request: Asking, credit_id: Id) -> CreditOut:
        """A credit note, write-off or transfer: its number, invoice, lines, amount and reason."""
        found = await _in_tenant(state, tenant, lambda conn: credits.get_credit(conn, request.user, credit_id))
        return CreditOut.model_validate(found)

    # -- payments ---------------------------------------------------------------------------------------

    @post("/invoices/{invoice_id:uuid}/payments", operation_id="FinancialRecordPayment",
          opt=_opt("financial.payment.create"))
    async def record_payment(self, tenant: FromPath[str], state: State, request: Asking, invoice_id: Id,
                             data: JSONBody[PaymentIn]) -> ReceiptOut:
        """Cash, mobile money, card or an insurer's remittance against a final invoice; returns the receipt.
        Cash above what is outstanding pays what is outstanding and the receipt says the change due
        (`tendered`, `change`); any other method above it is refused (422). A mobile-money transaction code or a
        card terminal's reference already on a receipt here is refused (422, naming the earlier receipt) unless
        `transaction_code_reused_confirmed` says one transfer or card payment pays both."""
        found = await _in_tenant(state, tenant, lambda conn: service.record_payment(
            conn, request.user, invoice_id, method=data.method, amount=data.amount, reference=data.reference,
            transaction_code_reused_confirmed=data.transaction_code_reused_confirmed))
        return ReceiptOut.model_validate(found)

    @post("/invoices/{invoice_id:uuid}/refunds", operation_id="FinancialRecordRefund",
          opt=_opt("financial.refund.create"))
    async def record_refund(self, tenant: FromPath[str], state: State, request: Asking, invoice_id: Id,
                            data: JSONBody[RefundIn]) -> RefundOut:
        """Give back what was paid beyond what is owed on a final invoice (a credit note after payment), to
        the party that paid it: the insurer (its remittances) or the patient (any other payment), named by `to`
        when both paid (422 until it is), with the method, reference and reason; never more than was overpaid nor
        than that party paid (422), nothing when nothing was (409). Money out of the day's takings."""
        found = await _in_tenant(state, tenant, lambda conn: refunds.record_refund(
            conn, request.user, invoice_id, method=data.method, amount=data.amount, reason=data.reason,
            reference=data.reference, to=data.to))
        return RefundOut.model_validate(found)

    @get("/refunds/{refund_id:uuid}", operation_id="FinancialGetRefund", opt=_opt("financial.refund.read"))
    async def get_refund(self, tenant: FromPath[str], state: State, request: Asking, refund_id: Id) -> RefundOut:
        found = await _in_tenant(state, tenant, lambda conn: refunds.refund_of(conn, request.user, refund_id))
        return RefundOut.model_validate(found)

    @get("/takings", operation_id="FinancialDaysTakings", opt=_opt("financial.payment.read"))
    async def takings(self, tenant: FromPath[str], state: State, request: Asking,
                      day: FromQuery[dt.date | None] = None) -> TakingsOut:
        """The payments received on a facility-local day (today by default) and the refunds given back (money
        out), by method and by who took or gave them, with net totals, each receipt and refund behind them, and the
        credits issued that day: the cashier's cash-up."""
        found = await _in_tenant(state, tenant, lambda conn: reports.takings(conn, request.user, day))
        return TakingsOut.model_validate(found)

    @get("/payments/{payment_id:uuid}", operation_id="FinancialGetReceipt", opt=_opt("financial.payment.read"))
    async def get_receipt(self, tenant: FromPath[str], state: State, request: Asking, payment_id: Id) -> ReceiptOut:
        found = await _in_tenant(state, tenant, lambda conn: service.receipt_of(conn, request.user, payment_id))
        return ReceiptOut.model_validate(found)

    # -- coverage and claims ----------------------------------------------------------------------------

    @get("/patients/{patient_id:uuid}/coverage", operation_id="FinancialListCoverage",
         opt=_opt("financial.coverage.read"))
    async def list_coverage(self, tenant: FromPath[str], state: State, request: Asking,
                            patient_id: Id) -> list[CoverageOut]:
        rows = await _in_tenant(state, tenant, lambda conn: service.list_coverage(conn, request.user, patient_id))
        return [CoverageOut.model_validate(r) for r in rows]

    @post("/patients/{patient_id:uuid}/coverage", operation_id="FinancialAddCoverage",
          opt=_opt("financial.coverage.create"))
    async def add_coverage(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                           data: JSONBody[CoverageIn]) -> CoverageRecordedOut:
        """A patient's membership of an insurer: charges are priced on that payer's list from now on, and
        the patient's accounts holding care in its dates that still bill the patient, with no final
        invoice, are switched to it and their charges of those dates re-priced (`accounts` says which,
        and which were left alone and why)."""
        found = await _in_tenant(state, tenant, lambda conn: service.add_coverage(
            conn, request.user, patient_id, payer_code=data.payer_code, member_number=data.member_number,
            valid_from=data.valid_from, valid_to=data.valid_to))
        return CoverageRecordedOut.model_validate(found)

    @get("/patients/{patient_id:uuid}/balance", operation_id="FinancialPatientBalance",
         opt=_opt("financial.report.read"))
    async def balance(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id) -> BalanceOut:
        found = await _in_tenant(state, tenant, lambda conn: reports.patient_balance(conn, request.user, patient_id))
        return BalanceOut.model_validate(found)

    @post("/invoices/{invoice_id:uuid}/claim", operation_id="FinancialCreateClaim", opt=_opt("financial.claim.create"))
    async def create_claim(self, tenant: FromPath[str], state: State, request: Asking, invoice_id: Id) -> ClaimOut:
        """Claim a final insurer invoice (its total less credit notes), with the diagnoses (ICD-10) on the
        patient's record."""
        found = await _in_tenant(state, tenant, lambda conn: service.create_claim(conn, request.user, invoice_id))
        return ClaimOut.model_validate(found)

    @get("/claims/{claim_id:uuid}", operation_id="FinancialGetClaim", opt=_opt("financial.claim.read"))
    async def get_claim(self, tenant: FromPath[str], state: State, request: Asking, claim_id: Id) -> ClaimOut:
        """A claim with its history: each answer of the insurer, and each credit note, write-off, transfer or refund
        on its invoice (a credit note amends a claim not yet paid, to be sent again; on a paid one, what the insurer
        is owed back)."""
        found = await _in_tenant(state, tenant, lambda conn: service.get_claim(conn, request.user, claim_id))
        return ClaimOut.model_validate(found)

    @post("/claims/{claim_id:uuid}/status", operation_id="FinancialChangeClaimStatus",
          opt=_opt("financial.claim.update"), status_code=HTTP_200_OK)
    async def change_claim(self, tenant: FromPath[str], state: State, request: Asking, claim_id: Id,
                           data: JSONBody[ClaimStatusIn]) -> ClaimOut:
        """submitted → accepted or rejected (with the insurer's reason) → paid; a rejected claim, or one a credit
        note amended, is resubmitted."""
        found = await _in_tenant(state, tenant, lambda conn: service.change_claim_status(
            conn, request.user, claim_id, data.status, data.reason))
        return ClaimOut.model_validate(found)

    # -- receivables ------------------------------------------------------------------------------------

    @get("/aging", operation_id="FinancialReceivablesAging", opt=_opt("financial.report.read"))
    async def aging(self, tenant: FromPath[str], state: State, request: Asking,
                    as_of: FromQuery[dt.date | None] = None) -> AgingOut:
        """Receivables by age (0–30, 31–60, 61–90, 90+ days), by payer, and net days in A/R."""
        found = await _in_tenant(state, tenant, lambda conn: reports.ar_aging(conn, request.user, as_of))
        return AgingOut.model_validate(found)
