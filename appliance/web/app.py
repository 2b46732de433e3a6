"""The Litestar application: one place that assembles routes, exception handlers, middleware and
the OpenAPI document. The interactive API page is not served — its usual renderers load scripts
from a CDN, which an air-gapped appliance never does; `/schema/openapi.json` is."""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from appliance import __version__
from appliance.layers.operations.routes import OperationsController
from appliance.substrate.db import Database
from appliance.web import errors, system
from appliance.web.context import request_context_middleware

ROUTE_HANDLERS = [system.health, system.ready, OperationsController]


def create_app(db: Database) -> Litestar:
    return Litestar(
        route_handlers=ROUTE_HANDLERS,
        state=State({"db": db}),
        exception_handlers=errors.handlers,
        middleware=[request_context_middleware],
        openapi_config=OpenAPIConfig(
            title="HealthOS appliance",
            version=__version__,
            path="/schema",
            render_plugins=[JsonRenderPlugin()],
        ),
        debug=False,
        # Logging is ours (structlog JSON, configured by the CLI); Litestar must not install its own.
        logging_config=None,
    )
