"""What the operations layer does when another layer's entry is appended (in the same transaction).

Lab turnaround (KPI 7) is order → first verified result. Rather than walk orders, results and
sign-offs on every command-center request, the layer keeps `lab_turnaround` as the facts arrive:

- `result_signoff` (clinical): if the result answers a lab order that has no verification yet, this
  sign-off is the order's first — one row with the order's time and the sign-off's;
- `service_request` marked entered in error (clinical): the order's row stops counting;
- `result` or `result_signoff` marked entered in error (clinical): the order's first verification is
  looked for again among the sign-offs left standing — a later one takes its place, or, if none is
  left, the row goes (the order has no verified result).

The clinical tables are read by SQL; the clinical package is never imported.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from appliance.layers.operations.models import lab_turnaround
from appliance.substrate import record
from appliance.substrate.principal import Principal
from appliance.substrate.record import Entry

_ORDER_OF_RESULT = sa.text("""
    SELECT o.id AS order_id, o.patient_id, o.occurred_at AS ordered_at, sr.display,
           EXISTS (SELECT 1 FROM entry x WHERE x.root_id = o.id AND x.status = 'entered_in_error') AS retracted
    FROM result r
    JOIN entry o ON o.id = r.service_request_id
    JOIN service_request sr ON sr.entry_id = o.id
    WHERE r.entry_id = :result_id AND sr.category = 'lab'
""")


# The order a result or sign-off record answers, from its first version (a retraction carries no detail).
_ORDER_OF_RETRACTED = {
    "result": sa.text("""
        SELECT r.service_request_id FROM entry v JOIN result r ON r.entry_id = v.id
        WHERE v.root_id = :root ORDER BY v.recorded_at LIMIT 1"""),
    "result_signoff": sa.text("""
        SELECT r.service_request_id FROM entry v JOIN result_signoff rs ON rs.entry_id = v.id
        JOIN result r ON r.entry_id = rs.result_id
        WHERE v.root_id = :root ORDER BY v.recorded_at LIMIT 1"""),
}
_FIRST_STANDING_SIGNOFF = sa.text("""
    SELECT s.id, s.occurred_at
    FROM result r JOIN entry re ON re.id = r.entry_id
    JOIN result_signoff rs ON rs.result_id = re.id JOIN entry s ON s.id = rs.entry_id
    WHERE r.service_request_id = :order
      AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.root_id = re.root_id AND x.status = 'entered_in_error')
      AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.root_id = s.root_id AND x.status = 'entered_in_error')
    ORDER BY s.occurred_at LIMIT 1
""")


def _verify_again(conn: Connection, appended: Entry) -> None:
    """A result or sign-off was entered in error: the order's first verification is the earliest
    sign-off still standing, or there is none."""
    order_id = conn.execute(_ORDER_OF_RETRACTED[appended.kind], {"root": appended.root_id}).scalar()
    if order_id is None:
        return
    standing = conn.execute(_FIRST_STANDING_SIGNOFF, {"order": order_id}).first()
    if standing is None:
        conn.execute(sa.delete(lab_turnaround).where(lab_turnaround.c.order_id == order_id))
        return
    conn.execute(sa.update(lab_turnaround).where(lab_turnaround.c.order_id == order_id)
                 .values(verified_at=standing.occurred_at, signoff_entry_id=standing.id))


def on_result(conn: Connection, principal: Principal, appended: Entry) -> None:
    if appended.status == "entered_in_error":
        _verify_again(conn, appended)


def on_result_signoff(conn: Connection, principal: Principal, appended: Entry) -> None:
    if appended.status == "entered_in_error":
        _verify_again(conn, appended)
        return
    result_id = appended.detail.get("result_id")
    if result_id is None:
        return
    order = conn.execute(_ORDER_OF_RESULT, {"result_id": result_id}).mappings().first()
    if order is None:
        return  # not a result of a lab order (imaging, or a result without an order)
    # The first sign-off wins; a later one (or one recorded late with an earlier time) keeps the earliest.
    statement = postgresql.insert(lab_turnaround).values(
        order_id=order["order_id"], patient_id=order["patient_id"], ordered_at=order["ordered_at"],
        verified_at=appended.occurred_at, signoff_entry_id=appended.id, display=order["display"],
        retracted=order["retracted"])
    conn.execute(statement.on_conflict_do_update(
        index_elements=[lab_turnaround.c.order_id],
        set_={"verified_at": statement.excluded.verified_at, "signoff_entry_id": statement.excluded.signoff_entry_id},
        where=statement.excluded.verified_at < lab_turnaround.c.verified_at))


def on_service_request(conn: Connection, principal: Principal, appended: Entry) -> None:
    if appended.status == "entered_in_error":
        conn.execute(sa.update(lab_turnaround).where(lab_turnaround.c.order_id == appended.root_id)
                     .values(retracted=True))


record.register_reaction("result", on_result)
record.register_reaction("result_signoff", on_result_signoff)
record.register_reaction("service_request", on_service_request)
