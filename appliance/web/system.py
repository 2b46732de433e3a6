"""Liveness and readiness: what a load balancer, systemd and an operator ask the appliance."""

from __future__ import annotations

import sqlalchemy as sa
from litestar import Response, get
from litestar.datastructures import State

from appliance.substrate.db import Database
from appliance.substrate.migrate import (
    AHEAD_OF_CODE,
    CONTROL_SCHEMA,
    ahead_of_code,
    head,
    schema_revision,
    tenants_ahead_of_code,
    tenants_behind_head,
)
from appliance.substrate.tenancy import active_slugs


@get("/health", operation_id="SystemHealth", tags=["system"], opt={"public": True}, sync_to_thread=False)
def health() -> dict[str, str]:
    """200 while the process lives."""
    return {"status": "ok"}


@get("/ready", operation_id="SystemReady", tags=["system"], opt={"public": True}, sync_to_thread=True)
def ready(state: State) -> Response:
    """200 when the database answers and every schema is at head; 503 with the reason otherwise."""
    db: Database = state.db
    try:
        with db.control() as conn:
            conn.execute(sa.text("SELECT 1"))
            control_at = schema_revision(conn, CONTROL_SCHEMA)
    except sa.exc.SQLAlchemyError as exc:
        return Response({"status": "unavailable", "reason": f"database does not answer: {exc.__class__.__name__}"},
                        status_code=503)
    if ahead_of_code("control", control_at):
        return Response({"status": "unavailable", "reason": f"control schema at {control_at}, {AHEAD_OF_CODE}"},
                        status_code=503)
    if control_at != head("control"):
        return Response({"status": "unavailable",
                         "reason": f"control schema at {control_at}, expected {head('control')}: run healthos migrate"},
                        status_code=503)
    slugs = active_slugs(db)
    ahead = tenants_ahead_of_code(db, slugs)
    if ahead:
        return Response({"status": "unavailable",
                         "reason": f"{len(ahead)} tenant schema(s) ahead of this code ({', '.join(ahead[:5])}): "
                                   f"{AHEAD_OF_CODE}"},
                        status_code=503)
    behind = tenants_behind_head(db, slugs)
    if behind:
        return Response({"status": "unavailable",
                         "reason": f"{len(behind)} tenant schema(s) not at head ({', '.join(behind[:5])}): "
                                   "run healthos migrate"},
                        status_code=503)
    return Response({"status": "ready", "tenants": len(slugs), "schema": head("tenant")}, status_code=200)
