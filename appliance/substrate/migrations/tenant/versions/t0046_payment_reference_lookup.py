"""A transaction reference found by an index (financial layer, service.py): taking a mobile-money or card payment
asks whether its code is already on a receipt of this facility (`upper(reference) = upper(code)`), and `payment`
had no index on its reference, so every payment taken read every receipt the facility ever printed: a year-old
referral hospital's tens of thousands of receipts at each payment, under the code's lock, which a second cashier
taking that code waits on.

- `payment_reference_idx`: the upper-cased reference of each payment that has one (cash has none), which the
  lookup compares with the code upper-cased, as it was typed in either case.

Revision ID: t0046
Revises: t0045
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "t0046"
down_revision = "t0045"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("payment_reference_idx", "payment", [sa.text("upper(reference)")],
                    postgresql_where=sa.text("reference IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("payment_reference_idx", table_name="payment")
