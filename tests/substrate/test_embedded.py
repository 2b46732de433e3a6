"""The embedded cluster's start-up checks, as processes sharing one HEALTHOS_HOME meet them."""

from __future__ import annotations

import threading
from pathlib import Path

from appliance.substrate.embedded import EmbeddedCluster


def test_processes_sharing_a_home_all_find_it_writable(tmp_path: Path):
    # uvicorn workers, HL7 listeners and the bench's writer processes check the home at the same
    # moment; a probe file of one shared name was removed by one checker under another, which then
    # reported a writable home as "not writable".
    checkers, rounds = 8, 200
    start = threading.Barrier(checkers)
    failures: list[BaseException] = []

    def check() -> None:
        cluster = EmbeddedCluster(tmp_path)
        start.wait()
        for _ in range(rounds):
            try:
                cluster._ensure_home_writable()
            except BaseException as exc:  # collected, and asserted below
                failures.append(exc)
                return

    threads = [threading.Thread(target=check) for _ in range(checkers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert [p.name for p in (tmp_path / "pg").iterdir()] == []  # no probe left behind
