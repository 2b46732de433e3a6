"""The regulator console: checkpoints, verification on demand, evidence packages — and who may use it."""

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from appliance.audit_verify import verify_package
from appliance.cli import main
from appliance.substrate import audit, standing
from appliance.substrate.audit import control_audit_event
from appliance.substrate.principal import Principal
from appliance.web.regulator import utc_time


def csrf(html: str) -> str:
    return re.search(r'name="_csrf_token" value="([^"]+)"', html).group(1)


def count(db, event_type: str) -> int:
    with db.control() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(control_audit_event)
                            .where(control_audit_event.c.event_type == event_type)).scalar()


@pytest.fixture(autouse=True)
def _no_verdict_left_behind(settings):
    """A verification run here is the session's last, which `healthos status` and the operator's console report
    (one that found a log altered is a problem): the session's other checks of them start from none."""
    yield
    (settings.home / standing.LAST_VERIFICATION).unlink(missing_ok=True)


def test_only_the_regulator_reaches_the_console(signed_in, tenant_a):
    assert signed_in("clinician", tenant_a.slug).get("/regulator").status_code == 403
    assert signed_in("operator").get("/regulator").status_code == 403
    page = signed_in("regulator", kind="regulator").get("/regulator")
    assert page.status_code == 200
    assert "Verify every log now" in page.text


def test_verify_runs_records_itself_and_shows_the_result(signed_in, db, tenant_a, settings):
    with db.tenant(tenant_a.slug) as conn:  # the facility's log has an event, so it is verified too
        someone = Principal(uuid.uuid4(), "staff", "Test", tenant=tenant_a.slug)
        audit.append(conn, tenant=tenant_a.slug, principal=someone, event_type="test.event", action="R")
    regulator = signed_in("regulator", kind="regulator")
    before = count(db, "audit.verify")
    page = regulator.get("/regulator")
    done = regulator.post("/regulator/verify", data={"_csrf_token": csrf(page.text)}, follow_redirects=False)
    assert done.status_code == 302
    assert count(db, "audit.verify") == before + 1
    result = json.loads((settings.home / "audit-last-verification.json").read_text())
    assert "appliance" in {log["log"] for log in result["logs"]}
    shown = regulator.get("/regulator").text
    # Times read as a person reads them, in UTC as the trail keeps them (not 2026-11-27T00:37:44.071512Z).
    assert "Last verification" in shown and utc_time(result["at"]) in shown
    # Each log verified is named as the console names it (the facility, not its slug), with what was counted.
    verified = shown.split("Last verification")[1].split("</table>")[0]
    row = verified.split(f'data-log="{tenant_a.slug}"')[1].split("</tr>")[0]
    assert f'<th scope="row">{tenant_a.name}</th>' in row and "Events in checkpoints" in verified
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", shown)


def test_verify_without_csrf_is_refused(signed_in):
    assert signed_in("regulator", kind="regulator").post("/regulator/verify").status_code == 403


def test_evidence_package_downloads_verifies_offline_and_is_audited(signed_in, db, tenant_a):
    # Put at least one event in the facility's log.
    with db.tenant(tenant_a.slug) as conn:
        someone = Principal(uuid.uuid4(), "staff", "Test", tenant=tenant_a.slug)
        audit.append(conn, tenant=tenant_a.slug, principal=someone, event_type="test.event", action="R")
    regulator = signed_in("regulator", kind="regulator")
    before = count(db, "audit.export")
    page = regulator.get("/regulator")
    download = regulator.post("/regulator/export", data={"log": tenant_a.slug, "_csrf_token": csrf(page.text)})
    assert download.status_code == 200, download.text
    assert "attachment" in download.headers["content-disposition"]
    report = verify_package(json.loads(download.content))
    assert report.ok, report.problems
    assert report.events >= 1
    assert count(db, "audit.export") == before + 1
    missing = regulator.post("/regulator/export", data={"log": "../etc", "_csrf_token": csrf(page.text)})
    assert missing.status_code == 404


def test_evidence_of_a_period_of_days_holds_only_its_events_and_verifies_offline(signed_in, db, tenant_a):
    with db.tenant(tenant_a.slug) as conn:
        someone = Principal(uuid.uuid4(), "staff", "Test", tenant=tenant_a.slug)
        audit.append(conn, tenant=tenant_a.slug, principal=someone, event_type="test.event", action="R")
    regulator = signed_in("regulator", kind="regulator")
    token = csrf(regulator.get("/regulator").text)
    today = datetime.now(UTC).date()
    day = regulator.post("/regulator/export", data={"log": tenant_a.slug, "since": str(today), "until": str(today),
                                                    "_csrf_token": token})
    assert day.status_code == 200, day.text
    assert f"from{today}-to{today}" in day.headers["content-disposition"]
    package = json.loads(day.content)
    assert package["range"]["since"].startswith(f"{today}T00:00:00") and not package["range"]["complete"]
    assert package["events"] and verify_package(package).ok
    earlier = regulator.post("/regulator/export", data={"log": tenant_a.slug, "until": str(today - timedelta(days=1)),
                                                        "_csrf_token": token})
    assert earlier.status_code == 200 and json.loads(earlier.content)["events"] == []
    for since, until, says in (("27/11/2026", "", "is not a date such as 2026-11-01"),
                               (str(today), str(today - timedelta(days=1)), "first day comes after its last")):
        refused = regulator.post("/regulator/export", data={"log": tenant_a.slug, "since": since, "until": until,
                                                            "_csrf_token": token})
        assert refused.status_code == 422 and says in refused.text


def test_the_console_shows_each_logs_checkpoint_and_proves_it_only_grew(signed_in, db, tenant_a, settings):
    with db.tenant(tenant_a.slug) as conn:
        someone = Principal(uuid.uuid4(), "staff", "Test", tenant=tenant_a.slug)
        audit.append(conn, tenant=tenant_a.slug, principal=someone, event_type="test.event", action="R")
    regulator = signed_in("regulator", kind="regulator")
    page = regulator.get("/regulator")
    row = page.text.split(f'data-log="{tenant_a.slug}"')[1].split("</tr>")[0]
    assert "Keep the checkpoints" in row and "event" in row

    # Keep the facility's checkpoints (what was waiting is signed first): a file, and an audited act.
    before = count(db, "audit.checkpoints.export")
    kept = regulator.post("/regulator/checkpoints", data={"log": tenant_a.slug, "_csrf_token": csrf(page.text)})
    assert kept.status_code == 200 and "attachment" in kept.headers["content-disposition"]
    document = json.loads(kept.content)
    assert document["log"]["tenant"] == tenant_a.slug and document["checkpoints"]
    assert count(db, "audit.checkpoints.export") == before + 1
    signed = regulator.get("/regulator").text.split(f'data-log="{tenant_a.slug}"')[1].split("</tr>")[0]
    assert f"{document['checkpoints'][-1]['size']} events, signed" in signed
    assert re.search(r"signed \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", signed)

    # The log grows; brought back, the kept checkpoints prove it only grew.
    with db.tenant(tenant_a.slug) as conn:
        audit.append(conn, tenant=tenant_a.slug, principal=someone, event_type="test.event", action="R")
    page = regulator.get("/regulator")
    proved = regulator.post("/regulator/verify-held", data={"_csrf_token": csrf(page.text)},
                            files={"checkpoints": ("kept.json", kept.content, "application/json")},
                            follow_redirects=False)
    assert proved.status_code == 302, proved.text
    shown = regulator.get("/regulator").text
    assert "the log verifies and only grew since" in shown
    assert f"against {len(document['checkpoints'])} checkpoint" in shown

    # A checkpoint that does not match the log (a rolled-back or rewritten log looks like this) fails.
    forged = dict(document, checkpoints=[dict(document["checkpoints"][-1], root="00" * 32)])
    regulator.post("/regulator/verify-held", data={"_csrf_token": csrf(page.text)},
                   files={"checkpoints": ("kept.json", json.dumps(forged).encode(), "application/json")})
    assert "tampering or damage found" in regulator.get("/regulator").text
    # IT hears of it too: the operator's console and `healthos status` said all was well, reading no event.
    console = signed_in("operator", kind="operator").get("/appliance").text
    assert tenant_a.name in console.split('id="audit-altered"')[1].split("</li>")[0]
    env = {"HEALTHOS_HOME": str(settings.home), **({"HEALTHOS_DATABASE_URL": settings.database_url}
                                                   if settings.database_url else {})}
    status = CliRunner().invoke(main, ["status", "--json"], env=env, catch_exceptions=False)
    assert status.exit_code == 1 and [problem for problem in json.loads(status.output)["problems"]
                                      if tenant_a.slug in problem and "altered or damaged" in problem]

    # Not a checkpoints file, or no file: the page says so, and nothing is recorded as verified.
    # The console itself answers, the refusal beside the form, so the right file can be chosen at once.
    junk = regulator.post("/regulator/verify-held", data={"_csrf_token": csrf(page.text)},
                          files={"checkpoints": ("notes.txt", b"hello", "text/plain")})
    assert junk.status_code == 422 and "notes.txt is not a file of kept checkpoints: it is not JSON" in junk.text
    assert "Expecting value" not in junk.text
    beside = junk.text.split('id="held-refusal"')[1].split('action="/regulator/verify-held"')[0]
    assert "is not a file of kept checkpoints" in beside and "Keep the checkpoints" in beside
    none = regulator.post("/regulator/verify-held", data={"_csrf_token": csrf(page.text)},
                          files={"checkpoints": ("", b"", "application/octet-stream")})
    assert none.status_code == 422 and 'id="held-refusal"' in none.text and "Prove the log only grew" in none.text
    assert regulator.post("/regulator/checkpoints", data={"log": "../etc", "_csrf_token": csrf(page.text)}
                          ).status_code == 404


def test_only_the_regulator_keeps_or_brings_back_checkpoints(signed_in, tenant_a):
    clinician = signed_in("clinician", tenant_a.slug)
    assert clinician.post("/regulator/checkpoints", data={"log": tenant_a.slug}).status_code == 403
    assert clinician.post("/regulator/verify-held", files={"checkpoints": ("k.json", b"{}", "application/json")}
                          ).status_code == 403


def test_the_regulator_reviews_break_the_glass_across_facilities_without_patient_names(signed_in, db, tenant_a):
    import uuid

    from appliance.layers.clinical import service
    from appliance.layers.clinical.schemas import PatientIn
    from appliance.substrate.principal import Principal

    desk = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Desk", tenant=tenant_a.slug, role="registrar")
    with db.tenant(tenant_a.slug) as conn:
        patient = service.register_patient(conn, desk, PatientIn.model_validate({
            "family_name": "Mutua", "given_names": "Faith", "birth_date": "1970-01-01", "sex": "female"}))
    reason = "Collapsed in the car park, no records at hand"
    opened = signed_in("clinician", tenant_a.slug).get(
        f"/api/t/{tenant_a.slug}/patients/{patient['id']}/chart",
        headers={"x-break-glass-reason": reason, "accept": "application/json"})
    assert opened.status_code == 200, opened.text
    before = count(db, "audit.break_glass.review")
    page = signed_in("regulator", kind="regulator").get("/regulator").text
    rows = page.split('id="break-glass"')[1].split("</table>")[0]
    mine = [row for row in rows.split("<tr")[1:] if reason in row]
    assert len(mine) == 1 and tenant_a.name in mine[0] and "(clinician)" in mine[0]
    assert "Mutua" not in page and "Faith" not in page  # the patient only as a keyed reference
    assert count(db, "audit.break_glass.review") == before + 1


def test_the_regulator_finds_who_opened_a_chart_by_its_record_number_and_the_patient_sees_the_lookup(
        signed_in, db, tenant_a, tenant_b):
    from appliance.layers.clinical import service
    from appliance.layers.clinical.schemas import PatientIn

    desk = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Desk", tenant=tenant_a.slug, role="registrar")
    with db.tenant(tenant_a.slug) as conn:
        patient = service.register_patient(conn, desk, PatientIn.model_validate({
            "family_name": "Achieng", "given_names": "Ruth", "birth_date": "1981-05-02", "sex": "female"}))
    reason = "Brought in unresponsive, reading her allergies"
    clinician = signed_in("clinician", tenant_a.slug)
    assert clinician.get(f"/api/t/{tenant_a.slug}/patients/{patient['id']}/chart",
                         headers={"x-break-glass-reason": reason, "accept": "application/json"}).status_code == 200
    with db.tenant(tenant_a.slug) as conn:  # the patient reading their own chart, as /me records it
        audit.append(conn, tenant=tenant_a.slug, principal=Principal(uuid.uuid4(), "patient", "Ruth Achieng"),
                     event_type="record.chart.read", action="R", patient_id=patient["id"])
    regulator = signed_in("regulator", kind="regulator")
    assert 'action="/regulator/patient-access"' in regulator.get("/regulator").text

    def lookups() -> int:
        return sum(1 for e in audit.patient_access_log(db, tenant_a.slug, patient["id"])
                   if e.event_type == "patient.access_log.read" and e.who["role"] == "regulator")

    page = regulator.get("/regulator/patient-access", params={"facility": tenant_a.slug, "mrn": patient["mrn"]})
    assert page.status_code == 200, page.text
    rows = page.text.split('id="patient-access"')[1].split("</table>")[0].split("<tr")[2:]
    glass = [row for row in rows if reason in row]
    assert len(glass) == 1 and "(clinician)" in glass[0] and "break-the-glass" in glass[0]
    assert any("record.demographics.create" in row and "Desk" in row for row in rows)  # the registration too
    assert any("record.chart.read" in row and "The patient" in row for row in rows)
    assert "Achieng" not in page.text and "Ruth" not in page.text  # the chart by its number, never its name
    assert lookups() == 1  # recorded in the facility's log, on the chart: the patient sees the regulator looked

    # A guessed number, a facility that does not hold the chart, or none chosen: a sentence, the form kept.
    guessed = regulator.get("/regulator/patient-access", params={"facility": tenant_a.slug, "mrn": "9999999"})
    assert guessed.status_code == 404 and "has no chart with record number 9999999" in guessed.text
    assert 'value="9999999"' in guessed.text
    elsewhere = regulator.get("/regulator/patient-access", params={"facility": tenant_b.slug, "mrn": patient["mrn"]})
    assert elsewhere.status_code == 404 and tenant_b.name in elsewhere.text and reason not in elsewhere.text
    unknown = regulator.get("/regulator/patient-access", params={"facility": "t_nowhere", "mrn": patient["mrn"]})
    assert unknown.status_code == 422 and "Choose the facility" in unknown.text
    for junk in ("00\x0001", "9" * 5000):  # a NUL PostgreSQL refuses, a number no card carries
        refused = regulator.get("/regulator/patient-access", params={"facility": tenant_a.slug, "mrn": junk})
        assert refused.status_code == 422 and "A record number is at most 64" in refused.text
        assert "9" * 100 not in refused.text
    assert lookups() == 1

    # Only the regulator: the facility's own staff and the ministry are refused.
    analyst = signed_in("ministry_analyst", kind="ministry_analyst")
    for other in (clinician, signed_in("facility_admin", tenant_a.slug), analyst):
        asked = other.get("/regulator/patient-access", params={"facility": tenant_a.slug, "mrn": patient["mrn"]})
        assert asked.status_code == 403


def test_the_console_says_whose_keys_can_read_the_evidence(signed_in, db, tmp_path):
    from appliance.substrate import keys

    _, _, public = keys.generate_regulator_keypair(tmp_path / "office.pem")
    with db.control() as conn:
        key_id, _ = keys.register_regulator(conn, public, "Health Records Regulator, test office")
    evidence = signed_in("regulator", kind="regulator").get("/regulator").text.split('id="evidence-title"')[1]
    sealed = evidence.split('id="sealed-to"')[1].split("</p>")[0]
    assert "Health Records Regulator, test office" in sealed and key_id in sealed and "--regulator-key" in sealed


def test_the_regulator_downloads_the_verifier_and_it_verifies_a_package_on_its_own(signed_in, db, tmp_path):
    """The zip is the four files and a README.txt; unpacked where the appliance is out of reach (-S: no
    site-packages), it verifies the appliance's evidence against the pinned key. Taking it is an export."""
    import hashlib
    import io
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    import cryptography

    from appliance.substrate import keys

    regulator = signed_in("regulator", kind="regulator")
    page = regulator.get("/regulator").text
    shown = page.split('id="verifier-digest"')[1].split("</p>")[0]
    before = count(db, "audit.verifier.export")
    download = regulator.post("/regulator/verifier", data={"_csrf_token": csrf(page)})
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    assert "attachment" in download.headers["content-disposition"]
    digest = hashlib.sha256(download.content).hexdigest()
    assert f"<code>{digest}</code>" in shown  # what the page shows is what was handed out
    assert count(db, "audit.verifier.export") == before + 1
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        assert sorted(archive.namelist()) == ["README.txt", "appliance/__init__.py", "appliance/audit_verify.py",
                                              "appliance/substrate/__init__.py", "appliance/substrate/merkle.py"]
        readme = archive.read("README.txt").decode()
        archive.extractall(tmp_path / "verifier")
    assert "python3 -m appliance.audit_verify" in readme and "Python 3.11" in readme and "cryptography" in readme
    audit.export(db, None, tmp_path / "verifier" / "evidence.json")
    (tmp_path / "verifier" / "appliance.pem").write_bytes(keys.keyring_for(db).public_key_pem())
    probe = ("import sys, runpy; sys.argv = ['audit_verify', 'evidence.json', '--public-key', 'appliance.pem']\n"
             "code = 0\ntry:\n    runpy.run_module('appliance.audit_verify', run_name='__main__')\n"
             "except SystemExit as exit:\n    code = exit.code\n"
             "import appliance; print('FROM', appliance.__file__); sys.exit(code)")
    path = f"{tmp_path / 'verifier'}:{Path(cryptography.__file__).parents[1]}"
    result = subprocess.run([sys.executable, "-S", "-c", probe], cwd=tmp_path / "verifier", capture_output=True,
                            text=True, timeout=60, env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK log" in result.stdout
    assert result.stdout.split("FROM", 1)[1].split()[0] == str(tmp_path / "verifier" / "appliance" / "__init__.py")


def test_only_the_regulator_downloads_the_verifier(signed_in, tenant_a):
    for other in (signed_in("clinician", tenant_a.slug), signed_in("operator")):
        # With a valid CSRF token (from their own home page): refused for want of the permission alone.
        refused = other.post("/regulator/verifier", data={"_csrf_token": csrf(other.get("/").text)})
        assert refused.status_code == 403 and refused.headers["content-type"] != "application/zip"
