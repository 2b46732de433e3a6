"""Patient search by name at a facility of 20,000 patients, on a private embedded cluster and a real HTTP
server: `GET /api/t/<facility>/patients?name=...` (the desk's search, audited as a search of the patients it
shows), one client, the four ways a desk types a name — a surname, a given name, given and surname, and the
first two letters of a surname as they are typed — each a run of requests picking names at random, then the
four mixed; p50 and p99 of each.

The patients are written in bulk (their names only: the search reads no entry), their surnames and given
names drawn, most common first, from the demo's Kenyan names and a long tail of made-up ones, as a real
register's are, then vacuumed and analysed. A table is seldom so settled: the trigram index keeps the names
registered since autovacuum last passed in a pending list it reads whole (autoanalyze comes after a tenth of
the table has changed), which makes the index look dearer to the planner. So the four mixed are timed again
after BURST more registrations. The server and the load are bench/chart.py's (uvicorn, one worker per core, a
clinician's bearer token, the keep-alive asyncio client). No issue sets a target beyond "fast" (issue 4): the
figures say what a desk waits. `BENCH_SEARCH_PATIENTS` changes the size.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import time
import urllib.parse
import uuid
from collections.abc import Callable

import sqlalchemy as sa

import appliance.layers  # noqa: F401  (registers the layers' tables, appliers and reactions)
from appliance.layers.clinical.demo import FAMILY, FEMALE, MALE
from appliance.layers.clinical.models import patient
from appliance.layers.clinical.service import name_search_columns
from appliance.substrate.db import tenant_schema
from appliance.substrate.tenancy import apply_config
from bench.chart import Server, bench_tenant, clinician_token, drive, open_bench_database

PATIENTS = int(os.environ.get("BENCH_SEARCH_PATIENTS", "20000"))
BURST = PATIENTS * 3 // 40  # registered after the vacuum: under autoanalyze's tenth of the table
MADE_UP_FAMILIES = 3000
MADE_UP_GIVEN = 600
SYLLABLES = ("ka", "ma", "mu", "wa", "nji", "ru", "o", "tie", "no", "chi", "eng", "ki", "pro", "che", "be", "ri",
             "sa", "la", "nya", "ngo", "ge", "ro", "ti", "mbu", "gu", "a", "ku", "si", "le", "ba", "ha", "dhi", "ya")
REQUESTS = 200  # a run, after WARMUP
WARMUP = 20
BATCH = 5000


class Register:
    """Names drawn as a register's are, few common ones and many rare (weights falling with the rank)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.families = FAMILY + [self._made_up() for _ in range(MADE_UP_FAMILIES)]
        self.givens = FEMALE + MALE + [self._made_up() for _ in range(MADE_UP_GIVEN)]
        self.family_weights = [1 / (rank + 1) ** 0.8 for rank in range(len(self.families))]
        self.given_weights = [1 / (rank + 1) ** 0.8 for rank in range(len(self.givens))]
        self.registered = 0

    def _made_up(self) -> str:
        return "".join(self.rng.choice(SYLLABLES) for _ in range(self.rng.randint(2, 4))).capitalize()

    def register(self, db, slug: str, count: int) -> None:
        """`count` more patients, in bulk."""
        rng, born = self.rng, dt.date(1950, 1, 1)
        for start in range(0, count, BATCH):
            rows = []
            for _ in range(min(BATCH, count - start)):
                family = rng.choices(self.families, self.family_weights)[0]
                given = " ".join(rng.choices(self.givens, self.given_weights, k=rng.choice([1, 1, 2])))
                rows.append({"id": uuid.uuid4(), "mrn": f"{self.registered:07d}", "family_name": family,
                             "given_names": given, "birth_date": born + dt.timedelta(days=rng.randint(0, 27_000)),
                             "sex": rng.choice(["female", "male"]), "demographics_entry_id": uuid.uuid4(),
                             **name_search_columns(given, family)})
                self.registered += 1
            with db.tenant(slug) as conn:
                conn.execute(patient.insert(), rows)


def run(console) -> list[dict]:
    home, db = open_bench_database("healthos-bench-search-")
    server = None
    try:
        slug = "search_01"
        apply_config(db, bench_tenant("lakeshore_district.toml", slug, "Search bench facility"))
        names = Register(random.Random(4))
        started = time.perf_counter()
        names.register(db, slug, PATIENTS)
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f"VACUUM ANALYZE {tenant_schema(slug)}.patient"))
        console.print(f"  {PATIENTS} patients in {time.perf_counter() - started:.1f} s")
        token = clinician_token(db, slug)
        server = Server(home, workers=len(os.sched_getaffinity(0)))
        # Typed as a desk would: mostly the common names; two letters of any.
        common_families, common_givens = names.families[:200], names.givens[:100]
        shapes: dict[str, Callable[[random.Random], str]] = {
            "surname": lambda r: r.choice(common_families),
            "given name": lambda r: r.choice(common_givens),
            "given name and surname": lambda r: f"{r.choice(common_givens)} {r.choice(common_families)}",
            "two letters typed": lambda r: r.choice(names.families)[:2],
        }

        def mixed(r: random.Random) -> str:
            return r.choice(list(shapes.values()))(r)

        def measure(typed: Callable[[random.Random], str]) -> dict:
            def search(r: random.Random):
                return "GET", f"/api/t/{slug}/patients?name={urllib.parse.quote(typed(r).lower())}", token, b"", 200

            drive(server.address, search, 1, 0, requests_per_client=WARMUP)
            return drive(server.address, search, 1, 0, requests_per_client=REQUESTS)

        figures: list[dict] = []
        for shape, typed in {**shapes, "the four mixed": mixed}.items():
            measured = measure(typed)
            console.print(f"  {shape}: p50 {measured['p50_ms']:.1f} ms, p99 {measured['p99_ms']:.1f} ms")
            figures += [{"name": f"search by {shape} p50 ({PATIENTS} patients, vacuumed, 1 client)",
                         "value": measured["p50_ms"], "unit": "ms"},
                        {"name": f"search by {shape} p99", "value": measured["p99_ms"], "unit": "ms"}]
        names.register(db, slug, BURST)
        # On new connections: the server's connections hold the plans they made of the settled table, where
        # a running appliance's connections are retired and made again (HEALTHOS_POOL_TENANTS_PER_CONNECTION).
        server.stop()
        server = Server(home, workers=len(os.sched_getaffinity(0)))
        burst = measure(mixed)
        console.print(f"  the four mixed after {BURST} more registered: p50 {burst['p50_ms']:.1f} ms, "
                      f"p99 {burst['p99_ms']:.1f} ms")
        return [*figures,
                {"name": f"search, the four mixed, after {BURST} more registered p50", "value": burst["p50_ms"],
                 "unit": "ms"},
                {"name": f"search, the four mixed, after {BURST} more registered p99", "value": burst["p99_ms"],
                 "unit": "ms"}]
    finally:
        if server is not None:
            server.stop()
        db.close()
        shutil.rmtree(home, ignore_errors=True)
