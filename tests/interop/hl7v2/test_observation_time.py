"""A result is timed when it was observed, not when it arrived: OBX-14, else the OBR's specimen collection
(OBR-7) or results reported (OBR-22), else MSH-7, with or without a UTC offset (one without in the facility's
zone). A backlog sent after the analyser's link was down keeps its times: the chart lists results by them and
imaging turnaround counts them, while the record keeps the arrival. A time still to come, before the order or
before the specimen was collected is refused naming its field, and writes nothing. An order (ORM^O01) is timed when
it was placed, ORC-9, else MSH-7, and lab turnaround counts from that, not from its arrival."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import chart
from appliance.layers.operations.kpis import imaging_turnaround_entries, lab_turnaround_entries
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
    header = _with_sent(msh(tenant, "ORU^R01", control_id(), app="LABSYS", sender="CENTRAL LAB"), sent)
    obr = ["OBR", "1", f"{order_id}^HIS", "", panel, "", "", collected] + [""] * 14 + [reported]
    return "\r".join([header, pid(identifier), "|".join(obr), *observations]) + "\r"


def _with_sent(header: str, sent: str | None) -> str:
    """`header` with MSH-7 as the sending system stamped it, or as it was when None."""
    if sent is None:
        return header
    fields = header.split("|")
    fields[6] = sent
    return "|".join(fields)


def _orm(tenant: str, identifier: str, placer: str, *, placed: str = "", sent: str | None = None,
         test: str = "58410-2^Full blood count^LN") -> str:
    header = _with_sent(msh(tenant, "ORM^O01", control_id(), app="HIS"), sent)
    return "\r".join([header, pid(identifier), f"ORC|NW|{placer}^HIS|||||||{placed}",
                      f"OBR|1|{placer}^HIS||{test}"]) + "\r"


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


def _refused_naming(db, facility, feed, message: str, location: str, names: str, says: str) -> None:
    """`message` answered AE 102 at `location` (e.g. "ORC-9"), its sentence naming the field and saying why, and
    nothing of it written."""
    before = counts(db, facility.slug)
    [ack] = feed(message)
    assert ack.code == "AE" and ack.field("ERR", 3) == "102", ack.text
    segment, field = location.split("-")
    assert ack.field("ERR", 2) == segment and ack.field("ERR", 2, 3) == field, ack.text
    assert names in ack.field("ERR", 8) and says in ack.field("ERR", 8), ack.text
    assert counts(db, facility.slug) == before, message


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
        _refused_naming(db, facility, feed, message, location, names, says)


def _ordered(db, facility, placer: str) -> tuple[uuid.UUID, dt.datetime, dt.datetime]:
    with db.tenant(facility.slug) as conn:
        return tuple(conn.execute(sa.text(
            "SELECT e.id, e.occurred_at, e.recorded_at FROM hl7_placer_order p JOIN entry e "
            "ON e.id = p.service_request_id WHERE p.placer_number = :n"), {"n": placer}).one())


def test_an_order_sent_late_keeps_the_time_it_was_placed_and_turnaround_counts_from_it(
        db, facility, feed, feed_principal, zone):
    identifier, patient_id = _registered(db, facility, feed)
    # The ward placed the blood count three hours ago, its link down since; ORC-9 is its wall clock, no offset.
    placed = NOW - dt.timedelta(hours=3)
    placer = "ORD" + secrets.token_hex(4)
    [ack] = feed(_orm(facility.slug, identifier, placer, placed=_ts(placed.astimezone(zone), None)))
    assert ack.code == "AA", ack.text
    order, ordered_at, arrived = _ordered(db, facility, placer)
    assert ordered_at == placed and arrived > NOW - dt.timedelta(minutes=1)
    # Without ORC-9, the message's own time.
    sent, unstamped = NOW - dt.timedelta(minutes=90), "ORD" + secrets.token_hex(4)
    [ack] = feed(_orm(facility.slug, identifier, unstamped, sent=_ts(sent)))
    assert ack.code == "AA", ack.text
    assert _ordered(db, facility, unstamped)[1] == sent

    # Its haemoglobin, measured two hours ago, is not before the order; signed off an hour later.
    observed = placed + dt.timedelta(hours=1)
    [ack] = feed(_oru(facility.slug, identifier, placer, ["OBX|1|NM|718-7^Haemoglobin^LN||10.2|g/dL||||F"],
                      collected=_ts(observed)))
    assert ack.code == "AA", ack.text
    verified = observed + dt.timedelta(hours=1)
    with db.tenant(facility.slug) as conn:
        result_id = conn.execute(sa.text("SELECT r.entry_id FROM result r WHERE r.service_request_id = :o"),
                                 {"o": order}).scalar_one()
        record.append(conn, feed_principal, "result_signoff", patient_id=patient_id, occurred_at=verified,
                      detail={"result_id": result_id, "comment": None})
        rows = lab_turnaround_entries(conn, Window(placed, NOW + dt.timedelta(minutes=5), zone), 100)
    [row] = [r for r in rows if r["entry_id"] == order]
    assert float(row["measure"]) == pytest.approx(120)  # placed to signed off, not arrival to signed off


def test_an_order_placed_in_the_future_is_refused_naming_its_field_and_writes_nothing(db, facility, feed):
    identifier, _ = _registered(db, facility, feed)
    later = _ts(NOW + dt.timedelta(hours=1))
    to_come = "is still to come: give the time the Full blood count was ordered"
    for message, location, names, says in [
            (_orm(facility.slug, identifier, "ORD" + secrets.token_hex(4), placed=later), "ORC-9",
             "ORC-9 date/time of transaction: ", to_come),
            (_orm(facility.slug, identifier, "ORD" + secrets.token_hex(4), sent=later), "MSH-7",
             "MSH-7 message time: ", to_come),
            (_orm(facility.slug, identifier, "ORD" + secrets.token_hex(4), placed="00010101003000+0100"), "ORC-9",
             "ORC-9 date/time of transaction: ", "in a year from 1 to 9999 in UTC"),
            # Grace was born on 14 February 1990 (the feed's PID-7): a time the day before is a mistyped year
            (_orm(facility.slug, identifier, "ORD" + secrets.token_hex(4), placed="19900213120000+0300"), "ORC-9",
             "ORC-9 date/time of transaction: ", "is before the patient was born (14 February 1990): give the time "
             "the Full blood count was ordered")]:
        _refused_naming(db, facility, feed, message, location, names, says)
