"""`document` and `document_content`, the clinical layer's documents on the patient's record
(appliance/layers/clinical/models.py, appliance/layers/clinical/documents.py): a referral letter, a signed consent form,
an ECG strip, an outside result, a photograph of a wound, scanned or photographed and uploaded. Nothing held paper
before: what arrived on it stayed in a folder beside the chart.

`document` is the entry's detail (category, title, the day on the document, which bytes); `document_content` holds
the bytes once, keyed by their SHA-256 (with their SHA-1, base64, which FHIR R4's Attachment.hash carries), so a
correction that only retitles a scan points at the same bytes rather than copying megabytes, and `record.history`
(which reads every detail column) never drags the bytes along.

The bytes live in the tenant's schema, so the backup (pg_dump of the schema) carries them and dropping the
tenant (DROP SCHEMA ... CASCADE) takes them: no file on disk outside the database. Their column is STORAGE
EXTERNAL: out of line in TOAST, uncompressed. PDF, JPEG and PNG, the only types taken, are compressed already;
pglz would spend CPU on every upload to find that out and store them as they are.

Both are appended and never rewritten, as every detail table is: a better scan is a new version superseding the
entry; a document on the wrong patient is marked entered in error and its bytes stay, no longer served.

Revision ID: t0038
Revises: t0037
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "t0038"
down_revision = "t0037"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "document_content",
        sa.Column("sha256", sa.Text(), primary_key=True),
        sa.Column("sha1_base64", sa.Text(), nullable=False),
        sa.Column("media_type", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="document_content_sha256_hex"),
        sa.CheckConstraint("media_type IN ('application/pdf', 'image/jpeg', 'image/png')",
                           name="document_content_media_type"),
        sa.CheckConstraint("size = octet_length(content) AND size BETWEEN 1 AND 10485760",
                           name="document_content_size"),
    )
    op.execute(sa.text("ALTER TABLE document_content ALTER COLUMN content SET STORAGE EXTERNAL"))
    op.create_table(
        "document",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("document_date", sa.Date(), nullable=True),
        sa.Column("content_sha256", sa.Text(), sa.ForeignKey("document_content.sha256"), nullable=False),
        sa.CheckConstraint("category IN ('referral_letter', 'consent_form', 'ecg', 'outside_result', "
                           "'outside_imaging', 'identity_document', 'clinical_photograph', 'other')",
                           name="document_category"),
    )
    op.create_index("document_content_sha256_idx", "document", ["content_sha256"])
    # Part of the record: the tenant role appends and reads them, never rewrites or removes them.
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON document, document_content FROM %I',
                               current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    op.drop_table("document")
    op.drop_table("document_content")
