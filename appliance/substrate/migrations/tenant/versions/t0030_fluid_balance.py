"""`fluid`, the detail of the nursing layer's `fluid` entries (appliance/layers/nursing/models.py,
appliance/layers/nursing/fluid.py): one line of a ward's fluid balance chart, a volume taken in (oral, IV,
NG/enteral, a blood product, other) or passed out (urine, vomit, NG aspirate, drain, stool, other) at a time.
Nurses kept it on paper, so nothing added up the day or warned when a patient passed too little urine.
Appended and never rewritten, like every detail table; a correction supersedes the entry. The checks keep a
route to its direction (no "urine" taken in) and a volume to what one line of the chart can hold.

`nursing_setting`, one row, what the tenant file says of the nursing layer (`[nursing]`): the hour the ward's
fluid day starts (07:00 unless the file says otherwise), written by every `tenant apply`; a facility whose
file predates it has no row, and the layer reads 07:00.

Revision ID: t0030
Revises: t0029
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "t0030"
down_revision = "t0029"
branch_labels = None
depends_on = None

INTAKE_ROUTES = ("oral", "iv", "enteral", "blood", "other")
OUTPUT_ROUTES = ("urine", "vomit", "ng_aspirate", "drain", "stool", "other")


def _listed(routes: tuple[str, ...]) -> str:
    return ", ".join(f"'{route}'" for route in routes)


def upgrade() -> None:
    op.create_table(
        "fluid",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("route", sa.Text(), nullable=False),
        sa.Column("volume_ml", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(f"(direction = 'intake' AND route IN ({_listed(INTAKE_ROUTES)})) OR "
                           f"(direction = 'output' AND route IN ({_listed(OUTPUT_ROUTES)}))",
                           name="fluid_route_of_direction"),
        sa.CheckConstraint("volume_ml BETWEEN 1 AND 5000", name="fluid_volume_range"),
    )
    op.create_table(
        "nursing_setting",
        sa.Column("id", sa.SmallInteger(), primary_key=True),
        sa.Column("fluid_day_starts", sa.Time(), nullable=False),
        sa.CheckConstraint("id = 1", name="nursing_setting_one_row"),
    )
    # Part of the record: the tenant role appends and reads it, never rewrites or removes it.
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON fluid FROM %I', current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    op.drop_table("nursing_setting")
    op.drop_table("fluid")
