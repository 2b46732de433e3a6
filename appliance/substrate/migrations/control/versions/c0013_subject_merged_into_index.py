"""An index on `control.subject.merged_into`, for finding every subject merged into a person.

Following a merge downwards (the subjects merged into a survivor) is how one identity is read whole: the portal's
records of a person (`identity.subject_ids_resolving_to`), and, since c0010 and c0011, the death mark every
encounter, admission and booking checks (`control.subject_death_of`) and the referral functions. Without an
index each of those walks read the whole of `control.subject` — every person the appliance knows, a country's
population on a ministry's appliance — once per new encounter. Merges are rare, so the index is partial: it holds
only the merged subjects, and a person never merged costs one probe of a small index.

Revision ID: c0013
Revises: c0012
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "c0013"
down_revision = "c0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("subject_merged_into_idx", "subject", ["merged_into"], schema="control",
                    postgresql_where=sa.text("merged_into IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("subject_merged_into_idx", table_name="subject", schema="control")
