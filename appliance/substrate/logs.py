"""Structured logs: structlog JSON on stderr, with the request id and tenant bound per request.

Log lines carry identifiers of requests, tenants and routes — never patient data, never query
strings (a search for a patient's name would otherwise land in the log).

Outside a request nothing binds the tenant: the demo generators, the HL7 v2 listener, the CLI and the
audit checkpointer run in tenant transactions of their own. A line logged in a tenant transaction
therefore names its tenant itself (`tenant=conn.info["healthos_tenant"]`, or the slug in hand), as
`tenant_applied` and the pharmacy's lines do; a loop over one facility's messages may bind it for its
lines instead (`structlog.contextvars.bind_contextvars`, as the HL7 feed does).
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(*, json: bool = True, level: int = logging.INFO) -> None:
    processors: list = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*processors, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries that use the standard logging module (uvicorn, alembic) go through the same renderer.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=processors,
    ))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(level)
    # uvicorn's access log would print full paths with query strings; our middleware logs requests.
    logging.getLogger("uvicorn.access").disabled = True
