"""What a refused write must leave as it was: the rows of every table of a facility's schema and of the appliance's
`control` schema, counted in one statement.

A count of each table, all in one statement, is exact and read at once. PostgreSQL's own statistics are not:
`pg_stat_user_tables` holds what each server process last reported (up to a second after its transaction, later
for a connection left idle in the pool), and `pg_stat_xact_user_tables` tells only the reading connection's own
transaction, never the appliance's. Each count is a scalar subquery of one SELECT rather than a branch of a UNION
ALL: the planner runs a UNION ALL of ~130 tables as a parallel append, and starting its workers made each read
~45 ms where this one takes ~3 ms (the same plan, prepared after its fifth use).

The appliance records some refusals on purpose, and those records are all a refusal leaves:
- a prescription the drug-allergy check refused is an `allergy_alert` entry (outcome "blocked") with its detail,
  so the prescriber's attempt stays on the chart;
- a national ID whose holder elsewhere differs is answered, and a failed sign-in counted, in the appliance's own
  transaction, committed before the refusal: the answer in `control.national_id_answer` (what the hourly limit on
  the question counts) and the comparison's or sign-in's audit event;
- a throttled post (sign-in, a national package) is counted whatever its outcome, in `control.shared_value`, the
  store every serving process shares (`web.throttle`): a refused post is an attempt the limit must see.
Each is audited like any act: its event, and the event's place in the checkpointer's queue (`audit_pending`), are
exempt by the event's type, so an event of any other type (a read or write whose transaction should have been
rolled back) still counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.substrate.db import CONTROL_SCHEMA, tenant_schema

REFUSAL_EVENTS = "'record.allergy_alert.create', 'identity.subject.national_id.compare', 'identity.signin'"


def _counted(schema: str, tenant: bool) -> dict[str, str | None]:
    """Per table, which of its rows count (a WHERE clause; None: the table is a refusal's own record)."""
    event = "seq" if tenant else "log_id, seq"
    audit = {"audit_event": f"event_type NOT IN ({REFUSAL_EVENTS})",
             "audit_pending": f'({event}) NOT IN (SELECT {event} FROM "{schema}".audit_event '
                              f"WHERE event_type IN ({REFUSAL_EVENTS}))"}
    if tenant:
        return audit | {"entry": "kind <> 'allergy_alert'", "allergy_alert": None}
    return audit | {"national_id_answer": None, "shared_value": None}


class RowCounts:
    """The rows of every table of `tenant`'s schema (by its name) and of `control` (`control.subject`), read on
    `conn`, but the refusals' own records and the facility's tables named in `also_exempt` (`hl7_message`, where a
    feed's refused message is kept)."""

    def __init__(self, conn: Connection, tenant: str, *, also_exempt: Iterable[str] = ()):
        self.conn = conn
        schemas = {tenant_schema(tenant): True, CONTROL_SCHEMA: False}
        tables = conn.execute(sa.text(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ANY(:schemas) AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "ORDER BY 1, 2"), {"schemas": list(schemas)}).all()
        counts: dict[str, str] = {}
        for schema, table in tables:
            where = _counted(schema, schemas[schema]).get(table, "true")
            if where is not None and not (schemas[schema] and table in also_exempt):
                name = table if schemas[schema] else f"{schema}.{table}"
                counts[name] = f'(SELECT count(*) FROM "{schema}"."{table}" WHERE {where})'
        self.tables = list(counts)
        self.statement = sa.text(f"SELECT {', '.join(counts.values())}")

    def read(self) -> dict[str, int]:
        return dict(zip(self.tables, self.conn.execute(self.statement).one(), strict=True))


def changed(before: Mapping[str, int], after: Mapping[str, int]) -> str:
    """The tables whose rows a write added or removed, as `control.subject +1, nursing_task +1`; empty if none."""
    return ", ".join(f"{table} {after[table] - before[table]:+d}" for table in after if after[table] != before[table])


def without_audit(counts: Mapping[str, int]) -> dict[str, int]:
    """`counts` but the audit trail's tables: for an act taken rather than refused that must add nothing to the
    record (a resend found to be one), whose reads are audited as any are."""
    return {table: rows for table, rows in counts.items() if not table.removeprefix("control.").startswith("audit_")}
