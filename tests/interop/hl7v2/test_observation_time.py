"""A result is timed when it was observed, not when it arrived: OBX-14, else the OBR's specimen collection
(OBR-7) or results reported (OBR-22), else MSH-7, with or without a UTC offset (one without in the facility's
zone). A backlog sent after the analyser's link was down keeps its times: the chart lists results by them and
imaging turnaround counts them, while the record keeps the arrival. A time still to come, before the order or
before the specimen was collected is refused naming its field, and writes nothing."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import chart
from appliance.layers.operations.kpis import imaging_turnaround_entries
from appliance.substrate import identity, record, tenancy
from appliance.substrate.kpis import Window
from tests.interop.hl7v2.conftest import adt, control_id, counts, msh, pid

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _ts(at: dt.datetime, zone: dt.tzinfo | None = dt.UTC) -> str:
    """`at` as an HL7 TS: with its UTC offset, or, zone None, the facility's wall clock without one."""
    return at.strftime("%Y%m%d%H%M%S%z") if zone is not None else at.strftime("%Y%m%d%H%M%S")


def _oru(tenant: str, identifier: str, order_id: uuid.UUID | str, observations: list[str], *,
         collected: str = "", reported: str = "", sent: str | None = None,
         panel: str = "58410-2^Full blood count^LN") -> str:
    header = msh(tenant, "ORU^R01", control_id(), app="LABSYS", sender="CENTRAL LAB")
    if sent is not None:  # MSH-7 as the analyser stamped it
        fields = header.split("|")
        fields[6] = sent
        header = "|".join(fields)
    obr = ["OBR", "1", f"{order_id}^HIS", "", panel, "", "", collected] + [""] * 14 + [reported]
    return "\r".join([header, pid(identifier), "|".join(obr), *observations]) + "\r"


@pytest.fixture(scope="module")
def feed_principal(db, feed_token):
    with db.control_autocommit() as conn:
        return identity.principal_for_token(conn, feed_token)


@pytest.fixture(scope="module")
def zone(db, facility):
    return tenancy.facility_timezone(db, facility.slug)


def _registered(db, facility, feed) -> tuple[str, uuid.UUID]:
    identifier = "R" + secrets.token_hex(4).upper()
    assert feed(adt(facility.slug, "A04", identifier))[0].code == "AA"
    with db.tenant(facility.slug) as conn:
        patient_id = conn.execute(sa.text("SELECT patient_id FROM patient_identifier WHERE value = :v"),
                                  {"v": identifier}).scalar_one()
    return identifier, patient_id


def _order(db, facility, principal, patient_id: uuid.UUID, ordered_at: dt.datetime, *, code: str = "58410-2",
           display: str = "Full blood count", category: str = "lab") -> uuid.UUID:
    """An order placed at `ordered_at`, as the ward placed it before the link went down."""
    with db.tenant(facility.slug) as conn:
        return record.append(conn, principal, "service_request", patient_id=patient_id, occurred_at=ordered_at,
                             detail={"category": category, "code": code, "display": display, "priority": "routine",
                                     "status": "active", "clinical_info": None, "order_set": None}).id


def _results(db, facility, patient_id: uuid.UUID) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    with db.tenant(facility.slug) as conn:
        return {r.code: (r.occurred_at, r.recorded_at) for r in conn.execute(sa.text(
            "SELECT r.code, e.occurred_at, e.recorded_at FROM result r JOIN entry e ON e.id = r.entry_id "
            "WHERE e.patient_id = :p"), {"p": patient_id})}


def test_a_backlog_keeps_the_times_observed_and_the_chart_lists_the_latest_observed_first(
        db, facility, feed, feed_principal, zone):
    identifier, patient_id = _registered(db, facility, feed)
    order = _order(db, facility, feed_principal, patient_id, NOW - dt.timedelta(hours=3))
    # A glucose measured an hour ago arrives at once; its time is the ward's wall clock, without an offset.
    glucose_at = NOW - dt.timedelta(hours=1)
    [ack] = feed(_oru(facility.slug, identifier, "", ["OBX|1|NM|2345-7^Glucose^LN||5.2|mmol/L||||F"],
                      collected=_ts(glucose_at.astimezone(zone), None), panel="2345-7^Glucose^LN"))
    assert ack.code == "AA", ack.text
    # The full blood count was run two hours ago, the analyser's link down since: it arrives now.
    observed, collected = NOW - dt.timedelta(hours=2), NOW - dt.timedelta(hours=2, minutes=20)
    [ack] = feed(_oru(facility.slug, identifier, order, [
        f"OBX|1|NM|718-7^Haemoglobin^LN||10.2|g/dL|||||F|||{_ts(observed)}",
        "OBX|2|NM|6690-2^White cell count^LN||7.1|10*3/uL||||F"], collected=_ts(collected)))
    assert ack.code == "AA", ack.text
    times = _results(db, facility, patient_id)
    assert times["718-7"][0] == observed  # OBX-14
    assert times["6690-2"][0] == collected  # no OBX-14: the specimen's collection, OBR-7
    assert times["2345-7"][0] == glucose_at  # read in the facility's zone
    assert all(recorded > NOW - dt.timedelta(minutes=1) for _, recorded in times.values())  # arrival kept
    with db.tenant(facility.slug) as conn:
        listed = json.loads(chart.chart_summary_json(conn, feed_principal, patient_id))["results"]
    assert [r["code"] for r in listed] == ["2345-7", "718-7", "6690-2"]


def test_without_obx14_or_obr7_the_report_time_then_the_message_time(db, facility, feed, feed_principal):
    identifier, patient_id = _registered(db, facility, feed)
    order = _order(db, facility, feed_principal, patient_id, NOW - dt.timedelta(hours=4))
    reported, sent = NOW - dt.timedelta(hours=3), NOW - dt.timedelta(minutes=150)
    [ack] = feed(_oru(facility.slug, identifier, order, ["OBX|1|NM|718-7^Haemoglobin^LN||11.0|g/dL||||F"],
                      reported=_ts(reported), sent=_ts(sent)))
    assert ack.code == "AA", ack.text
    [ack] = feed(_oru(facility.slug, identifier, "", ["OBX|1|NM|2345-7^Glucose^LN||5.0|mmol/L||||F"],
                      sent=_ts(sent), panel="2345-7^Glucose^LN"))
    assert ack.code == "AA", ack.text
    times = _results(db, facility, patient_id)
    assert (times["718-7"][0], times["2345-7"][0]) == (reported, sent)


def test_imaging_turnaround_counts_the_time_the_report_was_made_not_its_arrival(
        db, facility, feed, feed_principal, zone):
    identifier, patient_id = _registered(db, facility, feed)
    ordered = NOW - dt.timedelta(hours=3)
    order = _order(db, facility, feed_principal, patient_id, ordered, code="30799-1",
                   display="CT head without contrast", category="imaging")
    [ack] = feed(_oru(facility.slug, identifier, order, ["OBX|1|TX|30799-1^CT head^LN||No acute bleed.||||||F"],
                      reported=_ts(ordered + dt.timedelta(hours=1)), panel="30799-1^CT head without contrast^LN"))
    assert ack.code == "AA", ack.text
    with db.tenant(facility.slug) as conn:
        rows = imaging_turnaround_entries(conn, Window(ordered, NOW + dt.timedelta(minutes=5), zone), 100)
    [row] = [r for r in rows if r["entry_id"] == order]
    assert float(row["measure"]) == pytest.approx(60)  # reported an hour after the order, arrived two later


def test_a_time_to_come_before_the_order_or_before_the_specimen_is_refused_and_writes_nothing(
        db, facility, feed, feed_principal):
    identifier, patient_id = _registered(db, facility, feed)
    order = _order(db, facility, feed_principal, patient_id, NOW - dt.timedelta(hours=1))
    hb = "OBX|1|NM|718-7^Haemoglobin^LN||10.2|g/dL|||||F|||"  # OBX-14 follows
    cases = [
        (_oru(facility.slug, identifier, order, [hb + _ts(NOW + dt.timedelta(hours=1))]), "OBX-14",
         "OBX-14 observation time: ", "is still to come: give the time the Haemoglobin was observed"),
        (_oru(facility.slug, identifier, order, ["OBX|1|NM|718-7^Haemoglobin^LN||10.2|g/dL||||F"],
              collected=_ts(NOW - dt.timedelta(hours=2))), "OBR-7", "OBR-7 specimen collection time: ",
         "is before the Haemoglobin was ordered"),
        (_oru(facility.slug, identifier, order, [hb + _ts(NOW - dt.timedelta(minutes=30))],
              collected=_ts(NOW - dt.timedelta(minutes=20))), "OBX-14", "OBX-14 observation time ",
         "is before the specimen was collected (OBR-7 "),
        (_oru(facility.slug, identifier, order, ["OBX|1|NM|718-7^Haemoglobin^LN||10.2|g/dL||||F"],
              sent=_ts(NOW - dt.timedelta(days=1))), "MSH-7", "MSH-7 message time: ", "is before the Haemoglobin"),
        (_oru(facility.slug, identifier, order, [hb + NOW.strftime("%Y%m%d")]), "OBX-14",
         "OBX-14 observation time ", "is not a time to the minute"),
        (_oru(facility.slug, identifier, order, [hb + "202613011200"]), "OBX-14", "OBX-14 observation time ",
         "is not a time"),
    ]
    for message, location, names, says in cases:
        before = counts(db, facility.slug)
        [ack] = feed(message)
        assert ack.code == "AE" and ack.field("ERR", 3) == "102", ack.text
        segment, field = location.split("-")
        assert ack.field("ERR", 2) == segment and ack.field("ERR", 2, 3) == field, ack.text
        assert names in ack.field("ERR", 8) and says in ack.field("ERR", 8), ack.text
        assert counts(db, facility.slug) == before, message
