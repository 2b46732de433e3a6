"""The FHIR R4 facade on a private embedded cluster and a real HTTP server:

- `GET /Patient/{id}/$everything` (the patient and every resource of theirs, one audited read of the
  chart) and a Patient search by family name, each with 16 concurrent clients over one facility of
  demo data (300 patients, a year of care each; set-up not timed): requests per second, p50 and p99,
  the median of three runs with the range beside it;
- paged searches, one client: the first page's latency (`_count=50`, with the total of every match) of
  a Patient search by a name fragment most demo patients' names hold, and of one patient's Observations;
- bulk import of Synthea-shaped bundles (`bulk.import_path`, one bundle per patient, each its own
  tenant transaction), in-process as `healthos fhir import` runs it: patients and resources per second.

The server is uvicorn with one worker per core on a loopback port (bench/chart.py's), authenticated by a
clinician's bearer token; the load is bench/chart.py's keep-alive asyncio client. No issue sets a
target: the figures say what a FHIR client and a migration can expect. `BENCH_FHIR_PATIENTS` and
`BENCH_FHIR_IMPORT` change the sizes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

import appliance.layers  # noqa: F401  (registers the layers' tables, appliers and reactions)
from appliance.interop.fhir import bulk
from appliance.layers.clinical.demo import generate_demo_population
from appliance.substrate.tenancy import apply_config
from bench.chart import Server, _median_run, bench_tenant, clinician_token, drive, open_bench_database
from tests.interop.fhir.synthea import synthea_bundle

PATIENTS = int(os.environ.get("BENCH_FHIR_PATIENTS", "300"))
IMPORT_PATIENTS = int(os.environ.get("BENCH_FHIR_IMPORT", "200"))
IMPORT_ENCOUNTERS = 5  # per patient: 5 visits × (diagnosis, 6 vital signs, a lab, an immunization, a claim)
CLIENTS = 16
SECONDS = 8
WARMUP = 2
PAGE = 50  # the facade's default page
PAGED_NAME = "an"  # in most demo names: a search whose matches fill many pages
ROUNDS = 3  # the shared host's speed swings by half from minute to minute: the median run, the range beside it


def run(console) -> list[dict]:
    home, db = open_bench_database("healthos-bench-fhir-")
    server = None
    bundles = Path(tempfile.mkdtemp(prefix="healthos-bench-synthea-"))
    try:
        slug = "fhir_01"
        apply_config(db, bench_tenant("lakeshore_district.toml", slug, "FHIR bench facility"))
        started = time.perf_counter()
        generate_demo_population(db, slug, seed=1, patients=PATIENTS)
        with db.tenant(slug) as conn:
            patients = [str(p) for p in conn.execute(sa.text("SELECT id FROM patient")).scalars()]
            families = sorted({f for f in conn.execute(sa.text("SELECT family_name FROM patient")).scalars()})
        console.print(f"  {len(patients)} demo patients in {time.perf_counter() - started:.1f} s")
        token = clinician_token(db, slug)
        base = f"/api/t/{slug}/fhir"
        server = Server(home, workers=len(os.sched_getaffinity(0)))

        def everything(rng: random.Random):
            return "GET", f"{base}/Patient/{rng.choice(patients)}/$everything", token, b"", 200

        def search(rng: random.Random):
            return "GET", f"{base}/Patient?family={rng.choice(families)}", token, b"", 200

        everything_run, everything_span = _median_run(
            [drive(server.address, everything, CLIENTS, SECONDS, warmup=WARMUP) for _ in range(ROUNDS)])
        console.print(f"  $everything (median of {ROUNDS}): {everything_run['per_second']:.0f}/s ({everything_span}), "
                      f"p50 {everything_run['p50_ms']:.1f} ms, p99 {everything_run['p99_ms']:.1f} ms")
        search_run, search_span = _median_run(
            [drive(server.address, search, CLIENTS, SECONDS, warmup=WARMUP) for _ in range(ROUNDS)])
        console.print(f"  Patient?family= (median of {ROUNDS}): {search_run['per_second']:.0f}/s ({search_span}), "
                      f"p50 {search_run['p50_ms']:.1f} ms, p99 {search_run['p99_ms']:.1f} ms")
        # A search that pages: a two-letter name fragment most patients' names hold, the first page of
        # 50 (with the total, which counts every match), and one patient's observations a page at a time.
        # One client: the latency a FHIR client waits for its first page, not 16 clients queueing on 2 cores.
        with db.tenant(slug) as conn:
            matches = conn.execute(sa.text("SELECT count(*) FROM patient WHERE name_search LIKE :f"),
                                   {"f": f"%{PAGED_NAME}%"}).scalar_one()

        def paged_search(rng: random.Random):
            return "GET", f"{base}/Patient?name={PAGED_NAME}&_count={PAGE}", token, b"", 200

        def paged_observations(rng: random.Random):
            return "GET", f"{base}/Observation?patient={rng.choice(patients)}&_count={PAGE}", token, b"", 200

        paged_run, paged_span = _median_run(
            [drive(server.address, paged_search, 1, SECONDS, warmup=WARMUP) for _ in range(ROUNDS)])
        console.print(f"  Patient?name={PAGED_NAME}&_count={PAGE}, first page of {matches} matches (median of "
                      f"{ROUNDS}): {paged_run['per_second']:.0f}/s ({paged_span}), p50 {paged_run['p50_ms']:.1f} ms, "
                      f"p99 {paged_run['p99_ms']:.1f} ms")
        observations_run, observations_span = _median_run(
            [drive(server.address, paged_observations, 1, SECONDS, warmup=WARMUP) for _ in range(ROUNDS)])
        console.print(f"  Observation?patient=&_count={PAGE}, first page (median of {ROUNDS}): "
                      f"{observations_run['per_second']:.0f}/s ({observations_span}), "
                      f"p50 {observations_run['p50_ms']:.1f} ms, p99 {observations_run['p99_ms']:.1f} ms")
        server.stop()
        server = None

        target = "fhir_import"
        apply_config(db, bench_tenant("lakeshore_district.toml", target, "FHIR import bench facility"))
        for n in range(IMPORT_PATIENTS):
            bundle = synthea_bundle(10_000 + n, encounters=IMPORT_ENCOUNTERS)
            (bundles / f"patient_{n:05d}.json").write_text(json.dumps(bundle), encoding="utf-8")
        principal = bulk.import_principal(db, target, "bench")
        started = time.perf_counter()
        summary = bulk.import_path(db, target, principal, bundles)
        elapsed = time.perf_counter() - started
        if summary.refused:
            raise RuntimeError(f"{len(summary.refused)} bundles refused, e.g. {summary.refused[0]}")
        written = sum(summary.imported.values())
        console.print(f"  import: {summary.imported_bundles} patients, {written} resources written and "
                      f"{sum(summary.skipped.values())} skipped in {elapsed:.1f} s")
        return [
            {"name": f"$everything requests/s ({CLIENTS} clients, {len(patients)} demo patients; median, runs "
                     f"{everything_span})",
             "value": everything_run["per_second"], "unit": "/s"},
            {"name": "$everything p50", "value": everything_run["p50_ms"], "unit": "ms"},
            {"name": "$everything p99", "value": everything_run["p99_ms"], "unit": "ms"},
            {"name": f"Patient search by family requests/s ({CLIENTS} clients; median, runs {search_span})",
             "value": search_run["per_second"], "unit": "/s"},
            {"name": "Patient search p50", "value": search_run["p50_ms"], "unit": "ms"},
            {"name": "Patient search p99", "value": search_run["p99_ms"], "unit": "ms"},
            {"name": f"paged Patient search, first page of {PAGE} of {matches} matches, p50 (1 client; median, "
                     f"runs {paged_span})", "value": paged_run["p50_ms"], "unit": "ms"},
            {"name": "paged Patient search, first page p99", "value": paged_run["p99_ms"], "unit": "ms"},
            {"name": "paged Patient search requests/s", "value": paged_run["per_second"], "unit": "/s"},
            {"name": f"paged Observation search of one patient, first page of {PAGE}, p50 (1 client; median, runs "
                     f"{observations_span})", "value": observations_run["p50_ms"], "unit": "ms"},
            {"name": "paged Observation search, first page p99", "value": observations_run["p99_ms"], "unit": "ms"},
            {"name": f"import: Synthea-shaped patients/s ({IMPORT_ENCOUNTERS} visits each)",
             "value": summary.imported_bundles / elapsed, "unit": "/s"},
            {"name": "import: resources written/s", "value": written / elapsed, "unit": "/s"},
        ]
    finally:
        if server is not None:
            server.stop()
        db.close()
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(bundles, ignore_errors=True)
