"""The fee schedule inside a facility's schema, synchronised from `tenants/<slug>.toml`, and pricing:
which price a billable item has for a patient on a day.

The price list is the patient's payer's (their coverage valid that day), else the self-pay list.
Prices are matched on the item's kind and code (LOINC for tests, encounter class for consultations,
ward kind for bed-days, the drug for medications) and the day's effective period. A file without a
fee schedule still gets its `billing_setting` row (currency, time zone): every charge is then
unpriced and waits on the worklist — captured, never dropped.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from appliance.layers.financial.models import billing_setting, charge_capture, fee_item, payer, price_list
from appliance.substrate.tenancy import register_config_applier
from appliance.substrate.tenant_config import TenantConfig, minor_units


@register_config_applier
def sync_fee_schedule(conn: Connection, config: TenantConfig) -> None:
    schedule = config.fee_schedule
    values = {"currency": config.currency, "minor_units": minor_units(config.currency), "timezone": config.timezone,
              "census_time": schedule.census_time if schedule else dt.time(0, 0),
              "self_pay_price_list": schedule.self_pay_price_list if schedule else None}
    previous_timezone = conn.execute(sa.select(billing_setting.c.timezone)).scalar()
    statement = postgresql.insert(billing_setting).values(id=1, **values)
    conn.execute(statement.on_conflict_do_update(index_elements=[billing_setting.c.id], set_=values))
    if previous_timezone != config.timezone:
        # KPI 8's projection keeps the facility-local days of each care and charge (capture.py): a new
        # time zone moves them.
        conn.execute(sa.update(charge_capture).values(
            care_day=sa.cast(sa.func.timezone(config.timezone, charge_capture.c.occurred_at), sa.Date),
            charged_day=sa.cast(sa.func.timezone(config.timezone, charge_capture.c.charged_at), sa.Date)))
    lists = [{"code": p.code, "name": p.name, "active": True} for p in (schedule.price_lists if schedule else [])]
    payers = [{"code": p.code, "name": p.name, "kind": p.kind, "price_list": p.price_list, "active": True}
              for p in (schedule.payers if schedule else [])]
    for table, rows in ((price_list, lists), (payer, payers)):
        if rows:
            upsert = postgresql.insert(table).values(rows)
            updates = {c.name: upsert.excluded[c.name] for c in table.c if c.name != "code"}
            conn.execute(upsert.on_conflict_do_update(index_elements=[table.c.code], set_=updates))
        # Removed from the file: deactivated, not deleted — coverage and invoices name them.
        conn.execute(sa.update(table).where(table.c.code.not_in([r["code"] for r in rows] or [""]), table.c.active)
                     .values(active=False))
    # Prices are copied onto each charge when it is posted, so the schedule itself can be replaced whole.
    conn.execute(sa.delete(fee_item))
    items = [
        {"kind": item.kind, "match_code": item.code.lower(), "price_list": code, "effective_from": item.effective_from,
         "effective_to": item.effective_to, "code": item.code, "name": item.name, "department": item.department,
         "unit": item.unit, "per": item.per, "price": price}
        for item in (schedule.items if schedule else []) for code, price in item.prices.items()
    ]
    if items:
        conn.execute(fee_item.insert(), items)


@dataclass(frozen=True)
class Setting:
    currency: str
    timezone: str
    census_time: dt.time
    self_pay_price_list: str | None


def setting(conn: Connection) -> Setting:
    row = conn.execute(sa.select(billing_setting.c.currency, billing_setting.c.timezone, billing_setting.c.census_time,
                                 billing_setting.c.self_pay_price_list)).first()
    if row is None:  # a schema migrated before its file was applied
        return Setting("KES", "UTC", dt.time(0, 0), None)
    return Setting(*row)


@dataclass(frozen=True)
class Price:
    """The answer to "what does this cost": the list consulted and, if it has one, the item's price."""

    currency: str
    service_date: dt.date
    price_list: str | None
    payer_code: str | None
    name: str | None = None
    department: str | None = None
    unit: str | None = None
    per: Decimal | None = None
    unit_price: Decimal | None = None
    account_id: uuid.UUID | None = None  # the encounter's open account, when asked with one
    account_payer: str | None = None  # who that account bills


# One round trip: the facility's currency and day, the patient's payer that day, the item's price, and
# the account the charge goes on if it is already open (the charge reaction's whole look-up).
_PRICE_CTES = """
    WITH s AS (
        SELECT currency, self_pay_price_list,
               (CAST(:at AS timestamptz) AT TIME ZONE timezone)::date AS day
        FROM billing_setting WHERE id = 1
    ), cov AS (
        SELECT p.code AS payer_code, p.price_list
        FROM coverage c JOIN payer p ON p.code = c.payer_code, s
        WHERE c.patient_id = :patient_id AND c.active AND p.active AND c.valid_from <= s.day
          AND (c.valid_to IS NULL OR c.valid_to >= s.day)
        ORDER BY c.recorded_at DESC LIMIT 1
    ), pl AS (
        SELECT s.currency, s.day, COALESCE((SELECT price_list FROM cov), s.self_pay_price_list) AS price_list,
               (SELECT payer_code FROM cov) AS payer_code
        FROM s
    )"""
_PRICE_SELECT = """
    SELECT pl.currency, pl.day, pl.price_list, pl.payer_code, f.name, f.department, f.unit, f.per, f.price,
           {account_id} AS account_id, a.payer_code AS account_payer
    FROM pl LEFT JOIN account a ON a.patient_id = :patient_id
                               AND a.encounter_id IS NOT DISTINCT FROM CAST(:encounter_id AS uuid)
    LEFT JOIN LATERAL (
        SELECT name, department, unit, per, price FROM fee_item
        WHERE kind = :kind AND match_code = :code AND price_list = pl.price_list
          AND effective_from <= pl.day AND (effective_to IS NULL OR effective_to >= pl.day)
        ORDER BY effective_from DESC LIMIT 1
    ) f ON true"""
# One round trip: the facility's currency and day, the patient's payer that day, the item's price, and
# the account the charge goes on (the charge reaction's whole look-up).
_PRICE = sa.text(_PRICE_CTES + _PRICE_SELECT.format(account_id="a.id"))
# The same, opening the encounter's account when it has none (a data-modifying CTE runs whatever the
# outer query reads). Numbered only when opened; a concurrent opener wins the unique key and this one
# returns no id, and the caller looks the winner's up.
_OPENING_CTE = """, opened AS (
        INSERT INTO account (id, number, patient_id, encounter_id, payer_code, opened_at)
        SELECT CAST(:new_account AS uuid), 'AC-' || lpad(nextval('account_number_seq')::text, 7, '0'),
               :patient_id, CAST(:encounter_id AS uuid), (SELECT payer_code FROM pl),
               COALESCE(CAST(:opened_at AS timestamptz), now())
        WHERE NOT EXISTS (SELECT 1 FROM account x WHERE x.patient_id = :patient_id
                                                   AND x.encounter_id IS NOT DISTINCT FROM CAST(:encounter_id AS uuid))
        ON CONFLICT DO NOTHING
        RETURNING id
    )"""
_PRICE_OPENING = sa.text(_PRICE_CTES + _OPENING_CTE
                         + _PRICE_SELECT.format(account_id="COALESCE(a.id, (SELECT id FROM opened))"))


def price_of(conn: Connection, *, kind: str, code: str, patient_id: uuid.UUID | None, at: dt.datetime,
             encounter_id: uuid.UUID | None = None, open_account: bool = False,
             opened_at: dt.datetime | None = None) -> Price:
    """The price, and the encounter's account — opened if `open_account` and it has none, dated `opened_at`
    (when the act it bills was written down; now when not given)."""
    params = {"at": at, "patient_id": patient_id, "kind": kind, "code": code.lower(), "encounter_id": encounter_id}
    if open_account and patient_id is not None:
        row = conn.execute(_PRICE_OPENING, params | {"new_account": uuid.uuid4(), "opened_at": opened_at}).first()
    else:
        row = conn.execute(_PRICE, params).first()
    if row is None:
        return Price("KES", at.date(), None, None)
    return Price(row.currency, row.day, row.price_list, row.payer_code, row.name, row.department, row.unit,
                 row.per, row.price, row.account_id, row.account_payer)
