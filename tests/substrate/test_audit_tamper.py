"""The tamper suite: a database administrator edits the audit trail the way one could — flips a byte of a
body, a header, a hash or a signature; deletes, inserts or reorders events; truncates the tail; rolls a
checkpoint back — and both `healthos audit verify` and the offline verifier, on an export of the
tampered log, catch it and name the sequence number.

Each case gets a fresh tenant whose log is 24 events (seq 1..24 at positions 0..23) under three
signed checkpoints (sizes 8, 16 and 24).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import audit_verify
from appliance.cli import main
from appliance.substrate import audit
from appliance.substrate.db import tenant_schema
from tests.substrate.audit_support import fill, flip, tamper

HEADER_SQL = (
    "format(E'healthos-audit-event/1\\nlog=%s\\ntenant=%s\\nseq=%s\\ntime=%s\\ntype=%s\\nkey=%s\\npatient=%s\\n', "
    "k.log_id, {tenant!r}, {seq}, to_char(e.recorded AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
    "e.event_type, e.key_id, coalesce(e.patient_ref, '-'))"
)


@pytest.fixture
def healthos(settings, db):
    runner = CliRunner()
    env = {"HEALTHOS_HOME": str(settings.home), "HEALTHOS_LOG_FORMAT": "console"}
    if settings.database_url:
        env["HEALTHOS_DATABASE_URL"] = settings.database_url

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)

    return invoke


@pytest.fixture
def public_key(healthos, tmp_path: Path) -> Path:
    result = healthos("audit", "public-key")
    assert result.exit_code == 0
    path = tmp_path / "appliance.pub"
    path.write_text(result.stdout)
    return path


@dataclass
class Case:
    name: str
    statements: list[str]
    seq: int
    says: str
    held: bool = False  # verify against the checkpoints a regulator kept before the tampering


def forge(schema: str, slug: str, seq: int, position: int, like: int = 5) -> list[str]:
    """A fabricated event with a correct hash (an attacker can compute SHA-256 too), at a position."""
    header = HEADER_SQL.format(tenant=slug, seq=seq)
    return [
        f"INSERT INTO {schema}.audit_event (seq, recorded, event_type, key_id, patient_ref, nonce, body, leaf_hash) "
        f"SELECT {seq}, e.recorded, e.event_type, e.key_id, e.patient_ref, e.nonce, e.body, "
        f"sha256('\\x00'::bytea || convert_to({header}, 'UTF8') || e.nonce || e.body) "
        f"FROM {schema}.audit_event e JOIN {schema}.audit_key k USING (key_id) WHERE e.seq = {like}",
        f"INSERT INTO {schema}.audit_position (position, seq) VALUES ({position}, {seq})",
    ]


def shift_positions(schema: str, at_least: int, by: int) -> list[str]:
    """Renumber positions from `at_least` on (in two steps, so the primary key never collides)."""
    return [f"UPDATE {schema}.audit_position SET position = position + 1000000 WHERE position >= {at_least}",
            f"UPDATE {schema}.audit_position SET position = position - 1000000 + {by} WHERE position >= 1000000"]


def cases(schema: str, slug: str) -> dict[str, Case]:
    e, p, c = f"{schema}.audit_event", f"{schema}.audit_position", f"{schema}.audit_checkpoint"
    return {case.name: case for case in [
        Case("body byte", [f"UPDATE {e} SET body = {flip('body')} WHERE seq = 10"], 10, "do not match its hash"),
        Case("header: event type", [f"UPDATE {e} SET event_type = 'chart.write' WHERE seq = 11"], 11, "hash"),
        Case("header: time", [f"UPDATE {e} SET recorded = recorded + interval '1 second' WHERE seq = 12"], 12,
             "hash"),
        Case("header: patient", [f"UPDATE {e} SET patient_ref = (SELECT patient_ref FROM {e} WHERE seq = 1) "
                                 "WHERE seq = 14"], 14, "hash"),
        Case("hash byte", [f"UPDATE {e} SET leaf_hash = {flip('leaf_hash')} WHERE seq = 15"], 15, "hash"),
        Case("signature byte", [f"UPDATE {c} SET signature = {flip('signature')} WHERE tree_size = 16"], 9,
             "signature of the checkpoint at size 16"),
        Case("checkpoint root", [f"UPDATE {c} SET root_hash = {flip('root_hash')} WHERE tree_size = 16"], 9,
             "signature of the checkpoint at size 16"),
        Case("delete an event", [f"DELETE FROM {e} WHERE seq = 12"], 12, "deleted"),
        Case("delete an event and close the gap",
             [f"DELETE FROM {e} WHERE seq = 12", f"DELETE FROM {p} WHERE seq = 12", *shift_positions(schema, 12, -1)],
             12, "missing"),
        Case("insert a forged event in the middle", [*shift_positions(schema, 10, 1), *forge(schema, slug, 1000, 10)],
             1000, "out of order"),
        Case("insert a forged event at the end", forge(schema, slug, 1000, 24), 1000, "in no signed checkpoint"),
        Case("insert an event outside the log", [forge(schema, slug, 1000, 24)[0]], 1000, "in no checkpoint"),
        Case("reorder two events", [f"UPDATE {p} SET seq = -seq WHERE seq IN (11, 12)",
                                    f"UPDATE {p} SET seq = 23 + seq WHERE seq IN (-11, -12)"], 12, "out of order"),
        Case("truncate the tail", [f"DELETE FROM {e} WHERE seq > 20", f"DELETE FROM {p} WHERE seq > 20"], 20,
             "truncated"),
        Case("roll the latest checkpoint back", [f"DELETE FROM {c} WHERE tree_size = 24"], 17,
             "in no signed checkpoint"),
        Case("roll the whole log back to an earlier checkpoint",
             [f"DELETE FROM {c} WHERE tree_size = 24", f"DELETE FROM {p} WHERE seq > 16",
              f"DELETE FROM {e} WHERE seq > 16"], 16, "rolled back", held=True),
    ]}


CASE_NAMES = list(cases('"t_x"', "x"))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_tampering_is_caught_by_both_verifiers_naming_the_sequence_number(
        name, db, tenant_factory, healthos, public_key, tmp_path: Path, capsys):
    slug = tenant_factory().slug
    schema = f'"{tenant_schema(slug)}"'
    fill(db, slug, (8, 8, 8))
    held = tmp_path / "kept.json"
    assert healthos("audit", "checkpoint", "--tenant", slug, "--out", held).exit_code == 0
    clean = healthos("audit", "verify", "--tenant", slug, "--checkpoints", held)
    assert clean.exit_code == 0 and "OK" in clean.stdout, clean.output

    case = cases(schema, slug)[name]
    tamper(db, schema, *case.statements)
    named = f"seq {case.seq}"

    # 1. healthos audit verify, over the database
    verified = healthos("audit", "verify", "--tenant", slug, *(["--checkpoints", held] if case.held else []))
    assert verified.exit_code == 1, verified.output
    first = verified.stdout.splitlines()[0]
    assert first.startswith("FAILED") and named in first and case.says in verified.stdout, verified.stdout

    # 2. the offline verifier, over an export of the tampered database, with the pinned public key
    package = tmp_path / "evidence.json"
    exported = healthos("audit", "export", "--tenant", slug, "--out", package)
    assert exported.exit_code == 0, exported.output
    capsys.readouterr()
    code = audit_verify.main([str(package), "--public-key", str(public_key),
                              *(["--checkpoints", str(held)] if case.held else [])])
    output = capsys.readouterr().out
    summary = next(line for line in output.splitlines() if line.startswith(("OK", "FAILED")))
    assert code == 1 and summary.startswith("FAILED") and named in summary and case.says in output, output


def test_a_rolled_back_log_looks_whole_without_the_kept_checkpoints(db, tenant_factory, healthos, tmp_path: Path):
    """Why a regulator keeps checkpoints: a complete rollback is self-consistent on its own."""
    slug = tenant_factory().slug
    schema = f'"{tenant_schema(slug)}"'
    fill(db, slug, (8, 8, 8))
    held = tmp_path / "kept.json"
    healthos("audit", "checkpoint", "--tenant", slug, "--out", held)
    tamper(db, schema, *cases(schema, slug)["roll the whole log back to an earlier checkpoint"].statements)
    assert healthos("audit", "verify", "--tenant", slug).exit_code == 0
    assert healthos("audit", "verify", "--tenant", slug, "--checkpoints", held).exit_code == 1


def test_the_log_growing_after_the_kept_checkpoints_verifies(db, tenant_factory, healthos, tmp_path: Path):
    slug = tenant_factory().slug
    fill(db, slug, (5, 5))
    held = tmp_path / "kept.json"
    healthos("audit", "checkpoint", "--tenant", slug, "--out", held)
    fill(db, slug, (7,))
    result = healthos("audit", "verify", "--tenant", slug, "--checkpoints", held)
    assert result.exit_code == 0 and "17 events" in result.stdout, result.output
    package = tmp_path / "later.json"
    healthos("audit", "export", "--tenant", slug, "--out", package)
    assert audit_verify.main([str(package), "--checkpoints", str(held)]) == 0


def test_audit_verify_checks_a_kept_file_against_its_log_and_says_what_it_proved(db, tenant_factory, healthos,
                                                                                 tmp_path: Path):
    """A facility's kept file, brought to `audit verify` without --tenant, was checked against the appliance's
    own log and reported as tampering; the file names its log, and the output says the log only grew (and,
    with --decrypt, that the bodies were authenticated: both runs read exactly like a plain one)."""
    slug = tenant_factory().slug
    fill(db, slug, (5,))
    held = tmp_path / "kept.json"
    healthos("audit", "checkpoint", "--tenant", slug, "--out", held)
    result = healthos("audit", "verify", "--checkpoints", held)
    assert result.exit_code == 0 and result.stdout.startswith("OK"), result.output
    assert f"(tenant {slug})" in result.stdout
    assert "the log only grew since the 1 checkpoint(s) kept earlier" in result.stdout
    decrypted = healthos("audit", "verify", "--tenant", slug, "--decrypt")
    assert decrypted.exit_code == 0 and "5 of 5 event bodies authenticated" in decrypted.stdout, decrypted.output
    wrong = healthos("audit", "verify", "--tenant", "another_facility", "--checkpoints", held)
    assert wrong.exit_code != 0 and f"checkpoints of tenant {slug}, not of tenant another_facility" in wrong.output
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    not_kept = healthos("audit", "verify", "--tenant", slug, "--checkpoints", notes)
    said = " ".join(not_kept.output.split())  # rich wraps the line on a narrow terminal
    assert not_kept.exit_code == 1 and f"{notes} is not a file of kept checkpoints: it is not JSON" in said
    assert "healthos audit checkpoint --out" in said and "Expecting value" not in said


# -- many random corruptions ----------------------------------------------------------------------

SEQS = st.integers(1, 24)


def corruption(schema: str, slug: str):
    e, p, c = f"{schema}.audit_event", f"{schema}.audit_position", f"{schema}.audit_checkpoint"
    flips = st.sampled_from(["body", "nonce", "leaf_hash"])
    return st.one_of(
        st.builds(lambda s, col, off: [f"UPDATE {e} SET {col} = set_byte({col}, {off} % length({col}), "
                                       f"get_byte({col}, {off} % length({col})) # 128) WHERE seq = {s}"],
                  SEQS, flips, st.integers(0, 500)),
        st.builds(lambda s: [f"UPDATE {e} SET event_type = event_type || 'x' WHERE seq = {s}"], SEQS),
        st.builds(lambda s, us: [f"UPDATE {e} SET recorded = recorded + make_interval(secs => {us} / 1e6) "
                                 f"WHERE seq = {s}"], SEQS, st.integers(1, 10**7)),
        st.builds(lambda s: [f"UPDATE {e} SET patient_ref = md5(random()::text) WHERE seq = {s}"], SEQS),
        st.builds(lambda s: [f"UPDATE {e} SET key_id = 'ffffffffffffffff' WHERE seq = {s}"], SEQS),
        st.builds(lambda s: [f"DELETE FROM {e} WHERE seq = {s}"], SEQS),
        st.builds(lambda s: [f"DELETE FROM {e} WHERE seq = {s}", f"DELETE FROM {p} WHERE seq = {s}",
                             *shift_positions(schema, s, -1)], SEQS),
        st.builds(lambda pair: [f"UPDATE {p} SET seq = -seq WHERE seq IN ({pair[0]}, {pair[1]})",
                                f"UPDATE {p} SET seq = {sum(pair)} + seq WHERE seq IN (-{pair[0]}, -{pair[1]})"],
                  st.lists(SEQS, min_size=2, max_size=2, unique=True)),
        st.builds(lambda at, like: [*shift_positions(schema, at, 1), *forge(schema, slug, 5000, at, like)],
                  st.integers(0, 24), SEQS),
        st.builds(lambda k: [f"DELETE FROM {e} WHERE seq > {24 - k}", f"DELETE FROM {p} WHERE seq > {24 - k}"],
                  st.integers(1, 23)),
        st.just([f"DELETE FROM {c} WHERE tree_size = 24"]),
        st.builds(lambda size, col: [f"UPDATE {c} SET {col} = {flip(col, 7)} WHERE tree_size = {size}"],
                  st.sampled_from([8, 16, 24]), st.sampled_from(["signature", "root_hash"])),
        st.builds(lambda size: [f"UPDATE {c} SET signed_at = signed_at + interval '1 microsecond' "
                                f"WHERE tree_size = {size}"], st.sampled_from([8, 16, 24])),
    )


@pytest.fixture(scope="module")
def pristine(db, tenant_factory):
    slug = tenant_factory().slug
    fill(db, slug, (8, 8, 8))
    return slug


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_random_corruption_is_detected(db, pristine, data):
    schema = f'"{tenant_schema(pristine)}"'
    statements = data.draw(corruption(schema, pristine))
    # Tamper and verify inside one transaction, then roll it back: the next example starts pristine.
    with db.engine.connect() as conn:
        transaction = conn.begin()
        try:
            for table in ("audit_event", "audit_position", "audit_checkpoint"):
                conn.exec_driver_sql(f"ALTER TABLE {schema}.{table} DISABLE TRIGGER USER")
            for statement in statements:
                conn.execute(sa.text(statement))
            report = audit._verify_log(conn, audit._log_of(conn, pristine))
        finally:
            transaction.rollback()
    assert not report.ok, statements
    assert report.first_problem.seq is not None or report.first_problem.kind in ("truncated", "root"), report.problems


def test_the_pristine_log_verifies(db, pristine):
    report = audit.verify(db, pristine)
    assert report.ok and report.events == 24 and report.checkpoints == 3


def test_tampering_is_refused_while_the_triggers_are_on(db, pristine):
    schema = f'"{tenant_schema(pristine)}"'
    with pytest.raises(sa.exc.ProgrammingError, match="append-only"), db.control() as conn:
        conn.exec_driver_sql(f"UPDATE {schema}.audit_event SET body = {flip('body')} WHERE seq = 3")
