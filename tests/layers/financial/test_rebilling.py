"""Insurance recorded after the care (rebilling.py): the open account switches to the insurer and its
charges are credited and posted again at the insurer's prices; care before the cover, a final invoice and
a cover recorded twice are left as they were, and the answer says so."""

from __future__ import annotations

import datetime as dt
import importlib
import threading
import time
import zoneinfo
from decimal import Decimal

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations

from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.schemas import ConditionIn, MedicationIn
from appliance.layers.financial import accrual, reports, schedule, service
from appliance.layers.financial.charges import open_charges
from appliance.layers.financial.models import account, charge, fee_item, invoice
from appliance.layers.nursing import service as nursing
from appliance.layers.nursing.schemas import AdministrationIn
from appliance.layers.operations import adt
from appliance.substrate import kpis, record
from appliance.substrate.db import tenant_schema
from appliance.substrate.record import entry
from tests.layers.financial.conftest import FULL_BLOOD_COUNT, GLUCOSE, MALARIA_SMEAR, order, visit


def charges_of(conn, account_id) -> list[dict]:
    return [dict(r) for r in conn.execute(
        sa.select(entry.c.id, entry.c.root_id, entry.c.reason, charge)
        .select_from(entry.join(charge, charge.c.entry_id == entry.c.id))
        .where(charge.c.account_id == account_id, record.current_clause())
        .order_by(entry.c.recorded_at, charge.c.quantity.desc())).mappings()]


def nhif(conn, clerk, patient, valid_from=dt.date(2020, 1, 1), valid_to=None) -> dict:
    return service.add_coverage(conn, clerk, patient["id"], payer_code="NHIF", member_number="NH-CASHIER",
                                valid_from=valid_from, valid_to=valid_to)


def test_cover_recorded_after_the_care_moves_the_open_account_and_its_draft_to_the_insurer(
        db, facility, clinician, clerk):
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        clinical.add_condition(conn, clinician, patient["id"], ConditionIn(code="B54", encounter_id=encounter["id"]))
        order(conn, clinician, patient, encounter, FULL_BLOOD_COUNT)
        order(conn, clinician, patient, encounter, MALARIA_SMEAR)
        account_id = conn.execute(sa.select(account.c.id).where(account.c.encounter_id == encounter["id"])).scalar()
        draft = service.draft_invoice(conn, clerk, account_id)
        assert draft["payer_code"] is None and draft["total"] == Decimal("650.50")
        self_paid = charges_of(conn, account_id)

        recorded = nhif(conn, clerk, patient)

        [switched] = recorded["accounts"]
        assert switched["outcome"] == "switched" and switched["account_id"] == account_id
        assert (switched["rebilled"], switched["amount_before"], switched["amount_after"]) == (
            2, Decimal("650.50"), Decimal("530.00"))
        assert switched["summary"].endswith("now bills National Health Insurance Fund: 2 charges re-priced on its "
                                            "price list (KES 650.50 → KES 530.00).")
        after = charges_of(conn, account_id)
        for old in self_paid:  # each self-pay charge has its credit and a charge at the insurer's price
            [credit] = [c for c in after if c["reverses"] == old["root_id"]]
            assert credit["amount"] == -old["amount"] and credit["reason"].startswith("insurance recorded")
            [again] = [c for c in after if c["source_root_id"] == old["source_root_id"] and c["reverses"] is None
                       and c["id"] != old["id"]]
            assert again["price_list"] == "NHI" and again["service_date"] == old["service_date"]
        live = open_charges(conn, charge.c.account_id == account_id)
        nhi_prices = {r.match_code: r.price
                      for r in conn.execute(sa.select(fee_item).where(fee_item.c.price_list == "NHI"))}
        assert sum(c["amount"] for c in live) == sum(nhi_prices[c["item_code"].lower()] for c in live) == Decimal("530")
        found = service.get_account(conn, clerk, account_id)
        assert found["payer_code"] == "NHIF" and found["charged"] == Decimal("530.00")
        draft = service.get_invoice(conn, clerk, draft["id"])
        assert draft["payer_code"] == "NHIF" and draft["total"] == Decimal("530.00")
        final = service.finalise_invoice(conn, clerk, draft["id"])
        claimed = service.create_claim(conn, clerk, final["id"])
        assert claimed["amount"] == Decimal("530.00") and claimed["member_number"] == "NH-CASHIER"

        # Recorded again (at the cashier a second time): the account already bills NHIF; nothing is re-priced.
        entries_before = conn.execute(sa.select(sa.func.count()).select_from(charge)).scalar()
        [again] = nhif(conn, clerk, patient)["accounts"]
        assert again["outcome"] == "already_insured" and again["rebilled"] == 0
        assert again["summary"].endswith("already bills National Health Insurance Fund; it is left as it is.")
        assert conn.execute(sa.select(sa.func.count()).select_from(charge)).scalar() == entries_before


def test_care_before_the_cover_keeps_its_price_and_an_unpriced_charge_gets_a_new_version(
        db, facility, clinician, clerk):
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        last_week = dt.datetime.now(dt.UTC) - dt.timedelta(days=7)
        record.append(conn, clinician, "service_request", patient_id=patient["id"], encounter_id=encounter["id"],
                      occurred_at=last_week, detail={"category": "lab", "code": FULL_BLOOD_COUNT, "display": "FBC",
                                                     "priority": "routine", "status": "active", "clinical_info": None,
                                                     "order_set": None})
        order(conn, clinician, patient, encounter, MALARIA_SMEAR)
        unpriced = order(conn, clinician, patient, encounter, GLUCOSE)
        account_id = conn.execute(sa.select(account.c.id).where(account.c.encounter_id == encounter["id"])).scalar()
        today = dt.datetime.now(zoneinfo.ZoneInfo(facility.timezone)).date()

        [switched] = nhif(conn, clerk, patient, valid_from=today - dt.timedelta(days=2))["accounts"]

        live = {c["item_code"]: c for c in open_charges(conn, charge.c.account_id == account_id)}
        assert live[FULL_BLOOD_COUNT]["price_list"] == "CASH" and live[FULL_BLOOD_COUNT]["amount"] == Decimal("450.00")
        assert live[MALARIA_SMEAR]["price_list"] == "NHI" and live[MALARIA_SMEAR]["amount"] == Decimal("150.00")
        glucose = live[GLUCOSE]  # no price on either list: a new version naming the insurer's list, no credit
        assert glucose["status"] == "unpriced" and "price list NHI" in glucose["unpriced_reason"]
        assert glucose["source_root_id"] == unpriced["root_id"] and len(record.history(conn, glucose["id"])) == 2
        assert (switched["rebilled"], switched["unpriced"], switched["before_cover"]) == (2, 1, 1)
        assert "1 charge waits on the worklist" in switched["summary"]
        assert "1 charge stays at the earlier price: dated before the cover's start" in switched["summary"]


def test_an_account_with_a_final_invoice_is_left_alone_and_named(db, facility, clinician, clerk):
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        order(conn, clinician, patient, encounter, FULL_BLOOD_COUNT)
        order(conn, clinician, patient, None, MALARIA_SMEAR)  # care outside the encounter: the patient's own account
        billed = conn.execute(sa.select(account.c.id).where(account.c.encounter_id == encounter["id"])).scalar()
        final = service.finalise_invoice(conn, clerk, service.draft_invoice(conn, clerk, billed)["id"])
        before = charges_of(conn, billed)

        outcome = {a["outcome"]: a for a in nhif(conn, clerk, patient)["accounts"]}

        assert set(outcome) == {"final_invoice", "switched"}
        left = outcome["final_invoice"]
        assert left["account_id"] == billed and left["final_invoice"] == final["number"]
        assert f"its invoice {final['number']} is final" in left["summary"]
        assert charges_of(conn, billed) == before
        assert conn.execute(sa.select(account.c.payer_code).where(account.c.id == billed)).scalar() is None
        assert conn.execute(sa.select(invoice.c.payer_code).where(invoice.c.id == final["id"])).scalar() is None
        assert outcome["switched"]["amount_after"] == Decimal("150.00")


def test_a_dose_and_bed_days_are_priced_again_as_their_reactions_priced_them(db, facility, clinician, clerk):
    nairobi = zoneinfo.ZoneInfo("Africa/Nairobi")
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        prescribed = clinical.request_medication(conn, clinician, patient["id"], MedicationIn(
            drug="Ceftriaxone", dose=Decimal(2), dose_unit="g", route="IV", frequency="as needed",
            encounter_id=encounter["id"])).placed[0]
        nursing.record_administration(conn, clinician, patient["id"], AdministrationIn(
            medication_request_id=prescribed["id"], outcome="given"), now=dt.datetime.now(dt.UTC), tz=nairobi)
        admitted = dt.datetime.now(nairobi).replace(hour=10, minute=0, second=0, microsecond=0) - dt.timedelta(days=3)
        adt.admit(conn, clinician, patient["id"], ward_code="GEN", at=admitted)
        adt.discharge(conn, clinician, patient["id"], disposition="home", at=admitted + dt.timedelta(days=2))
        accrual.accrue_bed_days(conn, clinician)

        nhif(conn, clerk, patient)

        live = open_charges(conn, entry.c.patient_id == patient["id"])
    by_kind = {(c["item_kind"], c["price_list"]): [] for c in live}
    for c in live:
        by_kind[(c["item_kind"], c["price_list"])].append((c["quantity"], c["amount"]))
    # (the discharge finished the inpatient stay, whose consultation neither list prices: still unpriced)
    assert by_kind == {("medication", "NHI"): [(2, Decimal("600.00"))],
                       ("bed_day", "NHI"): [(1, Decimal("1800.00")), (1, Decimal("1800.00"))],
                       ("consultation", "NHI"): [(1, None)]}



def _smear_charged_yesterday(conn, clinician) -> tuple[dict, record.Entry, kpis.Window]:
    """A patient whose malaria smear was ordered yesterday at noon and written down then, so its charge was
    posted then too (the bulk path's replay of a past record), and yesterday's window, facility time."""
    zone = zoneinfo.ZoneInfo(schedule.setting(conn).timezone)
    today = dt.datetime.now(zone).date()
    yesterday = kpis.Window(dt.datetime.combine(today - dt.timedelta(days=1), dt.time(0), zone),
                            dt.datetime.combine(today, dt.time(0), zone), zone)
    patient, encounter = visit(conn, clinician)
    noon = yesterday.start + dt.timedelta(hours=12)
    [smear] = record.append_many(conn, clinician, [record.NewEntry(
        kind="service_request", patient_id=patient["id"], encounter_id=encounter["id"], occurred_at=noon,
        recorded_at=noon, detail={"category": "lab", "code": MALARIA_SMEAR, "display": "Malaria smear",
                                  "priority": "routine", "status": "active", "clinical_info": None,
                                  "order_set": None})])
    return patient, smear, yesterday


def test_a_re_priced_charge_is_not_a_late_capture(db, facility, clinician, clerk):
    """Yesterday's smear, charged yesterday: the cover recorded today credits that charge and posts it again
    at the insurer's price, today. The care was still charged on its day: the same-day capture KPI, the
    variance report and the late-charge rate say the same after the re-pricing as before it."""
    kpi = kpis.computation_of("same_day_charge_capture")
    with db.tenant(facility.slug) as conn:
        patient, smear, yesterday = _smear_charged_yesterday(conn, clinician)

        def figures() -> tuple:
            [figure] = kpi.compute(conn, [yesterday])
            outcome = {r.root_id: r.outcome for r in reports.billable_entries(
                conn, yesterday.start, yesterday.end, str(yesterday.tz))}[smear.root_id]
            rate = reports.late_charge_rate(conn, yesterday.start.date(), yesterday.start.date())
            return (figure.numerator, figure.denominator), outcome, (rate["late"], rate["late_charges"],
                                                                     rate["charges"])

        before = figures()
        [switched] = nhif(conn, clerk, patient)["accounts"]
        after = figures()
        [charged] = open_charges(conn, charge.c.source_root_id == smear.root_id)
    assert switched["rebilled"] == 1 and charged["price_list"] == "NHI"
    assert before[1] == "same_day"
    assert after == before


def test_migration_t0014_corrects_what_t0008_kept_for_a_re_priced_charge(db, facility, clinician, clerk):
    """A schema upgraded to t0014 already holds re-priced charges that t0008's function kept as captured
    late: the upgrade refreshes them; its downgrade puts t0008's reading back (and refreshes them again)."""
    t0014 = importlib.import_module(
        "appliance.substrate.migrations.tenant.versions.t0014_capture_at_first_priced_charge")
    with db.tenant(facility.slug) as conn:
        patient, smear, yesterday = _smear_charged_yesterday(conn, clinician)
        nhif(conn, clerk, patient)
    kept_day = sa.text("SELECT charged_day FROM charge_capture WHERE root_id = :root")
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"),
                     {"schema": tenant_schema(facility.slug)})
        with Operations.context(MigrationContext.configure(conn)):
            t0014.downgrade()
            as_t0008_kept = conn.execute(kept_day, {"root": smear.root_id}).scalar()
            t0014.upgrade()
        upgraded = conn.execute(kept_day, {"root": smear.root_id}).scalar()
    assert (as_t0008_kept, upgraded) == (dt.datetime.now(yesterday.tz).date(), yesterday.start.date())


def _one_waits_for_the_other(db, slug: str, first, second) -> bool:
    """Run `first` in a tenant transaction held open, then `second` in another; True if `second` was seen
    waiting on a lock of the first's before the first committed (then both run to their end)."""
    held, release, failures = threading.Event(), threading.Event(), []

    def run_first() -> None:
        try:
            with db.tenant(slug) as conn:
                first(conn)
                held.set()
                release.wait(20)
        except Exception as exc:  # reported from the test's thread, asserted on below
            failures.append(exc)
        finally:
            held.set()

    def run_second() -> None:
        try:
            with db.tenant(slug) as conn:
                second(conn)
        except Exception as exc:  # as above
            failures.append(exc)

    holder = threading.Thread(target=run_first)
    holder.start()
    held.wait(20)
    waiter = threading.Thread(target=run_second)
    waiter.start()
    waiting = False
    deadline = time.monotonic() + 20
    while waiter.is_alive() and not waiting and time.monotonic() < deadline:
        waiter.join(0.02)
        with db.control() as conn:
            waiting = conn.execute(sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).scalar() > 0
    release.set()
    holder.join(20)
    waiter.join(20)
    assert failures == []
    return waiting


def test_an_order_placed_while_the_cover_is_saved_is_billed_to_the_insurer(db, facility, clinician, clerk):
    """Two real transactions, each way round, on a visit with nothing billed yet (a cover that re-prices
    nothing writes nothing to the record, so no row of the patient's makes the two take turns). A charge
    priced while the cover's transaction is open waits for it and is priced for the insurer; a cover saved
    while an order's charge is being priced waits for that charge to commit and re-prices it. Before, the
    first order kept the self-pay price and the second cover re-priced nothing."""
    with db.tenant(facility.slug) as conn:
        during_cover, during_cover_visit = visit(conn, clinician)
        during_order, during_order_visit = visit(conn, clinician)
    placed = {}

    def place(patient, encounter):
        return lambda conn: placed.setdefault(patient["id"], order(conn, clinician, patient, encounter, MALARIA_SMEAR))

    waited_for_cover = _one_waits_for_the_other(db, facility.slug, lambda conn: nhif(conn, clerk, during_cover),
                                                place(during_cover, during_cover_visit))
    waited_for_order = _one_waits_for_the_other(db, facility.slug, place(during_order, during_order_visit),
                                                lambda conn: nhif(conn, clerk, during_order))
    with db.tenant(facility.slug) as conn:
        billed = {pid: open_charges(conn, charge.c.source_root_id == placed[pid]["root_id"])
                  for pid in (during_cover["id"], during_order["id"])}
        payers = dict(conn.execute(sa.select(account.c.patient_id, account.c.payer_code).where(
            account.c.patient_id.in_(list(billed)))).all())
    assert (waited_for_cover, waited_for_order) == (True, True)
    for pid, [smear] in billed.items():
        assert (smear["price_list"], smear["amount"], payers[pid]) == ("NHI", Decimal("150.00"), "NHIF")
