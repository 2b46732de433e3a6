"""The chart summary kept per patient between changes: `chart_document(p_patient uuid)` returns what
`chart_summary` (t0007) returns, from `chart_document` when nothing the chart shows has changed since
it was made, computing and keeping it otherwise.

Why: the summary is nine queries over the record (~1–1.5 ms of PostgreSQL CPU per read, bench/chart.py),
while a patient's chart is opened many times between two changes to it. Staleness is ruled out by the
database, not by the code paths that write: statement triggers on every table the summary reads
(`entry` — every clinical fact, and its detail rows come in the same transaction — `encounter`,
`patient`, `patient_identifier`) bump the patient's row in `chart_version`, and a kept document is used
only while its version is the patient's current one. The version is read before the summary is
computed, so a document is never labelled newer than what it shows; a writer committing in between
makes it look older, and the next read recomputes. The summary reads no clock, so a document goes stale
only by a write. A read inside a writing transaction sees that transaction's own version and keeps (or
rolls back) its document with it.

Revision ID: t0009
Revises: t0008
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "t0009"
down_revision = "t0008"
branch_labels = None
depends_on = None

# (table, column holding the patient id, events): one statement trigger per event, because PostgreSQL
# allows transition tables only on single-event triggers.
TOUCHED_BY = [
    ("entry", "patient_id", ("INSERT",)),
    ("encounter", "patient_id", ("INSERT", "UPDATE")),
    ("patient", "id", ("UPDATE",)),
    ("patient_identifier", "patient_id", ("INSERT", "UPDATE", "DELETE")),
]

DOCUMENT_FUNCTION = """
CREATE FUNCTION chart_document(p_patient uuid) RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
    current_version bigint;
    document text;
BEGIN
    SELECT v.version INTO current_version FROM chart_version v WHERE v.patient_id = p_patient;
    current_version := coalesce(current_version, 0);
    SELECT d.document INTO document FROM chart_document d
     WHERE d.patient_id = p_patient AND d.version = current_version;
    IF FOUND THEN
        RETURN document;
    END IF;
    document := chart_summary(p_patient);
    IF document NOT LIKE '{"patient" : null%' THEN
        INSERT INTO chart_document AS kept (patient_id, version, document)
        VALUES (p_patient, current_version, document)
        ON CONFLICT (patient_id) DO UPDATE SET version = excluded.version, document = excluded.document
        WHERE kept.version < excluded.version;
    END IF;
    RETURN document;
END
$fn$
"""


def _touch_function(column: str) -> str:
    # Patients in id order, so two transactions touching the same patients lock them in one order.
    return f"""
CREATE FUNCTION chart_touch_by_{column}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO chart_version AS v (patient_id, version)
    SELECT DISTINCT t.{column}, 1 FROM touched t WHERE t.{column} IS NOT NULL ORDER BY 1
    ON CONFLICT (patient_id) DO UPDATE SET version = v.version + 1;
    RETURN NULL;
END
$fn$
"""  # noqa: S608 -- composed from this revision's constants


def upgrade() -> None:
    op.create_table("chart_version",
                    sa.Column("patient_id", sa.Uuid(), primary_key=True),
                    sa.Column("version", sa.BigInteger(), nullable=False))
    op.create_table("chart_document",
                    sa.Column("patient_id", sa.Uuid(), primary_key=True),
                    sa.Column("version", sa.BigInteger(), nullable=False),
                    sa.Column("document", sa.Text(), nullable=False))
    for column in sorted({column for _, column, _ in TOUCHED_BY}):
        op.execute(_touch_function(column))
    for table, column, events in TOUCHED_BY:
        for event in events:
            transition = "OLD" if event == "DELETE" else "NEW"
            op.execute(f"CREATE TRIGGER {table}_chart_touch_{event.lower()} AFTER {event} ON {table} "
                       f"REFERENCING {transition} TABLE AS touched FOR EACH STATEMENT "
                       f"EXECUTE FUNCTION chart_touch_by_{column}()")
    op.execute(DOCUMENT_FUNCTION)
    op.execute("REVOKE ALL ON FUNCTION chart_document(uuid) FROM PUBLIC")
    bind = op.get_bind()
    role = bind.execute(sa.text("SELECT rolname FROM pg_roles WHERE rolname = current_schema()")).scalar()
    if role is not None:
        quoted = bind.dialect.identifier_preparer.quote_identifier(role)
        # A cache, not the record: the tenant role writes and rewrites it (triggers run as the writer).
        op.execute(f"GRANT SELECT, INSERT, UPDATE ON chart_version, chart_document TO {quoted}")
        op.execute(f"GRANT EXECUTE ON FUNCTION chart_document(uuid) TO {quoted}")


def downgrade() -> None:
    for table, _, events in TOUCHED_BY:
        for event in events:
            op.execute(f"DROP TRIGGER {table}_chart_touch_{event.lower()} ON {table}")
    for column in sorted({column for _, column, _ in TOUCHED_BY}):
        op.execute(f"DROP FUNCTION chart_touch_by_{column}()")
    op.execute("DROP FUNCTION chart_document(uuid)")
    op.drop_table("chart_document")
    op.drop_table("chart_version")
