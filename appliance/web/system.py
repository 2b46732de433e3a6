"""Liveness and readiness: what a load balancer, systemd and an operator ask the appliance."""

from __future__ import annotations

import sqlalchemy as sa
from litestar import Response, get
from litestar.datastructures import State

from appliance.substrate.db import Database
from appliance.substrate.migrate import head
from appliance.substrate.standing import schema_standing


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
        standing = schema_standing(db)
        problems = standing.problems()
    except sa.exc.SQLAlchemyError as exc:
        return Response({"status": "unavailable", "reason": f"database does not answer: {exc.__class__.__name__}"},
                        status_code=503)
    if problems:
        return Response({"status": "unavailable", "reason": problems[0]}, status_code=503)
    return Response({"status": "ready", "tenants": len(standing.tenants), "schema": head("tenant")}, status_code=200)
