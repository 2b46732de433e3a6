"""What every layer's demo generator shares (`healthos up --demo`): reproducible random streams, and
the machine principal that authors a layer's demo data. A layer's demo finds out whether it has run
before by looking for entries of its principal, so the principal's id must never change."""

from __future__ import annotations

import hashlib
import random
import uuid

from appliance.substrate.principal import Principal


def demo_stream(*key: object) -> random.Random:
    """A random stream fixed by `key` (a purpose, the seed, the facility's slug): the same key gives the
    same demo data on every machine. One stream per purpose, so adding draws to one (as the clinical
    demo's times and census did) leaves what the others gave as it was."""
    digest = hashlib.sha256(":".join(str(part) for part in key).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 -- synthetic data must be reproducible, not secret


def demo_author(namespace: uuid.UUID, slug: str, who: str, role: str) -> Principal:
    """The machine principal writing a layer's demo data in facility `slug`, "Demo data (`who`)"."""
    return Principal(account_id=uuid.uuid5(namespace, f"{slug}:{who}"), kind="machine",
                     display_name=f"Demo data ({who})", tenant=slug, role=role)
