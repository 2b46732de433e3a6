"""A worker under more requests than its database pool can serve at once. A registration holds its facility's
transaction while it waits for a control connection (the identity index): with more request threads than the pool
has connections for, every connection could be held by such a waiter, and all of them waited out the pool's timeout
and failed with a 500. The worker's threads are bounded by its pool, so they queue instead; a request that still finds
no connection in time is told the appliance is busy (503, Retry-After), and nothing was written."""

from __future__ import annotations

import contextlib
import http.client
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from appliance.substrate import identity
from appliance.substrate.db import Database
from appliance.web.app import create_app
from tests.conftest import served_in_thread
from tests.test_cli import _free_port

POOL_TIMEOUT_SECONDS = 3


@dataclass(frozen=True)
class Served:
    db: Database
    port: int
    slug: str
    token: str


@pytest.fixture(scope="module")
def served(db, settings, policy, tenant_factory) -> Iterator[Served]:
    """The app over a pool of two connections and no overflow, served by uvicorn on a loopback port."""
    engine = sa.create_engine(db.engine.url.render_as_string(hide_password=False), pool_size=2, max_overflow=0,
                              pool_timeout=POOL_TIMEOUT_SECONDS)
    small = Database(engine=engine)
    facility = tenant_factory(name="Busy Desk Clinic")
    with db.control() as conn:
        machine = identity.create_account(conn, policy, kind="machine", email=f"m-{secrets.token_hex(5)}@test.invalid",
                                          display_name="Registration desk", role="facility_admin", tenant=facility.slug)
        token = identity.issue_api_token(conn, account_id=machine.account_id, tenant=facility.slug, name="desk",
                                         permissions=sorted(policy.permissions_of("clinician")))
    port = _free_port()
    try:
        with served_in_thread(create_app(small, settings), port, "pool-pressure-uvicorn"):
            yield Served(small, port, facility.slug, token)
    finally:
        engine.dispose()


def _register(served: Served, given: str) -> tuple[int, dict, dict]:
    body = json.dumps({"family_name": "Wanjiru", "given_names": given, "birth_date": "1991-04-02", "sex": "female",
                       "identifiers": [{"system": "national_id", "value": f"BUSY-{secrets.token_hex(4)}"}]})
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
    try:
        connection.request("POST", f"/api/t/{served.slug}/patients", body, {
            "authorization": f"Bearer {served.token}", "content-type": "application/json"})
        answer = connection.getresponse()
        return answer.status, dict(answer.getheaders()), json.loads(answer.read())
    finally:
        connection.close()


def _charts_named(db: Database, slug: str, given: str) -> int:
    with db.tenant(slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM patient WHERE given_names LIKE :given"),
                            {"given": f"{given}%"}).scalar()


def test_more_registrations_at_once_than_the_pool_has_connections_all_register(served, db):
    answers: list[tuple[int, dict, dict]] = []
    desks = [threading.Thread(target=lambda n=n: answers.append(_register(served, f"Desk{n}"))) for n in range(6)]
    for desk in desks:
        desk.start()
    for desk in desks:
        desk.join(timeout=120)

    assert sorted(status for status, _, _ in answers) == [201] * 6, [body for _, _, body in answers]
    assert _charts_named(db, served.slug, "Desk") == 6


def test_a_request_finding_no_connection_in_time_is_told_the_appliance_is_busy(served, db):
    with contextlib.ExitStack() as held:
        for _ in range(2):  # every connection of the pool taken, as by requests that do not finish
            held.enter_context(served.db.engine.connect())
        status, headers, body = _register(served, "Waited")

    assert status == 503 and headers["retry-after"] == "5"
    assert body["detail"] == ("the appliance is busier than it can answer just now and did nothing with this request: "
                              "try again in 5 seconds")
    assert _charts_named(db, served.slug, "Waited") == 0
