"""The one record: append, supersede, retract, history, reactions and the audit seam, on real tenant
schemas. PostgreSQL itself refuses to rewrite or remove an entry."""

import uuid

import pytest
import sqlalchemy as sa
from psycopg import errors as pg_errors

from appliance.substrate import record
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal

AUTHOR = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Record")
# `note` is the clinical layer's kind with a typed detail table; `test_marker` has no detail.
record.register_kind("test_marker", None)


def a_note(text: str) -> dict:
    return {"template_code": None, "title": "Progress note", "fields": {}, "text": text}


def test_append_writes_the_entry_and_its_detail_in_the_callers_transaction(db: Database, tenant_a):
    patient_id = uuid.uuid4()
    with db.tenant(tenant_a.slug) as conn:
        appended = record.append(conn, AUTHOR, "note", patient_id=patient_id, detail=a_note("Feels better."))
        stored = record.get_entry(conn, appended.id)
    assert stored.kind == "note" and stored.status == "final" and stored.root_id == appended.id
    assert stored.author_id == AUTHOR.account_id and stored.patient_id == patient_id
    assert stored.detail["text"] == "Feels better."
    assert stored.recorded_at is not None and stored.occurred_at is not None

    # An exception after the append leaves nothing behind: the entry shares the caller's transaction.
    doomed = uuid.uuid4()
    with pytest.raises(RuntimeError), db.tenant(tenant_a.slug) as conn:
        record.append(conn, AUTHOR, "note", patient_id=patient_id, detail=a_note("never"), entry_id=doomed)
        raise RuntimeError("the request failed after the write")
    with db.tenant(tenant_a.slug) as conn, pytest.raises(record.EntryNotFound):
        record.get_entry(conn, doomed)


def test_a_correction_supersedes_and_both_versions_stay_readable(db: Database, tenant_a):
    patient_id = uuid.uuid4()
    with db.tenant(tenant_a.slug) as conn:
        first = record.append(conn, AUTHOR, "note", patient_id=patient_id, detail=a_note("BP 190/100"))
    with db.tenant(tenant_a.slug) as conn:
        second = record.append(conn, AUTHOR, "note", patient_id=patient_id, detail=a_note("BP 140/90"),
                               supersedes=first.id, reason="transcription error")
        versions = record.history(conn, first.id)
        assert [v.id for v in versions] == [first.id, second.id]
        assert [v.detail["text"] for v in versions] == ["BP 190/100", "BP 140/90"]
        assert second.status == "amended" and second.root_id == first.id and second.reason == "transcription error"
        assert not record.is_current(conn, first.id) and record.is_current(conn, second.id)
        assert record.get_entry(conn, first.id).detail["text"] == "BP 190/100"  # the old content is intact


def test_only_the_current_version_can_be_corrected(db: Database, tenant_a):
    patient_id = uuid.uuid4()
    with db.tenant(tenant_a.slug) as conn:
        first = record.append(conn, AUTHOR, "note", patient_id=patient_id, detail=a_note("v1"))
        record.append(conn, AUTHOR, "note", patient_id=patient_id, detail=a_note("v2"), supersedes=first.id)
    with pytest.raises(record.NotCurrent), db.tenant(tenant_a.slug) as conn:
        record.append(conn, AUTHOR, "note", patient_id=patient_id, detail=a_note("v2 bis"), supersedes=first.id)
    with pytest.raises(record.RecordError, match="another record"), db.tenant(tenant_a.slug) as conn:
        record.append(conn, AUTHOR, "note", patient_id=uuid.uuid4(), detail=a_note("x"),
                      supersedes=record.history(conn, first.id)[-1].id)


def test_two_concurrent_corrections_of_one_version_cannot_both_land(db: Database, tenant_a):
    """Both see the version as current; the unique successor index refuses the second at commit time."""
    patient_id = uuid.uuid4()
    with db.tenant(tenant_a.slug) as conn:
        first = record.append(conn, AUTHOR, "note", patient_id=patient_id, detail=a_note("v1"))
    with db.tenant(tenant_a.slug) as one:
        record.append(one, AUTHOR, "note", patient_id=patient_id, detail=a_note("by one"), supersedes=first.id)
        with pytest.raises(record.NotCurrent), db.tenant(tenant_a.slug) as other:
            # `other` cannot see `one`'s uncommitted row, so it waits on the index, then loses.
            other.execute(sa.text("SET LOCAL lock_timeout = '200ms'"))
            try:
                record.append(other, AUTHOR, "note", patient_id=patient_id, detail=a_note("by other"),
                              supersedes=first.id)
            except sa.exc.OperationalError as exc:  # still waiting when the timeout fired
                assert isinstance(exc.orig, pg_errors.LockNotAvailable)
                raise record.NotCurrent("lost the race") from exc
    with db.tenant(tenant_a.slug) as conn:
        assert [v.detail["text"] for v in record.history(conn, first.id)] == ["v1", "by one"]


def test_entered_in_error_is_a_new_entry_and_deletes_nothing(db: Database, tenant_a):
    patient_id = uuid.uuid4()
    with db.tenant(tenant_a.slug) as conn:
        wrong = record.append(conn, AUTHOR, "note", patient_id=patient_id, detail=a_note("wrong patient"))
        retraction = record.retract(conn, AUTHOR, wrong.id, "written on the wrong chart")
        versions = record.history(conn, wrong.id)
    assert retraction.status == "entered_in_error" and retraction.supersedes == wrong.id
    assert [v.status for v in versions] == ["final", "entered_in_error"]
    assert versions[0].detail["text"] == "wrong patient" and versions[1].detail == {}
    with pytest.raises(record.RecordError, match="reason"), db.tenant(tenant_a.slug) as conn:
        record.retract(conn, AUTHOR, wrong.id, "  ")
    with pytest.raises(record.NotCurrent), db.tenant(tenant_a.slug) as conn:
        record.retract(conn, AUTHOR, retraction.id, "retracting the retraction")


@pytest.mark.parametrize("statement", [
    "UPDATE entry SET status = 'final'",
    "DELETE FROM entry",
    "UPDATE note SET text = 'rewritten'",
    "DELETE FROM note",
    "TRUNCATE entry CASCADE",
])
def test_postgresql_refuses_the_tenant_role_any_rewrite_of_the_record(db: Database, tenant_a, statement):
    with db.tenant(tenant_a.slug) as conn:
        record.append(conn, AUTHOR, "note", patient_id=uuid.uuid4(), detail=a_note("permanent"))
    with pytest.raises(sa.exc.ProgrammingError) as refused, db.tenant(tenant_a.slug) as conn:
        conn.execute(sa.text(statement))
    assert isinstance(refused.value.orig, pg_errors.InsufficientPrivilege)


def test_reactions_run_in_the_same_transaction_and_a_failing_one_undoes_the_act(db: Database, tenant_a):
    seen: list[record.Entry] = []

    def follow_up(conn, principal, appended):
        seen.append(appended)
        # A reaction writes its own entry, pointing at the one it reacts to (as a charge would).
        record.append(conn, principal, "test_marker", patient_id=appended.patient_id,
                      encounter_id=appended.encounter_id)

    record.register_reaction("note", follow_up)
    try:
        patient_id = uuid.uuid4()
        with db.tenant(tenant_a.slug) as conn:
            appended = record.append(conn, AUTHOR, "note", patient_id=patient_id, detail=a_note("reacted to"))
            kinds = conn.execute(sa.select(record.entry.c.kind).where(record.entry.c.patient_id == patient_id)
                                 .order_by(record.entry.c.kind)).scalars().all()
        assert seen[-1].id == appended.id and seen[-1].detail["text"] == "reacted to"
        assert kinds == ["note", "test_marker"]
    finally:
        record.unregister_reaction("note", follow_up)

    def refuse(conn, principal, appended):
        raise ValueError("the financial layer cannot price this")

    record.register_reaction("note", refuse)
    try:
        patient_id = uuid.uuid4()
        with pytest.raises(ValueError, match="cannot price"), db.tenant(tenant_a.slug) as conn:
            record.append(conn, AUTHOR, "note", patient_id=patient_id, detail=a_note("unpriceable"))
        with db.tenant(tenant_a.slug) as conn:
            left = conn.execute(sa.select(sa.func.count()).where(record.entry.c.patient_id == patient_id)).scalar()
        assert left == 0
    finally:
        record.unregister_reaction("note", refuse)


def test_every_write_passes_the_audit_seam(db: Database, tenant_a):
    noted: list[tuple] = []

    def hook(conn, principal, action, patient_id, entity_kind, entity_ids):
        noted.append((principal.account_id, action, patient_id, entity_kind, entity_ids))

    record.register_access_hook(hook)
    try:
        patient_id = uuid.uuid4()
        with db.tenant(tenant_a.slug) as conn:
            first = record.append(conn, AUTHOR, "note", patient_id=patient_id, detail=a_note("a"))
            second = record.append(conn, AUTHOR, "note", patient_id=patient_id, detail=a_note("b"),
                                   supersedes=first.id)
            gone = record.retract(conn, AUTHOR, second.id, "duplicate")
            bulk = record.append_many(conn, AUTHOR, [record.NewEntry("note", patient_id, a_note(t)) for t in "xy"])
    finally:
        record.unregister_access_hook(hook)
    assert noted == [
        (AUTHOR.account_id, "create", patient_id, "note", (first.id,)),
        (AUTHOR.account_id, "amend", patient_id, "note", (second.id,)),
        (AUTHOR.account_id, "retract", patient_id, "note", (gone.id,)),
        (AUTHOR.account_id, "create", patient_id, "note", tuple(e.id for e in bulk)),
    ]


def test_bulk_append_writes_the_same_rows_as_append(db: Database, tenant_a):
    patient_id = uuid.uuid4()
    with db.tenant(tenant_a.slug) as conn:
        bulk = record.append_many(conn, AUTHOR, [record.NewEntry("note", patient_id, a_note(f"n{i}"))
                                                 for i in range(50)])
        stored = [record.get_entry(conn, e.id) for e in bulk]
    assert [s.detail["text"] for s in stored] == [f"n{i}" for i in range(50)]
    assert all(s.root_id == s.id and s.status == "final" and s.author_id == AUTHOR.account_id for s in stored)


def test_bulk_append_keeps_every_rows_columns_when_rows_name_different_ones(db: Database, tenant_a):
    patient_id = uuid.uuid4()
    partial = {k: v for k, v in a_note("no template").items() if k != "template_code"}
    with db.tenant(tenant_a.slug) as conn:
        bulk = record.append_many(conn, AUTHOR, [record.NewEntry("note", patient_id, partial),
                                                 record.NewEntry("note", patient_id, a_note("SOAP") | {
                                                     "template_code": "SOAP"})])
        stored = [record.get_entry(conn, e.id).detail for e in bulk]
    assert [(d["text"], d["template_code"]) for d in stored] == [("no template", None), ("SOAP", "SOAP")]


def test_ids_are_random_uuids_and_unknown_kinds_are_refused(db: Database, tenant_a):
    with db.tenant(tenant_a.slug) as conn:
        ids = [record.append(conn, AUTHOR, "test_marker", patient_id=None).id for _ in range(3)]
        assert all(i.version == 4 for i in ids)
        with pytest.raises(record.UnknownKind, match="no_such_kind"):
            record.append(conn, AUTHOR, "no_such_kind", patient_id=None)


def test_a_tenant_never_sees_another_tenants_entries(db: Database, tenant_a, tenant_b):
    with db.tenant(tenant_a.slug) as conn:
        mine = record.append(conn, AUTHOR, "note", patient_id=uuid.uuid4(), detail=a_note("tenant a only"))
    with db.tenant(tenant_b.slug) as conn, pytest.raises(record.EntryNotFound):
        record.get_entry(conn, mine.id)


def test_an_append_records_one_event_under_the_current_key_even_just_after_a_rotation(db: Database, tenant_factory):
    """The entry, its detail and its audit event go in one statement, sealed under the key this process
    last saw; a rotation in between (by another process: nothing here is told) makes that statement
    insert no event, and the event is sealed again under the new key — once, and the log verifies."""
    from appliance.substrate import audit

    slug = tenant_factory().slug
    patient_id = uuid.uuid4()
    with db.tenant(slug) as conn:
        record.append(conn, AUTHOR, "note", patient_id=patient_id, detail=a_note("first key"))
    new_key = audit.rotate_key(db, slug)
    with db.tenant(slug) as conn:
        after = record.append(conn, AUTHOR, "note", patient_id=patient_id, detail=a_note("second key"))
    events = audit.read_events(db, slug)
    about = [e for e in events if str(after.id) in e["event"]["entity"][1]["ids"]]
    assert len(about) == 1 and about[0]["key"] == new_key.key_id
    assert [e["type"] for e in events] == ["record.note.create"] * 2
    assert audit.checkpoint(db, slug) is not None
    report = audit.verify(db, slug, decrypt=True)
    assert report.decrypted == 2 and not report.problems
