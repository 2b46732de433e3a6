"""Values every serving process of the appliance shares, each until it expires: `control.shared_value` (control
revision c0015). What a uvicorn worker keeps in its own memory another worker never sees and a restart forgets;
the sign-in and package-post throttle counts here (appliance/web/throttle.py is the web's Store over it), so
the appliance's N workers allow a client the attempts of one.

A count is taken by one upsert (`hit`), never read and written back: two workers counting one key at once both
count. An expired value is never answered; expired rows are deleted by one statement at most once a window per
process, whichever write comes after it, so the table holds the values of the last minutes only.
"""

from __future__ import annotations

import time
from datetime import timedelta

import sqlalchemy as sa

from appliance.substrate.db import Database, control_metadata

shared_value = sa.Table(
    "shared_value", control_metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),  # NULL: kept until deleted
    sa.Index("shared_value_expires_idx", "expires_at"),
)

SWEEP_SECONDS = 60.0
# An expiry is `now() + make_interval(secs => :seconds)`: NULL seconds make a NULL expiry (make_interval is
# strict), a value that does not expire.
_GET = sa.text("SELECT value FROM control.shared_value WHERE key = :key "
               "AND (expires_at IS NULL OR expires_at > now())")
_GET_RENEWED = sa.text("""
UPDATE control.shared_value
SET expires_at = CASE WHEN expires_at IS NOT NULL THEN now() + make_interval(secs => CAST(:seconds AS float8)) END
WHERE key = :key AND (expires_at IS NULL OR expires_at > now()) RETURNING value""")
_SET = sa.text("""
INSERT INTO control.shared_value (key, value, expires_at)
VALUES (:key, :value, now() + make_interval(secs => CAST(:seconds AS float8)))
ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at""")
# A count is its decimal digits, as Redis keeps one, so `get` reads it as any other value. The window starts with
# the first hit and is not moved by the next; a hit on an expired count starts a new one.
_HIT = sa.text("""
INSERT INTO control.shared_value AS kept (key, value, expires_at)
VALUES (:key, '1', now() + make_interval(secs => CAST(:seconds AS float8)))
ON CONFLICT (key) DO UPDATE SET
    value = CASE WHEN kept.expires_at > now()
                 THEN convert_to((convert_from(kept.value, 'UTF8')::integer + 1)::text, 'UTF8') ELSE '1' END,
    expires_at = CASE WHEN kept.expires_at > now() THEN kept.expires_at ELSE excluded.expires_at END
RETURNING convert_from(value, 'UTF8')::integer, ceil(extract(epoch FROM expires_at - now()))::integer""")
_EXPIRES_IN = sa.text("SELECT ceil(extract(epoch FROM expires_at - now()))::integer FROM control.shared_value "
                      "WHERE key = :key AND expires_at > now()")
_EXISTS = sa.text("SELECT EXISTS (SELECT 1 FROM control.shared_value WHERE key = :key "
                  "AND (expires_at IS NULL OR expires_at > now()))")
_DELETE = sa.text("DELETE FROM control.shared_value WHERE key = :key")
_DELETE_ALL = sa.text("DELETE FROM control.shared_value")
# SKIP LOCKED: a sweep never waits on a row another worker is counting, nor makes it wait.
_SWEEP = sa.text("DELETE FROM control.shared_value WHERE key IN (SELECT key FROM control.shared_value "
                 "WHERE expires_at <= now() FOR UPDATE SKIP LOCKED)")


def _seconds(expires_in: int | float | timedelta | None) -> float | None:
    """Seconds from now, or None for no expiry (litestar's stores read 0 as none too)."""
    seconds = expires_in.total_seconds() if isinstance(expires_in, timedelta) else expires_in
    return seconds or None


class SharedStore:
    """The shared values of one database, each call one statement without a transaction around it."""

    def __init__(self, db: Database):
        self._db = db
        self._next_sweep = 0.0

    def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        """The value of `key`, None if it has none or it expired; `renew_for` moves an expiring value's expiry."""
        seconds = _seconds(renew_for)
        with self._db.control_autocommit() as conn:
            value = conn.execute(_GET if seconds is None else _GET_RENEWED, {"key": key, "seconds": seconds}).scalar()
        return None if value is None else bytes(value)

    def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None) -> None:
        data = value.encode() if isinstance(value, str) else value
        with self._db.control_autocommit() as conn:
            conn.execute(_SET, {"key": key, "value": data, "seconds": _seconds(expires_in)})
        self._sweep_now_and_then()

    def hit(self, key: str, window: int | timedelta) -> tuple[int, int]:
        """Count one more hit of `key` in its window of `window` seconds, started by the first hit: how many there
        have been in the window, this one included, and the seconds until it ends."""
        with self._db.control_autocommit() as conn:
            hits, seconds_left = conn.execute(_HIT, {"key": key, "seconds": _seconds(window)}).one()
        self._sweep_now_and_then()
        return hits, seconds_left

    def expires_in(self, key: str) -> int | None:
        """Seconds until `key` expires; None if it has no value or the value does not expire."""
        with self._db.control_autocommit() as conn:
            return conn.execute(_EXPIRES_IN, {"key": key}).scalar()

    def exists(self, key: str) -> bool:
        with self._db.control_autocommit() as conn:
            return conn.execute(_EXISTS, {"key": key}).scalar()

    def delete(self, key: str) -> None:
        with self._db.control_autocommit() as conn:
            conn.execute(_DELETE, {"key": key})

    def delete_all(self) -> None:
        with self._db.control_autocommit() as conn:
            conn.execute(_DELETE_ALL)

    def sweep(self) -> int:
        """Delete the expired values; how many were deleted."""
        with self._db.control_autocommit() as conn:
            return conn.execute(_SWEEP).rowcount

    def _sweep_now_and_then(self) -> None:
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + SWEEP_SECONDS
            self.sweep()
