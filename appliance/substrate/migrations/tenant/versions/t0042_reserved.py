"""Reserved for the blood bank follow-ups: the revision is in the chain so that work landing in parallel keeps one
line of revisions; its tables are added here by the change that builds it.

Revision ID: t0042
Revises: t0041
Create Date: 2026-11-27
"""

revision = "t0042"
down_revision = "t0041"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
