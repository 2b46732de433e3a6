"""The operator's console, `/appliance`: what hospital IT checks before anything else — whether every
schema is at head (else the appliance answers /ready with 503), whether last night's backup was made
and there is room for the next, the facilities with their staff and live API tokens, the accounts that
need someone (locked, awaiting enrolment), and whether each audit log's events are being sealed under
signed checkpoints (the checkpointer signs at least once a minute).

It reads only. What changes the appliance stays in `healthos` and the Ansible playbooks, where it is
scripted and repeatable; the page names the command for each thing it shows. Nothing here is patient
data.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from litestar import Request, get
from litestar.datastructures import State
from litestar.response import Template

from appliance import __version__
from appliance.substrate import audit, identity
from appliance.substrate import backup as backups
from appliance.substrate.migrate import CONTROL_SCHEMA, head, schema_revision, tenants_behind_head
from appliance.substrate.tenancy import list_tenants

# A log with events waiting and no checkpoint for this long: its checkpointer is not running.
CHECKPOINT_LATE = dt.timedelta(minutes=5)
# The playbook schedules a backup a day; a day and a bit more without one means the schedule is not running.
BACKUP_LATE = dt.timedelta(hours=26)
# Below this share of a volume free, the next backup or a day of the database's growth may not fit.
DISK_LOW_SHARE = 0.10


@dataclass(frozen=True)
class Volume:
    what: str
    path: Path
    total: int
    free: int

    @property
    def low(self) -> bool:
        return self.free < self.total * DISK_LOW_SHARE


def _volume(what: str, path: Path) -> Volume | None:
    try:
        usage = shutil.disk_usage(path)
    except OSError:  # a backup directory on a disk not mounted here, or gone
        return None
    return Volume(what, path, usage.total, usage.free)


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
        last_backup = backups.last_success(conn)
        attempts = backups.recent_runs(conn, 10)
        database_bytes = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
    failed_since = [run for run in attempts if run.outcome == "failure"
                    and (last_backup is None or run.finished_at > last_backup.finished_at)]
    volumes = []
    if db.cluster is not None:  # PostgreSQL's own disk is known only when the appliance runs it
        volumes.append(_volume("PostgreSQL's data", db.cluster.pgdata))
    if last_backup is not None:
        volumes.append(_volume("Backups", last_backup.directory))
    volumes = [volume for volume in volumes if volume is not None]
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
        "last_backup": last_backup, "backup_age": None if last_backup is None else now - last_backup.finished_at,
        "backup_late": last_backup is None or now - last_backup.finished_at > BACKUP_LATE,
        "backup_late_hours": int(BACKUP_LATE.total_seconds() // 3600), "failed_since": failed_since,
        "attempts": attempts[:5], "volumes": volumes, "now": now, "database_bytes": database_bytes, "size": _size,
    })


def _size(count: int | None) -> str:
    if count is None:
        return ""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def _minutes(age: dt.timedelta | None) -> str:
    if age is None:
        return "never"
    minutes = int(age.total_seconds() // 60)
    if minutes < 120:
        return "under a minute ago" if minutes < 1 else f"{minutes} min ago"
    return f"{minutes // 60} h ago" if minutes < 48 * 60 else f"{minutes // (24 * 60)} days ago"


ROUTES = [console]
