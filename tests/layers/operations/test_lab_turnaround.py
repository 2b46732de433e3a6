"""Lab turnaround (KPI 7) when the facts behind a verification are withdrawn: a result or a sign-off
entered in error hands the order's first verification to the next sign-off still standing, and an
order left with none drops out of the figure."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import sqlalchemy as sa

from appliance.substrate import kpis, record
from tests.layers.operations.conftest import new_patient

NAIROBI = zoneinfo.ZoneInfo("Africa/Nairobi")
ORDERED = dt.datetime.now(NAIROBI).replace(microsecond=0) - dt.timedelta(days=2)


def _minutes(n: int) -> dt.datetime:
    return ORDERED + dt.timedelta(minutes=n)


def _result(conn, principal, patient_id, order_id, reported: int, signed: int) -> tuple[record.Entry, record.Entry]:
    result = record.append(conn, principal, "result", patient_id=patient_id, occurred_at=_minutes(reported), detail={
        "service_request_id": order_id, "code": "2345-7", "display": "Glucose", "value_numeric": 5,
        "value_text": None, "unit": "mmol/L", "reference_low": 3.9, "reference_high": 7.8, "flag": "N", "note": None})
    signoff = record.append(conn, principal, "result_signoff", patient_id=patient_id, occurred_at=_minutes(signed),
                            detail={"result_id": result.id, "comment": None})
    return result, signoff


def _row(conn, order_id):
    return conn.execute(sa.text("SELECT verified_at, signoff_entry_id FROM lab_turnaround WHERE order_id = :o"),
                        {"o": order_id}).first()


def _figure(conn) -> kpis.Figure:
    window = kpis.Window(ORDERED - dt.timedelta(hours=1), ORDERED + dt.timedelta(days=1), NAIROBI)
    return kpis.computation_of("lab_turnaround").compute(conn, [window])[0]


def test_a_withdrawn_result_or_signoff_hands_the_verification_on_or_takes_it_away(db, facility, bed_manager):
    with db.tenant(facility.slug) as conn:
        patient_id = new_patient(conn, bed_manager)
        order = record.append(conn, bed_manager, "service_request", patient_id=patient_id, occurred_at=ORDERED,
                              detail={"category": "lab", "code": "2345-7", "display": "Glucose",
                                      "priority": "routine", "status": "active", "clinical_info": None,
                                      "order_set": None})
        first, first_signoff = _result(conn, bed_manager, patient_id, order.id, reported=60, signed=90)
        _, second_signoff = _result(conn, bed_manager, patient_id, order.id, reported=65, signed=120)
        verified = _row(conn, order.id)
        record.retract(conn, bed_manager, first.id, "result of another patient's sample")
        handed_on = _row(conn, order.id)
        handed_on_figure = _figure(conn)
        record.retract(conn, bed_manager, second_signoff.id, "signed by mistake")
        gone = _row(conn, order.id)
        gone_figure = _figure(conn)
    assert verified.signoff_entry_id == first_signoff.id and verified.verified_at == _minutes(90)
    assert handed_on.signoff_entry_id == second_signoff.id and handed_on.verified_at == _minutes(120)
    assert (handed_on_figure.value, handed_on_figure.denominator) == (120, 1)
    assert gone is None and gone_figure.value is None and gone_figure.denominator == 0
