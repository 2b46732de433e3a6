"""The operator's console, `/appliance`: what hospital IT checks before anything else — whether every
schema is at head (else the appliance answers /ready with 503), the facilities with their staff and live
API tokens, the accounts that need someone (locked, awaiting enrolment), and whether each audit log's
events are being sealed under signed checkpoints (the checkpointer signs at least once a minute).

It reads only. What changes the appliance stays in `healthos` and the Ansible playbooks, where it is
scripted and repeatable; the page names the command for each thing it shows. Nothing here is patient
data.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from litestar import Request, get
from litestar.datastructures import State
from litestar.response import Template

from appliance import __version__
from appliance.substrate import audit, identity
from appliance.substrate.migrate import CONTROL_SCHEMA, head, schema_revision, tenants_behind_head
from appliance.substrate.tenancy import list_tenants

# A log with events waiting and no checkpoint for this long: its checkpointer is not running.
CHECKPOINT_LATE = dt.timedelta(minutes=5)


def _checkpoint_age(state: audit.LogState, now: dt.datetime) -> dt.timedelta | None:
    if state.latest is None:
        return None
    return now - dt.datetime.fromisoformat(state.latest.time.replace("Z", "+00:00"))


@get("/appliance", operation_id="ApplianceConsole", tags=["appliance"], opt={"permission": "appliance.status.read"},
     sync_to_thread=True, include_in_schema=False)
def console(request: Request, state: State) -> Template:
    db = state.db
    now = dt.datetime.now(dt.UTC)
    tenants = list_tenants(db)
    behind = set(tenants_behind_head(db, [t["slug"] for t in tenants if t["status"] == "active"]))
    with db.control() as conn:
        control_at = schema_revision(conn, CONTROL_SCHEMA)
        counts = identity.facility_counts(conn)
        accounts = identity.list_accounts(conn)
    people = [a for a in accounts if a["kind"] != "machine"]
    names = {t["slug"]: t["name"] for t in tenants}
    logs = []
    for log in audit.log_states(db):
        age = _checkpoint_age(log, now)
        # A log never checkpointed has had a minute at most in a running appliance: late all the same.
        late = bool(log.awaiting) and (age is None or age > CHECKPOINT_LATE)
        logs.append({"name": names.get(log.tenant, log.tenant) if log.tenant else "The appliance", "state": log,
                     "age": age, "late": late})
    return Template("appliance.html", context={
        "principal": request.user, "version": __version__, "control_at": control_at, "control_head": head("control"),
        "tenant_head": head("tenant"), "tenants": tenants, "behind": behind, "counts": counts,
        "states": Counter(a["state"] for a in people), "attention": [a for a in people
                                                                     if a["state"] in {"locked", "awaiting enrolment"}],
        "logs": logs, "late_logs": sum(log["late"] for log in logs), "minutes": _minutes,
    })


def _minutes(age: dt.timedelta | None) -> str:
    if age is None:
        return "never"
    minutes = int(age.total_seconds() // 60)
    return "under a minute ago" if minutes < 1 else f"{minutes} min ago" if minutes < 120 else f"{minutes // 60} h ago"


ROUTES = [console]
