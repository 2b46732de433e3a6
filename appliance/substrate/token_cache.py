"""The API-token cache (identity room): who a bearer token speaks for, remembered by the serving
process so that an API call no longer spends a database round trip — and a hop to a worker thread —
on the same answer it got a moment ago.

Every API call used to look its token up in `control.api_token`. Under bench/chart.py that lookup and
its thread hop were ~10% of the server's CPU per chart read, and one of ~15 statements per request
under bench/intake.py.

Correctness rests on being told of every change, not on a short lifetime:
- A trigger on `control.api_token` and `control.account` (control revision c0007) sends a
  notification on `CHANNEL` in the transaction that revokes a token or disables an account, so
  PostgreSQL delivers it when that transaction commits.
- Each serving process keeps one connection LISTENing on it, and empties its cache on every
  notification. A change is in force on every worker within the notification's delivery (~ms), as a
  request already in flight would have been served anyway.
- The cache answers only while notifications are seen to arrive: the listener sends one through
  another connection (a probe) when it starts and every `probe_seconds`, and turns the cache off if
  it does not hear it within `probe_timeout` (a pooler in transaction mode, say, which does not carry
  LISTEN). When the connection drops, the cache empties and every lookup goes to the database until
  the connection is back and heard again (then it empties again: a notification sent meanwhile was
  missed).
- An answer read from the database is kept only if no notification arrived since the read began
  (`generation`), so a revocation racing a lookup cannot leave the revoked token behind.
- Entries also expire after `ttl` seconds: a bound, should a connection die without the socket
  saying so.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

import psycopg
import structlog

from appliance.substrate.db import Database, driver
from appliance.substrate.principal import Principal

log = structlog.get_logger(__name__)

CHANNEL = "healthos_credentials"
PROBE = "probe:"  # a probe's payload; the triggers' payloads are table names
RECONNECT_SECONDS = 2.0


class TokenCache:
    def __init__(self, connect: Callable[[], psycopg.Connection], announce: Callable[[str], None], *,
                 ttl: float = 60.0, max_entries: int = 10_000, probe_seconds: float = 30.0,
                 probe_timeout: float = 5.0):
        self._connect = connect
        self._announce = announce
        self._probe_seconds = probe_seconds
        self._probe_timeout = probe_timeout
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._generation = 0
        self._lock = threading.Lock()
        self._listening = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def of(cls, db: Database, **options) -> TokenCache:
        """The cache of a process serving `db`: it listens on a connection of its own and probes through
        the pool."""

        def announce(payload: str) -> None:
            with db.control_autocommit() as conn:
                driver(conn).execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))

        return cls(db.unpooled_connection, announce, **options)

    # -- the serving path: called from the event loop and from worker threads ---------------------

    def lookup(self, digest: str) -> Principal | None:
        """The principal of a token digest, if known and still valid; None means "ask the database"."""
        if not self._listening.is_set():
            return None
        hit = self._entries.get(digest)
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    @property
    def generation(self) -> int:
        """Read before looking a token up in the database; give it back to `remember`."""
        return self._generation

    def remember(self, digest: str, principal: Principal, generation: int) -> None:
        with self._lock:
            if generation != self._generation or not self._listening.is_set():
                return  # something changed since the read began, or no one is listening for changes
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[digest] = (principal, time.monotonic() + self._ttl)

    def forget_all(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    # -- the listener ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            # Started again after a stop (an app whose lifespan runs twice, as the tests' one app does): listen again.
            self._stopping.clear()
            self._thread = threading.Thread(target=self._listen, name="token-cache-listener", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def wait_listening(self, timeout: float) -> bool:
        return self._listening.wait(timeout)

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                with self._connect() as conn:
                    conn.autocommit = True
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.forget_all()  # a change before LISTEN took effect was not heard
                    while not self._stopping.is_set() and self._heard_probe(conn):
                        if not self._listening.is_set():
                            self._listening.set()
                            log.info("token_cache_listening")
                        self._hear_changes(conn, time.monotonic() + self._probe_seconds)
                    if not self._stopping.is_set():
                        log.warning("token_cache_probe_not_heard", timeout_seconds=self._probe_timeout)
            except psycopg.Error as exc:
                log.warning("token_cache_listener_lost", error=type(exc).__name__)
            except Exception:  # the listener outlives any fault; the cache stays off until it is back
                log.exception("token_cache_listener_failed")
            finally:
                self._listening.clear()
                self.forget_all()
            self._stopping.wait(RECONNECT_SECONDS)

    def _hear_changes(self, conn: psycopg.Connection, until: float) -> None:
        while not self._stopping.is_set() and time.monotonic() < until:
            # Woken four times a second to see whether the process is stopping.
            for notice in conn.notifies(timeout=0.25):
                if not notice.payload.startswith(PROBE):
                    self.forget_all()

    def _heard_probe(self, conn: psycopg.Connection) -> bool:
        """Send a probe through another connection and wait for it here."""
        payload = PROBE + secrets.token_hex(8)
        self._announce(payload)
        deadline = time.monotonic() + self._probe_timeout
        while (left := deadline - time.monotonic()) > 0 and not self._stopping.is_set():
            for notice in conn.notifies(timeout=min(left, 0.25)):
                if notice.payload == payload:
                    return True
                if not notice.payload.startswith(PROBE):
                    self.forget_all()
        return False
