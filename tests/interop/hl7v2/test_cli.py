"""`healthos hl7 listen` and `healthos hl7 send`: the listener as hospital IT starts it (a real process on a
random loopback port), refusing a bad token; the client printing each ACK and failing on a refusal."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.cli import main
from tests.conftest import REPO
from tests.interop.hl7v2.conftest import adt, send


@pytest.fixture
def env(settings) -> dict:
    values = {"HEALTHOS_HOME": str(settings.home), "HEALTHOS_LOG_FORMAT": "json"}
    if settings.database_url:
        values["HEALTHOS_DATABASE_URL"] = settings.database_url
    return values


def test_send_prints_each_ack_and_fails_on_a_refusal(running, facility, tmp_path: Path):
    good = tmp_path / "a04.hl7"
    identifier = "C" + secrets.token_hex(4)
    # As a person would save it: one segment per line, two messages in one file.
    good.write_text((adt(facility.slug, "A04", identifier) + adt(facility.slug, "A08", identifier)).replace("\r", "\n"))
    result = CliRunner().invoke(main, ["hl7", "send", "--port", str(running.port), str(good)])
    assert result.exit_code == 0, result.output
    assert result.output.count("MSA|AA|") == 2 and "MSH|^~\\&|HEALTHOS|" in result.output
    bad = tmp_path / "bad.hl7"
    bad.write_text(adt(facility.slug, "A04", "C" + secrets.token_hex(4), birth="19901340"))
    result = CliRunner().invoke(main, ["hl7", "send", "--port", str(running.port), str(bad)])
    assert result.exit_code == 2 and "MSA|AE|" in result.output and "PID-7 birth date 19901340" in result.output
    empty = tmp_path / "empty.hl7"
    empty.write_text("hello\n")
    result = CliRunner().invoke(main, ["hl7", "send", "--port", str(running.port), str(empty)])
    assert result.exit_code == 1 and "holds no HL7 message" in result.output


def test_listen_refuses_a_bad_token_and_serves_a_good_one(env, facility, feed_token, tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text("hos_" + secrets.token_urlsafe(32) + "\n")
    refused = CliRunner().invoke(main, ["hl7", "listen", "--tenant", facility.slug, "--token-file", str(token_file)],
                                 env=env)
    assert refused.exit_code == 1 and "the listener did not start" in refused.output and "revoked" in refused.output

    token_file.write_text(feed_token + "\n")
    token_file.chmod(0o600)
    process = subprocess.Popen([sys.executable, "-m", "appliance.cli", "hl7", "listen", "--tenant", facility.slug,
                                "--token-file", str(token_file), "--port", "0"], env={**os.environ, **env}, cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = None
        deadline = time.monotonic() + 60
        lines = []
        while port is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if found := re.search(r"on 127\.0\.0\.1:(\d+) \(MLLP\)", line):
                port = int(found[1])
        assert port, "".join(lines)
        [ack] = send(port, adt(facility.slug, "A04", "L" + secrets.token_hex(4)))
        assert ack.code == "AA", ack.text
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    # Its log lines: tenant, control id, type, ACK — and no patient data.
    assert '"event": "hl7.message"' in output and '"ack": "AA"' in output and "Otieno" not in output


def test_listen_never_starts_the_appliances_database_and_says_to_start_it(tmp_path: Path, feed_token, facility):
    """A listener started before the appliance (a service starting with the host) must not start the
    embedded PostgreSQL itself: it would belong to the listener and stop with it."""
    home = tmp_path / "not-yet-up"
    token_file = tmp_path / "token"
    token_file.write_text(feed_token)
    started = time.monotonic()
    refused = CliRunner().invoke(main, ["hl7", "listen", "--tenant", facility.slug, "--token-file", str(token_file),
                                        "--wait", "2"], env={"HEALTHOS_HOME": str(home), "HEALTHOS_DATABASE_URL": ""})
    assert refused.exit_code == 1, refused.output
    assert "does not answer" in refused.output and "start the appliance (healthos up) first" in refused.output
    assert "waited 2 s" in refused.output and time.monotonic() - started >= 2
    assert not (home / "pg" / "data").exists()  # no cluster made, none started
