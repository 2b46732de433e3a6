"""Where the appliance stands, as hospital IT and its monitoring ask: the database, the schemas, the
facilities, the audit trail's checkpoints, the last backup, the appliance key and the disks — and the
thresholds past which each is a problem. `healthos status` reports all of it and the operator console
(`/appliance`) judges by the same thresholds.

It reads only: it never starts the embedded PostgreSQL (a status check that started it would leave a
cluster owned by the monitoring agent), never signs a checkpoint and never creates the appliance key.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from appliance.substrate import audit, keys
from appliance.substrate import backup as backups
from appliance.substrate.config import Settings
from appliance.substrate.db import Database
from appliance.substrate.embedded import TRIGRAM_FUNCTION_COST, TRIGRAM_FUNCTIONS
from appliance.substrate.migrate import (
    AHEAD_OF_CODE,
    CONTROL_SCHEMA,
    ahead_of_code,
    head,
    schema_revision,
    tenants_ahead_of_code,
    tenants_behind_head,
)
from appliance.substrate.tenancy import active_slugs, list_tenants

# A log with events waiting and no checkpoint for this long: its checkpointer (every 30 s while `healthos up`
# runs) is not running.
CHECKPOINT_LATE = dt.timedelta(minutes=5)
# The playbook schedules a backup a day; a day and a bit more without one means the schedule is not running
# (24 h exactly would raise the alarm each night a backup took a minute longer than the one before).
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


@dataclass(frozen=True)
class SchemaStanding:
    """Where the schemas stand against this code: the control schema's revision and state (at head, behind,
    ahead, not migrated) and the facilities whose schema is ahead of this code or behind its head. One
    judgment, with its sentences, for /ready, `healthos status` and the operator console."""

    control_revision: str | None
    control_state: str
    tenants: list[str]  # the active facilities
    tenants_ahead: list[str]
    tenants_behind: list[str]

    def problems(self) -> list[str]:
        """Each thing wrong, as the operator is told it (ahead first: migrating cannot help there)."""
        said = []
        if self.control_state == "not migrated":
            said.append("the control schema is not migrated: run healthos migrate (or healthos up)")
        elif self.control_state == "ahead":
            said.append(f"the control schema is at {self.control_revision}, {AHEAD_OF_CODE}")
        elif self.control_state == "behind":
            said.append(f"the control schema is at {self.control_revision}, not {head('control')}: "
                        "run healthos migrate")
        if self.tenants_ahead:
            said.append(f"{len(self.tenants_ahead)} facility schema(s) ahead of this code "
                        f"({', '.join(self.tenants_ahead[:5])}): {AHEAD_OF_CODE}")
        if self.tenants_behind:
            said.append(f"{len(self.tenants_behind)} facility schema(s) not at head "
                        f"({', '.join(self.tenants_behind[:5])}): run healthos migrate")
        return said


def schema_standing(db: Database) -> SchemaStanding:
    """`SchemaStanding` of the control schema and the active facilities' schemas (none asked for before the
    control schema, which lists them, is migrated)."""
    with db.control() as conn:
        control = schema_revision(conn, CONTROL_SCHEMA)
    if control is None:
        return SchemaStanding(control, "not migrated", [], [], [])
    state = "ahead" if ahead_of_code("control", control) else "at head" if control == head("control") else "behind"
    slugs = active_slugs(db)
    ahead = tenants_ahead_of_code(db, slugs)
    behind = [slug for slug in tenants_behind_head(db, slugs) if slug not in ahead]
    return SchemaStanding(control, state, slugs, ahead, behind)


def volume(what: str, path: Path) -> Volume | None:
    """The disk holding `path`; None where it cannot be read (a backup disk not mounted here, or gone)."""
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    return Volume(what, path, usage.total, usage.free)


def checkpoint_age(state: audit.LogState, now: dt.datetime) -> dt.timedelta | None:
    if state.latest is None:
        return None
    return now - dt.datetime.fromisoformat(state.latest.time.replace("Z", "+00:00"))


def checkpoint_late(state: audit.LogState, now: dt.datetime) -> bool:
    """Events wait and no checkpoint came for CHECKPOINT_LATE. A log never checkpointed has had a minute at
    most in a running appliance: late all the same."""
    age = checkpoint_age(state, now)
    return bool(state.awaiting) and (age is None or age > CHECKPOINT_LATE)


def backup_late(last: backups.BackupRun | None, now: dt.datetime) -> bool:
    return last is None or now - last.finished_at > BACKUP_LATE


def failed_since(last: backups.BackupRun | None, attempts: list[backups.BackupRun]) -> list[backups.BackupRun]:
    """Those of `attempts` (newest first) that failed after the last good backup."""
    return [run for run in attempts
            if run.outcome == "failure" and (last is None or run.finished_at > last.finished_at)]


def size(count: int | None) -> str:
    """A byte count as a person reads it: '1.2 GB'."""
    if count is None:
        return ""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def ago(age: dt.timedelta | None) -> str:
    """'under a minute ago', '12 min ago', '5 h ago', '3 days ago'; 'never' for None."""
    if age is None:
        return "never"
    minutes = int(age.total_seconds() // 60)
    if minutes < 120:
        return "under a minute ago" if minutes < 1 else f"{minutes} min ago"
    return f"{minutes // 60} h ago" if minutes < 48 * 60 else f"{minutes // (24 * 60)} days ago"


@dataclass
class Status:
    """What `healthos status` prints: `report` (JSON-ready sections) and each problem as a sentence."""

    report: dict
    problems: list[str]


# The regulator console's last verification of the audit logs (`appliance.web.regulator` writes it), kept in
# HEALTHOS_HOME: the only verdict on the logs' contents the appliance holds between two verifications.
LAST_VERIFICATION = "audit-last-verification.json"


def last_verification(settings: Settings) -> dict | None:
    """The last verification run from the regulator console, or None when none was run (or its file is
    unreadable, which the console would show as none too)."""
    try:
        found = json.loads((settings.home / LAST_VERIFICATION).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def verification_failing(last: dict | None) -> list[str]:
    """The logs the last verification found altered or damaged (empty when it found none, or none was run)."""
    if not last or last.get("ok", True):
        return []
    return [str(log.get("log")) for log in last.get("logs") or [] if isinstance(log, dict) and not log.get("ok")]


def _verification(settings: Settings, problems: list[str]) -> dict | None:
    last = last_verification(settings)
    if failing := verification_failing(last):
        # Nothing else here reads the events themselves: without this the status said "all well" while the
        # regulator's console showed tampering.
        problems.append(f"audit: the regulator console's verification of {last.get('at')} (by {last.get('by')}) "
                        f"found the log{'s' if len(failing) != 1 else ''} of {', '.join(failing)} altered or damaged; "
                        "`healthos audit verify` names the first bad event. An altered log cannot be repaired: keep "
                        "this appliance's database and backups as they are and tell the regulator")
    return None if last is None else {"at": last.get("at"), "ok": not failing, "failing": failing}


def status(db: Database, settings: Settings, now: dt.datetime | None = None) -> Status:
    """The appliance's standing. The database is only asked, never started: when it does not answer, the
    sections that need it are left out and that is the problem named."""
    now = now or dt.datetime.now(dt.UTC)
    problems: list[str] = []
    report: dict = {"home": str(settings.home), "checked_at": now.isoformat(timespec="seconds")}
    report["database"] = database = _database(db, settings, problems)
    if database["answering"]:
        report.update(_inside(db, now, problems))
    report["verification"] = _verification(settings, problems)
    report["key"] = _key(settings, problems)
    report["disks"] = _disks(settings, report.get("backup", {}).get("directory"), problems)
    report["problems"] = problems
    report["ok"] = not problems
    return Status(report, problems)


def _database(db: Database, settings: Settings, problems: list[str]) -> dict:
    embedded = db.cluster is not None
    found: dict = {"kind": "embedded" if embedded else "url", "where": str(settings.pgdata) if embedded
                   else db.libpq_url(), "answering": False}
    if embedded and not (settings.pgdata / "postmaster.pid").exists():
        found["state"] = "not running"
        problems.append("database: the embedded PostgreSQL is not running (it runs while `healthos up` serves); "
                        "nothing else could be checked")
        return found
    try:
        with db.control() as conn:
            version, size = conn.execute(sa.text(
                "SELECT current_setting('server_version'), pg_database_size(current_database())")).one()
    except sa.exc.OperationalError as exc:
        found["state"] = "not answering"
        reason = str(exc.orig or exc).strip().splitlines()[0] if str(exc.orig or exc).strip() else type(exc).__name__
        problems.append(f"database: {found['where']} does not answer ({reason}); nothing else could be checked")
        return found
    found.update(state="answering", answering=True, version=version, bytes=size)
    underpriced = _underpriced_trigram_functions(db)
    if underpriced:
        problems.append(
            "database: pg_trgm prices " + ", ".join(underpriced) + f" below COST {TRIGRAM_FUNCTION_COST}, so "
            "patient-name search reads every patient instead of the trigram index (~90 ms rather than ~20 ms at "
            "20,000 patients); as the extension's owner (a superuser) run " + "; ".join(
                f"ALTER FUNCTION public.{name}(text, text) COST {TRIGRAM_FUNCTION_COST}" for name in underpriced))
    return found


def _underpriced_trigram_functions(db: Database) -> list[str]:
    """pg_trgm's similarity functions priced below `TRIGRAM_FUNCTION_COST`: the embedded cluster prices them at
    each start, a site's own PostgreSQL once by its DBA (README), and an extension update or a restore puts the
    extension's COST 1 back without a word."""
    with db.control() as conn:
        priced = conn.execute(sa.text(
            "SELECT name, (SELECT procost FROM pg_proc WHERE oid = to_regprocedure('public.' || name || '(text,text)'))"
            " FROM unnest(CAST(:names AS text[])) AS name"), {"names": list(TRIGRAM_FUNCTIONS)}).all()
    return [name for name, cost in priced if cost is not None and cost < TRIGRAM_FUNCTION_COST]


def _inside(db: Database, now: dt.datetime, problems: list[str]) -> dict:
    """The sections read from the database: schemas, facilities, audit logs, backups."""
    standing = schema_standing(db)
    problems += [f"schemas: {problem}" for problem in standing.problems()]
    control = {"revision": standing.control_revision, "head": head("control"), "state": standing.control_state}
    if standing.control_state == "not migrated":
        return {"schemas": {"control": control}}
    active, ahead, behind = standing.tenants, standing.tenants_ahead, standing.tenants_behind
    tenants = list_tenants(db)
    schemas = {"control": control, "tenant_head": head("tenant"), "tenants_at_head": len(active) - len(ahead)
               - len(behind), "tenants_behind": behind, "tenants_ahead": ahead}

    logs = []
    for state in audit.log_states(db):
        age = checkpoint_age(state, now)
        late = checkpoint_late(state, now)
        name = state.tenant or "appliance"
        logs.append({"log": name, "latest_checkpoint": state.latest.time if state.latest else None,
                     "checkpoint_size": state.latest.size if state.latest else None, "checkpoints": state.checkpoints,
                     "awaiting": state.awaiting, "late": late})
        if late:
            problems.append(f"audit: {name}'s log has {state.awaiting} event(s) waiting and its last checkpoint was "
                            f"{ago(age)}: is `healthos up` (its checkpointer, every 30 s) running?")

    with db.control() as conn:
        last = backups.last_success(conn)
        attempts = backups.recent_runs(conn, 10)
    failed = failed_since(last, attempts)
    backup: dict = {"last": None if last is None else last.finished_at.isoformat(timespec="seconds"),
                    "path": None if last is None else last.path,
                    "directory": None if last is None else str(last.directory),
                    "failed_since": len(failed)}
    if backup_late(last, now):
        problems.append("backup: none was ever made on this appliance" if last is None else
                        f"backup: the last was made {ago(now - last.finished_at)} ({last.path}); the playbook's "
                        "schedule makes one a day")
    if failed:
        problems.append(f"backup: {len(failed)} attempt(s) failed since the last good one; the latest: "
                        f"{failed[0].error}")
    return {"schemas": schemas, "tenants": {"active": len(active), "total": len(tenants)}, "audit": logs,
            "backup": backup}


def _key(settings: Settings, problems: list[str]) -> dict:
    """Where the appliance key comes from and whether its file is private. Never reads or makes the key."""
    derived = bool(os.environ.get(keys.PASSPHRASE_ENV))
    path = settings.home / "keys" / (keys.KDF_FILE if derived else keys.APPLIANCE_KEY_FILE)
    found: dict = {"source": "passphrase" if derived else "file", "path": str(path), "mode": None}
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        problems.append(f"key: {path} does not exist: a fresh appliance makes it on first start; otherwise restore "
                        "it from where it was kept, as nothing sealed under it can be read without it")
        return found
    found["mode"] = f"{mode:04o}"
    if mode & 0o077:
        problems.append(f"key: {path} is readable by other users (mode {mode:04o}): run `chmod 600 {path}`")
    return found


def _disks(settings: Settings, backup_directory: str | None, problems: list[str]) -> list[dict]:
    volumes = [volume("HEALTHOS_HOME", settings.home)]
    if backup_directory is not None:
        volumes.append(volume("backups", Path(backup_directory)))
    found = []
    for disk in volumes:
        if disk is None:
            continue
        found.append({"what": disk.what, "path": str(disk.path), "free": disk.free, "total": disk.total,
                      "low": disk.low})
        if disk.low:
            problems.append(f"disk: {disk.what} ({disk.path}) has {disk.free * 100 // disk.total}% free, under "
                            f"{DISK_LOW_SHARE:.0%}")
    return found
