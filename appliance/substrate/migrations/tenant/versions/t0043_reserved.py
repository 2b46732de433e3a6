"""Reserved for the death record retraction: the revision is in the chain so that work landing in parallel keeps one
line of revisions; its tables are added here by the change that builds it.

Revision ID: t0043
Revises: t0042
Create Date: 2026-11-27
"""

revision = "t0043"
down_revision = "t0042"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
