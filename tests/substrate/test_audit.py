"""The audit trail's append, checkpoints, append-only defences and reading back, on real PostgreSQL."""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.exceptions import InvalidTag
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import errors as pg_errors

from appliance.audit_verify import decrypt_body, event_header, parse_header
from appliance.substrate import audit, keys, merkle
from appliance.substrate.db import Database, tenant_schema
from tests.substrate.audit_support import clinician, fill

# -- append ---------------------------------------------------------------------------------------


def test_header_is_clear_body_is_sealed_and_the_patient_is_only_a_keyed_reference(db, tenant_factory):
    slug = tenant_factory().slug
    patient = str(uuid.uuid4())
    who = clinician(slug)
    with db.tenant(slug) as conn:
        seq = audit.append(conn, tenant=slug, principal=who, event_type="chart.read", action="R", patient_id=patient,
                           entity={"what": {"reference": "Encounter/1"}}, detail={"route": "chart"})
    with db.control() as conn:
        row = conn.execute(sa.text(f'SELECT * FROM "{tenant_schema(slug)}".audit_event WHERE seq = :s'),
                           {"s": seq}).mappings().one()
    raw = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row.values())
    assert patient.encode() not in raw and who.display_name.encode() not in raw
    assert row["event_type"] == "chart.read" and len(row["patient_ref"]) == 32

    [event] = audit.read_events(db, slug, first_seq=seq)
    body = event["event"]
    assert body["resourceType"] == "AuditEvent" and body["action"] == "R" and body["outcome"] == "0"
    assert body["type"]["code"] == "110110"  # DICOM "Patient Record"
    assert body["agent"][0]["who"]["name"] == who.display_name and body["agent"][0]["requestor"] is True
    assert {"reference": f"Patient/{patient}"} in [e["what"] for e in body["entity"]]
    assert body["source"]["site"] == slug and body["detail"] == {"route": "chart"}


def test_a_body_moved_to_another_event_does_not_decrypt(db, tenant_factory):
    slug = tenant_factory().slug
    with db.tenant(slug) as conn:
        first = audit.append(conn, tenant=slug, principal=None, event_type="chart.read", action="R", patient_id="a")
        second = audit.append(conn, tenant=slug, principal=None, event_type="chart.read", action="R", patient_id="a")
    with db.control() as conn:
        rows = {r.seq: r for r in conn.execute(sa.text(
            f"SELECT seq, to_char(recorded AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS at, event_type, "
            f'key_id, patient_ref, nonce, body FROM "{tenant_schema(slug)}".audit_event'))}
        key = keys.load(conn, rows[first].key_id)

    def header(row, seq):
        return event_header(log_id=key.log_id, tenant=slug, seq=seq, time=row.at, event_type=row.event_type,
                            key_id=row.key_id, patient_ref=row.patient_ref)

    assert decrypt_body(key.material, header(rows[first], first), rows[first].nonce, rows[first].body)
    with pytest.raises(InvalidTag):  # the same body presented as the second event
        decrypt_body(key.material, header(rows[second], second), rows[first].nonce, rows[first].body)
    assert parse_header(header(rows[first], first))["seq"] == first


def test_if_the_audit_append_fails_the_act_fails_with_it(db, tenant_factory):
    slug = tenant_factory().slug
    schema = f'"{tenant_schema(slug)}"'
    with db.control() as conn:  # the audit insert will now fail, as a full disk or a bug would make it
        conn.exec_driver_sql(f"ALTER TABLE {schema}.audit_event ADD CONSTRAINT broken CHECK (false) NOT VALID")
    try:
        with pytest.raises(audit.AuditError, match="could not be recorded"), db.tenant(slug) as conn:
            conn.execute(sa.text("INSERT INTO ward (code, name, kind) VALUES ('ICU', 'ICU', 'icu')"))
            audit.append(conn, tenant=slug, principal=None, event_type="ward.create", action="C")
    finally:
        with db.control() as conn:
            conn.exec_driver_sql(f"ALTER TABLE {schema}.audit_event DROP CONSTRAINT broken")
    with db.tenant(slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ward WHERE code = 'ICU'")).scalar() == 0


def test_a_forked_process_takes_its_own_sequence_numbers(db, tenant_a):
    # Events are numbered from per-process blocks; a child forked from a process holding a block must
    # not number events from it too, or parent and child would write the same sequence numbers.
    with db.tenant(tenant_a.slug) as conn:
        audit.append(conn, tenant=tenant_a.slug, principal=None, event_type="chart.read", action="R")
    assert audit._blocks.get(tenant_a.slug) is not None  # the parent holds a block
    child = os.fork()
    if child == 0:  # the child reports what it inherited by its exit status, and touches nothing else
        os._exit(0 if audit._blocks == {} and not audit._blocks_lock.locked() else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_refilling_ahead_waits_for_a_connection_before_it_takes_the_block_lock(db, tenant_a):
    # `refill_ahead` and an append that needs a new block each want a connection and the block lock;
    # taken in opposite orders they deadlock on a busy pool. Here the only connection is held by an
    # append that reaches for the lock after the refill has started waiting.
    small = Database(engine=sa.create_engine(db.engine.url, pool_size=1, max_overflow=0, pool_timeout=20))
    slug = tenant_a.slug
    try:
        with small.tenant(slug) as conn:  # the key and a block in memory, as after any append
            audit.append(conn, tenant=slug, principal=None, event_type="chart.read", action="R")
        audit._blocks[slug].seqs.clear()
        holding, go, errors = threading.Event(), threading.Event(), []

        def append_on_the_only_connection() -> None:
            try:
                with small.tenant(slug) as conn:
                    holding.set()
                    go.wait(10)
                    audit.append(conn, tenant=slug, principal=None, event_type="chart.read", action="R")
            except Exception as exc:
                errors.append(exc)

        def refill() -> None:
            try:
                audit.refill_ahead(small, slug)
            except Exception as exc:
                errors.append(exc)

        appender = threading.Thread(target=append_on_the_only_connection)
        appender.start()
        assert holding.wait(10)
        refiller = threading.Thread(target=refill)
        refiller.start()
        time.sleep(0.3)  # the refill is waiting now
        go.set()
        appender.join(15)
        refiller.join(15)
        assert not appender.is_alive() and not refiller.is_alive(), "the append and the refill deadlocked"
        assert errors == [] and audit._blocks[slug].seqs
    finally:
        go.set()
        small.engine.dispose()


def test_an_event_must_be_appended_in_its_own_tenants_transaction(db, tenant_a, tenant_b):
    with pytest.raises(audit.AuditError, match="tenant's transaction"), db.tenant(tenant_a.slug) as conn:
        audit.append(conn, tenant=tenant_b.slug, principal=None, event_type="chart.read", action="R")
    with pytest.raises(audit.AuditError), db.control() as conn:  # no tenant role, no tenant search_path
        audit.append(conn, tenant=tenant_a.slug, principal=None, event_type="chart.read", action="R")


@pytest.mark.parametrize("change", [
    {"event_type": "Chart Read"}, {"action": "X"}, {"outcome": "fine"}, {"purpose_of_use": "because"},
])
def test_malformed_events_are_refused(db, tenant_a, change):
    fields = {"event_type": "chart.read", "action": "R", "outcome": "success", "purpose_of_use": None, **change}
    with pytest.raises(audit.AuditError), db.tenant(tenant_a.slug) as conn:
        audit.append(conn, tenant=tenant_a.slug, principal=None, **fields)


def test_appliance_events_go_to_the_control_log(db):
    with db.control() as conn:
        seq = audit.append(conn, tenant=None, principal=None, event_type="signin", action="E", outcome="failure",
                           detail={"reason": "wrong password"})
    [event] = [e for e in audit.read_events(db, None, first_seq=seq) if e["seq"] == seq]
    assert event["event"]["type"]["code"] == "110114" and event["event"]["outcome"] == "4"
    audit.checkpoint(db, None)
    report = audit.verify(db, None)
    assert report.ok, report.problems


# -- append-only ----------------------------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "UPDATE audit_event SET event_type = 'x'", "DELETE FROM audit_event", "TRUNCATE audit_event",
    "DELETE FROM audit_pending", "UPDATE audit_checkpoint SET tree_size = 0", "DELETE FROM audit_position",
    "INSERT INTO audit_position (position, seq) VALUES (999999, 1)", "INSERT INTO audit_key VALUES ('k', 'l', 99)",
    "SELECT setval('audit_event_seq', 1)",
])
def test_the_tenant_role_can_only_append(db, tenant_a, statement):
    with pytest.raises(sa.exc.ProgrammingError) as refused, db.tenant(tenant_a.slug) as conn:
        conn.exec_driver_sql(statement)
    assert isinstance(refused.value.orig, pg_errors.InsufficientPrivilege)


@pytest.mark.parametrize("statement", [
    'UPDATE {s}.audit_event SET event_type = event_type', "DELETE FROM {s}.audit_event", "TRUNCATE {s}.audit_event",
    "DELETE FROM {s}.audit_checkpoint", "UPDATE {s}.audit_position SET position = position",
    "DELETE FROM control.audit_event", "TRUNCATE control.audit_checkpoint",
])
def test_a_trigger_refuses_changes_even_from_the_owner(db, tenant_factory, statement):
    slug = tenant_factory().slug
    fill(db, slug, (2,))
    with pytest.raises(sa.exc.ProgrammingError, match="append-only"), db.control() as conn:
        conn.exec_driver_sql(statement.format(s=f'"{tenant_schema(slug)}"'))


# -- checkpoints and concurrency ------------------------------------------------------------------


def test_many_writers_at_once_all_reach_the_signed_log(db, tenant_factory):
    slug = tenant_factory().slug
    writers, each = 16, 20
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def checkpointed_meanwhile() -> None:
        # Halfway, the writers wait for the checkpointer's first checkpoint: on a quick machine they could all
        # finish inside its first 20 ms, leaving only the final one (it failed so once in a full run).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with db.control() as conn:
                target = audit._log_of(conn, slug)
                if target is not None and audit._checkpoints(conn, target):
                    return
            time.sleep(0.01)

    halfway = threading.Barrier(writers, action=checkpointed_meanwhile)

    def write(n: int) -> None:
        try:
            start.wait()
            for i in range(each):
                if i == each // 2:
                    halfway.wait()
                with db.tenant(slug) as conn:
                    audit.append(conn, tenant=slug, principal=None, event_type="chart.read", action="R",
                                 patient_id=f"p{n}-{i}")
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    with audit.running_checkpointer(db, interval=0.02, max_age=0.0, batch=1):
        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors
    report = audit.verify(db, slug)
    assert report.ok, report.problems
    assert report.events == writers * each and report.pending == 0
    assert report.checkpoints >= 2  # the checkpointer ran while writers were writing


def test_checkpoint_with_nothing_new_makes_none(db, tenant_factory):
    slug = tenant_factory().slug
    fill(db, slug, (3,))
    assert audit.checkpoint(db, slug) is None
    latest = audit.checkpoint(db, slug, latest=True)
    assert latest is not None and latest.size == 3


def test_the_checkpointer_refuses_to_extend_a_tampered_tree(db, tenant_factory):
    slug = tenant_factory().slug
    fill(db, slug, (3,))
    schema = f'"{tenant_schema(slug)}"'
    with db.control() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {schema}.audit_checkpoint DISABLE TRIGGER USER")
        conn.exec_driver_sql(f"UPDATE {schema}.audit_checkpoint SET edge = sha256(edge)")
        conn.exec_driver_sql(f"ALTER TABLE {schema}.audit_checkpoint ENABLE TRIGGER USER")
    with db.tenant(slug) as conn:
        audit.append(conn, tenant=slug, principal=None, event_type="chart.read", action="R")
    with pytest.raises(audit.AuditIntegrityError):
        audit.checkpoint(db, slug)


leaf_lists = st.lists(st.binary(min_size=0, max_size=8), min_size=1, max_size=70)


@settings(max_examples=60, deadline=None)
@given(leaf_lists, st.data())
def test_export_proofs_are_the_reference_implementations_proofs(data, draw):
    hashes = [merkle.leaf_hash(item) for item in data]
    tree = audit._Tree(hashes)
    size = draw.draw(st.integers(1, len(hashes)))
    index = draw.draw(st.integers(0, size - 1))
    old = draw.draw(st.integers(0, size))
    assert tree.root(0, size) == merkle.root_from_leaf_hashes(hashes[:size])
    assert tree.inclusion(index, size) == merkle.inclusion_proof(hashes[:size], index)
    assert tree.consistency(old, size) == merkle.consistency_proof(hashes[:size], old)


# -- reading back ---------------------------------------------------------------------------------


def test_a_patients_access_log_shows_who_when_what_where_and_break_the_glass(db, tenant_factory):
    config = tenant_factory(name="Kisumu County Referral")
    slug = config.slug
    patient, other = str(uuid.uuid4()), str(uuid.uuid4())
    doctor = clinician(slug, "Dr Amina Otieno")
    stranger = clinician(slug, "Dr Peter Kamau", role="surgeon")
    with db.tenant(slug) as conn:
        audit.append(conn, tenant=slug, principal=doctor, event_type="chart.read", action="R", patient_id=patient,
                     purpose_of_use="TREAT")
        audit.append(conn, tenant=slug, principal=doctor, event_type="chart.read", action="R", patient_id=other)
        audit.append(conn, tenant=slug, principal=stranger, event_type="chart.break_glass", action="R",
                     patient_id=patient, purpose_of_use="ETREAT", detail={"reason": "unconscious in theatre"})
        audit.append(conn, tenant=slug, principal=doctor, event_type="record.note.create", action="C",
                     patient_id=patient)
    entries = audit.patient_access_log(db, slug, patient)
    assert [(e.who["name"], e.action, e.break_the_glass) for e in entries] == [
        ("Dr Amina Otieno", "R", False), ("Dr Peter Kamau", "R", True), ("Dr Amina Otieno", "C", False)]
    glass = entries[1]
    assert glass.reason == "unconscious in theatre" and glass.purpose_of_use == "ETREAT"
    assert glass.who["role"] == "surgeon" and glass.facility == {"tenant": slug, "name": "Kisumu County Referral"}
    assert entries[0].recorded <= entries[1].recorded <= entries[2].recorded
    assert len(audit.patient_access_log(db, slug, other)) == 1
    assert audit.patient_access_log(db, slug, str(uuid.uuid4())) == []


# -- the model matches the migrations -------------------------------------------------------------


def test_audit_tables_are_declared_exactly_as_migrated(db, tenant_a):
    from appliance.substrate.migrate import find_drift

    mine = {"audit_event", "audit_pending", "audit_position", "audit_checkpoint", "audit_key"}
    assert find_drift(db, [tenant_a.slug], audit.tenant_metadata) == []
    control_tables = mine | {"audit_log", "audit_data_key", "audit_regulator_key", "audit_data_key_seal",
                             "audit_signing_key"}
    located = sa.MetaData()
    for table in audit.control_metadata.sorted_tables:
        if table.name in control_tables:
            table.to_metadata(located)

    def only_mine(name, type_, parent_names):
        if type_ == "schema":
            return name == "control"
        if type_ == "table":
            return name in control_tables
        return True

    with db.control() as conn:
        context = MigrationContext.configure(conn, opts={
            "include_schemas": True, "include_name": only_mine, "compare_type": True, "target_metadata": located})
        assert compare_metadata(context, located) == []
