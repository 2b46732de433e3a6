"""The fee schedule in the tenant file: validated whole (overlapping periods, unknown lists, prices
finer than the currency, medications without a unit), synchronised into the schema, and the price in
force on the day of care chosen — the demo facilities' files included."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from appliance.layers.financial import schedule
from tests.conftest import make_tenant_config
from tests.layers.financial.conftest import FINANCIAL_CONFIG, FULL_BLOOD_COUNT

REPO = Path(__file__).resolve().parents[3]


def _with(items=None, **schedule_fields) -> dict:
    fee = {**FINANCIAL_CONFIG["fee_schedule"], **schedule_fields}
    if items is not None:
        fee["items"] = items
    return {**FINANCIAL_CONFIG, "fee_schedule": fee}


def _item(**overrides) -> dict:
    return {"kind": "lab", "code": FULL_BLOOD_COUNT, "name": "FBC", "effective_from": "2026-01-01",
            "prices": {"CASH": "450.00"}, **overrides}


@pytest.mark.parametrize(("config", "message"), [
    (_with([_item(), _item(effective_from="2026-06-01")]), "overlap"),
    (_with([_item(prices={"GOLD": "1"})]), "unknown price list"),
    (_with([_item(prices={"CASH": "450.005"})]), "at most 2 decimal places"),
    (_with([_item(prices={"CASH": "-1"})]), "zero or more"),
    (_with([_item(kind="medication", code="Paracetamol")]), "dose unit"),
    (_with(self_pay_price_list="NOPE"), "self_pay_price_list"),
    (_with([_item(effective_to="2025-01-01")]), "before effective_from"),
])
def test_a_wrong_fee_schedule_fails_the_file_naming_the_problem(config, message):
    with pytest.raises(ValidationError, match=message):
        make_tenant_config(**config)


def test_a_file_without_fee_schedule_keeps_its_fingerprint():
    plain = make_tenant_config(slug="plain_one")
    assert "fee_schedule" not in plain.model_dump(mode="json")
    assert plain.fingerprint() == make_tenant_config(slug="plain_one", fee_schedule=None).fingerprint()


def test_the_demo_facilities_files_carry_valid_fee_schedules():
    from appliance.substrate.tenant_config import parse_tenant_file

    for path in sorted((REPO / "tenants").glob("*.toml")):
        config = parse_tenant_file(path)
        assert config.fee_schedule is not None and config.fee_schedule.items, path
        priced = {i.code for i in config.fee_schedule.items if i.kind in ("lab", "imaging")}
        assert priced <= {t.loinc for t in config.catalogue}, path


def test_the_price_in_force_on_the_day_of_care(db, tenant_factory):
    config = tenant_factory(**_with([_item(effective_to="2026-03-31", prices={"CASH": "400.00"}),
                                     _item(effective_from="2026-04-01", prices={"CASH": "450.00"})]))
    nairobi_midnight = dt.datetime(2026, 3, 31, 21, 30, tzinfo=dt.UTC)  # 1 April 00:30 in Nairobi
    with db.tenant(config.slug) as conn:
        march = schedule.price_of(conn, kind="lab", code=FULL_BLOOD_COUNT, patient_id=None,
                                  at=dt.datetime(2026, 3, 31, 12, tzinfo=dt.UTC))
        april = schedule.price_of(conn, kind="lab", code=FULL_BLOOD_COUNT, patient_id=None, at=nairobi_midnight)
        before = schedule.price_of(conn, kind="lab", code=FULL_BLOOD_COUNT, patient_id=None,
                                   at=dt.datetime(2025, 12, 31, 12, tzinfo=dt.UTC))
    assert (march.unit_price, march.service_date) == (Decimal("400.00"), dt.date(2026, 3, 31))
    assert (april.unit_price, april.service_date) == (Decimal("450.00"), dt.date(2026, 4, 1))
    assert before.unit_price is None and before.price_list == "CASH"
