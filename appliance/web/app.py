"""The Litestar application: one place that assembles routes, authentication, the permission guard,
CSRF, rate limits, security headers, templates, static files and the OpenAPI document.

The interactive API page is not served — its usual renderers load scripts from a CDN, which an
air-gapped appliance never does; `/schema/openapi.json` is.
"""

from __future__ import annotations

import asyncio
import gc
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from litestar import Litestar, Router
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import State
from litestar.middleware.rate_limit import RateLimitConfig, get_remote_address
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from appliance import __version__
from appliance.interop.fhir.routes import fhir_router
from appliance.layers.clinical.antenatal_routes import AntenatalController
from appliance.layers.clinical.blood_routes import BloodBankController, PatientBloodController
from appliance.layers.clinical.death_routes import DeathController
from appliance.layers.clinical.delivery_routes import DeliveryController
from appliance.layers.clinical.document_routes import DocumentController
from appliance.layers.clinical.family_planning_routes import FamilyPlanningController
from appliance.layers.clinical.hiv_routes import HivController
from appliance.layers.clinical.imaging_routes import ImagingController
from appliance.layers.clinical.immunization_routes import ImmunizationController
from appliance.layers.clinical.lab_routes import LabController
from appliance.layers.clinical.referral_routes import ReferralController
from appliance.layers.clinical.routes import ClinicalController
from appliance.layers.clinical.surgery_routes import PatientSurgeryController, SurgeryController
from appliance.layers.clinical.tuberculosis_routes import TuberculosisController
from appliance.layers.financial.routes import FinancialController
from appliance.layers.nursing.routes import NursingController
from appliance.layers.operations.death_routes import DeathsToCertifyController
from appliance.layers.operations.discharge_plan_routes import DischargePlanController
from appliance.layers.operations.incident_routes import IncidentController
from appliance.layers.operations.roster_routes import RosterController
from appliance.layers.operations.routes import OperationsController
from appliance.national.federation import PACKAGES_PATH
from appliance.substrate import identity
from appliance.substrate.config import Settings
from appliance.substrate.db import Database
from appliance.substrate.local_secrets import host_secret
from appliance.substrate.token_cache import TokenCache
from appliance.web import (
    admin,
    antenatal,
    billing,
    blood,
    death,
    delivery,
    discharge,
    documents,
    errors,
    family_planning,
    growth,
    hiv,
    imaging,
    immunization,
    incidents,
    lab,
    me,
    national,
    nursing,
    operations,
    operator,
    pharmacy,
    portal,
    problems,
    referral,
    regulator,
    roster,
    signin,
    surveillance,
    system,
    theatre,
    today,
    transfusion,
    tuberculosis,
)
from appliance.web.auth import (
    SESSION_API,
    SESSION_COOKIE,
    authentication_middleware,
    permission_guard,
    security_headers_middleware,
)
from appliance.web.context import close_uploads_middleware, request_context_middleware
from appliance.web.policy_files import POLICY_FILES
from appliance.web.throttle import DatabaseStore, SharedRateLimitMiddleware

HERE = Path(__file__).parent
ROUTE_HANDLERS = [system.health, system.ready, *signin.ROUTES, *regulator.ROUTES, *operator.ROUTES,
                  *national.ROUTES, *surveillance.ROUTES, *me.ROUTES,
                  AntenatalController, antenatal.antenatal_router,
                  BloodBankController, PatientBloodController, blood.blood_router, transfusion.transfusion_router,
                  OperationsController, FinancialController, ClinicalController, LabController, NursingController,
                  ImmunizationController, DeathController, DeathsToCertifyController, DischargePlanController,
                  ImagingController, DeliveryController, PatientSurgeryController, SurgeryController,
                  FamilyPlanningController,
                  portal.portal_router, operations.operations_router, nursing.nursing_router, billing.billing_router,
                  problems.problems_router, discharge.discharge_router, growth.growth_router, pharmacy.pharmacy_router,
                  death.death_router, lab.lab_router, imaging.imaging_router, today.todays_router,
                  delivery.delivery_router, theatre.theatre_router, theatre.booking_router,
                  immunization.immunization_router, ReferralController, referral.referral_router,
                  TuberculosisController, tuberculosis.tb_router, HivController, hiv.hiv_router,
                  family_planning.family_planning_router, DocumentController, documents.documents_router,
                  IncidentController, incidents.incidents_router, RosterController, roster.roster_router,
                  admin.admin_router, fhir_router]
SIGN_IN_PATHS = {"/signin", "/signin/mfa", "/enrol"}
# What anyone may post without a session or token: signing in, and a package (its signature is checked).
THROTTLED_POSTS = SIGN_IN_PATHS | {PACKAGES_PATH}


def _throttled(request) -> bool:
    return request.method == "POST" and request.url.path in THROTTLED_POSTS


def _throttle_key(request) -> str:
    # Counted apart, so a hospital's pushes never use up a person's sign-in attempts behind the same address.
    return f"{get_remote_address(request)} {'package' if request.url.path == PACKAGES_PATH else 'sign-in'}"


def create_app(db: Database, settings: Settings | None = None, *, extra_route_handlers: list | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    # Every policy file is read before serving, each also read later where it is used: a ministry's or IT's broken
    # edit stops the start with a sentence naming the file and the item (a vaccine, a regimen, a term), not a
    # nurse's first dose or the ministry's Alerts page. `healthos check` reads the same table.
    loaded = {policy_file.name: policy_file.load(settings.policies_dir / policy_file.name)
              for policy_file in POLICY_FILES}
    policy = loaded["access.toml"]
    csrf = CSRFConfig(
        secret=host_secret(settings.home, "csrf.key"),
        cookie_name="healthos_csrf",
        cookie_secure=settings.tls,
        cookie_samesite="strict",
        header_name="x-csrf-token",
        # Bearer-token clients have no cookie jar; /api/ refuses cookie-authenticated writes instead, but for the
        # patient's own API, written to with the session (auth.SESSION_API): checked here, as a page's form is.
        exclude=[f"^/api/(?!{SESSION_API.removeprefix('/api/')})"],
    )
    # Only sign-in and package posts are throttled (`_throttled`), each allowed as many posts a minute
    # per client, counted in the database for all the appliance's workers (web/throttle.py); the rest of
    # the API and static files skip the middleware by path rather than build a Request for `_throttled`
    # to refuse on every call.
    rate_limit = RateLimitConfig(rate_limit=("minute", settings.signin_attempts_per_minute),
                                 check_throttle_handler=_throttled, identifier_for_request=_throttle_key,
                                 exclude=["^/static/", f"^/api/(?!{PACKAGES_PATH.removeprefix('/api/')}$)"],
                                 middleware_class=SharedRateLimitMiddleware)
    # Started with the app's lifespan: an app never started (most tests) never caches a token.
    token_cache = TokenCache.of(db)
    app = Litestar(
        route_handlers=[*ROUTE_HANDLERS, *(extra_route_handlers or []),
                        create_static_files_router(path="/static", directories=[HERE / "static"],
                                                   opt={"public": True}, include_in_schema=False)],
        state=State({"db": db, "policy": policy, "settings": settings, "token_cache": token_cache,
                     "release_rules": loaded["release.toml"]}),
        guards=[permission_guard],
        exception_handlers=errors.handlers,
        middleware=[request_context_middleware, close_uploads_middleware, security_headers_middleware,
                    authentication_middleware, rate_limit.middleware],
        csrf_config=csrf,
        stores={rate_limit.store: DatabaseStore(db)},
        template_config=TemplateConfig(directory=HERE / "templates", engine=JinjaTemplateEngine,
                                       engine_callback=_register_filters),
        openapi_config=OpenAPIConfig(
            title="HealthOS appliance",
            version=__version__,
            render_plugins=[JsonRenderPlugin()],
            # The API's description is public (it holds no data); every other route declares a permission.
            openapi_router=Router(path="/schema", route_handlers=[], opt={"public": True}),
            components=Components(security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer", description=(
                    "An API token of one facility (`hos_…`), issued by its facility admin or `healthos account "
                    "token`; it carries exactly the permissions it names.")),
                "session": SecurityScheme(type="apiKey", security_scheme_in="cookie", name=SESSION_COOKIE,
                                          description="A signed-in person's session; their role's permissions."),
            }),
        ),
        debug=False,
        # Logging is ours (structlog JSON, configured by the CLI); Litestar must not install its own.
        logging_config=None,
        on_startup=[token_cache.start, _freeze_what_startup_built, _bounded_worker_threads(db)],
        on_shutdown=[token_cache.stop],
    )
    _declare_permissions(app)
    return app


def _register_filters(engine: JinjaTemplateEngine) -> None:
    engine.engine.filters["utc_time"] = regulator.utc_time
    # The portal's script warns before the idle timeout signs a person out (static/session.js).
    engine.engine.globals["session_idle_seconds"] = int(identity.DEFAULT_SETTINGS.session_idle.total_seconds())


# Database connections counted for one request held at once: its facility's transaction and a control transaction
# inside it (a registration asking the identity index), and a third as a margin for a path that nests one more.
CONNECTIONS_PER_REQUEST = 3


def _bounded_worker_threads(db: Database):
    """The worker's threads (its synchronous handlers and the sign-in checks) made no more than its pool can serve
    whole. A thread holding a facility transaction waits for a control connection inside it; with more threads
    than the pool has connections for, every connection could be held by one such waiter, and all of them waited
    out the pool's 30 seconds and failed with a 500 (six registrations at once against a pool of two). asyncio's
    own default, min(32, cores + 4) threads, outgrows the default pool of 20 on a server of 16 cores or more."""
    async def bound() -> None:
        threads = max(1, min(32, (os.cpu_count() or 1) + 4, db.connections_at_most() // CONNECTIONS_PER_REQUEST))
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="healthos-request"))

    return bound


def _freeze_what_startup_built() -> None:
    """Take what the process built before serving (modules, the app and its routes, templates, table
    metadata: ~190,000 objects, all living as long as the process) out of the cyclic collector's reach.
    Left in, every full collection walks them all again while every request of the worker waits: under
    bench/chart.py a worker spent 0.72-0.91 s of CPU in full collections, the longest 105 ms; frozen,
    0.21-0.22 s, the longest 75 ms. Collected first, so no garbage is frozen with them."""
    gc.collect()
    gc.freeze()


def _declare_permissions(app: Litestar) -> None:
    """Each operation's permission in the OpenAPI document, so a client's developer (and the facility
    admin issuing its token) reads there what a call needs. OpenAPI 3.1 lets a requirement of a bearer or
    cookie scheme name roles; ours name the permission that `permission_guard` checks."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            permission = handler.opt.get("permission")
            if permission and not handler.opt.get("public"):
                # The patient's own API takes their session alone: a facility's token is refused there.
                schemes = ("session",) if route.path.startswith(SESSION_API) else ("bearer", "session")
                handler.security = [{scheme: [permission]} for scheme in schemes]
