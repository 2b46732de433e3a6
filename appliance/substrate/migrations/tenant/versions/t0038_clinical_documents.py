"""`family_planning`, the detail of the clinical layer's `family_planning` entries (appliance/layers/clinical/models.py,
appliance/layers/clinical/family_planning.py): one family planning visit of a client — a contraceptive method
provided (pills, an injection, an implant or IUD inserted, condoms, a sterilisation, LAM or fertility awareness
taught), its quantity in the method's unit, and whether she is new to the programme, new to the method,
continuing or restarting — or an implant or IUD removed and why, with whether she was counselled. The entry's
time is the day of the visit; its author who provided the service. The method is a code of
policies/family_planning.toml, which gives its unit, class and couple-years of protection.
Nothing in the record held contraception before: the programme every ministry reports to DHIS2 (new acceptors,
the method mix, couple-years of protection) had nothing to count and a nurse no list of clients due for their
next injection. Appended and never rewritten, like every detail table; a correction supersedes the entry.

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
        "family_planning",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("service", sa.Text(), nullable=False),
        sa.Column("quantity", sa.SmallInteger(), nullable=True),
        sa.Column("client_type", sa.Text(), nullable=True),
        sa.Column("removal_reason", sa.Text(), nullable=True),
        sa.Column("counselled", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint("service IN ('provided', 'removal')", name="family_planning_service"),
        sa.CheckConstraint("client_type IN ('new_acceptor', 'new_to_method', 'continuing', 'restart')",
                           name="family_planning_client_type"),
        sa.CheckConstraint("(service = 'provided') = (quantity IS NOT NULL AND client_type IS NOT NULL)",
                           name="family_planning_provided_has_quantity"),
        sa.CheckConstraint("(service = 'removal') = (removal_reason IS NOT NULL)",
                           name="family_planning_removal_reason"),
        sa.CheckConstraint("quantity >= 1", name="family_planning_quantity_positive"),
    )
    # The national count (new acceptors by method, couple-years of protection) reads by method.
    op.create_index("family_planning_method_idx", "family_planning", ["method"])
    # Part of the record: the tenant role appends and reads it, never rewrites or removes it.
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON family_planning FROM %I', current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    op.drop_table("family_planning")
