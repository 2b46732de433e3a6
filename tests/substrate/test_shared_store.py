"""The values every serving process shares (control.shared_value): kept until they expire, counted by one upsert,
the expired ones swept away."""

import secrets
from datetime import timedelta

import pytest
import sqlalchemy as sa

from appliance.substrate.shared_store import SharedStore


@pytest.fixture
def store(db) -> SharedStore:
    return SharedStore(db)


def _key() -> str:
    return f"test {secrets.token_hex(4)}"


def _expire(db, key: str) -> None:
    with db.control() as conn:
        conn.execute(sa.text("UPDATE control.shared_value SET expires_at = now() - interval '1 second' "
                             "WHERE key = :key"), {"key": key})


def test_a_value_is_kept_until_it_expires_and_renewed_when_asked(store, db):
    key, forever = _key(), _key()
    store.set(key, "kept", expires_in=timedelta(seconds=30))
    store.set(forever, b"\x00forever")
    assert store.get(key) == b"kept" and store.exists(key)
    assert 0 < store.expires_in(key) <= 30
    assert store.get(forever) == b"\x00forever" and store.expires_in(forever) is None

    assert store.get(key, renew_for=300) == b"kept"
    assert 30 < store.expires_in(key) <= 300
    assert store.get(forever, renew_for=300) == b"\x00forever" and store.expires_in(forever) is None

    _expire(db, key)
    assert store.get(key) is None and store.get(key, renew_for=300) is None
    assert not store.exists(key) and store.expires_in(key) is None

    store.delete(forever)
    assert store.get(forever) is None


def test_hits_count_in_a_window_that_the_next_hit_after_it_starts_again(store, db):
    key = _key()
    assert [store.hit(key, 60)[0] for _ in range(3)] == [1, 2, 3]
    assert store.get(key) == b"3"
    hits, seconds_left = store.hit(key, 60)
    assert hits == 4 and 0 < seconds_left <= 60

    _expire(db, key)
    assert store.hit(key, 60) == (1, 60)


def test_the_sweep_deletes_the_expired_values_only(store, db):
    kept, expired = _key(), _key()
    store.set(kept, "kept", expires_in=60)
    store.set(expired, "gone", expires_in=60)
    _expire(db, expired)
    assert store.sweep() >= 1
    with db.control() as conn:
        left = set(conn.execute(sa.text("SELECT key FROM control.shared_value WHERE key IN (:kept, :expired)"),
                                {"kept": kept, "expired": expired}).scalars())
    assert left == {kept}
