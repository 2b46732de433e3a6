"""The regulator console: the audit trail's checkpoints, verification on demand, the last
verification's result, and evidence packages to take away and check offline with
`python -m appliance.audit_verify` — which needs only the appliance's public key, never ours.

Verifying and exporting are themselves audited (appliance-level events), so the trail shows when
the regulator looked.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template
from pydantic import BaseModel

from appliance.substrate import audit
from appliance.substrate.db import InvalidSlug, validate_slug
from appliance.substrate.tenancy import list_tenants

LAST_VERIFICATION = "audit-last-verification.json"


class ExportForm(BaseModel):
    log: str = ""  # "appliance" or a tenant slug


def _last_verification_path(state: State) -> Path:
    return state.settings.home / LAST_VERIFICATION


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
    path = _last_verification_path(state)
    last = json.loads(path.read_text()) if path.exists() else None
    tenants = list_tenants(state.db)
    return Template("regulator.html", context={"principal": request.user, "last": last, "tenants": tenants})


@post("/regulator/verify", operation_id="AuditVerifyAll", tags=["audit"], opt={"permission": "audit.log.verify"},
      sync_to_thread=True, include_in_schema=False)
def verify(request: Request, state: State) -> Response:
    """Verify every log now: event hashes, Merkle roots, checkpoint signatures, consistency."""
    reports = audit.verify_all(state.db)
    result = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "by": request.user.display_name,
              "ok": all(report.ok for report in reports), "logs": [_summary(report) for report in reports]}
    with state.db.control() as conn:
        audit.append(conn, tenant=None, principal=request.user, event_type="audit.verify", action="E",
                     outcome="success" if result["ok"] else "serious_failure",
                     detail={"logs": len(reports), "failing": [s["log"] for s in result["logs"] if not s["ok"]]})
    # Written after the audit event commits, so the page never shows a verification the trail lacks.
    _last_verification_path(state).write_text(json.dumps(result, indent=1))
    return Redirect("/regulator")


@post("/regulator/export", operation_id="AuditExportEvidence", tags=["audit"],
      opt={"permission": "audit.evidence.export"}, sync_to_thread=True, include_in_schema=False, status_code=200)
def export(request: Request, state: State,
           data: Annotated[ExportForm, Body(media_type=RequestEncodingType.URL_ENCODED)]) -> Response:
    """An evidence package of one log (events, proofs, checkpoints, public key) as a download."""
    tenant = _tenant_of(data.log)
    if tenant == "?":
        return Response({"status_code": 404, "detail": f"no audit log named {data.log!r}"}, status_code=404)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "evidence.json"
        try:
            audit.export(state.db, tenant, out, by=request.user)
        except audit.AuditError as refused:
            return Response({"status_code": 404, "detail": str(refused)}, status_code=404)
        package = out.read_bytes()  # audit.export records the export in the appliance's own log
    name = f"healthos-evidence-{data.log}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    return Response(package, media_type="application/json",
                    headers={"content-disposition": f'attachment; filename="{name}"'})


ROUTES = [console, verify, export]
