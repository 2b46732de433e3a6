"""What the operations layer does when another layer's entry is appended (in the same transaction).

Lab turnaround (KPI 7) is order → first verified result. Rather than walk orders, results and
sign-offs on every command-center request, the layer keeps `lab_turnaround` as the facts arrive:

- `result_signoff` (clinical): if the result answers a lab order that has no verification yet, this
  sign-off is the order's first — one row with the order's time and the sign-off's;
- `service_request` marked entered in error (clinical): the order's row stops counting.

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


def on_result_signoff(conn: Connection, principal: Principal, appended: Entry) -> None:
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


record.register_reaction("result_signoff", on_result_signoff)
record.register_reaction("service_request", on_service_request)
