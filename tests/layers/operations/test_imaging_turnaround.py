"""Imaging turnaround (a companion of KPI 7, read from the record): order to first report and order to the
study performed, worked by hand over a known set of orders, what was entered in error left out, a correction
not moving the report's time; an order placed long before the window counted by when it was reported (the read
starts from the windows' reports and studies); the command center and its drill-down show it."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from appliance.layers.operations import command_center
from appliance.substrate import kpis, record
from tests.layers.operations.conftest import new_patient

NAIROBI = zoneinfo.ZoneInfo("Africa/Nairobi")
ORDERED = dt.datetime.now(NAIROBI).replace(microsecond=0) - dt.timedelta(days=2)


def _minutes(n: int) -> dt.datetime:
    return ORDERED + dt.timedelta(minutes=n)


def _order(conn, principal, patient_id, *, at: int = 0, category: str = "imaging") -> record.Entry:
    return record.append(conn, principal, "service_request", patient_id=patient_id, occurred_at=_minutes(at), detail={
        "category": category, "code": "36643-5", "display": "Chest X-ray", "priority": "routine",
        "status": "active", "clinical_info": None, "order_set": None})


def _performed(conn, principal, patient_id, order_id, at: int) -> record.Entry:
    return record.append(conn, principal, "imaging_performed", patient_id=patient_id, occurred_at=_minutes(at),
                         detail={"service_request_id": order_id, "note": None})


def _report(conn, principal, patient_id, order_id, at: int) -> record.Entry:
    return record.append(conn, principal, "result", patient_id=patient_id, occurred_at=_minutes(at), detail={
        "service_request_id": order_id, "code": "36643-5", "display": "Chest X-ray", "value_numeric": None,
        "value_text": "No acute abnormality.", "unit": None, "reference_low": None, "reference_high": None,
        "flag": None, "note": "Lungs clear."})


@pytest.fixture(scope="module")
def orders(db, facility, bed_manager) -> list:
    with db.tenant(facility.slug) as conn:
        p = new_patient(conn, bed_manager)
        a = _order(conn, bed_manager, p)  # performed 40, reported 100
        _performed(conn, bed_manager, p, a.id, 40)
        _report(conn, bed_manager, p, a.id, 100)
        b = _order(conn, bed_manager, p, at=10)  # performed 20 after it, reported 60 after, corrected later
        _performed(conn, bed_manager, p, b.id, 30)
        first = _report(conn, bed_manager, p, b.id, 70)
        record.append(conn, bed_manager, "result", patient_id=p, supersedes=first.id, occurred_at=_minutes(200),
                      reason="laterality", detail={**record.get_entry(conn, first.id).detail})
        c = _order(conn, bed_manager, p)  # performed 50, not reported yet
        _performed(conn, bed_manager, p, c.id, 50)
        d = _order(conn, bed_manager, p)  # 'performed' on the wrong order at 5, withdrawn; performed at 90;
        wrong = _performed(conn, bed_manager, p, d.id, 5)  # its report entered in error
        record.retract(conn, bed_manager, wrong.id, "recorded on the wrong order")
        _performed(conn, bed_manager, p, d.id, 90)
        record.retract(conn, bed_manager, _report(conn, bed_manager, p, d.id, 95).id, "another patient's report")
        e = _order(conn, bed_manager, p)  # ordered in error: its study and report do not count
        _performed(conn, bed_manager, p, e.id, 1)
        _report(conn, bed_manager, p, e.id, 2)
        record.retract(conn, bed_manager, e.id, "ordered on the wrong patient")
        lab = _order(conn, bed_manager, p, category="lab")  # a lab order's result is KPI 7's
        _report(conn, bed_manager, p, lab.id, 3)
    return [a, b, c, d]


def test_order_to_first_report_and_order_to_study_performed(db, facility, orders):
    window = kpis.Window(ORDERED - dt.timedelta(hours=1), ORDERED + dt.timedelta(days=1), NAIROBI)
    before = kpis.Window(ORDERED - dt.timedelta(days=1), ORDERED, NAIROBI)
    with db.tenant(facility.slug) as conn:
        figure, empty = kpis.computation_of("imaging_turnaround").compute(conn, [window, before])
    # Reported: A 100 min, B 60 (its first version; the correction does not count) → median 80 over 2.
    assert (figure.value, figure.denominator) == (pytest.approx(80), 2)
    # Performed: A 40, B 20, C 50, D 90 (the withdrawn 5 left out) → median 45.
    assert figure.secondary == pytest.approx(45)
    assert (empty.value, empty.denominator, empty.secondary) == (None, 0, None)  # no median, not zero


def test_an_order_placed_long_before_the_window_counts_by_when_it_was_reported(db, facility, bed_manager, orders):
    """The read starts from the window's reports and studies, not from its orders: a study ordered 100 days before
    it was performed and reported (a booked follow-up) counts in the window of its report, 100 days long."""
    with db.tenant(facility.slug) as conn:
        p = new_patient(conn, bed_manager)
        booked = _order(conn, bed_manager, p, at=-300 * 24 * 60)
        _performed(conn, bed_manager, p, booked.id, -200 * 24 * 60)
        _report(conn, bed_manager, p, booked.id, -200 * 24 * 60 + 30)
        window = kpis.Window(_minutes(-200 * 24 * 60 - 60), _minutes(-200 * 24 * 60 + 60), NAIROBI)
        [figure] = kpis.computation_of("imaging_turnaround").compute(conn, [window])
        [entry] = kpis.computation_of("imaging_turnaround").entries(conn, window, 10)
    assert (figure.value, figure.denominator) == (pytest.approx(100 * 24 * 60 + 30), 1)
    assert figure.secondary == pytest.approx(100 * 24 * 60)
    assert entry["entry_id"] == booked.id


def test_the_command_center_shows_it_beside_the_lab_and_drills_down_to_the_orders(db, facility, orders,
                                                                                  definitions, bed_manager):
    definition = command_center.definition_of(definitions, "imaging_turnaround")
    now = ORDERED + dt.timedelta(days=1)
    with db.tenant(facility.slug) as conn:
        [shown] = command_center.figures(conn, [definition], tz=NAIROBI, now=now)
        drilled = command_center.drilldown(conn, bed_manager, definition, tz=NAIROBI, now=now)
    assert (shown["companion"], shown["value"], shown["secondary"]) == (True, pytest.approx(80), pytest.approx(45))
    assert shown["second_reading"] == "Order to study performed" and shown["unit"] == "minutes"
    assert [(e["entry_id"], round(e["measure"])) for e in drilled["entries"]] == [(orders[1].id, 60),
                                                                                  (orders[0].id, 100)]
    assert drilled["entries"][0]["label"] == "Chest X-ray: order to first report, performed 20 min after the order"


def test_the_pages_show_both_readings(signed_in, facility, orders):
    manager = signed_in("bed_manager", facility.slug)
    row = manager.get(f"/t/{facility.slug}/command-center").text.split('id="kpi-imaging_turnaround"')[1]
    assert "Imaging turnaround" in row.split("</tr>")[0] and "order to study performed:" in row.split("</tr>")[0]
    detail = manager.get(f"/t/{facility.slug}/command-center/imaging_turnaround").text
    assert "Order to study performed, last 30 days" in detail and "Chest X-ray: order to first report" in detail
    occupancy = manager.get(f"/t/{facility.slug}/command-center/bed_occupancy").text
    assert "Occupied ÷ available bed-days, last 30 days" in occupancy  # its second reading named as before
