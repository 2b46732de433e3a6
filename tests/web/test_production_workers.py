"""`healthos up --workers N`: each worker listens on its own socket of the address (SO_REUSEPORT), so a
burst of connections is dealt out among the workers. On one shared listening socket, the worker that woke
first took the whole burst, and with keep-alive connections one process served everything while the
others idled (bench/intake.py: 16 clients, one worker at 9.8 s of CPU in 10 s, the other 0.04 s)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


async def pid_app(scope, receive, send):
    """Answers every request with the serving process's id."""
    if scope["type"] != "http":
        return
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _burst(port: int, connections: int) -> list[str]:
    """`connections` keep-alive connections opened at once, each asking once, all held open until the
    last has its answer (as a load balancer's or the bench's pooled connections are)."""
    opened = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(connections)))
    answers = []
    for _, writer in opened:
        writer.write(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
    for reader, _ in opened:
        head = (await reader.readuntil(b"\r\n\r\n")).lower()
        length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
        answers.append((await reader.readexactly(length)).decode())
    for _, writer in opened:
        writer.close()
    return answers


def test_a_burst_of_connections_is_served_by_every_worker():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-c", "import uvicorn; from appliance.web.production import serve_workers; "
         f"serve_workers(uvicorn.Config('tests.web.test_production_workers:pid_app', host='127.0.0.1', port={port}, "
         "workers=2, log_level='warning'))"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        workers: set[str] = set()
        deadline = time.monotonic() + 90
        while len(workers) < 2:  # both listening: each has answered (a burst of 8 misses one 1 time in 128)
            assert time.monotonic() < deadline and server.poll() is None, "a worker did not start"
            try:
                workers |= set(asyncio.run(_burst(port, 8)))
            except OSError:
                time.sleep(0.2)
        time.sleep(1)
        for _ in range(5):  # one client first, as a bench's warm-up or the first browser of the morning
            asyncio.run(_burst(port, 1))
        served = asyncio.run(_burst(port, 32))
        assert set(served) == workers
        assert min(served.count(pid) for pid in workers) >= 4  # dealt out, not one worker's and a straggler's
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        server.stderr.close()
