"""Two registrations written at once, for the programme registers' numbers in sequence (the TB register's, the ART
register's): the first holds its transaction open once written, the second starts and is seen waiting on a lock, then
the first commits and the second goes on."""

from __future__ import annotations

import threading
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.substrate.db import Database


def two_at_once(db: Database, slug: str, write: Callable[[Connection, object], str], first: object,
                second: object) -> list[str]:
    """What `write` answered for `first` and `second` (each in its own transaction at facility `slug`, the second
    started while the first is uncommitted), sorted; a failure in either fails the caller's test."""
    first_written, numbers, failures = threading.Event(), [], []

    def registration(who: object, hold: threading.Event | None) -> None:
        try:
            with db.tenant(slug) as conn:
                numbers.append(write(conn, who))
                if hold is not None:
                    first_written.set()
                    assert hold.wait(10)
        except Exception as exc:  # reported by the assertion below
            failures.append(exc)

    release = threading.Event()
    holder = threading.Thread(target=registration, args=(first, release))
    holder.start()
    assert first_written.wait(10)
    waiter = threading.Thread(target=registration, args=(second, None))
    waiter.start()
    with db.control() as conn:  # the second is waiting on the counter's row lock
        for _ in range(200):
            if conn.execute(sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar():
                break
            threading.Event().wait(0.02)
    release.set()
    holder.join(10)
    waiter.join(10)
    assert not failures, failures
    return sorted(numbers)
