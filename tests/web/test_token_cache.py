"""The API-token cache, tried from the attacker's side: a token the serving process has remembered is
refused as soon as it is revoked or its account disabled, never answers for another facility, and
the cache answers nothing while it cannot hear of changes."""

import time

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from appliance.substrate import identity
from appliance.substrate.token_cache import TokenCache


@pytest.fixture
def started(app, db, policy, tenant_a):
    """The app with its lifespan running (so its token cache listens), and a token client of facility A."""
    with TestClient(app=app, raise_server_exceptions=False) as client:
        cache: TokenCache = app.state.token_cache
        assert cache.wait_listening(10)
        with db.control() as conn:
            machine = identity.create_account(conn, policy, kind="machine", role="facility_admin",
                                              email=f"cache-{time.time_ns()}@test.invalid",
                                              display_name="Cache test client", tenant=tenant_a.slug)
            client.token = identity.issue_api_token(conn, account_id=machine.account_id, tenant=tenant_a.slug,
                                                    name="cache", permissions=["operations.ward.read"])
        client.account_id = machine.account_id
        client.headers["authorization"] = f"Bearer {client.token}"
        client.cache = cache
        yield client


def _until_told(cache: TokenCache, generation: int) -> None:
    deadline = time.monotonic() + 10
    while cache.generation == generation:
        assert time.monotonic() < deadline, "no notification reached the cache within 10 s"
        time.sleep(0.01)


def _remembered(client) -> bool:
    return client.cache.lookup(identity.token_digest(client.token)) is not None


def test_a_remembered_token_is_refused_once_revoked(started, db, tenant_a):
    wards = f"/api/t/{tenant_a.slug}/wards"
    assert started.get(wards).status_code == 200 and _remembered(started)
    assert started.get(wards).status_code == 200  # answered from the cache
    generation = started.cache.generation
    with db.control() as conn:
        token_id = conn.execute(sa.select(identity.api_token.c.id).where(
            identity.api_token.c.token_hash == identity.token_digest(started.token))).scalar_one()
        identity.revoke_api_token(conn, token_id)
    _until_told(started.cache, generation)
    assert started.get(wards).status_code == 401 and not _remembered(started)


def test_a_remembered_token_is_refused_once_its_account_is_disabled(started, db, tenant_a):
    wards = f"/api/t/{tenant_a.slug}/wards"
    assert started.get(wards).status_code == 200 and _remembered(started)
    generation = started.cache.generation
    with db.control() as conn:  # as an operator's script would, without going through identity
        conn.execute(sa.update(identity.account).where(identity.account.c.id == started.account_id)
                     .values(disabled_at=sa.func.now()))
    _until_told(started.cache, generation)
    assert started.get(wards).status_code == 401


def test_a_change_rolled_back_or_unrelated_leaves_the_cache_alone(started, db, tenant_a):
    assert started.get(f"/api/t/{tenant_a.slug}/wards").status_code == 200
    generation = started.cache.generation
    with pytest.raises(RuntimeError), db.control() as conn:
        conn.execute(sa.update(identity.api_token).values(name=identity.api_token.c.name))
        raise RuntimeError("rolled back")
    with db.control() as conn:  # sign-in bookkeeping does not concern tokens
        conn.execute(sa.update(identity.account).where(identity.account.c.id == started.account_id)
                     .values(failed_signins=0))
    time.sleep(0.3)
    assert started.cache.generation == generation and _remembered(started)


def test_a_remembered_token_still_never_opens_another_facility(started, tenant_a, tenant_b):
    assert started.get(f"/api/t/{tenant_a.slug}/wards").status_code == 200 and _remembered(started)
    assert started.get(f"/api/t/{tenant_b.slug}/wards").status_code == 403
    assert started.get("/api/t/no_such_facility/wards").status_code == 404
    guessed = TestClient(app=started.app, raise_server_exceptions=False)
    guessed.headers["authorization"] = f"Bearer {started.token[:-2]}xx"
    assert guessed.get(f"/api/t/{tenant_a.slug}/wards").status_code == 401


def test_a_lookup_that_raced_a_change_is_not_kept(started):
    principal = started.cache.lookup(identity.token_digest(started.token))
    assert principal is None  # nothing asked yet
    generation = started.cache.generation
    started.cache.forget_all()  # a notification arrived while the database was being asked
    started.cache.remember("digest-of-a-token-just-revoked", object(), generation)
    assert started.cache.lookup("digest-of-a-token-just-revoked") is None


def test_the_cache_answers_nothing_while_it_cannot_hear_changes(started, db, tenant_a):
    wards = f"/api/t/{tenant_a.slug}/wards"
    assert started.get(wards).status_code == 200 and _remembered(started)
    with db.control() as conn:
        listeners = conn.execute(sa.text(
            "SELECT pid FROM pg_stat_activity WHERE query = 'LISTEN healthos_credentials'")).scalars().all()
        assert listeners, "no backend is listening for the cache"
        ended = [conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
                 for pid in listeners]
    assert all(ended)
    deadline = time.monotonic() + 10
    while started.cache.wait_listening(0):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not _remembered(started)
    assert started.get(wards).status_code == 200  # asked of the database meanwhile, not remembered
    assert not _remembered(started)
    assert started.cache.wait_listening(10)  # back, and remembering again
    assert started.get(wards).status_code == 200 and _remembered(started)


def test_a_cache_that_does_not_hear_its_probe_never_answers(db, started):
    """As behind a pooler that does not carry LISTEN: notifications would be lost, so nothing is kept."""
    deaf = TokenCache(db.unpooled_connection, announce=lambda payload: None, probe_timeout=0.3)
    deaf.start()
    try:
        assert not deaf.wait_listening(1.0)
        deaf.remember("a-digest", object(), deaf.generation)
        assert deaf.lookup("a-digest") is None
    finally:
        deaf.stop()
    # The app's own cache hears its probes through the pool, and a probe empties no cache.
    generation = started.cache.generation
    probing = TokenCache.of(db, probe_timeout=5)
    probing.start()
    try:
        assert probing.wait_listening(10)
    finally:
        probing.stop()
    assert started.cache.generation == generation


def test_a_cache_started_again_after_a_stop_listens_again(db):
    """An app whose lifespan runs twice (the tests' one app does, once per module that enters it) stops its cache
    and starts it again: it listens again, and until then remembers nothing."""
    cache = TokenCache.of(db, probe_timeout=5)
    cache.start()
    try:
        assert cache.wait_listening(10)
        cache.stop()
        cache.remember("a-digest", object(), cache.generation)
        assert cache.lookup("a-digest") is None
        cache.start()
        assert cache.wait_listening(10)
    finally:
        cache.stop()
