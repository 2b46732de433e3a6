"""HL7 v2 over MLLP: how many messages a facility's feed gets applied per second, and how long each
waits for its ACK.

`healthos hl7 listen` runs as its own process (as hospital IT runs it) on a private embedded cluster;
clients in this process send real MLLP frames over loopback TCP, each waiting for the ACK before the
next, as a feed does. ADT^A04 (a new patient registered, linked to a subject, an outpatient visit
opened: about ten statements and five audit events) and ORU^R01 (a full blood count of three OBX
for a known patient), each over one connection and over four at once. No issue sets a target.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

from hl7.mllp import open_hl7_connection

from appliance.layers.clinical.demo import FAMILY, FEMALE
from appliance.substrate import identity
from appliance.substrate.policy import load_policy
from appliance.substrate.tenancy import apply_config
from bench.chart import REPO, bench_tenant, open_bench_database

MESSAGES = 300  # per run, shared between the connections
CONNECTIONS = (1, 4)
PERMISSIONS = ["clinical.patient.search", "clinical.patient.read", "clinical.patient.create",
               "clinical.encounter.create", "clinical.result.create"]


def _msh(slug: str, kind: str, control: str) -> str:
    return f"MSH|^~\\&|BENCH|HOSPITAL|HEALTHOS|{slug}|20261126120000||{kind}|{control}|P|2.5"


def a04(slug: str, control: str, identifier: str, rng: random.Random) -> str:
    return "\r".join([
        _msh(slug, "ADT^A04^ADT_A01", control), "EVN|A04|20261126120000",
        f"PID|1||{identifier}^^^BENCH^MR||{rng.choice(FAMILY)}^{rng.choice(FEMALE)}||"
        f"{rng.randint(1940, 2024)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}|F|||Plot 4^^Hillview^Central^^KE",
        "PV1|1|O|OPD"]) + "\r"


def r01(slug: str, control: str, identifier: str, rng: random.Random) -> str:
    return "\r".join([
        _msh(slug, "ORU^R01^ORU_R01", control), f"PID|1||{identifier}^^^BENCH^MR||X^Y||19900101|F",
        "OBR|1||L1^LAB|58410-2^Full blood count^LN|||20261126110000",
        f"OBX|1|NM|718-7^Haemoglobin^LN||{rng.uniform(8, 16):.1f}|g/dL|11.0-16.5||||F",
        f"OBX|2|NM|6690-2^White cell count^LN||{rng.uniform(3, 14):.1f}|10*3/uL|4.0-11.0||||F",
        f"OBX|3|NM|777-3^Platelets^LN||{rng.randint(100, 450)}|10*3/uL|150-400||||F"]) + "\r"


async def _connection(port: int, texts: list[str], latencies: list[float]) -> None:
    reader, writer = await open_hl7_connection("127.0.0.1", port, limit=2**20)
    try:
        for text in texts:
            started = time.perf_counter()
            writer.writeblock(text.encode())
            await writer.drain()
            ack = (await reader.readblock()).decode()
            latencies.append(time.perf_counter() - started)
            if "MSA|AA|" not in ack:
                raise RuntimeError(f"not accepted: {ack!r}")
    finally:
        writer.close()


def _deliver(port: int, texts: list[str], connections: int) -> dict[str, float]:
    latencies: list[float] = []
    shares = [texts[i::connections] for i in range(connections)]

    async def all_connections() -> None:
        await asyncio.gather(*(_connection(port, share, latencies) for share in shares))

    started = time.perf_counter()
    asyncio.run(all_connections())
    elapsed = time.perf_counter() - started
    return {"per_second": len(texts) / elapsed, "p50_ms": statistics.median(latencies) * 1000}


def _listener(home, slug: str, token: str) -> tuple[subprocess.Popen, int]:
    token_file = home / "feed.token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    env = {**os.environ, "HEALTHOS_HOME": str(home), "HEALTHOS_LOG_FORMAT": "json"}
    process = subprocess.Popen([sys.executable, "-m", "appliance.cli", "--log-format", "json", "hl7", "listen",
                                "--tenant", slug, "--token-file", str(token_file), "--port", "0"],
                               env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if found := re.search(r"on 127\.0\.0\.1:(\d+) \(MLLP\)", line):
            # Its per-message log lines are read and dropped, so the pipe never fills and blocks it.
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
            return process, int(found[1])
    raise RuntimeError("the listener did not start")


def run(console) -> list[dict]:
    home, db = open_bench_database("healthos-bench-hl7-")
    listener = None
    try:
        slug = "hl7bench"
        apply_config(db, bench_tenant("hillview_hc.toml", slug, "HL7 bench health centre"))
        with db.control() as conn:
            token = identity.issue_machine_token(conn, load_policy(REPO / "policies" / "access.toml"), tenant=slug,
                                                 name="bench feed", permissions=PERMISSIONS)
        listener, port = _listener(home, slug, token)
        rng = random.Random(7)
        _deliver(port, [a04(slug, f"W{i}", f"W{i}", rng) for i in range(20)], 1)  # warm pools and caches
        figures = []
        for connections in CONNECTIONS:
            run_id = f"A{connections}-"
            registered = _deliver(port, [a04(slug, f"{run_id}{i}", f"{run_id}{i}", rng) for i in range(MESSAGES)],
                                  connections)
            results = _deliver(port, [r01(slug, f"R{connections}-{i}", f"{run_id}{i}", rng) for i in range(MESSAGES)],
                               connections)
            for kind, measured in (("ADT^A04", registered), ("ORU^R01 (3 OBX)", results)):
                console.print(f"  {kind}, {connections} connection(s): {measured['per_second']:.1f} messages/s, "
                              f"p50 {measured['p50_ms']:.1f} ms to the ACK")
                figures += [
                    {"name": f"{kind}, {connections} connection(s)", "value": measured["per_second"],
                     "unit": "messages/s"},
                    {"name": f"{kind}, {connections} connection(s), p50 to the ACK", "value": measured["p50_ms"],
                     "unit": "ms"},
                ]
        return figures
    finally:
        if listener is not None:
            listener.terminate()
            listener.wait(timeout=30)
        db.close()
        shutil.rmtree(home, ignore_errors=True)
