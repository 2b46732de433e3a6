"""The sign-in and package-post throttle counted for every worker at once: each app over the same database
(as the appliance's uvicorn workers are) counts into the same control.shared_value."""

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from appliance.substrate.shared_store import SharedStore
from appliance.web.app import create_app

TRY_AGAIN = re.compile(r"[Tt]oo many attempts from this address; try again in (\d+) seconds?")


@pytest.fixture
def workers(app, db, settings):
    """Two apps over the one database, as two of the appliance's workers, their counts forgotten."""
    SharedStore(db).delete_all()
    return [TestClient(app=served, raise_server_exceptions=False) for served in (app, create_app(db, settings))]


def _sign_in(client: TestClient, **headers):
    return client.post("/signin", data={"email": "x@test.invalid", "password": "y"}, headers=headers)


def _expire_every_count(db) -> None:
    with db.control() as conn:
        conn.execute(sa.text("UPDATE control.shared_value SET expires_at = now() - interval '1 second'"))


def test_the_limit_holds_across_workers_and_the_refusal_says_when_to_try_again(workers, db, settings):
    allowed = settings.signin_attempts_per_minute
    statuses = [_sign_in(workers[attempt % 2]).status_code for attempt in range(allowed)]
    assert 429 not in statuses

    for worker in workers:
        refused = _sign_in(worker, accept="application/json")
        assert refused.status_code == 429
        seconds = int(TRY_AGAIN.fullmatch(refused.json()["detail"]).group(1))
        assert 0 < seconds <= 60
        assert refused.headers["retry-after"] == str(seconds)
        assert refused.headers["ratelimit-remaining"] == "0"

    page = _sign_in(workers[0], accept="text/html")
    assert page.status_code == 429
    waited = re.search(r"wait (\d+) seconds?, then sign in again", page.text)
    assert waited and 0 < int(waited.group(1)) <= 60 and page.headers["retry-after"] == waited.group(1), page.text

    _expire_every_count(db)
    again = [_sign_in(workers[attempt % 2]).status_code for attempt in range(allowed + 1)]
    assert 429 not in again[:-1] and again[-1] == 429


def test_posts_arriving_together_at_two_workers_are_each_counted(workers, settings):
    allowed = settings.signin_attempts_per_minute
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda attempt: _sign_in(workers[attempt % 2]).status_code, range(3 * allowed)))
    assert len([status for status in statuses if status != 429]) == allowed

