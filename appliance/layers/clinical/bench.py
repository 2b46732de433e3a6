"""A department's bench: the facility's open orders of one category as the department that answers them works
them, shared by the laboratory (lab.py) and imaging (imaging.py).

An order on a bench is a current `service_request` of the department's category, still active, in one of three
states: waiting for the department (a specimen to receive, a study to perform); in its hands (the department's
own entry, of its `receipt_kind`, says who and when: the entry's author and time); resulted (results answer it
and one at least waits for a clinician's sign-off). The department names the three. Those are the bench's work,
its open orders; one whose every result is signed off is done with (`SIGNED_OFF`), listed apart.

A resulted order leaves the bench `RESULTED_SHOWN_DAYS` after its last result (long enough to correct one)
whether signed or not: sign-off is the clinician's work and not the department's, and an error found after it is
still the department's to correct (a correction goes back to the clinician's review). It leaves at once when it is
revoked or entered in error. Only orders of the last `BENCH_WINDOW_DAYS`
are read: an order stays active for good once answered, and reading every one a facility ever placed cost ~0.1 s
for a health centre's year of lab orders (1,100) and grows with every year kept; an order not worked by then is
not coming (the page says the window). One order is still found by its id, however old.

The department acts for the facility on the orders placed there: nothing here opens a chart or needs a care
relationship, because a bench shows a patient by what matches a label (name, MRN, sex, age) beside the order,
never the chart. Each read is on the patient's record: every patient listed gets a read event of the orders
(and results) shown, as the ward's worklist does.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.clinical.errors import Conflict, Invalid, NotFound
from appliance.substrate import record
from appliance.substrate.age import age_label
from appliance.substrate.principal import Principal
from appliance.substrate.record import note_list_read
from appliance.substrate.tenancy import facility_clock_of

# A department's open orders stay well under this; past it the list says it is cut short rather than render
# (and audit) rows nobody reads.
LIMIT = 300
BENCH_WINDOW_DAYS = 90
RESULTED_SHOWN_DAYS = 7
# The state of an order every result of which is signed off: on no bench's work, on its list of those signed off.
SIGNED_OFF = "signed_off"
# A device's clock a little ahead of the server's is not an act in the future.
CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Department:
    """Who answers orders of `category`: the kind of entry that says they have the order in hand, what the
    bench calls its three states (waiting, in hand, resulted), its name on the audit trail and in a refusal."""

    category: str  # service_request.category
    # The entry kind, its detail in `specimen_receipt` (service_request_id, note). The statements below find an
    # order's entries there by the order alone: a bench writes its kind only on its own category's orders, and a
    # filter on the kind tempted the planner to scan every entry of the kind where statistics were thin.
    receipt_kind: str
    states: tuple[str, str, str]
    name: str  # the list's name on each patient's read event: "laboratory", "imaging"
    noun: str  # an order of it, in a sentence: "lab order"

    @property
    def lists(self) -> tuple[str, ...]:
        """What its bench is filtered by: each of its states, and the orders signed off of late."""
        return (*self.states, SIGNED_OFF)


# The orders of the bench's window, found by the entry index on (kind, occurred_at) (a new version of an order
# is written later than the order, so a window on the current version keeps every order placed within it).
_IN_WINDOW = f"AND o.kind = 'service_request' AND o.occurred_at >= now() - interval '{BENCH_WINDOW_DAYS} days'"
# What a bench lists: nothing resulted (signed off or not) longer ago than RESULTED_SHOWN_DAYS.
_ON_BENCH = (f"NOT (state IN ('{{resulted}}', '{SIGNED_OFF}') "
             f"AND last_result_at < now() - interval '{RESULTED_SHOWN_DAYS} days')")
# One list of it: its open orders (:state NULL), one state of them, or those signed off.
_LISTED = f"COALESCE(state = CAST(:state AS text), state <> '{SIGNED_OFF}')"

# Every current, active order of the category with where it stands; `:order` keeps one (NULL: all). A result
# counts as signed off as the review list counts it (a sign-off of that version).
_BENCH = """
    WITH orders AS (
        SELECT o.root_id AS id, o.patient_id, o.encounter_id, sr.code, sr.display, sr.priority, sr.clinical_info,
               first.occurred_at AS ordered_at, first.author_id AS ordered_by
        FROM entry o JOIN service_request sr ON sr.entry_id = o.id JOIN entry first ON first.id = o.root_id
        WHERE sr.category = '{category}' AND sr.status = 'active'
          AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = o.id)
          AND (CAST(:order AS uuid) IS NULL OR o.root_id = CAST(:order AS uuid)) {window}
    ), bench AS (
        SELECT ord.*, p.mrn, p.family_name, p.given_names, p.sex, p.birth_date,
               COALESCE(enc.ward_code, enc.encounter_class) AS location,
               rc.occurred_at AS received_at, rc.author_id AS received_by, rc.note AS received_note,
               res.last_result_at,
               CASE WHEN res.results > 0 AND res.unsigned = 0 THEN '{signed_off}'
                    WHEN res.results > 0 THEN '{resulted}'
                    WHEN rc.occurred_at IS NOT NULL THEN '{in_hand}'
                    ELSE '{waiting}' END AS state
        FROM orders ord JOIN patient p ON p.id = ord.patient_id
        LEFT JOIN encounter enc ON enc.id = ord.encounter_id
        LEFT JOIN LATERAL (
            SELECT re.occurred_at, re.author_id, r.note
            FROM entry re JOIN specimen_receipt r ON r.entry_id = re.id
            WHERE r.service_request_id = ord.id AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = re.id)
            ORDER BY re.occurred_at LIMIT 1) rc ON true
        LEFT JOIN LATERAL (
            SELECT count(*) AS results, max(ve.recorded_at) AS last_result_at,
                   count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM result_signoff so WHERE so.result_id = ve.id))
                     AS unsigned
            FROM entry ve JOIN result v ON v.entry_id = ve.id
            WHERE v.service_request_id = ord.id
              AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = ve.id)) res ON true
    )
"""
_RESULTS = sa.text("""
    SELECT ve.id, ve.root_id, ve.patient_id, ve.recorded_at, ve.author_id, ve.supersedes IS NOT NULL AS corrected,
           EXISTS (SELECT 1 FROM result_signoff so WHERE so.result_id = ve.id) AS signed, v.service_request_id,
           v.code, v.display, v.value_numeric, v.value_text, v.unit, v.reference_low, v.reference_high, v.flag, v.note
    FROM entry ve JOIN result v ON v.entry_id = ve.id
    WHERE v.service_request_id = ANY(:orders) AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = ve.id)
    ORDER BY ve.occurred_at, v.code""")
# The current version of a result answering an order of the category: what its bench may correct.
_RESULT_OF_ORDER = """
    SELECT ve.patient_id, v.code, v.display, v.service_request_id
    FROM entry ve JOIN result v ON v.entry_id = ve.id
    JOIN entry o ON o.id = v.service_request_id
    WHERE ve.id = :result AND EXISTS (SELECT 1 FROM entry cur JOIN service_request sr ON sr.entry_id = cur.id
                                      WHERE cur.root_id = o.id AND sr.category = '{category}')"""
# The department's entry in force on an order: what an undoing marks entered in error.
_RECEIPT_OF = """
    SELECT re.id FROM entry re JOIN specimen_receipt r ON r.entry_id = re.id
    WHERE r.service_request_id = :order AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = re.id)"""


class Bench:
    """The statements of one department's bench, built once from constants (values are always bound)."""

    def __init__(self, department: Department):
        self.department = department
        waiting, in_hand, resulted = department.states
        words = {"category": department.category, "waiting": waiting, "in_hand": in_hand, "resulted": resulted,
                 "signed_off": SIGNED_OFF}
        on_bench = _ON_BENCH.format(resulted=resulted)
        windowed = _BENCH.format(window=_IN_WINDOW, **words)
        # Those signed off come newest result first: the one to correct is of the last days.
        self._list = sa.text(windowed + f"""
            SELECT * FROM bench WHERE {on_bench} AND {_LISTED}
            ORDER BY state = '{resulted}', CASE WHEN state = '{SIGNED_OFF}' THEN last_result_at END DESC,
                     CASE priority WHEN 'stat' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END, ordered_at, id
            LIMIT :limit""")  # noqa: S608 -- constants of this module and the department joined; values are bound
        self._counts = sa.text(windowed + f"SELECT state, count(*) FROM bench WHERE {on_bench} GROUP BY state")  # noqa: S608 -- constants
        self._one = sa.text(_BENCH.format(window="", **words) + "SELECT * FROM bench")  # noqa: S608 -- constants
        self._result_of_order = sa.text(_RESULT_OF_ORDER.format(**words))
        self._receipt_of = sa.text(_RECEIPT_OF.format(**words))

    def listed(self, conn: Connection, principal: Principal, *, today: dt.date, state: str | None) -> dict:
        """The open orders, those still to work before those resulted and waiting for sign-off, then STAT,
        urgent, routine, oldest first within each; `state` keeps one state, or `SIGNED_OFF` those done with of
        the last RESULTED_SHOWN_DAYS, newest result first. How many each list holds is counted for every one (a
        count names nobody). Each patient listed gets a read event."""
        states = self.department.lists
        if state is not None and state not in states:
            raise Invalid(f"state is one of {', '.join(states)}, not {state!r}", field="state")
        rows = [dict(r) for r in conn.execute(self._list, {"order": None, "state": state, "limit": LIMIT + 1})
                .mappings()]
        counts = dict(conn.execute(self._counts, {"order": None}).all())
        return {"state": state, "orders": self.composed(conn, principal, rows[:LIMIT], today),
                "counts": {s: counts.get(s, 0) for s in states}, "cut_short": len(rows) > LIMIT}

    def order(self, conn: Connection, order_id: uuid.UUID) -> dict:
        """One order of the category where it stands (a signed-off one too); not audited: `composed` is."""
        row = conn.execute(self._one, {"order": order_id}).mappings().first()
        if row is None:
            raise NotFound(f"no open {self.department.noun} {order_id} at this facility", order_id=str(order_id))
        return dict(row)

    def result_of_order(self, conn: Connection, result_id: uuid.UUID) -> dict:
        """The current version of a result answering an order of the category: its patient, code and order."""
        found = conn.execute(self._result_of_order, {"result": result_id}).mappings().first()
        if found is None:
            raise NotFound(f"no result {result_id} of a {self.department.noun} at this facility",
                           result_id=str(result_id))
        return dict(found)

    def receipt_of(self, conn: Connection, order_id: uuid.UUID) -> uuid.UUID:
        """The department's entry in force on the order (a received specimen, a study performed)."""
        return conn.execute(self._receipt_of, {"order": order_id}).scalar_one()

    def take_in_hand(self, conn: Connection, principal: Principal, order_id: uuid.UUID, *, note: str | None,
                     already: str, past: str, by: str, at: dt.datetime | None = None,
                     at_field: str = "occurred_at", done: str = "done") -> None:
        """Record the department's entry on an order waiting for it (a specimen received, a study performed): its
        author says who, `at` when (now if not given: an act recorded hours later is given its own time, or the
        turnaround would count the delay in writing it down), `note` how. In hand already: 409 worded by
        `already` (its `{display}`, `{at}`), naming who in the field `by`; resulted or done with: 409 worded by
        `past`; `at` still to come or before the order: 422 on `at_field`, saying when the order was `done`."""
        self.serialise(conn, order_id)
        order = self.order(conn, order_id)
        waiting, in_hand, _ = self.department.states
        if order["state"] == in_hand:
            raise Conflict(already.format(display=order["display"], at=facility_clock_of(conn, order["received_at"])),
                           **{by: str(order["received_by"])})
        if order["state"] != waiting:
            raise Conflict(past.format(display=order["display"]))
        if at is not None:
            refuse_time(conn, at, display=order["display"], ordered_at=order["ordered_at"], field=at_field,
                        done=done)
        record.append(conn, principal, self.department.receipt_kind, patient_id=order["patient_id"],
                      encounter_id=order["encounter_id"], occurred_at=at,
                      detail={"service_request_id": order["id"], "note": note})

    def serialise(self, conn: Connection, order_id: uuid.UUID) -> None:
        # Two people at one order (a button clicked twice, results typed at two desks): the second waits here,
        # then finds the first's act and is refused.
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(
            f"healthos.{self.department.category}.{order_id}", 0))))

    def composed(self, conn: Connection, principal: Principal, rows: list[dict], today: dt.date) -> list[dict]:
        """The orders with their patient's age and their results, each patient's read noted."""
        results = ([dict(r) for r in conn.execute(_RESULTS, {"orders": [r["id"] for r in rows]}).mappings()]
                   if rows else [])
        for row in rows:
            row["age"] = age_label(row["birth_date"], today)
            row["results"] = [r for r in results if r["service_request_id"] == row["id"]]
        note_list_read(conn, principal, "service_request", rows, detail={"list": self.department.name})
        note_list_read(conn, principal, "result", results, detail={"list": self.department.name})
        return rows


def refuse_time(conn: Connection, at: dt.datetime, *, display: str, ordered_at: dt.datetime | None, field: str,
                done: str, early: dt.timedelta = dt.timedelta(0)) -> None:
    """An act on an order (a specimen received, a study performed, a result observed) happens after the order was
    placed (`ordered_at`; None for a result no order asked for), or no more than `early` before it when the time is
    another machine's clock, and not later than now."""
    now = conn.execute(sa.select(sa.func.now())).scalar_one()
    given = f"{at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
    if at > now + CLOCK_SKEW:
        raise Invalid(f"{given} is still to come: give the time the {display} was {done}", field=field)
    if ordered_at is not None and at < ordered_at - early:
        raise Invalid(f"{given} is before the {display} was ordered "
                      f"({ordered_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC): give the time it was {done}", field=field)
