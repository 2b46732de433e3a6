"""Patient search by name at a facility of 20,000 patients, on a private embedded cluster and a real HTTP
server: `GET /api/t/<facility>/patients?name=...` (the desk's search, audited as a search of the patients it
shows), one client, the four ways a desk types a name — a surname, a given name, given and surname, and the
first two letters of a surname as they are typed — each a run of requests picking names at random; p50 and
p99 of each, and of all four together.

The patients are written in bulk (their names only: the search reads no entry), their surnames and given
names drawn, most common first, from the demo's Kenyan names and a long tail of made-up ones, as a real
register's are; then vacuumed and analysed, as autovacuum leaves a table. The server and the load are
bench/chart.py's (uvicorn, one worker per core, a clinician's bearer token, the keep-alive asyncio client).
No issue sets a target beyond "fast" (issue 4): the figures say what a desk waits. `BENCH_SEARCH_PATIENTS`
changes the size.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import time
import urllib.parse
import uuid

import sqlalchemy as sa

import appliance.layers  # noqa: F401  (registers the layers' tables, appliers and reactions)
from appliance.layers.clinical.demo import FAMILY, FEMALE, MALE
from appliance.layers.clinical.models import patient
from appliance.layers.clinical.service import name_search_columns
from appliance.substrate.db import tenant_schema
from appliance.substrate.tenancy import apply_config
from bench.chart import Server, bench_tenant, clinician_token, drive, open_bench_database

PATIENTS = int(os.environ.get("BENCH_SEARCH_PATIENTS", "20000"))
MADE_UP_FAMILIES = 3000
MADE_UP_GIVEN = 600
SYLLABLES = ("ka", "ma", "mu", "wa", "nji", "ru", "o", "tie", "no", "chi", "eng", "ki", "pro", "che", "be", "ri",
             "sa", "la", "nya", "ngo", "ge", "ro", "ti", "mbu", "gu", "a", "ku", "si", "le", "ba", "ha", "dhi", "ya")
REQUESTS = 200  # a run, after WARMUP
WARMUP = 20
BATCH = 5000


def _made_up(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize()


def _register(db, slug: str, rng: random.Random) -> tuple[list[str], list[str]]:
    """PATIENTS patients in bulk; the surnames and given names they were drawn from, most common first."""
    families = FAMILY + [_made_up(rng) for _ in range(MADE_UP_FAMILIES)]
    givens = FEMALE + MALE + [_made_up(rng) for _ in range(MADE_UP_GIVEN)]
    # A register's names are few common ones and many rare: weights falling with the rank.
    family_weights = [1 / (rank + 1) ** 0.8 for rank in range(len(families))]
    given_weights = [1 / (rank + 1) ** 0.8 for rank in range(len(givens))]
    born = dt.date(1950, 1, 1)
    for start in range(0, PATIENTS, BATCH):
        rows = []
        for n in range(start, min(start + BATCH, PATIENTS)):
            family = rng.choices(families, family_weights)[0]
            given = " ".join(rng.choices(givens, given_weights, k=rng.choice([1, 1, 2])))
            rows.append({"id": uuid.uuid4(), "mrn": f"{n:07d}", "family_name": family, "given_names": given,
                         "birth_date": born + dt.timedelta(days=rng.randint(0, 27_000)),
                         "sex": rng.choice(["female", "male"]), "demographics_entry_id": uuid.uuid4(),
                         **name_search_columns(given, family)})
        with db.tenant(slug) as conn:
            conn.execute(patient.insert(), rows)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f"VACUUM ANALYZE {tenant_schema(slug)}.patient"))
    return families, givens


def run(console) -> list[dict]:
    home, db = open_bench_database("healthos-bench-search-")
    server = None
    try:
        slug = "search_01"
        apply_config(db, bench_tenant("lakeshore_district.toml", slug, "Search bench facility"))
        rng = random.Random(4)
        started = time.perf_counter()
        families, givens = _register(db, slug, rng)
        console.print(f"  {PATIENTS} patients in {time.perf_counter() - started:.1f} s")
        token = clinician_token(db, slug)
        server = Server(home, workers=len(os.sched_getaffinity(0)))
        # Typed as a desk would: mostly the common names, the rare ones too.
        common_families, common_givens = families[:200], givens[:100]
        shapes = {
            "surname": lambda r: r.choice(common_families),
            "given name": lambda r: r.choice(common_givens),
            "given name and surname": lambda r: f"{r.choice(common_givens)} {r.choice(common_families)}",
            "two letters typed": lambda r: r.choice(families)[:2],
        }

        def searching(typed):
            def search(r: random.Random):
                return "GET", f"/api/t/{slug}/patients?name={urllib.parse.quote(typed(r).lower())}", token, b"", 200
            return search

        def measure(typed) -> dict:
            drive(server.address, searching(typed), 1, 0, requests_per_client=WARMUP)
            return drive(server.address, searching(typed), 1, 0, requests_per_client=REQUESTS)

        figures: list[dict] = []
        for shape, typed in shapes.items():
            measured = measure(typed)
            console.print(f"  {shape}: p50 {measured['p50_ms']:.1f} ms, p99 {measured['p99_ms']:.1f} ms")
            figures += [{"name": f"search by {shape} p50", "value": measured["p50_ms"], "unit": "ms"},
                        {"name": f"search by {shape} p99", "value": measured["p99_ms"], "unit": "ms"}]
        # The four mixed, each request one of them at random: what a desk's searches wait, all told.
        mixed = measure(lambda r: r.choice(list(shapes.values()))(r))
        console.print(f"  the four mixed: p50 {mixed['p50_ms']:.1f} ms, p99 {mixed['p99_ms']:.1f} ms")
        return [{"name": f"name search p50 (four shapes mixed, {PATIENTS} patients, 1 client)",
                 "value": mixed["p50_ms"], "unit": "ms"},
                {"name": "name search p99 (four shapes mixed)", "value": mixed["p99_ms"], "unit": "ms"}, *figures]
    finally:
        if server is not None:
            server.stop()
        db.close()
        shutil.rmtree(home, ignore_errors=True)
