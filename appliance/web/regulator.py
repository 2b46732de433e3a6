"""The regulator console: where each audit log stands (its latest signed checkpoint), verification on
demand, the last verification's result, and what to take away — evidence packages to check offline
with `python -m appliance.audit_verify` (which needs only the appliance's public key, never ours), and
a log's signed checkpoints to keep. The verifier itself is handed out here too: a zip of its four files,
built from the installed package (no network), whose SHA-256 the page shows so the regulator can check
it against one obtained out of band before trusting what it says. Checkpoints kept earlier are
brought back to prove the log only grew since: nothing signed before was rewritten, removed or
reordered.

Verifying and taking evidence or checkpoints away are themselves audited (appliance-level events), so
the trail shows when the regulator looked.

A complaint names a chart ("who read my record at Lakeshore?"): the console finds a facility's chart by
its record number and lists every access its log holds, as the patient sees them at `/me/access` but
with the event types a regulator checks against evidence. The lookup is recorded in that facility's log
as a read of the chart's access log, so the patient sees that the regulator looked.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import platform
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from importlib import metadata, resources
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
from litestar import Request, Response, get, post
from litestar.datastructures import State, UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Template
from pydantic import BaseModel

import appliance
from appliance.audit_verify import FormatError, parse_held
from appliance.substrate import audit, keys, standing
from appliance.substrate.db import InvalidSlug, UnknownTenant, validate_slug
from appliance.substrate.tenancy import list_tenants
from appliance.web.errors import error_page

BREAK_THE_GLASS_WINDOW = timedelta(days=30)
MRN_LENGTH = 64  # longer than any facility's record number; what is longer (or unprintable) is not one
# What an access did, as the audit event's action code says it (FHIR AuditEvent.action).
ACTIONS = {"R": "read", "C": "created", "U": "changed", "D": "removed", "E": "used"}


# The offline verifier: these files, copied with their folders, are all it runs on (with `cryptography`);
# tests/test_audit_verify.py holds it to that.
VERIFIER_FILES = ("appliance/__init__.py", "appliance/audit_verify.py", "appliance/substrate/__init__.py",
                  "appliance/substrate/merkle.py")
VERIFIER_README = """HealthOS offline audit verifier (from appliance {version})

Checks an evidence package exported from a HealthOS appliance (its regulator console, or
`healthos audit export`): every event's hash, every Merkle root, every checkpoint signature against
the appliance's public key, and, with kept checkpoints, that the log only grew. It sends nothing
anywhere and needs nothing from the appliance but the package and its public key.

Needs: Python 3.11 or later, and the Python package `cryptography` version 44 or later
(this copy was taken from an appliance running Python {python} and cryptography {cryptography}):

    python3 -m pip install "cryptography>=44"

Run it from the folder this zip was unpacked into (the one holding `appliance/`):

    python3 -m appliance.audit_verify EVIDENCE.json --public-key APPLIANCE-KEY.pem
    python3 -m appliance.audit_verify EVIDENCE.json --public-key APPLIANCE-KEY.pem \\
        --regulator-key YOUR-X25519-KEY.pem --out events.jsonl      # also decrypt the event bodies
    python3 -m appliance.audit_verify EVIDENCE.json --public-key APPLIANCE-KEY.pem \\
        --checkpoints KEPT.json                                       # prove the log only grew

Exit status: 0 verified, 1 problems found (the first bad sequence number is named), 2 unusable input.
`python3 -m appliance.audit_verify --help` lists every option.

APPLIANCE-KEY.pem is the appliance's checkpoint public key (`healthos audit public-key` on the
appliance), obtained out of band and kept: pin it. If the appliance later rotates its key, keep the
key you pinned: packages carry each rotation, signed by the key it replaced, and the verifier says
which keys it trusted through yours.

Before you rely on it, check this zip's SHA-256 (`sha256sum` on Linux, `shasum -a 256` on macOS,
`certutil -hashfile FILE SHA256` on Windows) against the one the regulator console shows, read
over a channel other than the one you downloaded it through.

Files: {files}
"""


@dataclass(frozen=True)
class VerifierZip:
    content: bytes
    sha256: str
    name: str


@functools.lru_cache(maxsize=1)
def verifier_zip() -> VerifierZip:
    """The offline verifier as a zip: its files as this appliance runs them, and a README.txt. Entries
    carry a fixed date and mode, so the same release always gives the same bytes and the same SHA-256."""
    installed = resources.files("appliance")
    readme = VERIFIER_README.format(version=appliance.__version__, python=platform.python_version(),
                                    cryptography=metadata.version("cryptography"), files=", ".join(VERIFIER_FILES))
    entries = [("README.txt", readme.encode())]
    for path in VERIFIER_FILES:
        entries.append((path, installed.joinpath(*path.split("/")[1:]).read_bytes()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in entries:
            info = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    content = buffer.getvalue()
    return VerifierZip(content, hashlib.sha256(content).hexdigest(),
                       f"healthos-audit-verifier-{appliance.__version__}.zip")


class ExportForm(BaseModel):
    log: str = ""  # "appliance" or a tenant slug
    since: str = ""  # evidence only: the first day of the period, YYYY-MM-DD in UTC (empty: the log's start)
    until: str = ""  # evidence only: its last day, included (empty: up to now)


def _period(form: ExportForm) -> tuple[datetime | None, datetime | None]:
    """The days an evidence package covers as the times `audit.export` takes: from the first day's
    start to the last day's end, in UTC like the trail's own times. ValueError says what is wrong."""
    bounds = []
    for label, value, days_after in (("first", form.since.strip(), 0), ("last", form.until.strip(), 1)):
        try:
            bounds.append(datetime.combine(date.fromisoformat(value), time.min, UTC) + timedelta(days=days_after)
                          if value else None)
        except (ValueError, OverflowError):
            raise ValueError(f"the {label} day of the period, {value!r}, is not a date such as 2026-11-01") from None
    since, until = bounds
    if since is not None and until is not None and since >= until:
        raise ValueError("the period's first day comes after its last")
    return since, until


@dataclass
class HeldForm:
    checkpoints: UploadFile | None = None  # a file kept from "Keep the checkpoints"


def utc_time(value: str | datetime | None) -> str:
    """An audit time as a regulator reads it, `2026-11-27 00:37:44 UTC` (the trail's times are UTC, to
    the microsecond, in ISO 8601: `2026-11-27T00:37:44.071512Z`); what is not a time is shown as it is."""
    if value is None:
        return ""
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _last_verification_path(state: State) -> Path:
    return state.settings.home / standing.LAST_VERIFICATION


def _summary(report) -> dict:
    latest = report.latest
    return {
        "log": report.tenant or "appliance", "log_id": report.log_id, "events": report.events,
        "checkpoints": report.checkpoints, "verified_size": report.verified_size, "pending": report.pending,
        "ok": report.ok, "problems": [str(problem) for problem in report.problems[:20]],
        "latest": None if latest is None else {"size": latest.size, "time": latest.time, "root": latest.root.hex()},
    }


def _tenant_of(log: str) -> str | None:
    if log == "appliance":
        return None
    try:
        return validate_slug(log)
    except InvalidSlug:
        return "?"


@get("/regulator", operation_id="AuditRegulatorConsole", tags=["audit"], opt={"permission": "audit.log.read"},
     sync_to_thread=True, include_in_schema=False)
def console(request: Request, state: State) -> Template:
    return _console(request, state)


def _console(request: Request, state: State, *, held_refusal: str | None = None) -> Template:
    """The console; `held_refusal` is why a file of kept checkpoints was refused, said beside its form
    (422) so the regulator can choose the right file at once."""
    last = standing.last_verification(state.settings)
    tenants = list_tenants(state.db)
    names = {t["slug"]: t["name"] for t in tenants}
    logs = [{"value": log.tenant or "appliance", "name": names.get(log.tenant, log.tenant) if log.tenant
             else "The appliance (sign-ins, accounts, keys, merges)", "state": log}
            for log in audit.log_states(state.db)]
    # Break-the-glass is the access a regulator reviews first: who opened a chart without a care
    # relationship, where, and the reason they gave. Reading the reasons is itself recorded.
    since = datetime.now(UTC) - BREAK_THE_GLASS_WINDOW
    glass = audit.break_the_glass_accesses(state.db, since)
    with state.db.control() as conn:
        # Whose keys the events' data keys are sealed to: a regulator whose key is not here can verify an
        # evidence package but not read its bodies, and should know that before taking one away.
        sealed_to = conn.execute(sa.select(keys.audit_regulator_key.c.key_id, keys.audit_regulator_key.c.label,
                                           keys.audit_regulator_key.c.registered_at)
                                 .where(keys.audit_regulator_key.c.retired_at.is_(None))
                                 .order_by(keys.audit_regulator_key.c.registered_at)).all()
        audit.append(conn, tenant=None, principal=request.user, event_type="audit.break_glass.review", action="R",
                     detail={"since": since.isoformat(timespec="seconds"), "accesses": len(glass)})
    # The last verification names its logs by slug; the page names them as the table above does.
    log_names = {log["value"]: log["name"] for log in logs}
    return Template("regulator.html", context={"principal": request.user, "last": last, "tenants": tenants,
                                               "logs": logs, "log_names": log_names, "glass": glass,
                                               "sealed_to": sealed_to, "held_refusal": held_refusal,
                                               "glass_days": BREAK_THE_GLASS_WINDOW.days,
                                               "verifier": verifier_zip()},
                    status_code=422 if held_refusal else 200)


def _record_verification(request: Request, state: State, reports: list, held: int = 0) -> None:
    result = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "by": request.user.display_name,
              "ok": all(report.ok for report in reports), "held": held,
              "logs": [_summary(report) for report in reports]}
    with state.db.control() as conn:
        audit.append(conn, tenant=None, principal=request.user, event_type="audit.verify", action="E",
                     outcome="success" if result["ok"] else "serious_failure",
                     detail={"logs": len(reports), "held_checkpoints": held,
                             "failing": [s["log"] for s in result["logs"] if not s["ok"]]})
    # Written after the audit event commits, so the page never shows a verification the trail lacks.
    _last_verification_path(state).write_text(json.dumps(result, indent=1))


@post("/regulator/verify", operation_id="AuditVerifyAll", tags=["audit"], opt={"permission": "audit.log.verify"},
      sync_to_thread=True, include_in_schema=False)
def verify(request: Request, state: State) -> Response:
    """Verify every log now: event hashes, Merkle roots, checkpoint signatures, consistency."""
    _record_verification(request, state, audit.verify_all(state.db))
    return Redirect("/regulator")


@post("/regulator/verify-held", operation_id="AuditVerifyAgainstHeld", tags=["audit"],
      opt={"permission": "audit.log.verify"}, sync_to_thread=True, include_in_schema=False)
def verify_held(request: Request, state: State,
                data: Annotated[HeldForm, Body(media_type=RequestEncodingType.MULTI_PART)]) -> Response | Template:
    """Verify one log against checkpoints kept from it earlier: each kept checkpoint must be consistent
    with the log now (RFC 9162 consistency), so the log only grew since it was signed."""
    upload = data.checkpoints
    if upload is None:
        return _console(request, state, held_refusal="Choose the checkpoints file you kept from this console.")
    try:
        content = upload.file.read(1 << 24)  # a file of checkpoints is kilobytes; 16 MiB is far beyond
    finally:
        upload.file.close()
    if not upload.filename or not content:
        return _console(request, state, held_refusal="Choose the checkpoints file you kept from this console.")
    try:
        log, held = parse_held(content, upload.filename)
    except FormatError as refused:
        return _console(request, state, held_refusal=f"{refused}.")
    tenant = _tenant_of(log.get("tenant") or "appliance")
    if tenant == "?" or not held:
        return _console(request, state, held_refusal="The file names no log of this appliance, or holds no checkpoint.")
    try:
        report = audit.verify(state.db, tenant, held=held)
    except UnknownTenant:
        return _console(request, state, held_refusal=f"The facility {tenant!r} of those checkpoints is not on this "
                                                      "appliance (dropped, or the file is another appliance's).")
    _record_verification(request, state, [report], held=len(held))
    return Redirect("/regulator")


@post("/regulator/checkpoints", operation_id="AuditKeepCheckpoints", tags=["audit"],
      opt={"permission": "audit.evidence.export"}, sync_to_thread=True, include_in_schema=False, status_code=200)
def keep_checkpoints(request: Request, state: State,
                     data: Annotated[ExportForm, Body(media_type=RequestEncodingType.URL_ENCODED)]) -> Response:
    """One log's signed checkpoints (what was waiting signed first) as a file to keep, and to bring back
    later to prove the log only grew."""
    tenant = _tenant_of(data.log)
    if tenant == "?":
        return error_page(request, 404, f"no audit log named {data.log!r}")
    try:
        document = audit.held_checkpoints(state.db, tenant)
    except (audit.AuditError, UnknownTenant) as refused:
        return error_page(request, 404, str(refused))
    with state.db.control() as conn:
        audit.append(conn, tenant=None, principal=request.user, event_type="audit.checkpoints.export", action="E",
                     detail={"log": data.log, "checkpoints": len(document["checkpoints"])})
    name = f"healthos-checkpoints-{data.log}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    return Response(json.dumps(document, indent=1).encode(), media_type="application/json",
                    headers={"content-disposition": f'attachment; filename="{name}"'})


@post("/regulator/export", operation_id="AuditExportEvidence", tags=["audit"],
      opt={"permission": "audit.evidence.export"}, sync_to_thread=True, include_in_schema=False, status_code=200)
def export(request: Request, state: State,
           data: Annotated[ExportForm, Body(media_type=RequestEncodingType.URL_ENCODED)]) -> Response:
    """An evidence package of one log (events, proofs, checkpoints, public key) as a download: the whole
    log, or the events of a period of days with their inclusion proofs (as `healthos audit export
    --since --until`)."""
    tenant = _tenant_of(data.log)
    if tenant == "?":
        return error_page(request, 404, f"no audit log named {data.log!r}")
    try:
        since, until = _period(data)
    except ValueError as refused:
        return error_page(request, 422, str(refused))
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "evidence.json"
        try:
            audit.export(state.db, tenant, out, since=since, until=until, by=request.user)
        except audit.AuditError as refused:
            return error_page(request, 404, str(refused))
        package = out.read_bytes()  # audit.export records the export in the appliance's own log
    days = "".join(f"-{label}{value.strip()}" for label, value in (("from", data.since), ("to", data.until))
                   if value.strip())
    name = f"healthos-evidence-{data.log}{days}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    return Response(package, media_type="application/json",
                    headers={"content-disposition": f'attachment; filename="{name}"'})


@post("/regulator/verifier", operation_id="AuditDownloadVerifier", tags=["audit"],
      opt={"permission": "audit.evidence.export"}, sync_to_thread=True, include_in_schema=False, status_code=200)
def download_verifier(request: Request, state: State) -> Response:
    """The offline verifier as a zip (its four files and a README.txt), recorded as an export: the trail
    shows which verifier, by its SHA-256, the regulator took away."""
    verifier = verifier_zip()
    with state.db.control() as conn:
        audit.append(conn, tenant=None, principal=request.user, event_type="audit.verifier.export", action="E",
                     detail={"sha256": verifier.sha256, "files": list(VERIFIER_FILES), "name": verifier.name})
    return Response(verifier.content, media_type="application/zip",
                    headers={"content-disposition": f'attachment; filename="{verifier.name}"'})


@get("/regulator/patient-access", operation_id="AuditPatientAccessReview", tags=["audit"],
     opt={"permission": "audit.log.read"}, sync_to_thread=True, include_in_schema=False)
def patient_access(request: Request, state: State, facility: FromQuery[str] = "", mrn: FromQuery[str] = "") -> Template:
    """Who opened one chart, found by its facility and record number: every access in the facility's
    log, newest first. Recorded in that log as a read of the chart's access log."""
    tenants = [t for t in list_tenants(state.db) if t["status"] == "active"]
    names = {t["slug"]: t["name"] for t in tenants}
    mrn = mrn.strip()
    context = {"principal": request.user, "tenants": tenants, "facility": facility, "mrn": mrn, "entries": None,
               "refusal": None, "actions": ACTIONS}
    status = 200
    if not facility and not mrn:
        pass  # the empty form, as first opened
    elif facility not in names:
        context["refusal"], status = "Choose the facility that holds the chart.", 422
    elif not mrn:
        context["refusal"], status = "Type the chart's record number, as the facility knows it.", 422
    elif len(mrn) > MRN_LENGTH or not mrn.isprintable():
        context |= {"mrn": "", "refusal": f"A record number is at most {MRN_LENGTH} letters, digits or signs; "
                                          "type it as it is printed on the patient's card."}
        status = 422
    else:
        with state.db.tenant(facility) as conn:
            patient_id = conn.execute(sa.text("SELECT id FROM patient WHERE mrn = :mrn"), {"mrn": mrn}).scalar()
        if patient_id is None:
            context["refusal"], status = f"{names[facility]} has no chart with record number {mrn}.", 404
        else:
            entries = audit.patient_access_log(state.db, facility, patient_id)
            with state.db.tenant(facility) as conn:
                audit.append(conn, tenant=facility, principal=request.user, event_type="patient.access_log.read",
                             action="R", patient_id=patient_id)
            context |= {"entries": sorted(entries, key=lambda e: (e.recorded, e.seq), reverse=True),
                        "facility_name": names[facility]}
    return Template("regulator_access.html", context=context, status_code=status)


ROUTES = [console, verify, verify_held, keep_checkpoints, export, download_verifier, patient_access]
