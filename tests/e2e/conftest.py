"""The browser harness: a real appliance served by uvicorn on 127.0.0.1 (a free port, a background
thread) over the session's database, a facility with demo-like clinical configuration and patients
with history, and Debian's chromium driven by Playwright's sync API.

Playwright never downloads a browser here: `executable_path` points at the distribution's chromium
(scripts/test installs it with apt). The sync API runs its own event loop, so nothing here is async.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.substrate.principal import Principal
from appliance.substrate.shared_store import SharedStore
from tests.conftest import served_in_thread
from tests.e2e.history import CLINICAL_CONFIG, Chart, populate

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@dataclass
class Clinic:
    slug: str
    name: str
    charts: list[Chart]


@pytest.fixture(scope="module")
def clinic(db, tenant_factory, person_factory) -> Clinic:
    config = tenant_factory(name="Lakeshore District Hospital", **CLINICAL_CONFIG, wards=[
        {"code": "GEN", "name": "General ward", "kind": "inpatient", "beds": 12},
        {"code": "MAT", "name": "Maternity ward", "kind": "maternity", "beds": 6},
    ])
    author = person_factory("clinician", config.slug)
    principal = Principal(account_id=author.account_id, kind="staff", display_name="Test clinician",
                          tenant=config.slug, role="clinician")
    with db.tenant(config.slug) as conn:
        charts = populate(conn, principal)
    return Clinic(config.slug, config.name, charts)


@pytest.fixture(scope="module")
def other_clinic(tenant_factory) -> Clinic:
    config = tenant_factory(name="Hillview Health Centre", **CLINICAL_CONFIG)
    return Clinic(config.slug, config.name, [])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def served_app(db, settings):
    """The app the browser journeys are served, built once (1-2 s each, which every journey module paid)."""
    from appliance.web.app import create_app

    # Every journey signs in from 127.0.0.1; the sign-in rate limit is tested elsewhere, not tripped here.
    return create_app(db, dataclasses.replace(settings, signin_attempts_per_minute=1000))


@pytest.fixture(scope="module")
def live_server(served_app, clinic, db) -> Iterator[str]:
    """The appliance's real app behind a real HTTP server, for a real browser: a server of the module's own, over
    the session's app with the throttle's counts forgotten (as the `app` fixture gives the in-process tests)."""
    SharedStore(db).delete_all()
    port = _free_port()
    with served_in_thread(served_app, port, "e2e-uvicorn"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Chromium for one module: Playwright's sync API keeps an event loop running in the thread while it is started,
    and the modules after would find asyncio.run refused (the HL7 listener's, the production workers')."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Watch:
    """What the browser reported during a journey: console errors, CSP violations, failed requests
    and error responses. A journey names the refusals it provokes; anything else fails it."""

    console: list[str] = field(default_factory=list)
    csp: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def attach(self, page) -> None:
        page.on("console", self._console)
        page.on("requestfailed", self._failed)
        page.on("response", lambda response: response.status >= 400
                and self.errors.append((response.status, response.url)))
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def _failed(self, request) -> None:
        # A request still in flight when the page navigates on (the favicon, typically) is aborted by
        # the browser; that is the journey moving faster than a person, not a failure of the appliance.
        if request.failure != "net::ERR_ABORTED":
            self.failed.append(f"{request.method} {request.url}: {request.failure}")

    def _console(self, message) -> None:
        text = message.text
        if "Content Security Policy" in text or "Content-Security-Policy" in text:
            self.csp.append(text)
        elif message.type == "error":
            self.console.append(text)

    def assert_clean(self, provoked: set[int] = frozenset()) -> None:
        assert self.csp == [], f"CSP violations: {self.csp}"
        assert self.page_errors == [], f"script errors: {self.page_errors}"
        assert self.failed == [], f"failed requests: {self.failed}"
        unexpected = [(status, url) for status, url in self.errors if status not in provoked]
        assert unexpected == [], f"error responses: {unexpected}"
        # Chromium logs an error response it loaded ("Failed to load resource: ... 409"); those were
        # provoked and checked above, anything else in the console is a failure.
        stray = [t for t in self.console
                 if not any(f"status of {status}" in t for status in provoked)]
        assert stray == [], f"console errors: {stray}"


class Journey:
    """Screenshots of a journey, numbered in order, in test-artifacts/<journey>/ (kept by CI)."""

    def __init__(self, name: str):
        self.folder = ARTIFACTS / name
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.png"):
            old.unlink()
        self.step = 0

    def shot(self, page, label: str) -> Path:
        self.step += 1
        path = self.folder / f"{self.step:02d}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        return path
