"""The idle timeout from the server's side: typing keeps a session alive through /session/alive (CSRF-
protected, nothing else), an idle session still ends, and a form posted after it ended gets a page that
offers to sign in again. What the browser keeps of the text is tried in tests/e2e/test_session_journey.py."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from litestar.testing import TestClient

from appliance.substrate import identity
from tests.web.test_auth import csrf_token


def idle_for(db, client: TestClient, minutes: float) -> None:
    """As if the person behind `client` had done nothing for `minutes`: the session last seen that long ago."""
    digest = identity.token_digest(client.cookies["healthos_session"])
    with db.control() as conn:
        conn.execute(sa.update(identity.session).where(identity.session.c.token_hash == digest)
                     .values(last_seen_at=sa.func.now() - dt.timedelta(minutes=minutes)))


def last_seen(db, client: TestClient) -> dt.datetime:
    digest = identity.token_digest(client.cookies["healthos_session"])
    with db.control() as conn:
        return conn.execute(sa.select(identity.session.c.last_seen_at)
                            .where(identity.session.c.token_hash == digest)).scalar_one()


def test_typing_keeps_the_session_alive_and_an_idle_one_still_ends(db, signed_in, tenant_a):
    client = signed_in("clinician", tenant_a.slug)
    page = client.get(f"/t/{tenant_a.slug}/patients")
    token = csrf_token(page.text)
    assert 'id="session"' in page.text and 'data-idle-seconds="900"' in page.text
    assert f'data-account="{client.person.account_id}"' in page.text
    assert '<script src="/static/session.js" defer></script>' in page.text

    idle_for(db, client, 14)
    assert client.post("/session/alive", headers={"x-csrf-token": token}).status_code == 204
    assert dt.datetime.now(dt.UTC) - last_seen(db, client) < dt.timedelta(minutes=1)

    assert client.post("/session/alive").status_code == 403  # no CSRF token

    idle_for(db, client, 16)
    ended = client.post("/session/alive", headers={"x-csrf-token": token})
    assert ended.status_code == 401 and "sign in" in ended.json()["detail"]
    assert client.get(f"/t/{tenant_a.slug}/patients", follow_redirects=False).status_code == 302  # stays ended

    anonymous = TestClient(app=client.app, raise_server_exceptions=False)
    assert anonymous.post("/session/alive", headers={"x-csrf-token": token}).status_code in {401, 403}


def test_a_form_posted_after_the_session_ended_offers_to_sign_in_again(db, signed_in, tenant_a):
    client = signed_in("clinician", tenant_a.slug)
    token = csrf_token(client.get(f"/t/{tenant_a.slug}/patients").text)
    idle_for(db, client, 16)
    late = client.post(f"/t/{tenant_a.slug}/patients", data={"_csrf_token": token, "family_name": "Late"},
                       headers={"accept": "text/html"}, follow_redirects=False)
    assert late.status_code == 401
    assert 'href="/signin">Sign in again' in late.text and "data-draft-kept" in late.text
    assert '<script src="/static/session.js" defer></script>' in late.text
