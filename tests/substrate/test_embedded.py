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


def test_two_processes_making_the_servers_system_user_at_once_both_go_on():
    # As root the server runs as a system user made on first start; two `healthos` commands (or two test
    # workers) on a fresh machine both find it missing, and the useradd that lost the race failed the start.
    import os
    import pwd
    import subprocess
    import uuid

    import pytest

    from appliance.substrate import embedded

    if os.geteuid() != 0:
        pytest.skip("making a system user needs root, as the appliance's own start as root does")
    name = f"hos-race-{uuid.uuid4().hex[:8]}"
    start = threading.Barrier(4)
    failures: list[BaseException] = []

    def make() -> None:
        start.wait()
        try:
            embedded._ensure_system_user(name)
        except BaseException as exc:  # collected, and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=make) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == [] and pwd.getpwnam(name).pw_name == name
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
