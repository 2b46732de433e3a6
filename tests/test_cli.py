"""The operator's CLI, run as an operator runs it, against the session's embedded cluster."""

import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from appliance.cli import main
from appliance.layers.clinical.demo import DEMO_PATIENTS_MIN
from appliance.substrate import audit, identity
from appliance.substrate.config import Settings
from appliance.substrate.db import Database, tenant_schema
from appliance.substrate.tenancy import active_slugs
from tests.conftest import REPO, make_tenant_config


@pytest.fixture
def run(settings, db):
    runner = CliRunner()
    env = {"HEALTHOS_HOME": str(settings.home), "HEALTHOS_LOG_FORMAT": "console"}
    if settings.database_url:
        env["HEALTHOS_DATABASE_URL"] = settings.database_url

    def invoke(*args, input=None):
        return runner.invoke(main, list(args), env=env, input=input, catch_exceptions=False)

    return invoke


def tenant_toml(config) -> str:
    # A field left unset is left out, as in a real file (written "None", it was an organisation unit of that name).
    lines = [f'{key} = "{value}"' for key, value in config.model_dump(exclude={"wards"}, exclude_none=True).items()]
    lines += ["[[wards]]", 'code = "GEN"', 'name = "General"', "beds = 2"]
    return "\n".join(lines) + "\n"


def test_apply_malformed_file_exits_non_zero_naming_the_field(run, tmp_path: Path):
    config = make_tenant_config()
    path = tmp_path / "broken.toml"
    path.write_text(tenant_toml(config).replace('timezone = "Africa/Nairobi"', 'timezone = "Nowhere/Else"'))
    result = run("tenant", "apply", str(path))
    assert result.exit_code != 0
    assert "broken.toml" in result.output
    assert "timezone" in result.output
    assert "nothing was applied" in result.output
    assert config.slug not in run("tenant", "list", "--json").output


def test_apply_creates_then_applying_again_changes_nothing_then_drop(run, tmp_path: Path):
    config = make_tenant_config()
    path = tmp_path / "new.toml"
    path.write_text(tenant_toml(config))
    first = run("tenant", "apply", str(path))
    assert first.exit_code == 0, first.output
    assert f"{config.slug}: created" in first.output
    second = run("tenant", "apply", str(path))
    assert f"{config.slug}: unchanged" in second.output

    listed = json.loads(run("tenant", "list", "--json").output)
    assert config.slug in [row["slug"] for row in listed]

    refused = run("tenant", "drop", config.slug, input="n\n")
    assert refused.exit_code != 0
    assert config.slug in [row["slug"] for row in json.loads(run("tenant", "list", "--json").output)]
    dropped = run("tenant", "drop", config.slug, "--yes")
    assert dropped.exit_code == 0, dropped.output
    assert config.slug not in [row["slug"] for row in json.loads(run("tenant", "list", "--json").output)]


def test_a_facility_under_another_facilitys_dhis2_org_unit_is_refused(run, tenant_a, tmp_path: Path):
    """A second facility filed under the first one's organisation unit (a tenant file copied and edited) was
    applied, and the DHIS2 export then sent both facilities' figures under the same data values, of which DHIS2
    keeps one: the ministry read one facility's month as the other's. A facility without a dhis2_org_unit, as
    tenant_a, is exported under its slug, which is then its organisation unit."""
    copied = make_tenant_config(name="Eastgate Clinic", dhis2_org_unit=tenant_a.slug)
    (tmp_path / "eastgate.toml").write_text(tenant_toml(copied))
    refused = run("tenant", "apply", str(tmp_path / "eastgate.toml"))
    said = " ".join(refused.output.split())  # as read, whatever the terminal's width wrapped
    assert refused.exit_code == 1 and "nothing was applied" in said
    assert f"dhis2_org_unit '{tenant_a.slug}' is given to more than one facility" in said
    assert f"{tenant_a.name} ({tenant_a.slug})" in said and f"Eastgate Clinic ({copied.slug})" in said

    # Two new files sharing one: refused before either is applied, and `healthos check` names it too, as the
    # service applies the directory at each start.
    (tmp_path / "eastgate.toml").write_text(tenant_toml(copied.model_copy(update={"dhis2_org_unit": "KE-SHARED"})))
    twin = make_tenant_config(name="Westgate Clinic", dhis2_org_unit="KE-SHARED")
    (tmp_path / "westgate.toml").write_text(tenant_toml(twin))
    for said in (run("tenant", "apply", str(tmp_path)), run("check", "--tenants", str(tmp_path))):
        assert said.exit_code == 1 and "'KE-SHARED' is given to more than one facility" in " ".join(said.output.split())
    assert not {copied.slug, twin.slug} & {row["slug"] for row in json.loads(run("tenant", "list", "--json").output)}


def test_drop_of_unknown_tenant_says_so(run):
    result = run("tenant", "drop", "never_was_here", "--yes")
    assert result.exit_code == 1
    assert "never_was_here" in result.output


def test_migrate_reports_drift_as_an_error(run, db, tenant_factory):
    drifted = tenant_factory()
    clean = run("migrate")
    assert clean.exit_code == 0, clean.output
    with db.control() as conn:
        conn.exec_driver_sql(f'ALTER TABLE "t_{drifted.slug}".bed ADD COLUMN by_hand int')
    result = run("migrate")
    assert result.exit_code == 1
    assert f"t_{drifted.slug}" in result.output
    assert "by_hand" in result.output
    with db.control() as conn:
        conn.exec_driver_sql(f'ALTER TABLE "t_{drifted.slug}".bed DROP COLUMN by_hand')


def test_migrate_refuses_a_schema_a_newer_release_migrated_saying_why(run, db, tenant_factory):
    """After the code is rolled back, a tenant schema a newer release migrated is at a revision this code does
    not know: migrate stops on it with a sentence (not alembic's traceback) and changes nothing there."""
    from appliance.substrate.migrate import head

    ahead = tenant_factory()
    with db.control() as conn:
        conn.exec_driver_sql(f'UPDATE "t_{ahead.slug}".alembic_version SET version_num = \'t9999\'')
    try:
        result = run("migrate")
        assert result.exit_code == 1, result.output
        said = " ".join(result.output.split())
        assert f"t_{ahead.slug} is at t9999, migrated by a newer release than this one" in said
        assert "restore the backup taken before that upgrade" in said and "Traceback" not in result.output
        with db.control() as conn:
            assert conn.exec_driver_sql(f'SELECT version_num FROM "t_{ahead.slug}".alembic_version').scalar() == "t9999"
    finally:
        with db.control() as conn:
            conn.exec_driver_sql(f'UPDATE "t_{ahead.slug}".alembic_version SET version_num = \'{head("tenant")}\'')


def test_db_url_is_one_psql_accepts(run, settings):
    result = run("db", "url")
    assert result.exit_code == 0
    url = result.output.strip().splitlines()[0]
    assert url.startswith("postgresql://")
    from appliance.substrate.embedded import pg_binary

    answer = subprocess.run([str(pg_binary("psql")), url, "-tAc", "SELECT current_database()"],
                            capture_output=True, text=True, timeout=30)
    assert answer.stdout.strip() == "healthos", answer.stderr


def test_unwritable_home_is_explained_not_a_traceback(tmp_path: Path):
    home = tmp_path / "locked"
    home.write_text("a file where a directory should be")
    result = CliRunner().invoke(main, ["tenant", "list"], env={"HEALTHOS_HOME": str(home)})
    assert result.exit_code == 1
    assert "not writable" in result.output
    assert "Traceback" not in result.output


def test_a_demo_too_small_for_its_stories_is_refused_before_anything_starts(tmp_path: Path):
    home = tmp_path / "home"
    result = CliRunner().invoke(main, ["up", "--demo", "--demo-patients", str(DEMO_PATIENTS_MIN - 1)],
                                env={"HEALTHOS_HOME": str(home)})
    assert result.exit_code == 2 and f"x>={DEMO_PATIENTS_MIN}" in result.output, result.output
    assert not home.exists()  # refused before the database was started


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_a_stop_signal_while_the_demo_fills_stops_postgres_too():
    """systemd (or anyone) stopping `healthos up` before it serves, here while the demo is written: the process ends
    with the signal's status and takes its embedded PostgreSQL with it, rather than leaving a server running that
    nobody stops (it did: SIGTERM ended the process on the spot)."""
    home = Path(tempfile.mkdtemp(prefix="healthos-up-"))
    env = {**os.environ, "HEALTHOS_HOME": str(home)}
    env.pop("HEALTHOS_DATABASE_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "appliance.cli", "up", "--demo", "--demo-patients",
                                str(DEMO_PATIENTS_MIN), "--port", str(_free_port())],
                               env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for line in process.stdout:
            seen.append(line)
            if "demo population written" in line:
                break
        assert (home / "pg" / "data" / "postmaster.pid").exists(), "".join(seen)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
        left = home / "pg" / "data" / "postmaster.pid"
        orphan = int(left.read_text().split()[0]) if left.exists() else None
        if orphan is not None:  # the failure this test is about: stop the server it left, then say so
            os.kill(orphan, signal.SIGTERM)
    assert orphan is None, "the embedded PostgreSQL was left running"
    assert process.returncode == 128 + signal.SIGTERM, "".join(seen) + output
    assert "embedded_postgres_stopped" in output
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
def test_up_demo_serves_three_tenants_and_stops_postgres_on_exit():
    """The README's run command, end to end: a fresh home, the demo facilities, /ready answers 200. A facility
    the operator applied from its own file first stays untouched: it had got 300 fictional patients and demo
    accounts whose passwords sit in the credentials file. The demo at its smallest (`--demo-patients`, 40 a
    facility rather than 300: half the time), where every demo drawing people from the population still tells
    its story (the contract in appliance/layers/clinical/demo.py)."""
    # Not under pytest's tmp_path: pytest re-tightens its base directory to 0700 whenever another
    # pytest process starts, which would lock the server's system user out of its data directory.
    home = Path(tempfile.mkdtemp(prefix="healthos-up-"))
    port = _free_port()
    env = {**os.environ, "HEALTHOS_HOME": str(home)}
    env.pop("HEALTHOS_DATABASE_URL", None)
    real = make_tenant_config()
    (home / "real.toml").write_text(tenant_toml(real))
    subprocess.run([sys.executable, "-m", "appliance.cli", "tenant", "apply", str(home / "real.toml")], env=env,
                   cwd=REPO, check=True, capture_output=True, timeout=180)
    process = subprocess.Popen([sys.executable, "-m", "appliance.cli", "up", "--demo", "--demo-patients",
                                str(DEMO_PATIENTS_MIN), "--port", str(port)],
                               env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # A liveness deadline, not a performance target: the demo at its smallest takes half the time of a
        # user's start (300 patients a facility), and several times longer on a busy machine.
        deadline = time.monotonic() + 240
        ready = None
        while time.monotonic() < deadline and ready is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
                    ready = json.loads(response.read())
            except OSError:
                assert process.poll() is None, process.stdout.read()
                time.sleep(0.3)
        assert ready is not None, "the appliance did not become ready within 240 s"
        assert ready["status"] == "ready"
        assert ready["tenants"] >= 3
        # The demo nurse works on a ward (a ward-scoped role without one is refused the ward's pages).
        running = Database.open(Settings.from_env({"HEALTHOS_HOME": str(home)}), start_embedded=False)
        try:
            with running.control() as conn:
                nurses = conn.execute(sa.text("SELECT tenant, ward FROM control.membership WHERE role = 'nurse'")).all()
                # Every entry's author has a name to show: the demo's generators have (disabled) accounts.
                nameless = {slug: conn.execute(sa.text(
                    f"SELECT count(DISTINCT author_id) FROM {tenant_schema(slug)}.entry WHERE author_id NOT IN "
                    "(SELECT id FROM control.account)")).scalar() for slug in active_slugs(running)}
                # The demo patient's account reaches a chart: its subject is linked at the facility.
                linked = conn.execute(sa.text(
                    "SELECT count(*) FROM t_lakeshore_district.patient p JOIN control.account a ON a.subject_id = "
                    "p.subject_id WHERE a.email = 'patient@appliance.demo' AND a.kind = 'patient'")).scalar()
                machines = conn.execute(sa.text(
                    "SELECT count(*) FILTER (WHERE disabled_at IS NULL OR password_hash IS NOT NULL), count(*) "
                    "FROM control.account WHERE kind = 'machine'")).one()
                real_patients = conn.execute(
                    sa.text(f"SELECT count(*) FROM {tenant_schema(real.slug)}.patient")).scalar()
                real_members = conn.execute(sa.text("SELECT count(*) FROM control.membership WHERE tenant = :t"),
                                            {"t": real.slug}).scalar()
        finally:
            running.engine.dispose()
        assert len(nurses) >= 3 and all(ward not in (None, "ED") for _, ward in nurses), nurses
        assert len(nameless) >= 3 and not any(nameless.values()), nameless
        assert machines[0] == 0 and machines[1] >= 3 * 5, machines
        assert linked == 1
        assert (real_patients, real_members) == (0, 0)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "embedded_postgres_stopped" in output
    assert f"hillview_hc: demo population written ({DEMO_PATIENTS_MIN} patients" in output
    # The stories drawn from the population, told at its smallest: a new demo adds its line here.
    for story in (r"demo referrals written \(\d+ sent", r"demo operations written \(\d+ completed, \d+ in theatre",
                  r"hillview_hc: demo outbreak written \(3 children",
                  r"demo ART clinic written \(12 on ART at lakeshore_district, 12 on ART at"):
        assert re.search(story, output), story
    credentials = home / "demo-credentials.txt"
    assert credentials.stat().st_mode & 0o777 == 0o600
    emails = [line.split("\t")[0] for line in credentials.read_text().splitlines() if not line.startswith("#")]
    for role in ["clinician", "nurse", "registrar", "bed_manager", "billing_clerk", "facility_admin"]:
        assert sum(email.startswith(f"{role}@") for email in emails) >= 3, role
    for role in ["operator", "ministry_analyst", "regulator", "patient"]:
        assert f"{role}@appliance.demo" in emails
    assert all(len(line.split("\t")[1]) >= 12 for line in credentials.read_text().splitlines()
               if not line.startswith("#"))
    shutil.rmtree(home, ignore_errors=True)
    assert not (home / "pg" / "data" / "postmaster.pid").exists()


def test_account_lifecycle_from_the_cli(run, settings, tenant_factory):
    facility = tenant_factory()
    email = f"new-{facility.slug}@test.invalid"
    created = run("account", "create", "--role", "nurse", "--tenant", facility.slug, "--email", f" {email} ")
    assert created.exit_code == 0, created.output
    assert f"created for {email} (nurse at {facility.slug})" in " ".join(created.output.split())  # as it is kept
    # Without the appliance's address a bare path is no link on a terminal: the operator is told where to open it.
    assert "open /enrol?code=" in created.output and "on the appliance's address" in created.output
    assert "password" not in created.output.lower()
    listed = json.loads(run("account", "list", "--json").output)
    assert {"email": email, "kind": "staff", "roles": [f"nurse@{facility.slug}"],
            "state": "awaiting enrolment"} in listed
    assert run("account", "create", "--role", "nurse", "--tenant", facility.slug, "--email", email).exit_code == 1
    assert "give --tenant" in run("account", "create", "--role", "nurse", "--email", "x@test.invalid").output
    reset = run("account", "reset-mfa", email)
    assert reset.exit_code == 0 and "open /enrol?code=" in reset.output
    # With it, the whole link, to send as it is.
    env = {"HEALTHOS_HOME": str(settings.home), "HEALTHOS_PUBLIC_URL": "https://healthos.example.org/",
           **({"HEALTHOS_DATABASE_URL": settings.database_url} if settings.database_url else {})}
    linked = CliRunner().invoke(main, ["account", "reset-mfa", email], env=env, catch_exceptions=False)
    assert linked.exit_code == 0
    assert f"{email}: must enrol again: https://healthos.example.org/enrol?code=" in linked.output
    assert run("account", "disable", email).exit_code == 0
    states = {row["email"]: row["state"] for row in json.loads(run("account", "list", "--json").output)}
    assert states[email] == "disabled"


def test_a_locked_account_says_until_when_and_is_unlocked_without_re_enrolling(run, db, person_factory, tenant_a):
    """A nurse who mistyped five times was listed as `locked`, nothing saying that it ends by itself in 15
    minutes, and the console sent IT to reset-mfa, which wipes the password and authenticator the nurse still
    has; and once the lock ran out, one more typo locked the account again for 15 minutes."""
    nurse = person_factory("nurse", tenant_a.slug)
    for _ in range(identity.DEFAULT_SETTINGS.max_failed_signins):
        with db.control() as conn:
            assert identity.check_password(conn, nurse.email, "mistyped") is None
    with db.control() as conn:
        until = identity.account_by_email(conn, nurse.email).locked_until
    listed = run("account", "list").output
    assert f"locked until {until.astimezone(dt.UTC):%H:%M} UTC" in listed.split(nurse.email)[1].split("\n")[0]
    assert {"email": nurse.email, "state": "locked", "locked_until": str(until)}.items() <= next(
        row for row in json.loads(run("account", "list", "--json").output) if row["email"] == nurse.email).items()

    unlocks = sa.text("SELECT count(*) FROM control.audit_event WHERE event_type = 'identity.account.unlock'")
    with db.control() as conn:
        before = conn.execute(unlocks).scalar()
    unlocked = run("account", "unlock", nurse.email)
    assert unlocked.exit_code == 0 and "unlocked" in unlocked.output
    with db.control() as conn:
        assert conn.execute(unlocks).scalar() == before + 1
        assert identity.check_password(conn, nurse.email, nurse.password) == nurse.account_id
    again = run("account", "unlock", nurse.email)
    assert again.exit_code == 1 and "is not locked" in again.output

    # Locked again, and the lock runs out: the next typo is the first of five, not a sixth.
    for _ in range(identity.DEFAULT_SETTINGS.max_failed_signins):
        with db.control() as conn:
            identity.check_password(conn, nurse.email, "mistyped")
    with db.control() as conn:
        conn.execute(sa.update(identity.account).where(identity.account.c.id == nurse.account_id)
                     .values(locked_until=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
        assert identity.check_password(conn, nurse.email, "mistyped") is None
    with db.control() as conn:
        assert identity.check_password(conn, nurse.email, nurse.password) == nurse.account_id

    # Re-enrolled while locked, it has no password to sign in with: enrolling ends the lock, not unlock.
    for _ in range(identity.DEFAULT_SETTINGS.max_failed_signins):
        with db.control() as conn:
            identity.check_password(conn, nurse.email, "mistyped")
    assert run("account", "reset-mfa", nurse.email).exit_code == 0
    pending = run("account", "unlock", nurse.email)
    assert pending.exit_code == 1 and "awaiting enrolment" in pending.output


def test_a_ward_that_is_not_the_facilitys_is_refused_naming_its_wards(run, db, tenant_factory):
    """`account create --role nurse --ward GNE` (a typo for GEN) made a nurse of a ward no patient lies on: she
    signed in and saw nobody's chart, and nothing said why. A clinician given a ward was taken too, where
    `grant` refuses it."""
    facility = tenant_factory(wards=[{"code": "GEN", "name": "General ward", "kind": "inpatient", "beds": 3},
                                     {"code": "MAT", "name": "Maternity", "kind": "maternity", "beds": 2}])
    email = f"typo-{facility.slug}@test.invalid"
    for role, ward, said in [("nurse", "GNE", f"{facility.slug} has no ward 'GNE': its wards are GEN, MAT"),
                             ("clinician", "GEN", "a clinician is not limited to a ward: leave --ward out")]:
        refused = run("account", "create", "--role", role, "--tenant", facility.slug, "--email", email,
                      "--ward", ward)
        assert refused.exit_code == 1 and said in " ".join(refused.output.split()), refused.output
    with db.control() as conn:  # nothing written: no account, no membership
        assert identity.account_by_email(conn, email) is None
    made = run("account", "create", "--role", "nurse", "--tenant", facility.slug, "--email", email, "--ward", "MAT")
    assert made.exit_code == 0, made.output


def test_account_list_piped_shows_every_e_mail_whole(run, tenant_factory):
    """Piped (`healthos account list | grep`), the table was fitted to 80 columns and a long e-mail printed as
    'a.very.long.na…', which neither grep nor the next command could use."""
    facility = tenant_factory()
    email = f"a.very.long.name.of.a.nurse.{facility.slug}@district-hospital.test.invalid"
    assert run("account", "create", "--role", "nurse", "--tenant", facility.slug, "--email", email).exit_code == 0
    line = next(line for line in run("account", "list").output.splitlines() if facility.slug in line)
    assert email in line and f"nurse@{facility.slug}" in line, line


def test_an_evidence_period_that_ends_before_it_starts_is_refused(run, tmp_path: Path):
    """'--since 2026-11-27 --until 2026-11-27' wrote a package of 0 events and said nothing of why."""
    package = tmp_path / "evidence.json"
    refused = run("audit", "export", "--since", "2026-11-27", "--until", "2026-11-27", "--out", str(package))
    assert refused.exit_code == 1 and "is not before --until" in refused.output
    assert "give the next day" in refused.output
    assert not package.exists()


def test_api_token_is_printed_once_and_works(run, tenant_factory, app):
    from litestar.testing import TestClient

    facility = tenant_factory()
    issued = run("account", "token", "--tenant", facility.slug, "--name", "lab feed",
                 "--permission", "operations.ward.read")
    assert issued.exit_code == 0, issued.output
    token = issued.output.strip().splitlines()[0]
    assert token.startswith("hos_")
    client = TestClient(app=app, raise_server_exceptions=False)
    client.headers["authorization"] = f"Bearer {token}"
    assert client.get(f"/api/t/{facility.slug}/wards").status_code == 200


def test_a_backup_that_cannot_be_written_is_explained_and_listed(run, tmp_path: Path):
    nowhere = tmp_path / "unmounted" / "nightly.hbk"
    failed = run("backup", "create", "--out", str(nowhere))
    assert failed.exit_code == 1
    assert f"no backup made: could not write {nowhere}: No such file or directory" in failed.output.replace("\n", "")
    assert "Traceback" not in failed.output and not nowhere.parent.exists()
    listed = json.loads(run("backup", "list", "--json").output)
    assert listed[0]["path"] == str(nowhere) and listed[0]["outcome"] == "failure"
    assert "No such file or directory" in listed[0]["error"]
    line = run("backup", "list", "--limit", "1").output.strip()
    assert f"FAILED  {nowhere}  could not write" in line and line.endswith("No such file or directory")


def test_a_backup_restored_where_its_key_was_not_copied_says_to_copy_it_and_starts_nothing(tmp_path: Path):
    """Restoring into a fresh HEALTHOS_HOME without copying keys/appliance.key made a new key and a database
    there, then refused the backup as "altered, damaged, or made by an appliance with another key": an operator
    restoring after a disaster read the backup as damaged, and had a wrong key and a cluster to clear away."""
    home, made = tmp_path / "new-home", tmp_path / "nightly.hbk"
    made.write_bytes(b"HEALTHOS-BACKUP/1\n")
    for command in (["backup", "restore", str(made)], ["backup", "verify", str(made)]):
        said = CliRunner().invoke(main, command, env={"HEALTHOS_HOME": str(home), "HEALTHOS_DATABASE_URL": ""})
        assert said.exit_code == 1 and "Traceback" not in said.output
        assert f"copy its keys/appliance.key to {home / 'keys' / 'appliance.key'}" in " ".join(said.output.split())
    assert not home.exists()


def test_grant_gives_an_existing_person_a_role_at_another_facility(run, db, tenant_factory, person_factory):
    """A clinician starting at a second facility kept one account only by way of the facility admin's page; IT
    grants it at the command line, audited, and is told why when it cannot."""
    first, second = tenant_factory(), tenant_factory()
    doctor = person_factory("clinician", first.slug)

    def granted_events() -> int:
        with db.control() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM control.audit_event WHERE event_type = "
                                        "'identity.membership.create'")).scalar()

    before = granted_events()
    granted = run("account", "grant", doctor.email, "--role", "clinician", "--tenant", second.slug)
    assert granted.exit_code == 0, granted.output
    assert granted_events() == before + 1
    listed = {row["email"]: row for row in json.loads(run("account", "list", "--json").output)}
    assert set(listed[doctor.email]["roles"]) == {f"clinician@{first.slug}", f"clinician@{second.slug}"}
    for args, said in [((doctor.email, "--role", "clinician", "--tenant", second.slug), "a clinician at"),
                       ((doctor.email, "--role", "registrar", "--tenant", second.slug, "--ward", "GEN"),
                        "not limited to a ward"),
                       ((doctor.email, "--role", "nurse", "--tenant", second.slug, "--ward", "GNE"),
                        f"{second.slug} has no ward 'GNE': its wards are GEN"),
                       ((f"nobody-{first.slug}@test.invalid", "--role", "nurse", "--tenant", second.slug),
                        "no account for"),
                       ((doctor.email, "--role", "regulator", "--tenant", second.slug), "not a facility role")]:
        refused = run("account", "grant", *args)
        assert refused.exit_code == 1 and said in " ".join(refused.output.split()), (args, refused.output)
    assert granted_events() == before + 1  # nothing written by a refusal
    assert run("account", "disable", doctor.email).exit_code == 0
    disabled = run("account", "grant", doctor.email, "--role", "registrar", "--tenant", second.slug)
    assert disabled.exit_code == 1 and "enable it first" in " ".join(disabled.output.split())


def test_revoke_takes_one_facility_role_and_ends_its_sessions_there(run, db, tenant_factory, person_factory):
    """A clinician who stopped working at a second facility kept its role for good: IT could grant a role and
    disable the whole account, nothing between, and her session there went on reading its charts."""
    first, second = tenant_factory(), tenant_factory()
    doctor = person_factory("clinician", first.slug)
    assert run("account", "grant", doctor.email, "--role", "clinician", "--tenant", second.slug).exit_code == 0
    with db.control() as conn:
        there = identity.start_session(conn, doctor.account_id, mfa_passed=True)
        identity.switch_tenant(conn, identity.load_session(conn, there).id, doctor.account_id, second.slug,
                               "clinician")
        here = identity.start_session(conn, doctor.account_id, mfa_passed=True)
        identity.switch_tenant(conn, identity.load_session(conn, here).id, doctor.account_id, first.slug, "clinician")
    revoked = run("account", "revoke", doctor.email, "--role", "clinician", "--tenant", second.slug)
    assert revoked.exit_code == 0, revoked.output
    assert f"no longer a clinician at {second.slug}; 1 session(s) there ended" in " ".join(revoked.output.split())
    listed = {row["email"]: row for row in json.loads(run("account", "list", "--json").output)}
    assert listed[doctor.email]["roles"] == [f"clinician@{first.slug}"]
    assert listed[doctor.email]["state"] == "active"
    with db.control() as conn:
        assert identity.load_session(conn, there) is None  # acting at the second facility: ended
        assert identity.load_session(conn, here) is not None  # at her own: goes on
        events = conn.execute(sa.text("SELECT count(*) FROM control.audit_event "
                                      "WHERE event_type = 'identity.membership.revoke'")).scalar()
    assert events >= 1
    again = run("account", "revoke", doctor.email, "--role", "clinician", "--tenant", second.slug)
    assert again.exit_code == 1 and "there is nothing to revoke" in " ".join(again.output.split())
    with db.control() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM control.audit_event "
                                    "WHERE event_type = 'identity.membership.revoke'")).scalar() == events


def test_enable_undoes_disable_with_the_old_credentials_and_tokens_stay_revoked(run, db, tenant_factory,
                                                                                 person_factory):
    """A nurse disabled by mistake, or back from leave, could only be recreated, losing the account's history."""
    from appliance.substrate import identity

    facility = tenant_factory()
    nurse = person_factory("nurse", facility.slug)
    with db.control() as conn:
        token = identity.issue_api_token(conn, account_id=nurse.account_id, tenant=facility.slug, name="ward tablet",
                                         permissions=["operations.ward.read"])

    def enable_events() -> int:
        with db.control() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM control.audit_event WHERE event_type = "
                                        "'identity.account.enable'")).scalar()

    assert "is not disabled" in " ".join(run("account", "enable", nurse.email).output.split())
    assert run("account", "disable", nurse.email).exit_code == 0
    before = enable_events()
    enabled = run("account", "enable", nurse.email)
    assert enabled.exit_code == 0, enabled.output
    assert "API tokens stay revoked" in " ".join(enabled.output.split())
    assert enable_events() == before + 1
    with db.control() as conn:
        assert identity.check_password(conn, nurse.email, nurse.password) == nurse.account_id
        assert identity.principal_for_token(conn, token) is None
    listed = {row["email"]: row for row in json.loads(run("account", "list", "--json").output)}
    assert listed[nurse.email]["state"] == "active" and listed[nurse.email]["roles"] == [f"nurse@{facility.slug}"]
    again = run("account", "enable", nurse.email)
    assert again.exit_code == 1 and "is not disabled" in " ".join(again.output.split())
    unknown = run("account", "enable", f"nobody-{facility.slug}@test.invalid")
    assert unknown.exit_code == 1 and "no account for" in unknown.output
    assert enable_events() == before + 1


def test_dropping_a_facility_names_the_people_it_leaves_with_no_role_and_keeps_them(run, db, policy, tenant_factory,
                                                                                     person_factory):
    """Their only role went with the facility: they listed as 'awaiting enrolment' (or 'active') with no roles,
    as if someone should enrol them there. An account is never deleted: its audit history names it."""
    closing, staying = tenant_factory(), tenant_factory()
    only_there = person_factory("nurse", closing.slug)
    also_elsewhere = person_factory("clinician", closing.slug)
    from appliance.substrate import identity

    with db.control() as conn:
        identity.add_membership(conn, policy, account_id=also_elsewhere.account_id, tenant=staying.slug,
                                role="clinician")
    operator = person_factory("operator", kind="operator")
    dropped = run("tenant", "drop", closing.slug, "--yes")
    assert dropped.exit_code == 0, dropped.output
    said = " ".join(dropped.output.split())
    assert "1 account(s) had their only role there" in said and only_there.email in dropped.output
    assert also_elsewhere.email not in dropped.output and operator.email not in dropped.output
    listed = {row["email"]: row for row in json.loads(run("account", "list", "--json").output)}
    assert listed[only_there.email]["roles"] == [] and listed[only_there.email]["state"] == "no role"
    assert listed[also_elsewhere.email]["state"] == "active"
    assert listed[operator.email]["state"] == "active"


def test_dropping_a_facility_disables_its_machine_clients_and_revokes_their_tokens(run, db, policy, tenant_factory):
    """A facility's integration (its API token's account) served only it: it listed as an 'active' account
    after the drop, its tokens gone with the registry row and no audit event saying so."""
    from appliance.substrate import identity

    closing, staying = tenant_factory(), tenant_factory()
    with db.control() as conn:
        feed_token = identity.issue_machine_token(conn, policy, tenant=closing.slug, name="lab HL7 feed",
                                                  permissions=["clinical.result.create"])
        other_token = identity.issue_machine_token(conn, policy, tenant=staying.slug, name="pharmacy feed",
                                                   permissions=["clinical.result.create"])
        feed = identity.principal_for_token(conn, feed_token)

    def disable_events() -> int:
        with db.control() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM control.audit_event WHERE event_type = "
                                        "'identity.account.disable'")).scalar()

    before = disable_events()
    dropped = run("tenant", "drop", closing.slug, "--yes")
    assert dropped.exit_code == 0, dropped.output
    said = " ".join(dropped.output.split())
    assert "1 machine client(s) served only it: disabled, and their API tokens revoked" in said
    assert "lab HL7 feed (machine-" in said and "pharmacy feed" not in said
    assert disable_events() == before + 1
    with db.control() as conn:
        machine = conn.execute(sa.select(identity.account).where(identity.account.c.id == feed.account_id)).one()
        assert machine.disabled_at is not None
        assert identity.principal_for_token(conn, feed_token) is None
        assert identity.principal_for_token(conn, other_token) is not None  # another facility's client untouched
    listed = {row["email"]: row for row in json.loads(run("account", "list", "--json").output)}
    assert listed[machine.email]["state"] == "disabled"


def test_status_does_not_hold_a_dropped_facilitys_kept_audit_log_against_the_appliance(run, db, tenant_factory,
                                                                                       monkeypatch):
    """A dropped facility's log stays in `control`, verifiable, and may keep events no checkpoint will ever sign
    (a tampered log is archived as it stands): status must not call that late at every check from then on."""
    from appliance.substrate import standing
    from tests.substrate.audit_support import fill, tamper

    closing = tenant_factory()
    fill(db, closing.slug, (2,))
    schema = f'"{tenant_schema(closing.slug)}"'
    tamper(db, schema, f"UPDATE {schema}.audit_checkpoint SET edge = sha256(edge)", tables=("audit_checkpoint",))
    with db.tenant(closing.slug) as conn:
        audit.append(conn, tenant=closing.slug, principal=None, event_type="chart.read", action="R")
    assert run("tenant", "drop", closing.slug, "--yes").exit_code == 0
    with db.control() as conn:
        assert conn.execute(sa.text(
            "SELECT count(*) FROM control.audit_pending p JOIN control.audit_log l USING (log_id) "
            "WHERE l.tenant = :t AND l.closed_at IS NOT NULL"), {"t": closing.slug}).scalar() == 1

    monkeypatch.setattr(standing, "CHECKPOINT_LATE", dt.timedelta(0))  # every log with events waiting is late
    report = json.loads(run("status", "--json").output)
    assert closing.slug not in [log["log"] for log in report["audit"]]
    assert not [problem for problem in report["problems"] if closing.slug in problem], report["problems"]


def test_status_of_an_appliance_that_is_not_running_says_so_and_starts_nothing(tmp_path: Path):
    """A monitoring check that started the embedded PostgreSQL would leave a cluster owned by the agent."""
    home = tmp_path / "home"
    home.mkdir()
    runner = CliRunner()
    result = runner.invoke(main, ["status", "--json"], env={"HEALTHOS_HOME": str(home)})
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["ok"] is False and report["database"]["state"] == "not running"
    assert "embedded PostgreSQL is not running" in report["problems"][0] and "schemas" not in report
    assert not (home / "pg").exists() and not (home / "keys").exists()  # nothing started, no key made
    said = runner.invoke(main, ["status"], env={"HEALTHOS_HOME": str(home)})
    assert said.exit_code == 1 and "not running" in said.output and "Traceback" not in said.output


def test_status_names_each_problem_and_says_all_well_when_all_is(run, db, tenant_factory, tmp_path: Path):
    from appliance.substrate.migrate import head

    ahead, behind = tenant_factory(), tenant_factory()
    with db.control() as conn:
        conn.exec_driver_sql(f'UPDATE "t_{ahead.slug}".alembic_version SET version_num = \'t9999\'')
        conn.exec_driver_sql(f'UPDATE "t_{behind.slug}".alembic_version SET version_num = \'t0001\'')
    try:
        result = run("status", "--json")
        assert result.exit_code == 1, result.output
        report = json.loads(result.output)
        schemas = report["schemas"]
        assert schemas["tenants_ahead"] == [ahead.slug] and schemas["tenants_behind"] == [behind.slug]
        assert any(ahead.slug in problem and "newer release" in problem for problem in report["problems"])
        assert any(behind.slug in problem and "healthos migrate" in problem for problem in report["problems"])
        said = " ".join(run("status").output.split())
        assert f"1 facility schema(s) ahead of this code ({ahead.slug})" in said
    finally:
        with db.control() as conn:
            for config in (ahead, behind):
                conn.exec_driver_sql(f'UPDATE "t_{config.slug}".alembic_version SET version_num = '
                                     f"'{head('tenant')}'")

    # A backup made, and every log's waiting events sealed (the test process runs no checkpointer): all well.
    # What it holds of control is said when it is made, verified and listed, as the facilities' rows are.
    nightly = tmp_path / "nightly.hbk"
    made = run("backup", "create", "--out", str(nightly))
    assert made.exit_code == 0 and re.search(r"control \([\d,]+ accounts, [\d,]+ memberships, [\d,]+ subjects, "
                                             r"[\d,]+ events of the appliance's audit log; [\d,]+ rows in all\) and "
                                             r"\d+ facilities", " ".join(made.output.split())), made.output
    verified = run("backup", "verify", str(nightly)).output
    # The terminal's width may wrap the line inside the file's long path: compared with no whitespace at all.
    assert f"{nightly}:intact;backupof" in "".join(verified.split()), verified
    assert " accounts, " in " ".join(verified.split()), verified
    listed = run("backup", "list", "--limit", "1").output
    assert re.search(rf"made +{re.escape(str(nightly))} +[\d.]+ MB, control and \d+ facilities, [\d,]+ rows", listed)
    assert run("audit", "checkpoint").exit_code == 0
    result = run("status", "--json")
    report = json.loads(result.output)
    assert result.exit_code == 0 and report["ok"] is True and report["problems"] == [], report["problems"]
    assert report["database"]["answering"] is True and report["database"]["bytes"] > 0
    assert report["schemas"]["control"]["state"] == "at head" and report["tenants"]["active"] >= 2
    assert report["backup"]["directory"] == str(tmp_path) and report["key"]["mode"] == "0600"
    assert report["audit"][0]["log"] == "appliance" and not any(log["late"] for log in report["audit"])
    lines = run("status")
    assert lines.exit_code == 0 and lines.output.rstrip().endswith("all well"), lines.output

    # pg_trgm updated or the database restored on a site's own server: the extension's COST 1 is back, and name
    # search quietly reads every patient. Status names it and the statement that fixes it.
    db.cluster._psql("healthos", "ALTER FUNCTION public.word_similarity(text, text) COST 1")
    try:
        report = json.loads(run("status", "--json").output)
        assert [p for p in report["problems"] if "pg_trgm" in p] == [
            "database: pg_trgm prices word_similarity below COST 100, so patient-name search reads every patient "
            "instead of the trigram index (~90 ms rather than ~20 ms at 20,000 patients); as the extension's owner "
            "(a superuser) run ALTER FUNCTION public.word_similarity(text, text) COST 100"], report["problems"]
    finally:
        db.cluster._price_trigram_functions()


def test_status_pages_about_an_hl7_feed_gone_quiet_or_failing(run, db, policy, tenant_factory):
    """A lab analyser's link down is what hospital IT's monitoring must hear about: `healthos status` lists each feed
    heard from this week and names one failing (its last messages all refused) or quiet (nothing for a day) as a
    problem, exit 1, with where to look; the operator's console reads the same."""
    from tests.web.test_operator import feeds_heard_from

    facility = tenant_factory(name="Feeding Clinic")
    feeds_heard_from(db, policy, facility.slug, {
        "lab": [("AA", dt.timedelta(hours=3)), *(("AE", dt.timedelta(minutes=50 - i)) for i in range(6))],
        "registration": [("AA", dt.timedelta(hours=30))], "pharmacy": [("AA", dt.timedelta(minutes=5))]})
    try:
        result = run("status", "--json")
        report = json.loads(result.output)
        assert result.exit_code == 1
        feeds = {feed["name"]: feed for feed in report["feeds"] if feed["facility"] == "Feeding Clinic"}
        assert {name: feed["state"] for name, feed in feeds.items()} == {
            "HL7 feed lab": "failing", "HL7 feed registration": "quiet", "HL7 feed pharmacy": "sending"}
        assert feeds["HL7 feed lab"]["refused_since"] == 6
        assert (f"hl7: Feeding Clinic's HL7 feed lab is failing: its last 6 messages were refused, none applied since; "
                f"the facility admin's Interfaces page (/t/{facility.slug}/admin/interfaces?show=not-applied) says why"
                in report["problems"])
        assert ("hl7: Feeding Clinic's HL7 feed registration has sent nothing for 30 h: is its listener running "
                "(systemctl status healthos-hl7@registration) and the sending system connected to it?"
                in report["problems"])
        assert not any("pharmacy" in problem for problem in report["problems"])
        said = " ".join(run("status").output.split())
        assert "feeds Feeding Clinic: HL7 feed" in said and "HL7 feed lab failing, last message" in said
    finally:
        with db.control() as conn:  # the module's other status checks expect no feed
            conn.exec_driver_sql(f'DELETE FROM "t_{facility.slug}".hl7_message')


def test_deployment_commands_print_a_quoted_path_whole(tmp_path: Path):
    """A deployment refusal quoting a file whose name holds brackets ("key[old].pem") prints it as written: rich
    markup took "[old]" for a style and the operator read of a file that does not exist."""
    pubkey = tmp_path / "key[old].pem"
    pubkey.write_text("not a key")
    said = CliRunner().invoke(main, ["bundle", "verify", str(tmp_path / "x.hbundle"), "--pubkey", str(pubkey)],
                              env={"HEALTHOS_HOME": str(tmp_path / "home")})
    assert said.exit_code == 1 and "key[old].pem: " in " ".join(said.output.split()), said.output


@pytest.mark.parametrize(("change", "named"), [
    (('recording_since = "2000-01-01"', 'recording_since = "2026-13-01"'), ("recording_since", "YYYY-MM-DD")),
    (('currency = "KES"', 'currency = "KES"\nphone = "ring the desk"'), ("phone:", "the number patients phone")),
])
def test_check_and_apply_refuse_a_field_mistyped_naming_the_file(run, tmp_path: Path, change, named):
    """A mistyped recording_since would move the month the national figures count the facility from; a phone number
    no one can dial, which the portal gives patients to call, sends them nowhere: each refused by `healthos check`
    and by apply alike, naming the file and the field, and nothing applied."""
    config = make_tenant_config(name="Mistyped Clinic")
    path = tmp_path / "mistyped.toml"
    path.write_text(tenant_toml(config).replace(*change))
    for said in (run("check", "--tenants", str(tmp_path)), run("tenant", "apply", str(path))):
        words = " ".join(said.output.split())
        assert said.exit_code == 1, said.output
        assert "mistyped.toml" in words and all(word in words for word in named), said.output
    assert config.slug not in run("tenant", "list", "--json").output
