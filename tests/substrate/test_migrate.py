"""Migrating every tenant schema: no-op when at head, resumable after a failure, drift reported."""

import datetime as dt
import importlib
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import VitalSignsIn
from appliance.substrate import identity
from appliance.substrate.db import Database, tenant_metadata, tenant_schema
from appliance.substrate.migrate import (
    MigrationFailed,
    find_drift,
    head,
    migrate_all,
    schema_revision,
    tenants_behind_head,
)
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import _ensure_role_and_schema, drop_tenant
from tests.layers.clinical.conftest import born_years_ago, new_patient


def test_nothing_to_do_when_every_schema_is_at_head(db: Database, tenant_a, tenant_b):
    report = migrate_all(db, [tenant_a.slug, tenant_b.slug])
    assert report.tenants_changed == []
    assert report.tenants_total == 2


def test_a_failure_names_the_schema_and_a_rerun_resumes(db: Database, tenant_a, tenant_factory):
    blocked = tenant_factory()
    # Take the blocked tenant back to an empty schema with a table squatting on the name the first
    # migration creates, so its migration fails half-way through the run.
    with db.control() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{tenant_schema(blocked.slug)}" CASCADE')
        _ensure_role_and_schema(conn, blocked.slug)
        conn.exec_driver_sql(f'CREATE TABLE "{tenant_schema(blocked.slug)}".bed (squatter int)')

    with pytest.raises(MigrationFailed) as failure:
        migrate_all(db, [tenant_a.slug, blocked.slug])
    assert failure.value.schema == tenant_schema(blocked.slug)
    assert tenants_behind_head(db, [tenant_a.slug, blocked.slug]) == [blocked.slug]

    with db.control() as conn:
        conn.exec_driver_sql(f'DROP TABLE "{tenant_schema(blocked.slug)}".bed')
    report = migrate_all(db, [tenant_a.slug, blocked.slug])
    assert report.tenants_changed == [blocked.slug]
    with db.control() as conn:
        assert schema_revision(conn, tenant_schema(blocked.slug)) == head("tenant")


def test_drift_is_reported_with_the_schema_and_the_difference(db: Database, tenant_a, tenant_factory):
    drifted = tenant_factory()
    assert find_drift(db, [tenant_a.slug, drifted.slug], tenant_metadata) == []
    with db.control() as conn:
        conn.exec_driver_sql(f'ALTER TABLE "{tenant_schema(drifted.slug)}".ward ADD COLUMN hand_made text')
    drifts = find_drift(db, [tenant_a.slug, drifted.slug], tenant_metadata)
    assert [d.schemas for d in drifts] == [[tenant_schema(drifted.slug)]]
    assert any("hand_made" in difference for difference in drifts[0].differences)
    drop_tenant(db, drifted.slug)


def test_control_schema_is_at_head(db: Database):
    with db.control() as conn:
        assert schema_revision(conn, "control") == head("control")
        assert conn.execute(sa.text("SELECT count(*) FROM control.alembic_version")).scalar() == 1


def test_t0021_adds_muac_and_oedema_and_its_downgrade_takes_them_away(db: Database, tenant_a):
    """t0021 (MUAC and oedema on vital signs) runs both ways on a schema at head: the downgrade drops the
    columns and puts t0015's chart function back, the upgrade adds them and the chart function that shows them."""
    t0021 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0021_muac_and_oedema")
    schema = tenant_schema(tenant_a.slug)
    columns = sa.text("SELECT column_name FROM information_schema.columns WHERE table_schema = :schema "
                      "AND table_name = 'vital_signs' AND column_name IN ('muac_mm', 'oedema') ORDER BY 1")
    shows_muac = sa.text("SELECT position('d.muac_mm' IN prosrc) > 0 FROM pg_proc WHERE proname = 'chart_summary' "
                         "AND pronamespace = CAST(:schema AS regnamespace)")
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with Operations.context(MigrationContext.configure(conn)):
            t0021.downgrade()
            downgraded = (conn.execute(columns, {"schema": schema}).scalars().all(),
                          conn.execute(shows_muac, {"schema": schema}).scalar())
            t0021.upgrade()
        upgraded = (conn.execute(columns, {"schema": schema}).scalars().all(),
                    conn.execute(shows_muac, {"schema": schema}).scalar())
    assert downgraded == ([], False)
    assert upgraded == (["muac_mm", "oedema"], True)
    assert find_drift(db, [tenant_a.slug], tenant_metadata) == []


def test_t0024_adds_the_oedema_grade_and_its_checks_and_keeps_the_findings_recorded_before(db: Database, tenant_a):
    """t0024 (the WHO grade of bilateral pitting oedema) runs both ways on a schema at head: a finding recorded
    before keeps its oedema, ungraded; the checks refuse a grade outside 1-3 and a grade without oedema present;
    the downgrade puts t0021's chart function back and the upgrade the one that shows the grade."""
    t0024 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0024_oedema_grade")
    schema = tenant_schema(tenant_a.slug)
    clinician = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Test", tenant=tenant_a.slug,
                          role="clinician")
    with db.tenant(tenant_a.slug) as conn:
        child = new_patient(conn, clinician, birth_date=born_years_ago(2))
        found = service.record_vitals(conn, clinician, child["id"], VitalSignsIn(muac_mm=118, oedema=True))
    columns = sa.text("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = :schema "
                      "AND table_name = 'vital_signs' AND column_name = 'oedema_grade'")
    shows_grade = sa.text("SELECT position('d.oedema_grade' IN prosrc) > 0 FROM pg_proc WHERE proname = "
                          "'chart_summary' AND pronamespace = CAST(:schema AS regnamespace)")
    kept = sa.text("SELECT oedema, oedema_grade FROM vital_signs WHERE entry_id = :id")
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with Operations.context(MigrationContext.configure(conn)):
            t0024.downgrade()
            downgraded = (conn.execute(columns, {"schema": schema}).all(),
                          conn.execute(shows_grade, {"schema": schema}).scalar())
            t0024.upgrade()
        upgraded = (conn.execute(columns, {"schema": schema}).all(),
                    conn.execute(shows_grade, {"schema": schema}).scalar())
        before = tuple(conn.execute(kept, {"id": found["id"]}).one())
        refusals = []
        for change in ("oedema_grade = 4", "oedema = false, oedema_grade = 2", "oedema = NULL, oedema_grade = 1"):
            with pytest.raises(sa.exc.IntegrityError) as refused, conn.begin_nested():
                conn.execute(sa.text(f"UPDATE vital_signs SET {change} WHERE entry_id = :id"), {"id": found["id"]})
            refusals.append(refused.value.orig.diag.constraint_name)
        conn.execute(sa.text("UPDATE vital_signs SET oedema_grade = 3 WHERE entry_id = :id"), {"id": found["id"]})
        graded = tuple(conn.execute(kept, {"id": found["id"]}).one())
    assert downgraded == ([], False)
    assert upgraded == ([("oedema_grade", "smallint")], True)
    assert before == (True, None)
    assert refusals == ["vital_signs_oedema_grade_range", "vital_signs_oedema_grade_is_present",
                        "vital_signs_oedema_grade_is_present"]
    assert graded == (True, 3)
    assert find_drift(db, [tenant_a.slug], tenant_metadata) == []


def test_t0025_adds_the_specimen_receipt_append_only_and_its_downgrade_takes_it_away(db: Database, tenant_a):
    """t0025 (the laboratory's receipt of a specimen) runs both ways on a schema at head, and the tenant role
    may append to the table but neither rewrite nor remove a receipt."""
    t0025 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0025_specimen_receipt")
    schema = tenant_schema(tenant_a.slug)
    exists = sa.text("SELECT to_regclass(:table) IS NOT NULL")
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with Operations.context(MigrationContext.configure(conn)):
            t0025.downgrade()
            downgraded = conn.execute(exists, {"table": f"{schema}.specimen_receipt"}).scalar()
            t0025.upgrade()
        upgraded = conn.execute(exists, {"table": f"{schema}.specimen_receipt"}).scalar()
    assert (downgraded, upgraded) == (False, True)
    assert find_drift(db, [tenant_a.slug], tenant_metadata) == []
    for statement in ("UPDATE specimen_receipt SET note = 'x'", "DELETE FROM specimen_receipt"):
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), db.tenant(tenant_a.slug) as conn:
            conn.execute(sa.text(statement))


def test_t0026_adds_the_immunization_append_only_and_its_downgrade_takes_it_away(db: Database, tenant_a):
    """t0026 (a dose of a vaccine) runs both ways on a schema at head, matches the model, and the tenant role
    may append a dose but neither rewrite nor remove one."""
    t0026 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0026_immunization")
    schema = tenant_schema(tenant_a.slug)
    exists = sa.text("SELECT to_regclass(:table) IS NOT NULL")
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with Operations.context(MigrationContext.configure(conn)):
            t0026.downgrade()
            downgraded = conn.execute(exists, {"table": f"{schema}.immunization"}).scalar()
            t0026.upgrade()
        upgraded = conn.execute(exists, {"table": f"{schema}.immunization"}).scalar()
    assert (downgraded, upgraded) == (False, True)
    assert find_drift(db, [tenant_a.slug], tenant_metadata) == []
    for statement in ("UPDATE immunization SET note = 'x'", "DELETE FROM immunization"):
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), db.tenant(tenant_a.slug) as conn:
            conn.execute(sa.text(statement))


def test_t0029_adds_the_delivery_append_only_and_its_downgrade_takes_it_away(db: Database, tenant_a):
    """t0029 (a birth on the mother's record) runs both ways on a schema at head, matches the model (its checks
    and the index that finds a baby's mother), and the tenant role may append a delivery but neither rewrite nor
    remove one."""
    t0029 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0029_delivery")
    schema = tenant_schema(tenant_a.slug)
    exists = sa.text("SELECT to_regclass(:table) IS NOT NULL")
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with Operations.context(MigrationContext.configure(conn)):
            t0029.downgrade()
            downgraded = conn.execute(exists, {"table": f"{schema}.delivery"}).scalar()
            t0029.upgrade()
        upgraded = conn.execute(exists, {"table": f"{schema}.delivery"}).scalar()
    assert (downgraded, upgraded) == (False, True)
    assert find_drift(db, [tenant_a.slug], tenant_metadata) == []
    for statement in ("UPDATE delivery SET blood_loss_ml = 0", "DELETE FROM delivery"):
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), db.tenant(tenant_a.slug) as conn:
            conn.execute(sa.text(statement))


def test_t0033_adds_the_antenatal_contact_append_only_and_its_downgrade_takes_it_away(db: Database, tenant_a):
    """t0033 (an antenatal care contact on the woman's record) runs both ways on a schema at head, matches the model
    (its checks and the index on the pregnancy), and the tenant role may append a contact but neither rewrite nor
    remove one."""
    t0033 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0033_antenatal_care")
    schema = tenant_schema(tenant_a.slug)
    exists = sa.text("SELECT to_regclass(:table) IS NOT NULL")
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with Operations.context(MigrationContext.configure(conn)):
            t0033.downgrade()
            downgraded = conn.execute(exists, {"table": f"{schema}.antenatal"}).scalar()
            t0033.upgrade()
        upgraded = conn.execute(exists, {"table": f"{schema}.antenatal"}).scalar()
    assert (downgraded, upgraded) == (False, True)
    assert find_drift(db, [tenant_a.slug], tenant_metadata) == []
    for statement in ("UPDATE antenatal SET note = 'x'", "DELETE FROM antenatal"):
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), db.tenant(tenant_a.slug) as conn:
            conn.execute(sa.text(statement))


def test_t0038_adds_documents_append_only_and_its_downgrade_takes_them_away(db: Database, tenant_a):
    """t0038 (documents on the record and their bytes) runs both ways on a schema at head, matches the model, keeps the
    bytes out of line uncompressed, and the tenant role may append but neither rewrite nor remove a document or its
    bytes."""
    t0038 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0038_clinical_documents")
    schema = tenant_schema(tenant_a.slug)
    exists = sa.text("SELECT to_regclass(:table) IS NOT NULL AND to_regclass(:content) IS NOT NULL")
    tables = {"table": f"{schema}.document", "content": f"{schema}.document_content"}
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with Operations.context(MigrationContext.configure(conn)):
            t0038.downgrade()
            downgraded = conn.execute(sa.text("SELECT to_regclass(:table) IS NOT NULL OR to_regclass(:content) IS "
                                              "NOT NULL"), tables).scalar()
            t0038.upgrade()
        upgraded = conn.execute(exists, tables).scalar()
        storage = conn.execute(sa.text("SELECT attstorage FROM pg_attribute WHERE attrelid = to_regclass(:content) "
                                       "AND attname = 'content'"), tables).scalar()
    assert (downgraded, upgraded, storage) == (False, True, "e")
    assert find_drift(db, [tenant_a.slug], tenant_metadata) == []
    for statement in ("UPDATE document SET title = 'x'", "DELETE FROM document", "UPDATE document_content SET size = 1",
                      "DELETE FROM document_content"):
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), db.tenant(tenant_a.slug) as conn:
            conn.execute(sa.text(statement))


def test_t0039_adds_hiv_care_append_only_and_its_downgrade_takes_it_away(db: Database, tenant_a):
    """t0039 (HIV care: the enrolment, regimens, visits, viral loads and the ART number's counter) runs both ways on a
    schema at head, matches the model, and the tenant role may append but neither rewrite nor remove a record, nor
    take the counter back."""
    t0039 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0039_hiv_care")
    # t0043 adds to a table of t0039's: taken off first and put back after, as alembic would step through them.
    t0043 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0043_viral_load_indication")
    schema = tenant_schema(tenant_a.slug)
    tables = ("hiv_care", "hiv_regimen", "hiv_visit", "hiv_viral_load", "hiv_art_sequence")
    present = sa.text("SELECT count(*) FROM unnest(CAST(:names AS text[])) AS n WHERE to_regclass(n) IS NOT NULL")
    names = {"names": [f"{schema}.{t}" for t in tables]}
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with Operations.context(MigrationContext.configure(conn)):
            t0043.downgrade()
            t0039.downgrade()
            downgraded = conn.execute(present, names).scalar()
            t0039.upgrade()
            t0043.upgrade()
        upgraded = conn.execute(present, names).scalar()
    assert (downgraded, upgraded) == (0, len(tables))
    assert find_drift(db, [tenant_a.slug], tenant_metadata) == []
    for statement in (*(f"UPDATE {t} SET note = 'x'" for t in ("hiv_care", "hiv_visit", "hiv_viral_load")),
                      "UPDATE hiv_regimen SET reason = 'x'", *(f"DELETE FROM {t}" for t in tables)):
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), db.tenant(tenant_a.slug) as conn:
            conn.execute(sa.text(statement))


def test_t0040_adds_diet_orders_append_only_and_the_meal_hours_and_its_downgrade_takes_them_away(db: Database,
                                                                                                 tenant_a):
    """t0040 (diet orders, and the meals' hours in the nursing settings) runs both ways on a schema at head, matches
    the model, and the tenant role may append an order but neither rewrite nor remove one."""
    t0040 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0040_diet_orders")
    schema = tenant_schema(tenant_a.slug)
    there = sa.text("SELECT to_regclass(:table) IS NOT NULL AND EXISTS (SELECT 1 FROM information_schema.columns "
                    "WHERE table_schema = :schema AND table_name = 'nursing_setting' AND column_name = 'supper_at')")
    names = {"table": f"{schema}.diet_order", "schema": schema}
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with Operations.context(MigrationContext.configure(conn)):
            t0040.downgrade()
            downgraded = conn.execute(sa.text("SELECT to_regclass(:table) IS NOT NULL"), names).scalar()
            t0040.upgrade()
        upgraded = conn.execute(there, names).scalar()
    assert (downgraded, upgraded) == (False, True)
    assert find_drift(db, [tenant_a.slug], tenant_metadata) == []
    for statement in ("UPDATE diet_order SET note = 'x'", "DELETE FROM diet_order"):
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), db.tenant(tenant_a.slug) as conn:
            conn.execute(sa.text(statement))


def test_t0043_adds_the_viral_loads_indication_and_its_downgrade_takes_it_away(db: Database, tenant_a):
    """t0043 (a viral load's indication, routine or targeted, for TX_PVLS's split) runs both ways on a schema at head
    and matches the model: the column may be empty (a result recorded before it: not documented) and its check
    admits only routine and targeted."""
    t0043 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0043_viral_load_indication")
    schema = tenant_schema(tenant_a.slug)
    columns = sa.text("SELECT data_type, is_nullable FROM information_schema.columns WHERE table_schema = :schema "
                      "AND table_name = 'hiv_viral_load' AND column_name = 'indication'")
    check = sa.text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'hiv_viral_load_indication' "
                    "AND connamespace = CAST(:schema AS regnamespace)")
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with Operations.context(MigrationContext.configure(conn)):
            t0043.downgrade()
            downgraded = (conn.execute(columns, {"schema": schema}).all(),
                          conn.execute(check, {"schema": schema}).all())
            t0043.upgrade()
        upgraded = (conn.execute(columns, {"schema": schema}).all(), conn.execute(check, {"schema": schema}).scalar())
    assert downgraded == ([], [])
    assert upgraded[0] == [("text", "YES")] and "'routine'" in upgraded[1] and "'targeted'" in upgraded[1]
    assert find_drift(db, [tenant_a.slug], tenant_metadata) == []


def test_t0042_adds_the_request_cancellation_and_the_second_checkers_account_and_its_downgrade_takes_them_away(
        db: Database, tenant_a):
    """t0042 (a blood request's cancellation, the bedside check's second person as an account, the facility's day
    of the start, KPI 8's refresh function knowing transfusions) runs both ways on a schema at head and matches the
    model; the old text column stays."""
    t0042 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0042_blood_bank_follow_ups")
    schema = tenant_schema(tenant_a.slug)
    columns = sa.text("SELECT table_name || '.' || column_name FROM information_schema.columns "
                      "WHERE table_schema = :schema AND (table_name, column_name) IN ("
                      "('blood_request', 'cancel_reason'), ('transfusion', 'checked_by_account'), "
                      "('transfusion', 'started_on'), ('transfusion', 'checked_by')) ORDER BY 1")
    counts_blood = sa.text("SELECT position('JOIN transfusion d' IN prosrc) > 0 FROM pg_proc "
                           "WHERE proname = 'charge_capture_refresh' AND pronamespace = CAST(:schema AS regnamespace)")
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with Operations.context(MigrationContext.configure(conn)):
            t0042.downgrade()
            downgraded = (conn.execute(columns, {"schema": schema}).scalars().all(),
                          conn.execute(counts_blood, {"schema": schema}).scalar())
            t0042.upgrade()
        upgraded = (conn.execute(columns, {"schema": schema}).scalars().all(),
                    conn.execute(counts_blood, {"schema": schema}).scalar())
    assert downgraded == (["transfusion.checked_by"], False)
    assert upgraded == (["blood_request.cancel_reason", "transfusion.checked_by", "transfusion.checked_by_account",
                         "transfusion.started_on"], True)
    assert find_drift(db, [tenant_a.slug], tenant_metadata) == []


def test_t0044_refills_the_search_text_without_accents_and_its_downgrade_puts_the_accents_back(
        db: Database, tenant_a, monkeypatch):
    """t0044 (names searched with accents folded) runs both ways on a schema at head, a batch at a time: the
    downgrade puts t0043's lower-cased text back and takes the parts' columns away, the upgrade refills each
    patient's search text folded as a registration now writes it, and the schema matches the model."""
    t0044 = importlib.import_module(
        "appliance.substrate.migrations.tenant.versions.t0044_names_searched_without_accents")
    monkeypatch.setattr(t0044, "BATCH", 1)  # two pages of one patient each, and the empty page that ends them
    schema = tenant_schema(tenant_a.slug)
    clinician = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Test", tenant=tenant_a.slug,
                          role="clinician")
    searched = sa.text("SELECT name_search, given_search, family_search FROM patient WHERE id = ANY(:ids) "
                       "ORDER BY array_position(:ids, id)")
    with db.tenant(tenant_a.slug) as conn:
        ids = [new_patient(conn, clinician, family_name="Müller", given_names="José  Zoë")["id"],
               new_patient(conn, clinician, family_name="Đặng", given_names="Văn")["id"]]
        registered = conn.execute(searched, {"ids": ids}).all()
    names = sa.text("SELECT name_search FROM patient WHERE id = ANY(:ids) ORDER BY array_position(:ids, id)")
    parts = sa.text("SELECT count(*) FROM information_schema.columns WHERE table_schema = :schema "
                    "AND table_name = 'patient' AND column_name IN ('given_search', 'family_search')")
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with Operations.context(MigrationContext.configure(conn)):
            t0044.downgrade()
            downgraded = (conn.execute(names, {"ids": ids}).scalars().all(),
                          conn.execute(parts, {"schema": schema}).scalar())
            t0044.upgrade()
        upgraded = conn.execute(searched, {"ids": ids}).all()
    assert downgraded == (["josé zoë müller", "văn đặng"], 0)
    assert upgraded == registered == [("jose zoe muller", "jose zoe", "muller"), ("van dang", "van", "dang")]
    assert find_drift(db, [tenant_a.slug], tenant_metadata) == []


def test_c0014_rekeys_the_subjects_names_with_stroked_letters_and_its_downgrade_keys_them_as_before(
        db: Database, monkeypatch):
    """c0014 (the demographic key folding đ, ø, æ..., and the national-ID question's answers counted) runs both ways
    on the control schema at head, a batch at a time: the downgrade keys each subject as c0002 to c0013 did and drops
    the answers' table, the upgrade keys them as a registration now does and makes the table again."""
    c0014 = importlib.import_module(
        "appliance.substrate.migrations.control.versions.c0014_identity_letters_and_question_limit")
    born = dt.date(1961, 8, 30)
    with db.control() as conn:
        ids = [identity.match_or_create_subject(conn, family_name=family, given_names=given, birth_date=born,
                                                sex="female").subject_id
               for family, given in (("Østergaard", "Søren"), ("Đặng", "Thị Æsa"), ("Okello", "Grace"))]
        subjects = conn.execute(sa.select(sa.func.count()).select_from(identity.subject)).scalar()
    monkeypatch.setattr(c0014, "BATCH", max(1, subjects // 3))  # three pages or more, and the empty one
    keys = sa.select(identity.subject.c.demographic_key).where(identity.subject.c.id.in_(ids)).order_by(
        sa.func.array_position(ids, identity.subject.c.id))
    answers = sa.text("SELECT to_regclass('control.national_id_answer') IS NOT NULL")
    with db.control() as conn:
        registered = conn.execute(keys).scalars().all()
        with Operations.context(MigrationContext.configure(conn)):
            c0014.downgrade()
            downgraded = (conn.execute(keys).scalars().all(), conn.execute(answers).scalar())
            c0014.upgrade()
        upgraded = (conn.execute(keys).scalars().all(), conn.execute(answers).scalar())
    assert downgraded == (["stergaard|sren|1961-08-30|f", "ang|sa thi|1961-08-30|f", "okello|grace|1961-08-30|f"],
                          False)
    assert upgraded == (registered, True)
    assert registered == ["ostergaard|soren|1961-08-30|f", "dang|aesa thi|1961-08-30|f", "okello|grace|1961-08-30|f"]


def test_c0016_records_disputed_links_and_keeps_their_deaths_and_its_downgrade_refuses_while_one_is_kept(
        db: Database):
    """c0016 (a chart linked over a differing national-ID answer recorded, and a death on it kept to it) runs both ways
    on the control schema at head: the downgrade takes the table, the column and the functions' new answers away, the
    death functions answering as c0010's; the upgrade puts them back. A downgrade while a death is kept to its chart is
    refused with a sentence, nothing changed: before c0016 it would mark the number's holder deceased everywhere."""
    c0016 = importlib.import_module("appliance.substrate.migrations.control.versions.c0016_link_dispute")
    c0017 = importlib.import_module("appliance.substrate.migrations.control.versions.c0017_chart_death")
    shape = sa.text("""SELECT to_regclass('control.subject_link_dispute') IS NOT NULL,
        EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'control'
                AND table_name = 'subject_death' AND column_name = 'confined'),
        pg_get_function_result('control.record_subject_death(uuid, uuid, uuid, timestamptz)'::regprocedure),
        pg_get_function_result('control.subject_death_of(uuid)'::regprocedure) LIKE '%confined boolean%',
        has_function_privilege('public', 'control.subject_death_of(uuid)', 'EXECUTE')""")
    kept = sa.text("INSERT INTO control.subject_death (subject_id, tenant, patient_id, entry_id, died_at, confined) "
                   "VALUES (:s, 'kisumu', :p, :e, now(), true)")

    class RolledBack(Exception):
        """Ends the one transaction all this runs in, so what it set aside and wrote is as it was."""

    with pytest.raises(RolledBack), db.control() as conn, Operations.context(MigrationContext.configure(conn)):
        # Deaths other tests kept to their charts, set aside in this transaction only.
        conn.execute(sa.text("UPDATE control.subject_death SET withdrawn_at = now() "
                             "WHERE confined AND withdrawn_at IS NULL"))
        c0017.downgrade()  # c0016's function back, as at c0016's head
        at_head = conn.execute(shape).one()
        c0016.downgrade()
        downgraded = conn.execute(shape).one()
        c0016.upgrade()
        upgraded = conn.execute(shape).one()
        subject_id = identity.match_or_create_subject(conn, family_name="Wanjiru", given_names="Grace",
                                                      birth_date=dt.date(1990, 6, 3), sex="female").subject_id
        conn.execute(kept, {"s": subject_id, "p": uuid.uuid4(), "e": uuid.uuid4()})
        with pytest.raises(RuntimeError, match="1 death\\(s\\) are kept to a chart whose identity is not confirmed"):
            c0016.downgrade()
        refused = conn.execute(shape).one()
        raise RolledBack
    assert at_head == upgraded == refused == (True, True, "boolean", True, True)
    assert downgraded == (False, False, "void", False, True)


def test_c0017_asks_for_a_death_by_chart_and_its_downgrade_asks_by_person_again(db: Database):
    """c0017 (the death a chart shows, its link to the person considered) runs both ways at head: the downgrade puts
    c0016's function, asked by person, back and takes the chart's away; the upgrade the reverse; each callable by the
    facilities' roles. A tenant's query at head names the chart (appliance/substrate/deaths.py)."""
    c0017 = importlib.import_module("appliance.substrate.migrations.control.versions.c0017_chart_death")
    shape = sa.text("""SELECT to_regprocedure('control.subject_death_of(uuid)') IS NOT NULL,
        to_regprocedure('control.subject_death_of(uuid, uuid)') IS NOT NULL,
        coalesce(has_function_privilege('public', to_regprocedure('control.subject_death_of(uuid, uuid)'), 'EXECUTE'),
                 has_function_privilege('public', to_regprocedure('control.subject_death_of(uuid)'), 'EXECUTE'))""")

    class RolledBack(Exception):
        """Ends the one transaction all this runs in."""

    with pytest.raises(RolledBack), db.control() as conn, Operations.context(MigrationContext.configure(conn)):
        at_head = conn.execute(shape).one()
        c0017.downgrade()
        downgraded = conn.execute(shape).one()
        c0017.upgrade()
        upgraded = conn.execute(shape).one()
        raise RolledBack
    assert at_head == upgraded == (False, True, True)
    assert downgraded == (True, False, True)


def test_t0045_numbers_named_incident_reports_apart_and_its_downgrade_puts_the_identity_back(db: Database, tenant_a):
    """t0045 (named incident reports numbered by a sequence of their own, anonymous ones by none) runs both ways on a
    schema at head: the downgrade numbers the anonymous reports after the highest, in the order reported, and puts
    t0035's identity column back; the upgrade keeps the named reports' numbers, takes the anonymous ones' away and
    starts the named reports' sequence after the highest, which the tenant role draws from; the schema matches the
    model."""
    t0045 = importlib.import_module(
        "appliance.substrate.migrations.tenant.versions.t0045_incident_numbers_for_named_reports")
    schema = tenant_schema(tenant_a.slug)
    named = sa.text("""INSERT INTO incident (id, number, occurred_at, ward_code, incident_type, description, outcome,
        immediate_action, anonymous, reported_by, reporter_name) VALUES (:id, nextval('incident_named_number_seq'),
        now(), 'GEN', 'fall', 'A fall.', 'none', 'Examined.', false, :by, 'Nurse Test') RETURNING number""")
    # Before t0045 (and after its downgrade) every report is numbered by the column itself.
    any_report = sa.text("""INSERT INTO incident (id, occurred_at, ward_code, incident_type, description, outcome,
        immediate_action, anonymous, reported_by, reporter_name) VALUES (:id, now(), 'GEN', 'fall', 'A fall.', 'none',
        'Examined.', :anonymous, :by, :name) RETURNING number""")

    def filed(conn, anonymous: bool, statement=any_report) -> tuple[uuid.UUID, int | None]:
        incident_id = uuid.uuid4()
        number = conn.execute(statement, {"id": incident_id, "anonymous": anonymous,
                                          "by": None if anonymous else uuid.uuid4(),
                                          "name": None if anonymous else "Nurse Test"}).scalar()
        return incident_id, number

    with db.tenant(tenant_a.slug) as conn:
        (_, first), (anonymous, none) = filed(conn, False, named), filed(conn, True)
    column = sa.text("SELECT is_identity, is_nullable FROM information_schema.columns WHERE table_schema = :schema "
                     "AND table_name = 'incident' AND column_name = 'number'")
    number_of = sa.text("SELECT number FROM incident WHERE id = :id")
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with Operations.context(MigrationContext.configure(conn)):
            t0045.downgrade()
            downgraded = (conn.execute(column, {"schema": schema}).one(),
                          conn.execute(number_of, {"id": anonymous}).scalar(), filed(conn, False)[1])
            t0045.upgrade()
        upgraded = (*conn.execute(column, {"schema": schema}).one(),
                    conn.execute(number_of, {"id": anonymous}).scalar())
    with db.tenant(tenant_a.slug) as conn:  # the tenant role, as a report is filed
        after = filed(conn, False, named)[1]
    assert none is None
    # The anonymous report is the last one reported: numbered after every other, as the next named one is after it.
    identity, numbered, named = downgraded
    assert identity == ("YES", "NO") and numbered > first and named == numbered + 1
    assert upgraded == ("NO", "YES", None) and after == named + 1
    assert find_drift(db, [tenant_a.slug], tenant_metadata) == []


def test_t0046_indexes_the_payments_references_for_the_lookup_of_a_code_already_receipted(db: Database, tenant_a):
    """t0046 (payments' references indexed) runs both ways on a schema at head: the downgrade drops the index, the
    upgrade makes it again, the schema matches the model, and the financial layer's lookup of a code already on a
    receipt is one the index answers (its expression is the index's, its reference never null)."""
    from appliance.layers.financial.service import _SAME_TRANSACTION_CODE

    t0046 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0046_payment_reference_lookup")
    schema = tenant_schema(tenant_a.slug)
    indexed = sa.text("SELECT count(*) FROM pg_indexes WHERE schemaname = :schema AND tablename = 'payment' "
                      "AND indexname = 'payment_reference_idx'")
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with Operations.context(MigrationContext.configure(conn)):
            t0046.downgrade()
            downgraded = conn.execute(indexed, {"schema": schema}).scalar()
            t0046.upgrade()
        upgraded = conn.execute(indexed, {"schema": schema}).scalar()
    with db.tenant(tenant_a.slug) as conn:
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))  # a test's few payments are read faster whole
        plan = "\n".join(conn.execute(sa.text(f"EXPLAIN {_SAME_TRANSACTION_CODE.text}"),
                                      {"code": "QK7TWICE01", "method": "mobile_money"}).scalars())
    assert (downgraded, upgraded) == (0, 1)
    assert "payment_reference_idx" in plan, plan
    assert find_drift(db, [tenant_a.slug], tenant_metadata) == []


def test_t0047_adds_returns_append_only_and_the_ledgers_kinds_and_its_downgrade_takes_them_away(db: Database,
                                                                                                tenant_a):
    """t0047 (medicine brought back to the pharmacy: its detail table, the ledger's returned and quarantined rows,
    KPI 8's refresh function reading a dispense brought back whole as no longer billable) runs both ways on a schema
    at head and matches the model; the tenant role may append a return but neither rewrite nor remove one, and a
    ledger row of a kind t0046 did not know is refused after the downgrade."""
    t0047 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0047_pharmacy_returns")
    schema = tenant_schema(tenant_a.slug)
    state = sa.text("SELECT to_regclass(:table) IS NOT NULL, (SELECT position('dispense_return' IN prosrc) > 0 "
                    "FROM pg_proc WHERE proname = 'charge_capture_refresh' AND pronamespace = CAST(:schema AS "
                    "regnamespace)), (SELECT pg_get_constraintdef(oid) LIKE '%quarantined%' FROM pg_constraint "
                    "WHERE conname = 'stock_movement_kind_known' AND connamespace = CAST(:schema AS regnamespace))")
    names = {"table": f"{schema}.dispense_return", "schema": schema}
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with Operations.context(MigrationContext.configure(conn)):
            t0047.downgrade()
            downgraded = tuple(conn.execute(state, names).one())
            t0047.upgrade()
        upgraded = tuple(conn.execute(state, names).one())
    assert (downgraded, upgraded) == ((False, False, False), (True, True, True))
    assert find_drift(db, [tenant_a.slug], tenant_metadata) == []
    for statement in ("UPDATE dispense_return SET reason = 'x'", "DELETE FROM dispense_return"):
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), db.tenant(tenant_a.slug) as conn:
            conn.execute(sa.text(statement))


def test_t0049_adds_the_expected_discharge_date_append_only_and_its_downgrade_takes_it_away(db: Database, tenant_a):
    """t0049 (an admission's expected discharge date: its detail table, the stay's current date and entry, the open
    stays' index by ward and date) runs both ways on a schema at head and matches the model; the tenant role may
    append a date but neither rewrite nor remove one."""
    t0049 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0049_expected_discharge_date")
    schema = tenant_schema(tenant_a.slug)
    state = sa.text("SELECT to_regclass(:table) IS NOT NULL, (SELECT count(*) FROM information_schema.columns WHERE "
                    "table_schema = :schema AND table_name = 'inpatient_stay' AND column_name LIKE 'expected%'), "
                    "to_regclass(:index) IS NOT NULL")
    names = {"table": f"{schema}.expected_discharge", "schema": schema,
             "index": f"{schema}.inpatient_stay_open_expected_idx"}
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with Operations.context(MigrationContext.configure(conn)):
            t0049.downgrade()
            downgraded = tuple(conn.execute(state, names).one())
            t0049.upgrade()
        upgraded = tuple(conn.execute(state, names).one())
    assert (downgraded, upgraded) == ((False, 0, False), (True, 2, True))
    assert find_drift(db, [tenant_a.slug], tenant_metadata) == []
    for statement in ("UPDATE expected_discharge SET note = 'x'", "DELETE FROM expected_discharge"):
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), db.tenant(tenant_a.slug) as conn:
            conn.execute(sa.text(statement))


def test_t0050_lets_a_completed_transfusion_hold_a_reaction_and_its_downgrade_puts_the_old_rule_back(
        db: Database, tenant_a):
    """t0050 (a transfusion reaction noticed after the unit finished: its onset and severity, the stopped-for-a-
    reaction rule relaxed to 'stopped only for a reaction', a reaction on a completed transfusion saying when and how
    severe) runs both ways on a schema at head and matches the model."""
    t0050 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0050_transfusion_late_reaction")
    schema = tenant_schema(tenant_a.slug)
    state = sa.text("SELECT (SELECT count(*) FROM information_schema.columns WHERE table_schema = :schema AND "
                    "table_name = 'transfusion' AND column_name LIKE 'reaction\\_%' AND column_name <> "
                    "'reaction_note'), (SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_namespace n "
                    "ON n.oid = c.connamespace WHERE n.nspname = :schema AND c.conname = "
                    "'transfusion_stopped_by_reaction')")
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with Operations.context(MigrationContext.configure(conn)):
            t0050.downgrade()
            downgraded = tuple(conn.execute(state, {"schema": schema}).one())
            t0050.upgrade()
        upgraded = tuple(conn.execute(state, {"schema": schema}).one())
    # Before: stopped if and only if a reaction; after: stopped only for a reaction.
    assert downgraded[0] == 0 and downgraded[1].startswith("CHECK (((status = 'stopped'::text) = ")
    assert upgraded[0] == 2 and upgraded[1].startswith("CHECK (((status <> 'stopped'::text) OR ")


def test_t0051_keeps_weights_to_the_gram_and_the_ones_recorded_before_and_its_downgrade_refuses_grams(
        db: Database, tenant_a):
    """t0051 (vital signs' weight to the gram) runs both ways on a schema at head and matches the model: a weight
    recorded before keeps its value, a newborn's 1450 g is kept as 1.450 kg, and the downgrade refuses a schema
    holding a weight finer than 0.1 kg rather than round it away."""
    t0051 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0051_weight_to_the_gram")
    schema = tenant_schema(tenant_a.slug)
    clinician = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Test", tenant=tenant_a.slug,
                          role="clinician")
    with db.tenant(tenant_a.slug) as conn:
        adult = new_patient(conn, clinician, birth_date=born_years_ago(40))
        before = service.record_vitals(conn, clinician, adult["id"], VitalSignsIn(weight_kg=Decimal("72.5")))
    column = sa.text("SELECT numeric_precision, numeric_scale FROM information_schema.columns WHERE table_schema = "
                     ":schema AND table_name = 'vital_signs' AND column_name = 'weight_kg'")
    weight = sa.text("SELECT weight_kg FROM vital_signs WHERE entry_id = :id")
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with Operations.context(MigrationContext.configure(conn)):
            t0051.downgrade()
            downgraded = tuple(conn.execute(column, {"schema": schema}).one())
            t0051.upgrade()
        upgraded = tuple(conn.execute(column, {"schema": schema}).one())
        kept_before = conn.execute(weight, {"id": before["id"]}).scalar()
    with db.tenant(tenant_a.slug) as conn:
        baby = new_patient(conn, clinician, birth_date=dt.date.today())
        newborn = service.record_vitals(conn, clinician, baby["id"], VitalSignsIn(weight_kg=Decimal("1.450")))
    with db.control() as conn:
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with (Operations.context(MigrationContext.configure(conn)),
              pytest.raises(sa.exc.DBAPIError, match="weights to the gram"), conn.begin_nested()):
            t0051.downgrade()
        kept_newborn = conn.execute(weight, {"id": newborn["id"]}).scalar()
        still = tuple(conn.execute(column, {"schema": schema}).one())
    assert (downgraded, upgraded, still) == ((5, 1), (6, 3), (6, 3))
    assert (kept_before, kept_newborn) == (Decimal("72.5"), Decimal("1.450"))
    assert str(kept_newborn) == "1.450"
    assert find_drift(db, [tenant_a.slug], tenant_metadata) == []
