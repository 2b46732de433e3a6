"""The blood bank's follow-ups (appliance/layers/clinical/blood.py, appliance/layers/nursing/transfusion.py):

- `blood_request.cancel_reason`: a request is cancelled (the operation called off, the patient no longer needs the
  units) by a new version of its entry carrying why; NULL is a request still open. The units reserved for it go back
  to stock by `released` events whose reason says so.
- `transfusion.checked_by_account`: the second person of the bedside check, now a staff account of the facility
  (the control schema's `account.id`; no foreign key crosses schemas). Rows written before keep it NULL and their
  `checked_by` text as it was typed (a name and a staff ID); rows written from now on carry both, the text being the
  account's name at the time of the check.
- `transfusion.started_on`: the facility's own day when the unit was hung, on which the unit's expiry was judged
  (a unit expiring on the 28th is not hung at 01:00 on the 29th in Nairobi, still the 28th in UTC). NULL on rows
  written before, judged then on the UTC day.

Revision ID: t0042
Revises: t0041
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "t0042"
down_revision = "t0041"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("blood_request", sa.Column("cancel_reason", sa.Text(), nullable=True))
    op.add_column("transfusion", sa.Column("checked_by_account", sa.Uuid(), nullable=True))
    op.add_column("transfusion", sa.Column("started_on", sa.Date(), nullable=True))


def downgrade() -> None:
    # A cancelled request reads as open again without its column; the version's reason still says it was cancelled.
    op.drop_column("transfusion", "started_on")
    op.drop_column("transfusion", "checked_by_account")
    op.drop_column("blood_request", "cancel_reason")
